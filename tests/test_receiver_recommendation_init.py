"""``network.receiver_recommendation_logit``: the receiver's initial policy reads message k as "take action k" (a
one-step game), or a message cell as "go there" (Reaching Goals)."""
from __future__ import annotations

import pytest
import torch
from torch.nn.functional import one_hot

from msgzoo.modules.receiver import moves_toward
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


def test_a_negative_logit_fails_naming_the_field(recipe_config):
    with pytest.raises(ConfigError, match=r"network\.receiver_recommendation_logit"):
        validate_config(recipe_config("sgoc_recommendation_letter", "network.receiver_recommendation_logit=-1"),
                        method="sgoc")
    validate_config(recipe_config("sgoc_reaching_goals", "network.receiver_recommendation_logit=4"), method="sgoc")
    validate_config(recipe_config("dial_reaching_goals", "network.receiver_recommendation_logit=1"), method="dial")


@pytest.mark.parametrize("map_name, observes", [("3x3", "[position]"), ("5x5", "[]"), ("3x3", "[position,goal]")])
def test_a_grid_receiver_starts_by_moving_toward_the_message_cell(recipe_config, map_name, observes):
    """On a grid the message is a cell: the initial policy moves toward it (from the receiver's position, or from
    the grid's centre when it sees the message only), in every seed of an ensemble."""
    cfg = recipe_config("sgoc_reaching_goals", f"map={map_name}", f"env.receiver_observes={observes}")
    env = reaching_goals.make_env(cfg, num_envs=4, num_seeds=2)
    nets = Networks(env, hidden=cfg.network.hidden, seeds=[0, 1])
    receiver = nets.receiver(4, recommendation_logit=4.0)
    h, w = env.height, env.width
    cells = torch.arange(h * w)
    position, message = (c.flatten() for c in torch.meshgrid(cells, cells, indexing="ij"))
    observation = torch.zeros(len(message), env.num_receiver_channels, h * w)
    for channel, item in enumerate(env.receiver_observes):  # the goal anywhere: the prior ignores it
        observation[torch.arange(len(message)), channel, position if item == "position" else (position + 3) % (h * w)] = 1
    observation = observation.reshape(len(message), -1, h, w)
    probs = receiver(observation.expand(2, *observation.shape), one_hot(message, h * w).expand(2, -1, -1)).softmax(-1)
    source = position if "position" in env.receiver_observes else torch.full_like(message, (h // 2) * w + w // 2)
    toward = moves_toward(w, source, message)
    on_the_way = (probs * toward).sum(-1)[:, toward.any(-1)]  # pairs where some move gets closer
    assert on_the_way.min() > 0.9  # ~0.95 for one such move at logit 4, ~0.98 for two
    # the two seeds' receivers are separate initialisations, each fitted
    assert not torch.allclose(probs[0], probs[1], atol=1e-6)


def test_the_grid_prior_is_only_an_initialisation(recipe_config):
    """Logit 0 leaves a grid receiver's random init as it was; a positive one moves every parameter (the reference's
    network, fitted), and nothing else of the method changes."""
    env = reaching_goals.make_env(recipe_config("sgoc_reaching_goals"), num_envs=2)
    torch.manual_seed(0)
    plain = Networks(env).receiver(4)
    torch.manual_seed(0)
    zero = Networks(env).receiver(4, recommendation_logit=0.0)
    torch.manual_seed(0)
    fitted = Networks(env).receiver(4, recommendation_logit=4.0)
    for a, b, c in zip(plain.parameters(), zero.parameters(), fitted.parameters()):
        assert torch.equal(a, b) and a.shape == c.shape and not torch.equal(a, c)
