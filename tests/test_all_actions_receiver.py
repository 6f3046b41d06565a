"""The receiver's all-actions policy gradient (:class:`AllActionsA2CLoss`, ``loss.receiver_gradient=all_actions``):
its keys, its gradient (the A2C gradient's expectation, computed exactly), its critic's target, and the recipes'
option."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives import A2CLoss

from msgzoo.modules import (
    ObservationMessageNet, VectorNet, make_action_value_critic, make_receiver_actor, make_value_critic,
)
from msgzoo.objectives import AllActionsA2CLoss, make_receiver_a2c_loss
from msgzoo.pipelines import one_step
from msgzoo.runtime.config_validation import validate_config
from msgzoo.runtime.experiment import Experiment
from msgzoo.training.config_schema import ConfigError
from msgzoo.training.trainer import Trainer
from recipes import build_method

F64 = torch.float64
Q_KEY = ("receiver", "action_value")
# A tabular receiver: pi(. | sigma) and Q(sigma, .) for two messages and three actions (no observation).
PI = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], dtype=F64)
Q = torch.tensor([[1.0, 1.01, 0.99], [0.0, -0.5, 0.25]], dtype=F64)


def tabular(pi: torch.Tensor = PI, q: torch.Tensor = Q):
    """An actor with ``softmax = pi[sigma]`` and a critic with ``Q(sigma, .) = q[sigma]`` (bias-free linear maps
    of the one-hot message)."""
    m, a = pi.shape
    actor = make_receiver_actor(ObservationMessageNet(VectorNet(m, a, bias=False))).to(F64)
    critic = make_action_value_critic(
        ObservationMessageNet(VectorNet(m, a, bias=False)),
        in_keys=[("receiver", "observation"), ("sender", "message")], out_key=Q_KEY).to(F64)
    with torch.no_grad():
        (actor_w,), (critic_w,) = list(actor.parameters()), list(critic.parameters())
        actor_w.copy_(pi.log().T)
        critic_w.copy_(q.T)
    return actor, critic


def batch(messages: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, *, next_messages=None, terminated=True):
    n, (m, a) = len(messages), PI.shape
    eye_m, eye_a = torch.eye(m, dtype=F64), torch.eye(a, dtype=F64)
    nxt = {("receiver", "reward"): rewards.reshape(n, 1).to(F64),
           "terminated": torch.full((n, 1), terminated), "done": torch.full((n, 1), terminated),
           ("receiver", "observation"): torch.zeros(n, 0, dtype=F64),
           ("sender", "message"): eye_m[next_messages if next_messages is not None else messages]}
    td = TensorDict({("receiver", "observation"): torch.zeros(n, 0, dtype=F64), ("sender", "message"): eye_m[messages],
                     ("receiver", "action"): eye_a[actions]}, batch_size=[n])
    td.set("next", TensorDict(nxt, batch_size=[n]))
    return td


def logits_grad(loss_module, td, term: str) -> torch.Tensor:
    actor = loss_module.actor_network
    actor.zero_grad()
    loss_module(td)[term].backward()
    (w,) = list(actor.parameters())
    return w.grad.T.clone()  # [message, action]: d loss / d logit(a | sigma)


def test_keys_and_outputs():
    actor, critic = tabular()
    loss = AllActionsA2CLoss(actor, critic)
    keys = loss.tensor_keys
    assert (keys.action, keys.reward, keys.action_value, keys.terminated) == (
        ("receiver", "action"), ("receiver", "reward"), Q_KEY, "terminated")
    assert ("next", "sender", "message") not in loss.in_keys  # gamma 0: no bootstrap
    assert ("next", "sender", "message") in AllActionsA2CLoss(actor, critic, gamma=0.5).in_keys
    out = loss(batch(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([1.0, 0.0])))
    assert sorted(out.keys()) == sorted(loss.out_keys) == ["entropy", "loss_critic", "loss_objective", "state_value"]
    with_bonus = AllActionsA2CLoss(actor, critic, entropy_coeff=0.1)
    assert "loss_entropy" in with_bonus.out_keys
    with_bonus.entropy_coeff = 0.05  # schedulable, as TorchRL's A2C's (prepare_receiver sets it in place)
    assert float(with_bonus.entropy_coeff) == pytest.approx(0.05)


def test_the_policy_gradient_is_every_actions_advantage():
    """d loss_objective / d logit(a | sigma) = -P(sigma) pi(a | sigma) (Q(sigma, a) - V(sigma)): no sampled action in
    it (two batches with different actions give the same gradient)."""
    actor, critic = tabular()
    messages = torch.tensor([0, 0, 0, 1])
    loss = AllActionsA2CLoss(actor, critic)
    got = logits_grad(loss, batch(messages, torch.tensor([0, 1, 2, 0]), torch.zeros(4)), "loss_objective")
    again = logits_grad(loss, batch(messages, torch.tensor([2, 2, 1, 1]), torch.ones(4)), "loss_objective")
    share = torch.tensor([3 / 4, 1 / 4], dtype=F64).unsqueeze(-1)
    v = (PI * Q).sum(-1, keepdim=True)
    torch.testing.assert_close(got, -share * PI * (Q - v))
    torch.testing.assert_close(again, got)


def test_the_natural_gradient_moves_each_logit_by_its_advantage():
    """natural=True: d loss_objective / d logit(a | sigma) = -P(sigma) (A(sigma, a) - mean_b A(sigma, b)), the
    natural policy gradient of a tabular softmax policy (Kakade, 2001) up to a shift of every logit: no pi(a)
    factor, so an action the receiver has all but dropped moves as fast as any other once it is better."""
    actor, critic = tabular()
    loss = AllActionsA2CLoss(actor, critic, natural=True)
    got = logits_grad(loss, batch(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 0]), torch.zeros(4)),
                      "loss_objective")
    advantage = Q - (PI * Q).sum(-1, keepdim=True)
    share = torch.tensor([3 / 4, 1 / 4], dtype=F64).unsqueeze(-1)
    torch.testing.assert_close(got, -share * (advantage - advantage.mean(-1, keepdim=True)))


def test_it_is_the_expectation_of_torchrls_a2c_gradient():
    """On a batch whose actions follow pi exactly (pi = 0.5/0.3/0.2 and 0.1/0.6/0.3: 5, 3, 2 and 1, 6, 3 rows per
    message), rewards Q(sigma, a) and an exact critic V(sigma), TorchRL's A2C gradient is its expectation over the
    action: the all-actions gradient's."""
    actor, critic = tabular()
    counts = (PI * 10).round().long()
    messages = torch.arange(2).repeat_interleave(10)
    actions = torch.cat([torch.arange(3).repeat_interleave(c) for c in counts])
    td = batch(messages, actions, Q[messages, actions])
    v_critic = make_value_critic(ObservationMessageNet(VectorNet(2, 1, bias=False)).to(F64),
                                 in_keys=[("receiver", "observation"), ("sender", "message")],
                                 out_key=("receiver", "state_value"))
    with torch.no_grad():
        list(v_critic.parameters())[0].copy_((PI * Q).sum(-1, keepdim=True).T)
    a2c = make_receiver_a2c_loss(actor, v_critic, gamma=0.0)
    torch.testing.assert_close(logits_grad(a2c, td.clone(), "loss_objective"),
                               logits_grad(AllActionsA2CLoss(actor, critic), td, "loss_objective"))


def test_the_critic_learns_the_action_taken_and_bootstraps_expected_sarsa():
    actor, critic = tabular()
    messages, actions, rewards = torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([2.0, -1.0])
    out = AllActionsA2CLoss(actor, critic)(batch(messages, actions, rewards))
    taken = Q[messages, actions]
    torch.testing.assert_close(out["loss_critic"], ((taken - rewards.to(F64)) ** 2).mean())
    # gamma 0.5, not terminated: the target adds 0.5 x sum_a pi(a | sigma') Q(sigma', a) at the next message
    nxt = torch.tensor([1, 0])
    td = batch(messages, actions, rewards, next_messages=nxt, terminated=False)
    out = AllActionsA2CLoss(actor, critic, gamma=0.5)(td)
    target = rewards.to(F64) + 0.5 * (PI[nxt] * Q[nxt]).sum(-1)
    torch.testing.assert_close(out["loss_critic"], ((taken - target) ** 2).mean())


def test_bad_arguments_and_a_critic_of_the_wrong_width_fail_naming_them():
    actor, critic = tabular()
    with pytest.raises(ValueError, match="gamma"):
        AllActionsA2CLoss(actor, critic, gamma=1.5)
    with pytest.raises(ValueError, match="entropy_coeff"):
        AllActionsA2CLoss(actor, critic, entropy_coeff=-1.0)
    narrow = make_action_value_critic(ObservationMessageNet(VectorNet(2, 1)).to(F64),
                                      in_keys=[("receiver", "observation"), ("sender", "message")], out_key=Q_KEY)
    with pytest.raises(ValueError, match="one output per action"):
        AllActionsA2CLoss(actor, narrow)(batch(torch.tensor([0]), torch.tensor([0]), torch.zeros(1)))


@pytest.mark.parametrize("method", ["sg", "sgoc", "pg", "pgoc"])
def test_the_recipes_build_it_by_config_and_train(recipe_config, tmp_path, method):
    overrides = ("env.num_envs=32", "collector.total_frames=128", "warmup.frames=64")
    cfg = recipe_config(f"{method}_recommendation_letter", *overrides, "loss.receiver_gradient=all_actions",
                        "warmup.receiver_entropy_coeff=0.1")
    two_seeds = build_method(method, one_step.make_env(cfg, num_seeds=2), cfg, seeds=[0, 1])
    assert isinstance(two_seeds.receiver_loss, AllActionsA2CLoss) and two_seeds.receiver_loss.ensemble_shape == (2,)
    default = build_method(method, one_step.make_env(cfg), recipe_config(f"{method}_recommendation_letter"))
    assert isinstance(default.receiver_loss, A2CLoss)  # the default: TorchRL's A2C (sampled)

    env = one_step.make_env(cfg)
    trained = build_method(method, env, cfg)
    before = [p.detach().clone() for p in trained.receiver_loss.parameters()]
    exp = Experiment(method=method, task="t", seed=0, config={}, backends=("csv",), run_dir=tmp_path / "run")
    with exp:
        Trainer(env, trained, exp, total_frames=128, frames_per_batch=32, log_interval=1).train()
    after = list(trained.receiver_loss.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(b, a) for b, a in zip(before, after))  # the receiver learned


def test_an_unknown_gradient_fails_naming_the_field(recipe_config):
    cfg = recipe_config("sgoc_recommendation_letter", "loss.receiver_gradient=exact")
    with pytest.raises(ConfigError, match=r"loss\.receiver_gradient"):
        validate_config(cfg, method="sgoc")
