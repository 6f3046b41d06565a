"""What a receiver margin costs on the suite, beside what SGOC learned: for every non-trivial game of the persuasion
suite, the fraction of the LP gain of the best scheme that leaves the receiver at least ``m`` for every recommendation
(``optimal_signaling_scheme(..., receiver_margin=m)``), and the learned mean / min over seeds of a suite result file.

    python scripts/receiver_margin_lp.py benchmarks/results/persuasion_suite_noise_allowance_1.json

A game that learning fails on although a scheme with a margin keeps nearly all the gain fails for the learners'
dynamics, not for a surplus too thin for a learning receiver to see.
"""
from __future__ import annotations

import argparse
import json
import statistics

from msgzoo.game_theory.optimal_scheme import optimal_signaling_scheme
from msgzoo.game_theory.suite import persuasion_suite


def margin_fraction(game, margin: float) -> float | None:
    """Fraction of ``game``'s LP gain kept by its best scheme with ``receiver_margin=margin`` (None: no such scheme)."""
    try:
        opt = optimal_signaling_scheme(game.occupancy or game.prior, game.sender_utility, game.receiver_utility,
                                       receiver_margin=margin)
    except ValueError:
        return None
    return (opt.sender_value - game.no_info_value) / game.gain


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a persuasion-suite result file (benchmarks/results/*.json)")
    parser.add_argument("--method", default="sgoc")
    parser.add_argument("--margins", nargs="+", type=float, default=[0.01, 0.03, 0.05])
    args = parser.parse_args(argv)
    with open(args.results) as f:
        results = json.load(f)
    learned = {r["game"]: r["fraction"] for r in results["results"] if r["method"] == args.method}
    rows = []
    for game in persuasion_suite(results.get("num_random", 40)):
        if game.trivial or game.name not in learned:
            continue
        seeds = learned[game.name]
        rows.append((statistics.mean(seeds), min(seeds), game.name, [margin_fraction(game, m) for m in args.margins]))
    print("| game | " + " | ".join(f"margin {m}" for m in args.margins) + f" | {args.method} mean / min |")
    print("|---|" + "---|" * len(args.margins) + "---|")
    for mean, worst, name, fractions in sorted(rows):
        cells = " | ".join("none" if f is None else f"{f:.3f}" for f in fractions)
        print(f"| {name} | {cells} | {mean:.3f} / {worst:.3f} |")


if __name__ == "__main__":
    main()
