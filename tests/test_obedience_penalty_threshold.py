"""The exact-penalty threshold of the obedience constraints: the smallest lambda for which eq. 7's hinge per pair
leaves eq. 1's optimum in place."""
from __future__ import annotations

import numpy as np
import pytest

from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER
from msgzoo.envs.persuasion_games import random_persuasion_game
from msgzoo.game_theory.optimal_scheme import obedience_penalty_threshold, optimal_signaling_scheme
from msgzoo.game_theory.suite import persuasion_suite


def _penalised_values_on_a_grid(game: dict, lam: float, points: int = 401) -> tuple[float, float]:
    """A 2-state, 2-action game: the best penalised objective over a grid of schemes (phi(a1 | s0), phi(a1 | s1)),
    and the largest obedience violation among the grid's maximisers; brute force, no LP."""
    p, us, ur = (np.asarray(game[k], dtype=float) for k in ("prior", "sender_utility", "receiver_utility"))
    x = np.linspace(0.0, 1.0, points)
    q0, q1 = np.meshgrid(x, x, indexing="ij")  # phi(a1 | s0), phi(a1 | s1)
    phi = np.stack([np.stack([1 - q0, q0], -1), np.stack([1 - q1, q1], -1)], -2)  # [..., s, a]
    joint = p[:, None] * phi
    sender = (joint * us).sum((-1, -2))
    c01 = (joint[..., 0] * (ur[:, 0] - ur[:, 1])).sum(-1)  # obey a0 rather than a1
    c10 = (joint[..., 1] * (ur[:, 1] - ur[:, 0])).sum(-1)
    violation = np.maximum(-c01, 0.0) + np.maximum(-c10, 0.0)
    objective = sender - lam * violation
    best = objective.max()
    return float(best), float(violation[objective >= best - 1e-12].max())


@pytest.mark.parametrize("seed", [0, 2, 3, 11, 28, 36])
def test_threshold_separates_exact_from_inexact_penalties_by_brute_force(seed):
    game = random_persuasion_game(seed, 2, 2)
    lam_star = obedience_penalty_threshold(game["prior"], game["sender_utility"], game["receiver_utility"])
    optimum = optimal_signaling_scheme(game["prior"], game["sender_utility"], game["receiver_utility"]).sender_value
    if lam_star == 0.0:  # no constraint binds: the unpenalised optimum is already obedient
        best, violation = _penalised_values_on_a_grid(game, 0.0)
        assert violation == 0.0 and best == pytest.approx(optimum, abs=1e-9)
        return
    above, _ = _penalised_values_on_a_grid(game, 1.02 * lam_star)
    below, violation_below = _penalised_values_on_a_grid(game, 0.9 * lam_star)
    # above it no scheme beats the LP's value, however much it breaks obedience (the grid's best is within its step)
    assert optimum - 5e-3 <= above <= optimum + 1e-9
    assert violation_below > 1e-4 and below > optimum + 1e-5  # below it the sender gains by breaking a constraint


def test_recommendation_letter_and_random_17_3x3():
    rl = RECOMMENDATION_LETTER
    # the weak candidate's "hire" costs the receiver 1 per unit and pays the sender 1
    lam = obedience_penalty_threshold(rl["prior"], rl["sender_utility"], rl["receiver_utility"])
    assert lam == pytest.approx(1.0, rel=1e-5)
    game = {g.name: g for g in persuasion_suite(20)}["random_17_3x3"]
    # state 2 on action 2: the sender gains 0.21 + 0.49 = 0.70, the receiver loses 0.67 - 0.64 = 0.03 per unit
    lam = obedience_penalty_threshold(game.prior, game.sender_utility, game.receiver_utility)
    assert lam == pytest.approx(0.70 / 0.03, rel=1e-5)


def test_aligned_interests_need_no_penalty():
    game = random_persuasion_game(5, 3, 3)
    assert obedience_penalty_threshold(game["prior"], game["receiver_utility"], game["receiver_utility"]) == 0.0


@pytest.mark.parametrize("rtol", [0.0, 1.0, "1e-6", 1])
def test_bad_tolerance_is_named(rtol):
    rl = RECOMMENDATION_LETTER
    with pytest.raises(ValueError, match="rtol"):
        obedience_penalty_threshold(rl["prior"], rl["sender_utility"], rl["receiver_utility"], rtol=rtol)
