"""Exact (sampling-free) evaluation: the obedience LP (eq. 1), exact payoffs, metrics and the game registry."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER, BayesianPersuasionEnv
from msgzoo.envs.persuasion_games import ONE_STEP_GAMES, make_one_step_env
from msgzoo.game_theory.exact_payoffs import exact_payoffs, tabulate_one_step_policies
from msgzoo.game_theory.metrics import (
    best_response_regret,
    abs_honesty_recommendation_letter,
    honesty,
    honesty_recommendation_letter,
    mutual_information,
    obedience_constraints,
    obedience_violation,
    posterior,
)
from msgzoo.game_theory.optimal_scheme import (
    OptimalScheme,
    full_information_value,
    no_information_value,
    optimal_signaling_scheme,
)

RL = RECOMMENDATION_LETTER
RL_GAME = (RL["prior"], RL["sender_utility"], RL["receiver_utility"])
HONEST = [[1.0, 0.0], [0.0, 1.0]]  # weak -> signal 0, strong -> signal 1
UNINFORMATIVE = [[0.3, 0.7], [0.3, 0.7]]
OBEY = [[1.0, 0.0], [0.0, 1.0]]  # hire on signal 1 only
THREE_BY_THREE = [name for name, g in ONE_STEP_GAMES.items() if np.shape(g["sender_utility"]) == (3, 3)]


# ----------------------------------------------------------------------------------------------- the LP


def test_recommendation_letter_lp():
    opt = optimal_signaling_scheme(*RL_GAME)
    assert isinstance(opt, OptimalScheme)
    assert opt.scheme.dtype == torch.float64 and opt.scheme.shape == (2, 2)
    assert isinstance(opt.sender_value, float) and isinstance(opt.receiver_value, float)
    assert opt.sender_value == pytest.approx(2 / 3, abs=1e-6)
    assert opt.receiver_value == pytest.approx(0.0, abs=1e-6)
    assert opt.scheme[1, 1].item() == pytest.approx(1.0, abs=1e-6)  # phi(hire | strong)
    assert opt.scheme[0, 1].item() == pytest.approx(0.5, abs=1e-6)  # phi(hire | weak)
    torch.testing.assert_close(opt.scheme.sum(-1), torch.ones(2, dtype=torch.float64))


def test_lp_accepts_tensors_and_numpy():
    as_np = optimal_signaling_scheme(*(np.asarray(x) for x in RL_GAME))
    as_t = optimal_signaling_scheme(*(torch.tensor(x, dtype=torch.float32) for x in RL_GAME))
    assert as_np.sender_value == pytest.approx(2 / 3, abs=1e-6)
    assert as_t.sender_value == pytest.approx(2 / 3, abs=1e-6)


def test_no_information_and_full_information_recommendation_letter():
    assert no_information_value(*RL_GAME) == (0.0, 0.0)
    s, r = full_information_value(*RL_GAME)
    assert (s, r) == (pytest.approx(1 / 3), pytest.approx(1 / 3))


def test_ties_are_broken_in_the_senders_favour():
    # Prior 1/2-1/2: hiring is worth exactly 0 to HR, like not hiring; the tie goes to the professor.
    assert no_information_value([0.5, 0.5], RL["sender_utility"], RL["receiver_utility"]) == (1.0, 0.0)


# --------------------------------------------------------------------------------------- exact payoffs


def test_exact_payoffs_honest_and_uninformative():
    s, r = exact_payoffs(*RL_GAME, HONEST, OBEY)
    assert (s, r) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    # An uninformative scheme with a receiver that never hires: the trivial equilibrium (0, 0).
    assert exact_payoffs(*RL_GAME, UNINFORMATIVE, [[1.0, 0.0], [1.0, 0.0]]) == (0.0, 0.0)
    # ... and with a receiver that follows signal 1 anyway: hires 70% of everyone.
    s, r = exact_payoffs(*RL_GAME, UNINFORMATIVE, OBEY)
    assert s == pytest.approx(0.7)
    assert r == pytest.approx(0.7 * (2 / 3 * -1 + 1 / 3 * 1))


def test_exact_payoffs_of_the_lp_scheme_match_the_lp_value():
    for name, g in ONE_STEP_GAMES.items():
        game = (g["prior"], g["sender_utility"], g["receiver_utility"])
        opt = optimal_signaling_scheme(*game)
        num_actions = len(g["sender_utility"][0])
        s, r = exact_payoffs(*game, opt.scheme, torch.eye(num_actions))
        assert s == pytest.approx(opt.sender_value, abs=1e-9), name
        assert r == pytest.approx(opt.receiver_value, abs=1e-9), name


def test_exact_payoffs_match_the_environment():
    env = BayesianPersuasionEnv(*RL_GAME, num_messages=2, num_envs=20000, seed=3)
    td = env.reset()
    phi = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    state = td["sender", "state"]
    message = torch.multinomial(phi[state], 1, generator=torch.Generator().manual_seed(0)).squeeze(-1)
    td["sender", "message"] = nn.functional.one_hot(message, 2).float()
    td["receiver", "action"] = nn.functional.one_hot(message, 2).float()  # obey
    out = env.step(td)
    mc = out["next", "sender", "reward"].mean().item()
    assert mc == pytest.approx(exact_payoffs(*RL_GAME, phi, OBEY)[0], abs=0.02)


# ------------------------------------------------------------------------------------------- metrics


def test_mutual_information_and_honesty():
    entropy = -sum(p * math.log2(p) for p in RL["prior"])
    assert mutual_information(RL["prior"], HONEST) == pytest.approx(entropy)
    assert mutual_information(RL["prior"], UNINFORMATIVE) == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(RL["prior"], HONEST, base=math.e) == pytest.approx(entropy * math.log(2))
    assert honesty(HONEST) == 1.0 and honesty(UNINFORMATIVE) == 0.0
    assert honesty_recommendation_letter(HONEST) == 1.0
    assert honesty_recommendation_letter([[0.0, 1.0], [1.0, 0.0]]) == -1.0
    assert abs_honesty_recommendation_letter([[0.0, 1.0], [1.0, 0.0]]) == 1.0
    assert honesty_recommendation_letter(UNINFORMATIVE) == 0.0
    # honesty == |phi(1|S) - phi(1|W)| for any 2x2 scheme
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.uniform(size=2)
        phi = [[1 - a, a], [1 - b, b]]
        assert honesty(phi) == pytest.approx(abs_honesty_recommendation_letter(phi))
    # general form: the largest TV distance; states of zero prior probability are ignored if a prior is given
    phi3 = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]
    assert honesty(phi3) == pytest.approx(0.5)
    assert honesty(phi3, prior=[0.0, 0.5, 0.5]) == 0.0


def test_posterior():
    post = posterior(RL["prior"], [[0.5, 0.5], [0.0, 1.0]])
    torch.testing.assert_close(post, torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64))
    never = posterior(RL["prior"], [[1.0, 0.0], [1.0, 0.0]])
    assert torch.isnan(never[1]).all()
    torch.testing.assert_close(never[0], torch.tensor(RL["prior"], dtype=torch.float64))
    as_prior = posterior(RL["prior"], [[1.0, 0.0], [1.0, 0.0]], unused="prior")
    torch.testing.assert_close(as_prior[1], torch.tensor(RL["prior"], dtype=torch.float64))


def test_obedience_constraints():
    opt = optimal_signaling_scheme(*RL_GAME)
    c = obedience_constraints(RL["prior"], RL["receiver_utility"], opt.scheme, OBEY)
    assert c.shape == (2, 2) and c.dtype == torch.float64
    assert c.min().item() >= -1e-9
    assert obedience_violation(RL["prior"], RL["receiver_utility"], opt.scheme, OBEY) <= 1e-9
    # Recommend "hire" to every student, and HR hires on that signal: HR would rather ignore it.
    everyone = [[0.0, 1.0], [0.0, 1.0]]
    c = obedience_constraints(RL["prior"], RL["receiver_utility"], everyone, [[0.0, 1.0], [0.0, 1.0]])
    assert c.abs().max().item() == 0.0  # a receiver that always hires is indifferent between the signals ...
    c = obedience_constraints(RL["prior"], RL["receiver_utility"], everyone, OBEY)
    assert c[1, 0].item() == pytest.approx(-1 / 3)  # ... but hiring on "hire" loses 1/3 vs. acting as on "0"
    assert obedience_violation(RL["prior"], RL["receiver_utility"], everyone, OBEY) == pytest.approx(1 / 3)
    # Eq. 4 with Sigma = A and pi = I is eq. 1: the LP scheme is obedient in every game.
    for name, g in ONE_STEP_GAMES.items():
        opt = optimal_signaling_scheme(g["prior"], g["sender_utility"], g["receiver_utility"])
        eye = torch.eye(len(g["sender_utility"][0]))
        assert obedience_violation(g["prior"], g["receiver_utility"], opt.scheme, eye) <= 1e-9, name


def test_obedience_constraints_are_differentiable():
    logits = torch.zeros(2, 2, requires_grad=True)
    c = obedience_constraints(RL["prior"], RL["receiver_utility"], torch.softmax(logits, -1), OBEY)
    c.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", list(ONE_STEP_GAMES))
def test_lp_beats_random_obedient_schemes(name):
    g = ONE_STEP_GAMES[name]
    game = (g["prior"], g["sender_utility"], g["receiver_utility"])
    opt = optimal_signaling_scheme(*game)
    p, us, ur = (np.asarray(x, dtype=np.float64) for x in game)
    num_states, num_actions = us.shape
    eye = np.eye(num_actions)
    babble = np.tile(eye[int(np.argmax(p @ ur))], (num_states, 1))  # uninformative and obedient
    rng = np.random.default_rng(1)
    n = 30000
    rand = rng.dirichlet(np.full(num_actions, 0.4), size=(3 * n, num_states))  # [3n, S, A]
    t = rng.uniform(0.0, 1.0, size=(3 * n, 1, 1)) ** 3
    anchor = np.concatenate([rand[:n], np.broadcast_to(opt.scheme.numpy(), (n, num_states, num_actions)),
                             np.broadcast_to(babble, (n, num_states, num_actions))])
    # random schemes, and random schemes mixed into the LP optimum / into an uninformative obedient scheme
    phi = np.concatenate([rand[:n], t[n:] * rand[n:] + (1 - t[n:]) * anchor[n:]])
    # eq. 1 constraints, vectorised: C[n, a, a'] = sum_s P(s) phi(a|s) [u_r(s,a) - u_r(s,a')]
    c = np.einsum("s,nsa,sab->nab", p, phi, ur[:, :, None] - ur[:, None, :])
    feasible = phi[c.min(axis=(1, 2)) >= 0]
    values = np.einsum("s,nsa,sa->n", p, feasible, us)
    assert len(feasible) >= 100
    assert values.max() <= opt.sender_value + 1e-9
    # the library's functions agree with the vectorised check on a few of them
    for k in range(0, len(feasible), max(1, len(feasible) // 20)):
        assert obedience_violation(g["prior"], g["receiver_utility"], feasible[k], eye) <= 1e-12
        assert exact_payoffs(*game, feasible[k], eye)[0] == pytest.approx(values[k], abs=1e-12)
    assert no_information_value(*game)[0] <= opt.sender_value + 1e-9


# ------------------------------------------------------------------------------------------- 3x3 games


def test_registry():
    assert "recommendation_letter" in ONE_STEP_GAMES and len(THREE_BY_THREE) >= 3
    for name, g in ONE_STEP_GAMES.items():
        assert {"prior", "sender_utility", "receiver_utility", "description"} <= set(g), name
        assert len(g["description"]) > 100
        env = make_one_step_env(name, num_envs=3, seed=0)
        assert isinstance(env, BayesianPersuasionEnv)
        td = env.rand_step(env.reset())
        assert td["next", "sender", "reward"].shape == (3, 1)
    assert make_one_step_env("recommendation_letter").num_messages == 2
    assert make_one_step_env("seller_buyer", num_messages=5).num_messages == 5
    with pytest.raises(ValueError, match="name"):
        make_one_step_env("no_such_game")


@pytest.mark.parametrize("name", THREE_BY_THREE)
def test_three_by_three_games_reward_persuasion(name):
    g = ONE_STEP_GAMES[name]
    game = (g["prior"], g["sender_utility"], g["receiver_utility"])
    opt = optimal_signaling_scheme(*game)
    s_no, r_no = no_information_value(*game)
    s_full, r_full = full_information_value(*game)
    assert opt.sender_value > s_no + 0.15
    assert opt.sender_value >= s_full - 1e-9
    assert opt.sender_value > s_full + 0.1  # the honest scheme is not optimal
    # the obedient receiver is never worse off than without information, and never better off than honesty
    assert r_no - 1e-9 <= opt.receiver_value <= r_full + 1e-9
    assert len(set(opt.scheme.argmax(-1).tolist())) >= 2  # not a constant scheme


# --------------------------------------------------------------------------------------- tabulation


class _Receiver(nn.Module):
    def __init__(self, obs_dim: int, num_messages: int, num_actions: int, dtype=torch.float32):
        super().__init__()
        self.linear = nn.Linear(obs_dim + num_messages, num_actions, bias=False, dtype=dtype)

    def forward(self, observation: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([observation, message], -1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tabulate_one_step_policies(dtype):
    num_states, num_messages, num_actions = 3, 4, 2
    sender_net = nn.Linear(num_states, num_messages, dtype=dtype)
    receiver_net = _Receiver(0, num_messages, num_actions, dtype=dtype)
    with torch.no_grad():
        w_s = torch.arange(12, dtype=dtype).reshape(num_messages, num_states) / 5 - 1
        b_s = torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=dtype)
        w_r = torch.tensor([[1.0, -1.0, 0.5, 2.0], [0.0, 0.3, -0.7, 1.0]], dtype=dtype)
        sender_net.weight.copy_(w_s)
        sender_net.bias.copy_(b_s)
        receiver_net.linear.weight.copy_(w_r)
    scheme = TensorDictModule(sender_net, in_keys=[("sender", "observation")], out_keys=[("sender", "logits")])
    receiver = TensorDictModule(
        receiver_net, in_keys=[("receiver", "observation"), ("sender", "message")], out_keys=[("receiver", "logits")]
    )
    phi, pi = tabulate_one_step_policies(scheme, receiver, num_states, num_messages)
    assert phi.dtype == torch.float64 and pi.dtype == torch.float64
    assert phi.shape == (num_states, num_messages) and pi.shape == (num_messages, num_actions)
    # Linear(x) = x W^T + b, so one-hot state s gives logits W[:, s] + b; one-hot message m gives W_r[:, m].
    torch.testing.assert_close(phi, torch.softmax((w_s.T + b_s).double(), -1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(pi, torch.softmax(w_r.T.double(), -1), rtol=1e-6, atol=1e-6)
    # the tables plug straight into the exact evaluation
    game = ONE_STEP_GAMES["seller_buyer"]
    s, r = exact_payoffs(game["prior"], torch.tensor(game["sender_utility"])[:, :2],
                         torch.tensor(game["receiver_utility"])[:, :2], phi, pi)
    assert math.isfinite(s) and math.isfinite(r)


def test_tabulate_custom_keys_and_bad_module():
    scheme = TensorDictModule(nn.Linear(2, 2), in_keys=[("s", "obs")], out_keys=[("s", "out")])
    receiver = TensorDictModule(_Receiver(0, 2, 2), in_keys=[("r", "obs"), ("s", "msg")], out_keys=[("r", "out")])
    phi, pi = tabulate_one_step_policies(
        scheme, receiver, 2, 2,
        sender_observation_key=("s", "obs"), receiver_observation_key=("r", "obs"), message_key=("s", "msg"),
        scheme_logits_key=("s", "out"), receiver_logits_key=("r", "out"),
    )
    assert phi.shape == (2, 2) and pi.shape == (2, 2)
    wrong = TensorDictModule(nn.Linear(2, 3), in_keys=[("sender", "observation")], out_keys=[("sender", "logits")])
    ok_receiver = TensorDictModule(
        _Receiver(0, 2, 2), in_keys=[("receiver", "observation"), ("sender", "message")], out_keys=[("receiver", "logits")]
    )
    with pytest.raises(ValueError, match="scheme"):
        tabulate_one_step_policies(wrong, ok_receiver, 2, 2)
    with pytest.raises(ValueError, match="num_messages"):
        tabulate_one_step_policies(wrong, ok_receiver, 2, 0)


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: optimal_signaling_scheme([0.5, 0.6], RL["sender_utility"], RL["receiver_utility"]), "prior"),
        (lambda: optimal_signaling_scheme([-0.5, 1.5], RL["sender_utility"], RL["receiver_utility"]), "prior"),
        (lambda: optimal_signaling_scheme([[0.5, 0.5]], RL["sender_utility"], RL["receiver_utility"]), "prior"),
        (lambda: optimal_signaling_scheme(RL["prior"], [[0, 1]], RL["receiver_utility"]), "sender_utility"),
        (lambda: optimal_signaling_scheme(RL["prior"], RL["sender_utility"], [[0, 1, 2], [0, 1, 2]]), "receiver_utility"),
        (lambda: no_information_value(RL["prior"], "abc", RL["receiver_utility"]), "sender_utility"),
        (lambda: full_information_value(RL["prior"], RL["sender_utility"], [[0, float("nan")], [0, 1]]), "receiver_utility"),
        (lambda: exact_payoffs(*RL_GAME, [[0.5, 0.6], [0.0, 1.0]], OBEY), "phi"),
        (lambda: exact_payoffs(*RL_GAME, [[1.0, 0.0, 0.0]], OBEY), "phi"),
        (lambda: exact_payoffs(*RL_GAME, HONEST, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), "pi"),
        (lambda: exact_payoffs(*RL_GAME, HONEST, [[1.2, -0.2], [0.0, 1.0]]), "pi"),
        (lambda: exact_payoffs(*RL_GAME, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], OBEY), "pi"),
        (lambda: obedience_constraints([1.0, 0.5], RL["receiver_utility"], HONEST, OBEY), "prior"),
        (lambda: obedience_constraints(RL["prior"], [[0.0, 1.0]], HONEST, OBEY), "receiver_utility"),
        (lambda: obedience_violation(RL["prior"], RL["receiver_utility"], [[0.9, 0.0], [0.0, 1.0]], OBEY), "phi"),
        (lambda: mutual_information(RL["prior"], [[1.0, 1.0], [0.0, 1.0]]), "phi"),
        (lambda: mutual_information(RL["prior"], HONEST, base=1), "base"),
        (lambda: posterior([0.2, 0.2], HONEST), "prior"),
        (lambda: posterior(RL["prior"], HONEST, unused="zero"), "unused"),
        (lambda: honesty([[0.5, 0.6], [0.0, 1.0]]), "phi"),
        (lambda: honesty(HONEST, prior=[0.2, 0.3, 0.5]), "prior"),
        (lambda: honesty_recommendation_letter([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), "phi"),
    ],
)
def test_bad_inputs_name_the_argument(call, argument):
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        call()


@pytest.mark.parametrize("game", sorted(ONE_STEP_GAMES))
def test_best_response_regret(game):
    g = ONE_STEP_GAMES[game]
    prior, us, ur = g["prior"], g["sender_utility"], g["receiver_utility"]
    lp = optimal_signaling_scheme(prior, us, ur)
    actions = lp.scheme.shape[1]
    obedient = torch.eye(actions, dtype=torch.float64)
    # the LP's recommendations are obeyed at no loss to the receiver (its obedience constraints)
    assert best_response_regret(prior, ur, lp.scheme, obedient) == pytest.approx(0.0, abs=1e-9)
    # a receiver that always takes the action worst for it under the prior gives up exactly the no-information gap
    p, u = torch.as_tensor(prior, dtype=torch.float64), torch.as_tensor(ur, dtype=torch.float64)
    worst = int((p @ u).argmin())
    no_info = torch.ones(len(prior), 1, dtype=torch.float64)
    always_worst = torch.nn.functional.one_hot(torch.tensor([worst]), actions).double()
    expected = float((p @ u).max() - (p @ u)[worst])
    assert best_response_regret(prior, ur, no_info, always_worst) == pytest.approx(expected)


# ------------------------------------------------------------ a margin for the receiver (receiver_margin)
def test_a_receiver_margin_leaves_every_recommendation_that_surplus():
    from msgzoo.game_theory.suite import persuasion_suite

    for game in persuasion_suite(num_random=6):
        prior = torch.tensor(game.occupancy or game.prior, dtype=torch.float64)
        ur = torch.tensor(game.receiver_utility, dtype=torch.float64)
        values = []
        for margin in (0.0, 0.01, 0.03):
            try:
                opt = optimal_signaling_scheme(prior, game.sender_utility, ur, receiver_margin=margin)
            except ValueError as err:  # no scheme can leave that surplus: said, not solved
                assert "receiver_margin" in str(err) and margin > 0
                break
            joint = prior[:, None] * opt.scheme  # P(s, a recommended)
            sent = joint.sum(0) > 1e-9
            surplus = joint.T @ ur  # [a, a']: sum_s P(s) phi(a|s) w^j(s, a')
            gap = surplus.diagonal()[:, None] - surplus  # E[w^j(a) - w^j(a') ; a]
            # each sent recommendation a: E[w^j(a) - w^j(a') | a] >= margin for every a' != a
            need = margin * joint.sum(0)[:, None] * (1 - torch.eye(len(gap), dtype=torch.float64))
            assert bool((gap[sent] >= need[sent] - 1e-7).all())
            values.append(opt.sender_value)
        assert values == sorted(values, reverse=True)  # a margin never helps the sender
    zero = optimal_signaling_scheme([1 / 3, 2 / 3], [[0, 1], [0, 1]], [[1, 0], [-1, 1]], receiver_margin=0.0)
    assert zero.sender_value == optimal_signaling_scheme([1 / 3, 2 / 3], [[0, 1], [0, 1]], [[1, 0], [-1, 1]]).sender_value


def test_the_recommendation_letter_with_a_margin_gives_the_receiver_that_much():
    # hire after "hire" must pay HR m: the weak share of "hire" falls from 1/2, the sender gives up what HR gains
    opt = optimal_signaling_scheme([2 / 3, 1 / 3], [[0, 1], [0, 1]], [[0, -1], [0, 1]], receiver_margin=0.01)
    assert opt.receiver_value == pytest.approx(0.01 * (opt.sender_value), rel=1e-6)
    assert opt.sender_value < 2 / 3


def test_an_impossible_or_bad_receiver_margin_fails_naming_it():
    with pytest.raises(ValueError, match="receiver_margin=0.01 is infeasible"):
        optimal_signaling_scheme([0.5, 0.5], [[1, 0], [0, 1]], [[1, 1], [1, 1]], receiver_margin=0.01)
    with pytest.raises(ValueError, match="receiver_margin=-0.1 is invalid"):
        optimal_signaling_scheme([0.5, 0.5], [[1, 0], [0, 1]], [[1, 0], [0, 1]], receiver_margin=-0.1)
