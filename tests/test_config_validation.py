"""A bad config fails before any training, with an error naming the field, the value and the fix."""
from __future__ import annotations

import pytest

from msgzoo.runtime.config_validation import ConfigError, validate_config

BAD_ONE_STEP = [
    ("optim.signaling_lr=-0.001", "optim.signaling_lr=-0.001"),
    ("optim.receiver_actor_lr=0", "optim.receiver_actor_lr=0"),
    ("loss.sender_gamma=1.5", "loss.sender_gamma=1.5"),
    ("loss.lagrange_multiplier=-1", "loss.lagrange_multiplier=-1"),
    ("loss.obedience_mode=strict", "loss.obedience_mode='strict'"),
    ("loss.counterfactual=some", "loss.counterfactual='some'"),
    ("env.num_messages=1", "env.num_messages=1"),
    ("env.num_envs=0", "env.num_envs=0"),
    ("collector.total_frames=0", "collector.total_frames=0"),
    ("env.game=poker", "env.game='poker'"),
    ("device=cuda:7", "device='cuda:7'"),
    ("logger.log_interval=0", "logger.log_interval=0"),
    ("logger.wandb_mode=maybe", "logger.wandb_mode='maybe'"),
    ("resume=/nonexistent/checkpoint.pt", "resume='/nonexistent/checkpoint.pt'"),
    ("env.prior=[0.5,0.5]", "env.sender_utility=None"),
]


@pytest.mark.parametrize("override,named", BAD_ONE_STEP)
def test_bad_one_step_config_names_field_value_and_fix(recipe_config, override, named):
    cfg = recipe_config("sgoc_recommendation_letter", override)
    if override.startswith("device=cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA machine accepts the device")
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, method=cfg.method)
    message = str(err.value)
    assert named in message and "Fix:" in message


def test_defaults_pass(recipe_config):
    for method in ("sgoc", "sg", "pgoc", "pg", "dial"):
        cfg = recipe_config(f"{method}_recommendation_letter")
        validate_config(cfg, method=method)


def test_dial_fields_checked_only_for_dial(recipe_config):
    cfg = recipe_config("dial_recommendation_letter", "dial.eps_init=2")
    with pytest.raises(ConfigError, match=r"dial.eps_init=2"):
        validate_config(cfg, method="dial")
    validate_config(recipe_config("sgoc_recommendation_letter", "dial.eps_init=2"), method="sgoc")


def test_unknown_method_is_refused(recipe_config):
    with pytest.raises(ConfigError, match="method='ppo'"):
        validate_config(recipe_config("sgoc_recommendation_letter"), method="ppo")


def test_recipe_fails_fast_from_the_command_line(tmp_path):
    from conftest import run_recipe

    proc = run_recipe("sgoc_recommendation_letter.py", "optim.signaling_lr=-1", "logger.backends=[csv]", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "optim.signaling_lr=-1 is invalid" in proc.stderr and "Fix:" in proc.stderr
    assert not list(tmp_path.rglob("checkpoint.pt"))  # nothing was trained


BAD_REACHING_GOALS = [
    ("env.height=1", "env.height=1"),
    ("env.receiver_observes=[colour]", "env.receiver_observes="),
    ("collector.total_episodes=0", "collector.total_episodes=0"),
    ("env.steps_per_batch=0", "env.steps_per_batch=0"),
    ("optim.sender_critic_lr=-3e-4", "optim.sender_critic_lr=-0.0003"),
    ("loss.receiver_gamma=-0.1", "loss.receiver_gamma=-0.1"),
]


@pytest.mark.parametrize("override,named", BAD_REACHING_GOALS)
def test_bad_reaching_goals_config_names_field(recipe_config, override, named):
    cfg = recipe_config("sgoc_reaching_goals", override)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, method="sgoc")
    assert named in str(err.value) and "Fix:" in str(err.value)


def test_reaching_goals_defaults_pass(recipe_config):
    for method in ("sgoc", "sg", "pgoc", "pg", "dial"):
        validate_config(recipe_config(f"{method}_reaching_goals"), method=method)
    validate_config(recipe_config("sgoc_reaching_goals", "map=5x5"), method="sgoc")
