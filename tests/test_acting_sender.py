"""A sender that also acts (issue 18 item 2): the env, the exact LP over (sender action, recommendation), the
learning pieces (the action's own policy gradient plus the signaling gradient), the recipe."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type

from msgzoo.envs import ActingSenderPersuasionEnv
from msgzoo.envs.persuasion_games import COACHING_LETTER as G
from msgzoo.game_theory.optimal_scheme import optimal_acting_sender_scheme, optimal_signaling_scheme
from msgzoo.pipelines.acting_sender import build, run, tables

GAME = (G["prior"], G["sender_utility"], G["receiver_utility"])


def test_env_keys_and_rewards():
    env = ActingSenderPersuasionEnv(*GAME, batch_size=[2, 3], validate_actions=True)
    check_env_specs(env)
    td = env.rand_step(env.reset())
    assert td["sender", "action"].shape == (2, 3, 2) and td["next", "sender", "reward"].shape == (2, 3, 1)
    s, b, a = td["sender", "state"], td["sender", "action"].argmax(-1), td["receiver", "action"].argmax(-1)
    us, ur = torch.tensor(G["sender_utility"]), torch.tensor(G["receiver_utility"])
    torch.testing.assert_close(td["next", "sender", "reward"].squeeze(-1), us[s, b, a])
    torch.testing.assert_close(td["next", "receiver", "reward"].squeeze(-1), ur[s, b, a])
    td = env.rand_action(env.reset())
    del td["sender", "action"]
    with pytest.raises(ValueError, match="'sender', 'action'"):
        env.step(td)
    with pytest.raises(ValueError, match="receiver_utility"):
        ActingSenderPersuasionEnv(G["prior"], G["sender_utility"], [[0.0, 1.0], [0.0, 1.0]])


def test_coaching_letter_lp():
    opt = optimal_acting_sender_scheme(*GAME)
    assert opt.sender_value == pytest.approx(7 / 9, abs=1e-9) and opt.receiver_value == pytest.approx(0.0, abs=1e-9)
    x = opt.joint.numpy()
    assert x[0, 1, 1] == pytest.approx(5 / 6, abs=1e-9) and x[0, 0, 0] == pytest.approx(1 / 6, abs=1e-9)  # weak
    assert x[1, 0, 1] == pytest.approx(1.0, abs=1e-9)  # strong: no coaching, recommended
    # acting helps: above the best optimum with one fixed action (no coaching: the Recommendation Letter, 2/3)
    fixed = [optimal_signaling_scheme(G["prior"], [r[b] for r in G["sender_utility"]],
                                      [r[b] for r in G["receiver_utility"]]).sender_value for b in range(2)]
    assert max(fixed) == pytest.approx(31 / 45) and opt.sender_value > max(fixed) + 0.08


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lp_beats_every_obedient_joint_scheme_on_a_grid(seed):
    """2 states x 2 sender actions x 2 receiver actions: x(b, a | s) on a 1/10 grid of each state's simplex
    (286^2 schemes); none obedient beats the LP."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(2))
    us, ur = rng.uniform(-1, 1, (2, 2, 2)).round(2), rng.uniform(-1, 1, (2, 2, 2)).round(2)
    opt = optimal_acting_sender_scheme(p, us, ur)
    steps = 10
    pts = np.array([c + (steps - sum(c),) for c in itertools.product(range(steps + 1), repeat=3) if sum(c) <= steps]) / steps
    x = np.stack(np.broadcast_arrays(pts[:, None], pts[None, :]), 2).reshape(-1, 2, 2, 2)  # [n, s, b, a]
    gain = p[:, None, None] * (ur - ur[:, :, ::-1])  # [s, b, a]: obey a rather than the other action
    c = np.einsum("nsba,sba->na", x, gain)
    feasible = x[c.min(-1) >= -1e-12]
    values = np.einsum("s,nsba,sba->n", p, feasible, us)
    assert values.max() <= opt.sender_value + 1e-9
    assert values.max() >= opt.sender_value - 0.1 * 2 * np.abs(us).max()
    lp_c = np.einsum("sba,sba->a", opt.joint.numpy(), gain)
    assert lp_c.min() >= -1e-9


CFG = OmegaConf.create(dict(
    seed=0, num_seeds=1, threads=1, run_dir=None, env=dict(num_envs=256), collector=dict(total_frames=2048),
    optim=dict(signaling_lr=0.02, sender_critic_lr=0.02, receiver_actor_lr=0.015, receiver_critic_lr=0.007, max_grad=1.0),
    loss=dict(receiver_coeff=2.0, sender_gradient="sampled", lagrange_multiplier=20.0, epsilon=0.01, target_tau=0.02),
))


def test_the_actions_gradient_and_the_signaling_gradient():
    torch.manual_seed(0)
    env = ActingSenderPersuasionEnv(*GAME, num_envs=256)
    parts = build(env, CFG)
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        batch = env.step(parts["policy"](env.reset()))
    batch.get("next").set(("sender", "message"), torch.zeros_like(batch["sender", "message"]))
    losses = parts["losses"]
    action = losses["action"](batch)
    (action["loss_objective"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in parts["actor"].parameters())
    assert all(p.grad is None for p in parts["scheme"].parameters())  # the action's own policy gradient
    signaling = losses["signaling"](batch)
    signaling["loss_signaling"].backward()  # the scheme reads the sender's action: phi(sigma | s, b)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in parts["scheme"].parameters())
    x = tables(parts, env)
    assert x.shape == (2, 2, 2) and torch.allclose(x.sum((1, 2)), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("sender_gradient", ["sampled", "expected"])
def test_recipe_runs(recipe_config, tmp_path, sender_gradient):
    cfg = recipe_config("sgoc_coaching_letter", "collector.total_frames=8192", "env.num_envs=512", "num_seeds=2",
                        f"run_dir={tmp_path}", f"loss.sender_gradient={sender_gradient}")
    summary = run(cfg)
    written = json.loads((Path(tmp_path) / "summary.json").read_text())
    assert written["lp_sender_value"] == pytest.approx(7 / 9) and written["lp_best_fixed_action"] == pytest.approx(31 / 45)
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    for s in written["seeds"]:
        assert np.shape(s["played"]) == (2, 2, 2) and s["env_steps"] == 8192
        assert s["fraction_of_lp_gain"] == pytest.approx(s["sender_reward"] / (7 / 9))
