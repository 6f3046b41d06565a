"""The table of SGOC on msgzoo's 3-state x 3-action games (docs/results.md, "Beyond the paper").

    python scripts/games_table.py runs_repro/games_15seeds

Reads every ``<root>/<game>/seed<k>/summary.json`` and prints, per game, the sender value, the share of the way from
the no-information value to the LP optimum (the issue's target: >= 90%), the receiver's value and its best-response
regret (recomputed from the stored scheme and policy with :func:`msgzoo.game_theory.metrics.best_response_regret`).
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from msgzoo.envs.persuasion_games import ONE_STEP_GAMES
from msgzoo.game_theory.metrics import best_response_regret
from msgzoo.report.compare import find_runs


def _stats(values: list[float], fmt: str = ".3f") -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{fmt}} ± {std:{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--target", type=float, default=90.0, help="percent of the way to the LP optimum")
    args = parser.parse_args()
    print("| game | seeds | no-info sender | LP sender | SGOC sender (mean ± std [min, max]) | % of the way to LP "
          f"(mean ± std [min, max]) | seeds >= {args.target:g}% | receiver | receiver regret (mean, max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for game_dir in sorted(p for p in args.root.iterdir() if p.is_dir()):
        runs = find_runs([game_dir])
        if not runs:
            continue
        game = ONE_STEP_GAMES[game_dir.name]
        lp, none = runs[0]["lp_sender_value"], runs[0]["no_info_sender_value"]
        sender = [r["sender_reward"] for r in runs]
        pct = [100.0 * (s - none) / (lp - none) for s in sender]
        regret = [best_response_regret(game["prior"], game["receiver_utility"], r["scheme"], r["policy"]) for r in runs]
        print(f"| {game_dir.name} | {len(runs)} | {none:.3f} | {lp:.3f} | {_stats(sender)} | {_stats(pct, '.1f')} | "
              f"{sum(p >= args.target for p in pct)} / {len(runs)} | {statistics.fmean(r['receiver_reward'] for r in runs):.3f} | "
              f"{statistics.fmean(regret):.4f}, {max(regret):.4f} |")


if __name__ == "__main__":
    main()
