"""Markov persuasion: the env with a state chain no action changes, its state occupancy and exact optimum.

The exact per-step optimum is the one-step LP on the occupancy ``d = (1/T) sum_t p0 P^t``; the checks below
compare it with a brute force over non-stationary schemes and with Monte-Carlo rollouts of the env.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from msgzoo.envs import BayesianPersuasionEnv, recommendation_letter
from msgzoo.envs.persuasion_games import MARKOV_GAMES, ONE_STEP_GAMES, make_one_step_env, make_persuasion_env
from msgzoo.game_theory.exact_payoffs import exact_payoffs
from msgzoo.game_theory.optimal_scheme import (
    full_information_value,
    no_information_value,
    optimal_signaling_scheme,
    state_occupancy,
)

P2 = [[0.9, 0.1], [0.3, 0.7]]
RL = dict(prior=[2 / 3, 1 / 3], sender_utility=[[0.0, 1.0], [0.0, 1.0]], receiver_utility=[[0.0, -1.0], [0.0, 1.0]])


def one_hot(index, size: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(index), size).float()


def markov_rl(horizon=4, **kw) -> BayesianPersuasionEnv:
    """The Recommendation Letter's payoffs with a persistent 2-state chain."""
    return BayesianPersuasionEnv(**RL, transition=P2, horizon=horizon, **kw)


def marginals(p0, transition, horizon) -> np.ndarray:
    """``[T, |S|]``: the state distribution of every step, ``p0 P^t`` by repeated matrix powers."""
    p0, m = np.asarray(p0, dtype=np.float64), np.asarray(transition, dtype=np.float64)
    return np.stack([p0 @ np.linalg.matrix_power(m, t) for t in range(horizon)])


# ----------------------------------------------------------------------------- the one-step env is unchanged
def test_no_transition_is_the_one_step_env_bit_for_bit():
    a, b = recommendation_letter(num_envs=64, seed=5), recommendation_letter(num_envs=64, seed=5, transition=None, horizon=1)
    assert "step_count" not in a.observation_spec.keys() and b.horizon == 1 and not b.is_markov
    assert torch.equal(a.occupancy, a.prior)
    torch.manual_seed(0)
    ra = a.rollout(6, break_when_any_done=False)
    torch.manual_seed(0)
    rb = b.rollout(6, break_when_any_done=False)
    assert (ra == rb).all()


# ----------------------------------------------------------------------------- the Markov env
@pytest.mark.parametrize("batch", [dict(num_envs=5), dict(batch_size=[2, 3])])
def test_specs(batch):
    check_env_specs(markov_rl(**batch, seed=1))


def test_episode_is_truncated_at_the_horizon_and_restarts():
    env = markov_rl(horizon=3, batch_size=[2, 4], seed=0)
    data = env.rollout(7, break_when_any_done=False)
    assert data.batch_size == (2, 4, 7)
    assert data["step_count"][0, 0].squeeze(-1).tolist() == [0, 1, 2, 0, 1, 2, 0]
    truncated = data["next", "truncated"].squeeze(-1)
    assert truncated[0, 0].tolist() == [False, False, True] * 2 + [False] and (truncated == truncated[0, 0]).all()
    assert torch.equal(data["next", "done"], data["next", "truncated"]) and not data["next", "terminated"].any()
    assert data["next", "step_count"][0, 0, 2].item() == 3
    assert env.rollout(10).batch_size == (2, 4, 3)  # stops at the first done
    # the receiver sees nothing but the message
    assert data["receiver", "observation"].shape == (2, 4, 7, 0)
    assert torch.equal(data["sender", "observation"].argmax(-1), data["sender", "state"])


def test_states_follow_the_chain_whatever_is_sent_or_done():
    p0, horizon, n = [0.2, 0.8], 4, 20_000
    env = BayesianPersuasionEnv(p0, **{k: v for k, v in RL.items() if k != "prior"}, transition=P2, horizon=horizon,
                                num_envs=n, seed=3)
    data = env.rollout(horizon)
    states = data["sender", "state"]  # [n, T]
    expected = marginals(p0, P2, horizon)
    for t in range(horizon):
        freq = torch.bincount(states[:, t], minlength=2).double().numpy() / n
        se = np.sqrt(expected[t] * (1 - expected[t]) / n)
        assert np.all(np.abs(freq - expected[t]) < 4 * se + 1e-12), (t, freq, expected[t])
    # the next observation of every step, the last included, is the chain's next state
    assert torch.equal(data["next", "sender", "state"][:, :-1], states[:, 1:])
    counts = torch.zeros(2, 2, dtype=torch.float64)
    counts.index_put_((states.flatten(), data["next", "sender", "state"].flatten()), torch.ones(n * horizon, dtype=torch.float64), accumulate=True)
    freq = counts / counts.sum(-1, keepdim=True)
    assert torch.allclose(freq, torch.tensor(P2, dtype=torch.float64), atol=0.01)
    # same seed, other actions: the same states (the receiver's action does not change the chain)
    a, b = markov_rl(num_envs=50, seed=9), markov_rl(num_envs=50, seed=9)
    ta, tb = a.reset(), b.reset()
    for _ in range(6):
        ta.update(a.action_spec.rand())
        tb.set(("receiver", "action"), one_hot(torch.zeros(50, dtype=torch.long), 2))
        tb.set(("sender", "message"), one_hot(torch.ones(50, dtype=torch.long), 2))
        (_, ta), (_, tb) = a.step_and_maybe_reset(ta), b.step_and_maybe_reset(tb)
        assert torch.equal(ta["sender", "state"], tb["sender", "state"])


def test_partial_reset_redraws_masked_games_only():
    env, twin = markov_rl(batch_size=[2, 3], seed=3), markov_rl(batch_size=[2, 3], seed=3)
    td = env.reset()
    twin.reset()
    td.set("step_count", torch.full((2, 3, 1), 2))
    td.set(("sender", "state"), torch.tensor([[0, 1, 0], [1, 0, 1]]))
    before = td.clone()
    mask = torch.tensor([[True, False, False], [False, True, True]])
    for reset in (mask.unsqueeze(-1), mask):
        out = env.reset(td.clone().set("_reset", reset))
        fresh = twin.reset()
        assert torch.equal(out["sender", "state"][~mask], before["sender", "state"][~mask])
        assert torch.equal(out["sender", "state"][mask], fresh["sender", "state"][mask])
        assert out["step_count"].squeeze(-1).tolist() == [[0, 2, 2], [2, 0, 0]]
    # _reset itself keeps the unmasked games when the input carries their state
    direct = env._reset(td.clone().set("_reset", mask.unsqueeze(-1)))
    assert torch.equal(direct["sender", "state"][~mask], before["sender", "state"][~mask])


def test_batch_shape_plays_the_flat_games():
    shaped, flat = markov_rl(batch_size=[2, 3], seed=4), markov_rl(num_envs=6, seed=4)
    g = torch.Generator().manual_seed(0)
    ts, tf = shaped.reset(), flat.reset()
    for _ in range(9):
        m = one_hot(torch.randint(0, 2, (6,), generator=g), 2)
        a = one_hot(torch.randint(0, 2, (6,), generator=g), 2)
        tf.update({("sender", "message"): m, ("receiver", "action"): a})
        ts.update({("sender", "message"): m.view(2, 3, 2), ("receiver", "action"): a.view(2, 3, 2)})
        (ds, ts), (df, tf) = shaped.step_and_maybe_reset(ts), flat.step_and_maybe_reset(tf)
        for key in (("next", "sender", "state"), ("next", "sender", "reward"), ("next", "step_count"), ("next", "done")):
            assert torch.equal(ds[key].reshape(df[key].shape), df[key]), key


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(transition=[[0.5, 0.6], [0.5, 0.5]]), "transition"),  # a row that is not a distribution
        (dict(transition=[[1.5, -0.5], [0.5, 0.5]]), "transition"),
        (dict(transition=[[1.0, 0.0]]), "transition"),  # shape
        (dict(transition=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), "transition"),
        (dict(transition=[[float("nan"), 1.0], [0.5, 0.5]]), "transition"),
        (dict(transition="abc"), "transition"),
        (dict(transition=P2, horizon=0), "horizon"),
        (dict(transition=P2, horizon=2.5), "horizon"),
        (dict(transition=P2, horizon=True), "horizon"),
        (dict(horizon=3), "horizon"),  # several steps without a chain
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BayesianPersuasionEnv(**RL, **kwargs)


def test_step_without_step_count_says_so():
    env = markov_rl(num_envs=2)
    td = env.reset().exclude("step_count")
    td.update(env.action_spec.rand())
    with pytest.raises(KeyError, match="step_count"):
        env.step(td)


# ----------------------------------------------------------------------------- occupancy and exact optimum
def test_state_occupancy():
    p0 = [0.1, 0.8, 0.1]
    m = MARKOV_GAMES["weather_forecast"]["transition"]
    for horizon in (1, 2, 8, 30):
        d = state_occupancy(p0, m, horizon)
        assert d.dtype == torch.float64 and torch.allclose(d, torch.tensor(marginals(p0, m, horizon).mean(0)), atol=1e-12)
    assert torch.equal(state_occupancy(p0, m, 1), torch.tensor(p0, dtype=torch.float64))
    # a stationary start stays put
    w, v = np.linalg.eig(np.asarray(m).T)
    pi = np.real(v[:, np.argmax(np.real(w))])
    pi /= pi.sum()
    assert np.allclose(state_occupancy(pi, m, 7).numpy(), pi, atol=1e-12)
    env = make_persuasion_env("weather_forecast", num_envs=2)
    assert torch.allclose(env.occupancy.double(), state_occupancy(p0, m, 8), atol=1e-7)
    for bad, name in ((dict(horizon=0), "horizon"), (dict(transition=[[1.0, 0.0], [0.0, 1.0]]), "transition"),
                      (dict(prior=[0.5, 0.6, -0.1]), "prior")):
        args = dict(prior=p0, transition=m, horizon=3) | bad
        with pytest.raises(ValueError, match=name):
            state_occupancy(**args)


def test_lp_on_occupancy_is_the_optimum_over_non_stationary_schemes():
    """Brute force on a 2-state, 2-action, 2-message game over T=2 steps: every scheme phi_t(sigma | s) (a grid,
    a different one at every step), the receiver best-responding with one pi(a | sigma) for all steps (ties to
    the sender); per-step values from the per-step state marginals. The best is the LP on the occupancy."""
    p0, drift, horizon = [0.9, 0.1], [[0.5, 0.5], [0.1, 0.9]], 2  # starts mostly weak; the chain drifts to strong
    us, ur = np.asarray(RL["sender_utility"]), np.asarray(RL["receiver_utility"])
    p_t = marginals(p0, drift, horizon)  # [T, S]
    grid = np.linspace(0.0, 1.0, 21)
    # x[k, t, s] = phi_t(sigma=1 | s), over every combination of grid values
    x = np.array(list(itertools.product(grid, repeat=2 * horizon))).reshape(-1, horizon, 2)
    phi = np.stack([1 - x, x], -1)  # [K, T, S, sigma]
    mu = np.einsum("ts,ktsm->ksm", p_t, phi) / horizon  # the per-step average joint of (s, sigma)
    best = np.full(len(x), -np.inf)
    best_receiver = np.full(len(x), -np.inf)
    for policy in itertools.product(range(2), repeat=2):  # deterministic pi: sigma -> a
        a = np.array(policy)
        receiver = np.einsum("ksm,sm->k", mu, ur[:, a])
        sender = np.einsum("ksm,sm->k", mu, us[:, a])
        better = (receiver > best_receiver + 1e-12) | ((np.abs(receiver - best_receiver) <= 1e-12) & (sender > best))
        best = np.where(better, sender, best)
        best_receiver = np.where(better, receiver, best_receiver)
    d = state_occupancy(p0, drift, horizon)
    lp = optimal_signaling_scheme(d, us, ur).sender_value
    assert best.max() <= lp + 1e-9  # nothing beats the LP on the occupancy ...
    assert best.max() >= lp - 0.03  # ... which the grid approaches
    # the first step's prior would be the wrong benchmark
    assert abs(optimal_signaling_scheme(p0, us, ur).sender_value - lp) > 0.2


def test_exact_per_step_values_match_rollouts():
    """weather_forecast: the LP scheme with an obedient receiver, and a random stochastic pair (phi, pi), played
    in the env: the mean reward per step is the exact value on the occupancy, within sampling error."""
    env = make_persuasion_env("weather_forecast", num_envs=4000, seed=0)
    g = torch.Generator().manual_seed(1)
    lp = optimal_signaling_scheme(env.occupancy, env.sender_utility, env.receiver_utility)
    random_phi = torch.distributions.Dirichlet(torch.ones(3, 3)).sample()
    random_pi = torch.distributions.Dirichlet(torch.ones(3, 3)).sample()
    for phi, pi in ((lp.scheme, torch.eye(3, dtype=torch.float64)), (random_phi, random_pi)):
        phi32, pi32 = phi.float(), pi.float()

        def policy(td):
            message = torch.multinomial(phi32[td["sender", "state"]], 1, generator=g).squeeze(-1)
            action = torch.multinomial(pi32[message], 1, generator=g).squeeze(-1)
            return td.update({("sender", "message"): one_hot(message, 3), ("receiver", "action"): one_hot(action, 3)})

        data = env.rollout(env.horizon, policy)
        exact = exact_payoffs(env.occupancy.double(), env.sender_utility, env.receiver_utility, phi, pi)
        for i, who in enumerate(("sender", "receiver")):
            per_episode = data["next", who, "reward"].squeeze(-1).double().mean(-1)  # independent episodes
            se = per_episode.std() / len(per_episode) ** 0.5
            assert abs(per_episode.mean().item() - exact[i]) < 4 * se.item(), (who, per_episode.mean(), exact[i])


def test_weather_forecast_benchmarks_as_documented():
    g = MARKOV_GAMES["weather_forecast"]
    d = state_occupancy(g["prior"], g["transition"], g["horizon"])
    lp = optimal_signaling_scheme(d, g["sender_utility"], g["receiver_utility"])
    ni = no_information_value(d, g["sender_utility"], g["receiver_utility"])
    fi = full_information_value(d, g["sender_utility"], g["receiver_utility"])
    assert [round(v, 3) for v in d.tolist()] == [0.289, 0.462, 0.248]
    assert (round(lp.sender_value, 3), round(lp.receiver_value, 3)) == (0.818, 0.479)
    assert (round(ni[0], 3), round(ni[1], 3)) == (0.116, 0.231)
    assert (round(fi[0], 3), round(fi[1], 3)) == (0.674, 0.769)
    assert lp.sender_value - ni[0] >= 0.05 and lp.sender_value - fi[0] >= 0.05  # persuasion matters
    assert round(float(lp.scheme[1, 0]), 3) == 0.626  # 62.6% of mild days are called dry
    for key in ("prior", "transition", "horizon", "sender_utility", "receiver_utility", "state_names", "action_names"):
        assert key in g
    assert "weather_forecast" not in ONE_STEP_GAMES


def test_make_persuasion_env():
    env = make_persuasion_env("weather_forecast", batch_size=[2, 3], seed=0)
    assert env.is_markov and env.horizon == 8 and env.num_messages == 3 and env.batch_size == (2, 3)
    assert make_persuasion_env("weather_forecast", horizon=3).horizon == 3
    one_step = make_persuasion_env("recommendation_letter")
    assert not one_step.is_markov and one_step.num_messages == 2
    with pytest.raises(ValueError, match="name"):
        make_persuasion_env("no_such_game")
    with pytest.raises(ValueError, match="make_persuasion_env"):
        make_one_step_env("weather_forecast")
