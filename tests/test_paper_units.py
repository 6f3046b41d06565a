"""The paper's units (two-episode sums at x = episodes / 2; DIAL one episode) and the report's both-units output."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from msgzoo.report.compare import paper_units_table, report
from msgzoo.report.paper_units import FIGURE2, episodes_per_point, from_paper_units, paper_points, to_paper_units


def test_two_episode_sums_at_half_the_episodes():
    x, y = to_paper_units([2e5, 1e3], [125.0, -88.8], "sgoc")
    np.testing.assert_allclose(x, [1e5, 500.0])
    np.testing.assert_allclose(y, [250.0, -177.6])  # the paper's 3x3 start near -170 is two random episodes
    x, y = to_paper_units(1e5, 270.0, "dial")  # DIAL's code logs one episode per point
    assert (float(x), float(y)) == (1e5, 270.0)
    for method in ("sgoc", "sg", "pg", "pgoc", "dial"):
        e, r = from_paper_units(*to_paper_units([3.0, 7.0], [-1.5, 4.0], method), method)
        np.testing.assert_allclose(e, [3.0, 7.0])
        np.testing.assert_allclose(r, [-1.5, 4.0])
    assert [episodes_per_point(m) for m in ("sgoc", "pg", "dial")] == [2, 2, 1]
    with pytest.raises(ValueError, match="method"):
        episodes_per_point("ppo")


def test_figure2_values_are_per_episode_at_the_papers_budgets():
    (sgoc,) = paper_points("3x3", "sgoc")
    assert (sgoc.real_episodes, sgoc.sender) == (2e5, 125.0)
    assert to_paper_units(sgoc.real_episodes, sgoc.sender, "sgoc") == (1e5, 250.0)  # what Figure 2 shows
    assert {p.method for p in paper_points("5x5_paper")} == {"sgoc", "pgoc"}
    assert len({(p.map, p.method) for p in FIGURE2}) == len(FIGURE2)  # one value per (map, method)


def _fake_run(root, method, seed, sender, receiver_observes):
    """A Reaching Goals run folder as a recipe writes it: summary.json, config.json and the CSV log."""
    run = root / f"{method}_{seed}"
    (run / "csv" / "scalars" / "train").mkdir(parents=True)
    steps = np.arange(1, 11) * 50_000  # env steps: 1,000 .. 10,000 episodes
    (run / "csv" / "scalars" / "train" / "sender_reward.csv").write_text(
        "".join(f"{s},{sender * s / steps[-1]}\n" for s in steps))
    (run / "csv" / "scalars" / "train" / "receiver_reward.csv").write_text("".join(f"{s},10.0\n" for s in steps))
    (run / "config.json").write_text(json.dumps({"env": {"height": 3, "width": 3, "horizon": 50,
                                                         "receiver_observes": receiver_observes}}))
    (run / "summary.json").write_text(json.dumps({
        "task": "reaching_goals", "method": method, "map": "3x3", "seed": seed, "episodes": 10_000.0,
        "env_steps": 500_000, "sender_return": sender, "receiver_return": 10.0, "welfare": sender + 10.0,
    }))


def test_report_writes_both_units_with_the_papers_values_and_the_optimum(tmp_path):
    for method, seed, sender in (("sgoc", 0, 200.0), ("sgoc", 1, 100.0), ("dial", 0, -40.0)):
        _fake_run(tmp_path / "runs", method, seed, sender, ["position", "goal"])
    result = report([tmp_path / "runs"], tmp_path / "out")
    with Image.open(result["paper_units_figure"]) as img:
        assert img.format == "PNG" and img.size[0] > 800
    table = (tmp_path / "out" / "table_paper_units.md").read_text()
    # SGOC: 150 ± 70.7 per episode, 300 ± 141.4 in the paper's units; the paper's 125 / 250 at 2e5 (1e5) episodes.
    assert "| SGOC | 2 | 10,000 (5,000) | 150.0 ± 70.7 / **300.0 ± 141.4** | 125 / **250** at 2e+05 (1e+05) |" in table
    assert "| DIAL | 1 | 10,000 (10,000) | -40.0 ± 0.0 / **-40.0 ± 0.0** | -50 / **-50** at 1e+05 (1e+05) |" in table
    # The receiver sees its goal: the optimum is the restricted-DP value of the 3x3 game (22.22 per episode).
    assert "Sender optimum (LP, myopic obedient receiver): 22.22 per episode = 44.44 per two episodes." in table


def test_paper_units_table_without_optimum():
    rows = [{"method": "pg", "seeds": 3, "episodes": 1e5, "sender_return": {"mean": -10.0, "std": 1.0},
             "receiver_return": {"mean": 5.0, "std": 0.5}}]
    table = paper_units_table(rows, "3x3")
    assert "| PG | 3 | 100,000 (50,000) | -10.0 ± 1.0 / **-20.0 ± 2.0** | -50 / **-100** at 2e+05 (1e+05) | " \
           "5.0 ± 0.5 / **10.0 ± 1.0** | -50 / **-100** |" in table
    assert "optimum" not in table.split("\n", 3)[3]
