"""A prosocial sender (the paper's Section 3 remark, issue 18 item 4): the one-step LP for the objective
(1 - w) U_s + w U_r under the same obedience constraints, and a prosocial run's summary."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER
from msgzoo.envs.persuasion_games import ONE_STEP_GAMES, random_persuasion_game
from msgzoo.game_theory.optimal_scheme import full_information_value, no_information_value, optimal_signaling_scheme
from recipes import run_recipe as run

RL = RECOMMENDATION_LETTER
RL_GAME = (RL["prior"], RL["sender_utility"], RL["receiver_utility"])


@pytest.mark.parametrize("name", list(ONE_STEP_GAMES))
def test_weight_zero_is_the_papers_lp(name):
    g = ONE_STEP_GAMES[name]
    game = (g["prior"], g["sender_utility"], g["receiver_utility"])
    default, zero = optimal_signaling_scheme(*game), optimal_signaling_scheme(*game, receiver_weight=0.0)
    assert torch.equal(default.scheme, zero.scheme)
    assert (default.sender_value, default.receiver_value) == (zero.sender_value, zero.receiver_value)
    assert zero.objective_value() == zero.sender_value
    assert no_information_value(*game) == no_information_value(*game, receiver_weight=0.0)
    assert full_information_value(*game) == full_information_value(*game, receiver_weight=0.0)


def test_recommendation_letter_weight_one_is_full_information_welfare():
    opt = optimal_signaling_scheme(*RL_GAME, receiver_weight=1.0)
    full = full_information_value(*RL_GAME, receiver_weight=1.0)
    assert opt.receiver_value == pytest.approx(full[1], abs=1e-9) and full[1] == pytest.approx(1 / 3)
    assert opt.objective_value(1.0) == pytest.approx(1 / 3, abs=1e-9)
    torch.testing.assert_close(opt.scheme, torch.eye(2, dtype=torch.float64), atol=1e-9, rtol=0)  # honest
    # welfare U_s + U_r is the most any scheme gives (2 P(strong)), reached by honesty: w = 1/2 attains it too
    half = optimal_signaling_scheme(*RL_GAME, receiver_weight=0.5)
    assert half.sender_value + half.receiver_value == pytest.approx(2 / 3, abs=1e-9)
    assert full[0] + full[1] == pytest.approx(2 / 3, abs=1e-9)


@pytest.mark.parametrize("w", [0.3, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prosocial_lp_beats_every_obedient_scheme_on_a_grid(seed, w):
    """3 states x 2 actions: phi(a1 | s) on a 0.05 grid (9261 schemes), none obedient beats the LP's objective,
    and the best of them comes within the grid's resolution."""
    g = random_persuasion_game(seed, 3, 2)
    p, us, ur = (np.asarray(g[k], dtype=np.float64) for k in ("prior", "sender_utility", "receiver_utility"))
    opt = optimal_signaling_scheme(p, us, ur, receiver_weight=w)
    grid = np.linspace(0.0, 1.0, 21)
    q = np.array(list(itertools.product(grid, repeat=3)))  # [n, S] = phi(a1 | s)
    phi = np.stack([1.0 - q, q], axis=-1)  # [n, S, A]
    c = np.einsum("s,nsa,sab->nab", p, phi, ur[:, :, None] - ur[:, None, :])  # obedience, eq. (1)
    feasible = phi[c.min(axis=(1, 2)) >= -1e-12]
    values = np.einsum("s,nsa,sa->n", p, feasible, (1.0 - w) * us + w * ur)
    assert len(feasible) >= 1 and values.max() <= opt.objective_value(w) + 1e-9
    assert values.max() >= opt.objective_value(w) - 0.05 * np.abs(us).max() - 0.05 * np.abs(ur).max()
    # the two baselines are obedient schemes: never above the optimum of the same objective
    for base in (no_information_value(p, us, ur, receiver_weight=w), full_information_value(p, us, ur, receiver_weight=w)):
        assert (1.0 - w) * base[0] + w * base[1] <= opt.objective_value(w) + 1e-9


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", True])
def test_bad_receiver_weight_names_the_argument(bad):
    for fn in (optimal_signaling_scheme, no_information_value, full_information_value):
        with pytest.raises(ValueError, match="receiver_weight"):
            fn(*RL_GAME, receiver_weight=bad)


def test_prosocial_run_reports_the_fraction_of_the_lp_gain(recipe_config, tmp_path):
    cfg = recipe_config(
        "sgoc_recommendation_letter", "collector.total_frames=4096", "env.num_envs=256", "logger.backends=[csv]",
        "logger.log_interval=4", "sender_objective.receiver_weight=1.0", "warmup.frames=0", "num_seeds=2",
        f"+run_dir={tmp_path}",
    )
    summary = run(cfg, method="sgoc")
    fractions = summary["objective_gain_fraction"]["per_seed"]
    assert len(fractions) == 2
    for path, fraction in zip(summary["seed_summaries"], fractions):
        seed = json.loads(Path(path).read_text())
        assert seed["sender_objective_receiver_weight"] == 1.0
        assert seed["lp_objective_value"] == pytest.approx(1 / 3) and seed["no_info_objective_value"] == 0.0
        assert seed["objective_value"] == pytest.approx(seed["receiver_reward"])  # w = 1: the receiver's payoff
        assert fraction == pytest.approx(seed["objective_value"] / (1 / 3))
