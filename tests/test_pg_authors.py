"""The authors' PG sender (:class:`SarsaPolicyGradientLoss`: a Q(s, sigma) critic by SARSA from a target copy, the
message- or action-index lookup), its config fields (``loss.pg_critic``, ``loss.pg_lookup``) and the Reaching Goals
paper protocol (``+protocol=paper_reaching_goals``)."""
from __future__ import annotations

import json

import pytest
import torch
from torchrl.objectives import A2CLoss, SoftUpdate

from msgzoo.envs.bayesian_persuasion import recommendation_letter
from msgzoo.modules import VectorNet, make_action_value_critic, make_signaling_scheme
from msgzoo.objectives import SarsaPolicyGradientLoss, attach_next_message
from recipes import build_method
from test_objectives import PHI3, collect, grads, half_terminated, has_grad, no_grad, only_param

pytestmark = pytest.mark.filterwarnings("ignore:No target network updater")

F64 = torch.float64
Q_KEY = ("sender", "message_value")
# Q(s, sigma) of the tabular critic: two states, three messages (not a fixed point, so the TD loss is not zero).
Q3 = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]], dtype=F64)


def tabular(phi: torch.Tensor = PHI3, q: torch.Tensor = Q3):
    """A scheme with ``softmax = phi`` and a critic with ``Q(s, .) = q[s]`` (bias-free linear nets on one-hot s)."""
    scheme = make_signaling_scheme(VectorNet(2, phi.shape[1], bias=False))
    critic = make_action_value_critic(VectorNet(2, q.shape[1], bias=False), out_key=Q_KEY)
    with torch.no_grad():
        only_param(scheme).copy_(phi.log().T)
        only_param(critic).copy_(q.T)
    return scheme, critic


def batch_with_next_message(scheme, seed: int = 0, num_envs: int = 256):
    """Recommendation-Letter students with sampled messages and uniformly random receiver actions; the next
    message is the scheme's (``attach_next_message``) and every other step bootstraps."""
    torch.manual_seed(seed)
    env = recommendation_letter(num_envs=num_envs, num_messages=3, seed=seed)
    td = scheme(env.reset())
    td.set(("receiver", "action"), torch.nn.functional.one_hot(torch.randint(2, (num_envs,)), 2).bool())
    td = half_terminated(env.step(td))
    return attach_next_message(td, scheme)


# ------------------------------------------------------------------------------------------ keys and shapes


def test_default_keys_and_outputs():
    scheme, critic = tabular()
    loss = SarsaPolicyGradientLoss(scheme, critic, gamma=0.5)
    keys = loss.tensor_keys
    assert (keys.logits, keys.message, keys.action, keys.reward, keys.message_value) == (
        ("sender", "logits"), ("sender", "message"), ("receiver", "action"), ("sender", "reward"), Q_KEY)
    assert ("next", "sender", "message") in loss.in_keys and ("receiver", "action") not in loss.in_keys
    assert ("receiver", "action") in SarsaPolicyGradientLoss(scheme, critic, lookup="action").in_keys
    assert ("next", "sender", "message") not in SarsaPolicyGradientLoss(scheme, critic, gamma=0.0).in_keys
    out = loss(batch_with_next_message(scheme))
    assert sorted(out.keys()) == sorted(loss.out_keys) == sorted(["loss_objective", "loss_critic", "sender_value",
                                                                  "advantage"])
    assert all(v.shape == () and torch.isfinite(v) for v in out.values())
    with_entropy = SarsaPolicyGradientLoss(scheme, critic, entropy_coeff=0.1)
    assert {"loss_entropy", "entropy"} <= set(with_entropy(batch_with_next_message(scheme)).keys())


def test_set_keys_gives_the_same_numbers():
    scheme, critic = tabular()
    batch = batch_with_next_message(scheme)
    expected = SarsaPolicyGradientLoss(scheme, critic)(batch)
    renamed = batch.clone()
    nxt = renamed.get("next")
    nxt.set(("sender", "payoff"), nxt.get(("sender", "reward")))
    loss = SarsaPolicyGradientLoss(scheme, critic)
    loss.set_keys(reward=("sender", "payoff"))
    got = loss(renamed.exclude(("next", "sender", "reward")))
    for key in expected.keys():
        torch.testing.assert_close(got[key], expected[key])


def test_forward_does_not_modify_the_input():
    scheme, critic = tabular()
    batch = batch_with_next_message(scheme)
    before = batch.clone()
    SarsaPolicyGradientLoss(scheme, critic, lookup="action")(batch)
    assert set(batch.keys(True, True)) == set(before.keys(True, True))
    assert all(torch.equal(batch.get(k), before.get(k)) for k in before.keys(True, True))


# ------------------------------------------------------------------------------------------ the SARSA target


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_critic_has_the_sarsa_target_of_the_target_copy(gamma):
    """loss_critic = mean (Q(s, sigma) - y)^2, y = r + gamma (1 - term) Q_target(s', sigma'), sigma' the NEXT
    message in the batch (SARSA: not an expectation over the scheme)."""
    scheme, critic = tabular()
    batch = batch_with_next_message(scheme)
    # a next message that is not the scheme's, so that only a SARSA target reads it
    nxt_msg = batch["next", "sender", "message"].roll(1, dims=-1)
    batch["next", "sender", "message"] = nxt_msg
    loss = SarsaPolicyGradientLoss(scheme, critic, gamma=gamma)
    with torch.no_grad():  # a target copy that differs from the online critic
        for t in loss.target_critic_network_params.values(True, True):
            t.mul_(0.5)
    q = only_param(critic).detach().T.to(F64)
    s = batch["sender", "state"]
    sent = batch["sender", "message"].to(F64)
    reward = batch["next", "sender", "reward"].squeeze(-1).to(F64)
    alive = (~batch["next", "terminated"].squeeze(-1)).to(F64)
    q_next = (0.5 * q[batch["next", "sender", "state"]] * nxt_msg.to(F64)).sum(-1)
    target = reward + gamma * alive * q_next
    expected = ((q[s] * sent).sum(-1) - target).pow(2).mean()
    torch.testing.assert_close(loss(batch)["loss_critic"].to(F64), expected, rtol=1e-5, atol=1e-6)


def test_soft_update_moves_the_target_copy():
    scheme, critic = tabular()
    loss = SarsaPolicyGradientLoss(scheme, critic)
    updater = SoftUpdate(loss, tau=0.02)
    with torch.no_grad():
        only_param(critic).add_(1.0)
    before = loss.target_critic_network_params.clone()
    updater.step()
    after = loss.target_critic_network_params
    online = loss.critic_network_params
    for key in before.keys(True, True):
        torch.testing.assert_close(after[key], 0.98 * before[key] + 0.02 * online[key].detach())


# ------------------------------------------------------------------------------------------ the lookup


@pytest.mark.parametrize("lookup", ["message", "action"])
def test_objective_reads_q_at_the_looked_up_index(lookup):
    """loss_objective = -mean (Q(s, k) - sum phi Q(s, .)) log phi(sigma | s), k the message sent or the receiver's
    action index."""
    scheme, critic = tabular()
    batch = batch_with_next_message(scheme)
    out = SarsaPolicyGradientLoss(scheme, critic, lookup=lookup)(batch)
    s = batch["sender", "state"]
    sent = batch["sender", "message"].to(F64)
    index = sent.argmax(-1) if lookup == "message" else batch["receiver", "action"].long().argmax(-1)
    q = Q3.float().to(F64)[s]
    advantage = q.gather(-1, index[:, None]).squeeze(-1) - (PHI3[s] * q).sum(-1)
    log_phi = (PHI3[s].log() * sent).sum(-1)
    torch.testing.assert_close(out["loss_objective"].to(F64), -(advantage * log_phi).mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["advantage"].to(F64), advantage.abs().mean(), rtol=1e-5, atol=1e-6)


def test_the_two_lookups_differ():
    scheme, critic = tabular()
    batch = batch_with_next_message(scheme)
    by_message = SarsaPolicyGradientLoss(scheme, critic)(batch)
    by_action = SarsaPolicyGradientLoss(scheme, critic, lookup="action")(batch)
    assert not torch.isclose(by_message["loss_objective"], by_action["loss_objective"])
    torch.testing.assert_close(by_message["loss_critic"], by_action["loss_critic"])  # the critic is the same


def test_action_index_beyond_the_messages_fails_with_the_fix():
    scheme, critic = tabular()
    batch = batch_with_next_message(scheme)
    action = torch.zeros(batch.shape[0], 4, dtype=torch.bool)
    action[:, 3] = True  # four receiver actions, three messages
    batch.set(("receiver", "action"), action)
    with pytest.raises(ValueError, match="lookup='message'"):
        SarsaPolicyGradientLoss(scheme, critic, lookup="action")(batch)


# ------------------------------------------------------------------------------------------ routing and errors


def test_gradient_routing():
    """The objective trains the scheme only; the critic loss the critic only."""
    scheme, critic = tabular()
    loss = SarsaPolicyGradientLoss(scheme, critic, gamma=0.5)
    batch = batch_with_next_message(scheme)
    loss(batch)["loss_objective"].backward()
    assert has_grad(scheme) and no_grad(critic)
    for p in scheme.parameters():
        p.grad = None
    loss(batch)["loss_critic"].backward()
    assert has_grad(critic) and no_grad(scheme)
    assert all(g is None for g in grads(scheme))


@pytest.mark.parametrize("kwargs, name", [({"lookup": "receiver"}, "lookup"), ({"gamma": 1.5}, "gamma"),
                                          ({"entropy_coeff": -0.1}, "entropy_coeff")])
def test_bad_arguments(kwargs, name):
    scheme, critic = tabular()
    with pytest.raises(ValueError, match=name):
        SarsaPolicyGradientLoss(scheme, critic, **kwargs)


def test_missing_next_message_names_attach_next_message():
    scheme, critic = tabular()
    batch = batch_with_next_message(scheme).exclude(("next", "sender", "message"))
    with pytest.raises(KeyError, match="attach_next_message"):
        SarsaPolicyGradientLoss(scheme, critic)(batch)


def test_critic_with_one_value_per_action_is_refused():
    scheme, _ = tabular()
    critic = make_action_value_critic(VectorNet(2, 2), out_key=Q_KEY)  # |A| = 2 values, 3 messages
    with pytest.raises(ValueError, match="one output per message"):
        SarsaPolicyGradientLoss(scheme, critic)(batch_with_next_message(scheme))


def test_a_step_with_it_changes_the_scheme_towards_the_better_message():
    """gamma 0 and a fixed critic: one gradient step raises phi of the message with the larger Q."""
    phi = torch.full((2, 3), 1 / 3, dtype=F64)
    scheme, critic = tabular(phi)
    loss = SarsaPolicyGradientLoss(scheme, critic, gamma=0.0)
    batch = batch_with_next_message(scheme, num_envs=4096)
    loss(batch)["loss_objective"].backward()
    with torch.no_grad():
        only_param(scheme).sub_(0.5 * only_param(scheme).grad)
    new_phi = torch.softmax(only_param(scheme).detach().T.to(F64), -1)
    assert (new_phi.argmax(-1) == Q3.argmax(-1)).all()


# ------------------------------------------------------------------------------------------ config


RG_TINY = ["env.num_envs=8", "eval.episodes=4", "figures=false", "logger.backends=[csv]"]


def _env(cfg, num_seeds=None):
    from msgzoo.pipelines.reaching_goals import make_env

    return make_env(cfg, num_seeds=num_seeds or 1)


def test_default_pg_is_torchrl_a2c_and_sarsa_q_is_the_authors(recipe_config):
    default = recipe_config("pg_reaching_goals", *RG_TINY)
    assert (default.loss.pg_critic, default.loss.pg_lookup) == ("value", "message")
    method = build_method("pg", _env(default), default)
    assert isinstance(method.sender_losses["policy_gradient"], A2CLoss) and not method.target_updaters

    cfg = recipe_config("pg_reaching_goals", *RG_TINY, "loss.pg_critic=sarsa_q", "loss.pg_lookup=action")
    method = build_method("pg", _env(cfg), cfg)
    loss = method.sender_losses["policy_gradient"]
    assert isinstance(loss, SarsaPolicyGradientLoss) and loss.lookup == "action"
    assert loss.gamma == cfg.loss.sender_gamma and loss.entropy_coeff == cfg.loss.sender_entropy_coeff
    assert len(method.target_updaters) == 1  # the SARSA critic's target copy
    assert method.target_updaters[0].step in method.phases[1].after_step
    # PGOC gets the same sender, plus its obedience loss
    pgoc = build_method("pgoc", _env(cfg), recipe_config("pgoc_reaching_goals", *RG_TINY, "loss.pg_critic=sarsa_q"))
    assert isinstance(pgoc.sender_losses["policy_gradient"], SarsaPolicyGradientLoss) and pgoc.uses_obedience


@pytest.mark.parametrize("overrides, field", [
    (["loss.pg_critic=q"], "loss.pg_critic"),
    (["loss.pg_lookup=index", "loss.pg_critic=sarsa_q"], "loss.pg_lookup"),
    (["loss.pg_lookup=action"], "loss.pg_critic=sarsa_q"),
])
def test_bad_pg_fields_fail_naming_the_field(recipe_config, overrides, field):
    cfg = recipe_config("pg_reaching_goals", *RG_TINY, *overrides)
    with pytest.raises(ValueError, match=field):
        build_method("pg", _env(cfg), cfg)


def test_paper_protocol_sets_the_reference_loop(recipe_config):
    base = recipe_config("pg_reaching_goals")
    cfg = recipe_config("pg_reaching_goals", "+protocol=paper_reaching_goals")
    assert cfg.env.num_envs * cfg.env.steps_per_batch == 2 * cfg.env.horizon  # two whole episodes per batch
    assert cfg.env.steps_per_batch == cfg.env.horizon
    assert (cfg.optim.signaling_lr, cfg.optim.sender_critic_lr, cfg.optim.receiver_actor_lr,
            cfg.optim.receiver_critic_lr) == (1.5e-4, 3e-4, 3e-5, 3e-4)
    assert cfg.loss.lagrange_multiplier == 0.005 and cfg.loss.sender_entropy_coeff == 0.0
    # the critic is a separate choice; everything else (map, discounts, tau, budget) is msgzoo's
    assert cfg.loss.pg_critic == "value"
    for field in ("env.height", "env.receiver_observes", "loss.sender_gamma", "loss.receiver_gamma",
                  "loss.target_tau", "collector.total_episodes"):
        section, name = field.split(".")
        assert cfg[section][name] == base[section][name]


def test_the_authors_pg_trains_end_to_end(recipe_config, tmp_path):
    """Two seeds together, the paper protocol's batches, the authors' critic and lookup: a finite, complete run."""
    from recipes import run_recipe

    cfg = recipe_config("pg_reaching_goals", *RG_TINY[1:], "+protocol=paper_reaching_goals",
                        "collector.total_episodes=4", "loss.pg_critic=sarsa_q", "loss.pg_lookup=action",
                        "num_seeds=2", f"+run_dir={tmp_path}")
    summary = run_recipe(cfg, method="pg")
    # two batches of two whole episodes per seed: one receiver update, one sender update
    assert summary["env_steps_per_seed"] == 4 * 50
    returns = summary["sender_return"]["per_seed"]
    assert len(returns) == 2 and all(torch.isfinite(torch.tensor(returns)))
    assert json.loads((tmp_path / "seed1" / "summary.json").read_text())["status"] == "complete"


def test_paper_units_table_keeps_every_config_of_a_method():
    """An ablation's rows are one method under several configs ("pg (hash)"): each gets its paper-units row."""
    from msgzoo.report.compare import paper_units_table

    value = {"mean": 40.0, "std": 10.0, "min": 30.0, "max": 50.0}
    rows = [{"method": f"pg ({h})", "seeds": 5, "episodes": 1e5, "sender_return": value, "receiver_return": value}
            for h in ("1d6ac618", "798a1046")]
    table = paper_units_table(rows, "3x3")
    assert "| PG (1D6AC618) | 5 |" in table and "| PG (798A1046) | 5 |" in table
    assert "40.0 ± 10.0 / **80.0 ± 20.0**" in table and "-50 / **-100**" in table
