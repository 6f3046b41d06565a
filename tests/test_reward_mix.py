"""The sender's objective mix (cooperative warm-up, prosocial sender): schedule, batch key, wiring into losses."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from msgzoo.pipelines import one_step
from msgzoo.training.methods import (
    SENDER_OBJECTIVE_KEY,
    LinearSchedule,
    RewardMix,
    epsilon_from_config,
    lagrange_multiplier_from_config,
    schedule_over_warmup,
    reward_mix_from_config,
)
from recipes import build_method


def test_schedule_is_linear_then_constant():
    w = LinearSchedule(start=1.0, end=0.0, frames=100)
    assert [w.value(f) for f in (0, 25, 50, 100, 10_000)] == [1.0, 0.75, 0.5, 0.0, 0.0]
    prosocial = LinearSchedule(0.5, 0.5, 1)
    assert prosocial.value(0) == prosocial.value(10**9) == 0.5


def test_schedule_with_a_late_start():
    eps = LinearSchedule(start=0.01, end=0.0, frames=1000, begin=200)  # constant until 200, then linear to 1000
    assert [eps.value(f) for f in (0, 200, 600, 1000, 5000)] == [0.01, 0.01, 0.005, 0.0, 0.0]


@pytest.mark.parametrize(
    "loss, warmup_frames, expected",
    [
        (dict(epsilon=0.01, epsilon_final=0.0), 300, LinearSchedule(0.01, 0.0, 1000, begin=300)),
        (dict(epsilon=0.01, epsilon_final=0.0), 0, LinearSchedule(0.01, 0.0, 1000, begin=0)),  # no warm-up: from 0
        (dict(epsilon=0.01, epsilon_final=0.0), 5000, LinearSchedule(0.01, 0.0, 1000, begin=999)),  # warm-up > budget
        (dict(epsilon=0.3, epsilon_final=None), 300, None),  # the paper protocol: a constant epsilon
        (dict(epsilon=0.01, epsilon_final=0.01), 300, None),
        (dict(epsilon=0.01), 300, None),  # a config without the field (Reaching Goals)
    ],
)
def test_epsilon_schedule_from_config(loss, warmup_frames, expected):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"loss": loss, "warmup": {"frames": warmup_frames}, "collector": {"total_frames": 1000}})
    assert epsilon_from_config(cfg) == expected


def test_the_trainer_moves_epsilon_on_each_seeds_env_steps(recipe_config, tmp_path):
    """4 batches of 32 students, epsilon 0.01 until 32 steps, 0 at 128: the sender updates (the 2nd and 4th batches)
    see the schedule's value at 32 and 96 env steps."""
    from msgzoo.runtime.experiment import Experiment
    from msgzoo.training.trainer import Trainer

    cfg = recipe_config("sgoc_recommendation_letter", "env.num_envs=32", "collector.total_frames=128",
                        "warmup.frames=32", "loss.epsilon=0.01", "loss.epsilon_final=0.0")
    env = one_step.make_env(cfg)
    method = build_method("sgoc", env, cfg)
    assert method.epsilon == LinearSchedule(0.01, 0.0, 128, begin=32)
    obedience = method.sender_losses["obedience"]
    seen = []
    forward = obedience.forward
    obedience.forward = lambda td: seen.append(obedience.epsilon) or forward(td)
    exp = Experiment(method="sgoc", task="t", seed=0, config={}, backends=("csv",), run_dir=tmp_path / "run")
    with exp:
        Trainer(env, method, exp, total_frames=128, frames_per_batch=32, log_interval=2).train()
    assert seen == pytest.approx([0.01, 0.01 * (1 - (96 - 32) / 96)])


@pytest.mark.parametrize(
    "loss, expected",
    [
        (dict(lagrange_multiplier=10.0, lagrange_multiplier_final=20.0), LinearSchedule(10.0, 20.0, 1000, begin=300)),
        (dict(lagrange_multiplier=10.0, lagrange_multiplier_final=None), None),  # a constant lambda
        (dict(lagrange_multiplier=10.0, lagrange_multiplier_final=10.0), None),
        (dict(lagrange_multiplier=1.0), None),  # a config without the field
    ],
)
def test_lagrange_multiplier_schedule_from_config(loss, expected):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"loss": loss, "warmup": {"frames": 300}, "collector": {"total_frames": 1000}})
    assert lagrange_multiplier_from_config(cfg) == expected


@pytest.mark.parametrize("method", ["sgoc", "pgoc"])
def test_the_trainer_moves_the_multiplier_on_each_seeds_env_steps(recipe_config, tmp_path, method):
    """As epsilon: lambda 10 until 32 steps, 20 at 128; the sender updates (the 2nd and 4th batches) see the
    schedule's value at 32 and 96 env steps, and the loss's penalty scales with it."""
    from msgzoo.runtime.experiment import Experiment
    from msgzoo.training.trainer import Trainer

    cfg = recipe_config(f"{method}_recommendation_letter", "env.num_envs=32", "collector.total_frames=128",
                        "warmup.frames=32", "loss.lagrange_multiplier=10", "loss.lagrange_multiplier_final=20")
    env = one_step.make_env(cfg)
    built = build_method(method, env, cfg)
    obedience = built.sender_losses["obedience"]
    seen = []
    forward = obedience.forward
    obedience.forward = lambda td: seen.append(obedience.lagrange_multiplier.clone()) or forward(td)
    exp = Experiment(method=method, task="t", seed=0, config={}, backends=("csv",), run_dir=tmp_path / "run")
    with exp:
        Trainer(env, built, exp, total_frames=128, frames_per_batch=32, log_interval=2).train()
    assert [float(lam.mean()) for lam in seen] == pytest.approx([10.0, 10.0 + 10.0 * (96 - 32) / 96])
    assert all(torch.all(lam == lam.flatten()[0]) for lam in seen)  # one value for every seed and pair


def test_a_multiplier_schedule_with_dual_ascent_fails_naming_the_field(recipe_config):
    from msgzoo.runtime.config_validation import ConfigError, validate_config

    cfg = recipe_config("sgoc_recommendation_letter", "loss.obedience_mode=dual", "loss.lagrange_multiplier_final=20")
    with pytest.raises(ConfigError, match=r"loss.lagrange_multiplier_final=20.*null with loss.obedience_mode=dual"):
        validate_config(cfg, method="sgoc")
    validate_config(recipe_config("sgoc_recommendation_letter", "loss.obedience_mode=dual",
                                  "loss.lagrange_multiplier_final=null"), method="sgoc")


def test_write_mixes_the_next_rewards_and_leaves_them_alone():
    batch = TensorDict({"next": {"sender": {"reward": torch.tensor([[1.0], [2.0]])},
                                 "receiver": {"reward": torch.tensor([[-1.0], [4.0]])}}}, batch_size=[2])
    RewardMix(LinearSchedule(1.0, 0.0, 100)).write(batch, frames=25)  # w = 0.75
    torch.testing.assert_close(batch["next", *SENDER_OBJECTIVE_KEY], torch.tensor([[-0.5], [3.5]]))
    torch.testing.assert_close(batch["next", "sender", "reward"], torch.tensor([[1.0], [2.0]]))  # true reward kept


@pytest.mark.parametrize(
    "final, warmup, mix, joint",
    [
        (0.0, dict(frames=500, receiver_weight=0.0, joint_epsilon=0.0), None, None),  # the paper's sender
        (0.0, dict(frames=0, receiver_weight=1.0, joint_epsilon=0.1), None, None),  # no warm-up time
        (0.0, dict(frames=200, receiver_weight=1.0, joint_epsilon=0.1), LinearSchedule(1.0, 0.0, 200),
         LinearSchedule(0.1, 0.0, 200)),
        (0.5, dict(frames=0, receiver_weight=0.0, joint_epsilon=0.0), LinearSchedule(0.5, 0.5, 1), None),
    ],
)
def test_from_config(final, warmup, mix, joint):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"sender_objective": {"receiver_weight": final}, "warmup": warmup, "loss": {}})
    assert reward_mix_from_config(cfg) == (None if mix is None else RewardMix(mix))
    assert schedule_over_warmup(cfg, "joint_epsilon") == joint
    cfg.loss.joint_epsilon = 0.02  # the floor it moves to
    if joint is not None:
        assert schedule_over_warmup(cfg, "joint_epsilon") == LinearSchedule(joint.start, 0.02, joint.frames)


@pytest.mark.parametrize("method, loss_name", [("sgoc", "signaling"), ("pgoc", "policy_gradient")])
def test_sender_losses_learn_from_the_mixed_reward(recipe_config, method, loss_name):
    env_cfg = recipe_config(f"{method}_recommendation_letter", "env.num_envs=64")
    env = one_step.make_env(env_cfg)
    plain = build_method(method, env, recipe_config(f"{method}_recommendation_letter", "+protocol=paper"))
    assert plain.reward_mix is None and plain.joint_epsilon is None
    assert plain.sender_losses[loss_name].tensor_keys.reward == ("sender", "reward")
    cfg = recipe_config(f"{method}_recommendation_letter", "warmup.receiver_weight=1.0", "warmup.frames=500",
                        "warmup.joint_epsilon=0.1")
    mixed = build_method(method, env, cfg)
    assert mixed.reward_mix == RewardMix(LinearSchedule(1.0, 0.0, 500))
    assert mixed.joint_epsilon == LinearSchedule(0.1, 0.0, 500)  # both methods have the obedience loss
    assert mixed.sender_losses[loss_name].tensor_keys.reward == SENDER_OBJECTIVE_KEY
    if "obedience" in mixed.sender_losses:  # W^j still learns the receiver's own reward
        assert mixed.sender_losses["obedience"].tensor_keys.reward == ("receiver", "reward")


def test_a_fully_cooperative_sender_gets_the_receivers_gradient(recipe_config):
    """With w = 1 the signaling loss on a batch equals the loss on a batch whose sender reward is the receiver's."""
    cfg = recipe_config("sg_recommendation_letter", "env.num_envs=256", "loss.sender_gamma=0.0", "+protocol=paper")
    env = one_step.make_env(cfg)
    torch.manual_seed(0)
    method = build_method("sg", env, cfg)
    loss = method.sender_losses["signaling"]
    batch = env.rollout(1, method.policy).squeeze(-1)
    swapped = batch.clone()
    swapped["next", "sender", "reward"] = batch["next", "receiver", "reward"]
    expected = loss(swapped)["loss_critic"]
    RewardMix(LinearSchedule(1.0, 1.0, 1)).write(batch, frames=0)
    loss.set_keys(reward=SENDER_OBJECTIVE_KEY)
    torch.testing.assert_close(loss(batch)["loss_critic"], expected)
