"""The posterior obedience margin: epsilon per unit of message probability, so unsent messages are unconstrained."""
from __future__ import annotations

import pytest
import torch

from msgzoo.envs import recommendation_letter
from msgzoo.objectives import ObedienceConstraintLoss
from test_objectives import W_RECEIVER_KEY, collect, default_modules


def _setup(num_messages=3):
    torch.manual_seed(0)
    scheme, receiver, critic = default_modules(num_messages, w_key=W_RECEIVER_KEY)
    batch = collect(recommendation_letter(num_envs=256, num_messages=num_messages, seed=0), scheme, receiver)
    return scheme, receiver, critic, batch


def _phi_mean(loss, batch):
    from msgzoo.objectives.common import scheme_logits

    return torch.softmax(scheme_logits(loss.scheme_network, batch, loss.tensor_keys.logits), -1).mean(0).detach()


def test_posterior_margin_is_a_hinge_on_c_minus_eps_times_p():
    scheme, receiver, critic, batch = _setup()
    loss = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="all", epsilon=0.5, margin="posterior",
                                   lagrange_multiplier=2.0, gamma=0.0, num_messages=3)
    out = loss(batch)
    matrix = loss.constraint_matrix(batch).detach()
    bound = 0.5 * _phi_mean(loss, batch).unsqueeze(-1).expand(3, 3)
    off = ~torch.eye(3, dtype=torch.bool)
    torch.testing.assert_close(out["loss_obedience"].detach(), 2.0 * torch.relu(bound[off] - matrix[off]).sum())
    assert out["violation_rate"] == (matrix[off] < bound[off]).float().mean()


def test_an_unsent_message_is_constrained_only_by_the_joint_margin():
    scheme, receiver, critic, batch = _setup()
    with torch.no_grad():  # message 2 is (numerically) never sent: P(2) ~ 0, so C(2, .) ~ 0
        next(scheme.parameters())[2].fill_(-60.0)
    kwargs = dict(counterfactual="all", epsilon=0.1, lagrange_multiplier=1.0, gamma=0.0, num_messages=3)
    joint = ObedienceConstraintLoss(scheme, receiver, critic, margin="joint", **kwargs)
    posterior = ObedienceConstraintLoss(scheme, receiver, critic, margin="posterior", **kwargs)
    joint.critic_network_params.data.copy_(posterior.critic_network_params.data)
    row = joint.constraint_matrix(batch).detach()[2]
    assert row.abs().max() < 1e-12
    # the joint margin asks C(2, l) >= 0.1 of a message that is never sent; the posterior one asks nothing of it
    out_j, out_p = joint(batch), posterior(batch)
    matrix = joint.constraint_matrix(batch).detach()
    p = _phi_mean(joint, batch)
    off = ~torch.eye(3, dtype=torch.bool)
    assert out_j["loss_obedience"] >= 2 * 0.1 - 1e-6  # the two pairs (2, 0), (2, 1) alone
    expected = torch.relu(0.1 * p.unsqueeze(-1).expand(3, 3) - matrix)[off].sum()
    torch.testing.assert_close(out_p["loss_obedience"].detach(), expected)
    assert out_p["loss_obedience"] < out_j["loss_obedience"] - 0.19


@pytest.mark.parametrize("mode", ["dual", "dual_pairwise"])
def test_dual_modes_step_toward_the_posterior_bounds(mode):
    scheme, receiver, critic, batch = _setup()
    loss = ObedienceConstraintLoss(scheme, receiver, critic, mode=mode, counterfactual="all", epsilon=0.3,
                                   margin="posterior", lagrange_multiplier=1.0, dual_lr=0.1, gamma=0.0, num_messages=3)
    out = loss(batch)
    p = _phi_mean(loss, batch)
    expected_bounds = 0.3 * (p if mode == "dual" else p.unsqueeze(-1).expand(3, 3)[~torch.eye(3, dtype=torch.bool)])
    torch.testing.assert_close(out["constraint_bounds"], expected_bounds)
    before = loss.lagrange_multiplier.clone()
    loss.update_multipliers(out)
    step = before - 0.1 * (out["constraint_estimates"] - expected_bounds)
    torch.testing.assert_close(loss.lagrange_multiplier, step.clamp_min(0.0))
    assert sorted(loss.out_keys) == sorted(out.keys())


def test_bad_margin_is_named():
    scheme, receiver, critic, _ = _setup()
    with pytest.raises(ValueError, match="margin"):
        ObedienceConstraintLoss(scheme, receiver, critic, margin="relative")
