"""The benchmark suite of persuasion games: the generator, the exact values, the scoring."""
from __future__ import annotations

import numpy as np
import pytest

from msgzoo.envs import BayesianPersuasionEnv
from msgzoo.envs.persuasion_games import MARKOV_GAMES, ONE_STEP_GAMES, random_persuasion_game
from msgzoo.game_theory.metrics import obedience_violation
from msgzoo.game_theory.optimal_scheme import optimal_signaling_scheme
from msgzoo.game_theory.suite import MIN_GAIN, fraction_of_gain, persuasion_suite


@pytest.mark.parametrize("num_states, num_actions", [(2, 2), (3, 4), (5, 3)])
def test_generator_draws_the_documented_distributions(num_states, num_actions):
    game = random_persuasion_game(7, num_states, num_actions)
    prior = np.array(game["prior"])
    assert prior.shape == (num_states,) and abs(prior.sum() - 1.0) < 1e-12 and (prior > 0).all()
    for key in ("sender_utility", "receiver_utility"):
        u = np.array(game[key])
        assert u.shape == (num_states, num_actions)
        assert (u >= -1).all() and (u <= 1).all()
        np.testing.assert_array_equal(u, np.round(u, 2))  # two decimals
    assert len(game["state_names"]) == num_states and len(game["action_names"]) == num_actions
    # a valid game for the env
    BayesianPersuasionEnv(game["prior"], game["sender_utility"], game["receiver_utility"], num_envs=2)


def test_generator_is_deterministic_and_seeds_differ():
    assert random_persuasion_game(3, 3, 3) == random_persuasion_game(3, 3, 3)
    assert random_persuasion_game(3, 3, 3)["sender_utility"] != random_persuasion_game(4, 3, 3)["sender_utility"]


def test_generator_payoffs_cover_their_range():
    u = np.concatenate([np.ravel(random_persuasion_game(i, 4, 4)["receiver_utility"]) for i in range(50)])
    assert u.min() < -0.95 and u.max() > 0.95 and abs(u.mean()) < 0.1


@pytest.mark.parametrize("bad", [dict(seed=-1), dict(num_states=1), dict(num_actions=1.5), dict(seed=True)])
def test_generator_rejects_bad_arguments(bad):
    args = dict(seed=0, num_states=2, num_actions=2) | bad
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        random_persuasion_game(**args)


@pytest.fixture(scope="module")
def suite():
    return persuasion_suite(40)


def test_suite_has_the_named_games_and_enough_nontrivial_random_ones(suite):
    games = suite
    names = [g.name for g in games]
    named = list(ONE_STEP_GAMES) + list(MARKOV_GAMES)
    assert names[: len(named)] == named
    random_games = [g for g in games if g.name.startswith("random_")]
    assert sum(not g.trivial for g in random_games) == 40
    assert not random_games[-1].trivial  # the stream stops at the 40th non-trivial game
    sizes = {(g.num_states, g.num_actions) for g in random_games}
    assert sizes == {(s, a) for s in range(2, 6) for a in range(2, 5)}
    assert len(set(names)) == len(names)


def test_suite_values_are_the_exact_benchmarks(suite):
    for game in suite[:20]:
        # LP optimum >= both baselines (ties to the sender); the LP scheme is obedient
        assert game.lp_value >= game.no_info_value - 1e-9 and game.lp_value >= game.full_info_value - 1e-9
        assert game.trivial == (game.gain < MIN_GAIN)
        prior = game.prior if game.occupancy is None else game.occupancy
        lp = optimal_signaling_scheme(prior, game.sender_utility, game.receiver_utility)
        assert lp.sender_value == pytest.approx(game.lp_value)
        obey = np.eye(game.num_actions)
        assert obedience_violation(prior, game.receiver_utility, lp.scheme, obey) < 1e-7


def test_recommendation_letter_in_the_suite(suite):
    game = suite[0]
    assert game.name == "recommendation_letter" and not game.trivial
    assert game.lp_value == pytest.approx(2 / 3) and game.no_info_value == 0.0
    assert fraction_of_gain(2 / 3, game) == pytest.approx(1.0) and fraction_of_gain(0.0, game) == 0.0
    assert "env.game=recommendation_letter" in game.overrides()


def test_markov_games_are_scored_on_their_occupancy(suite):
    from msgzoo.game_theory.optimal_scheme import state_occupancy

    game = next(g for g in suite if g.name == "weather_forecast")
    spec = MARKOV_GAMES["weather_forecast"]
    occupancy = state_occupancy(spec["prior"], spec["transition"], spec["horizon"])
    assert game.horizon == spec["horizon"] > 1
    np.testing.assert_allclose(game.occupancy, occupancy.tolist())
    lp = optimal_signaling_scheme(occupancy, spec["sender_utility"], spec["receiver_utility"])
    assert game.lp_value == pytest.approx(lp.sender_value) and not game.trivial
    assert game.overrides() == ["env.game=weather_forecast", "task=weather_forecast"]


def test_suite_rejects_a_bad_size():
    with pytest.raises(ValueError, match="num_random"):
        persuasion_suite(-1)


def test_best_response_sender_value_scores_the_exact_benchmarks():
    """Against a best-responding receiver (ties to the sender) the LP's scheme scores the LP value, a scheme that
    sends one message the no-information value and the identity scheme the full-information value, on every game
    whose benchmarks are one-step values of its prior (or, for a Markov game, of its state occupancy)."""
    from msgzoo.game_theory.metrics import best_response_sender_value

    for game in persuasion_suite(num_random=8):
        prior = game.occupancy or game.prior
        us, ur = game.sender_utility, game.receiver_utility
        lp = optimal_signaling_scheme(prior, us, ur)
        pooling = np.zeros((game.num_states, 2))
        pooling[:, 0] = 1.0
        for scheme, value in ((lp.scheme, game.lp_value), (pooling, game.no_info_value),
                              (np.eye(game.num_states), game.full_info_value)):
            assert best_response_sender_value(prior, us, ur, scheme) == pytest.approx(value, abs=1e-9), game.name
