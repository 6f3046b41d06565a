"""Training throughput: env steps per second of the whole training loop (collection + updates), one CPU thread.

For each method on Reaching Goals 3x3 (and SGOC on Recommendation Letter) and each ``num_envs``, the recipe's
configuration is composed (``recipes/config``), the method built by its recipe's ``make_method`` (``recipes.build_method``) and
trained by :class:`msgzoo.training.trainer.Trainer` (TorchRL ``Collector``, alternating receiver / sender updates,
logging to CSV, no wandb) for a fixed number of batches. Every measurement runs in its own subprocess, so the peak
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that run's own. Numbers are every seed's env steps
(``trainer.frames_all_seeds``) per ``trainer.wall_time`` (the loop only: imports, network
construction and the final evaluation are not counted).

A profile of the default SGOC 3x3 run (cProfile, top functions by cumulative time) is added to the JSON and
printed.

``--against REV`` measures instead the default SGOC loop of this checkout against the one of commit ``REV`` (e.g.
``106decf``), in one run: the commit is checked out with ``git worktree add --detach`` into a temporary folder
(removed afterwards) and each side runs its own copy of this script's ``--single`` entry (``task method num_envs
batches num_seeds``, the same at both commits) in a subprocess whose ``PYTHONPATH`` and working folder are that side's
tree, so each side composes its own recipe defaults (``recipes/config``) and trains with its own code. The two sides
alternate ``--rounds`` times per task; the figure compared is env steps per CPU-second of the process (``time.process_time``
around ``Trainer.train()``), which other jobs on the machine disturb less than wall time. Tasks: Reaching Goals 3x3
SGOC at the recipe's ``env.num_envs`` and the Recommendation Letter SGOC at its own (students per CPU-second).

Usage::

    python benchmarks/training_throughput.py [--out benchmarks/results/training_throughput.json]
        [--num-envs 64 256 1024] [--batches 60] [--methods sgoc sg pgoc pg dial] [--no-profile]
        [--num-seeds 1 15]    # seeds trained together in one process (num_envs games each)
    python benchmarks/training_throughput.py --against 106decf [--rounds 3] [--against-batches 150 400]
        [--against-num-seeds 5]    # both sides with 5 seeds trained together (the persuasion suite's setting)
    python benchmarks/training_throughput.py --split [--batches 200] --out ...   # CPU time per batch, by phase
    python benchmarks/training_throughput.py --profile-loop recommendation_letter 8192 5 --batches 100 --out ...
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
    """(trainer, cfg) for one measurement; the trainer's budget is ``batches`` collected batches (of every seed);
    ``frames_per_batch`` counts every seed's env steps (the trainer's budget and batch are per seed)."""
    import torch

    from msgzoo.runtime.experiment import Experiment
    from msgzoo.training.trainer import Trainer
    from recipes import build_method

    torch.set_num_threads(1)
    overrides = [f"env.num_envs={num_envs}", f"num_seeds={num_seeds}", "logger.backends=[csv]", *extra]
    cfg = _compose(task, method, overrides)
    torch.manual_seed(cfg.seed)
    if task == "reaching_goals":
        from msgzoo.pipelines.reaching_goals import make_env

        env = make_env(cfg, num_seeds=num_seeds)
        steps, episode_length = int(cfg.env.steps_per_batch), env.horizon
    else:
        from msgzoo.pipelines.one_step import make_env

        env = make_env(cfg, num_seeds=num_seeds)
        steps, episode_length = 1, 1
    seeds = list(range(cfg.seed, cfg.seed + num_seeds)) if num_seeds > 1 else None
    agents = build_method(method, env, cfg, device=cfg.device, seeds=seeds)
    exp = Experiment(method=method, task=task, seed=cfg.seed, config=cfg, run_dir=run_dir, backends=("csv",),
                     num_seeds=num_seeds)
    per_seed = env.batch_size[-1] * steps  # a batch's env steps of each seed
    trainer = Trainer(
        env, agents, exp, total_frames=batches * per_seed, frames_per_batch=per_seed,
        max_grad=cfg.optim.max_grad, log_interval=cfg.logger.log_interval, episode_length=episode_length,
        device=cfg.device, seed_experiments=exp.seed_runs(cfg, method) if seeds else None,
        epochs=cfg.optim.epochs, minibatches=cfg.optim.minibatches,
    )
    return trainer, exp, cfg, per_seed * num_seeds


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
        "env_steps": trainer.frames_all_seeds,
        "wall_s": trainer.wall_time,
        "cpu_s": cpu,
        "env_steps_per_s": trainer.frames_all_seeds / max(trainer.wall_time, 1e-9),
        "env_steps_per_cpu_s": trainer.frames_all_seeds / max(cpu, 1e-9),
        "env_steps_per_s_per_seed": trainer.frames / max(trainer.wall_time, 1e-9),
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


def profile(batches: int, top: int, task: str = "reaching_goals", num_envs: int | None = None,
            num_seeds: int = 1) -> dict:
    """cProfile of an SGOC loop (default: the recipe's 3x3 one): the ``top`` functions by cumulative time, and the
    text of the top ones by own time."""
    import cProfile
    import io
    import pstats

    num_envs = int(_compose(task, "sgoc", []).env.num_envs) if num_envs is None else num_envs
    with tempfile.TemporaryDirectory() as tmp:
        trainer, exp, cfg, _ = _build(task, "sgoc", num_envs, batches, tmp, [], num_seeds)
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
    return {"task": task, "num_envs": num_envs, "num_seeds": num_seeds, "batches": batches, "env_steps": trainer.frames,
            "wall_s": trainer.wall_time, "top_cumulative": rows, "top_tottime_text": text.getvalue()}


def phase_split(task: str, batches: int) -> dict:
    """Where the CPU time of the default SGOC loop on ``task`` goes: milliseconds per collected batch of each update
    phase (``Trainer.update_phase``, timed with ``time.process_time``) and of the rest (collection by the TorchRL
    ``Collector`` and the loop's own work), averaged over all batches (the phases alternate, one per batch)."""
    with tempfile.TemporaryDirectory() as tmp:
        num_envs = int(_compose(task, "sgoc", []).env.num_envs)
        trainer, exp, cfg, _ = _build(task, "sgoc", num_envs, batches, tmp, [])
        trainer.exp.progress = _silent_progress
        spent: dict[str, float] = {}
        update_phase = trainer.update_phase

        def timed(phase, batch, metrics):  # the trainer's own method, timed
            t0 = time.process_time()
            update_phase(phase, batch, metrics)
            spent[phase.name] = spent.get(phase.name, 0.0) + time.process_time() - t0

        trainer.update_phase = timed
        cpu0 = time.process_time()
        trainer.train()
        cpu = time.process_time() - cpu0
        exp.close()
    n = trainer.iteration
    ms = {f"update_{k}": 1e3 * v / n for k, v in spent.items()}
    ms["collection_and_loop"] = 1e3 * (cpu - sum(spent.values())) / n
    return {"task": task, "num_envs": num_envs, "batches": n, "env_steps_per_cpu_s": trainer.frames / cpu,
            "ms_per_batch": ms, "share": {k: v / (1e3 * cpu / n) for k, v in ms.items()}}


def _subprocess(args: list[str], root: Path = ROOT) -> dict:
    """``--single args`` of the copy of this script in ``root``, with ``root``'s msgzoo (not an installed one)."""
    cmd = [sys.executable, str(root / "benchmarks" / Path(__file__).name), "--single", *args]
    env = {**os.environ, "PYTHONPATH": str(root), "RL_WARNINGS": "False"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (in {root}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: The tasks ``--against`` compares: SGOC at each recipe's default ``env.num_envs``.
AGAINST_TASKS = ("reaching_goals", "recommendation_letter")


def against(rev: str, rounds: int, batches: dict[str, int], extra: list[str], num_seeds: int = 1) -> dict:
    """The default SGOC loops of this checkout and of commit ``rev`` (``num_seeds`` seeds trained together), alternated
    ``rounds`` times per task (old, new, old, new, ...), each measurement in its own process. Returns every
    measurement and, per task, the median env steps per CPU-second of each side and their ratio (new / old)."""
    import statistics

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        raise SystemExit(f"--against {rev}: not a commit of this repository ({commit.stderr.strip()}); pass a hash "
                         "or a branch name that `git rev-parse` knows.")
    commit = commit.stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), commit], check=True,
                       capture_output=True)
        try:
            tasks = {}
            print(f"{'task':<22} {'round':>5} {'side':<5} {'num_envs':>8} {'env steps':>10} {'cpu s':>7} "
                  f"{'steps/cpu-s':>11}", flush=True)
            for task in AGAINST_TASKS:
                num_envs = int(_compose(task, "sgoc", []).env.num_envs)
                runs = {"old": [], "new": []}
                for r in range(rounds):
                    for side, root in (("old", old), ("new", ROOT)):
                        m = _subprocess([task, "sgoc", str(num_envs), str(batches[task]), str(num_seeds), *extra], root)
                        runs[side].append(m)
                        print(f"{task:<22} {r:>5} {side:<5} {num_envs:>8} {m['env_steps']:>10} {m['cpu_s']:>7.2f} "
                              f"{m['env_steps_per_cpu_s']:>11.0f}", flush=True)
                median = {side: statistics.median(m["env_steps_per_cpu_s"] for m in ms) for side, ms in runs.items()}
                paired = [n["env_steps_per_cpu_s"] / o["env_steps_per_cpu_s"] for o, n in zip(runs["old"], runs["new"])]
                tasks[task] = {
                    "num_envs": num_envs, "batches": batches[task],
                    "old_env_steps_per_cpu_s": median["old"], "new_env_steps_per_cpu_s": median["new"],
                    "ratio": median["new"] / median["old"], "paired_ratios": paired, "runs": runs,
                }
                print(f"{task}: {median['new']:,.0f} / {median['old']:,.0f} env steps per CPU-second (medians of "
                      f"{rounds}) = {median['new'] / median['old']:.2f}x; per round {', '.join(f'{x:.2f}' for x in paired)}",
                      flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip())
    return {"against": rev, "old_commit": commit, "new_commit": head, "new_has_uncommitted_changes": dirty,
            "rounds": rounds, "num_seeds": num_seeds, "tasks": tasks}


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
    parser.add_argument("--profile-loop", nargs=3, metavar=("TASK", "NUM_ENVS", "NUM_SEEDS"),
                        help="only a cProfile of this SGOC loop (e.g. recommendation_letter 8192 5), --batches batches")
    parser.add_argument("--against", metavar="REV",
                        help="compare the default SGOC loops of this checkout and of commit REV (see the docstring)")
    parser.add_argument("--rounds", type=int, default=3, help="--against: measurements per side and task, alternated")
    parser.add_argument("--against-batches", nargs=2, type=int, default=[150, 400], metavar=("RG", "LETTER"),
                        help="--against: collected batches per measurement, Reaching Goals and Recommendation Letter")
    parser.add_argument("--against-num-seeds", type=int, default=1, metavar="N",
                        help="--against: seeds trained together in each measurement (num_seeds=N)")
    parser.add_argument("--split", action="store_true",
                        help="only the CPU time per batch of collection and of each update phase, default SGOC loops")
    parser.add_argument("--single", nargs="+", help=argparse.SUPPRESS)  # internal: task method num_envs batches
    args, extra = parser.parse_known_args(argv)
    sys.path.insert(0, str(ROOT))  # this checkout's msgzoo, as in the subprocesses (not an installed copy)

    if args.single:
        task, method, num_envs, batches, num_seeds = args.single[:5]
        print(json.dumps(measure(task, method, int(num_envs), int(batches), list(args.single[5:]), int(num_seeds))))
        return 0

    start = time.perf_counter()
    if args.profile_loop:
        task, num_envs, num_seeds = args.profile_loop[0], int(args.profile_loop[1]), int(args.profile_loop[2])
        if task not in AGAINST_TASKS:
            raise SystemExit(f"--profile-loop {task}: expected one of {', '.join(AGAINST_TASKS)}.")
        prof = profile(args.batches, args.profile_top, task, num_envs, num_seeds)
        print(prof["top_tottime_text"])
        _write(Path(args.out), {"what": "cProfile of an SGOC loop", "profile": prof}, argv, start)
        return 0
    if args.split:
        splits = []
        for task in AGAINST_TASKS:
            r = phase_split(task, args.batches)
            splits.append(r)
            parts = ", ".join(f"{k} {v:.2f} ms ({100 * r['share'][k]:.0f}%)" for k, v in r["ms_per_batch"].items())
            print(f"{task} sgoc num_envs={r['num_envs']}: {r['env_steps_per_cpu_s']:,.0f} env steps per CPU-second; "
                  f"per batch: {parts}", flush=True)
        _write(Path(args.out), {"what": "CPU time per collected batch of the default SGOC loops, by update phase",
                                "phase_split": splits}, argv, start)
        return 0
    if args.against:
        if args.rounds < 1 or min(args.against_batches) < 1 or args.against_num_seeds < 1:
            raise SystemExit("--rounds, --against-batches and --against-num-seeds must be positive integers.")
        comparison = against(args.against, args.rounds, dict(zip(AGAINST_TASKS, args.against_batches)), extra,
                             num_seeds=args.against_num_seeds)
        default_out = str(ROOT / "benchmarks" / "results" / "training_throughput.json")
        out_path = Path(args.out if args.out != default_out else
                        ROOT / "benchmarks" / "results" / f"training_throughput_against_{args.against}.json")
        _write(out_path, {"what": "env steps per CPU-second of Trainer.train(), default SGOC loop, this checkout "
                                  "against another commit, alternated, each measurement in its own process",
                          **comparison}, argv, start)
        return 0
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
    _write(Path(args.out), {"what": "env steps per second of Trainer.train() (TorchRL Collector + alternating updates; "
                                    "DIAL: joint updates), one torch thread, each measurement in its own process",
                            "results": results, "profile": prof}, argv, start)
    return 0


def _write(path: Path, body: dict, argv, start: float) -> None:
    """``body`` as JSON at ``path``, with the command, the date, the versions and the machine."""
    import tensordict
    import torch
    import torchrl

    out = {
        "benchmark": "training_throughput",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__, "torchrl": torchrl.__version__, "tensordict": tensordict.__version__,
        "cpu_count": os.cpu_count(), "machine": platform.platform(), "processor": platform.processor(),
        "load_average": os.getloadavg(),
        "total_seconds": time.perf_counter() - start,
        **body,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    sys.exit(main())
