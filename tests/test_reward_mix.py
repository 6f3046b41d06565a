"""The sender's objective mix (cooperative warm-up, prosocial sender): schedule, batch key, wiring into losses."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from msgzoo.methods import SENDER_OBJECTIVE_KEY, RewardMix, build_method, reward_mix_from_config
from msgzoo.pipelines import one_step


def test_schedule_is_linear_then_constant():
    mix = RewardMix(start=1.0, end=0.0, anneal_frames=100)
    assert [mix.weight(f) for f in (0, 25, 50, 100, 10_000)] == [1.0, 0.75, 0.5, 0.0, 0.0]
    prosocial = RewardMix(0.5, 0.5, 1)
    assert prosocial.weight(0) == prosocial.weight(10**9) == 0.5


def test_write_mixes_the_next_rewards_and_leaves_them_alone():
    batch = TensorDict({"next": {"sender": {"reward": torch.tensor([[1.0], [2.0]])},
                                 "receiver": {"reward": torch.tensor([[-1.0], [4.0]])}}}, batch_size=[2])
    RewardMix(1.0, 0.0, 100).write(batch, frames=25)  # w = 0.75
    torch.testing.assert_close(batch["next", *SENDER_OBJECTIVE_KEY], torch.tensor([[-0.5], [3.5]]))
    torch.testing.assert_close(batch["next", "sender", "reward"], torch.tensor([[1.0], [2.0]]))  # true reward kept


@pytest.mark.parametrize(
    "section, expected",
    [
        (dict(receiver_weight=0.0, warmup_receiver_weight=0.0, warmup_fraction=0.5), None),  # the paper's sender
        (dict(receiver_weight=0.0, warmup_receiver_weight=1.0, warmup_fraction=0.0), None),  # no warm-up time
        (dict(receiver_weight=0.0, warmup_receiver_weight=1.0, warmup_fraction=0.2), RewardMix(1.0, 0.0, 200)),
        (dict(receiver_weight=0.5, warmup_receiver_weight=0.0, warmup_fraction=0.0), RewardMix(0.5, 0.5, 1)),
    ],
)
def test_from_config(section, expected):
    from omegaconf import OmegaConf

    assert reward_mix_from_config(OmegaConf.create({"sender_objective": section}), 1000) == expected


@pytest.mark.parametrize("method, loss_name", [("sgoc", "signaling"), ("pgoc", "policy_gradient")])
def test_sender_losses_learn_from_the_mixed_reward(recipe_config, method, loss_name):
    cfg = recipe_config(f"{method}_recommendation_letter", "env.num_envs=64",
                        "sender_objective.warmup_receiver_weight=1.0", "sender_objective.warmup_fraction=0.5")
    env = one_step.make_env(cfg)
    plain = build_method(method, env, cfg)  # no budget: no mix
    assert plain.reward_mix is None
    assert plain.sender_losses[loss_name].tensor_keys.reward == ("sender", "reward")
    mixed = build_method(method, env, cfg, budget_frames=1000)
    assert mixed.reward_mix == RewardMix(1.0, 0.0, 500)
    assert mixed.sender_losses[loss_name].tensor_keys.reward == SENDER_OBJECTIVE_KEY
    if "obedience" in mixed.sender_losses:  # W^j still learns the receiver's own reward
        assert mixed.sender_losses["obedience"].tensor_keys.reward == ("receiver", "reward")


def test_a_fully_cooperative_sender_gets_the_receivers_gradient(recipe_config):
    """With w = 1 the signaling loss on a batch equals the loss on a batch whose sender reward is the receiver's."""
    cfg = recipe_config("sg_recommendation_letter", "env.num_envs=256", "loss.sender_gamma=0.0")
    env = one_step.make_env(cfg)
    torch.manual_seed(0)
    method = build_method("sg", env, cfg)
    loss = method.sender_losses["signaling"]
    batch = env.rollout(1, method.policy).squeeze(-1)
    swapped = batch.clone()
    swapped["next", "sender", "reward"] = batch["next", "receiver", "reward"]
    expected = loss(swapped)["loss_critic"]
    RewardMix(1.0, 1.0, 1).write(batch, frames=0)
    loss.set_keys(reward=SENDER_OBJECTIVE_KEY)
    torch.testing.assert_close(loss(batch)["loss_critic"], expected)
