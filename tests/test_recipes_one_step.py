"""Smoke runs of the one-step recipes with tiny budgets, and the summary they must write."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_recipe
from recipes import run_recipe as run

METHODS = ["sgoc", "sg", "pgoc", "pg", "dial"]
REQUIRED = [
    "method", "task", "seed", "env_steps", "wall_time_s", "env_steps_per_s", "sender_reward", "receiver_reward",
    "lp_sender_value", "no_info_sender_value", "scheme", "policy",
]
TINY = ["collector.total_frames=4096", "env.num_envs=256", "logger.backends=[csv]", "logger.log_interval=4"]


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


# ----------------------------------------------------------------------------- a Markov persuasion game
MARKOV = ["env.game=weather_forecast", "env.num_messages=3"]


@pytest.mark.parametrize("method", METHODS)
def test_markov_game_runs_through_the_one_step_recipes(method, recipe_config, tmp_path, capsys):
    """weather_forecast (8 steps per episode) on a recipe's code path: batches of whole episodes (256 steps =
    32 games x 8), a budget in env steps, exact per-step evaluation and benchmarks on the state occupancy."""
    cfg = recipe_config(f"{method}_recommendation_letter", *TINY, *MARKOV, f"+run_dir={tmp_path}")
    summary = run(cfg, method=cfg.method)
    assert summary["task"] == "weather_forecast" and summary["horizon"] == 8
    assert summary["env_steps"] == 4096  # 16 batches of 256 steps
    assert [row["frames"] for row in summary["history"]] == [1024, 2048, 3072, 4096]
    assert summary["lp_sender_value"] == pytest.approx(0.8185, abs=1e-4)
    assert summary["no_info_sender_value"] == pytest.approx(0.1156, abs=1e-4)
    assert summary["state_occupancy"] == pytest.approx([0.2894, 0.4623, 0.2483], abs=1e-4)
    assert len(summary["scheme"]) == 3 and len(summary["policy"][0]) == 3
    # exact per-step values and per-step train rewards: within the payoff range
    assert -0.5 <= summary["sender_reward"] <= 1.5 and -1.0 <= summary["receiver_reward"] <= 0.7690 + 1e-6
    assert all(-0.5 <= row["train/sender_reward"] <= 1.5 for row in summary["history"])
    assert 0.0 <= summary["receiver_regret"]


def test_markov_game_several_seeds_and_discounts(recipe_config, tmp_path):
    cfg = recipe_config(
        "sgoc_recommendation_letter", *TINY, *MARKOV, f"+run_dir={tmp_path}", "num_seeds=2",
        "loss.sender_gamma=0.9", "loss.receiver_gamma=0.9",
    )
    summary = run(cfg, method="sgoc")
    assert summary["num_seeds"] == 2 and summary["env_steps"] == 2 * 4096 and summary["env_steps_per_seed"] == 4096
    assert summary["lp_sender_value"] == pytest.approx(0.8185, abs=1e-4)
    for seed in (0, 1):
        written = json.loads((tmp_path / f"seed{seed}" / "summary.json").read_text())
        assert written["seed"] == seed and written["env_steps"] == 4096 and written["horizon"] == 8


def test_any_markov_game_is_a_config_away(recipe_config, tmp_path):
    game = [
        "env.prior=[1.0,0.0]", "env.sender_utility=[[0,1],[0,1]]", "env.receiver_utility=[[1,0],[0,1]]",
        "env.transition=[[0,1],[1,0]]", "env.horizon=4",
    ]
    cfg = recipe_config("pgoc_recommendation_letter", *TINY, f"+run_dir={tmp_path}", *game)
    summary = run(cfg, method="pgoc")
    assert summary["horizon"] == 4 and summary["state_occupancy"] == [0.5, 0.5]  # the chain alternates
    bad = recipe_config("pgoc_recommendation_letter", *TINY, f"+run_dir={tmp_path}", *game[:3], "env.horizon=4")
    with pytest.raises(ValueError, match="horizon"):  # several steps need a chain
        run(bad, method="pgoc")
    bad = recipe_config("pgoc_recommendation_letter", *TINY, f"+run_dir={tmp_path}", *game[:4], "env.horizon=2.5")
    with pytest.raises(ValueError, match="env.horizon"):
        run(bad, method="pgoc")


def test_markov_game_stopped_run_continues_exactly(recipe_config, tmp_path):
    """Stopped at half its budget and resumed, a Markov-game run ends where the uninterrupted run ends."""
    small = ["env.num_envs=16", "logger.backends=[csv]", "logger.log_interval=5", "seed=1", *MARKOV]

    def cfg(name, budget, *extra):
        return recipe_config("sgoc_recommendation_letter", *small, f"collector.total_frames={budget}",
                             f"+run_dir={tmp_path / name}", *extra)

    full = run(cfg("full", 640), method="sgoc")
    run(cfg("stopped", 320), method="sgoc")
    resumed = run(cfg("resumed", 640, f"resume={tmp_path / 'stopped' / 'checkpoint.pt'}"), method="sgoc")
    for key in ("sender_reward", "receiver_reward", "scheme", "policy", "env_steps"):
        assert resumed[key] == full[key], key


@pytest.mark.parametrize(
    "game", [[], [*MARKOV, "loss.sender_gamma=0.9"]], ids=["recommendation_letter", "weather_forecast_discounted"]
)
def test_the_expected_signaling_gradient_runs_through_the_recipes(game, recipe_config, tmp_path):
    cfg = recipe_config("sgoc_recommendation_letter", *TINY, *game, "num_seeds=2", "loss.sender_gradient=expected",
                        f"+run_dir={tmp_path}")
    summary = run(cfg, method="sgoc")
    assert summary["num_seeds"] == 2 and summary["env_steps_per_seed"] == 4096
    for seed in (0, 1):
        written = json.loads((tmp_path / f"seed{seed}" / "summary.json").read_text())
        assert written["seed"] == seed and -1.0 <= written["sender_reward"] <= 1.5
