"""Reproduce a panel of the paper's Figure 2: every method over many seeds, then the comparison report.

    python recipes/reproduce.py recommendation_letter --seeds 15          # Figure 2 (a-c), Figure 3
    python recipes/reproduce.py reaching_goals --seeds 15                 # Figure 2 (e-g), 3x3
    python recipes/reproduce.py reaching_goals --seeds 15 --overrides map=5x5 --methods sgoc pgoc
    python recipes/reproduce.py reaching_goals --seeds 15 --together      # each method: 15 seeds in one process

Each method runs as one Hydra multirun over ``seed=0..N-1`` (runs land in ``runs_repro/<name>/<method>``), or with
``--together`` as one process training all N seeds at once (``num_seeds=N``; the seeds' runs land in the same
``<method>/seed<k>`` folders);
then ``msgzoo.report`` writes ``docs/results/<name>/{comparison.png,table.md,table.json}``.
Extra Hydra overrides apply to every run (e.g. a budget: ``collector.total_frames=1_000_000``).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from msgzoo.report.compare import find_runs, report
from msgzoo.report.figures import plot_languages

ROOT = Path(__file__).resolve().parent
METHODS = ["sgoc", "sg", "pgoc", "pg", "dial"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=["recommendation_letter", "reaching_goals"])
    parser.add_argument("--seeds", type=int, default=15)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides for every run")
    parser.add_argument("--name", default=None, help="results name (default: the task, plus the overrides)")
    parser.add_argument("--runs", default="runs_repro", help="where the runs go")
    parser.add_argument("--docs", default=str(ROOT.parent / "docs" / "results"), help="where the report goes")
    parser.add_argument("--skip-runs", action="store_true", help="only rebuild the report from existing runs")
    parser.add_argument("--together", action="store_true", help="train each method's seeds in one process (num_seeds)")
    args = parser.parse_args()

    name = args.name or "_".join([args.task, *[o.replace("=", "-").replace("/", "-") for o in args.overrides]])
    runs = Path(args.runs) / name
    if not args.skip_runs:
        for method in args.methods:
            script = [sys.executable, str(ROOT / f"{method}_{args.task}.py")]
            common = ["logger.use_wandb=false", "figures=false"]
            if args.together:
                cmd = [*script, "seed=0", f"num_seeds={args.seeds}", *common, f"hydra.run.dir={runs / method}",
                       *args.overrides]
            else:
                cmd = [*script, "-m", f"seed=range(0,{args.seeds})", *common, f"hydra.sweep.dir={runs / method}",
                       "hydra.sweep.subdir=seed${seed}", *args.overrides]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    result = report([runs], Path(args.docs) / name, title=f"{name}: {args.seeds} seeds per method")
    print(f"table: {result['table']}\nfigure: {result['figure']}")
    if args.task == "recommendation_letter" and (runs / "sgoc").exists():
        # Figure 3: SGOC's seeds split into two mirrored languages
        languages = plot_languages(find_runs([runs / "sgoc"]), Path(args.docs) / name / "figure3_languages.png")
        print(f"languages (seeds): {languages}")


if __name__ == "__main__":
    main()
