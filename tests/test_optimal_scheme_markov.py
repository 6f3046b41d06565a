"""The occupancy LP of a Markov signaling game (msgzoo.game_theory.optimal_scheme_markov), checked against independent
computations: the env itself, the one-step LP, brute-force enumeration, backward induction, Monte Carlo."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import linprog
from tensordict import TensorDict

from msgzoo.envs import ReachingGoalsEnv
from msgzoo.game_theory.optimal_scheme import optimal_signaling_scheme
from msgzoo.game_theory.optimal_scheme_markov import (
    TabularMarkovGame,
    evaluate_markov_scheme,
    lp_size,
    optimal_markov_scheme,
    reaching_goals_game,
)


def _state_ids(game: TabularMarkovGame) -> dict[tuple[int, int, int], int]:
    return {tuple(int(c) for c in cells): i for i, cells in enumerate(game.states)}


def _one_hot(index: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(index, size).to(torch.float32)


@pytest.mark.parametrize("kwargs", [
    dict(height=2, width=2),
    dict(height=2, width=3, bounded=False, reward_amplifier=7.0, punish_amplifier=2.0),
    dict(height=2, width=2, aligned=True),
])
def test_tables_match_the_env(kwargs):
    """Every (state, action) stepped in the env: the same rewards, and next states distributed as the tables say."""
    game = reaching_goals_game(horizon=3, **kwargs)
    env0 = ReachingGoalsEnv(num_envs=1, horizon=3, **kwargs)
    S, A, n, reps = game.num_states, game.num_actions, env0.num_cells, 300
    env = ReachingGoalsEnv(num_envs=S * A * reps, horizon=3, seed=1, **kwargs)
    state = torch.as_tensor(game.states).repeat_interleave(A * reps, 0)
    action = torch.arange(A).repeat_interleave(reps).repeat(S)
    td = TensorDict({
        ("sender", "state"): state,
        ("sender", "message"): torch.zeros(env.num_envs, n),
        ("receiver", "action"): _one_hot(action, A),
        "step_count": torch.zeros(env.num_envs, 1, dtype=torch.int64),
    }, batch_size=[env.num_envs])
    out = env.step(td)["next"]
    sender = out["sender", "reward"].view(S, A, reps)
    receiver = out["receiver", "reward"].view(S, A, reps)
    torch.testing.assert_close(sender[..., 0].double(), torch.as_tensor(game.sender_reward), atol=1e-5, rtol=0)
    torch.testing.assert_close(receiver[..., 0].double(), torch.as_tensor(game.receiver_reward), atol=1e-5, rtol=0)
    ids = _state_ids(game)
    nxt = np.array([ids[tuple(c)] for c in out["sender", "state"].tolist()]).reshape(S * A, reps)
    empirical = np.stack([np.bincount(row, minlength=S) / reps for row in nxt])
    expected = game.transition.toarray()
    assert np.all(empirical[expected == 0] == 0)  # no successor the tables call impossible
    assert np.abs(empirical - expected).max() < 0.12  # 300 draws per row: ~5 standard deviations


@pytest.mark.parametrize("observes", [[], ["position"], ["position", "goal"]])
def test_reset_distribution_and_observations_match_the_env(observes):
    game = reaching_goals_game(height=2, width=2, horizon=3, receiver_observes=observes)
    env = ReachingGoalsEnv(height=2, width=2, horizon=3, receiver_observes=observes, num_envs=40_000, seed=3)
    td = env.reset()
    ids = _state_ids(game)
    drawn = np.array([ids[tuple(c)] for c in td["sender", "state"].tolist()])
    assert np.abs(np.bincount(drawn, minlength=game.num_states) / env.num_envs - game.initial).max() < 0.006
    # Two states look the same to the receiver iff the tables give them the same observation id.
    obs = td["receiver", "observation"].reshape(env.num_envs, -1)
    seen = {}
    for s, o in zip(drawn.tolist(), map(tuple, obs.tolist())):
        seen.setdefault(s, o)
    same_env = np.array([[seen[a] == seen[b] for b in sorted(seen)] for a in sorted(seen)])
    same_game = game.observation[sorted(seen)][:, None] == game.observation[sorted(seen)][None, :]
    assert len(seen) == game.num_states and np.array_equal(same_env, same_game)


@pytest.mark.parametrize("observes", [[], ["position"]])
def test_horizon_one_is_the_one_step_lp(observes):
    """T = 1: the static persuasion LP of eq. (1) (msgzoo.game_theory.optimal_scheme), one per observation."""
    game = reaching_goals_game(height=2, width=2, horizon=1, receiver_observes=observes)
    expected = 0.0
    for o in np.unique(game.observation):
        mask = game.observation == o
        mass = game.initial[mask].sum()
        static = optimal_signaling_scheme(game.initial[mask] / mass, game.sender_reward[mask],
                                          game.receiver_reward[mask])
        expected += mass * static.sender_value
    for method in ("column_generation", "occupancy"):
        assert optimal_markov_scheme(game, method=method).sender_value == pytest.approx(expected, abs=1e-6)


def _random_game(seed: int, S=3, A=2, T=3, num_obs=2) -> TabularMarkovGame:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(S), size=S * A)
    p[p < 0.15] = 0.0  # some zero transitions
    p /= p.sum(1, keepdims=True)
    return TabularMarkovGame(
        initial=rng.dirichlet(np.ones(S)), transition=sp.csr_matrix(p),
        sender_reward=rng.normal(size=(S, A)), receiver_reward=rng.normal(size=(S, A)),
        observation=rng.integers(0, num_obs, size=S), horizon=T,
    )


def _brute_force(game: TabularMarkovGame, per_t: bool) -> float:
    """Every deterministic time-dependent scheme, evaluated by plain loops; the best obedient mixture of them (every
    occupancy is a mixture of deterministic ones, and values and obedience are linear in it)."""
    T, S, A = game.horizon, game.num_states, game.num_actions
    P = game.transition.toarray().reshape(S, A, S)
    O = int(game.observation.max()) + 1
    values, slacks = [], []
    for flat in itertools.product(range(A), repeat=T * S):
        actions = np.array(flat).reshape(T, S)
        d, value, slack = game.initial.copy(), 0.0, np.zeros((T, O, A, A))
        for t in range(T):
            new = np.zeros(S)
            for s in range(S):
                a = actions[t, s]
                value += d[s] * game.sender_reward[s, a]
                for b in range(A):
                    slack[t, game.observation[s], a, b] += d[s] * (game.receiver_reward[s, a] - game.receiver_reward[s, b])
                new += d[s] * P[s, a]
            d = new
        values.append(value)
        slacks.append((slack if per_t else slack.sum(0)).ravel())
    g = np.array(slacks).T
    res = linprog(-np.array(values), A_ub=-g, b_ub=np.zeros(len(g)), A_eq=np.ones((1, len(values))), b_eq=[1.0],
                  bounds=(0, None), method="highs")
    assert res.status == 0
    return -res.fun


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_t", [False, True])
def test_brute_force_on_random_tiny_games(seed, per_t):
    game = _random_game(seed)
    expected = _brute_force(game, per_t)
    for method in ("column_generation", "occupancy"):
        opt = optimal_markov_scheme(game, method=method, receiver_knows_time=per_t)
        assert opt.sender_value == pytest.approx(expected, abs=1e-6)
        value, receiver, slack, occupancy = evaluate_markov_scheme(game, opt.policy, receiver_knows_time=per_t)
        assert value == pytest.approx(opt.sender_value, abs=1e-6)
        assert receiver == pytest.approx(opt.receiver_value, abs=1e-6)
        assert slack.min() >= -1e-6  # obedient (column generation: up to MASTER_SLACK per scaled row)
        np.testing.assert_allclose(occupancy, opt.occupancy, atol=1e-7)


def _sender_mdp_optimum(game: TabularMarkovGame) -> float:
    """The sender moving the receiver itself (no obedience): backward induction with plain loops."""
    S, A = game.num_states, game.num_actions
    P = game.transition.toarray().reshape(S, A, S)
    v = np.zeros(S)
    for _ in range(game.horizon):
        v = np.array([max(game.sender_reward[s, a] + P[s, a] @ v for a in range(A)) for s in range(S)])
    return float(game.initial @ v)


@pytest.mark.parametrize("observes", [[], ["position"], ["position", "goal"]])
def test_reaching_goals_methods_agree(observes):
    """2x2, T = 3: column generation (or the restricted DP) and the direct occupancy LP find the same optimum,
    between the honest scheme's value and the sender's own MDP optimum."""
    game = reaching_goals_game(height=2, width=2, horizon=3, receiver_observes=observes)
    auto = optimal_markov_scheme(game)
    assert auto.method == ("restricted_dp" if observes == ["position", "goal"] else "column_generation")
    direct = optimal_markov_scheme(game, method="occupancy")
    assert auto.sender_value == pytest.approx(direct.sender_value, abs=1e-6)
    honest = np.broadcast_to(game.receiver_reward.argmax(1), (game.horizon, game.num_states))
    assert evaluate_markov_scheme(game, honest)[0] <= auto.sender_value + 1e-9
    assert auto.sender_value <= _sender_mdp_optimum(game) + 1e-9
    assert evaluate_markov_scheme(game, auto.policy)[2].min() >= -1e-6


def test_receiver_without_stakes_obeys_anything():
    """A receiver whose reward is 0 everywhere obeys every scheme: the optimum is the sender's MDP optimum."""
    game = reaching_goals_game(height=2, width=3, horizon=4, receiver_observes=["position"])
    game = dataclasses.replace(game, receiver_reward=np.zeros_like(game.receiver_reward))
    for method in ("auto", "column_generation", "occupancy"):
        assert optimal_markov_scheme(game, method=method).sender_value == pytest.approx(_sender_mdp_optimum(game), abs=1e-6)


def test_optimal_scheme_played_in_the_env():
    """Monte Carlo: the LP's scheme, recommended in ReachingGoalsEnv and obeyed, earns the LP's values."""
    game = reaching_goals_game(height=2, width=2, horizon=4, receiver_observes=["position"])
    opt = optimal_markov_scheme(game)
    env = ReachingGoalsEnv(height=2, width=2, horizon=4, receiver_observes=["position"], num_envs=20_000, seed=5)
    ids = np.full(env.num_cells**3, -1)
    ids[(game.states[:, 0] * env.num_cells + game.states[:, 1]) * env.num_cells + game.states[:, 2]] = np.arange(game.num_states)
    ids, policy = torch.as_tensor(ids), torch.as_tensor(opt.policy)
    gen = torch.Generator().manual_seed(0)
    td = env.reset()
    sender = torch.zeros(env.num_envs, dtype=torch.float64)
    receiver = torch.zeros_like(sender)
    for t in range(game.horizon):
        cells = td["sender", "state"]
        s = ids[(cells[:, 0] * env.num_cells + cells[:, 1]) * env.num_cells + cells[:, 2]]
        a = torch.multinomial(policy[t, s], 1, generator=gen).squeeze(-1)
        td["sender", "message"] = torch.zeros(env.num_envs, env.num_messages)
        td["receiver", "action"] = _one_hot(a, 4)
        td = env.step(td)["next"]
        sender += td["sender", "reward"].squeeze(-1).double()
        receiver += td["receiver", "reward"].squeeze(-1).double()
    for sample, value in ((sender, opt.sender_value), (receiver, opt.receiver_value)):
        assert abs(sample.mean().item() - value) < 4 * sample.std().item() / env.num_envs**0.5 + 1e-3


def test_errors_name_the_field():
    game = reaching_goals_game(height=2, width=2, horizon=2)
    with pytest.raises(ValueError, match="method"):
        optimal_markov_scheme(game, method="simplex")
    with pytest.raises(ValueError, match="max_nonzeros"):
        optimal_markov_scheme(game, method="occupancy", max_nonzeros=10)
    assert lp_size(game)[2] > 10
    with pytest.raises(ValueError, match="policy"):
        evaluate_markov_scheme(game, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="initial"):
        optimal_markov_scheme(dataclasses.replace(game, initial=game.initial * 2))
    with pytest.raises(ValueError, match="receiver_observes"):
        reaching_goals_game(receiver_observes=["apple"])
