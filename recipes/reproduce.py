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

All of Figure 2 in one command (the panels are :data:`FIGURE2`; each method's seeds train together in one process)::

    python recipes/reproduce.py figure2                                  # every panel, 15 seeds, the paper's budgets
    python recipes/reproduce.py figure2 --panels reaching_goals_5x5 --budget-scale 0.01 --seeds 2   # a smoke run
    python recipes/reproduce.py figure2 --jobs 2                         # two runs at a time (both cores)

Runs land in ``runs_repro/figure2/<panel>/<method>``; a rerun skips every (panel, method) whose summary says
``status: complete`` with at least the budget, and continues a stopped, crashed or smaller run from its newest
``checkpoint.pt`` (``resume=``, into ``<method>.run<k>``). Each panel's report goes to
``docs/results/figure2/<panel>/``; the wall and CPU time of every run (every session of it) and of the whole
command go to ``docs/results/figure2/timing.json`` and ``README.md`` there.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from msgzoo.report.compare import find_runs, report
from msgzoo.report.figures import plot_languages

ROOT = Path(__file__).resolve().parent
METHODS = ["sgoc", "sg", "pgoc", "pg", "dial"]


# ------------------------------------------------------------------ all of Figure 2 in one command


@dataclasses.dataclass(frozen=True)
class Panel:
    """One panel of Figure 2: a recipe family, its methods and the budget of every seed."""

    name: str  # the folder of its runs and of its report
    task: str  # recipes/<method>_<task>.py
    methods: tuple[str, ...]
    budget_key: str  # collector.total_frames (env steps) or collector.total_episodes
    budget: int  # per seed, in the unit of budget_key
    overrides: tuple[str, ...] = ()
    note: str = ""


#: The panels of the paper's Figure 2 at the paper's budgets (REFERENCE_RESULTS.md; msgzoo.report.paper_units).
FIGURE2 = (
    Panel("recommendation_letter", "recommendation_letter", tuple(METHODS), "collector.total_frames", 5_000_000,
          note="Figure 2 (a-c), Figure 3. Students per seed: the recipes' default, not the reference's 3e8 (batches "
               "of 100 students); msgzoo's batches hold 2,048 students and its learning rates are ~20x the "
               "reference's (docs/recipes.md)."),
    Panel("reaching_goals_3x3", "reaching_goals", tuple(METHODS), "collector.total_episodes", 200_000, ("map=3x3",),
          note="Figure 2 (d-h), 3x3. The paper's x axis ends at 1e5, which is 2e5 real episodes (two episodes per point); "
               "DIAL's paper value is at 1e5 real episodes, on the way."),
    Panel("reaching_goals_5x5", "reaching_goals", ("sgoc", "pgoc"), "collector.total_episodes", 600_000, ("map=5x5",),
          note="Figure 2 (d-h), 5x5. The paper's x axis ends at 3e5 = 6e5 real episodes; the authors' 5x5 config "
               "(12 / 3, the receiver sees the message only)."),
)
PANELS = {p.name: p for p in FIGURE2}
#: Batches between checkpoints of a figure-2 run, so that a killed run loses minutes, not hours (logger.* may
#: change on a resume, so this does not block continuing a run made with another interval).
CHECKPOINT_INTERVAL = 200


def scaled_budget(panel: Panel, scale: float) -> int:
    """The panel's budget per seed times ``scale`` (at least 1)."""
    return max(1, round(panel.budget * scale))


def summary_name(seeds: int) -> str:
    """The summary of a whole run: all seeds' (``seeds_summary.json``) or the single seed's."""
    return "seeds_summary.json" if seeds > 1 else "summary.json"


def attempts(base: Path) -> list[Path]:
    """The run folders of one (panel, method), oldest first: ``<method>``, then ``<method>.run2``, ``.run3``..."""
    found = [base] if base.is_dir() else []
    numbered = sorted((int(p.name.rsplit(".run", 1)[1]), p) for p in base.parent.glob(f"{base.name}.run*")
                      if p.name.rsplit(".run", 1)[1].isdigit())
    return found + [p for _, p in numbered]


def steps_needed(run_dir: Path, panel: Panel, budget: int) -> int:
    """The budget in env steps per seed: episodes times the horizon in the run's ``config.json`` (one-step: 1)."""
    if panel.budget_key != "collector.total_episodes":
        return budget
    horizon = json.loads((run_dir / "config.json").read_text())["env"].get("horizon") or 1
    return budget * int(horizon)


def finished(run_dir: Path, panel: Panel, budget: int, seeds: int) -> dict | None:
    """The run's summary if it says ``status: complete`` with at least ``budget`` per seed, else ``None``."""
    path = run_dir / summary_name(seeds)
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    steps = summary.get("env_steps_per_seed", summary.get("env_steps", 0))
    if summary.get("status") != "complete" or steps < steps_needed(run_dir, panel, budget):
        return None
    return summary


def copy_logs(source: Path, target: Path) -> None:
    """Copies a run's CSV logs (the run's and each seed's) into the folder of its resume, which appends to them:
    the report draws each curve from one folder, the whole run's (a repeated step keeps its newest value)."""
    for csv_dir in [source / "csv", *source.glob("seed*/csv")]:
        if csv_dir.is_dir():
            shutil.copytree(csv_dir, target / csv_dir.relative_to(source), dirs_exist_ok=True)


def load_timing(path: Path) -> dict:
    if not path.exists():
        return {"runs": {}, "invocations": []}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path} is not valid JSON ({err}): fix or delete it (it only records times)") from err


def save_timing(path: Path, timing: dict) -> None:
    runs = timing["runs"].values()
    timing["total"] = {"wall_s": sum(r["wall_s"] for r in runs), "cpu_s": sum(r["cpu_s"] for r in runs)}
    path.write_text(json.dumps(timing, indent=2) + "\n")


def check_manifest(runs_root: Path, seeds: int, overrides: list[str]) -> None:
    """Refuses to mix runs of another seed count or other overrides into one figure (they would be skipped as done
    or refused on resume); records the settings of a new figure."""
    path = runs_root / "figure2.json"
    wanted = {"seeds": seeds, "overrides": list(overrides)}
    if path.exists():
        made = json.loads(path.read_text())
        if made != wanted:
            raise SystemExit(f"the runs in {runs_root} were made with {made}, this command asks for {wanted}. Fix: "
                             "use the same --seeds and --overrides, or another --runs / --name for a new figure")
    else:
        runs_root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(wanted, indent=2) + "\n")


def run_timed(cmd: list[str], log: Path | None) -> tuple[int, float, float]:
    """Runs ``cmd`` (output to ``log``, or to this terminal); returns its exit status, wall seconds and CPU seconds
    (user + system of the process, from ``wait4``: other jobs on the machine do not count)."""
    start = time.perf_counter()
    with open(log, "w") if log else contextlib.nullcontext() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log else None)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def run_panel_method(panel: Panel, method: str, args, runs_root: Path, timing: dict, timing_path: Path,
                     lock: threading.Lock) -> str:
    """Trains one (panel, method) over all seeds in one process, or skips / resumes it. Returns its state."""
    key, budget = f"{panel.name}/{method}", scaled_budget(panel, args.budget_scale)
    base = runs_root / panel.name / method
    previous = attempts(base)
    done = next((run for run in reversed(previous) if finished(run, panel, budget, args.seeds)), None)
    if done is not None:
        summary = finished(done, panel, budget, args.seeds)
        steps = summary.get("env_steps_per_seed", summary.get("env_steps"))
        print(f"skip {key}: complete in {done} ({steps:,} env steps per seed, budget {panel.budget_key}={budget:,})",
              flush=True)
        return "skipped"
    checkpoint = next((run / "checkpoint.pt" for run in reversed(previous) if (run / "checkpoint.pt").exists()), None)
    run_dir = base if not previous else base.with_name(f"{base.name}.run{len(previous) + 1}")
    cmd = [sys.executable, str(ROOT / f"{method}_{panel.task}.py"), "seed=0", f"num_seeds={args.seeds}",
           "logger.backends=[csv]", "figures=false", f"logger.checkpoint_interval={CHECKPOINT_INTERVAL}",
           f"hydra.run.dir={run_dir}", *panel.overrides, f"{panel.budget_key}={budget}", *args.overrides]
    if checkpoint is not None:
        cmd.append(f"resume={checkpoint}")
        copy_logs(checkpoint.parent, run_dir)
    print(("resume " if checkpoint else "run ") + key + ": " + " ".join(cmd), flush=True)
    log = run_dir / "reproduce.log" if args.jobs > 1 else None
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    status, wall, cpu = run_timed(cmd, log)
    summary = finished(run_dir, panel, budget, args.seeds) if status == 0 else None
    session = {"run_dir": str(run_dir), "resumed_from": str(checkpoint) if checkpoint else None,
               "exit_status": status, "complete": summary is not None, "wall_s": wall, "cpu_s": cpu,
               "train_wall_s": summary.get("wall_time_s") if summary else None,
               "env_steps_per_seed": summary.get("env_steps_per_seed", summary.get("env_steps")) if summary else None,
               "budget": f"{panel.budget_key}={budget}", "budget_scale": args.budget_scale,
               "ended": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with lock:
        record = timing["runs"].setdefault(key, {"sessions": []})
        if not previous:  # a fresh start: the times of runs that no longer exist do not count
            record["sessions"] = []
        record["sessions"].append(session)
        record["wall_s"] = sum(s["wall_s"] for s in record["sessions"])
        record["cpu_s"] = sum(s["cpu_s"] for s in record["sessions"])
        save_timing(timing_path, timing)  # now: a later kill keeps the times of the runs done
    print(f"{'done' if summary else 'FAILED'} {key}: wall {wall:,.1f} s, CPU {cpu:,.1f} s"
          + (f" (exit status {status}; log: {log or 'above'})" if summary is None else ""), flush=True)
    return "ran" if summary else "failed"


def write_index(out: Path, timing: dict, seeds: int) -> Path:
    """``README.md`` of the figure: every panel with a report, its budgets, links and the recorded times."""
    lines = [f"# Figure 2: every panel, {seeds} seeds per method", "",
             "Made by `python recipes/reproduce.py figure2` (the panels: `FIGURE2` in `recipes/reproduce.py`). "
             "Times from `timing.json`: wall and CPU seconds of each run's process, summed over its sessions.", "",
             "| panel | methods | paper's budget per seed | trained (latest session per method) | report | wall (s) "
             "| CPU (s) |", "|---|---|---|---|---|---|---|"]
    shown = [panel for panel in FIGURE2 if (out / panel.name / "table.md").exists()]
    for panel in shown:
        runs = [r for r in (timing["runs"].get(f"{panel.name}/{m}") for m in panel.methods) if r]
        trained = sorted({r["sessions"][-1]["budget"] for r in runs})
        links = ", ".join(f"[{f.split('.')[0]}]({panel.name}/{f})" for f in
                          ("table.md", "comparison.png", "table_paper_units.md", "comparison_paper_units.png",
                           "figure3_languages.png") if (out / panel.name / f).exists())
        lines.append(f"| {panel.name} | {' '.join(panel.methods)} | {panel.budget_key}={panel.budget:,} | "
                     f"{'; '.join(trained)} | {links} | {sum(r['wall_s'] for r in runs):,.0f} | "
                     f"{sum(r['cpu_s'] for r in runs):,.0f} |")
    total = timing.get("total", {})
    lines += ["", f"All runs, every session: wall {total.get('wall_s', 0):,.0f} s, CPU {total.get('cpu_s', 0):,.0f} s "
              "(runs that ran side by side, `--jobs`, each count their own wall time).", ""]
    lines += [f"- {panel.name}: {panel.note}" for panel in shown]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def figure2(args) -> None:
    """``python recipes/reproduce.py figure2``: every (panel, method) of :data:`FIGURE2`, then the reports."""
    unknown = sorted(set(args.panels or ()) - set(PANELS))
    if unknown:
        raise SystemExit(f"--panels {' '.join(unknown)}: no such panel. Fix: choose from {' '.join(PANELS)}")
    if not args.budget_scale > 0:
        raise SystemExit(f"--budget-scale {args.budget_scale}: must be > 0 (1: the paper's budgets)")
    if args.seeds < 1 or args.jobs < 1:
        raise SystemExit("--seeds and --jobs must be >= 1")
    panels = [p for p in FIGURE2 if not args.panels or p.name in args.panels]
    panels = [dataclasses.replace(p, methods=tuple(m for m in p.methods if m in args.methods)) for p in panels]
    panels = [p for p in panels if p.methods]
    name = args.name or "figure2"
    runs_root, out = Path(args.runs) / name, Path(args.docs) / name
    out.mkdir(parents=True, exist_ok=True)
    timing_path = out / "timing.json"
    timing, lock = load_timing(timing_path), threading.Lock()
    states: dict[str, str] = {}
    start, cpu_start = time.perf_counter(), os.times()
    if not args.skip_runs:
        check_manifest(runs_root, args.seeds, args.overrides)
        jobs = [(panel, method) for panel in panels for method in panel.methods]
        with ThreadPoolExecutor(args.jobs) as pool:
            results = pool.map(lambda job: run_panel_method(*job, args, runs_root, timing, timing_path, lock), jobs)
            states = {f"{p.name}/{m}": state for (p, m), state in zip(jobs, results)}
    for panel in panels:
        if any(states.get(f"{panel.name}/{m}") == "failed" for m in panel.methods):
            print(f"no report for {panel.name}: a run failed", flush=True)
            continue
        result = report([runs_root / panel.name], out / panel.name,
                        title=f"Figure 2, {panel.name}: {args.seeds} seeds per method")
        print(f"report {panel.name}: {result['table']}", flush=True)
        if panel.task == "recommendation_letter" and (runs_root / panel.name / "sgoc").exists():
            plot_languages(find_runs([runs_root / panel.name]), out / panel.name / "figure3_languages.png")
    now = os.times()
    wall = time.perf_counter() - start
    cpu = sum(getattr(now, f) - getattr(cpu_start, f) for f in ("user", "system", "children_user", "children_system"))
    timing["invocations"].append({
        "command": " ".join(sys.argv), "ended": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": wall, "cpu_s": cpu, "jobs": args.jobs, "seeds": args.seeds, "budget_scale": args.budget_scale,
        "cpus": os.cpu_count(), "load_average_at_end": list(os.getloadavg()), "runs": states,
    })
    save_timing(timing_path, timing)
    index = write_index(out, timing, args.seeds)
    print(f"figure2: this command wall {wall:,.1f} s, CPU {cpu:,.1f} s (runs and reports); all runs, every "
          f"session: wall {timing['total']['wall_s']:,.1f} s, CPU {timing['total']['cpu_s']:,.1f} s\n"
          f"timing: {timing_path}\nindex: {index}", flush=True)
    failed = [key for key, state in states.items() if state == "failed"]
    if failed:
        raise SystemExit(f"failed: {' '.join(failed)} (rerun the command to resume them from their checkpoints)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=["recommendation_letter", "reaching_goals", "figure2"],
                        help="a task, or figure2: every panel of FIGURE2")
    parser.add_argument("--seeds", type=int, default=15)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides for every run")
    parser.add_argument("--name", default=None, help="results name (default: the task, plus the overrides)")
    parser.add_argument("--runs", default="runs_repro", help="where the runs go")
    parser.add_argument("--docs", default=str(ROOT.parent / "docs" / "results"), help="where the report goes")
    parser.add_argument("--skip-runs", action="store_true", help="only rebuild the report from existing runs")
    parser.add_argument("--together", action="store_true", help="train each method's seeds in one process (num_seeds)")
    figure = parser.add_argument_group("figure2 (each method's seeds always train together)")
    figure.add_argument("--panels", nargs="+", default=None, help=f"panels to run (default all: {' '.join(PANELS)})")
    figure.add_argument("--budget-scale", type=float, default=1.0,
                        help="a factor on every budget (1: the paper's; smaller for smoke tests and partial runs)")
    figure.add_argument("--jobs", type=int, default=1, help="runs at a time (each one process, one thread)")
    args = parser.parse_args()
    if args.task == "figure2":
        figure2(args)
        return

    name = args.name or "_".join([args.task, *[o.replace("=", "-").replace("/", "-") for o in args.overrides]])
    runs = Path(args.runs) / name
    if not args.skip_runs:
        for method in args.methods:
            script = [sys.executable, str(ROOT / f"{method}_{args.task}.py")]
            common = ["logger.backends=[csv]", "figures=false"]
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
