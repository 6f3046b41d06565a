"""Exact diagnostics of one-step signaling schemes: honesty, obedience (eq. 4), information, posteriors.

Shapes follow :mod:`msgzoo.game_theory.exact_payoffs`: ``prior`` ``[|S|]``, ``receiver_utility`` ``[|S|, |A|]``,
``phi`` ``[|S|, K]`` with ``phi[s, sigma] = phi(sigma | s)`` and ``pi`` ``[K, |A|]`` with
``pi[sigma, a] = pi(a | sigma)``. Inputs may be tensors, numpy arrays or nested lists; tensors are computed in
float64 on the device of the first tensor argument (CPU otherwise) without detaching, so the tensor-valued
metrics (:func:`obedience_constraints`, :func:`posterior`) are differentiable; scalar metrics are Python floats.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from msgzoo.envs.common import require
from msgzoo.game_theory.exact_payoffs import _check_prior, _check_stochastic, _check_utility, _device_of
from msgzoo.game_theory.optimal_scheme import TIE_RTOL

__all__ = [
    "honesty_recommendation_letter",
    "abs_honesty_recommendation_letter",
    "honesty",
    "obedience_constraints",
    "obedience_violation",
    "best_response_regret",
    "best_response_sender_value",
    "mutual_information",
    "posterior",
]

ArrayLike = Sequence[Any] | np.ndarray | torch.Tensor


def honesty_recommendation_letter(phi: ArrayLike) -> float:
    """Signed honesty of a Recommendation Letter scheme: ``phi(1 | strong) - phi(1 | weak)``.

    The paper (Section 5.3.2) defines honesty as ``|phi(1|"S") - phi(1|"W")|``
    (:func:`abs_honesty_recommendation_letter`); the signed version also tells which of the two mirrored
    "languages" (Figure 3) the scheme speaks: ``+1`` for honest with signal 1 = "strong", ``-1`` for honest
    with the labels swapped, ``0`` for an uninformative scheme. States: 0 = weak, 1 = strong.

    Args:
        phi: ``[2, 2]`` scheme, ``phi[s, sigma] = phi(sigma | s)``.

    Returns:
        A Python float in ``[-1, 1]``.

    Raises:
        ValueError: naming ``phi`` if it is not a ``[2, 2]`` row-stochastic matrix.

    Examples:
        >>> honesty_recommendation_letter([[0.5, 0.5], [0.0, 1.0]])   # the LP optimum
        0.5
        >>> honesty_recommendation_letter([[0.0, 1.0], [1.0, 0.0]])   # honest, labels swapped
        -1.0
    """
    f = _check_stochastic(phi, "phi", _device_of(phi), rows=2, cols=2, what=" (weak, strong) x (signal 0, signal 1)")
    return float(f[1, 1] - f[0, 1])


def abs_honesty_recommendation_letter(phi: ArrayLike) -> float:
    """The paper's honesty metric (Section 5.3.2): ``|phi(1 | strong) - phi(1 | weak)|``, in ``[0, 1]``.

    Equal to :func:`honesty` for a ``[2, 2]`` scheme.

    Examples:
        >>> abs_honesty_recommendation_letter([[0.0, 1.0], [1.0, 0.0]])
        1.0
    """
    return abs(honesty_recommendation_letter(phi))


def honesty(phi: ArrayLike, prior: ArrayLike | None = None) -> float:
    """How much the signal reveals: the largest total-variation distance between two states' signal laws.

    .. math::

        h(\\varphi) = \\max_{s, s'} \\mathrm{TV}(\\varphi(\\cdot\\mid s), \\varphi(\\cdot\\mid s'))
                   = \\max_{s, s'} \\tfrac12 \\sum_\\sigma |\\varphi(\\sigma\\mid s) - \\varphi(\\sigma\\mid s')|.

    It is 0 for an uninformative scheme (all states send the same signal law), 1 when some pair of states
    is perfectly distinguished (e.g. an honest scheme), and for 2 states x 2 signals it equals the paper's
    ``|phi(1|"S") - phi(1|"W")|`` (Section 5.3.2), because ``TV = |phi(1|s) - phi(1|s')|`` there. It does not
    depend on how the signals are labelled.

    Args:
        phi: ``[|S|, K]`` scheme, ``phi[s, sigma] = phi(sigma | s)``.
        prior: optional ``[|S|]`` state probabilities; if given, only states with positive probability are
            compared (a state that never occurs cannot be told apart from anything).

    Returns:
        A Python float in ``[0, 1]`` (0 if fewer than two states are compared).

    Raises:
        ValueError: naming ``phi`` or ``prior`` for a wrong shape or rows / prior that are not distributions.

    Examples:
        >>> honesty([[0.5, 0.5], [0.0, 1.0]])
        0.5
        >>> honesty([[1, 0, 0], [0, 1, 0], [0, 1, 0]])
        1.0
    """
    device = _device_of(phi, prior)
    f = _check_stochastic(phi, "phi", device, what=" phi[s, sigma] = phi(sigma | s)")
    if prior is not None:
        p = _check_prior(prior, device)
        require(p.numel() == f.shape[0], "prior", list(p.shape), f"one probability per row of phi ({f.shape[0]})")
        f = f[p > 0]
    if f.shape[0] < 2:
        return 0.0
    tv = 0.5 * (f[:, None, :] - f[None, :, :]).abs().sum(-1)
    return float(tv.max())


def _check_game(prior, receiver_utility, phi, pi) -> tuple[torch.Tensor, ...]:
    """``(prior, receiver_utility, phi, pi)`` as checked float64 tensors on one device."""
    device = _device_of(prior, receiver_utility, phi, pi)
    p = _check_prior(prior, device)
    ur = _check_utility(receiver_utility, "receiver_utility", p.numel(), device)
    f = _check_stochastic(phi, "phi", device, rows=p.numel(), what=" phi[s, sigma] = phi(sigma | s), one row per state")
    g = _check_stochastic(
        pi, "pi", device, rows=f.shape[1], cols=ur.shape[1],
        what=" pi[sigma, a] = pi(a | sigma), one row per message of phi and one column per action",
    )
    return p, ur, f, g


def obedience_constraints(
    prior: ArrayLike, receiver_utility: ArrayLike, phi: ArrayLike, pi: ArrayLike
) -> torch.Tensor:
    """Exact extended obedience constraints ``C(sigma, sigma')`` (the left-hand side of the paper's eq. 4).

    For a one-step game the occupancy measure is the prior, ``d(s) = P(s)``, and ``W^j(s, a) = w^j(s, a)``:

    .. math::

        C(\\sigma, \\sigma') = \\sum_s P(s)\\, \\varphi(\\sigma\\mid s) \\sum_a
            [\\pi(a\\mid\\sigma) - \\pi(a\\mid\\sigma')]\\, w^j(s, a).

    ``C(sigma, sigma') >= 0`` for all pairs means that, having received ``sigma``, the receiver cannot gain by
    acting as if it had received ``sigma'``. With ``Sigma = A`` and the obedient policy ``pi = I`` it reduces
    to the obedience constraints of eq. (1) / (3). The diagonal is zero.

    Args:
        prior: ``[|S|]`` state probabilities (``d`` in eq. 4).
        receiver_utility: ``[|S|, |A|]`` receiver payoff (``W^j`` in eq. 4).
        phi: ``[|S|, K]`` scheme.
        pi: ``[K, |A|]`` receiver policy.

    Returns:
        ``[K, K]`` float64 tensor ``C[sigma, sigma']`` (differentiable in tensor inputs).

    Raises:
        ValueError: naming the argument, for wrong shapes or rows / prior that are not distributions.

    Examples:
        >>> from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER as RL
        >>> lp_scheme = [[0.5, 0.5], [0.0, 1.0]]
        >>> obedient = [[1.0, 0.0], [0.0, 1.0]]
        >>> obedience_constraints(RL["prior"], RL["receiver_utility"], lp_scheme, obedient)  # "hire" is tight
        tensor([[0.0000, 0.3333],
                [0.0000, 0.0000]], dtype=torch.float64)
    """
    p, ur, f, g = _check_game(prior, receiver_utility, phi, pi)
    w = p[:, None] * f  # [S, K]: P(s) phi(sigma|s)
    m = ur @ g.T  # [S, K]: sum_a pi(a|sigma) w^j(s, a)
    return (w * m).sum(0)[:, None] - w.T @ m


def obedience_violation(
    prior: ArrayLike, receiver_utility: ArrayLike, phi: ArrayLike, pi: ArrayLike
) -> float:
    """Largest violation of the extended obedience constraints: ``max(0, -min_{sigma,sigma'} C(sigma, sigma'))``.

    Zero iff every constraint of :func:`obedience_constraints` (eq. 4) holds.

    Examples:
        >>> from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER as RL
        >>> everyone = [[0.0, 1.0], [0.0, 1.0]]        # recommend "hire" for every student
        >>> hire_on_1 = [[1.0, 0.0], [0.0, 1.0]]
        >>> round(obedience_violation(RL["prior"], RL["receiver_utility"], everyone, hire_on_1), 6)
        0.333333
    """
    c = obedience_constraints(prior, receiver_utility, phi, pi)
    return max(0.0, -float(c.min()))


def best_response_regret(prior: ArrayLike, receiver_utility: ArrayLike, phi: ArrayLike, pi: ArrayLike) -> float:
    """What the receiver gives up by not best-responding to the scheme: ``sum_sigma max_a U(sigma, a) -
    sum_sigma sum_a pi(a|sigma) U(sigma, a)``, with ``U(sigma, a) = sum_s P(s) phi(sigma|s) w^j(s, a)``.

    Zero iff ``pi`` plays only best responses to each message's posterior: the pair is an equilibrium of the
    one-step game (persuasion, not exploitation of a receiver that has not finished learning). It catches what
    :func:`obedience_violation` cannot: the constraints of eq. 4 compare a message's policy only with the policies
    of *other* messages, so an action that no message leads to is never compared.

    Examples:
        >>> from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER as RL
        >>> lp_scheme, obedient = [[0.5, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]
        >>> round(best_response_regret(RL["prior"], RL["receiver_utility"], lp_scheme, obedient), 6)
        0.0
        >>> round(best_response_regret(RL["prior"], RL["receiver_utility"], lp_scheme, [[0.0, 1.0], [0.0, 1.0]]), 6)
        0.333333
    """
    p, ur, f, g = _check_game(prior, receiver_utility, phi, pi)
    u = (p[:, None] * f).T @ ur  # [K, A]: U(sigma, a)
    return max(0.0, float((u.max(-1).values - (g * u).sum(-1)).sum()))


def best_response_sender_value(
    prior: ArrayLike, sender_utility: ArrayLike, receiver_utility: ArrayLike, phi: ArrayLike
) -> float:
    """The sender's expected payoff from the scheme ``phi`` against a receiver that best-responds to every message
    it is sent, breaking ties in the sender's favour (the convention of the LP of eq. 1, so the LP's scheme scores
    the LP's value, revealing nothing the no-information value).

    Beside the exact value of a learned pair (``phi``, ``pi``) it splits a learned sender's shortfall in two: what
    the scheme gives up against a best-responding receiver, and what the learned receiver's play (a softmax that is
    still mixing, e.g. between two near-tied actions) adds or costs on top.

    Examples:
        >>> from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER as RL
        >>> round(best_response_sender_value(RL["prior"], RL["sender_utility"], RL["receiver_utility"],
        ...                                  [[0.5, 0.5], [0.0, 1.0]]), 6)  # the LP's scheme: 2/3
        0.666667
    """
    device = _device_of(prior, sender_utility, receiver_utility, phi)
    p = _check_prior(prior, device)
    us = _check_utility(sender_utility, "sender_utility", p.numel(), device)
    ur = _check_utility(receiver_utility, "receiver_utility", p.numel(), device, num_actions=us.shape[1])
    f = _check_stochastic(phi, "phi", device, rows=p.numel(), what=" phi[s, sigma] = phi(sigma | s), one row per state")
    joint = (p[:, None] * f).T  # [K, |S|]: P(s, sigma)
    u_receiver, u_sender = joint @ ur, joint @ us  # [K, |A|]: each message's (unnormalised) expected payoffs
    tol = TIE_RTOL * max(1.0, float(ur.abs().max()))
    best = u_receiver >= u_receiver.max(-1, keepdim=True).values - tol * joint.sum(-1, keepdim=True)
    return float(u_sender.masked_fill(~best, -math.inf).max(-1).values.sum())


def mutual_information(prior: ArrayLike, phi: ArrayLike, base: float = 2) -> float:
    """Mutual information ``I(s; sigma)`` between the state and the signal (bits by default).

    .. math::

        I = \\sum_{s,\\sigma:\\, P(s)\\varphi(\\sigma|s) > 0} P(s)\\varphi(\\sigma\\mid s)
            \\log \\frac{\\varphi(\\sigma\\mid s)}{q(\\sigma)}, \\qquad q(\\sigma) = \\sum_s P(s)\\varphi(\\sigma\\mid s),

    with ``0 log 0 = 0``. It is 0 for an uninformative scheme and ``H(P)`` for an honest one.

    Args:
        prior: ``[|S|]`` state probabilities.
        phi: ``[|S|, K]`` scheme.
        base: logarithm base (2: bits, ``math.e``: nats); must be > 0 and != 1.

    Returns:
        A non-negative Python float.

    Raises:
        ValueError: naming the argument, for wrong shapes, rows / prior that are not distributions or a bad
            ``base``.

    Examples:
        >>> round(mutual_information([0.5, 0.5], [[1, 0], [0, 1]]), 6)
        1.0
        >>> mutual_information([0.5, 0.5], [[0.3, 0.7], [0.3, 0.7]])
        0.0
    """
    require(isinstance(base, (int, float)) and base > 0 and base != 1, "base", base, "a positive number other than 1")
    device = _device_of(prior, phi)
    p = _check_prior(prior, device)
    f = _check_stochastic(phi, "phi", device, rows=p.numel(), what=" phi[s, sigma] = phi(sigma | s), one row per state")
    joint = (p[:, None] * f).clamp_min(0.0)
    q = joint.sum(0, keepdim=True)
    ratio = torch.where(joint > 0, joint / (p[:, None] * q).clamp_min(1e-300), torch.ones_like(joint))
    info = float((joint * torch.log(ratio)).sum()) / math.log(base)
    return max(0.0, info)


def posterior(prior: ArrayLike, phi: ArrayLike, *, unused: str = "nan") -> torch.Tensor:
    """The receiver's posterior beliefs after each signal (Bayes' rule).

    .. math::

        \\mu(s \\mid \\sigma) = \\frac{P(s)\\, \\varphi(\\sigma\\mid s)}{\\sum_{s'} P(s')\\, \\varphi(\\sigma\\mid s')}.

    A signal that is never sent (``q(sigma) = 0``) has no Bayesian posterior: its row is NaN by default
    (``unused="nan"``), or the prior with ``unused="prior"``.

    Args:
        prior: ``[|S|]`` state probabilities.
        phi: ``[|S|, K]`` scheme.

    Keyword Args:
        unused: ``"nan"`` or ``"prior"``: what to put in the rows of unused signals.

    Returns:
        ``[K, |S|]`` float64 tensor, row ``sigma`` = ``mu(. | sigma)``.

    Raises:
        ValueError: naming the argument, for wrong shapes, rows / prior that are not distributions or an
            unknown ``unused``.

    Examples:
        >>> posterior([2 / 3, 1 / 3], [[0.5, 0.5], [0.0, 1.0]])   # LP scheme of the Recommendation Letter
        tensor([[1.0000, 0.0000],
                [0.5000, 0.5000]], dtype=torch.float64)
    """
    require(unused in ("nan", "prior"), "unused", unused, '"nan" or "prior"')
    device = _device_of(prior, phi)
    p = _check_prior(prior, device)
    f = _check_stochastic(phi, "phi", device, rows=p.numel(), what=" phi[s, sigma] = phi(sigma | s), one row per state")
    joint = (p[:, None] * f).clamp_min(0.0).T  # [K, S]
    q = joint.sum(-1, keepdim=True)
    used = q > 0
    post = joint / torch.where(used, q, torch.ones_like(q))
    fill = torch.full_like(post, float("nan")) if unused == "nan" else p.expand_as(post)
    return torch.where(used, post, fill)
