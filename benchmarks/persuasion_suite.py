"""The persuasion-game suite: SGOC and PGOC with the recipes' defaults on every game of :mod:`msgzoo.game_theory.suite`.

    python benchmarks/persuasion_suite.py                       # all games, sgoc + pgoc, 5 seeds, 2 processes
    python benchmarks/persuasion_suite.py --games recommendation_letter random_05_3x3 --methods sgoc
    python benchmarks/persuasion_suite.py --override loss.epsilon=0.0 --out benchmarks/results/ablation_eps0.json
    python benchmarks/persuasion_suite.py --compare benchmarks/results/persuasion_suite.json benchmarks/results/ablation_eps0.json

Every (method, game) trains ``--seeds`` seeds together (``num_seeds``) through the one-step recipe
(``recipes/<method>_recommendation_letter.py``'s config and pipeline) with **no per-game setting**: only the game
(prior, payoffs) changes; ``--override`` applies the same Hydra overrides to every game (for ablations). Each run
is scored exactly (no sampling) by the fraction of the LP gain, ``(v - v_none) / (v_LP - v_none)``, and the
receiver's best-response regret. The JSON (``--out``) holds every seed of every game and the CPU seconds of each
run; ``python benchmarks/persuasion_suite.py --report RESULTS.json...`` turns it into the table and figure of
docs/results.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# one line per game instead of progress bars (set before tqdm is imported; the worker processes inherit it)
os.environ.setdefault("TQDM_DISABLE", "1")
CONFIG_DIR = ROOT / "recipes" / "config"
sys.path.insert(0, str(ROOT))  # the recipes (the methods' one source), as the worker processes import them
#: ``--payoff-scale`` / ``--payoff-shift`` that leave every game in its own units (sender, receiver).
GAME_UNITS = {"payoff_scale": [1.0, 1.0], "payoff_shift": [0.0, 0.0]}


def train_one(job: tuple[str, dict, int, list[str], str, float]) -> dict:
    """Trains ``method`` on one game (all seeds together) and scores each seed; runs in a worker process.
    ``regret_unit``: the receiver's payoff scale (``--payoff-scale``), so regrets stay in the unscaled game's units."""
    import torch
    from hydra import compose, initialize_config_dir

    from recipes import run_recipe
    from msgzoo.game_theory.suite import SuiteGame, fraction_of_gain

    method, game_fields, seeds, overrides, run_root, regret_unit = job
    game = SuiteGame(**game_fields)
    torch.set_num_threads(1)
    run_dir = Path(run_root) / method / game.name
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name=f"{method}_recommendation_letter",
            overrides=[*game.overrides(), f"num_seeds={seeds}", "logger.backends=[csv]", f"+run_dir={run_dir}",
                       *overrides],
        )
    cpu, wall = time.process_time(), time.perf_counter()
    summary = run_recipe(cfg, method=method)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    per_seed = [summary] if seeds == 1 else [
        json.loads((run_dir / f"seed{cfg.seed + i}" / "summary.json").read_text()) for i in range(seeds)
    ]
    return {
        "method": method, "game": game.name, "num_states": game.num_states, "num_actions": game.num_actions,
        "lp_value": game.lp_value, "no_info_value": game.no_info_value, "full_info_value": game.full_info_value,
        "cpu_s": cpu, "wall_s": wall,
        "fraction": [fraction_of_gain(s["sender_reward"], game) for s in per_seed],
        "sender_value": [s["sender_reward"] for s in per_seed],
        "receiver_value": [s["receiver_reward"] for s in per_seed],
        "receiver_regret": [s["receiver_regret"] / regret_unit for s in per_seed],
        "scheme": [s["scheme"] for s in per_seed],
        "policy": [s["policy"] for s in per_seed],
    }


def summarize(results: list[dict]) -> dict:
    """Per method: the issue's targets, over games (median, worst) and seeds."""
    out = {}
    for method in sorted({r["method"] for r in results}):
        rows = [r for r in results if r["method"] == method]
        means = [statistics.fmean(r["fraction"]) for r in rows]
        worst = min(rows, key=lambda r: min(r["fraction"]))
        out[method] = {
            "games": len(rows),
            "median_game_mean_fraction": statistics.median(means),
            "mean_fraction": statistics.fmean(means),
            "games_with_4_of_5_seeds_at_0.9": sum(sum(f >= 0.9 for f in r["fraction"]) >= 0.8 * len(r["fraction"]) for r in rows),
            "seeds_below_0.8": sum(f < 0.8 for r in rows for f in r["fraction"]),
            "worst_seed_fraction": min(worst["fraction"]),
            "worst_game": worst["game"],
            "max_receiver_regret": max(max(r["receiver_regret"]) for r in rows),
            "seeds_with_regret_above_0.01": sum(g > 0.01 for r in rows for g in r["receiver_regret"]),
            "max_cpu_s_per_game": max(r["cpu_s"] for r in rows),
            "mean_cpu_s_per_game": statistics.fmean(r["cpu_s"] for r in rows),
        }
    return out


def best_seed_per_game(rows: list[dict]) -> dict:
    """A population with selection, reported apart from the per-seed measures: of each game's seeds, the one with the
    highest exact sender value (``summary.json``'s ``sender_reward``, which a user has without the LP), scored as the
    per-seed measures are. The picked seeds' regret is reported too: the highest sender value can be a receiver's
    mistake that pays the sender."""
    picked = []
    for r in rows:
        i = max(range(len(r["sender_value"])), key=lambda k: r["sender_value"][k])
        picked.append((r["fraction"][i], r["game"], r["receiver_regret"][i]))
    worst = min(picked)
    return {
        "median_game_fraction": statistics.median(f for f, _, _ in picked),
        "games_at_0.9": sum(f >= 0.9 for f, _, _ in picked),
        "worst_fraction": worst[0], "worst_game": worst[1],
        "max_receiver_regret": max(g for _, _, g in picked),
    }


def add_scheme_scores(report: dict, games: dict) -> None:
    """Adds ``scheme_fraction`` to every result: each seed's learned scheme scored against a best-responding
    receiver (ties to the sender, as the LP), as a fraction of the LP gain. Beside ``fraction`` (the learned pair's
    exact value) it says whether a shortfall is the scheme's or the learned receiver's play. From the stored
    schemes, so older result files get it too. ``games``: the suite's games by name (``report``'s must be there)."""
    from msgzoo.game_theory.metrics import best_response_sender_value
    from msgzoo.game_theory.suite import fraction_of_gain

    for r in report["results"]:
        g = games[r["game"]]
        prior = g.occupancy or g.prior  # a Markov game's values are per step of its state occupancy
        r["scheme_fraction"] = [
            fraction_of_gain(best_response_sender_value(prior, g.sender_utility, g.receiver_utility, phi), g)
            for phi in r["scheme"]
        ]


def compare(base_path: Path, new_path: Path, threshold: float = 0.01) -> str:
    """The issue's measures of two result files on the games both hold (per method), and the games whose mean over
    seeds moved by more than ``threshold``: markdown lines for a results section."""
    base, new = (json.loads(Path(p).read_text())["results"] for p in (base_path, new_path))
    lines = []
    for method in sorted({r["method"] for r in new} & {r["method"] for r in base}):
        rows = {r["game"]: r for r in new if r["method"] == method}
        old = {r["game"]: r for r in base if r["method"] == method and r["game"] in rows}
        rows = {g: r for g, r in rows.items() if g in old}
        lines += [f"{method}, {len(rows)} games held by both: `{_shown(base_path)}` -> `{_shown(new_path)}`", "",
                  "| measure | base | new |", "|---|---|---|"]
        a, b = summarize(list(old.values()))[method], summarize(list(rows.values()))[method]
        for key, fmt in [("median_game_mean_fraction", "{:.3f}"), ("mean_fraction", "{:.3f}"),
                         ("games_with_4_of_5_seeds_at_0.9", "{}"), ("seeds_below_0.8", "{}"),
                         ("worst_seed_fraction", "{:.3f}"), ("worst_game", "{}"), ("max_receiver_regret", "{:.4f}"),
                         ("seeds_with_regret_above_0.01", "{}"), ("mean_cpu_s_per_game", "{:.1f}"),
                         ("max_cpu_s_per_game", "{:.1f}")]:
            lines.append(f"| {key} | {fmt.format(a[key])} | {fmt.format(b[key])} |")
        moved = sorted(((statistics.fmean(rows[g]["fraction"]) - statistics.fmean(old[g]["fraction"]), g) for g in rows))
        for word, picked in [("better", [m for m in reversed(moved) if m[0] > threshold]),
                             ("worse", [m for m in moved if m[0] < -threshold])]:
            lines += ["", f"{len(picked)} games {word} by more than {threshold} on the mean over seeds (base -> new, "
                      "mean / min):"] + [
                f"- {g}: {statistics.fmean(old[g]['fraction']):.3f} / {min(old[g]['fraction']):.3f} -> "
                f"{statistics.fmean(rows[g]['fraction']):.3f} / {min(rows[g]['fraction']):.3f}" for _, g in picked]
        lines += ["", f"{sum(abs(d) <= threshold for d, _ in moved)} games within {threshold}.", ""]
    return "\n".join(lines)


BEGIN, END = "<!-- persuasion-suite:begin -->", "<!-- persuasion-suite:end -->"


def _shown(path) -> str:
    """A result file's path as the docs show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


#: Result files the figure draws (the first ones given: today's defaults first); every file gets its tables.
FIGURE_FILES = 4


def write_report(paths: list[Path], docs: Path = ROOT / "docs") -> Path:
    """The tables of one or more result files, and the figure of the first :data:`FIGURE_FILES` of them, into
    ``docs/results.md`` (between the markers)."""
    from msgzoo.report.compare import save_figure
    import matplotlib.pyplot as plt

    from msgzoo.game_theory.optimal_scheme import obedience_penalty_threshold
    from msgzoo.game_theory.suite import persuasion_suite

    reports = [(p, json.loads(Path(p).read_text())) for p in paths]
    suites: dict[int, dict] = {}  # one suite (its LPs solved once) per size the files were run with
    thresholds: dict[str, float] = {}  # each game's exact-penalty lambda, solved once
    for _, rep in reports:
        n = rep["num_random"]
        if n not in suites:
            suites[n] = {g.name: g for g in persuasion_suite(n)}
            for g in suites[n].values():
                if g.name not in thresholds:
                    thresholds[g.name] = obedience_penalty_threshold(
                        g.occupancy or g.prior, g.sender_utility, g.receiver_utility)
        add_scheme_scores(rep, suites[n])
    out_dir = docs / "results" / "persuasion_suite"
    lines = [BEGIN, "", "_Written by `python benchmarks/persuasion_suite.py --report "
             + " ".join(_shown(p) for p, _ in reports)
             + "`._", ""]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for index, (p, rep) in enumerate(reports):
        label = Path(p).stem + (f" ({' '.join(rep['overrides'])})" if rep["overrides"] else "")
        lines += [f"### `{Path(p).name}`" + (f": overrides `{' '.join(rep['overrides'])}`" if rep["overrides"] else ": no overrides (the defaults when it ran)"),
                  "", f"{rep['seeds']} seeds per game trained together; wall time of the whole run {rep['wall_s']:.0f} s.", ""]
        lines += ["| method | games | median game (mean over seeds) | mean | games with >= 4/5 seeds at 90% | seeds < 80% | "
                  "worst seed (game) | max receiver regret | seeds with regret > 0.01 | CPU s per game (mean, max) | "
                  "schemes vs a best-responding receiver: median game, seeds < 80% |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for method, m in rep["summary"].items():
            schemes = [r["scheme_fraction"] for r in rep["results"] if r["method"] == method]
            lines.append(
                f"| {method} | {m['games']} | {_pct(m['median_game_mean_fraction'])}% | {_pct(m['mean_fraction'])}% | "
                f"{m['games_with_4_of_5_seeds_at_0.9']} | {m['seeds_below_0.8']} | {_pct(m['worst_seed_fraction'])}% "
                f"({m['worst_game']}) | {m['max_receiver_regret']:.4f} | {m['seeds_with_regret_above_0.01']} | "
                f"{m['mean_cpu_s_per_game']:.1f}, {m['max_cpu_s_per_game']:.1f} | "
                f"{_pct(statistics.median(statistics.fmean(f) for f in schemes))}%, "
                f"{sum(x < 0.8 for f in schemes for x in f)} |")
        for method in rep["summary"]:
            rows = [r for r in rep["results"] if r["method"] == method]
            b = best_seed_per_game(rows)
            lines += ["", f"{method}, a population with selection (not a per-seed result): of each game's "
                      f"{rep['seeds']} seeds, the one with the highest sender value: median game "
                      f"{_pct(b['median_game_fraction'])}%, {b['games_at_0.9']} of {len(rows)} games at >= 90%, worst "
                      f"game {_pct(b['worst_fraction'])}% ({b['worst_game']}), max receiver regret of the picked seeds "
                      f"{b['max_receiver_regret']:.4f}."]
        lines += ["", "<details><summary>Every game (fraction of the LP gain per seed, %; the learned schemes against a "
                  "best-responding receiver, mean / min; λ*: the smallest λ for which the hinges are an exact penalty, "
                  "`obedience_penalty_threshold`)</summary>", "",
                  "| method | game | S x A | no-info | LP | λ* | mean | min | seeds | max regret | CPU s | schemes vs best response |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rep["results"]:
            f, b = r["fraction"], r["scheme_fraction"]
            lines.append(
                f"| {r['method']} | {r['game']} | {r['num_states']}x{r['num_actions']} | {r['no_info_value']:.3f} | "
                f"{r['lp_value']:.3f} | {thresholds[r['game']]:.2f} | {_pct(statistics.fmean(f))} | {_pct(min(f))} | "
                f"{' '.join(_pct(x) for x in f)} | "
                f"{max(r['receiver_regret']):.4f} | {r['cpu_s']:.1f} | {_pct(statistics.fmean(b))} / {_pct(min(b))} |")
        lines += ["", "</details>", ""]
        for method in rep["summary"] if index < FIGURE_FILES else ():
            rows = sorted((r for r in rep["results"] if r["method"] == method), key=lambda r: statistics.fmean(r["fraction"]))
            xs = [(i + 0.5) / len(rows) for i in range(len(rows))]  # a quantile axis: files of different sizes align
            line, = ax.plot(xs, [statistics.fmean(r["fraction"]) for r in rows], label=f"{method}: {label} ({len(rows)} games)")
            for x, r in zip(xs, rows):
                ax.scatter([x] * len(r["fraction"]), r["fraction"], s=6, color=line.get_color(), alpha=0.5)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.axhline(0.9, color="gray", lw=0.6, ls=":")
    ax.set_xlabel("share of the games, sorted by the mean over seeds (dots: every seed)")
    ax.set_ylabel("fraction of the LP gain over no information")
    ax.set_ylim(-0.2, 1.1)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False)
    fig.tight_layout()
    figure = save_figure(fig, out_dir / "fraction_of_gain.png")
    lines += [f"![fraction of the LP gain per game, all seeds](results/persuasion_suite/{figure.name})", "", END]
    results_md = docs / "results.md"
    text = results_md.read_text()
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## The persuasion-game suite\n\n" + block + "\n"
    results_md.write_text(text)
    return results_md


def main() -> None:
    from msgzoo.game_theory.suite import persuasion_suite

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["sgoc", "pgoc"])
    parser.add_argument("--games", nargs="*", default=None, help="names (default: every non-trivial game)")
    parser.add_argument("--num-random", type=int, default=40, help="random games in the suite")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per game, trained together")
    parser.add_argument("--workers", type=int, default=2, help="processes (one torch thread each)")
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides applied to every run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "persuasion_suite.json")
    parser.add_argument("--run-root", type=Path, default=None, help="where the runs go (default: a temporary dir)")
    parser.add_argument("--payoff-scale", type=float, nargs=2, default=list(GAME_UNITS["payoff_scale"]),
                        metavar=("SENDER", "RECEIVER"),
                        help="train on every game with its payoffs multiplied by these (one-step games only); "
                             "fractions are unit-free, regrets are divided by RECEIVER")
    parser.add_argument("--payoff-shift", type=float, nargs=2, default=list(GAME_UNITS["payoff_shift"]),
                        metavar=("SENDER", "RECEIVER"),
                        help="... and then these added to them")
    parser.add_argument("--resume", action="store_true", help="skip the games --out already holds (same settings)")
    parser.add_argument("--report", type=Path, nargs="+", default=None, help="write docs from these result files")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="the docs folder --report writes into")
    parser.add_argument("--compare", type=Path, nargs=2, default=None, metavar=("BASE", "NEW"),
                        help="print the issue's measures of two result files on their common games")
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return
    if args.report:
        print(f"report: {write_report(args.report, args.docs)}")
        return

    games = [g for g in persuasion_suite(args.num_random) if not g.trivial]
    if args.games:
        unknown = set(args.games) - {g.name for g in games}
        if unknown:
            parser.error(f"--games: unknown or trivial games {sorted(unknown)}; known: {[g.name for g in games]}")
        games = [g for g in games if g.name in args.games]
    transform = {"payoff_scale": args.payoff_scale, "payoff_shift": args.payoff_shift}
    if transform != GAME_UNITS:
        markov = [g.name for g in games if g.horizon != 1]
        if args.games and markov:
            parser.error(f"--payoff-scale / --payoff-shift: one-step games only; drop {markov} from --games")
        games = [g.with_payoffs_transformed(*zip(args.payoff_scale, args.payoff_shift)) for g in games
                 if g.horizon == 1]
    run_root = args.run_root or Path(tempfile.mkdtemp(prefix="persuasion_suite_"))
    results, spent = [], 0.0
    if args.resume and args.out.exists():  # keep what an interrupted run of the same settings finished
        done = json.loads(args.out.read_text())
        made_with = {k: done.get(k, v) for k, v in GAME_UNITS.items()}  # files from before --payoff-*: the game's
        if done["overrides"] != args.override or done["seeds"] != args.seeds or made_with != transform:
            parser.error(f"--resume: {args.out} was made with other --override / --seeds / --payoff-*; use another --out")
        results, spent = done["results"], done["wall_s"]
    finished = {(r["method"], r["game"]) for r in results}
    jobs = [(m, g.__dict__, args.seeds, list(args.override), str(run_root), args.payoff_scale[1])
            for m in args.methods for g in games if (m, g.name) not in finished]
    start_wall = time.perf_counter()

    def write() -> dict:
        results.sort(key=lambda r: (r["method"], r["game"]))
        report = {
            "overrides": args.override, "seeds": args.seeds, "num_random": args.num_random, **transform,
            "wall_s": spent + time.perf_counter() - start_wall, "summary": summarize(results), "results": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        return report

    # SIGTERM leaves the with-block like Ctrl-C does, so the pool's workers are terminated with it
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ctx = mp.get_context("spawn")  # fresh interpreters: no torch thread pools or RNG state shared with the parent
    with ctx.Pool(args.workers) as pool:
        for r in pool.imap_unordered(train_one, jobs):
            results.append(r)
            write()  # after every game: an interrupted run loses nothing (--resume continues it)
            f = r["fraction"]
            print(f"{r['method']:5s} {r['game']:24s} fraction of LP gain mean {statistics.fmean(f):6.3f} "
                  f"min {min(f):6.3f}  regret max {max(r['receiver_regret']):.4f}  cpu {r['cpu_s']:5.1f}s", flush=True)
    report = write()
    print(json.dumps(report["summary"], indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
