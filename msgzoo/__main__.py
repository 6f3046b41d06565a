"""``python -m msgzoo``: list the recipes and the commands around them."""
from __future__ import annotations

import argparse
from pathlib import Path

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

USAGE = """\
msgzoo {version}: algorithms for Markov signaling games (Lin et al., NeurIPS 2023).

Recipes (run from any directory, Hydra writes outputs under the current one; overrides after the script,
e.g. seed=3):
{recipes}

Other commands:
  python recipes/reproduce.py TASK --seeds 15     every method over many seeds + the comparison report
  python -m msgzoo.report RUN_DIRS --out DIR      Figure-2-style curves with seed bands and a table
  python recipes/sgoc_recommendation_letter.py -m +sweep=honesty   the epsilon x lambda honesty heatmap
"""


def recipe_paths() -> list[Path]:
    """The recipe scripts (``<method>_<task>.py``; not ``reproduce.py`` nor the package's ``__init__.py``)."""
    return [p for p in sorted(RECIPES.glob("*_*.py")) if p.stem != "reproduce" and not p.stem.startswith("_")]


def recipe_lines() -> list[str]:
    lines = []
    for path in recipe_paths():
        doc = path.read_text().split('"""')[1].strip().splitlines()[0] if '"""' in path.read_text() else ""
        lines.append(f"  python recipes/{path.name:<34} {doc}")
    return lines or ["  (no recipes folder found next to the package: see the repository)"]


def main(argv: list[str] | None = None) -> None:
    from msgzoo import __version__

    parser = argparse.ArgumentParser(
        prog="python -m msgzoo",
        description=USAGE.format(version=__version__, recipes="\n".join(recipe_lines())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--list", action="store_true", help="print the recipe scripts, one per line")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(str(p) for p in recipe_paths()))
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
