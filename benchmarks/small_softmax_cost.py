"""CPU time of torch's softmax / log-softmax over a short last dimension against msgzoo.modules.small_softmax's.

One torch thread, tensors ``[5, 2048, 1, A]`` (5 seeds x 2048 students, the persuasion suite's batch) for A = 2, 3, 5;
microseconds per call (forward; forward and backward of a weighted sum), each the median of 5 timings of 200 calls.

    python benchmarks/small_softmax_cost.py
"""
from __future__ import annotations

import statistics
import time

import torch

from msgzoo.modules.small_softmax import log_softmax, softmax


def _us_per_call(fn, calls: int = 200, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            fn()
        times.append(1e6 * (time.process_time() - start) / calls)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pairs = {"softmax": (lambda x: torch.softmax(x, -1), softmax),
             "log_softmax": (lambda x: torch.log_softmax(x, -1), log_softmax)}
    print(f"{'op':<12} {'A':>2} {'torch fwd':>10} {'msgzoo fwd':>10} {'torch f+b':>10} {'msgzoo f+b':>10}  (us per call)")
    for width in (2, 3, 5):
        x = torch.randn(5, 2048, 1, width, requires_grad=True)
        w = torch.randn(5, 2048, 1, width)
        for name, (theirs, ours) in pairs.items():
            row = []
            for fn in (theirs, ours):
                row.append(_us_per_call(lambda: fn(x.detach())))
            for fn in (theirs, ours):
                row.append(_us_per_call(lambda: torch.autograd.grad((fn(x) * w).sum(), x)))
            print(f"{name:<12} {width:>2} " + " ".join(f"{v:>10.0f}" for v in row), flush=True)


if __name__ == "__main__":
    main()
