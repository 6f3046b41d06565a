"""Optimal information design for one-step signaling games: the obedience linear program (paper, eq. 1).

By the revelation principle (Kamenica & Gentzkow, 2011; the paper's Section 2) the sender loses nothing by
using the signal space ``Sigma = A`` and *recommending* an action, provided the receiver is willing to obey.
The sender-optimal scheme then solves the linear program of the paper's eq. (1):

.. math::

    \\max_{\\varphi}\\; \\sum_s P(s) \\sum_a \\varphi(a\\mid s)\\, w^i(s,a)
    \\quad\\text{s.t.}\\quad
    \\sum_s P(s)\\, \\varphi(a\\mid s)\\, [w^j(s,a) - w^j(s,a')] \\ge 0 \\;\\; \\forall a, a' \\in A,
    \\qquad \\varphi(\\cdot\\mid s) \\in \\Delta(A) \\;\\; \\forall s.

The obedience constraints say that after the recommendation ``a`` the receiver's posterior expected payoff of
``a`` is at least that of any ``a'``. When they hold with equality the receiver is indifferent; the LP
convention (used throughout this module) is that **ties are broken in the sender's favour**, i.e. an
indifferent receiver obeys / picks the action the sender likes best. The two baselines
(:func:`no_information_value`, :func:`full_information_value`) use the same tie rule, which makes
``no_information_value <= LP value`` and ``full_information_value <= LP value`` hold exactly.

Inputs may be torch tensors, numpy arrays or nested lists (states are rows, actions columns); values are
returned as Python floats and schemes as ``torch.float64`` CPU tensors.

**Markov persuasion.** When the state follows a Markov chain ``P`` that no action changes (``s_0 ~ p_0``,
``s_{t+1} ~ P(s_t, .)``, ``T`` steps) and the receiver sees only the message (not the time, not the state), the
sender-optimal obedient value *per step* is the LP above with the prior replaced by the state occupancy
``d = (1/T) sum_{t<T} p_0 P^t`` (:func:`state_occupancy`), and the LP's scheme used at every step attains it.
Proof sketch: (i) any sender scheme, stationary or not (even history-dependent), induces per-step joint
distributions ``mu_t(s, sigma)`` whose state marginals are ``p_0 P^t`` whatever was sent or done; a receiver
that sees only ``sigma`` plays one ``pi(a | sigma)`` at every step, so its per-step payoff is
``sum_{s, sigma} mu(s, sigma) sum_a pi(a|sigma) w^j(s, a)`` with the average ``mu = (1/T) sum_t mu_t``, whose
state marginal is ``d``: obedience aggregates over ``t`` because the receiver cannot tell the steps apart, and
by the revelation principle ``mu(s, a) = d(s) phi(a|s)`` is feasible for the LP on ``d``, with the same sender
value. (ii) Conversely the LP's ``phi`` used at every step induces exactly ``mu(s, a) = d(s) phi(a|s)``. (iii) A
receiver that discounts the future (``gamma > 0``) still best-responds myopically: its action changes neither
future states nor future messages, so the continuation value is the same for every action and drops out of its
advantages (and of the obedience differences). The per-step average weighs the ``T`` steps equally, as
on-policy learners weigh their samples; for a stationary start (``p_0 P = p_0``) ``d = p_0`` for any weighting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from scipy.optimize import linprog

from msgzoo.envs.common import is_int, require
from msgzoo.game_theory.exact_payoffs import (
    _as_float64,
    _check_emission,
    _check_game,
    _check_prior,
    _check_stochastic,
    _device_of,
)

__all__ = [
    "OptimalScheme", "optimal_signaling_scheme", "obedience_penalty_threshold", "no_information_value",
    "full_information_value", "state_occupancy", "emission_game", "ActingSenderScheme", "optimal_acting_sender_scheme",
]

ArrayLike = Sequence[Any] | np.ndarray | torch.Tensor

#: Two receiver payoffs closer than ``TIE_RTOL * max(1, max |w^j|)`` count as a tie.
TIE_RTOL = 1e-9


@dataclass(frozen=True, eq=False)
class OptimalScheme:
    """Solution of the obedience LP (paper, eq. 1).

    Attributes:
        scheme: ``[|S|, |A|]`` float64 CPU tensor, ``scheme[s, a] = phi(recommend a | s)``; every row is a
            distribution (rows of zero-probability states are whatever the solver returned, still valid).
        sender_value: the LP optimum ``sum_s P(s) sum_a phi(a|s) w^i(s, a)`` (an obedient receiver).
        receiver_value: the receiver's payoff under the same scheme, ``sum_s P(s) sum_a phi(a|s) w^j(s, a)``.
    """

    scheme: torch.Tensor
    sender_value: float
    receiver_value: float

    def objective_value(self, receiver_weight: float = 0.0) -> float:
        """The prosocial objective ``(1 - w) U_s + w U_r`` of this scheme (``w = 0``: ``sender_value``)."""
        return (1.0 - receiver_weight) * self.sender_value + receiver_weight * self.receiver_value


def _check_receiver_weight(receiver_weight: Any) -> float:
    ok = isinstance(receiver_weight, (int, float)) and not isinstance(receiver_weight, bool)
    require(ok and 0.0 <= receiver_weight <= 1.0, "receiver_weight", receiver_weight,
            "a number in [0, 1] (the weight w of the receiver's payoff in the sender's objective)")
    return float(receiver_weight)


def emission_game(
    prior: ArrayLike, sender_utility: ArrayLike, receiver_utility: ArrayLike, sender_emission: ArrayLike
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one-step game a partial-sighted sender plays, over what it observes.

    The sender sees an emission ``e ~ E(. | s)`` instead of the state ``s``. A scheme ``phi(sigma | e)`` meets the
    state only through the joint ``P(s, e) = P(s) E(e | s)``, so every payoff and every obedience constraint of
    eq. (1) equals that of the ordinary game whose "states" are the emissions, with prior
    ``P(e) = sum_s P(s, e)`` and utilities ``w^k(e, a) = sum_s P(s | e) w^k(s, a)`` (rows of emissions that never
    occur are zeros). :func:`optimal_signaling_scheme` and :func:`full_information_value` solve that game when
    given ``sender_emission``.

    Args:
        prior: ``[|S|]`` state probabilities.
        sender_utility, receiver_utility: ``[|S|, |A|]`` payoffs.
        sender_emission: ``[|S|, |E|]`` row-stochastic, ``sender_emission[s, e] = E(e | s)``.

    Returns:
        ``(p_e, sender_utility_e, receiver_utility_e)``: ``[|E|]`` and ``[|E|, |A|]`` float64 tensors on the
        inputs' device.

    Raises:
        ValueError: naming the argument, for wrong shapes, a prior that is not a distribution or an emission
            matrix whose rows are not distributions.

    Examples:
        >>> p_e, us_e, ur_e = emission_game([0.5, 0.5], [[0, 1], [0, 1]], [[1, 0], [0, 1]], [[0.75, 0.25], [0.25, 0.75]])
        >>> p_e.tolist(), ur_e.tolist()
        ([0.5, 0.5], [[0.75, 0.25], [0.25, 0.75]])
    """
    p, us, ur, device = _check_game(prior, sender_utility, receiver_utility, sender_emission)
    e = _check_emission(sender_emission, p.numel(), device)
    joint = p[:, None] * e  # [S, E]
    p_e = joint.sum(0)
    seen = p_e > 0
    cond = torch.where(seen, joint / torch.where(seen, p_e, torch.ones_like(p_e)), torch.zeros_like(joint))
    return p_e, cond.T @ us, cond.T @ ur


def optimal_signaling_scheme(
    prior: ArrayLike,
    sender_utility: ArrayLike,
    receiver_utility: ArrayLike,
    *,
    receiver_weight: float = 0.0,
    sender_emission: ArrayLike | None = None,
    receiver_margin: float = 0.0,
) -> OptimalScheme:
    """Sender-optimal signaling scheme of a one-step persuasion game: the obedience LP of the paper's eq. (1).

    Solves, over ``phi(a | s)`` (``Sigma = A``, revelation principle),

    ``max sum_s P(s) sum_a phi(a|s) w^i(s,a)``  s.t.
    ``sum_s P(s) phi(a|s) [w^j(s,a) - w^j(s,a')] >= 0`` for all ``a != a'`` and ``phi(.|s)`` a distribution,

    with ``scipy.optimize.linprog(method="highs")``. An indifferent receiver is assumed to obey (ties in the
    sender's favour, the LP convention). The solver's tiny negative entries are clipped and rows renormalised;
    the reported values are computed from the returned (cleaned) scheme.

    A **prosocial sender** (``receiver_weight = w > 0``, the objective :class:`msgzoo.training.methods.RewardMix` trains
    on) maximises ``(1 - w) U_s + w U_r``, i.e. the objective's utility becomes ``(1 - w) w^i + w w^j``; the
    obedience constraints are unchanged (the receiver is still selfish). ``w = 1`` gives the receiver's best
    value (full information's), ``w = 1/2`` half the welfare ``U_s + U_r``.

    Args:
        prior: ``[|S|]`` state probabilities.
        sender_utility: ``[|S|, |A|]`` sender payoff ``w^i(s, a)``.
        receiver_utility: ``[|S|, |A|]`` receiver payoff ``w^j(s, a)``.

    A **partial-sighted sender** (``sender_emission`` given) sees ``e ~ E(. | s)``, not ``s``; the scheme is
    ``phi(a | e)`` and obedience uses the joint ``P(s, e) = P(s) E(e | s)``:
    ``sum_{s,e} P(s) E(e|s) phi(a|e) [w^j(s,a) - w^j(s,a')] >= 0``, i.e. eq. (1) on the game over emissions
    (:func:`emission_game`).

    Keyword Args:
        receiver_weight: ``w`` in ``[0, 1]``, the weight of the receiver's payoff in the objective (default 0:
            the paper's self-interested sender, eq. 1 as is). :meth:`OptimalScheme.objective_value` gives the
            optimum of the mixed objective.
        sender_emission: ``[|S|, |E|]`` row-stochastic matrix ``E(e | s)`` of what the sender observes (default
            None: it sees the state). The returned scheme is then ``[|E|, |A|]``, ``scheme[e, a] = phi(a | e)``.
        receiver_margin: ``m >= 0``: every recommendation the scheme sends must leave the receiver at least ``m``
            (in its payoff units) over every other action, ``E[w^j(s, a) - w^j(s, a') | a] >= m``, i.e.
            ``sum_s P(s) phi(a|s) [w^j(s,a) - w^j(s,a') - m] >= 0`` (linear; an unsent recommendation is
            unconstrained). Default 0: eq. (1). A margin makes obeying strictly better, so a receiver that learns
            (and does not break ties in the sender's favour) still obeys; its value shows what that robustness costs.

    Returns:
        :class:`OptimalScheme` with the ``[|S|, |A|]`` (``[|E|, |A|]`` with an emission) float64 scheme and the
        sender's and receiver's values.

    Raises:
        ValueError: naming the argument, for wrong shapes, a prior that is not a distribution, a
            ``receiver_weight`` outside ``[0, 1]`` or a ``sender_emission`` whose rows are not distributions.
        ValueError: also when no scheme meets ``receiver_margin`` (e.g. two actions that pay the receiver the
            same in every state), naming the margin.
        RuntimeError: with the solver's message if HiGHS fails (without a margin the LP is always feasible and
            bounded, so this signals a numerical problem).

    Examples:
        >>> from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER as RL
        >>> opt = optimal_signaling_scheme(RL["prior"], RL["sender_utility"], RL["receiver_utility"])
        >>> round(opt.sender_value, 6), round(opt.receiver_value, 6)
        (0.666667, 0.0)
        >>> [round(x, 6) for x in opt.scheme[:, 1].tolist()]   # P(recommend hire | weak), (| strong)
        [0.5, 1.0]
    """
    w = _check_receiver_weight(receiver_weight)
    margin = float(receiver_margin)
    if not (math.isfinite(margin) and margin >= 0.0):
        raise ValueError(f"receiver_margin={receiver_margin!r} is invalid: expected a finite margin >= 0.")
    if sender_emission is None:
        p, us, ur, _ = _check_game(prior, sender_utility, receiver_utility)
    else:  # the same LP over what the sender observes; "states" below are its emissions
        p, us, ur = emission_game(prior, sender_utility, receiver_utility, sender_emission)
    p = p.detach().cpu().numpy()
    us = us.detach().cpu().numpy()
    ur = ur.detach().cpu().numpy()
    num_states, num_actions = us.shape

    objective = us if w == 0.0 else (1.0 - w) * us + w * ur  # w = 0: eq. (1) bit for bit
    res = linprog(**_obedience_lp(p, objective, ur, margin), bounds=(0.0, 1.0), method="highs")
    if margin and res.status == 2:
        raise ValueError(
            f"receiver_margin={margin} is infeasible: no scheme leaves the receiver that surplus for every "
            "recommendation it sends. Fix: a smaller receiver_margin."
        )
    if not res.success or res.x is None:
        raise RuntimeError(f"the obedience LP failed (status {res.status}): {res.message}")

    scheme = np.clip(res.x.reshape(num_states, num_actions), 0.0, 1.0) + 0.0  # + 0.0 turns -0.0 into 0.0
    scheme = scheme / scheme.sum(axis=1, keepdims=True)
    joint = p[:, None] * scheme
    return OptimalScheme(
        scheme=torch.as_tensor(scheme, dtype=torch.float64),
        sender_value=float((joint * us).sum()),
        receiver_value=float((joint * ur).sum()),
    )


def _obedience_lp(p: np.ndarray, objective: np.ndarray, ur: np.ndarray, margin: float = 0.0) -> dict[str, np.ndarray]:
    """Eq. (1) as ``linprog``'s arrays over ``x[s * |A| + a] = phi(a | s)``: ``c`` (minimised: minus the objective),
    the obedience rows ``A_ub x <= b_ub``, one per ordered pair ``(a, a')``, ``a != a'``, in row-major order
    (``-sum_s P(s) phi(a|s) [w^j(s,a) - w^j(s,a') - margin] <= 0``), and ``A_eq x = b_eq`` (every ``phi(. | s)``
    sums to 1)."""
    num_states, num_actions = ur.shape
    rows = []
    for a in range(num_actions):
        for a2 in range(num_actions):
            if a2 == a:
                continue
            row = np.zeros((num_states, num_actions))
            row[:, a] = -p * (ur[:, a] - ur[:, a2] - margin)  # x - 0.0 == x: eq. (1) bit for bit without a margin
            rows.append(row.reshape(-1))
    return {
        "c": -(p[:, None] * objective).reshape(-1),
        "A_ub": np.stack(rows),
        "b_ub": np.zeros(len(rows)),
        "A_eq": np.kron(np.eye(num_states), np.ones((1, num_actions))),
        "b_eq": np.ones(num_states),
    }


def obedience_penalty_threshold(
    prior: ArrayLike, sender_utility: ArrayLike, receiver_utility: ArrayLike, *, rtol: float = 1e-6
) -> float:
    """The smallest ``lambda`` for which a hinge per obedience constraint is an exact penalty for eq. (1).

    The penalised problem ``max_phi sum_s P(s) sum_a phi(a|s) w^i(s,a) - lambda sum_{a != a'} (C(a, a'))^-``, with
    ``C(a, a') = sum_s P(s) phi(a|s) [w^j(s,a) - w^j(s,a')]`` (eq. 1's constraints, eq. 7's hinge per pair), has the
    LP's optimal value, and an obedient optimum, exactly when ``lambda`` is at least this threshold: the smallest
    largest shadow price over the LP's optimal dual solutions (the exact-penalty theorem). Below it, the penalised
    optimum breaks an obedience constraint: the sender gains more by sending a state with a recommendation the
    receiver should not follow than the penalty charges. It is large where a state the sender wants recommended
    costs the receiver little to obey (sender gain / receiver loss per unit of probability).

    This is the ``lambda`` (``loss.lagrange_multiplier``) of :class:`~msgzoo.objectives.ObedienceConstraintLoss`
    with ``mode="lagrangian"``, ``counterfactual="all"``, the joint margin at ``epsilon = 0``, and the constraints read
    as obedience to the recommendation (``recommendation_weight=1``, or a receiver that obeys); with weight ``beta``
    on the recommendation and a receiver that has stopped obeying, only ``beta * lambda`` of it acts. Found by bisection
    on the penalised LP (slack variables for the hinges), from the HiGHS dual's largest price (an upper bound).

    Args:
        prior, sender_utility, receiver_utility: the game, as :func:`optimal_signaling_scheme`'s.

    Keyword Args:
        rtol: relative precision of the bisection. Default 1e-6.

    Returns:
        The threshold as a Python float (0 when no obedience constraint binds: the sender's favourite recommendations
        are obeyed anyway).

    Examples:
        >>> from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER as RL
        >>> round(obedience_penalty_threshold(RL["prior"], RL["sender_utility"], RL["receiver_utility"]), 4)
        1.0
    """
    require(isinstance(rtol, float) and 0.0 < rtol < 1.0, "rtol", rtol, "a float in (0, 1)")
    p, us, ur, _ = _check_game(prior, sender_utility, receiver_utility)
    p, us, ur = (t.detach().cpu().numpy() for t in (p, us, ur))
    lp = _obedience_lp(p, us, ur)
    res = linprog(**lp, bounds=(0.0, 1.0), method="highs")
    if not res.success:
        raise RuntimeError(f"the obedience LP failed (status {res.status}): {res.message}")
    optimum = -res.fun
    n, pairs = lp["c"].size, len(lp["A_ub"])
    # the penalised LP over [phi, t]: t[k] >= -C_k (row k of A_ub times phi) and t >= 0; objective sender + lambda sum t
    a_pen = np.hstack([lp["A_ub"], -np.eye(pairs)])
    a_eq_pen = np.hstack([lp["A_eq"], np.zeros((len(lp["A_eq"]), pairs))])
    bounds = [(0.0, 1.0)] * n + [(0.0, None)] * pairs
    tol = 1e-7 * max(1.0, abs(optimum))  # above HiGHS's default feasibility tolerance

    def exact(lam: float) -> bool:
        pen = linprog(np.concatenate([lp["c"], np.full(pairs, lam)]), A_ub=a_pen, b_ub=lp["b_ub"], A_eq=a_eq_pen,
                      b_eq=lp["b_eq"], bounds=bounds, method="highs")
        if not pen.success:
            raise RuntimeError(f"the penalised obedience LP failed (status {pen.status}): {pen.message}")
        return -pen.fun <= optimum + tol

    if exact(0.0):
        return 0.0
    hi = max(float(np.max(-res.ineqlin.marginals)), 1e-12) * (1.0 + rtol)
    for _ in range(64):  # the solver's dual is an upper bound up to its tolerance
        if exact(hi):
            break
        hi *= 2.0
    else:
        raise RuntimeError("no penalty up to 2^64 times the LP's largest shadow price was exact: a numerical problem "
                           "in the solver (check the game's payoffs for extreme values).")
    lo = 0.0
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if exact(mid) else (mid, hi)
    return hi


def _best_response(receiver_payoffs: np.ndarray, sender_payoffs: np.ndarray, scale: float) -> int:
    """The receiver's best action; among (near-)ties, the one the sender likes best."""
    best = receiver_payoffs.max()
    ties = np.flatnonzero(receiver_payoffs >= best - TIE_RTOL * scale)
    return int(ties[np.argmax(sender_payoffs[ties])])


def no_information_value(
    prior: ArrayLike, sender_utility: ArrayLike, receiver_utility: ArrayLike, *, receiver_weight: float = 0.0
) -> tuple[float, float]:
    """Payoffs when the sender reveals nothing: the receiver best-responds to the prior alone.

    ``a* = argmax_a sum_s P(s) w^j(s, a)`` (ties broken in the sender's favour); returns
    ``(sum_s P(s) w^i(s, a*), sum_s P(s) w^j(s, a*))``. This is the value of every uninformative scheme
    (e.g. the trivial "babbling" equilibrium the paper discusses in Section 4.3) and is feasible in the LP
    of eq. (1) (always recommend ``a*``), so it never exceeds :func:`optimal_signaling_scheme`'s value.

    Args:
        prior: ``[|S|]`` state probabilities.
        sender_utility: ``[|S|, |A|]`` sender payoff.
        receiver_utility: ``[|S|, |A|]`` receiver payoff.

    Keyword Args:
        receiver_weight: ``w`` of a prosocial sender (see :func:`optimal_signaling_scheme`): ties are broken in
            favour of its objective ``(1 - w) w^i + w w^j``; default 0.

    Returns:
        ``(sender_value, receiver_value)`` as Python floats.

    Raises:
        ValueError: naming the argument, for wrong shapes or a prior that is not a distribution.

    Examples:
        >>> from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER as RL
        >>> no_information_value(RL["prior"], RL["sender_utility"], RL["receiver_utility"])
        (0.0, 0.0)
    """
    w = _check_receiver_weight(receiver_weight)
    p, us, ur, _ = _check_game(prior, sender_utility, receiver_utility)
    p, us, ur = (t.detach().cpu().numpy() for t in (p, us, ur))
    r, s = p @ ur, p @ us
    a = _best_response(r, (1.0 - w) * s + w * r, max(1.0, float(np.abs(ur).max())))
    return float(s[a]), float(r[a])


def full_information_value(
    prior: ArrayLike,
    sender_utility: ArrayLike,
    receiver_utility: ArrayLike,
    *,
    receiver_weight: float = 0.0,
    sender_emission: ArrayLike | None = None,
) -> tuple[float, float]:
    """Payoffs of the honest (fully revealing) scheme: the receiver best-responds to each state.

    ``a*(s) = argmax_a w^j(s, a)`` (ties broken in the sender's favour); returns
    ``(sum_s P(s) w^i(s, a*(s)), sum_s P(s) w^j(s, a*(s)))``. The honest scheme "recommend ``a*(s)``" is
    feasible in the LP of eq. (1), so its sender value never exceeds the LP optimum; its receiver value is the
    most the receiver can get.

    Args:
        prior: ``[|S|]`` state probabilities.
        sender_utility: ``[|S|, |A|]`` sender payoff.
        receiver_utility: ``[|S|, |A|]`` receiver payoff.

    Keyword Args:
        receiver_weight: ``w`` of a prosocial sender (see :func:`optimal_signaling_scheme`): ties are broken in
            favour of its objective ``(1 - w) w^i + w w^j``; default 0.
        sender_emission: ``[|S|, |E|]`` emission matrix of a partial-sighted sender: it reveals what it sees,
            ``e``, and the receiver best-responds to ``P(s | e)`` (:func:`emission_game`); default None.

    Returns:
        ``(sender_value, receiver_value)`` as Python floats.

    Raises:
        ValueError: naming the argument, for wrong shapes or a prior that is not a distribution.

    Examples:
        >>> from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER as RL
        >>> s, r = full_information_value(RL["prior"], RL["sender_utility"], RL["receiver_utility"])
        >>> round(s, 6), round(r, 6)
        (0.333333, 0.333333)
    """
    w = _check_receiver_weight(receiver_weight)
    if sender_emission is None:
        p, us, ur, _ = _check_game(prior, sender_utility, receiver_utility)
    else:
        p, us, ur = emission_game(prior, sender_utility, receiver_utility, sender_emission)
    p, us, ur = (t.detach().cpu().numpy() for t in (p, us, ur))
    scale = max(1.0, float(np.abs(ur).max()))
    sender = receiver = 0.0
    for s in range(p.shape[0]):
        a = _best_response(ur[s], (1.0 - w) * us[s] + w * ur[s], scale)
        sender += float(p[s] * us[s, a])
        receiver += float(p[s] * ur[s, a])
    return sender, receiver


def state_occupancy(prior: ArrayLike, transition: ArrayLike, horizon: int) -> torch.Tensor:
    """The average state distribution of a ``horizon``-step episode of a Markov chain that no action changes.

    ``d = (1/T) sum_{t<T} p_0 P^t`` with ``p_0 = prior``, ``P = transition`` and ``T = horizon``: the prior of the
    exact per-step optimum of a Markov persuasion game (the LP of eq. (1) on ``d``; see the module docstring for
    why), and the distribution of the states an on-policy learner samples from whole episodes.

    Args:
        prior: ``[|S|]`` distribution of the first state.
        transition: ``[|S|, |S|]`` row-stochastic matrix, ``transition[s, s'] = P(s' | s)``.
        horizon: steps per episode, an integer >= 1 (1 gives ``prior``).

    Returns:
        ``[|S|]`` float64 tensor on the inputs' device (CPU for lists / arrays).

    Raises:
        ValueError: naming ``prior``, ``transition`` or ``horizon`` when it is not a distribution, a row-stochastic
            ``[|S|, |S|]`` matrix of finite numbers, or an integer >= 1.

    Examples:
        >>> state_occupancy([1.0, 0.0], [[0.0, 1.0], [1.0, 0.0]], 3).tolist()   # s0, s1, s0
        [0.6666666666666666, 0.3333333333333333]
        >>> state_occupancy([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], 10).tolist()  # a stationary start stays put
        [0.5, 0.5]
    """
    device = _device_of(prior, transition)
    p = _check_prior(prior, device)
    n = p.numel()
    m = _check_stochastic(transition, "transition", device, rows=n, cols=n, what=" transition[s, s'] = P(s' | s)")
    require(is_int(horizon) and horizon >= 1, "horizon", horizon, "an integer >= 1 (steps per episode)")
    total, p_t = torch.zeros_like(p), p
    for _ in range(int(horizon)):  # T vector-matrix products: horizons are short
        total = total + p_t
        p_t = p_t @ m
    return total / int(horizon)


@dataclass(frozen=True, eq=False)
class ActingSenderScheme:
    """Solution of the obedience LP of a sender that also acts (:func:`optimal_acting_sender_scheme`).

    Attributes:
        joint: ``[|S|, |B|, |A|]`` float64 CPU tensor, ``joint[s, b, a] = P(sender plays b, recommends a | s)``.
        sender_value, receiver_value: the players' payoffs under it (an obedient receiver).
    """

    joint: torch.Tensor
    sender_value: float
    receiver_value: float


def optimal_acting_sender_scheme(
    prior: ArrayLike, sender_utility: ArrayLike, receiver_utility: ArrayLike
) -> ActingSenderScheme:
    """Eq. (1) for a sender that also takes an environmental action ``b`` (the paper's Section 3 extension).

    Payoffs ``w^k(s, b, a)`` depend on the state, the sender's action and the receiver's; the receiver sees only
    the message. By the revelation principle the sender draws its action and a recommendation together,
    ``x(b, a | s)``, and the LP is

    ``max sum_s P(s) sum_{b,a} x(b,a|s) w^i(s,b,a)``  s.t.
    ``sum_{s,b} P(s) x(b,a|s) [w^j(s,b,a) - w^j(s,b,a')] >= 0`` for all ``a != a'``, ``x(.|s)`` a distribution:

    eq. (1) over the pairs ``(s, b)`` whose second half the sender chooses. Ties go to the sender, as in eq. (1).

    Args:
        prior: ``[|S|]`` state probabilities.
        sender_utility, receiver_utility: ``[|S|, |B|, |A|]`` payoffs.

    Returns:
        :class:`ActingSenderScheme`.

    Raises:
        ValueError: naming the argument, for wrong shapes or a prior that is not a distribution.

    Examples:
        >>> from msgzoo.envs.persuasion_games import COACHING_LETTER as G
        >>> opt = optimal_acting_sender_scheme(G["prior"], G["sender_utility"], G["receiver_utility"])
        >>> round(opt.sender_value, 6), round(opt.receiver_value, 6)
        (0.777778, 0.0)
    """
    p = _check_prior(prior, torch.device("cpu")).numpy()
    us = _as_float64(sender_utility, "sender_utility", torch.device("cpu")).numpy()
    ur = _as_float64(receiver_utility, "receiver_utility", torch.device("cpu")).numpy()
    if us.ndim != 3 or us.shape[0] != p.shape[0] or us.shape[1] < 1 or us.shape[2] < 2:
        raise ValueError(f"sender_utility has shape {list(us.shape)}: expected [|S|={p.shape[0]}, |B|, |A|>=2] "
                         "(state, sender action, receiver action).")
    if ur.shape != us.shape:
        raise ValueError(f"receiver_utility has shape {list(ur.shape)}: expected {list(us.shape)} (sender_utility's).")
    num_states, num_b, num_a = us.shape
    n = num_states * num_b * num_a  # x[(s * |B| + b) * |A| + a]
    rows = []
    for a in range(num_a):
        for a2 in range(num_a):
            if a2 != a:
                row = np.zeros((num_states, num_b, num_a))
                row[:, :, a] = -p[:, None] * (ur[:, :, a] - ur[:, :, a2])
                rows.append(row.reshape(n))
    a_eq = np.kron(np.eye(num_states), np.ones((1, num_b * num_a)))
    res = linprog(
        -(p[:, None, None] * us).reshape(n), A_ub=np.stack(rows), b_ub=np.zeros(len(rows)), A_eq=a_eq,
        b_eq=np.ones(num_states), bounds=(0.0, 1.0), method="highs",
    )
    if not res.success or res.x is None:
        raise RuntimeError(f"the obedience LP failed (status {res.status}): {res.message}")
    x = np.clip(res.x.reshape(num_states, num_b, num_a), 0.0, 1.0) + 0.0
    x = x / x.sum(axis=(1, 2), keepdims=True)
    joint = p[:, None, None] * x
    return ActingSenderScheme(
        joint=torch.as_tensor(x, dtype=torch.float64),
        sender_value=float((joint * us).sum()),
        receiver_value=float((joint * ur).sum()),
    )
