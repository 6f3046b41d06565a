"""Smoke runs of the one-step recipes with tiny budgets, and the summary they must write."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_recipe
from msgzoo.pipelines.one_step import run

METHODS = ["sgoc", "sg", "pgoc", "pg", "dial"]
REQUIRED = [
    "method", "task", "seed", "env_steps", "wall_time_s", "env_steps_per_s", "sender_reward", "receiver_reward",
    "lp_sender_value", "no_info_sender_value", "scheme", "policy",
]
TINY = ["collector.total_frames=4096", "env.num_envs=256", "logger.use_wandb=false", "logger.log_interval=4"]


@pytest.mark.parametrize("method", METHODS)
def test_one_step_recipe_runs_and_summarises(method, recipe_config, tmp_path, capsys):
    cfg = recipe_config(f"{method}_recommendation_letter", *TINY, f"+run_dir={tmp_path}")
    summary = run(cfg, method=cfg.method)
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line.startswith("summary: ")
    path = Path(last_line.removeprefix("summary: "))
    assert path.is_absolute() and path.exists()
    written = json.loads(path.read_text())
    for key in REQUIRED:
        assert key in written, key
    assert written["method"] == method and written["task"] == "recommendation_letter"
    assert written["env_steps"] >= 4096
    assert abs(written["lp_sender_value"] - 2 / 3) < 1e-6 and written["no_info_sender_value"] == 0.0
    assert len(written["scheme"]) == 2 and len(written["policy"]) == 2
    # payoffs are exact expectations: within the game's payoff range
    assert 0.0 <= written["sender_reward"] <= 1.0 and -1.0 <= written["receiver_reward"] <= 1.0 / 3 + 1e-6
    assert summary["sender_reward"] == written["sender_reward"]


def test_any_one_step_game_is_a_config_away(recipe_config, tmp_path, capsys):
    cfg = recipe_config(
        "sgoc_recommendation_letter", *TINY, f"+run_dir={tmp_path}", "env.prior=[0.5,0.5]",
        "env.sender_utility=[[0,1],[0,1]]", "env.receiver_utility=[[1,0],[0,1]]", "env.num_messages=3",
    )
    summary = run(cfg, method="sgoc")
    assert len(summary["scheme"]) == 2 and len(summary["scheme"][0]) == 3  # phi over 3 messages
    assert summary["lp_sender_value"] == pytest.approx(1.0)  # the receiver's action matches the state


def test_recipe_cli_as_a_user_runs_it(tmp_path):
    proc = run_recipe("sgoc_recommendation_letter.py", *TINY, "seed=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(Path(last.removeprefix("summary: ")).read_text())
    assert summary["seed"] == 3 and summary["run_dir"].startswith(str(tmp_path))
    assert (Path(summary["run_dir"]) / "csv" / "scalars" / "eval" / "sender_reward.csv").exists()
