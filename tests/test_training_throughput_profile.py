"""Smoke run of benchmarks/training_throughput.py --profile-loop: a cProfile of one SGOC loop, written as JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "training_throughput.py"


def test_profile_loop_profiles_the_named_loop(tmp_path):
    out = tmp_path / "profile.json"
    cmd = [sys.executable, str(SCRIPT), "--profile-loop", "recommendation_letter", "256", "2", "--batches", "4",
           "--profile-top", "5", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    prof = json.loads(out.read_text())["profile"]
    assert (prof["task"], prof["num_envs"], prof["num_seeds"], prof["batches"]) == ("recommendation_letter", 256, 2, 4)
    assert prof["env_steps"] == 4 * 256  # each seed's students
    assert len(prof["top_cumulative"]) == 5 and "function calls" in prof["top_tottime_text"]


def test_profile_loop_names_the_tasks_it_knows(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--profile-loop", "grid", "256", "1", "--out", str(tmp_path / "p.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0 and "--profile-loop grid: expected one of reaching_goals, recommendation_letter" in done.stderr
