"""Several receivers (issue 18 item 1), the learning side: message routing, the receivers as one actor over action
profiles (eq. 2's log-pi term summed over receivers), obedience per receiver (eq. 4), the voting recipe."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_receivers import _gains
from torchrl.envs.utils import ExplorationType, set_exploration_type

from msgzoo.envs import MultiReceiverPersuasionEnv
from msgzoo.game_theory.optimal_scheme_receivers import optimal_multi_receiver_scheme, voting_game
from msgzoo.modules import VectorNet, make_action_value_critic, make_signaling_scheme
from msgzoo.modules.receivers_group import (
    MessageRouting,
    ReceiversNet,
    make_joint_receivers_actor,
    make_receivers_actor,
    make_receivers_policy,
)
from msgzoo.objectives import ReceiversObedienceLoss, SignalingGradientLoss, receivers_obedience_matrix
from msgzoo.pipelines.multi_receiver import no_information_value, run

GAME = voting_game(costs=[0.5, 1.0, 2.0])
PROFILES = torch.tensor([[m // 4 % 2, m // 2 % 2, m % 2] for m in range(8)])


def _utilities_as_critic(ur):
    """W_j(s, a) = u_j(s, a): ``[S, N, |A|^N]``."""
    ur = torch.as_tensor(ur, dtype=torch.float64)
    return ur.permute(1, 0, *range(2, ur.ndim)).reshape(ur.shape[1], ur.shape[0], -1)


def _parts(signaling="private", seed=0):
    torch.manual_seed(seed)
    env = MultiReceiverPersuasionEnv(*GAME, signaling=signaling, num_envs=256, seed=seed, validate_actions=True)
    routing = MessageRouting(3, env.num_messages, signaling)
    net = ReceiversNet(3, 0, routing.view_size, 2)
    scheme = make_signaling_scheme(VectorNet(2, routing.profile_size, bias=False), message_key=("sender", "profile"))
    actor = make_receivers_actor(net)
    policy = make_receivers_policy(scheme, routing, actor, 2)
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        batch = env.step(policy(env.reset()))
    return env, routing, net, scheme, actor, batch


def test_routing():
    private = MessageRouting(3, 2, "private")
    assert private.profile_size == 8 and private.view_size == 2
    views = private(torch.eye(8)).argmax(-1)  # [M, N]
    assert torch.equal(views, PROFILES)  # receiver j sees m_j, row-major like the env
    public = MessageRouting(3, 8, "public")
    torch.testing.assert_close(public(torch.eye(8)), torch.eye(8)[:, None].expand(8, 3, 8))
    with pytest.raises(ValueError, match="signaling"):
        MessageRouting(3, 2, "loud")


@pytest.mark.parametrize("signaling", ["private", "public"])
def test_policy_and_joint_actor(signaling):
    env, routing, net, scheme, actor, batch = _parts(signaling)
    assert batch["sender", "message"].shape == (256, 3, routing.view_size)
    profile = batch["sender", "action_profile"].argmax(-1)
    assert torch.equal(PROFILES[profile], batch["receivers", "action"].argmax(-1))  # the played profile
    if signaling == "public":  # every receiver sees the same message
        assert (batch["sender", "message"] == batch["sender", "message"][:, :1]).all()
    joint = make_joint_receivers_actor(net, routing, 2)
    inputs = batch.select(("receivers", "observation"), ("sender", "profile")).copy()
    log_joint = joint.get_dist(inputs).log_prob(batch["sender", "action_profile"])
    per_agent = batch["receivers", "action_log_prob"].sum(-1)  # log pi = sum_j log pi_j (eq. 2's receiver term)
    torch.testing.assert_close(log_joint, per_agent, atol=1e-5, rtol=0)


def test_signaling_gradient_loss_runs_on_the_group_unchanged():
    env, routing, net, scheme, actor, batch = _parts()
    joint = make_joint_receivers_actor(net, routing, 2)
    loss = SignalingGradientLoss(scheme, joint, make_action_value_critic(VectorNet(2, 8)), gamma=0.0, num_messages=8)
    loss.set_keys(message=("sender", "profile"), action=("sender", "action_profile"))
    out = loss(batch)
    (out["loss_signaling"] + out["loss_critic"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in scheme.parameters())
    assert all(p.grad is None for p in net.parameters())  # receivers are read, never trained by the sender


@pytest.mark.parametrize("signaling", ["private", "public"])
def test_obedience_matrix_is_the_lps_constraints(signaling):
    """Obedient receivers and exact W_j = u_j: C[j, x, x'] of any scheme is the private LP's constraint (private),
    and the LP's optimum has no negative entry in either mode, with a binding one."""
    p, us, ur = GAME
    prior = torch.tensor(p, dtype=torch.float64)
    w = _utilities_as_critic(ur)
    routing = MessageRouting(3, 2 if signaling == "private" else 8, signaling)
    obey = torch.eye(2).expand(3, 2, 2) if signaling == "private" else torch.nn.functional.one_hot(PROFILES.T, 2)
    obey = obey.double()
    rng = np.random.default_rng(0)
    phi = torch.tensor(rng.dirichlet(np.ones(8), size=2))
    c = receivers_obedience_matrix(phi, obey, w, routing, prior)
    if signaling == "private":
        g = _gains(np.asarray(p), ur)  # [N, a', S, r1, r2, r3]
        f = phi.numpy().reshape(2, 2, 2, 2)
        for j in range(3):
            for x in range(2):
                told = np.take(f * g[j, 1 - x], [x], axis=1 + j).sum()
                assert c[j, x, 1 - x].item() == pytest.approx(told, abs=1e-12)
    lp = optimal_multi_receiver_scheme(p, us, ur, signaling=signaling)
    c = receivers_obedience_matrix(lp.scheme.reshape(2, 8), obey, w, routing, prior)
    off = ~torch.eye(c.shape[-1], dtype=torch.bool).expand_as(c)
    assert c[off].min().item() >= -1e-9 and c[off].min().item() <= 1e-9


def test_obedience_loss_trains_the_scheme_and_its_critic_only():
    env, routing, net, scheme, actor, batch = _parts()
    critic = make_action_value_critic(VectorNet(2, 3 * 8), out_key=("sender", "receivers_action_value"))
    critic.module = torch.nn.Sequential(critic.module, torch.nn.Unflatten(-1, (3, 8)))
    loss = ReceiversObedienceLoss(scheme, net, critic, routing, lagrange_multiplier=20.0, epsilon=0.5)
    names = [n for n, _ in loss.named_parameters()]
    assert names and not any("receivers_net" in n for n in names)
    out = loss(batch)
    assert out["loss_obedience"] > 0  # epsilon = 0.5 is out of reach for this random scheme
    (out["loss_obedience"] + out["loss_critic"]).backward()
    assert all(p.grad is not None for p in scheme.parameters()) and all(p.grad is not None for p in critic.parameters())
    assert all(p.grad is None for p in net.parameters())


def test_no_information_value():
    assert no_information_value(*voting_game(), signaling="private") == pytest.approx(0.0, abs=1e-12)
    # a voter with cost 0.4 approves on the prior alone (1/3 >= 0.4 / 1.4): two such voters pass it
    assert no_information_value(*voting_game(costs=[0.4, 0.4, 1.0]), signaling="public") == pytest.approx(1.0)


@pytest.mark.parametrize(
    "overrides", [(), ("signaling=public", "env.num_messages=2"), ("loss.sender_gradient=expected",)]
)
def test_voting_recipe_runs(recipe_config, tmp_path, overrides):
    cfg = recipe_config("sgoc_voting", "collector.total_frames=8192", "env.num_envs=512", "num_seeds=2",
                        "warmup.frames=2048", f"run_dir={tmp_path}", *overrides)
    summary = run(cfg)
    written = json.loads((Path(tmp_path) / "summary.json").read_text())
    assert written["lp_private_sender_value"] == pytest.approx(5 / 6) and written["lp_public_sender_value"] == pytest.approx(2 / 3)
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    for s in written["seeds"]:
        assert 0.0 <= s["sender_reward"] <= 1.0 and len(s["receiver_rewards"]) == 3 and s["env_steps"] == 8192
        assert len(s["scheme"]) == 2 and len(s["scheme"][0]) == (2 if "signaling=public" in overrides else 8)
        assert np.shape(s["policies"]) == (3, 2, 2) and np.shape(s["played"]) == (2, 8)
