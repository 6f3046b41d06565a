"""Compare runs: seed-band learning curves (Figure-2 style) and a table of final metrics.

    python -m msgzoo.report RUN_DIRS... --out report/
    python -m msgzoo.report --wandb-project ENTITY/PROJECT --out report/   # online

A run is a folder with a ``summary.json`` (every msgzoo recipe writes one); folders are searched
recursively, so a Hydra ``multirun/`` folder works as it is. Runs are grouped by (task, method, config hash):
when one (task, method) was run with several configs, each config gets its own row, labelled
``method (hash)``. Only finished runs count (``status: complete``); an interrupted or failed run, a run that a
later one resumed (it is counted once, as the resumed run), a repeat of a seed (the newest is kept) and an
unreadable ``summary.json`` are left out and listed.
Curves come from each run's CSV logs (``csv/scalars/<metric>.csv``, TorchRL's ``CSVLogger``); the band
is mean +- one standard deviation over seeds. Writes ``comparison.png``, ``table.md`` and ``table.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

#: (final-metric key in summary.json, curve metric in the CSV logs, panel title), per kind of task.
PANELS = {
    "one_step": [
        ("sender_reward", "eval/sender_reward", "sender $r^i$ per student"),
        ("receiver_reward", "eval/receiver_reward", "receiver $r^j$ per student"),
        ("welfare", "eval/welfare", "welfare $r^i + r^j$"),
    ],
    "episodic": [
        ("sender_return", "train/sender_reward", "sender return per episode"),
        ("receiver_return", "train/receiver_reward", "receiver return per episode"),
        ("welfare", None, "welfare per episode"),
    ],
}
METHOD_ORDER = ["sgoc", "sg", "pg", "pgoc", "dial"]
#: The paper's colours for its methods (Figure 2).
COLORS = {"sgoc": "#d62728", "sg": "#f2b01e", "pg": "#1f8a70", "pgoc": "#1f77b4", "dial": "#8e63c9"}


def find_runs(paths: Iterable[str | Path], skipped: list[str] | None = None) -> list[dict]:
    """The finished runs below ``paths``: every ``summary.json``, loaded, with ``run_dir`` set to where it was found.

    Left out (each with its reason appended to ``skipped``): unreadable files, runs whose ``status`` is not
    ``"complete"``, runs another one resumed (the resumed run stands for both), and repeats of one seed of one
    config (the newest summary is kept).
    """
    skipped = [] if skipped is None else skipped
    found = []
    for root in paths:
        root = Path(root)
        files = [root] if root.name == "summary.json" else sorted(root.rglob("summary.json"))
        for f in files:
            try:
                summary = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                skipped.append(f"{f}: unreadable ({type(err).__name__}: {err})")
                continue
            if not isinstance(summary, dict):
                skipped.append(f"{f}: not a summary (a JSON {type(summary).__name__})")
                continue
            status = summary.get("status", "complete")  # summaries written before statuses existed were finished
            if status != "complete":
                skipped.append(f"{f}: status {status!r}")
                continue
            summary["run_dir"] = str(f.parent.resolve())
            summary["_mtime"] = f.stat().st_mtime
            found.append(summary)
    # a resumed run continues the run whose checkpoint it read: count the chain once, as its last run
    superseded = set()
    for run in found:
        if run.get("resumed_from"):
            origin = Path(run["resumed_from"]).resolve().parent
            superseded.update({str(origin), str(origin / f"seed{run.get('seed')}")})
    latest: dict[tuple, dict] = {}
    for run in found:
        if run["run_dir"] in superseded:
            skipped.append(f"{run['run_dir']}: continued by a resumed run")
            continue
        key = (run.get("task"), run.get("method"), run.get("config_hash"), run.get("seed"))
        if key in latest:
            older, newer = sorted((latest[key], run), key=lambda r: r["_mtime"])
            skipped.append(f"{older['run_dir']}: a repeat of seed {key[3]} (kept {newer['run_dir']})")
            latest[key] = newer
        else:
            latest[key] = run
    kept = {id(r) for r in latest.values()}
    runs = [r for r in found if id(r) in kept]
    for run in runs:
        run.pop("_mtime")
    return runs


def read_curve(run_dir: str | Path, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(steps, values)`` of one logged metric, the last value kept for a repeated step (resumed runs)."""
    path = Path(run_dir) / "csv" / "scalars" / f"{metric}.csv"
    if not path.exists():
        return None
    points: dict[int, float] = {}
    with path.open() as fh:
        for row in csv.reader(fh):
            if len(row) >= 2:
                points[int(float(row[0]))] = float(row[1])
    if not points:
        return None
    steps = np.array(sorted(points))
    return steps, np.array([points[s] for s in steps])


def _kind(runs: Sequence[dict]) -> str:
    return "one_step" if any("sender_reward" in r for r in runs) else "episodic"


def _curve(run: dict, metric: str | None, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    if metric is not None:
        return read_curve(run["run_dir"], metric)
    parts = [read_curve(run["run_dir"], m) for _, m, _ in PANELS[kind][:2]]
    if any(p is None for p in parts):
        return None
    steps = parts[0][0]
    return steps, parts[0][1] + np.interp(steps, parts[1][0], parts[1][1])


def group_runs(runs: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    """Runs by (task, method); a method run with several configs gets one group per config, ``method (hash)``."""
    hashes: dict[tuple[str, str], set] = defaultdict(set)
    for run in runs:
        hashes[(run.get("task", "?"), run.get("method", "?"))].add(run.get("config_hash"))
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        task, method = run.get("task", "?"), run.get("method", "?")
        label = method if len(hashes[(task, method)]) == 1 else f"{method} ({run.get('config_hash')})"
        groups[(task, label)].append(run)
    return dict(groups)


def _number(value) -> bool:
    """A finite metric value (``true`` is not 1.0, a string is not a number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _x_scale(run: dict) -> float:
    """Curves are logged against env steps; episodic tasks are drawn against episodes."""
    steps, episodes = run.get("env_steps"), run.get("episodes")
    return episodes / steps if steps and episodes else 1.0


def summarise(groups: dict[tuple[str, str], list[dict]]) -> list[dict]:
    """One row per (task, method): number of seeds, mean, std, min and max of each final metric."""
    rows = []
    for (task, method), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], _order(kv[0][1]))):
        kind = _kind(runs)
        row = {"task": task, "method": method, "seeds": len(runs)}
        for key in [k for k, _, _ in PANELS[kind]] + ["receiver_regret"]:  # regret: the runs that measured it
            values = np.array([r[key] for r in runs if _number(r.get(key))], dtype=float)
            if values.size:
                row[key] = {
                    "mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                    "min": float(values.min()),
                    "max": float(values.max()),
                    "n": int(values.size),  # the seeds with a number for this metric
                }
        for extra in ("wall_time_s", "env_steps", "episodes"):
            values = [r[extra] for r in runs if _number(r.get(extra))]
            if values:
                row[extra] = float(np.mean(values))
        rows.append(row)
    return rows


def _order(method: str) -> int:
    method = method.split(" ")[0]  # "sgoc (hash)": one config of several
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def markdown_table(rows: Sequence[dict]) -> str:
    keys = [k for k in ("sender_reward", "receiver_reward", "sender_return", "receiver_return", "welfare", "receiver_regret")
            if any(k in r for r in rows)]
    head = "| task | method | seeds | " + " | ".join(f"{k} (mean ± std) [min, max]" for k in keys) + " | wall time (s) |"
    lines = [head, "|" + "---|" * (4 + len(keys))]
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            n = "" if v is None or v.get("n", r["seeds"]) == r["seeds"] else f" (n={v['n']})"
            cells.append("" if v is None else f"{v['mean']:.3f} ± {v['std']:.3f} [{v['min']:.3f}, {v['max']:.3f}]{n}")
        wall = f"{r['wall_time_s']:.1f}" if "wall_time_s" in r else ""
        lines.append(f"| {r['task']} | {r['method']} | {r['seeds']} | " + " | ".join(cells) + f" | {wall} |")
    return "\n".join(lines) + "\n"


def plot_comparison(groups: dict[tuple[str, str], list[dict]], path: str | Path, *, points: int = 200) -> Path:
    """Seed-band learning curves, one row of panels per task (sender, receiver, welfare)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({task for task, _ in groups})
    fig, axes = plt.subplots(len(tasks), 3, figsize=(13, 3.4 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        methods = sorted((m for t, m in groups if t == task), key=_order)
        kind = _kind([r for m in methods for r in groups[(task, m)]])
        for col, (_, metric, title) in enumerate(PANELS[kind]):
            ax = axes[row, col]
            for method in methods:
                curves = [c for c in (_curve(r, metric, kind) for r in groups[(task, method)]) if c is not None]
                if not curves:
                    continue
                scale = _x_scale(groups[(task, method)][0])
                end = min(c[0][-1] for c in curves)
                grid = np.linspace(min(c[0][0] for c in curves), end, points)
                ys = np.stack([np.interp(grid, s, v) for s, v in curves])
                mean, std = ys.mean(0), ys.std(0)
                color = COLORS.get(method)  # "pg (hash)": one config of several, each its own colour
                ax.plot(grid * scale, mean, color=color, label=f"{method.upper()} (n={len(curves)})")
                ax.fill_between(grid * scale, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            ax.set_title(f"{task}: {title}", fontsize=10)
            ax.set_xlabel("students" if kind == "one_step" else "episodes")
            ax.grid(alpha=0.3)
        axes[row, 0].legend(fontsize=8)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Lays out, writes (creating the folder) and closes a matplotlib figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ the paper's units (Reaching Goals, Figure 2)


def run_optimum(run: dict) -> float | None:
    """The sender's optimal return per episode for a Reaching Goals run's game (its ``config.json``: map and
    receiver observation), or ``None`` (another task, no config, or too slow to solve here; see
    :func:`msgzoo.report.plotting.reaching_goals_optimum_value`)."""
    config = Path(run.get("run_dir", "")) / "config.json"
    if run.get("task") != "reaching_goals" or not config.exists():
        return None
    from msgzoo.envs import ReachingGoalsEnv
    from msgzoo.report.plotting import reaching_goals_optimum_value

    env_cfg = json.loads(config.read_text()).get("env", {})
    keys = ("height", "width", "horizon", "reward_amplifier", "punish_amplifier", "bounded", "aligned",
            "receiver_observes")
    return reaching_goals_optimum_value(ReachingGoalsEnv(num_envs=1, **{k: env_cfg[k] for k in keys if k in env_cfg}))


def paper_units_table(rows: Sequence[dict], map_name: str, optimum: float | None = None) -> str:
    """The final returns of :func:`summarise`'s rows in both units beside the paper's Figure 2 values.

    msgzoo's values are per episode after ``episodes`` real episodes; the paper's units are sums over ``k``
    episodes (2; DIAL 1) at x = episodes / ``k`` (:mod:`msgzoo.report.paper_units`). ``optimum``: the sender's LP
    optimum per episode (:mod:`msgzoo.game_theory.optimal_scheme_markov`), reported with each method's share of it."""
    from msgzoo.report.paper_units import EPISODES_PER_POINT, episodes_per_point, paper_points

    def cell(v, k):
        return "" if v is None else f"{v['mean']:.1f} ± {v['std']:.1f} / **{k * v['mean']:.1f} ± {k * v['std']:.1f}**"

    lines = [
        f"Reaching Goals {map_name}: final returns, **per episode / in the paper's units** (sum over k episodes, "
        "k = 2, DIAL 1; plotted by the paper at x = real episodes / k); mean ± std over seeds. The paper's values "
        "are Figure 2 read by eye (msgzoo.report.paper_units.FIGURE2), at the paper's budget.",
        "",
        "| method | seeds | real episodes (paper's x) | sender | paper's sender | receiver | paper's receiver |"
        + (" sender / LP optimum |" if optimum is not None else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if optimum is not None else ""),
    ]
    for r in rows:
        method = r["method"]
        base = method.split(" ")[0]  # "pg (hash)": one config of several
        if base not in EPISODES_PER_POINT:  # not a method of the paper: no paper units to compare with
            continue
        k = episodes_per_point(base)
        paper = paper_points(map_name, base)
        p = paper[0] if paper else None
        sender, receiver = r.get("sender_return"), r.get("receiver_return")
        episodes = r.get("episodes")
        line = (
            f"| {method.upper()} | {r['seeds']} | "
            + (f"{episodes:,.0f} ({episodes / k:,.0f})" if episodes else "")
            + f" | {cell(sender, k)} | "
            + (f"{p.sender:.0f} / **{k * p.sender:.0f}** at {p.real_episodes:.0e} ({p.real_episodes / k:.0e})"
               if p and p.sender is not None else "")
            + f" | {cell(receiver, k)} | "
            + (f"{p.receiver:.0f} / **{k * p.receiver:.0f}**" if p and p.receiver is not None else "")
            + " |"
        )
        if optimum is not None:
            line += f" {100 * sender['mean'] / optimum:.1f}% |" if sender else " |"
        lines.append(line)
    if optimum is not None:
        lines += ["", f"Sender optimum (LP, myopic obedient receiver): {optimum:.2f} per episode = "
                      f"{2 * optimum:.2f} per two episodes."]
    return "\n".join(lines) + "\n"


def plot_paper_units(groups: dict[tuple[str, str], list[dict]], path: str | Path, map_name: str, *,
                     optimum: float | None = None, points: int = 200) -> Path:
    """Seed-band sender curves in both units (left: per episode vs real episodes; right: the paper's units), with
    the paper's Figure 2 values (stars) and the sender's LP optimum (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msgzoo.report.paper_units import EPISODES_PER_POINT, paper_points, to_paper_units

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for (task, method), runs in sorted(groups.items(), key=lambda kv: _order(kv[0][1])):
        base = method.split(" ")[0]  # "pg (hash)": one config of several, each its own colour
        if base not in EPISODES_PER_POINT:
            continue
        curves = [c for c in (read_curve(r["run_dir"], PANELS["episodic"][0][1]) for r in runs) if c is not None]
        color = COLORS.get(method)
        for ax, paper in ((axes[0], False), (axes[1], True)):
            if curves:
                scale = _x_scale(runs[0])
                grid = np.linspace(min(c[0][0] for c in curves), min(c[0][-1] for c in curves), points)
                ys = np.stack([np.interp(grid, st, v) for st, v in curves])
                x, mean, std = grid * scale, ys.mean(0), ys.std(0)
                if paper:
                    (x, mean), std = to_paper_units(x, mean, base), to_paper_units(0, std, base)[1]
                ax.plot(x, mean, color=color, label=f"{method.upper()} (n={len(curves)})")
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            for p in paper_points(map_name, base):
                x, y = to_paper_units(p.real_episodes, p.sender, base) if paper else (p.real_episodes, p.sender)
                ax.plot([x], [y], marker="*", ms=14, color=color, mec="black", zorder=5)
    for ax, paper in ((axes[0], False), (axes[1], True)):
        ax.plot([], [], ls="", marker="*", ms=10, color="gray", mec="black", label="paper, Figure 2 (read by eye)")
        if optimum is not None:
            ax.axhline(2 * optimum if paper else optimum, color="black", ls="--", lw=1.2,
                       label="sender optimum (LP; myopic obedient receiver)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set(title=f"Reaching Goals {map_name}: sender return per episode", xlabel="episodes",
                ylabel="return per episode")
    axes[1].set(title="the same in the paper's units (Figure 2; DIAL: one episode)",
                xlabel="paper's x: episodes / 2 (DIAL: episodes)", ylabel="paper's y: sum over 2 episodes (DIAL: 1)")
    return save_figure(fig, path)


def write_paper_units(runs: Sequence[dict], groups, rows: Sequence[dict], out: Path) -> dict:
    """For Reaching Goals runs of one map: ``comparison_paper_units.png`` and ``table_paper_units.md``."""
    maps = {r.get("map") for r in runs}
    if {r.get("task") for r in runs} != {"reaching_goals"} or len(maps) != 1 or None in maps:
        return {}
    (map_name,) = maps
    optimum = run_optimum(runs[0])
    figure = plot_paper_units(groups, out / "comparison_paper_units.png", map_name, optimum=optimum)
    table = out / "table_paper_units.md"
    table.write_text(paper_units_table(rows, map_name, optimum))
    return {"paper_units_figure": str(figure.resolve()), "paper_units_table": str(table.resolve())}


def runs_from_wandb(project: str, out_dir: Path) -> list[dict]:
    """Downloads the summaries and histories of a wandb project into ``out_dir`` as local runs."""
    import wandb

    runs = []
    for wr in wandb.Api().runs(project):
        cfg = dict(wr.config)
        summary = {k: v for k, v in wr.summary.items() if isinstance(v, (int, float, str))}
        summary.update(task=cfg.get("task", wr.group or "?"), method=cfg.get("method", "?"), seed=cfg.get("seed"))
        run_dir = out_dir / "wandb_runs" / wr.id
        scalars = run_dir / "csv" / "scalars"
        history = wr.history(pandas=False)
        for metric in {m for panel in PANELS.values() for _, m, _ in panel if m}:
            rows = [(h["_step"], h[metric]) for h in history if h.get(metric) is not None]
            if rows:
                f = scalars / f"{metric}.csv"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("".join(f"{s},{v}\n" for s, v in rows))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").write_text(json.dumps(summary))
        summary["run_dir"] = str(run_dir)
        runs.append(summary)
    return runs


def report(paths: Sequence[str | Path], out: str | Path, *, wandb_project: str | None = None, title: str | None = None) -> dict:
    """Builds the figure and tables for the runs under ``paths`` (or a wandb project); returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    runs = runs_from_wandb(wandb_project, out) if wandb_project else find_runs(paths, skipped)
    for reason in skipped:
        print(f"left out: {reason}", file=sys.stderr)
    if not runs:
        raise SystemExit(f"no summary.json of a finished run found under {list(map(str, paths))}: run a recipe first")
    groups = group_runs(runs)
    rows = summarise(groups)
    figure = plot_comparison(groups, out / "comparison.png")
    table = out / "table.md"
    left_out = "".join(f"- {reason}\n" for reason in skipped)
    table.write_text((f"# {title}\n\n" if title else "") + markdown_table(rows)
                     + (f"\nLeft out ({len(skipped)}):\n\n{left_out}" if skipped else ""))
    (out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    return {"figure": str(figure.resolve()), "table": str(table.resolve()), "runs": len(runs), "skipped": skipped,
            **write_paper_units(runs, groups, rows, out)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m msgzoo.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=["outputs", "multirun"], help="run folders (searched recursively)")
    parser.add_argument("--out", default="report", help="where to write comparison.png, table.md, table.json")
    parser.add_argument("--wandb-project", default=None, help="ENTITY/PROJECT to read instead of local runs (online)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    result = report(args.paths, args.out, wandb_project=args.wandb_project, title=args.title)
    print(f"{result['runs']} runs" + (f" ({len(result['skipped'])} left out)" if result["skipped"] else ""))
    print(f"table: {result['table']}")
    print(f"figure: {result['figure']}")


if __name__ == "__main__":
    main()
