"""Environment throughput: random-action env steps per second through the public TorchRL step path.

For each environment (Recommendation Letter, Reaching Goals 3x3 and 5x5) and batch size, the env is stepped with
``env.step_and_maybe_reset`` (so truncations / terminations reset automatically, as in a collector), on one torch
thread. Two numbers are measured:

- ``presampled``: the actions are drawn with ``env.action_spec.rand()`` before the timed loop (a pool of a few
  batches, cycled); the timed loop is ``td.update(actions); data, td = env.step_and_maybe_reset(td)``.
- ``with_rand``: the same loop with ``env.action_spec.rand()`` inside it (what ``env.rollout`` without a policy pays).

Each measurement is repeated ``--repeats`` times after a warm-up; the table shows the best repeat (the machine may
be shared), the JSON holds every repeat.

Usage::

    python benchmarks/env_throughput.py [--out benchmarks/results/env_throughput.json] [--num-envs 1 64 1024 16384]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

import tensordict  # noqa: E402
import torchrl  # noqa: E402

from msgzoo.envs import ReachingGoalsEnv, recommendation_letter  # noqa: E402

ENVS = {
    "recommendation_letter": lambda n: recommendation_letter(num_envs=n, seed=0),
    "reaching_goals_3x3": lambda n: ReachingGoalsEnv(height=3, width=3, num_envs=n, seed=0),
    "reaching_goals_5x5": lambda n: ReachingGoalsEnv(
        height=5, width=5, reward_amplifier=12.0, punish_amplifier=3.0, num_envs=n, seed=0
    ),
}


def steps_for(num_envs: int, scale: float) -> int:
    """Timed steps per repeat: enough for a stable number, small enough for the whole script to stay short."""
    base = {1: 1500, 64: 1500, 1024: 800, 16384: 150}.get(num_envs, max(50, int(2_000_000 / num_envs)))
    return max(10, int(base * scale))


def time_loop(env, num_steps: int, warmup: int, presample: bool, pool: int = 4) -> float:
    """Seconds for ``num_steps`` calls of ``env.step_and_maybe_reset`` with random actions."""
    td = env.reset()
    actions = [env.action_spec.rand() for _ in range(pool)] if presample else None

    def run(k: int):
        nonlocal td
        for i in range(k):
            td.update(actions[i % pool] if presample else env.action_spec.rand())
            _, td = env.step_and_maybe_reset(td)

    run(warmup)
    start = time.perf_counter()
    run(num_steps)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/env_throughput.json", help="where to write the JSON")
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 64, 1024, 16384])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the timed step counts")
    args = parser.parse_args(argv)

    rows = []
    header = (f"{'env':<24}{'num_envs':>9}{'steps':>7}{'presampled steps/s':>21}"
              f"{'with rand() steps/s':>22}{'ms/step':>9}")
    print(f"torch {torch.__version__}, torchrl {torchrl.__version__}, threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}")
    print(header)
    print("-" * len(header))
    t0 = time.perf_counter()
    for name in args.envs:
        for n in args.num_envs:
            env = ENVS[name](n)
            k = steps_for(n, args.scale)
            result = {"env": name, "num_envs": n, "timed_steps": k}
            for label, presample in (("presampled", True), ("with_rand", False)):
                seconds = [time_loop(env, k, args.warmup, presample) for _ in range(args.repeats)]
                rates = [k * n / s for s in seconds]
                result[label] = {
                    "env_steps_per_s_best": max(rates),
                    "env_steps_per_s_median": statistics.median(rates),
                    "ms_per_batched_step_best": 1e3 * min(seconds) / k,
                    "seconds": seconds,
                }
            rows.append(result)
            print(f"{name:<24}{n:>9}{k:>7}{result['presampled']['env_steps_per_s_best']:>21,.0f}"
                  f"{result['with_rand']['env_steps_per_s_best']:>22,.0f}"
                  f"{result['presampled']['ms_per_batched_step_best']:>9.3f}", flush=True)
    total = time.perf_counter() - t0

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "env_throughput",
        "method": "env.step_and_maybe_reset with random one-hot actions from env.action_spec.rand(); "
                  "presampled: actions drawn before the timed loop; with_rand: drawn inside it",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "torch": torch.__version__,
        "torchrl": torchrl.__version__,
        "tensordict": tensordict.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "device": "cpu",
        "repeats": args.repeats,
        "warmup_steps": args.warmup,
        "total_seconds": total,
        "results": rows,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {out} ({total:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
