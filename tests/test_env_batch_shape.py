"""Multi-dimensional batch shapes (``batch_size=[S, M]``, e.g. seeds x games) of msgzoo's environments.

An env with ``batch_size=[2, 3]`` must play exactly the games of a flat env with ``num_envs=6`` (row-major
flattening, same random draws for the same seed), only with every key shaped ``[2, 3, ...]``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.collectors import Collector
from torchrl.envs.utils import RandomPolicy, check_env_specs, step_mdp

from msgzoo.envs import (
    BayesianPersuasionEnv,
    ReachingGoalsEnv,
    recommendation_letter,
    render_frame,
)
from msgzoo.envs.persuasion_games import make_one_step_env, make_persuasion_env

SHAPE = (2, 3)
N = 6
UP, DOWN, LEFT, RIGHT = range(4)


def one_hot(index, size: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(index), size).float()


# Each maker builds the same game either flat (num_envs=6) or shaped (batch_size=[2, 3]).
MAKERS = {
    "reaching_goals": lambda seed=0, **kw: ReachingGoalsEnv(seed=seed, horizon=3, **kw),
    "reaching_goals_5x4_torus": lambda seed=0, **kw: ReachingGoalsEnv(
        height=5, width=4, bounded=False, receiver_observes=("position", "goal"), horizon=4, seed=seed, **kw
    ),
    "reaching_goals_message_only_aligned": lambda seed=0, **kw: ReachingGoalsEnv(
        receiver_observes=(), aligned=True, horizon=5, seed=seed, **kw
    ),
    "recommendation_letter": lambda seed=0, **kw: recommendation_letter(seed=seed, **kw),
    "prosecutor_judge": lambda seed=0, **kw: make_one_step_env("prosecutor_judge", seed=seed, **kw),
    "weather_forecast_markov": lambda seed=0, **kw: make_persuasion_env("weather_forecast", horizon=3, seed=seed, **kw),
}
ALL = list(MAKERS)
ONE_PER_ENV = ["reaching_goals", "recommendation_letter"]


def shaped(name, seed=0, **kw):
    return MAKERS[name](seed=seed, batch_size=list(SHAPE), **kw)


def flat(name, seed=0, **kw):
    return MAKERS[name](seed=seed, num_envs=N, **kw)


def is_reaching_goals(env) -> bool:
    return isinstance(env, ReachingGoalsEnv)


def fixed_actions(env, steps: int, seed: int = 123):
    """``steps`` (message, action) pairs, one-hot ``[N, K]`` (flat) - reshape them for a shaped env."""
    g = torch.Generator().manual_seed(seed)
    return [
        (one_hot(torch.randint(0, env.num_messages, (N,), generator=g), env.num_messages),
         one_hot(torch.randint(0, env.num_actions, (N,), generator=g), env.num_actions))
        for _ in range(steps)
    ]


def to_env_shape(env, value: torch.Tensor) -> torch.Tensor:
    """A flat ``[N, ...]`` tensor in ``env``'s batch shape."""
    return value.reshape(*env.batch_size, *value.shape[1:])


def assert_td_equal_flat(td_shaped, td_flat):
    """Every leaf of ``td_shaped`` (batch ``[2, 3, ...]``) equals that of ``td_flat`` (``[6, ...]``), exactly."""
    assert td_shaped.batch_size[:2] == SHAPE and td_flat.batch_size[:1] == (N,)
    keys = set(td_shaped.keys(True, True))
    assert keys == set(td_flat.keys(True, True))
    for key in keys:
        a, b = td_shaped.get(key), td_flat.get(key)
        assert a.shape == (*SHAPE, *b.shape[1:]), key
        assert a.dtype == b.dtype, key
        assert torch.equal(a.reshape(b.shape), b), key


# ----------------------------------------------------------------------------- construction
@pytest.mark.parametrize("name", ALL)
def test_batch_size_and_num_envs(name):
    env = shaped(name)
    assert env.batch_size == SHAPE and env.num_envs == N
    assert env.action_spec["receiver", "action"].shape == (*SHAPE, env.num_actions)
    assert env.action_spec["sender", "message"].shape == (*SHAPE, env.num_messages)
    assert env.full_done_spec["done"].shape == (*SHAPE, 1)
    assert env.full_reward_spec["sender", "reward"].shape == (*SHAPE, 1)
    # Giving num_envs too is fine when it is the number of games.
    assert MAKERS[name](batch_size=[2, 3], num_envs=6).batch_size == SHAPE
    # batch_size=None: as before, [num_envs]; a one-dimensional batch_size is the same env.
    assert flat(name).batch_size == (N,) and MAKERS[name](batch_size=[N]).batch_size == (N,)
    assert MAKERS[name]().batch_size == (1,) and MAKERS[name]().num_envs == 1
    assert MAKERS[name](batch_size=(1, 1, 4)).num_envs == 4
    assert MAKERS[name](batch_size=torch.Size([3, np.int64(2)])).batch_size == (3, 2)


@pytest.mark.parametrize("name", ALL)
def test_check_env_specs(name):
    check_env_specs(shaped(name, seed=1))


@pytest.mark.parametrize("name", ALL)
def test_rollout_shape(name):
    env = shaped(name)
    data = env.rollout(5, break_when_any_done=False)
    assert data.batch_size == (*SHAPE, 5)
    assert data["next", "sender", "reward"].shape == (*SHAPE, 5, 1)
    assert data["next", "done"].shape == (*SHAPE, 5, 1)
    assert data["sender", "observation"].shape[:3] == (*SHAPE, 5)
    if is_reaching_goals(env):
        assert data["sender", "state"].shape == (*SHAPE, 5, 3)
        assert data["step_count"].shape == (*SHAPE, 5, 1)
        # Observations agree with the state carrier everywhere (the reshapes did not mix games up).
        obs = data["sender", "observation"].flatten(-2)
        assert torch.equal(obs.argmax(-1), data["sender", "state"])
    else:
        assert data["sender", "state"].shape == (*SHAPE, 5)
        assert torch.equal(data["sender", "observation"].argmax(-1), data["sender", "state"])
        assert env.rollout(5).batch_size == (*SHAPE, env.horizon)  # stops at the end of the (first) episode


# ----------------------------------------------------------------------------- same games as a flat env
def _given_state(env, td):
    """Overwrite the state carrier of a flat-env tensordict with hand-picked states (apples reached, walls,
    horizon), so that one step exercises moves, respawns and truncation."""
    if is_reaching_goals(env):
        nc = env.num_cells
        td.set(("sender", "state"), torch.tensor([[3, 4, 0], [3, 4, 4], [4, 0, 8], [0, 1, 2], [8, 7, 5], [1, 2, 1]]) % nc)
        h = env.horizon  # two games reach the horizon with this step
        td.set("step_count", torch.tensor([[0], [1], [h - 1], [h - 1], [1], [0]]))
    else:
        td.set(("sender", "state"), torch.arange(N) % env.num_states)
    return td


@pytest.mark.parametrize("name", ALL)
def test_step_from_given_state_equals_flat_env(name):
    env2, env1 = shaped(name, seed=4), flat(name, seed=4)
    td1 = _given_state(env1, env1.reset())
    td2 = env2.reset()
    for key in (("sender", "state"), "step_count"):
        if key in td1.keys(True):
            td2.set(key, to_env_shape(env2, td1.get(key)))
    moves = torch.tensor([RIGHT, RIGHT, UP, LEFT, DOWN, RIGHT]) % env1.num_actions
    message = one_hot(torch.arange(N) % env1.num_messages, env1.num_messages)
    td1.set(("sender", "message"), message)
    td1.set(("receiver", "action"), one_hot(moves, env1.num_actions))
    td2.set(("sender", "message"), to_env_shape(env2, message))
    td2.set(("receiver", "action"), to_env_shape(env2, one_hot(moves, env1.num_actions)))
    out1, out2 = env1.step(td1), env2.step(td2)
    assert_td_equal_flat(out2["next"], out1["next"])
    if is_reaching_goals(env1):
        rewards = torch.cat([out1["next", "sender", "reward"], out1["next", "receiver", "reward"]])
        assert (rewards == env1.reward_amplifier).any()  # an apple was reached (and respawned)
        assert out1["next", "truncated"].any() and not out1["next", "truncated"].all()


@pytest.mark.parametrize("name", ALL)
def test_trajectory_with_auto_resets_equals_flat_env(name):
    """Same seed, same actions: step_and_maybe_reset (partial auto-resets included) plays the same games."""
    env2, env1 = shaped(name, seed=9), flat(name, seed=9)
    td1, td2 = env1.reset(), env2.reset()
    assert_td_equal_flat(td2, td1)
    for message, action in fixed_actions(env1, 12):
        td1.set(("sender", "message"), message)
        td1.set(("receiver", "action"), action)
        td2.set(("sender", "message"), to_env_shape(env2, message))
        td2.set(("receiver", "action"), to_env_shape(env2, action))
        data1, td1 = env1.step_and_maybe_reset(td1)
        data2, td2 = env2.step_and_maybe_reset(td2)
        assert_td_equal_flat(data2, data1)
        assert_td_equal_flat(td2, td1)


# ----------------------------------------------------------------------------- partial reset / step
RESET_MASK = torch.tensor([[True, False, False], [False, True, True]]).unsqueeze(-1)  # [2, 3, 1]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("squeeze", [False, True])
def test_partial_reset_redraws_masked_games_only(name, squeeze):
    env = shaped(name, seed=3)
    twin = shaped(name, seed=3)  # the same draws, reset without a mask
    td = env.reset()
    twin.reset()
    if is_reaching_goals(env):
        td.set("step_count", torch.full((*SHAPE, 1), 2))
    before = td.clone()
    td.set("_reset", RESET_MASK.squeeze(-1) if squeeze else RESET_MASK)
    out = env.reset(td)
    fresh = twin.reset()
    keep, redo = ~RESET_MASK.squeeze(-1), RESET_MASK.squeeze(-1)
    for key in fresh.keys(True, True):
        assert torch.equal(out.get(key)[keep], before.get(key)[keep]), key
        assert torch.equal(out.get(key)[redo], fresh.get(key)[redo]), key
    assert not torch.equal(out["sender", "state"], before["sender", "state"])  # something was redrawn
    if is_reaching_goals(env):
        assert out["step_count"].squeeze(-1).tolist() == [[0, 2, 2], [2, 0, 0]]


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("reaching_goals")])
def test_direct_partial_reset_and_partial_step(name):
    env = shaped(name, seed=2)
    td = env.reset()
    td.set("step_count", torch.full((*SHAPE, 1), 1))
    before = td.clone()
    # _reset itself keeps the games outside the mask (when the input carries their state).
    td.set("_reset", RESET_MASK)
    out = env._reset(td)
    keep = ~RESET_MASK.squeeze(-1)
    assert out.batch_size == SHAPE
    assert torch.equal(out["sender", "state"][keep], before["sender", "state"][keep])
    assert out["step_count"].squeeze(-1).tolist() == [[0, 1, 1], [1, 0, 0]]
    # A partial step: only the masked games move; the others keep their state and get zero reward.
    td = out.exclude("_reset")
    td.update(env.action_spec.rand())
    step_mask = torch.tensor([[True, True, False], [False, True, False]]).unsqueeze(-1)
    td.set("_step", step_mask)
    nxt = env.step(td)["next"]
    still = ~step_mask.squeeze(-1)
    assert torch.equal(nxt["sender", "state"][still], out["sender", "state"][still])
    assert torch.equal(nxt["step_count"], out["step_count"] + step_mask)
    assert torch.all(nxt["sender", "reward"][still] == 0) and torch.all(nxt["receiver", "reward"][still] == 0)


# ----------------------------------------------------------------------------- seeding
def _trajectory(env, actions):
    td = env.reset()
    states, rewards = [td["sender", "state"].clone()], []
    for message, action in actions:
        td.set(("sender", "message"), to_env_shape(env, message))
        td.set(("receiver", "action"), to_env_shape(env, action))
        td, nxt = env.step_and_maybe_reset(td)
        states.append(nxt["sender", "state"].clone())
        rewards.append(td["next", "sender", "reward"].clone())
        td = nxt
    return torch.stack(states), torch.stack(rewards)


@pytest.mark.parametrize("name", ONE_PER_ENV)
def test_seeding(name):
    actions = fixed_actions(shaped(name), 20)
    s1, r1 = _trajectory(shaped(name, seed=7), actions)
    s2, r2 = _trajectory(shaped(name, seed=7), actions)
    s3, _ = _trajectory(shaped(name, seed=8), actions)
    assert s1.shape[1:3] == SHAPE
    assert torch.equal(s1, s2) and torch.equal(r1, r2)
    assert not torch.equal(s1, s3)
    env = shaped(name, seed=7)
    _trajectory(env, actions)
    env.set_seed(7)  # rewinds the generator
    s4, _ = _trajectory(env, actions)
    assert torch.equal(s1, s4)


# ----------------------------------------------------------------------------- collector
@pytest.mark.parametrize("name", ONE_PER_ENV)
@pytest.mark.parametrize("random_policy", [False, True])
def test_collector_batches(name, random_policy):
    env = shaped(name, seed=0)
    policy = RandomPolicy(env.action_spec) if random_policy else None
    steps = 4
    collector = Collector(env, policy, frames_per_batch=env.num_envs * steps, total_frames=2 * env.num_envs * steps)
    try:
        batches = list(collector)
    finally:
        collector.shutdown()
    assert len(batches) == 2
    for data in batches:
        assert data.batch_size == (*SHAPE, steps)
        assert data["next", "sender", "reward"].shape == (*SHAPE, steps, 1)
        assert data["receiver", "action"].shape == (*SHAPE, steps, env.num_actions)


# ----------------------------------------------------------------------------- validation, rendering
@pytest.mark.parametrize("name", ONE_PER_ENV)
def test_validate_actions_with_batch_shape(name):
    env = shaped(name, validate_actions=True)
    td = step_mdp(env.rand_step(env.reset()))  # valid [2, 3, K] one-hot actions pass
    td.update(env.action_spec.rand())
    env.step(td.clone())
    bad = td.clone()
    bad.set(("receiver", "action"), 2 * bad.get(("receiver", "action")))
    with pytest.raises(ValueError, match="one-hot"):
        env.step(bad)
    bad = td.clone()
    bad.set(("sender", "message"), torch.zeros(*SHAPE, env.num_messages + 1))
    with pytest.raises(ValueError, match=r"shape .*expected \(2, 3, "):
        env.step(bad)


def test_render_indexes_flattened_batch():
    env = shaped("reaching_goals")
    td = env.reset()
    td.set(("sender", "message"), to_env_shape(env, one_hot(torch.arange(N), env.num_messages)))
    state = td["sender", "state"].reshape(N, 3)
    for index in (0, 4):
        expected = render_frame(state[index], env.height, env.width, message_cell=index, cell_px=8)
        assert np.array_equal(env.render(td, index=index, cell_px=8), expected)
    data = env.rollout(3)  # [2, 3, 3]: game (1, 2) at t = 1 is flat index (1 * 3 + 2) * 3 + 1
    expected = render_frame(data["sender", "state"][1, 2, 1], env.height, env.width, cell_px=8)
    assert np.array_equal(env.render(data.exclude(("sender", "message")), index=(1 * 3 + 2) * 3 + 1, cell_px=8),
                          expected)


# ----------------------------------------------------------------------------- argument checks
BAD_BATCH_SIZES = [[], (), [0, 3], [2, -1], [2.5], [2, 3.0], "abc", 6, [True, 3], [[2, 3]]]


@pytest.mark.parametrize("name", ["reaching_goals", "recommendation_letter", "prosecutor_judge"])
@pytest.mark.parametrize("batch_size", BAD_BATCH_SIZES)
def test_bad_batch_size(name, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        MAKERS[name](batch_size=batch_size)


@pytest.mark.parametrize("name", ["reaching_goals", "recommendation_letter", "prosecutor_judge"])
@pytest.mark.parametrize("num_envs", [5, 1, 0, 2.5])
def test_num_envs_conflicting_with_batch_size(name, num_envs):
    with pytest.raises(ValueError, match="num_envs") as err:
        MAKERS[name](batch_size=[2, 3], num_envs=num_envs)
    assert "batch_size" in str(err.value)


def test_bad_num_envs_still_rejected():
    for kwargs in ({"num_envs": 0}, {"num_envs": 2.5}, {"num_envs": True}):
        with pytest.raises(ValueError, match="num_envs"):
            ReachingGoalsEnv(**kwargs)
        with pytest.raises(ValueError, match="num_envs"):
            BayesianPersuasionEnv([0.5, 0.5], torch.zeros(2, 2), torch.zeros(2, 2), **kwargs)
