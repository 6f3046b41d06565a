"""``network.receiver_recommendation_logit``: the receiver's initial policy reads message k as "take action k"."""
from __future__ import annotations

import pytest
import torch

from msgzoo.pipelines import one_step, reaching_goals
from msgzoo.runtime.config_validation import validate_config
from msgzoo.training.config_schema import ConfigError
from msgzoo.training.methods import Networks
from recipes import build_method

METHODS = ["sg", "sgoc", "pg", "pgoc"]


def receiver_weight(method, cfg, *, seeds=None) -> torch.Tensor:
    """The receiver's (bias-free, linear) weight ``[.., action, observation + message]`` as ``method`` builds it."""
    env = one_step.make_env(cfg, num_seeds=len(seeds) if seeds else 1)
    torch.manual_seed(0)  # a single run draws from the global generator (an ensemble, from its seeds')
    (weight,) = list(build_method(method, env, cfg, seeds=seeds).receiver.parameters())
    return weight.detach()


@pytest.mark.parametrize("method", METHODS)
def test_the_logit_is_added_to_message_k_action_k_after_the_same_random_init(recipe_config, method):
    name = f"{method}_recommendation_letter"
    base = recipe_config(name, "env.num_messages=3", "network.receiver_recommendation_logit=0")  # 2 actions, 3 messages
    shifted = recipe_config(name, "env.num_messages=3", "network.receiver_recommendation_logit=2.5")
    for seeds in (None, [0, 3]):  # one run, and an ensemble of seeds (each member shifted)
        w0, w1 = receiver_weight(method, base, seeds=seeds), receiver_weight(method, shifted, seeds=seeds)
        added = torch.zeros(w0.shape[-2:])
        d = w0.shape[-1] - 3  # the receiver's observation comes first, then the one-hot message
        added[0, d + 0] = added[1, d + 1] = 2.5
        torch.testing.assert_close(w1 - w0, added.expand_as(w0))


def test_the_initial_policy_follows_the_recommendation(recipe_config):
    env = one_step.make_env(recipe_config("sgoc_recommendation_letter"))
    net = Networks(env).receiver(2, recommendation_logit=4.0)
    probs = net(torch.zeros(2, 0), torch.eye(2)).softmax(-1)
    assert (probs.diagonal() > 0.9).all()  # message k -> action k


def test_a_negative_logit_and_a_logit_on_a_grid_fail_naming_the_field(recipe_config):
    with pytest.raises(ConfigError, match=r"network\.receiver_recommendation_logit"):
        validate_config(recipe_config("sgoc_recommendation_letter", "network.receiver_recommendation_logit=-1"),
                        method="sgoc")
    grid = recipe_config("sgoc_reaching_goals", "network.receiver_recommendation_logit=1")
    with pytest.raises(ConfigError, match=r"network\.receiver_recommendation_logit.*cells, not actions"):
        validate_config(grid, method="sgoc")
    validate_config(recipe_config("dial_reaching_goals", "network.receiver_recommendation_logit=1"), method="dial")
    with pytest.raises(ValueError, match=r"network\.receiver_recommendation_logit"):
        Networks(reaching_goals.make_env(grid)).receiver(5, recommendation_logit=1.0)

