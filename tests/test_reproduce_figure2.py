"""``python recipes/reproduce.py figure2``: every panel runs once, a rerun skips finished runs, a larger budget resumes.

Tiny budgets (``--budget-scale``), 2 seeds, one method on two panels; runs and reports in tmp folders.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def reproduce(monkeypatch, capfd, tmp_path):
    """``reproduce(*args) -> output``: runs recipes/reproduce.py's main with runs and reports under ``tmp_path``."""
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "recipes" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "reproduce", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)

    def call(*args: str) -> str:
        argv = ["reproduce.py", "figure2", *args, "--runs", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")]
        monkeypatch.setattr(sys, "argv", argv)
        module.main()
        out, err = capfd.readouterr()  # the recipes write to the inherited file descriptors
        return out + err

    return call


def test_figure2_runs_skips_finished_runs_and_resumes_a_larger_budget(reproduce, tmp_path):
    tiny = ["--seeds", "2", "--methods", "sgoc", "--budget-scale", "1e-4"]
    out = reproduce("--panels", "recommendation_letter", "reaching_goals_3x3", *tiny)
    runs, docs = tmp_path / "runs" / "figure2", tmp_path / "docs" / "figure2"
    summaries = {p: runs / p / "sgoc" / "seeds_summary.json" for p in ("recommendation_letter", "reaching_goals_3x3")}
    for path in summaries.values():
        summary = json.loads(path.read_text())
        assert summary["status"] == "complete" and summary["num_seeds"] == 2
    # the reports: tables and seed-band figures, for Reaching Goals in both units too
    for name in ("table.md", "table.json", "comparison.png", "figure3_languages.png"):
        assert (docs / "recommendation_letter" / name).exists(), name
    for name in ("table.md", "comparison.png", "table_paper_units.md", "comparison_paper_units.png"):
        assert (docs / "reaching_goals_3x3" / name).exists(), name
    assert "| SGOC | 2 |" in (docs / "reaching_goals_3x3" / "table_paper_units.md").read_text()
    timing = json.loads((docs / "timing.json").read_text())
    for key in ("recommendation_letter/sgoc", "reaching_goals_3x3/sgoc"):
        (session,) = timing["runs"][key]["sessions"]
        assert session["complete"] and session["wall_s"] > 0 and session["cpu_s"] > 0
        assert f"done {key}: wall" in out
    assert timing["total"]["cpu_s"] == pytest.approx(sum(r["cpu_s"] for r in timing["runs"].values()))
    assert "figure2: this command wall" in out and "reaching_goals_3x3" in (docs / "README.md").read_text()

    # a rerun trains nothing: every run is skipped, its files untouched, no session recorded
    mtimes = {p: p.stat().st_mtime_ns for p in summaries.values()}
    out = reproduce("--panels", "recommendation_letter", "reaching_goals_3x3", *tiny)
    assert "skip recommendation_letter/sgoc: complete" in out and "skip reaching_goals_3x3/sgoc: complete" in out
    assert "run recommendation_letter" not in out and "run reaching_goals" not in out
    assert {p: p.stat().st_mtime_ns for p in summaries.values()} == mtimes
    assert not list(runs.rglob("sgoc.run*"))
    timing = json.loads((docs / "timing.json").read_text())
    assert [len(r["sessions"]) for r in timing["runs"].values()] == [1, 1] and len(timing["invocations"]) == 2

    # a larger budget continues the finished run from its checkpoint, with the whole curve in the new folder
    out = reproduce("--panels", "recommendation_letter", "--seeds", "2", "--methods", "sgoc", "--budget-scale", "1e-3")
    assert "resume recommendation_letter/sgoc" in out
    resumed = json.loads((runs / "recommendation_letter" / "sgoc.run2" / "seeds_summary.json").read_text())
    assert resumed["status"] == "complete" and resumed["env_steps_per_seed"] >= 5_000
    assert resumed["resumed_from"] == str((runs / "recommendation_letter" / "sgoc" / "checkpoint.pt").resolve())
    curve = (runs / "recommendation_letter" / "sgoc.run2" / "seed0" / "csv" / "scalars" / "eval" / "sender_reward.csv")
    steps = [int(line.split(",")[0]) for line in curve.read_text().splitlines()]
    assert steps[0] == 2048 and steps[-1] == resumed["env_steps_per_seed"]
    assert len(json.loads((docs / "timing.json").read_text())["runs"]["recommendation_letter/sgoc"]["sessions"]) == 2


def test_figure2_refuses_bad_options_by_name(reproduce, tmp_path):
    with pytest.raises(SystemExit, match="--panels nope: no such panel. Fix: choose from recommendation_letter"):
        reproduce("--panels", "nope")
    with pytest.raises(SystemExit, match="--budget-scale 0.0: must be > 0"):
        reproduce("--budget-scale", "0")
    # runs of another seed count would be skipped as done or refused on resume
    (tmp_path / "runs" / "figure2").mkdir(parents=True)
    (tmp_path / "runs" / "figure2" / "figure2.json").write_text(json.dumps({"seeds": 15, "overrides": []}))
    with pytest.raises(SystemExit, match="were made with .*'seeds': 15.* Fix: use the same --seeds"):
        reproduce("--seeds", "2", "--panels", "recommendation_letter")
