"""Tests of msgzoo's environments: Bayesian persuasion and Reaching Goals (+ rendering)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs, step_mdp

from msgzoo.envs import BayesianPersuasionEnv, ReachingGoalsEnv, recommendation_letter, render_frame
from msgzoo.envs.reaching_goals import MOVES

UP, DOWN, LEFT, RIGHT = range(4)
SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------------------- helpers
def one_hot(index, size: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(index), size).float()


def set_state(env: ReachingGoalsEnv, states, step_count: int = 0):
    """A tensordict whose state carrier holds ``states`` ([N, 3] cells) and given step count."""
    td = env.reset()
    states = torch.as_tensor(states, dtype=torch.int64).reshape(env.num_envs, 3)
    td.set(("sender", "state"), states)
    td.set("step_count", torch.full((env.num_envs, 1), step_count, dtype=torch.int64))
    return td


def step_with(env: ReachingGoalsEnv, td, moves, messages=0):
    moves = torch.as_tensor(moves).expand(env.num_envs)
    messages = torch.as_tensor(messages).expand(env.num_envs)
    td.set(("receiver", "action"), one_hot(moves, 4))
    td.set(("sender", "message"), one_hot(messages, env.num_messages))
    return env.step(td)


def reward_by_hand(receiver, apple, h, w, punish, reward=None):
    """The reward formula, evaluated in Python on (row, col) pairs."""
    if receiver == apple:
        return reward
    di, dj = (receiver[0] - apple[0]) / (h - 1), (receiver[1] - apple[1]) / (w - 1)
    return -punish * math.sqrt(di * di + dj * dj) / SQRT2


# ----------------------------------------------------------------------------- specs
@pytest.mark.parametrize(
    "make",
    [
        lambda: recommendation_letter(num_envs=4, seed=1),
        lambda: BayesianPersuasionEnv([0.2, 0.5, 0.3], torch.randn(3, 4), torch.randn(3, 4), num_envs=3, seed=1),
        lambda: ReachingGoalsEnv(num_envs=5, seed=1, horizon=4),
        lambda: ReachingGoalsEnv(num_envs=2, height=5, width=4, receiver_observes=(), bounded=False, seed=2),
        lambda: ReachingGoalsEnv(num_envs=3, receiver_observes=("position", "goal"), aligned=True, seed=3),
    ],
)
def test_check_env_specs(make):
    check_env_specs(make())


# ----------------------------------------------------------------------------- Reaching Goals: moves
@pytest.mark.parametrize("move, expected", [(UP, 1), (DOWN, 7), (LEFT, 3), (RIGHT, 5)])
def test_moves_from_middle(move, expected):
    env = ReachingGoalsEnv(num_envs=1)
    td = step_with(env, set_state(env, [[4, 0, 8]]), move)
    assert td["next", "sender", "state"].tolist() == [[expected, 0, 8]]
    obs = td["next", "sender", "observation"][0]
    assert obs[0].flatten().tolist() == one_hot(expected, 9).tolist()
    assert obs[1].flatten().tolist() == one_hot(0, 9).tolist()
    assert obs[2].flatten().tolist() == one_hot(8, 9).tolist()


def test_moves_5x4_row_major():
    env = ReachingGoalsEnv(num_envs=4, height=5, width=4)
    # From (2, 1) = cell 9 on a 5x4 grid: up (1,1)=5, down (3,1)=13, left (2,0)=8, right (2,2)=10.
    td = set_state(env, [[9, 0, 19]] * 4)
    td = step_with(env, td, torch.tensor([UP, DOWN, LEFT, RIGHT]))
    assert td["next", "sender", "state"][:, 0].tolist() == [5, 13, 8, 10]


@pytest.mark.parametrize(
    "cell, move",
    [(0, UP), (0, LEFT), (2, UP), (2, RIGHT), (6, DOWN), (6, LEFT), (8, DOWN), (8, RIGHT), (1, UP), (5, RIGHT)],
)
def test_walls_keep_receiver_in_place(cell, move):
    env = ReachingGoalsEnv(num_envs=1, bounded=True)
    apples = [4, 4] if cell != 4 else [0, 0]
    td = step_with(env, set_state(env, [[cell, *apples]]), move)
    assert td["next", "sender", "state"][0, 0].item() == cell


@pytest.mark.parametrize(
    "cell, move, expected", [(0, UP, 6), (0, LEFT, 2), (2, RIGHT, 0), (8, DOWN, 2), (7, DOWN, 1), (3, LEFT, 5)]
)
def test_wrap_around(cell, move, expected):
    env = ReachingGoalsEnv(num_envs=1, bounded=False)
    apples = [4, 4] if expected != 4 else [0, 0]
    td = step_with(env, set_state(env, [[cell, *apples]]), move)
    assert td["next", "sender", "state"][0, 0].item() == expected


def test_wrapped_distance_is_plain_not_toroidal():
    # 3x3 torus: receiver at (0,0) goes up to (2,0) = cell 6; red apple at (0,0) = cell 0.
    # Plain distance: di = 2/2 = 1 -> -5/sqrt(2) = -3.5355 (the toroidal distance would be 1 row: -1.7678).
    env = ReachingGoalsEnv(num_envs=1, bounded=False)
    td = step_with(env, set_state(env, [[0, 0, 8]]), UP)
    assert td["next", "sender", "state"][0, 0].item() == 6
    assert td["next", "sender", "reward"].item() == pytest.approx(-3.5355339, abs=1e-5)
    # green at (2,2): plain dj = 2/2 = 1 -> -3.5355 (toroidal would be 1 column).
    assert td["next", "receiver", "reward"].item() == pytest.approx(-3.5355339, abs=1e-5)


# ----------------------------------------------------------------------------- Reaching Goals: rewards
def test_reward_formula_3x3_by_hand():
    env = ReachingGoalsEnv(num_envs=1)  # amplifiers 20 / 5
    # Receiver (0,0) -> right -> (0,1). Red apple (2,2): di = 2/2 = 1, dj = 1/2, d = sqrt(1.25) = 1.118034,
    # reward = -5 * 1.118034 / sqrt(2) = -3.952847. Green apple (1,1): di = 1/2, d = 0.5, reward = -1.767767.
    td = step_with(env, set_state(env, [[0, 8, 4]]), RIGHT)
    assert td["next", "sender", "reward"].item() == pytest.approx(-3.952847, abs=1e-5)
    assert td["next", "receiver", "reward"].item() == pytest.approx(-1.767767, abs=1e-5)
    assert td["next", "sender", "state"].tolist() == [[1, 8, 4]]  # nothing reached: apples stay


def test_reward_formula_5x5_by_hand():
    env = ReachingGoalsEnv(num_envs=1, height=5, width=5, reward_amplifier=12.0, punish_amplifier=3.0)
    # Receiver (2,2) = cell 12 -> down -> (3,2) = 17. Red (0,4) = 4: di = 3/4, dj = 2/4, d = sqrt(0.8125) =
    # 0.901388, reward = -3 * 0.901388 / sqrt(2) = -1.912132. Green (3,0) = 15: dj = 2/4, d = 0.5, -1.060660.
    td = step_with(env, set_state(env, [[12, 4, 15]]), DOWN)
    assert td["next", "sender", "state"][0, 0].item() == 17
    assert td["next", "sender", "reward"].item() == pytest.approx(-1.912132, abs=1e-5)
    assert td["next", "receiver", "reward"].item() == pytest.approx(-1.060660, abs=1e-5)
    assert reward_by_hand((3, 2), (0, 4), 5, 5, 3.0) == pytest.approx(-1.912132, abs=1e-5)


def test_reward_table_matches_formula_everywhere():
    h, w = 4, 5
    env = ReachingGoalsEnv(num_envs=h * w * h * w, height=h, width=w, reward_amplifier=7.0, punish_amplifier=2.0)
    cells = torch.arange(h * w)
    rec, apple = torch.meshgrid(cells, cells, indexing="ij")
    rec, apple = rec.reshape(-1), apple.reshape(-1)
    # Reach each receiver cell in one step: from the cell above by moving down, or (row 0) by walking into the
    # top wall from the cell itself.
    start = torch.where(rec >= w, rec - w, rec)
    moves = torch.where(rec >= w, torch.tensor(DOWN), torch.tensor(UP))
    td = step_with(env, set_state(env, torch.stack([start, apple, apple], -1)), moves)
    assert torch.equal(td["next", "sender", "state"][:, 0], rec)
    expected = torch.tensor(
        [reward_by_hand(divmod(int(r), w), divmod(int(a), w), h, w, 2.0, 7.0) for r, a in zip(rec, apple)]
    )
    assert torch.allclose(td["next", "sender", "reward"].squeeze(-1), expected, atol=1e-5)
    assert torch.allclose(td["next", "receiver", "reward"].squeeze(-1), expected, atol=1e-5)


def test_reaching_pays_and_respawns_away_from_receiver():
    n = 16000
    env = ReachingGoalsEnv(num_envs=n, seed=3)
    # Receiver (1,0)=3 -> right -> 4. Red apple on 4 (reached), green on 0 (not reached): red respawns only.
    td = step_with(env, set_state(env, [[3, 4, 0]] * n), RIGHT)
    nxt = td["next"]
    assert torch.all(nxt["sender", "reward"] == 20.0)
    expected_green = reward_by_hand((1, 1), (0, 0), 3, 3, 5.0)
    assert torch.allclose(nxt["receiver", "reward"], torch.full((n, 1), expected_green))
    state = nxt["sender", "state"]
    assert torch.all(state[:, 0] == 4) and torch.all(state[:, 2] == 0)
    red = state[:, 1]
    assert torch.all(red != 4)
    counts = torch.bincount(red, minlength=9).float()
    assert counts[4] == 0
    others = counts[torch.arange(9) != 4] / n
    se = math.sqrt((1 / 8) * (7 / 8) / n)
    assert torch.all((others - 1 / 8).abs() < 4 * se), others
    # The observation follows the respawned apple.
    assert torch.equal(nxt["sender", "observation"][:, 1].reshape(n, 9), one_hot(red, 9))


def test_both_apples_reached_respawn_independently():
    n = 4000
    env = ReachingGoalsEnv(num_envs=n, seed=5)
    td = step_with(env, set_state(env, [[3, 4, 4]] * n), RIGHT)
    assert torch.all(td["next", "sender", "reward"] == 20.0) and torch.all(td["next", "receiver", "reward"] == 20.0)
    red, green = td["next", "sender", "state"][:, 1], td["next", "sender", "state"][:, 2]
    assert torch.all(red != 4) and torch.all(green != 4)
    assert 0.05 < (red == green).float().mean() < 0.2  # independent draws coincide about 1/8 of the time


# ----------------------------------------------------------------------------- Reaching Goals: reset
def test_reset_constraints():
    n = 90000
    env = ReachingGoalsEnv(num_envs=n, seed=11)
    state = env.reset()["sender", "state"]
    rec, red, green = state.unbind(-1)
    assert torch.all(red != rec) and torch.all(green != rec)
    se = math.sqrt((1 / 9) * (8 / 9) / n)
    freq = torch.bincount(rec, minlength=9).float() / n
    assert torch.all((freq - 1 / 9).abs() < 4 * se), freq
    # Given the receiver cell, an apple is uniform over the 8 others.
    for apple in (red, green):
        sub = apple[rec == 4]
        f = torch.bincount(sub, minlength=9).float() / sub.numel()
        assert f[4] == 0
        se8 = math.sqrt((1 / 8) * (7 / 8) / sub.numel())
        assert torch.all((f[torch.arange(9) != 4] - 1 / 8).abs() < 4 * se8), f
    # The apples are drawn independently: they coincide about 1/8 of the time.
    assert abs((red == green).float().mean().item() - 1 / 8) < 0.01
    td = env.reset()
    assert torch.all(td["step_count"] == 0)
    assert not td["done"].any() and not td["truncated"].any() and not td["terminated"].any()


def test_horizon_truncates_not_terminates():
    env = ReachingGoalsEnv(num_envs=6, horizon=4, seed=0)
    td = env.reset()
    for t in range(1, 6):
        td.update(env.action_spec.rand())
        td = env.step(td)
        nxt = td["next"]
        assert torch.all(nxt["step_count"] == (t if t <= 4 else 1))
        if t < 4:
            assert not nxt["truncated"].any() and not nxt["done"].any()
        elif t == 4:
            assert nxt["truncated"].all() and nxt["done"].all()
        assert not nxt["terminated"].any()
        assert torch.equal(nxt["done"], nxt["truncated"])
        if t == 4:
            _, td = env.step_and_maybe_reset(td)  # auto-reset after truncation
            assert torch.all(td["step_count"] == 0) and not td["done"].any()
        else:
            td = step_mdp(td)


def test_rollout_truncates_at_horizon():
    env = ReachingGoalsEnv(num_envs=3, horizon=7, seed=0)
    data = env.rollout(100)  # stops at the first done
    assert data.shape == (3, 7)
    assert data["next", "truncated"][:, -1].all() and not data["next", "truncated"][:, :-1].any()
    assert data["step_count"][0].squeeze(-1).tolist() == list(range(7))


@pytest.mark.parametrize("direct", [False, True])
def test_partial_reset_keeps_other_envs(direct):
    env = ReachingGoalsEnv(num_envs=8, seed=2, height=4, width=4)
    td = env.reset()
    for _ in range(3):
        td.update(env.action_spec.rand())
        td = step_mdp(env.step(td))
    before = td.clone()
    mask = torch.tensor([True, False, True, False, False, True, False, False]).unsqueeze(-1)
    td.set("_reset", mask)
    out = env._reset(td) if direct else env.reset(td)
    keep, reset = ~mask.squeeze(-1), mask.squeeze(-1)
    for key in [("sender", "state"), ("sender", "observation"), ("receiver", "observation"), "step_count"]:
        assert torch.equal(out[key][keep], before[key][keep]), key
    assert torch.all(out["step_count"][reset] == 0) and torch.all(before["step_count"] == 3)
    state = out["sender", "state"][reset]
    assert torch.all(state[:, 1] != state[:, 0]) and torch.all(state[:, 2] != state[:, 0])
    # Observations are consistent with the state everywhere.
    obs = out["sender", "observation"].reshape(8, 3, 16)
    assert torch.equal(obs.argmax(-1), out["sender", "state"])


def test_auto_partial_reset_through_step_and_maybe_reset():
    env = ReachingGoalsEnv(num_envs=4, seed=0, horizon=3)
    td = env.reset()
    # Put the envs at different step counts: envs 0 and 1 will hit the horizon first.
    td.set("step_count", torch.tensor([[1], [1], [0], [0]]))
    td.update(env.action_spec.rand())
    data, td = env.step_and_maybe_reset(td)
    assert data["next", "truncated"].squeeze(-1).tolist() == [False, False, False, False]
    td.update(env.action_spec.rand())
    data, td = env.step_and_maybe_reset(td)
    assert data["next", "truncated"].squeeze(-1).tolist() == [True, True, False, False]
    assert td["step_count"].squeeze(-1).tolist() == [0, 0, 2, 2]
    assert torch.equal(td["sender", "state"][2:], data["next", "sender", "state"][2:])
    assert not td["done"].any()


def test_partial_step_mask():
    env = ReachingGoalsEnv(num_envs=2)
    td = set_state(env, [[4, 0, 8], [4, 0, 8]], step_count=2)
    td.set("_step", torch.tensor([[True], [False]]))
    td = step_with(env, td, UP)
    assert td["next", "sender", "state"].tolist() == [[1, 0, 8], [4, 0, 8]]
    assert td["next", "step_count"].squeeze(-1).tolist() == [3, 2]
    assert td["next", "sender", "reward"][1].item() == 0.0


def test_aligned_apples_stay_equal():
    env = ReachingGoalsEnv(num_envs=64, aligned=True, seed=4)
    data = env.rollout(200, break_when_any_done=False)
    state = data["next", "sender", "state"]
    assert torch.equal(state[..., 1], state[..., 2]) and torch.equal(data["sender", "state"][..., 1],
                                                                      data["sender", "state"][..., 2])
    assert torch.all(state[..., 1] != state[..., 0])
    assert torch.equal(data["next", "sender", "reward"], data["next", "receiver", "reward"])
    assert (data["next", "sender", "reward"] == 20.0).any()  # apples were reached (and respawned) at times
    obs = data["next", "sender", "observation"]
    assert torch.equal(obs[..., 1, :, :], obs[..., 2, :, :])


@pytest.mark.parametrize(
    "observes, channels",
    [((), []), ("position", [0]), (("goal",), [2]), (("position", "goal"), [0, 2]), (["goal", "position"], [0, 2])],
)
def test_receiver_observes(observes, channels):
    env = ReachingGoalsEnv(num_envs=16, height=4, width=3, receiver_observes=observes, seed=1)
    assert env.num_receiver_channels == len(channels)
    td = env.rand_step(env.reset())
    for root in (td, td["next"]):
        obs = root["receiver", "observation"]
        assert obs.shape == (16, len(channels), 4, 3)
        assert torch.equal(obs, root["sender", "observation"][:, channels])
        if channels:
            assert torch.all(obs.sum((-1, -2)) == 1)


def test_properties_and_spaces():
    env = ReachingGoalsEnv(height=4, width=5, horizon=9, reward_amplifier=3, punish_amplifier=1.5, bounded=False,
                           aligned=True, receiver_observes=("goal",), num_envs=2)
    assert (env.height, env.width, env.horizon) == (4, 5, 9)
    assert (env.reward_amplifier, env.punish_amplifier, env.bounded, env.aligned) == (3.0, 1.5, False, True)
    assert env.receiver_observes == ("goal",)
    assert (env.num_cells, env.num_actions, env.num_messages, env.num_receiver_channels) == (20, 4, 20, 1)
    assert env.action_spec["sender", "message"].shape == (2, 20)
    assert env.action_spec["receiver", "action"].shape == (2, 4)


def test_message_is_ignored_by_dynamics():
    env = ReachingGoalsEnv(num_envs=9)
    states = [[4, 0, 8]] * 9
    a = step_with(env, set_state(env, states), RIGHT, messages=torch.arange(9))
    b = step_with(env, set_state(env, states), RIGHT, messages=0)
    assert torch.equal(a["next", "sender", "state"], b["next", "sender", "state"])
    assert torch.equal(a["next", "sender", "reward"], b["next", "sender", "reward"])


# ----------------------------------------------------------------------------- Bayesian persuasion
@pytest.mark.parametrize("prior", [[2 / 3, 1 / 3], [0.1, 0.6, 0.3]])
def test_persuasion_state_frequencies_match_prior(prior):
    n = 100_000
    k = len(prior)
    env = BayesianPersuasionEnv(prior, torch.zeros(k, 2), torch.zeros(k, 2), num_envs=n, seed=0)
    state = env.reset()["sender", "state"]
    freq = torch.bincount(state, minlength=k).double() / n
    p = torch.tensor(prior, dtype=torch.float64)
    se = (p * (1 - p) / n).sqrt()
    assert torch.all((freq - p).abs() < 4 * se), (freq, p)
    td = env.reset()
    assert torch.equal(td["sender", "observation"].argmax(-1), td["sender", "state"])
    assert torch.all(td["sender", "observation"].sum(-1) == 1)


def test_persuasion_rewards_match_matrices():
    us = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])
    ur = torch.tensor([[0.0, 4.0, -3.0], [2.0, -0.5, 1.5]])
    n = 600
    env = BayesianPersuasionEnv([0.5, 0.5], us, ur, num_envs=n, seed=0, validate_actions=True)
    td = env.reset()
    state = td["sender", "state"]
    assert set(state.tolist()) == {0, 1}
    actions = torch.arange(n) % 3
    td.set(("sender", "message"), one_hot(torch.arange(n) % env.num_messages, env.num_messages))
    td.set(("receiver", "action"), one_hot(actions, 3))
    nxt = env.step(td)["next"]
    seen = set(zip(state.tolist(), actions.tolist()))
    assert seen == {(s, a) for s in range(2) for a in range(3)}
    assert torch.equal(nxt["sender", "reward"].squeeze(-1), us[state, actions])
    assert torch.equal(nxt["receiver", "reward"].squeeze(-1), ur[state, actions])
    assert nxt["done"].all() and nxt["terminated"].all() and not nxt["truncated"].any()


def test_recommendation_letter_rewards():
    env = recommendation_letter(num_envs=4)
    td = env.reset()
    td.set(("sender", "state"), torch.tensor([0, 0, 1, 1]))
    td.set(("sender", "message"), one_hot(torch.zeros(4, dtype=torch.long), 2))
    td.set(("receiver", "action"), one_hot(torch.tensor([0, 1, 0, 1]), 2))  # not hire / hire
    nxt = env.step(td)["next"]
    assert nxt["sender", "reward"].squeeze(-1).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert nxt["receiver", "reward"].squeeze(-1).tolist() == [0.0, -1.0, 0.0, 1.0]


# ----------------------------------------------------------------------------- seeding
def _fixed_actions(env, steps, seed=123):
    g = torch.Generator().manual_seed(seed)
    n = env.num_envs
    return [
        (one_hot(torch.randint(0, env.num_messages, (n,), generator=g), env.num_messages),
         one_hot(torch.randint(0, env.num_actions, (n,), generator=g), env.num_actions))
        for _ in range(steps)
    ]


def _trajectory(env, actions):
    td = env.reset()
    states, rewards = [td["sender", "state"].clone()], []
    for message, action in actions:
        td.set(("sender", "message"), message)
        td.set(("receiver", "action"), action)
        td, nxt = env.step_and_maybe_reset(td)
        states.append(nxt["sender", "state"].clone())
        rewards.append(td["next", "sender", "reward"].clone())
        td = nxt
    return torch.stack(states), torch.stack(rewards)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: ReachingGoalsEnv(num_envs=16, horizon=5, seed=seed),
        lambda seed: recommendation_letter(num_envs=16, seed=seed),
    ],
)
def test_seeding(make):
    env = make(7)
    actions = _fixed_actions(env, 30)
    s1, r1 = _trajectory(make(7), actions)
    s2, r2 = _trajectory(make(7), actions)
    s3, _ = _trajectory(make(8), actions)
    assert torch.equal(s1, s2) and torch.equal(r1, r2)
    assert not torch.equal(s1, s3)
    # set_seed rewinds the generator.
    env = make(7)
    _trajectory(env, actions)
    env.set_seed(7)
    s4, _ = _trajectory(env, actions)
    assert torch.equal(s1, s4)


# ----------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(prior=[0.5, 0.6]), "prior"),
        (dict(prior=[1.2, -0.2]), "prior"),
        (dict(prior=[1.0]), "prior"),
        (dict(sender_utility=[[0.0, 1.0], [0.0, 1.0], [1.0, 1.0]]), "sender_utility"),
        (dict(receiver_utility=[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]), "receiver_utility"),
        (dict(num_envs=0), "num_envs"),
        (dict(num_envs=-3), "num_envs"),
        (dict(num_envs=2.5), "num_envs"),
        (dict(num_messages=1), "num_messages"),
    ],
)
def test_persuasion_bad_arguments(kwargs, name):
    args = dict(prior=[2 / 3, 1 / 3], sender_utility=[[0.0, 1.0], [0.0, 1.0]],
                receiver_utility=[[0.0, -1.0], [0.0, 1.0]])
    args.update(kwargs)
    prior, us, ur = args.pop("prior"), args.pop("sender_utility"), args.pop("receiver_utility")
    with pytest.raises(ValueError, match=name):
        BayesianPersuasionEnv(prior, us, ur, **args)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(height=1), "height"),
        (dict(width=1), "width"),
        (dict(height=1, width=1), "height"),
        (dict(height=2.5), "height"),
        (dict(horizon=0), "horizon"),
        (dict(reward_amplifier=-1.0), "reward_amplifier"),
        (dict(punish_amplifier=float("nan")), "punish_amplifier"),
        (dict(punish_amplifier=float("inf")), "punish_amplifier"),
        (dict(receiver_observes=("position", "apple")), "receiver_observes"),
        (dict(receiver_observes="colour"), "receiver_observes"),
        (dict(receiver_observes=[1]), "receiver_observes"),
        (dict(receiver_observes=("goal", "goal")), "receiver_observes"),
        (dict(num_envs=0), "num_envs"),
        (dict(num_envs=-1), "num_envs"),
        (dict(num_envs=True), "num_envs"),
    ],
)
def test_reaching_goals_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ReachingGoalsEnv(**kwargs)


def test_smallest_map_is_accepted():
    env = ReachingGoalsEnv(height=2, width=2, num_envs=4)
    check_env_specs(env)


# ----------------------------------------------------------------------------- action validation
def _validating_envs():
    return [recommendation_letter(num_envs=3, validate_actions=True),
            ReachingGoalsEnv(num_envs=3, validate_actions=True)]


@pytest.mark.parametrize("env_index", [0, 1])
@pytest.mark.parametrize(
    "key, bad, match",
    [
        (("sender", "message"), lambda e: torch.zeros(3, e.num_messages + 1), "shape"),
        (("sender", "message"), lambda e: torch.full((3, e.num_messages), 0.5), "one-hot"),
        (("sender", "message"), lambda e: torch.ones(3, e.num_messages), "one-hot"),
        (("receiver", "action"), lambda e: torch.zeros(3, e.num_actions + 2), "shape"),
        (("receiver", "action"), lambda e: 2 * one_hot(torch.zeros(3, dtype=torch.long), e.num_actions), "one-hot"),
    ],
)
def test_validate_actions_rejects(env_index, key, bad, match):
    env = _validating_envs()[env_index]
    td = env.rand_step(env.reset())  # a valid step passes
    td = step_mdp(td)
    td.update(env.action_spec.rand())
    td.set(key, bad(env))
    with pytest.raises(ValueError, match=match):
        env.step(td)


@pytest.mark.parametrize("env_index", [0, 1])
def test_validate_actions_rejects_missing_message(env_index):
    env = _validating_envs()[env_index]
    td = env.reset()
    td.set(("receiver", "action"), one_hot(torch.zeros(3, dtype=torch.long), env.num_actions))
    with pytest.raises(ValueError, match="message"):
        env.step(td)


# ----------------------------------------------------------------------------- rendering
def test_render_frame_colours():
    px = 16
    img = render_frame(torch.tensor([4, 0, 8]), 3, 3, message_cell=2, cell_px=px)
    assert img.shape == (3 * px, 3 * px, 3) and img.dtype == np.uint8

    def centre(cell):
        r, c = divmod(cell, 3)
        return tuple(img[r * px + px // 2, c * px + px // 2])

    assert centre(4) == (30, 60, 200)  # receiver
    assert centre(0) == (215, 40, 40)  # red apple
    assert centre(8) == (40, 170, 60)  # green apple
    assert tuple(img[1, 2 * px + px // 2]) == (245, 200, 0)  # message frame (top border of cell 2)
    assert centre(2) == (245, 245, 245)
    batch = render_frame(torch.tensor([[4, 0, 8], [1, 2, 3]]), 3, 3, cell_px=px)
    assert np.array_equal(batch, render_frame(torch.tensor([4, 0, 8]), 3, 3, cell_px=px))
    with pytest.raises(ValueError):
        render_frame(torch.tensor([9, 0, 1]), 3, 3)


def test_env_render_uses_message():
    env = ReachingGoalsEnv(num_envs=2, height=4, width=4)
    td = set_state(env, [[0, 1, 2], [5, 6, 7]])
    td.set(("sender", "message"), one_hot(torch.tensor([3, 15]), 16))
    img = env.render(td, index=1, cell_px=12)
    expected = render_frame([5, 6, 7], 4, 4, message_cell=15, cell_px=12)
    assert np.array_equal(img, expected)


def test_plot_signaling_scheme():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msgzoo.envs import plot_signaling_scheme

    phi = torch.softmax(torch.arange(9.0), 0)
    ax = plot_signaling_scheme(phi, 3, 3, state=torch.tensor([4, 0, 8]), title="phi")
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9 and texts[-1] == f"{phi[-1].item():.2f}"
    assert ax.get_title() == "phi"
    assert len(ax.patches) == 3
    with pytest.raises(ValueError):
        plot_signaling_scheme(torch.ones(8) / 8, 3, 3)
    plt.close("all")


# ----------------------------------------------------------------------------- Reaching Goals: every move's reward
@pytest.mark.parametrize("bounded", [True, False])
def test_rewards_of_every_move_are_what_a_step_pays(bounded):
    env = ReachingGoalsEnv(num_envs=64, height=4, width=5, bounded=bounded, seed=3)
    td = env.reset()
    every = env.rewards_of_every_move(td["sender", "state"])  # [64, 4, 2]
    for move in range(4):
        paid = step_with(env, td.clone(), move)["next"]
        assert torch.equal(every[:, move, 0], paid["sender", "reward"].squeeze(-1))
        assert torch.equal(every[:, move, 1], paid["receiver", "reward"].squeeze(-1))


@pytest.mark.parametrize("observes, size", [((), 9), (("position",), 81), (("position", "goal"), 729)])
def test_receiver_information_tells_apart_what_the_receiver_sees(observes, size):
    from msgzoo.modules.receiver import moves_toward

    env = ReachingGoalsEnv(num_envs=1, receiver_observes=observes)
    cells = torch.arange(9)
    state = torch.stack(torch.meshgrid(cells, cells, cells, indexing="ij"), -1).reshape(-1, 3)
    index = torch.stack([env.receiver_information(state, torch.full((len(state),), m)) for m in range(9)])
    assert index.unique().numel() == size and int(index.max()) == size - 1
    # moves toward a cell: from the middle of 3x3 toward each corner, two moves; toward itself, none
    toward = moves_toward(3, torch.full((9,), 4), cells).to(torch.int64)
    assert toward[[0, 2, 6, 8]].sum(-1).tolist() == [2, 2, 2, 2] and toward[4].sum() == 0
    assert toward[1].tolist() == [1, 0, 0, 0] and toward[5].tolist() == [0, 0, 0, 1]  # up, right
    for move, (d_row, d_col) in enumerate(MOVES):  # the modules' move order is the env's
        target = torch.tensor([(1 + d_row) * 3 + 1 + d_col])
        assert moves_toward(3, torch.tensor([4]), target).nonzero()[:, 1].tolist() == [move]
