"""Training throughput: env steps per second of the whole training loop (collection + updates), one CPU thread.

For each method on Reaching Goals 3x3 (and SGOC on Recommendation Letter) and each ``num_envs``, the recipe's
configuration is composed (``recipes/config``), the method built with :func:`msgzoo.training.methods.build_method` and
trained by :class:`msgzoo.training.trainer.Trainer` (TorchRL ``Collector``, alternating receiver / sender updates,
logging to CSV, no wandb) for a fixed number of batches. Every measurement runs in its own subprocess, so the peak
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that run's own. Numbers are ``trainer.frames /
trainer.wall_time`` (the loop only: imports, network construction and the final evaluation are not counted).

A profile of the default SGOC 3x3 run (cProfile, top functions by cumulative time) is added to the JSON and
printed.

Usage::

    python benchmarks/training_throughput.py [--out benchmarks/results/training_throughput.json]
        [--num-envs 64 256 1024] [--batches 60] [--methods sgoc sg pgoc pg dial] [--no-profile]
        [--num-seeds 1 15]    # seeds trained together in one process (num_envs games each)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "recipes" / "config"
METHODS = ["sgoc", "sg", "pgoc", "pg", "dial"]


def _compose(task: str, method: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=f"{method}_{task}", overrides=overrides)


def _build(task: str, method: str, num_envs: int, batches: int, run_dir: str, extra: list[str], num_seeds: int = 1):
    """(trainer, cfg) for one measurement; the trainer's budget is ``batches`` collected batches (of every seed)."""
    import torch

    from msgzoo.runtime.experiment import Experiment
    from msgzoo.training.methods import build_method
    from msgzoo.training.trainer import Trainer

    torch.set_num_threads(1)
    overrides = [f"env.num_envs={num_envs}", f"num_seeds={num_seeds}", "logger.use_wandb=false", *extra]
    cfg = _compose(task, method, overrides)
    torch.manual_seed(cfg.seed)
    if task == "reaching_goals":
        from msgzoo.pipelines.reaching_goals import make_env

        env = make_env(cfg, num_seeds=num_seeds)
        frames_per_batch, episode_length = env.num_envs * int(cfg.env.steps_per_batch), env.horizon
    else:
        from msgzoo.pipelines.one_step import make_env

        env = make_env(cfg, num_seeds=num_seeds)
        frames_per_batch, episode_length = env.num_envs, 1
    seeds = list(range(cfg.seed, cfg.seed + num_seeds)) if num_seeds > 1 else None
    agents = build_method(method, env, cfg, device=cfg.device, seeds=seeds)
    exp = Experiment(method=method, task=task, seed=cfg.seed, config=cfg, run_dir=run_dir, use_wandb=False,
                     num_seeds=num_seeds)
    trainer = Trainer(
        env, agents, exp, total_frames=batches * frames_per_batch, frames_per_batch=frames_per_batch,
        max_grad=cfg.optim.max_grad, log_interval=cfg.logger.log_interval, episode_length=episode_length,
        device=cfg.device, seed_experiments=exp.seed_runs(cfg, method) if seeds else None,
        epochs=cfg.optim.epochs, minibatches=cfg.optim.minibatches,
    )
    return trainer, exp, cfg, frames_per_batch


def measure(task: str, method: str, num_envs: int, batches: int, extra: list[str], num_seeds: int = 1) -> dict:
    """One measurement in this process (call it in a fresh subprocess for a clean peak-memory number)."""
    import resource

    import torch

    os.environ.setdefault("RL_WARNINGS", "False")
    with tempfile.TemporaryDirectory() as tmp:
        trainer, exp, cfg, frames_per_batch = _build(task, method, num_envs, batches, tmp, extra, num_seeds)
        trainer.exp.progress = _silent_progress  # no progress bar in benchmark output
        cpu0 = time.process_time()
        trainer.train()
        cpu = time.process_time() - cpu0
        exp.close()
    return {
        "task": task,
        "method": method,
        "num_envs": num_envs,
        "num_seeds": num_seeds,
        "frames_per_batch": frames_per_batch,
        "batches": batches,
        "env_steps": trainer.frames,
        "wall_s": trainer.wall_time,
        "cpu_s": cpu,
        "env_steps_per_s": trainer.frames / max(trainer.wall_time, 1e-9),
        "env_steps_per_cpu_s": trainer.frames / max(cpu, 1e-9),
        "env_steps_per_s_per_seed": trainer.frames / num_seeds / max(trainer.wall_time, 1e-9),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch_threads": torch.get_num_threads(),
        "overrides": extra,
    }


class _NullBar:
    def update(self, *a, **k):
        pass

    def set_postfix(self, *a, **k):
        pass

    def close(self):
        pass


def _silent_progress(total, desc=None):
    return _NullBar()


def profile(batches: int, top: int) -> dict:
    """cProfile of the default SGOC 3x3 loop: the ``top`` functions by cumulative time."""
    import cProfile
    import io
    import pstats

    with tempfile.TemporaryDirectory() as tmp:
        trainer, exp, cfg, _ = _build("reaching_goals", "sgoc", _compose("reaching_goals", "sgoc", []).env.num_envs,
                                      batches, tmp, [])
        trainer.exp.progress = _silent_progress
        prof = cProfile.Profile()
        prof.enable()
        trainer.train()
        prof.disable()
        exp.close()
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative")
    rows = []
    for (filename, line, name), (cc, nc, tt, ct, _) in sorted(stats.stats.items(), key=lambda kv: -kv[1][3])[:top]:
        rows.append({"function": f"{Path(filename).name}:{line}({name})", "calls": nc, "tottime_s": tt, "cumtime_s": ct})
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    return {"num_envs": int(cfg.env.num_envs), "batches": batches, "env_steps": trainer.frames,
            "wall_s": trainer.wall_time, "top_cumulative": rows, "top_tottime_text": text.getvalue()}


def _subprocess(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--single", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training_throughput.json"))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--num-envs", nargs="+", type=int, default=[64, 256, 1024])
    parser.add_argument("--batches", type=int, default=60, help="collected batches per measurement")
    parser.add_argument("--letter-num-envs", nargs="+", type=int, default=[1024, 16384])
    parser.add_argument("--num-seeds", nargs="+", type=int, default=[1], help="seeds trained together per run")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--single", nargs="+", help=argparse.SUPPRESS)  # internal: task method num_envs batches
    args, extra = parser.parse_known_args(argv)

    if args.single:
        task, method, num_envs, batches, num_seeds = args.single[:5]
        print(json.dumps(measure(task, method, int(num_envs), int(batches), list(args.single[5:]), int(num_seeds))))
        return 0

    start = time.perf_counter()
    jobs = [("reaching_goals", m, n, s) for s in args.num_seeds for m in args.methods for n in args.num_envs]
    jobs += [("recommendation_letter", "sgoc", n, s) for s in args.num_seeds for n in args.letter_num_envs]
    results = []
    print(f"{'task':<22} {'method':<6} {'seeds':>5} {'num_envs':>8} {'batch':>7} {'steps/s':>10} {'per seed':>9} "
          f"{'steps/cpu-s':>11} {'wall s':>7} {'peak MiB':>9}", flush=True)
    for task, method, n, seeds in jobs:
        batches = args.batches if task == "reaching_goals" else max(args.batches, 200)
        r = _subprocess([task, method, str(n), str(batches), str(seeds), *extra])
        results.append(r)
        print(f"{task:<22} {method:<6} {seeds:>5} {n:>8} {r['frames_per_batch']:>7} {r['env_steps_per_s']:>10.0f} "
              f"{r['env_steps_per_s_per_seed']:>9.0f} {r['env_steps_per_cpu_s']:>11.0f} {r['wall_s']:>7.1f} "
              f"{r['peak_rss_mib']:>9.0f}", flush=True)
    prof = None
    if not args.no_profile:
        prof = profile(max(args.batches, 100), args.profile_top)
        print(f"\nprofile: sgoc reaching_goals 3x3, num_envs={prof['num_envs']}, {prof['env_steps']} env steps in "
              f"{prof['wall_s']:.1f} s (under cProfile); top functions by cumulative time:")
        for row in prof["top_cumulative"]:
            print(f"  {row['cumtime_s']:8.3f} s  {row['calls']:>8}  {row['function']}")
    import tensordict
    import torch
    import torchrl

    out = {
        "benchmark": "training_throughput",
        "what": "env steps per second of Trainer.train() (TorchRL Collector + alternating updates; DIAL: joint "
                "updates), one torch thread, each measurement in its own process",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__, "torchrl": torchrl.__version__, "tensordict": tensordict.__version__,
        "cpu_count": os.cpu_count(), "machine": platform.platform(), "processor": platform.processor(),
        "load_average": os.getloadavg(),
        "total_seconds": time.perf_counter() - start,
        "results": results,
        "profile": prof,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
