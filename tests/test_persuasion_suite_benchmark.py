"""Smoke run of benchmarks/persuasion_suite.py: tiny budget, two games, then the report it writes into the docs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "persuasion_suite.py"


def test_suite_benchmark_runs_scores_and_reports(tmp_path):
    out = tmp_path / "suite.json"
    cmd = [sys.executable, str(SCRIPT), "--games", "recommendation_letter", "random_05_3x3", "--methods", "sgoc",
           "--seeds", "2", "--workers", "1", "--out", str(out), "--run-root", str(tmp_path / "runs"),
           "--override", "collector.total_frames=20000", "env.num_envs=512"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["seeds"] == 2 and report["overrides"] == ["collector.total_frames=20000", "env.num_envs=512"]
    games = {r["game"]: r for r in report["results"]}
    assert set(games) == {"recommendation_letter", "random_05_3x3"}
    for r in games.values():
        assert len(r["fraction"]) == len(r["receiver_regret"]) == 2
        # the fraction is the exact sender value's share of the LP gain
        for f, v in zip(r["fraction"], r["sender_value"]):
            assert abs(f - (v - r["no_info_value"]) / (r["lp_value"] - r["no_info_value"])) < 1e-9
    assert report["summary"]["sgoc"]["games"] == 2

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text("# Results\n")
    done = subprocess.run([sys.executable, str(SCRIPT), "--report", str(out), "--docs", str(docs)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (docs / "results.md").read_text()
    assert "persuasion-suite:begin" in text and "random_05_3x3" in text
    assert "schemes vs a best-responding receiver" in text  # the split of a shortfall: scheme or receiver
    assert "a population with selection (not a per-seed result)" in text
    # each game's exact-penalty lambda (random_05_3x3: 1.554, tests/test_obedience_penalty_threshold.py's function)
    row = next(line for line in text.splitlines() if "| random_05_3x3 | 3x3 |" in line)
    assert "| 1.55 |" in row
    assert (docs / "results" / "persuasion_suite" / "fraction_of_gain.png").stat().st_size > 1000
    # a second report replaces the section instead of appending another one
    subprocess.run([sys.executable, str(SCRIPT), "--report", str(out), "--docs", str(docs)], check=True, timeout=300)
    assert (docs / "results.md").read_text().count("persuasion-suite:begin") == 1


def test_the_population_with_selection_picks_by_sender_value_not_by_the_lp():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from persuasion_suite import best_seed_per_game
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rows = [  # game a: the best sender value is seed 1; game b: seed 0, whose receiver errs in the sender's favour
        {"game": "a", "sender_value": [0.1, 0.5, 0.3], "fraction": [0.2, 0.95, 0.6], "receiver_regret": [0, 0.001, 0]},
        {"game": "b", "sender_value": [0.9, 0.4, 0.2], "fraction": [1.3, 0.85, 0.7], "receiver_regret": [0.02, 0, 0]},
        {"game": "c", "sender_value": [0.3, 0.3, 0.2], "fraction": [0.5, 0.5, 0.4], "receiver_regret": [0, 0, 0]},
    ]
    b = best_seed_per_game(rows)
    assert b == {"median_game_fraction": 0.95, "games_at_0.9": 2, "worst_fraction": 0.5, "worst_game": "c",
                 "max_receiver_regret": 0.02}


def test_games_in_other_units_are_one_step_games_only():
    """``--payoff-scale`` rescales a one-step game's matrices; a Markov game named with it fails before any training."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--games", "weather_forecast", "recommendation_letter",
                           "--payoff-scale", "10", "0.1", "--out", "unused.json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--payoff-scale / --payoff-shift: one-step games only; drop ['weather_forecast']" in done.stderr
