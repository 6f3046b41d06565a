"""Exact (sampling-free) payoffs of one-step signaling games, and tabulation of learned policies.

In a one-step Markov signaling game (Bayesian persuasion) a state ``s ~ P`` is drawn, the sender
sends a message ``sigma ~ phi(. | s)`` and the receiver, who sees only ``sigma``, acts with
``a ~ pi(. | sigma)``. The expected payoff of player ``k`` (sender ``i`` or receiver ``j``) is

.. math::

    V^k(\\varphi, \\pi) = \\sum_s P(s) \\sum_\\sigma \\varphi(\\sigma \\mid s) \\sum_a \\pi(a \\mid \\sigma)\\, w^k(s, a),

which is the objective of the paper's eq. (1) when ``pi`` obeys the recommendation. This module computes
it exactly (:func:`exact_payoffs`) and turns the networks of a trained agent into the tables ``phi`` and
``pi`` (:func:`tabulate_one_step_policies`), so that evaluation needs no Monte-Carlo noise.

Conventions shared by :mod:`msgzoo.game_theory.exact_payoffs`, :mod:`msgzoo.game_theory.optimal_scheme` and
:mod:`msgzoo.game_theory.metrics`:

- states are rows and receiver actions columns of the utility matrices ``[|S|, |A|]``;
- ``phi`` is ``[|S|, K]`` with ``phi[s, sigma] = phi(sigma | s)``; ``pi`` is ``[K, |A|]`` with
  ``pi[sigma, a] = pi(a | sigma)``;
- inputs may be torch tensors, numpy arrays or nested lists; they are converted to ``torch.float64`` on
  the device of the first tensor argument (CPU otherwise); scalar results are plain Python floats.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from tensordict import TensorDict

from msgzoo.envs.common import require

__all__ = ["exact_payoffs", "tabulate_one_step_policies"]

#: Absolute tolerance on "sums to one" for the prior and for the rows of ``phi`` / ``pi``; loose enough for
#: float32 softmax outputs.
PROBABILITY_ATOL = 1e-5

NestedKey = str | tuple[str, ...]


# ---------------------------------------------------------------------------------------------------------
# Argument checks (shared by the exact-evaluation modules; private).
# ---------------------------------------------------------------------------------------------------------


def _device_of(*values: Any) -> torch.device:
    """The device of the first torch tensor among ``values``; CPU if there is none."""
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")


def _as_float64(value: Any, name: str, device: torch.device) -> torch.Tensor:
    """``value`` as a finite float64 tensor on ``device`` (keeps the autograd graph of a tensor input)."""
    try:
        if isinstance(value, torch.Tensor):
            out = value.to(device=device, dtype=torch.float64)
        else:
            out = torch.as_tensor(np.asarray(value, dtype=np.float64), device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name}={value!r} is invalid: expected an array of numbers ({err}).") from None
    require(bool(torch.isfinite(out).all()), name, value, "finite numbers (no NaN or inf)")
    return out


def _require_shape(condition: bool, name: str, t: torch.Tensor, expected: str) -> None:
    """Raise a ``ValueError`` naming the argument and its wrong shape."""
    if not condition:
        raise ValueError(f"{name} has shape {list(t.shape)}: expected {expected}.")


def _check_prior(prior: Any, device: torch.device) -> torch.Tensor:
    """A 1-d probability vector over at least two states."""
    p = _as_float64(prior, "prior", device)
    _require_shape(p.ndim == 1 and p.numel() >= 2, "prior", p, "a 1-d vector of at least 2 state probabilities")
    require(
        bool((p >= 0).all()) and abs(float(p.sum()) - 1.0) <= PROBABILITY_ATOL,
        "prior", p.tolist(), "non-negative probabilities that sum to 1",
    )
    return p


def _check_utility(u: Any, name: str, num_states: int, device: torch.device, num_actions: int | None = None) -> torch.Tensor:
    """A ``[num_states, |A|]`` utility matrix (``|A| >= 2``, or exactly ``num_actions`` when given)."""
    m = _as_float64(u, name, device)
    if num_actions is None:
        ok = m.ndim == 2 and m.shape[0] == num_states and m.shape[1] >= 2
        expected = f"a [|S|={num_states}, |A|>=2] matrix (one row per state of the prior)"
    else:
        ok = m.ndim == 2 and tuple(m.shape) == (num_states, num_actions)
        expected = f"a [|S|={num_states}, |A|={num_actions}] matrix (the shape of sender_utility)"
    _require_shape(ok, name, m, expected)
    return m


def _check_stochastic(
    m: Any, name: str, device: torch.device, rows: int | None = None, cols: int | None = None, what: str = ""
) -> torch.Tensor:
    """A row-stochastic matrix: every row a probability distribution (within :data:`PROBABILITY_ATOL`)."""
    t = _as_float64(m, name, device)
    shape_ok = t.ndim == 2 and (rows is None or t.shape[0] == rows) and (cols is None or t.shape[1] == cols)
    r = "rows" if rows is None else str(rows)
    c = "cols" if cols is None else str(cols)
    _require_shape(shape_ok and t.shape[1] >= 1, name, t, f"a [{r}, {c}] matrix{what}")
    require(
        bool((t >= -1e-12).all()) and bool(((t.sum(-1) - 1.0).abs() <= PROBABILITY_ATOL).all()),
        name, t.tolist(), "rows that are probability distributions (non-negative, summing to 1)",
    )
    return t


def _check_emission(sender_emission: Any, num_states: int, device: torch.device) -> torch.Tensor:
    """A partial-sighted sender's ``[|S|, |E|]`` emission matrix ``E(e | s)``."""
    return _check_stochastic(
        sender_emission, "sender_emission", device, rows=num_states,
        what=" sender_emission[s, e] = E(e | s), one row per state of the prior",
    )


def _check_game(prior: Any, sender_utility: Any, receiver_utility: Any, *more: Any):
    """Validate ``(prior, sender_utility, receiver_utility)``; returns the tensors and their device."""
    device = _device_of(prior, sender_utility, receiver_utility, *more)
    p = _check_prior(prior, device)
    us = _check_utility(sender_utility, "sender_utility", p.numel(), device)
    ur = _check_utility(receiver_utility, "receiver_utility", p.numel(), device, num_actions=us.shape[1])
    return p, us, ur, device


def _check_policies(phi: Any, pi: Any, num_states: int, num_actions: int, device: torch.device):
    """Validate ``phi`` ``[|S|, K]`` and ``pi`` ``[K, |A|]``."""
    f = _check_stochastic(phi, "phi", device, rows=num_states, what=" phi[s, sigma] = phi(sigma | s), one row per state")
    g = _check_stochastic(
        pi, "pi", device, rows=f.shape[1], cols=num_actions,
        what=" pi[sigma, a] = pi(a | sigma), one row per message of phi and one column per action",
    )
    return f, g


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


def exact_payoffs(
    prior: Sequence[float] | np.ndarray | torch.Tensor,
    sender_utility: Sequence[Sequence[float]] | np.ndarray | torch.Tensor,
    receiver_utility: Sequence[Sequence[float]] | np.ndarray | torch.Tensor,
    phi: Sequence[Sequence[float]] | np.ndarray | torch.Tensor,
    pi: Sequence[Sequence[float]] | np.ndarray | torch.Tensor,
    *,
    sender_emission: Sequence[Sequence[float]] | np.ndarray | torch.Tensor | None = None,
) -> tuple[float, float]:
    """Exact expected payoffs of a one-step signaling game under ``(phi, pi)``, without sampling.

    .. math::

        V^i = \\sum_s P(s) \\sum_\\sigma \\varphi(\\sigma\\mid s) \\sum_a \\pi(a\\mid\\sigma)\\, w^i(s,a),
        \\qquad
        V^j = \\sum_s P(s) \\sum_\\sigma \\varphi(\\sigma\\mid s) \\sum_a \\pi(a\\mid\\sigma)\\, w^j(s,a),

    the objective of the paper's eq. (1) (for a general receiver policy rather than an obedient one).

    Args:
        prior: ``[|S|]`` state probabilities.
        sender_utility: ``[|S|, |A|]`` sender payoff ``w^i(s, a)``.
        receiver_utility: ``[|S|, |A|]`` receiver payoff ``w^j(s, a)``.
        phi: ``[|S|, K]`` signaling scheme, ``phi[s, sigma] = phi(sigma | s)``; rows are distributions.
        pi: ``[K, |A|]`` receiver policy, ``pi[sigma, a] = pi(a | sigma)``; rows are distributions.

    Keyword Args:
        sender_emission: ``[|S|, |E|]`` row-stochastic ``E(e | s)`` of a partial-sighted sender, whose ``phi`` is
            then ``[|E|, K]``, ``phi[e, sigma] = phi(sigma | e)``: the payoffs are over the joint
            ``P(s, e) = P(s) E(e | s)``, i.e. of the scheme ``sum_e E(e | s) phi(sigma | e)``. Default None (the
            sender sees the state).

    Returns:
        ``(sender_value, receiver_value)`` as Python floats (computed in float64).

    Raises:
        ValueError: naming the argument, for a wrong shape, a prior that is not a distribution or rows of
            ``phi`` / ``pi`` that are not distributions.

    Examples:
        >>> from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER as RL
        >>> honest = [[1.0, 0.0], [0.0, 1.0]]          # weak -> signal 0, strong -> signal 1
        >>> follow = [[1.0, 0.0], [0.0, 1.0]]          # hire on signal 1 only
        >>> s, r = exact_payoffs(RL["prior"], RL["sender_utility"], RL["receiver_utility"], honest, follow)
        >>> round(s, 6), round(r, 6)
        (0.333333, 0.333333)
    """
    p, us, ur, device = _check_game(prior, sender_utility, receiver_utility, phi, pi, sender_emission)
    if sender_emission is None:
        f, g = _check_policies(phi, pi, p.numel(), us.shape[1], device)
    else:
        e = _check_emission(sender_emission, p.numel(), device)
        f, g = _check_policies(phi, pi, e.shape[1], us.shape[1], device)
        f = e @ f  # phi(sigma | s) = sum_e E(e | s) phi(sigma | e)
    # joint[s, a] = P(s) * sum_sigma phi(sigma|s) pi(a|sigma)
    joint = p[:, None] * (f @ g)
    return float((joint * us).sum()), float((joint * ur).sum())


def _infer_dtype(module: torch.nn.Module, default: torch.dtype = torch.float32) -> torch.dtype:
    for param in module.parameters():
        if param.is_floating_point():
            return param.dtype
    return default


def _get_logits(td: TensorDict, key: NestedKey, module_name: str, rows: int, cols: int | None) -> torch.Tensor:
    try:
        logits = td.get(key)
    except KeyError:
        logits = None
    if logits is None:
        raise ValueError(f"{module_name} did not write the key {key!r}: it must output logits under that key.")
    ok = logits.ndim == 2 and logits.shape[0] == rows and (cols is None or logits.shape[1] == cols)
    want = f"[{rows}, {'K' if cols is None else cols}]"
    require(ok, module_name, f"<module writing {key!r} of shape {list(logits.shape)}>", f"logits of shape {want}")
    return logits


def tabulate_one_step_policies(
    scheme: torch.nn.Module,
    receiver: torch.nn.Module,
    num_states: int,
    num_messages: int,
    device: torch.device | str = "cpu",
    *,
    dtype: torch.dtype | None = None,
    sender_observation_key: NestedKey = ("sender", "observation"),
    receiver_observation_key: NestedKey = ("receiver", "observation"),
    message_key: NestedKey = ("sender", "message"),
    scheme_logits_key: NestedKey = ("sender", "logits"),
    receiver_logits_key: NestedKey = ("receiver", "logits"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tabulate the signaling scheme ``phi`` and receiver policy ``pi`` of one-step networks.

    The sender network is run on every state at once: a ``TensorDict`` with batch ``[num_states]`` holding
    ``sender_observation_key = eye(num_states)`` (one-hot states, as in
    :class:`~msgzoo.envs.bayesian_persuasion.BayesianPersuasionEnv`) and an empty receiver observation
    ``[num_states, 0]``; ``phi = softmax(logits)`` of what ``scheme`` writes under ``scheme_logits_key``.
    The receiver network is run on every message: batch ``[num_messages]`` with an empty receiver
    observation and ``message_key = eye(num_messages)``; ``pi = softmax(logits)`` of
    ``receiver_logits_key``. Everything runs under ``torch.no_grad()``.

    The two tables plug into :func:`exact_payoffs` and :mod:`msgzoo.game_theory.metrics`, giving the exact payoffs
    of the learned policies, e.g. ``V^i = sum_s P(s) sum_sigma phi(sigma|s) sum_a pi(a|sigma) w^i(s,a)``.

    Args:
        scheme: a ``TensorDictModule`` (or any callable on a ``TensorDict``) writing sender logits ``[.., K]``.
        receiver: a ``TensorDictModule`` writing receiver logits ``[.., |A|]``.
        num_states: ``|S|``.
        num_messages: ``K``, the size of the message space.
        device: where the inputs are built (the modules' device).

    Keyword Args:
        dtype: dtype of the one-hot inputs; default: the dtype of each module's first floating parameter
            (float32 if it has none), so float64 networks work as is.
        sender_observation_key, receiver_observation_key, message_key: input keys.
        scheme_logits_key, receiver_logits_key: output keys.

    Returns:
        ``(phi, pi)``: ``phi`` ``[num_states, num_messages]`` with ``phi[s, sigma] = phi(sigma | s)`` and
        ``pi`` ``[num_messages, |A|]`` with ``pi[sigma, a] = pi(a | sigma)``, float64 tensors on ``device``.

    Raises:
        ValueError: naming the argument, for non-positive sizes or modules whose logits have the wrong shape.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict.nn import TensorDictModule
        >>> class Receiver(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.linear = nn.Linear(2, 2, bias=False)
        ...     def forward(self, observation, message):
        ...         return self.linear(torch.cat([observation, message], -1))
        >>> scheme = TensorDictModule(nn.Linear(2, 2, bias=False), in_keys=[("sender", "observation")],
        ...                           out_keys=[("sender", "logits")])
        >>> receiver = TensorDictModule(Receiver(), in_keys=[("receiver", "observation"), ("sender", "message")],
        ...                             out_keys=[("receiver", "logits")])
        >>> phi, pi = tabulate_one_step_policies(scheme, receiver, num_states=2, num_messages=2)
        >>> phi.shape, pi.shape, phi.dtype
        (torch.Size([2, 2]), torch.Size([2, 2]), torch.float64)
    """
    require(isinstance(num_states, int) and num_states >= 1, "num_states", num_states, "a positive integer")
    require(isinstance(num_messages, int) and num_messages >= 1, "num_messages", num_messages, "a positive integer")
    require(callable(scheme), "scheme", scheme, "a TensorDictModule writing the sender's logits")
    require(callable(receiver), "receiver", receiver, "a TensorDictModule writing the receiver's logits")
    device = torch.device(device)

    def dtype_for(module: Any) -> torch.dtype:
        if dtype is not None:
            return dtype
        return _infer_dtype(module) if isinstance(module, torch.nn.Module) else torch.float32

    with torch.no_grad():
        dt = dtype_for(scheme)
        td = TensorDict(batch_size=[num_states], device=device)
        td.set(sender_observation_key, torch.eye(num_states, device=device, dtype=dt))
        td.set(receiver_observation_key, torch.empty(num_states, 0, device=device, dtype=dt))
        out = scheme(td)
        out = td if out is None else out
        logits = _get_logits(out, scheme_logits_key, "scheme", num_states, num_messages)
        phi = torch.softmax(logits.to(torch.float64), dim=-1)

        dt = dtype_for(receiver)
        td = TensorDict(batch_size=[num_messages], device=device)
        td.set(receiver_observation_key, torch.empty(num_messages, 0, device=device, dtype=dt))
        td.set(message_key, torch.eye(num_messages, device=device, dtype=dt))
        out = receiver(td)
        out = td if out is None else out
        logits = _get_logits(out, receiver_logits_key, "receiver", num_messages, None)
        pi = torch.softmax(logits.to(torch.float64), dim=-1)
    return phi.to(device), pi.to(device)
