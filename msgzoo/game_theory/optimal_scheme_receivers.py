"""Optimal information design for one sender and several receivers: private and public signaling LPs.

N receivers each take an action from ``A``; the state ``s ~ P`` is seen by the sender only; payoffs depend on the
state and the joint action profile ``a = (a_1, ..., a_N)``: the sender's ``u_0(s, a)``, receiver ``j``'s ``u_j(s, a)``.
By the revelation principle the sender recommends an action to every receiver, drawing the whole profile
``r ~ phi(. | s)``; the LP's variables are ``phi(r | s)`` over joint recommendation profiles.

- **Private signaling** (each receiver sees only its own recommendation ``r_j``; Bergemann & Morris 2016, 2019,
  "Information design: a unified perspective", the Bayes correlated equilibria; Arieli & Babichenko 2019,
  "Private Bayesian persuasion"): receiver ``j`` told ``a`` must not gain by playing ``a'`` when the others obey,

  ``sum_s P(s) sum_{r: r_j = a} phi(r|s) [u_j(s, r) - u_j(s, (a', r_{-j}))] >= 0`` for all ``j, a != a'``.

- **Public signaling** (one message, the whole profile ``r``, seen by every receiver): obedience given ``r``,

  ``sum_s P(s) phi(r|s) [u_j(s, r) - u_j(s, (a', r_{-j}))] >= 0`` for all ``r, j, a' != r_j``.

  Summing the public constraints over ``r_{-j}`` gives the private ones, so the public optimum never exceeds the
  private one. When a receiver's payoff depends only on its own action (no externalities, as in Arieli &
  Babichenko's setting and :func:`voting_game`) the public LP is exactly public persuasion: each receiver best
  responds to the common posterior. With externalities it is the best public scheme whose every message is followed
  by a pure equilibrium of the posterior game (the recommended profile).

As in :mod:`msgzoo.game_theory.optimal_scheme`, an indifferent receiver obeys (ties in the sender's favour). Payoff
arrays have one axis per receiver: ``sender_utility[s, a_1, ..., a_N]`` and ``receiver_utility[j, s, a_1, ..., a_N]``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linprog

from msgzoo.envs.common import require
from msgzoo.game_theory.exact_payoffs import _as_float64, _check_prior

__all__ = [
    "SIGNALING", "MultiReceiverScheme", "optimal_multi_receiver_scheme", "multi_receiver_payoffs", "voting_game",
    "check_multi_receiver_game", "played_action_profiles",
]

SIGNALING = ("private", "public")


@dataclass(frozen=True, eq=False)
class MultiReceiverScheme:
    """Solution of a several-receiver obedience LP.

    Attributes:
        scheme: ``[|S|, |A|, ..., |A|]`` float64 CPU tensor (one action axis per receiver),
            ``scheme[s, r_1, ..., r_N] = phi(recommend the profile r | s)``; each state's entries sum to 1.
        sender_value: the optimum, ``sum_s P(s) sum_r phi(r|s) u_0(s, r)`` (obedient receivers).
        receiver_values: ``[N]`` float64 tensor, receiver ``j``'s payoff under the same scheme.
        signaling: ``"private"`` or ``"public"``.
    """

    scheme: torch.Tensor
    sender_value: float
    receiver_values: torch.Tensor
    signaling: str


def check_multi_receiver_game(prior: Any, sender_utility: Any, receiver_utility: Any):
    """Validates a several-receiver game; returns ``(prior, sender_utility, receiver_utility)`` as float64 numpy
    arrays (``[|S|]``, ``[|S|, |A|, ..., |A|]``, ``[N, |S|, |A|, ..., |A|]``), or raises a ``ValueError`` naming the
    argument."""
    p = _check_prior(prior, torch.device("cpu"))
    us = _as_float64(sender_utility, "sender_utility", torch.device("cpu"))
    ur = _as_float64(receiver_utility, "receiver_utility", torch.device("cpu"))
    num_states = p.numel()
    ok = us.ndim >= 2 and us.shape[0] == num_states and len(set(us.shape[1:])) == 1 and us.shape[1] >= 2
    if not ok:
        raise ValueError(
            f"sender_utility has shape {list(us.shape)}: expected [|S|={num_states}, |A|, ..., |A|] with one axis "
            "of |A| >= 2 actions per receiver."
        )
    n = us.ndim - 1
    if tuple(ur.shape) != (n, *us.shape):
        raise ValueError(
            f"receiver_utility has shape {list(ur.shape)}: expected [N={n}, {', '.join(map(str, us.shape))}] "
            "(one payoff array of the sender_utility's shape per receiver)."
        )
    return p.numpy(), us.numpy(), ur.numpy()


def optimal_multi_receiver_scheme(
    prior: Any, sender_utility: Any, receiver_utility: Any, *, signaling: str = "private"
) -> MultiReceiverScheme:
    """Sender-optimal scheme for N receivers, private or public signaling (the module docstring has the LPs).

    Args:
        prior: ``[|S|]`` state probabilities.
        sender_utility: ``[|S|, |A|, ..., |A|]`` (N action axes) sender payoff of each state and action profile.
        receiver_utility: ``[N, |S|, |A|, ..., |A|]``: receiver ``j``'s payoff is ``receiver_utility[j]``.

    Keyword Args:
        signaling: ``"private"`` (a recommendation per receiver, each sees its own) or ``"public"`` (one
            recommended profile seen by all).

    Returns:
        :class:`MultiReceiverScheme`.

    Raises:
        ValueError: naming the argument, for wrong shapes, a prior that is not a distribution or an unknown
            ``signaling``.
        RuntimeError: with the solver's message if HiGHS fails. The private LP is always feasible (a correlated
            equilibrium of the prior game always exists); the public one needs a public scheme whose every message
            is followed by a pure equilibrium, which games with externalities may lack (e.g. matching pennies).

    Examples:
        >>> game = voting_game()
        >>> private = optimal_multi_receiver_scheme(*game, signaling="private")
        >>> public = optimal_multi_receiver_scheme(*game, signaling="public")
        >>> round(private.sender_value, 6), round(public.sender_value, 6)
        (0.833333, 0.666667)
    """
    require(signaling in SIGNALING, "signaling", signaling, f"one of {SIGNALING}")
    p, us, ur = check_multi_receiver_game(prior, sender_utility, receiver_utility)
    num_states, n, k = p.shape[0], us.ndim - 1, us.shape[1]
    profiles = list(itertools.product(range(k), repeat=n))
    m = len(profiles)
    flat_us = us.reshape(num_states, m)
    flat_ur = ur.reshape(n, num_states, m)
    index = {r: i for i, r in enumerate(profiles)}
    # gain[j, a', s, r] = u_j(s, r) - u_j(s, (a', r_-j)): receiver j's loss from deviating to a' (x[s * m + r])
    rows = []
    for j in range(n):
        for a2 in range(k):
            dev = np.array([index[r[:j] + (a2,) + r[j + 1:]] for r in profiles])
            gain = p[:, None] * (flat_ur[j] - flat_ur[j][:, dev])  # [S, m]
            if signaling == "private":
                for a in range(k):
                    if a == a2:
                        continue
                    told = np.array([r[j] == a for r in profiles])
                    rows.append(-(gain * told[None, :]).reshape(-1))
            else:
                for i, r in enumerate(profiles):
                    if r[j] == a2:
                        continue
                    row = np.zeros((num_states, m))
                    row[:, i] = -gain[:, i]
                    rows.append(row.reshape(-1))
    a_ub = np.stack(rows)
    a_eq = np.kron(np.eye(num_states), np.ones((1, m)))
    res = linprog(
        -(p[:, None] * flat_us).reshape(-1), A_ub=a_ub, b_ub=np.zeros(len(rows)), A_eq=a_eq, b_eq=np.ones(num_states),
        bounds=(0.0, 1.0), method="highs",
    )
    if not res.success or res.x is None:
        raise RuntimeError(f"the {signaling} obedience LP failed (status {res.status}): {res.message}")
    scheme = np.clip(res.x.reshape(num_states, m), 0.0, 1.0) + 0.0
    scheme = scheme / scheme.sum(axis=1, keepdims=True)
    joint = p[:, None] * scheme
    return MultiReceiverScheme(
        scheme=torch.as_tensor(scheme.reshape(us.shape), dtype=torch.float64),
        sender_value=float((joint * flat_us).sum()),
        receiver_values=torch.as_tensor((joint[None] * flat_ur).sum((1, 2)), dtype=torch.float64),
        signaling=signaling,
    )


def multi_receiver_payoffs(
    prior: Any, sender_utility: Any, receiver_utility: Any, phi: Any, pi: Any, *, signaling: str = "private"
) -> tuple[float, torch.Tensor]:
    """Exact expected payoffs of tabular policies in a several-receiver game (no sampling).

    Private: ``phi[s, m_1, ..., m_N] = phi(m | s)`` over message profiles (``K`` messages each) and
    ``pi[j, m_j, a] = pi_j(a | m_j)``; public: ``phi[s, m]`` over ``M`` public messages and
    ``pi[j, m, a] = pi_j(a | m)``. The receivers act independently given their messages:
    ``V^k = sum_s P(s) sum_m phi(m|s) sum_a prod_j pi_j(a_j | m_j or m) u_k(s, a)``.

    Returns:
        ``(sender_value, receiver_values)``: a float and an ``[N]`` float64 tensor.

    Raises:
        ValueError: naming the argument, for wrong shapes, or tables whose rows are not distributions.

    Examples:
        >>> p, us, ur = voting_game()
        >>> lp = optimal_multi_receiver_scheme(p, us, ur, signaling="private")
        >>> obey = torch.eye(2).expand(3, 2, 2)  # every voter follows its recommendation
        >>> round(multi_receiver_payoffs(p, us, ur, lp.scheme, obey)[0], 6)
        0.833333
    """
    require(signaling in SIGNALING, "signaling", signaling, f"one of {SIGNALING}")
    p, us, ur = check_multi_receiver_game(prior, sender_utility, receiver_utility)
    num_states, n, k = p.shape[0], us.ndim - 1, us.shape[1]
    f = _as_float64(phi, "phi", torch.device("cpu")).numpy()
    g = _as_float64(pi, "pi", torch.device("cpu")).numpy()
    if signaling == "private":
        ok = f.ndim == n + 1 and f.shape[0] == num_states and len(set(f.shape[1:])) == 1
        expected = f"[|S|={num_states}, K, ..., K] with {n} message axes"
    else:
        ok = f.ndim == 2 and f.shape[0] == num_states
        expected = f"[|S|={num_states}, M] over public messages"
    if not ok:
        raise ValueError(f"phi has shape {list(f.shape)}: expected {expected}.")
    num_messages = f.shape[1]
    if g.shape != (n, num_messages, k):
        raise ValueError(f"pi has shape {list(g.shape)}: expected [N={n}, {num_messages}, |A|={k}], pi[j, m, a].")
    for name, t in (("phi", f.reshape(num_states, -1)), ("pi", g)):
        require(bool((t >= -1e-12).all()) and bool((np.abs(t.sum(-1) - 1.0) <= 1e-5).all()), name, t.tolist(),
                "rows that are probability distributions")
    q = p.reshape(-1, *([1] * n)) * _played(f, g, signaling)  # P(s, a)
    return float((q * us).sum()), torch.as_tensor((q[None] * ur).reshape(n, -1).sum(-1), dtype=torch.float64)


def _played(f: np.ndarray, g: np.ndarray, signaling: str) -> np.ndarray:
    """``P(a | s)`` ``[S, |A|, ..., |A|]`` of a scheme ``f`` and receivers' policies ``g`` (validated shapes)."""
    n, num_messages, k = g.shape
    if signaling == "private":  # contract message axis j with pi_j: [S, m_1..m_N] -> [S, a_1..a_N]
        q = f
        for j in range(n):
            q = np.moveaxis(np.tensordot(q, g[j], axes=([1 + j], [0])), -1, 1 + j)
        return q
    joint = g[0]  # joint[m, a_1..a_N] = prod_j pi_j(a_j | m)
    for j in range(1, n):
        joint = joint[..., None] * g[j].reshape(num_messages, *([1] * j), k)
    return np.tensordot(f, joint, axes=([1], [0]))


def played_action_profiles(phi: Any, pi: Any, *, signaling: str = "private") -> torch.Tensor:
    """``P(a | s)``, ``[|S|, |A|, ..., |A|]``: the action profiles tabular policies play in each state (the
    receivers act independently given their messages; shapes as in :func:`multi_receiver_payoffs`)."""
    require(signaling in SIGNALING, "signaling", signaling, f"one of {SIGNALING}")
    f = _as_float64(phi, "phi", torch.device("cpu")).numpy()
    g = _as_float64(pi, "pi", torch.device("cpu")).numpy()
    require(g.ndim == 3, "pi", list(g.shape), "[N, messages, |A|]")
    return torch.as_tensor(_played(f, g, signaling), dtype=torch.float64)


def voting_game(
    num_voters: int = 3, quota: int = 2, prior_good: float = 1 / 3, costs: Any = None
) -> tuple[list[float], np.ndarray, np.ndarray]:
    """A committee vote (Arieli & Babichenko 2019's setting): the sender wants a proposal passed.

    The proposal is good (state 1, probability ``prior_good``) or bad (state 0). Each voter approves (action 1)
    or rejects (0); the proposal passes with at least ``quota`` approvals, and the sender gets 1 if it passes.
    A voter's payoff depends on the state and its own vote only: approving pays +1 if the proposal is good and
    ``-costs[j]`` if it is bad, rejecting pays 0 (so voter ``j`` approves when ``P(good) >= costs[j] / (1 +
    costs[j])``).

    With the defaults (3 voters, majority, prior 1/3, costs 1), public signaling can make every voter approve a
    bad proposal half the time (sender 2/3), while private signaling tells only a random majority of two to approve
    (3/4 of bad proposals pass; sender 5/6).

    Returns:
        ``(prior, sender_utility, receiver_utility)`` for :func:`optimal_multi_receiver_scheme`:
        ``[2]``, ``[2, 2, ..., 2]`` and ``[N, 2, 2, ..., 2]``.
    """
    require(isinstance(num_voters, int) and num_voters >= 1, "num_voters", num_voters, "an integer >= 1")
    require(isinstance(quota, int) and 1 <= quota <= num_voters, "quota", quota, f"an integer in [1, {num_voters}]")
    require(0.0 < prior_good < 1.0, "prior_good", prior_good, "a probability in (0, 1)")
    costs = np.ones(num_voters) if costs is None else np.asarray(costs, dtype=np.float64)
    require(costs.shape == (num_voters,), "costs", costs.tolist(), f"{num_voters} numbers, one per voter")
    shape = (2,) * num_voters
    sender = np.zeros((2, *shape))
    receiver = np.zeros((num_voters, 2, *shape))
    for votes in itertools.product(range(2), repeat=num_voters):
        sender[(slice(None), *votes)] = float(sum(votes) >= quota)
        for j, v in enumerate(votes):
            receiver[(j, 1, *votes)] = float(v)  # good: +1 for approving
            receiver[(j, 0, *votes)] = -costs[j] * v  # bad: -cost for approving
    return [1.0 - prior_good, prior_good], sender, receiver
