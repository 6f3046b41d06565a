"""Several receivers (issue 18 item 1, the exact part): private and public signaling LPs over joint
recommendation profiles, on a committee vote where they differ and against brute force."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER
from msgzoo.optimal_scheme import optimal_signaling_scheme
from msgzoo.optimal_scheme_receivers import optimal_multi_receiver_scheme, voting_game


def _gains(p, ur):
    """gain[j, a', s, r...] = P(s) (u_j(s, r) - u_j(s, (a', r_-j))): receiver j's loss from deviating to a'."""
    n, k = ur.shape[0], ur.shape[2]
    out = np.zeros((n, k, *ur.shape[1:]))
    for j in range(n):
        for a2 in range(k):
            dev = np.take(ur[j], [a2], axis=1 + j)  # u_j(s, (a', r_-j)), broadcast along r_j
            out[j, a2] = p.reshape(-1, *([1] * n)) * (ur[j] - dev)
    return out


def _obedient(phi, p, ur, signaling, tol=1e-12):
    """Which schemes ``phi [batch, S, A, ..., A]`` satisfy the private / public obedience constraints."""
    n, k = ur.shape[0], ur.shape[2]
    g = _gains(p, ur)
    ok = np.ones(phi.shape[0], dtype=bool)
    for j in range(n):
        for a2 in range(k):
            c = phi * g[j, a2][None]  # [batch, S, r...]
            c = c.sum(1)  # over states: [batch, r...]
            if signaling == "private":  # sum over the others' recommendations, per own recommendation a
                c = np.moveaxis(c, 1 + j, 1).reshape(c.shape[0], k, -1).sum(-1)  # [batch, k]
                c = np.delete(c, a2, axis=1)
            else:
                c = np.delete(np.moveaxis(c, 1 + j, 1), a2, axis=1)
            ok &= c.reshape(c.shape[0], -1).min(-1) >= -tol
    return ok


def test_voting_game_private_beats_public():
    p, us, ur = voting_game()
    private = optimal_multi_receiver_scheme(p, us, ur, signaling="private")
    public = optimal_multi_receiver_scheme(p, us, ur, signaling="public")
    assert private.sender_value == pytest.approx(5 / 6, abs=1e-9)
    assert public.sender_value == pytest.approx(2 / 3, abs=1e-9)
    assert private.scheme.shape == (2, 2, 2, 2) and private.receiver_values.shape == (3,)
    bad = private.scheme[0].numpy()
    passes = sum(bad[r] for r in itertools.product(range(2), repeat=3) if sum(r) >= 2)
    assert passes == pytest.approx(3 / 4, abs=1e-9)  # 3/4 of the bad proposals pass under private signaling
    for opt in (private, public):
        torch.testing.assert_close(opt.scheme.sum((1, 2, 3)), torch.ones(2, dtype=torch.float64))
        assert _obedient(opt.scheme.numpy()[None], np.asarray(p), ur, opt.signaling, tol=1e-9).all()
        assert (opt.receiver_values >= -1e-9).all()  # obeying is never worse than always rejecting


def test_one_receiver_is_eq1():
    p, us, ur = (np.asarray(RECOMMENDATION_LETTER[k]) for k in ("prior", "sender_utility", "receiver_utility"))
    single = optimal_signaling_scheme(p, us, ur).sender_value
    for signaling in ("private", "public"):
        assert optimal_multi_receiver_scheme(p, us, ur[None], signaling=signaling).sender_value == pytest.approx(single)


def _random_game(seed, num_receivers, num_states=2, k=2):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(num_states))
    shape = (num_states, *(k,) * num_receivers)
    return p, rng.uniform(-1, 1, shape).round(2), rng.uniform(-1, 1, (num_receivers, *shape)).round(2)


def _simplex_grid(dim, steps):
    """Every point of the probability simplex in R^dim with coordinates in multiples of 1/steps."""
    pts = [c for c in itertools.product(range(steps + 1), repeat=dim - 1) if sum(c) <= steps]
    return np.array([list(c) + [steps - sum(c)] for c in pts], dtype=np.float64) / steps


@pytest.mark.parametrize("signaling", ["private", "public"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_lp_beats_every_obedient_scheme_on_a_grid(seed, signaling):
    """2 receivers, 2 states, binary actions: phi(r | s) on a 1/6 grid of each state's simplex over the 4
    profiles (84^2 = 7056 schemes, with externalities: payoffs over the joint profile)."""
    p, us, ur = _random_game(seed, 2)
    try:
        opt = optimal_multi_receiver_scheme(p, us, ur, signaling=signaling)
    except RuntimeError:
        pytest.skip("no public scheme with a pure equilibrium after every message")
    grid = _simplex_grid(4, 6)
    phi = np.stack(np.broadcast_arrays(grid[:, None, :], grid[None, :, :]), axis=2).reshape(-1, 2, 2, 2)
    feasible = phi[_obedient(phi, p, ur, signaling)]
    values = np.einsum("s,nsab,sab->n", p, feasible, us)
    assert len(feasible) >= 1 and values.max() <= opt.sender_value + 1e-9
    assert values.max() >= opt.sender_value - 0.25  # the grid's best comes near (1/6 steps, payoffs in [-1, 1])


@pytest.mark.parametrize("num_receivers", [2, 3])
def test_private_is_at_least_public(num_receivers):
    done = 0
    for seed in range(12):
        p, us, ur = _random_game(seed, num_receivers, num_states=3)
        private = optimal_multi_receiver_scheme(p, us, ur, signaling="private")
        try:
            public = optimal_multi_receiver_scheme(p, us, ur, signaling="public")
        except RuntimeError:
            continue
        assert private.sender_value >= public.sender_value - 1e-9
        # the public optimum is obedient privately too (the private constraints are sums of the public ones)
        assert _obedient(public.scheme.numpy()[None], p, ur, "private", tol=1e-9).all()
        done += 1
    assert done >= 6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sender_utility=np.zeros((2, 2, 3))), "sender_utility"),
        (dict(receiver_utility=np.zeros((2, 2, 2))), "receiver_utility"),
        (dict(signaling="secret"), "signaling"),
        (dict(prior=[0.5, 0.6]), "prior"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, match):
    p, us, ur = voting_game(num_voters=2)
    args = dict(prior=p, sender_utility=us, receiver_utility=ur) | kwargs
    signaling = args.pop("signaling", "private")
    with pytest.raises(ValueError, match=match):
        optimal_multi_receiver_scheme(args["prior"], args["sender_utility"], args["receiver_utility"], signaling=signaling)
