"""Same seed, same numbers: tiny runs of every recipe at this checkout and at another commit, compared bitwise.

    python scripts/same_numbers.py --against dfd91e8 [--methods sgoc dial] [--num-seeds 1 2] [-- warmup.frames=2048]

For every method, on the one-step and the Reaching Goals recipes, with one seed and two seeds trained together, a
tiny run (a few batches) is made by each code version in its own subprocess (``PYTHONPATH`` = that version), and
the final checkpoints (policy, loss modules, optimizer states) and summaries (all but times, paths and the names
derived from the config's hash, which a new config field changes) are compared exactly. A refactoring that keeps every recipe's behaviour prints ``identical``; anything else names the
first field that differs and the largest relative difference over all numbers (each tensor's largest difference
relative to its largest magnitude; each number's relative to the larger of the two). ``--rtol R`` accepts runs whose
numbers all differ by at most ``R`` (a change that only reorders float operations). Checkpoint counters are compared
per seed (a layout-2 checkpoint counted ``frames`` over all seeds). Overrides after ``--`` go to every run (e.g. to
switch a schedule on).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["sgoc", "sg", "pgoc", "pg", "dial"]
TASKS = {
    "recommendation_letter": ["collector.total_frames=4096", "env.num_envs=256", "logger.log_interval=4", "seed=5"],
    "reaching_goals": ["collector.total_episodes=16", "env.num_envs=16", "env.steps_per_batch=4", "eval.episodes=8",
                       "figures=false", "seed=2"],
}
#: Summary fields that differ between two runs of the same numbers.
VOLATILE = {"wall_time_s", "env_steps_per_s", "wall_time_to_target_s", "run_dir", "summary_path", "history",
            "last_metrics", "cpu_time_s", "env_steps_per_cpu_s", "figures", "seed_summaries", "resumed_from",
            "run_name", "group", "tags", "config_hash"}
#: The runs of one code version, in its own subprocess: ``[[task, method, overrides...], ...]`` as JSON.
RUN = """
import json, sys
from hydra import compose, initialize_config_dir
import torch
torch.set_num_threads(1)
try:  # the recipes hold the methods (since issue 16's recipes in the open)
    from recipes import run_recipe
except ImportError:  # older code: the pipelines' run
    from msgzoo.pipelines import one_step, reaching_goals
    def run_recipe(cfg, method):
        (one_step if cfg.task != "reaching_goals" else reaching_goals).run(cfg, method=method)
for task, method, *overrides in json.loads(sys.argv[2]):
    with initialize_config_dir(config_dir=sys.argv[1] + "/recipes/config", version_base="1.3"):
        cfg = compose(config_name=f"{method}_{task}", overrides=overrides)
    run_recipe(cfg, method=method)
"""


def csv_only(code: Path) -> str:
    """The override that keeps ``code``'s runs to CSV logs (before ``logger.backends``: ``logger.use_wandb``)."""
    logger = (code / "recipes" / "config" / "recommendation_letter.yaml").read_text().split("\nlogger:", 1)[1]
    return "logger.backends=[csv]" if "backends:" in logger else "logger.use_wandb=false"


def run_all(code: Path, out: Path, methods: list[str], extra: list[str], seed_counts: list[int]) -> None:
    jobs = [[task, method, *overrides, f"num_seeds={seeds}", csv_only(code),
             f"+run_dir={out / f'{task}_{method}_{seeds}'}", *extra]
            for task, overrides in TASKS.items() for method in methods for seeds in seed_counts]
    # cwd and PYTHONPATH: this version's msgzoo, not the caller's
    proc = subprocess.run([sys.executable, "-c", RUN, str(code), json.dumps(jobs)], capture_output=True, text=True,
                          cwd=code, env={"PYTHONPATH": str(code)})
    if proc.returncode != 0:
        raise SystemExit(f"the runs of {code} failed:\n{proc.stderr[-3000:]}")


def snapshot(run_dir: Path) -> dict:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    if state.get("format", 2) < 3:  # layout 2 counted every seed's frames, later layouts each seed's
        state["frames"] //= int(state["config"].get("num_seeds") or 1)
    summary = json.loads(next(p for p in (run_dir / "seeds_summary.json", run_dir / "summary.json") if p.exists())
                         .read_text())
    return {"state": {k: state[k] for k in ("iteration", "frames", "policy", "losses", "optimizers")},
            "summary": {k: v for k, v in summary.items() if k not in VOLATILE and k != "run_name"}}


def first_difference(a, b, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(set(a) ^ set(b))}"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: lengths {len(a)} != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{path}[{i}]"))), None)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return None if a.shape == b.shape and torch.equal(a, b) else f"{path}: tensors differ"
    return None if a == b else f"{path}: {a!r} != {b!r}"


def max_relative_difference(a, b, path: str = "") -> tuple[float, str]:
    """The largest relative difference between the numbers of ``a`` and ``b`` (same structure) and where it is."""
    pairs: list = []
    if isinstance(a, dict) and isinstance(b, dict):
        pairs = [(a[k], b[k], f"{path}.{k}") for k in a if k in b]
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        pairs = [(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b))]
    elif isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or not a.is_floating_point():
            return (0.0 if torch.equal(a, b) else float("inf")), path
        scale = torch.maximum(a.abs().max(), b.abs().max()) if a.numel() else torch.tensor(0.0)
        diff = (a - b).abs().max() if a.numel() else torch.tensor(0.0)
        return (float(diff / scale) if scale > 0 else 0.0), path
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        scale = max(abs(a), abs(b))
        return (abs(a - b) / scale if scale > 0 else 0.0), path
    else:
        return (0.0 if a == b else float("inf")), path
    return max((max_relative_difference(x, y, p) for x, y, p in pairs), default=(0.0, path), key=lambda r: r[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="the commit to compare this checkout with")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--num-seeds", nargs="+", type=int, default=[1, 2],
                        help="runs with these numbers of seeds trained together (default: 1 2)")
    parser.add_argument("--rtol", type=float, default=0.0,
                        help="accept runs whose numbers differ by at most this relative difference (default: none)")
    parser.add_argument("--new-override", nargs="+", default=[], metavar="OVERRIDE",
                        help="Hydra overrides for this checkout's runs only, e.g. a default changed since the other "
                             "commit set back to its old value (loss.obedience_noise_allowance=0 against a commit "
                             "before session 6)")
    args, extra = parser.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = tmp / "old.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), args.against], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "old", filter="data")
        run_all(tmp / "old", tmp / "runs_old", args.methods, extra, args.num_seeds)
        run_all(ROOT, tmp / "runs_new", args.methods, extra + args.new_override, args.num_seeds)
        runs = sorted(p.name for p in (tmp / "runs_old").iterdir())
        snapshots = [(name, snapshot(tmp / "runs_old" / name), snapshot(tmp / "runs_new" / name)) for name in runs]
    ok = True
    for name, old, new in snapshots:
        diff = first_difference(old, new)
        if diff is None:
            print(f"{name:<40} identical")
            continue
        rel, where = max_relative_difference(old, new)
        ok = ok and rel <= args.rtol
        print(f"{name:<40} DIFFERS {diff}; max relative difference {rel:.3g} at {where}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
