"""The Reaching Goals report tables in both units (per episode and the paper's), from committed ``table.json`` files.

    python scripts/paper_units_tables.py docs/results/reaching_goals_3x3_15seeds --map 3x3 --receiver-observes position

``msgzoo.report`` writes ``table_paper_units.md`` itself when it has the runs; the raw runs behind docs/results/ are
not in the repository, so this rebuilds the same table from the report's ``table.json`` (final values per method)
with :func:`msgzoo.report.compare.paper_units_table`, and the sender's LP optimum for the given map and receiver
observation.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from markov_optimum import MAPS  # this folder's script: the recipes' maps

from msgzoo.envs import ReachingGoalsEnv
from msgzoo.report.compare import paper_units_table
from msgzoo.report.plotting import reaching_goals_optimum_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report_dir", help="a folder with the report's table.json")
    parser.add_argument("--map", required=True, choices=list(MAPS))
    parser.add_argument("--receiver-observes", nargs="*", default=["position"], choices=["position", "goal"])
    args = parser.parse_args()
    rows = json.loads((Path(args.report_dir) / "table.json").read_text())
    size, reward, punish = MAPS[args.map]
    env = ReachingGoalsEnv(height=size, width=size, reward_amplifier=reward, punish_amplifier=punish,
                           receiver_observes=args.receiver_observes, num_envs=1)
    table = paper_units_table(rows, args.map.split("_")[0], reaching_goals_optimum_value(env))
    out = Path(args.report_dir) / "table_paper_units.md"
    out.write_text(table)
    print(table)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
