"""A partial-sighted sender (the paper's Section 3 extension, issue 18 item 3): it observes an emission e ~ E(. | s)
of the state. The env option, the exact LP over phi(m | e), exact payoffs, the obedience estimate, a recipe run."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs
from test_objectives import F64, PHI3, PI3, W_RECEIVER_KEY, collect, tabular_modules

from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER, BayesianPersuasionEnv, recommendation_letter
from msgzoo.envs.persuasion_games import random_persuasion_game
from msgzoo.game_theory.exact_payoffs import exact_payoffs
from msgzoo.game_theory.metrics import obedience_constraints
from msgzoo.game_theory.optimal_scheme import (
    emission_game,
    full_information_value,
    no_information_value,
    optimal_signaling_scheme,
)
from msgzoo.objectives import ObedienceConstraintLoss
from recipes import run_recipe as run

RL = RECOMMENDATION_LETTER
RL_GAME = (RL["prior"], RL["sender_utility"], RL["receiver_utility"])
#: The professor sees a noisy grade: "good" for 20% of the weak students and 80% of the strong ones.
NOISY_GRADE = [[0.8, 0.2], [0.2, 0.8]]


# ------------------------------------------------------------------------------------------------ the env


def test_env_observation_is_the_emission():
    env = recommendation_letter(num_envs=40_000, sender_emission=NOISY_GRADE, seed=0, validate_actions=True)
    assert env.num_sender_observations == 2 and env.observation_spec["sender", "emission"].shape == (40_000,)
    td = env.rand_step(env.reset())
    s, e = td["sender", "state"], td["sender", "emission"]
    assert torch.equal(td["sender", "observation"], torch.nn.functional.one_hot(e, 2).float())
    assert torch.equal(td["next", "sender", "emission"], e) and torch.equal(td["next", "sender", "state"], s)
    for state, p_good in ((0, 0.2), (1, 0.8)):  # e ~ E(. | s)
        assert (e[s == state] == 1).float().mean().item() == pytest.approx(p_good, abs=0.015)
    # the rewards are still the state's
    a = td["receiver", "action"].argmax(-1)
    expected = torch.tensor(RL["receiver_utility"])[s, a]
    torch.testing.assert_close(td["next", "receiver", "reward"].squeeze(-1), expected)


def test_env_emission_sizes_and_specs():
    three = [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]  # |E| = 3 != |S| = 2
    env = recommendation_letter(batch_size=[2, 3], sender_emission=three)
    assert env.rollout(1)["sender", "observation"].shape == (2, 3, 1, 3)
    check_env_specs(env)
    markov = BayesianPersuasionEnv(
        [0.5, 0.5], [[0, 1], [0, 1]], [[1, 0], [0, 1]], transition=[[0.9, 0.1], [0.2, 0.8]], horizon=3,
        num_envs=4, sender_emission=three,
    )
    check_env_specs(markov)
    data = markov.rollout(3)
    state, emission = data["next", "sender", "state"], data["next", "sender", "emission"]
    assert ((state == 0) == (emission == 0)).all()  # state 0 always emits 0, state 1 never does


def test_env_without_emission_is_unchanged():
    torch.manual_seed(0)  # the random actions of rollout()
    a = recommendation_letter(num_envs=64, seed=3).rollout(2, break_when_any_done=False)
    torch.manual_seed(0)
    b = recommendation_letter(num_envs=64, seed=3, sender_emission=None).rollout(2, break_when_any_done=False)
    assert ("sender", "emission") not in b.keys(True)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "bad, match",
    [([[1.0, 0.0]], r"\[\|S\|=2"), ([[0.5, 0.6], [0.5, 0.5]], "probability distributions"), ([0.5, 0.5], r"\[\|S\|=2")],
)
def test_env_bad_emission_names_the_argument(bad, match):
    with pytest.raises(ValueError, match=f"sender_emission(.|\n)*{match}"):
        recommendation_letter(sender_emission=bad)


def test_env_step_needs_the_emission():
    env = recommendation_letter(num_envs=2, sender_emission=NOISY_GRADE)
    td = env.rand_action(env.reset())
    del td["sender", "emission"]
    with pytest.raises(KeyError, match="emission"):
        env.step(td)


# ----------------------------------------------------------------------------------------- exact optimum


def test_noisy_recommendation_letter_lp():
    """The professor recommends every "good" grade and 2/7 of the "bad" ones: HR is indifferent after "hire"."""
    opt = optimal_signaling_scheme(*RL_GAME, sender_emission=NOISY_GRADE)
    assert opt.scheme.shape == (2, 2)
    assert opt.scheme[1, 1].item() == pytest.approx(1.0, abs=1e-9)
    assert opt.scheme[0, 1].item() == pytest.approx(2 / 7, abs=1e-9)
    assert opt.sender_value == pytest.approx(4 / 7, abs=1e-9) and opt.receiver_value == pytest.approx(0.0, abs=1e-9)
    # seeing less is worth less: below the fully sighted optimum 2/3, above no information
    assert no_information_value(*RL_GAME)[0] < opt.sender_value < optimal_signaling_scheme(*RL_GAME).sender_value
    assert full_information_value(*RL_GAME, sender_emission=NOISY_GRADE) == pytest.approx((0.4, 2 / 15))


def test_identity_emission_is_the_sighted_lp_and_a_blind_sender_is_no_information():
    g = random_persuasion_game(4, 3, 3)
    game = (g["prior"], g["sender_utility"], g["receiver_utility"])
    sighted, identity = optimal_signaling_scheme(*game), optimal_signaling_scheme(*game, sender_emission=np.eye(3))
    assert identity.sender_value == pytest.approx(sighted.sender_value, abs=1e-9)
    blind = optimal_signaling_scheme(*game, sender_emission=[[1.0]] * 3)  # one emission whatever the state
    assert blind.scheme.shape == (1, 3)
    assert blind.sender_value == pytest.approx(no_information_value(*game)[0], abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_emission_lp_beats_every_obedient_scheme_on_a_grid(seed):
    """3 states, 2 emissions, 2 actions: phi(a1 | e) on a 0.02 grid; obedience with the joint P(s) E(e | s)."""
    g = random_persuasion_game(seed, 3, 2)
    p, us, ur = (np.asarray(g[k], dtype=np.float64) for k in ("prior", "sender_utility", "receiver_utility"))
    emission = np.random.default_rng(seed).dirichlet(np.ones(2), size=3)  # [S, E]
    opt = optimal_signaling_scheme(p, us, ur, sender_emission=emission)
    grid = np.linspace(0.0, 1.0, 51)
    q = np.array(list(itertools.product(grid, repeat=2)))  # [n, E] = phi(a1 | e)
    phi_e = np.stack([1.0 - q, q], axis=-1)  # [n, E, A]
    joint = p[:, None] * emission  # P(s, e)
    c = np.einsum("se,nea,sab->nab", joint, phi_e, ur[:, :, None] - ur[:, None, :])
    feasible = phi_e[c.min(axis=(1, 2)) >= -1e-12]
    values = np.einsum("se,nea,sa->n", joint, feasible, us)
    assert len(feasible) >= 1 and values.max() <= opt.sender_value + 1e-9
    assert values.max() >= opt.sender_value - 0.02 * 2 * np.abs(us).max()
    # the LP's own scheme is obedient for the joint, and exact_payoffs agrees with its values
    lp_c = np.einsum("se,ea,sab->ab", joint, opt.scheme.numpy(), ur[:, :, None] - ur[:, None, :])
    assert lp_c.min() >= -1e-9
    got = exact_payoffs(p, us, ur, opt.scheme, np.eye(2), sender_emission=emission)
    assert got == pytest.approx((opt.sender_value, opt.receiver_value), abs=1e-9)


def test_exact_payoffs_with_an_emission_are_the_emission_games():
    p_e, us_e, ur_e = emission_game(*RL_GAME, NOISY_GRADE)
    assert p_e.tolist() == pytest.approx([0.6, 0.4])
    assert ur_e[:, 1].tolist() == pytest.approx([-7 / 9, 1 / 3])  # E[w^j(s, hire) | grade]
    direct = exact_payoffs(*RL_GAME, PHI3, PI3, sender_emission=NOISY_GRADE)
    assert direct == pytest.approx(exact_payoffs(p_e, us_e, ur_e, PHI3, PI3), abs=1e-12)
    with pytest.raises(ValueError, match="phi"):  # phi has one row per emission
        exact_payoffs(*RL_GAME, PHI3, PI3, sender_emission=[[0.5, 0.25, 0.25], [0.2, 0.4, 0.4]])


# ------------------------------------------------------------------------------------- obedience estimate


def test_obedience_estimate_is_unbiased_with_an_emission():
    """With W^j(e, .) = E[w^j(s, .) | e] (what the sender's critic learns from the receiver's rewards), the batch
    estimate of C(sigma, sigma') from (emission, message) samples is eq. 4 for the scheme sum_e E(e|s) phi(.|e)."""
    _, _, ur_e = emission_game(*RL_GAME, NOISY_GRADE)
    scheme, receiver, critic = tabular_modules(PHI3, PI3, ur_e.to(F64), w_key=W_RECEIVER_KEY)
    n = 200_000
    torch.manual_seed(0)
    batch = collect(recommendation_letter(num_envs=n, num_messages=3, seed=5, sender_emission=NOISY_GRADE), scheme, receiver)
    loss = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="all", gamma=0.0)
    got = loss.constraint_matrix(batch).detach().to(F64)
    emission = torch.tensor(NOISY_GRADE, dtype=F64)
    exact = obedience_constraints(RL["prior"], RL["receiver_utility"], emission @ PHI3, PI3)
    p_e, _, _ = emission_game(*RL_GAME, NOISY_GRADE)
    q = ur_e @ PI3.T  # [E, K]
    x = PHI3[:, :, None] * (q[:, :, None] - q[:, None, :])  # per-emission term
    torch.testing.assert_close((p_e[:, None, None] * x).sum(0), exact)  # eq. 4 by enumeration over e
    se = ((p_e[:, None, None] * x**2).sum(0) - exact**2).clamp_min(0).div(n).sqrt()
    off = ~torch.eye(3, dtype=torch.bool)
    assert (exact[off].abs() > 10 * se[off]).any()
    assert ((got - exact)[off].abs() <= 5 * se[off] + 1e-6).all(), f"{got}\nvs exact\n{exact}"


# ---------------------------------------------------------------------------------------------- the recipe


def test_recipe_runs_a_partial_sighted_sender(recipe_config, tmp_path):
    cfg = recipe_config(
        "sgoc_recommendation_letter", "collector.total_frames=4096", "env.num_envs=256", "logger.backends=[csv]",
        "logger.log_interval=4", "num_seeds=2", "env.sender_emission=[[0.8,0.2],[0.2,0.8]]", f"+run_dir={tmp_path}",
    )
    summary = run(cfg, method="sgoc")
    assert summary["lp_sender_value"] == pytest.approx(4 / 7)
    for path in summary["seed_summaries"]:
        seed = json.loads(Path(path).read_text())
        assert len(seed["scheme"]) == 2 and seed["lp_sender_value"] == pytest.approx(4 / 7)
        emission = torch.tensor(NOISY_GRADE, dtype=F64)
        phi, pi = torch.tensor(seed["scheme"], dtype=F64), torch.tensor(seed["policy"], dtype=F64)
        # the env holds its matrices in float32, as the evaluation does
        assert seed["sender_reward"] == pytest.approx(exact_payoffs(*RL_GAME, emission @ phi, pi)[0], abs=1e-6)


def test_recipe_rejects_a_bad_emission(recipe_config, tmp_path):
    cfg = recipe_config("sgoc_recommendation_letter", "logger.backends=[csv]", "env.sender_emission=oops",
                        f"+run_dir={tmp_path}")
    with pytest.raises(ValueError, match="env.sender_emission"):
        run(cfg, method="sgoc")
