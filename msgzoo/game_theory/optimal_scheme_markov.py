"""The sender's optimal signaling in a finite-horizon Markov signaling game: a linear program over occupancies.

The one-step obedience LP (:mod:`msgzoo.game_theory.optimal_scheme`, the paper's eq. 1) extends to a Markov
signaling game of horizon ``T`` once the receiver is **myopic** (it best-responds to the immediate reward) and
**blind to the time step**. By the revelation principle the sender recommends an action; its scheme is a
time-dependent policy
``phi_t(a | s)`` over the full state ``s`` it sees, and the obedient receiver plays the recommendation, so the pair
is one Markov policy of the environment with occupancy ``x_t(s, a) = P(s_t = s, a_t = a)``. Everything is linear
in ``x``:

.. math::

    \\max_{x \\ge 0} \\; \\sum_{t,s,a} x_t(s,a)\\, r^i(s,a)
    \\quad\\text{s.t.}\\quad
    \\sum_a x_0(s,a) = \\mu(s), \\qquad
    \\sum_a x_{t+1}(s',a) = \\sum_{s,a} P(s' \\mid s,a)\\, x_t(s,a),

    \\sum_t \\sum_{s:\\, g(s) = o} x_t(s,a)\\, [r^j(s,a) - r^j(s,a')] \\ge 0 \\quad \\forall o, a \\ne a'.

The last family is obedience, aggregated over the states the receiver cannot tell apart (same observation
``g(s) = o``) and over the time steps (it cannot tell them apart either): a receiver whose rule is "at observation
``o`` and recommendation ``a`` play ``a'``" changes its summed immediate reward by minus the left-hand side, while
the states it will visit are held fixed (that is what myopic means). The optimum is an **upper bound** on what a
sender can get from such a receiver: the LP lets the sender condition on ``t`` (msgzoo's sender sees the state
only) and breaks the receiver's ties in the sender's favour (the LP convention of
:mod:`msgzoo.game_theory.optimal_scheme`).
``receiver_knows_time=True`` imposes obedience at every ``t`` separately instead (a receiver that sees the clock:
fewer schemes are obedient, the value can only fall).

:func:`reaching_goals_game` tabulates :class:`~msgzoo.envs.ReachingGoalsEnv` exactly (states, reset distribution,
transitions including the apples' respawn, rewards, what the receiver observes); :func:`optimal_markov_scheme`
solves the LP exactly, by column generation over deterministic schemes (default), by backward induction when the
receiver's reward is known from its observation, or directly with ``scipy.optimize.linprog`` (HiGHS, sparse);
:func:`evaluate_markov_scheme` gives any scheme's exact values and obedience slacks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from msgzoo.envs.common import require
from msgzoo.envs.reaching_goals import MOVES, RECEIVER_ITEMS, ReachingGoalsEnv

__all__ = [
    "TabularMarkovGame",
    "MarkovOptimum",
    "reaching_goals_game",
    "reaching_goals_game_of",
    "optimal_markov_scheme",
    "lp_size",
    "evaluate_markov_scheme",
]

#: Default bound on the LP's constraint-matrix nonzeros (about 1-2 GB for HiGHS); larger LPs are refused.
MAX_NONZEROS = 5_000_000
#: The master LP asks obedience up to this (rows scaled to max 1): a strictly feasible start keeps HiGHS stable.
MASTER_SLACK = 1e-9
#: Methods of :func:`optimal_markov_scheme`.
METHODS = ("auto", "column_generation", "occupancy")
#: Receiver rewards closer than this (relative to max(1, max |r^j|)) count as a tie.
TIE_RTOL = 1e-9
#: Weight of the best multipliers so far in column generation's smoothed pricing (Wentges, 1997).
SMOOTHING = 0.5


@dataclass(frozen=True, eq=False)
class TabularMarkovGame:
    """A finite-horizon Markov signaling game in tables (states ``S``, receiver actions ``A``).

    Attributes:
        initial: ``[S]`` reset distribution ``mu(s)``.
        transition: ``[S * A, S]`` sparse matrix, row ``s * A + a`` is ``P(. | s, a)``.
        sender_reward: ``[S, A]`` expected reward ``r^i(s, a)`` of the sender for the step from ``s`` with ``a``.
        receiver_reward: ``[S, A]`` the receiver's, ``r^j(s, a)``.
        observation: ``[S]`` int, the receiver's observation ``g(s)`` as an id in ``0 .. O-1``.
        horizon: episode length ``T`` (steps).
        states: ``[S, k]`` int, a readable description of each state (for Reaching Goals: the cells of the
            receiver, the red apple and the green apple).
    """

    initial: np.ndarray
    transition: sp.csr_matrix
    sender_reward: np.ndarray
    receiver_reward: np.ndarray
    observation: np.ndarray
    horizon: int
    states: np.ndarray | None = None

    @property
    def num_states(self) -> int:
        return self.sender_reward.shape[0]

    @property
    def num_actions(self) -> int:
        return self.sender_reward.shape[1]

    def check(self) -> None:
        """Fails with a message naming the field if the tables are inconsistent."""
        s, a = self.sender_reward.shape
        require(self.receiver_reward.shape == (s, a), "receiver_reward", self.receiver_reward.shape, f"shape {(s, a)}")
        require(self.initial.shape == (s,), "initial", self.initial.shape, f"shape {(s,)}")
        require(bool(np.all(self.initial >= 0)) and abs(self.initial.sum() - 1) < 1e-9, "initial",
                "(not a distribution)", "non-negative entries summing to 1")
        require(self.transition.shape == (s * a, s), "transition", self.transition.shape, f"shape {(s * a, s)}")
        rows = np.asarray(self.transition.sum(axis=1)).ravel()
        require(bool(np.allclose(rows, 1.0)) and self.transition.min() >= 0, "transition", "(rows not distributions)",
                "non-negative rows summing to 1")
        require(self.observation.shape == (s,) and np.issubdtype(self.observation.dtype, np.integer)
                and self.observation.min() >= 0, "observation", self.observation.shape, f"{s} non-negative integer ids")
        require(isinstance(self.horizon, int) and self.horizon >= 1, "horizon", self.horizon, "an integer >= 1")


@dataclass(frozen=True, eq=False)
class MarkovOptimum:
    """Solution of the occupancy LP.

    Attributes:
        sender_value: the optimum, the sender's expected return per episode (sum over the ``T`` steps).
        receiver_value: the receiver's expected return per episode under the solver's optimal occupancy (the
            sender's optimum need not be unique, so neither is this value).
        occupancy: ``[T, S, A]`` float64, ``x_t(s, a)``.
        policy: ``[T, S, A]`` float64, the recommendation scheme ``phi_t(a | s) = x_t(s, a) / sum_a x_t(s, a)``
            (uniform where ``s`` is unreachable at ``t``).
        method: the method that solved it (see :func:`optimal_markov_scheme`).
        iterations: column generation's iterations (1 for the direct LP).
    """

    sender_value: float
    receiver_value: float
    occupancy: np.ndarray
    policy: np.ndarray
    method: str
    iterations: int


# --------------------------------------------------------------------------------------------- Reaching Goals


def reaching_goals_game(
    *,
    height: int = 3,
    width: int = 3,
    horizon: int = 50,
    reward_amplifier: float = 20.0,
    punish_amplifier: float = 5.0,
    bounded: bool = True,
    aligned: bool = False,
    receiver_observes: Sequence[str] | str = ("position",),
) -> TabularMarkovGame:
    """:class:`~msgzoo.envs.ReachingGoalsEnv` with these settings (same keywords and defaults), in tables.

    A state is what the sender sees, ``(receiver cell p, red apple r, green apple g)``; reachable states have
    ``r != p`` and ``g != p`` (an apple the receiver reaches respawns elsewhere) and, with ``aligned``, ``r == g``.
    The env's rules, exactly: at reset ``p`` is uniform and each apple uniform over the other cells (independently,
    or one draw for both when aligned); a step moves the receiver by the action (``MOVES``; walls or a torus), pays
    each agent for its apple from the new cell ``p'`` (``reward_amplifier`` on it, else ``-punish_amplifier * d /
    sqrt(2)`` with ``d`` the plain normalised distance) and respawns a reached apple uniformly on the cells other
    than ``p'``. The receiver's observation ``g(s)``: ``[]`` one id for all states (it sees the message only),
    ``[position]`` ``p``, ``[position, goal]`` ``(p, g)``.

    Example:
        >>> game = reaching_goals_game(height=2, width=2, horizon=3)
        >>> game.num_states, game.num_actions, int(game.observation.max()) + 1
        (36, 4, 4)
    """
    # The env validates every argument (and raises naming the field); the tables come from its own lookups.
    env = ReachingGoalsEnv(height=height, width=width, horizon=horizon, reward_amplifier=reward_amplifier,
                           punish_amplifier=punish_amplifier, bounded=bounded, aligned=aligned,
                           receiver_observes=receiver_observes, num_envs=1)
    return reaching_goals_game_of(env)


def reaching_goals_game_of(env: ReachingGoalsEnv) -> TabularMarkovGame:
    """The tables of an existing :class:`~msgzoo.envs.ReachingGoalsEnv` (its map, amplifiers and observation)."""
    require(isinstance(env, ReachingGoalsEnv), "env", type(env).__name__, "a ReachingGoalsEnv")
    n, h, w = env.num_cells, env.height, env.width
    num_actions = len(MOVES)
    # The env's rules recomputed in float64 from its documented settings (a test steps the env against them).
    rows, cols = np.divmod(np.arange(n), w)
    move = np.empty((n, num_actions), dtype=np.int64)  # next cell per (cell, action)
    for a, (dr, dc) in enumerate(MOVES):
        r_, c_ = rows + dr, cols + dc
        if env.bounded:
            inside = (r_ >= 0) & (r_ < h) & (c_ >= 0) & (c_ < w)
            r_, c_ = np.where(inside, r_, rows), np.where(inside, c_, cols)
        move[:, a] = (r_ % h) * w + c_ % w
    dist = np.sqrt(((rows[:, None] - rows[None, :]) / (h - 1)) ** 2 + ((cols[:, None] - cols[None, :]) / (w - 1)) ** 2)
    pay64 = -env.punish_amplifier * dist / math.sqrt(2.0)  # pay per (receiver cell, apple cell)
    np.fill_diagonal(pay64, env.reward_amplifier)

    cells = np.arange(n)
    p, r, g = (x.ravel() for x in np.meshgrid(cells, cells, cells, indexing="ij"))
    keep = (r != p) & (g != p) & ((r == g) if env.aligned else True)
    states = np.stack([p[keep], r[keep], g[keep]], axis=1)
    num_states = len(states)
    index = np.full(n**3, -1, dtype=np.int64)
    index[(states[:, 0] * n + states[:, 1]) * n + states[:, 2]] = np.arange(num_states)

    # Reset: p uniform, apples uniform over the other n - 1 cells (independent, or one draw when aligned).
    per_apple = 1.0 / (n - 1)
    initial = np.full(num_states, (1.0 / n) * (per_apple if env.aligned else per_apple**2))

    # Transitions: for every (s, a) the new cell p' is fixed; each reached apple respawns uniformly off p'.
    sp_, sa = np.repeat(np.arange(num_states), num_actions), np.tile(np.arange(num_actions), num_states)
    p_next = move[states[sp_, 0], sa]
    red, green = states[sp_, 1], states[sp_, 2]
    sender_reward = pay64[p_next, red].reshape(num_states, num_actions)
    receiver_reward = pay64[p_next, green].reshape(num_states, num_actions)
    others = np.array([np.delete(cells, c) for c in cells])  # [n, n - 1]: the cells other than c
    row_ids, col_ids, probs = [], [], []

    def add(rows_, red_next, green_next, prob):
        row_ids.append(rows_)
        col_ids.append(index[(p_next[rows_, None] * n + red_next) * n + green_next].reshape(len(rows_), -1))
        probs.append(np.broadcast_to(prob, col_ids[-1].shape))

    reach_r, reach_g = p_next == red, p_next == green
    all_rows = np.arange(num_states * num_actions)
    if env.aligned:  # one apple, respawned as one
        stay = all_rows[~reach_r]
        add(stay, red[stay, None], green[stay, None], 1.0)
        hit = all_rows[reach_r]
        add(hit, others[p_next[hit]], others[p_next[hit]], per_apple)
    else:
        for hit_r, hit_g in ((False, False), (True, False), (False, True), (True, True)):
            sel = all_rows[(reach_r == hit_r) & (reach_g == hit_g)]
            nr = others[p_next[sel]][:, :, None] if hit_r else red[sel, None, None]
            ng = others[p_next[sel]][:, None, :] if hit_g else green[sel, None, None]
            nr, ng = np.broadcast_arrays(nr, ng)
            add(sel, nr.reshape(len(sel), -1), ng.reshape(len(sel), -1), per_apple ** (hit_r + hit_g))
    rows_all = np.concatenate([np.repeat(r_, c.shape[1]) for r_, c in zip(row_ids, col_ids)])
    cols_all = np.concatenate([c.ravel() for c in col_ids])
    assert cols_all.min() >= 0, "a successor state outside the enumerated states"
    transition = sp.csr_matrix(
        (np.concatenate([q.ravel() for q in probs]), (rows_all, cols_all)), shape=(num_states * num_actions, num_states)
    )

    items = env.receiver_observes
    if not items:
        observation = np.zeros(num_states, dtype=np.int64)
    elif items == ("position",):
        observation = states[:, 0].copy()
    elif items == RECEIVER_ITEMS:  # (position, goal)
        observation = states[:, 0] * n + states[:, 2]
    else:  # ("goal",)
        observation = states[:, 2].copy()
    game = TabularMarkovGame(initial=initial, transition=transition, sender_reward=sender_reward,
                             receiver_reward=receiver_reward, observation=observation, horizon=env.horizon,
                             states=states)
    game.check()
    return game


# --------------------------------------------------------------------------------------------- the LP


def _obedience_pairs(num_actions: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(num_actions) for b in range(num_actions) if b != a]


def lp_size(game: TabularMarkovGame, *, receiver_knows_time: bool = False) -> tuple[int, int, int]:
    """``(variables, constraints, nonzeros)`` of the occupancy LP (``method="occupancy"``), without building it."""
    t, s, a = game.horizon, game.num_states, game.num_actions
    obedience_rows = (int(game.observation.max()) + 1) * a * (a - 1) * (t if receiver_knows_time else 1)
    nnz = t * s * a + (t - 1) * game.transition.nnz + t * s * a * (a - 1)
    return t * s * a, t * s + obedience_rows, nnz


def evaluate_markov_scheme(
    game: TabularMarkovGame, policy: np.ndarray, *, receiver_knows_time: bool = False
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Exact values of a recommendation scheme played by an obedient receiver.

    Args:
        game: the tables.
        policy: ``[T, S, A]`` scheme ``phi_t(a | s)``, or ``[T, S]`` int (a deterministic one).
        receiver_knows_time: return the obedience slacks per step instead of summed over the episode.

    Returns:
        ``(sender_value, receiver_value, slack, occupancy)``: values per episode; ``slack[o, a, a']`` (or
        ``[T, o, a, a']``) ``= sum_{t, s: g(s) = o} x_t(s, a) [r^j(s, a) - r^j(s, a')]``, the receiver's gain from
        obeying ``a`` rather than playing ``a'`` (the scheme is obedient iff every slack is >= 0); the occupancy
        ``x_t(s, a)`` ``[T, S, A]``.
    """
    T, S, A = game.horizon, game.num_states, game.num_actions
    policy = np.asarray(policy)
    if policy.ndim == 2:
        require(policy.shape == (T, S), "policy", policy.shape, f"[T, S] = {(T, S)} actions or [T, S, A] probabilities")
        policy = np.eye(A)[policy]
    require(policy.shape == (T, S, A), "policy", policy.shape, f"[T, S, A] = {(T, S, A)}")
    num_obs = int(game.observation.max()) + 1
    pt = game.transition.T.tocsr()  # [S, SA]
    occupancy = np.empty((T, S, A))
    d = game.initial.copy()
    for t in range(T):
        occupancy[t] = d[:, None] * policy[t]
        d = pt @ occupancy[t].ravel()
    rj = game.receiver_reward
    # gain[t, s, a, a'] summed into the observation's rows: x_t(s, a) (r^j(s, a) - r^j(s, a')).
    weights = occupancy[:, :, :, None] * (rj[:, :, None] - rj[:, None, :])[None]  # [T, S, A, A]
    slack = np.zeros((T, num_obs, A, A))
    np.add.at(slack, (slice(None), game.observation), weights)
    return (
        float(np.einsum("tsa,sa->", occupancy, game.sender_reward)),
        float(np.einsum("tsa,sa->", occupancy, rj)),
        slack if receiver_knows_time else slack.sum(0),
        occupancy,
    )


def _deterministic_column(game: TabularMarkovGame, actions: np.ndarray, pt: sp.csr_matrix, num_obs: int, per_t: bool):
    """Sender value and obedience slacks ``[(T,) O, A, A]`` of a deterministic scheme ``actions[t, s]``."""
    T, S, A = game.horizon, game.num_states, game.num_actions
    rj, states = game.receiver_reward, np.arange(S)
    d, value = game.initial.copy(), 0.0
    slack = np.zeros((T if per_t else 1, num_obs * A, A))
    for t in range(T):
        a = actions[t]
        value += float(d @ game.sender_reward[states, a])
        gain = d[:, None] * (rj[states, a][:, None] - rj)  # [S, A']: obey a rather than play a'
        ids = game.observation * A + a
        for b in range(A):
            slack[t if per_t else 0, :, b] += np.bincount(ids, weights=gain[:, b], minlength=num_obs * A)
        d = pt[:, states * A + a] @ d
    return value, slack.reshape(-1)


def _best_deterministic(game: TabularMarkovGame, multipliers: np.ndarray, p: sp.csr_matrix, num_obs: int):
    """Backward induction on the Lagrangian ``r^i + multipliers . obedience``: the maximising deterministic scheme
    ``[T, S]`` and its value (the dual function at ``multipliers``, an upper bound on the LP optimum)."""
    T, S, A = game.horizon, game.num_states, game.num_actions
    rj, obs = game.receiver_reward, game.observation
    mult = multipliers.reshape(-1, num_obs, A, A)  # [1 or T, O, A, A']
    reward = []
    for m in mult:
        ms = m[obs]  # [S, A, A']
        reward.append(game.sender_reward + ms.sum(-1) * rj - np.einsum("sab,sb->sa", ms, rj))
    actions = np.empty((T, S), dtype=np.int64)
    v = np.zeros(S)
    for t in reversed(range(T)):
        q = reward[t if len(reward) > 1 else 0] + (p @ v).reshape(S, A)
        actions[t] = q.argmax(1)
        v = q.max(1)
    return actions, float(game.initial @ v)


def optimal_markov_scheme(
    game: TabularMarkovGame,
    *,
    receiver_knows_time: bool = False,
    method: str = "auto",
    tol: float = 1e-6,
    max_iterations: int = 5000,
    max_nonzeros: int | None = MAX_NONZEROS,
) -> MarkovOptimum:
    """The sender-optimal recommendation scheme against a myopic, obedient receiver (the module docstring's LP).

    Three exact methods solve the same LP (``"auto"``, the default, picks the first that applies):

    - when the receiver's reward ``r^j(s, a)`` depends on ``s`` only through its observation ``g(s)`` (Reaching
      Goals with ``receiver_observes=[position, goal]``), obedience means "recommend only actions that are best
      for the receiver at ``g(s)``", and the LP is the sender's finite-horizon MDP on those actions, solved by
      backward induction (``MarkovOptimum.method == "restricted_dp"``);
    - ``"column_generation"`` (Dantzig-Wolfe): every occupancy is a mixture of deterministic Markov
      schemes, so the LP is "choose mixture weights over deterministic schemes, obedient on average". A small master
      LP over the schemes found so far gives obedience multipliers; backward induction on the sender's reward plus
      the multipliers times the obedience gains finds the next scheme (and an upper bound). It stops when the
      bound and the master's value agree to ``tol`` (relative), so the result is within ``tol`` of the optimum.
      Memory and time grow with the states, not with ``T x`` the constraint matrix: 5x5 maps are in reach.
    - ``"occupancy"``: the LP over ``x_t(s, a)`` as written, in one HiGHS call (sparse; ~10^5 variables for 3x3
      at ``T = 50``, slow: minutes); refused above ``max_nonzeros``. The reference the tests compare with.

    Args:
        game: the tables (:func:`reaching_goals_game`, or any :class:`TabularMarkovGame`).
        receiver_knows_time: obedience at every step ``t`` separately (a receiver that sees the clock) instead of
            aggregated over the episode (default: msgzoo's receiver does not see the step count).
        method: ``"auto"``, ``"column_generation"`` or ``"occupancy"``.
        tol: relative optimality gap at which column generation stops.
        max_iterations: column generation's bound on iterations (a RuntimeError beyond).
        max_nonzeros: ``"occupancy"`` only: refuse larger constraint matrices (``None``: no bound); see
            :func:`lp_size`.

    Returns:
        :class:`MarkovOptimum` (values per episode, the occupancy ``x_t(s, a)`` and the scheme ``phi_t(a | s)``).

    Raises:
        ValueError: naming the field, for inconsistent tables, an unknown method or an LP above ``max_nonzeros``.
        RuntimeError: with HiGHS's message if a solve fails, or if column generation does not converge.
    """
    game.check()
    require(method in METHODS, "method", method, f"one of {METHODS}")
    require(_is_positive(tol), "tol", tol, "a number > 0")
    if method == "occupancy":
        occupancy, iterations = _solve_occupancy_lp(game, receiver_knows_time, max_nonzeros), 1
    elif method == "auto" and _observed_receiver_reward(game):
        # The receiver's reward is known from its observation (Reaching Goals when it sees its goal): obedience
        # then says "recommend only the receiver's best actions", and the LP is the sender's MDP on those actions.
        actions = _restricted_best_scheme(game)
        states = _state_occupancy(game, actions, game.transition.T.tocsc())
        occupancy = np.eye(game.num_actions)[actions] * states[..., None]
        iterations, method = 1, "restricted_dp"
    else:
        occupancy, iterations = _solve_column_generation(game, receiver_knows_time, tol, max_iterations)
        method = "column_generation"
    mass = occupancy.sum(axis=2, keepdims=True)
    policy = np.where(mass > 1e-12, occupancy / np.where(mass > 0, mass, 1.0), 1.0 / game.num_actions)
    return MarkovOptimum(
        sender_value=float(np.einsum("tsa,sa->", occupancy, game.sender_reward)),
        receiver_value=float(np.einsum("tsa,sa->", occupancy, game.receiver_reward)),
        occupancy=occupancy,
        policy=policy,
        method=method,
        iterations=iterations,
    )


def _observed_receiver_reward(game: TabularMarkovGame) -> bool:
    """Whether ``r^j(s, a)`` is the same for all states with the same observation."""
    order = np.argsort(game.observation, kind="stable")
    obs, rj = game.observation[order], game.receiver_reward[order]
    first = np.r_[0, np.flatnonzero(np.diff(obs)) + 1]
    reference = rj[first][np.cumsum(np.isin(np.arange(len(obs)), first)) - 1]
    return bool(np.allclose(rj, reference, rtol=0, atol=TIE_RTOL * max(1.0, np.abs(rj).max())))


def _restricted_best_scheme(game: TabularMarkovGame) -> np.ndarray:
    """Backward induction on the sender's reward over the receiver's best actions in each state: ``[T, S]``."""
    rj = game.receiver_reward
    allowed = rj >= rj.max(1, keepdims=True) - TIE_RTOL * max(1.0, np.abs(rj).max())
    S, A = rj.shape
    actions, v = np.empty((game.horizon, S), dtype=np.int64), np.zeros(S)
    for t in reversed(range(game.horizon)):
        q = np.where(allowed, game.sender_reward + (game.transition @ v).reshape(S, A), -np.inf)
        actions[t], v = q.argmax(1), q.max(1)
    return actions


def _is_positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _solve_occupancy_lp(game: TabularMarkovGame, per_t: bool, max_nonzeros: int | None) -> np.ndarray:
    nvar, ncon, nnz = lp_size(game, receiver_knows_time=per_t)
    if max_nonzeros is not None and nnz > max_nonzeros:
        raise ValueError(
            f"max_nonzeros: the LP has {nnz:,} nonzeros ({nvar:,} variables, {ncon:,} constraints), above the bound "
            f"{max_nonzeros:,}; pass a larger max_nonzeros (memory and time grow with it), a smaller game, or "
            'method="column_generation"'
        )
    T, S, A = game.horizon, game.num_states, game.num_actions
    SA = S * A
    # Variable x[t * SA + s * A + a] = x_t(s, a). Flow rows t * S + s': sum_a x_0(s', a) = mu(s') and, for t >= 1,
    # sum_a x_t(s', a) - sum_{s,a} P(s' | s, a) x_{t-1}(s, a) = 0.
    sum_a = sp.kron(sp.eye(S, format="csr"), np.ones((1, A)), format="csr")  # [S, SA]
    a_eq = (sp.kron(sp.eye(T, format="csr"), sum_a) - sp.kron(sp.eye(T, k=-1, format="csr"), game.transition.T)).tocsr()
    b_eq = np.zeros(T * S)
    b_eq[:S] = game.initial
    # Obedience as -sum x (r^j(s,a) - r^j(s,a')) <= 0: one row per (o, a, a') (and per t when the receiver sees the
    # clock). Each x_t(s, a) enters the A - 1 rows (g(s), a, a' != a).
    num_obs = int(game.observation.max()) + 1
    pairs = _obedience_pairs(A)
    rj = game.receiver_reward
    t_ids, s_ids = (x.ravel() for x in np.meshgrid(np.arange(T), np.arange(S), indexing="ij"))
    rows, cols, vals = [], [], []
    for k, (a, b) in enumerate(pairs):
        group = game.observation[s_ids] * len(pairs) + k
        rows.append(t_ids * (num_obs * len(pairs)) + group if per_t else group)
        cols.append(t_ids * SA + s_ids * A + a)
        vals.append(-(rj[s_ids, a] - rj[s_ids, b]))
    num_ub = num_obs * len(pairs) * (T if per_t else 1)
    a_ub = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(num_ub, T * SA))
    c = -np.tile(game.sender_reward.ravel(), T)  # linprog minimises
    # Interior point: on this degenerate LP much faster than simplex (3x3, T = 20: 13 s against minutes).
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(num_ub), A_eq=a_eq, b_eq=b_eq, bounds=(0.0, None), method="highs-ipm")
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"the occupancy LP failed (status {res.status}): {res.message}")
    return np.clip(res.x, 0.0, None).reshape(T, S, A)


def _solve_column_generation(game: TabularMarkovGame, per_t: bool, tol: float, max_iterations: int):
    T, S, A = game.horizon, game.num_states, game.num_actions
    num_obs = int(game.observation.max()) + 1
    p, pt = game.transition, game.transition.T.tocsc()
    # Rows of the master: the obedience pairs (o, a, a' != a) (per t if the receiver sees the clock).
    num_blocks = T if per_t else 1
    keep = np.tile(~np.eye(A, dtype=bool).ravel(), num_obs * num_blocks)

    # Start from the honest scheme (recommend the receiver's best action in the full state): obedient state by
    # state, so the master is feasible from the first iteration.
    honest = np.broadcast_to(game.receiver_reward.argmax(1), (T, S)).copy()
    columns, values, slacks = [], [], []
    # ... and the sender's own MDP optimum (no obedience), often close to obedient already.
    for actions in (honest, _best_deterministic(game, np.zeros(keep.size), p, num_obs)[0]):
        value, slack = _deterministic_column(game, actions, pt, num_obs, per_t)
        columns.append(actions)
        values.append(value)
        slacks.append(slack[keep])
    # Kelley's cutting planes tail off when the master's multipliers jump around; Wentges' smoothing prices at a
    # mix of the best multipliers so far (lowest dual bound) and the master's, and falls back to the master's own
    # multipliers when the smoothed ones find no improving scheme ("mis-pricing"). Any multipliers >= 0 give a
    # valid upper bound, so the stopping test stays exact.
    upper, best = math.inf, None
    for iteration in range(1, max_iterations + 1):
        v, g = np.array(values), np.stack(slacks, axis=1)  # [K], [rows, K]
        # Rows scaled to max |entry| 1 (the slacks span orders of magnitude); the prices are scaled back below.
        # Entries below 1e-9 of their row's largest are round-off or negligible; they stall HiGHS's simplex.
        scale = np.abs(g).max(axis=1)
        g = np.where(np.abs(g) > 1e-9 * scale[:, None], g, 0.0)
        scale[scale < 1e-12 * max(1.0, scale.max())] = np.inf  # a row of round-off only: dropped (all zeros)
        res = _solve_master(v, g / scale[:, None])
        lower = -res.fun
        master = np.zeros(keep.size)
        master[keep] = np.maximum(-res.ineqlin.marginals, 0.0) / scale  # the price of each obedience constraint
        for prices in ((master,) if best is None else (SMOOTHING * best + (1 - SMOOTHING) * master, master)):
            actions, dual = _best_deterministic(game, prices, p, num_obs)
            if dual < upper:
                upper, best = dual, prices
            value, slack = _deterministic_column(game, actions, pt, num_obs, per_t)
            if value + master[keep] @ slack[keep] > lower + tol * max(1.0, abs(lower)) * 1e-3:
                break  # improves the master: add it
        if upper - lower <= tol * max(1.0, abs(lower)):
            break
        columns.append(actions.astype(np.int8))
        values.append(value)
        slacks.append(slack[keep])
    else:
        raise RuntimeError(
            f"column generation did not converge in max_iterations={max_iterations} (bounds {lower:.6g} .. "
            f"{upper:.6g}); raise max_iterations or tol"
        )
    occupancy = np.zeros((T, S, A))
    for k in np.flatnonzero(res.x > 1e-12):
        occupancy += res.x[k] * np.eye(A)[columns[k]] * _state_occupancy(game, columns[k], pt)[:, :, None]
    return occupancy, iteration


def _solve_master(values: np.ndarray, slacks: np.ndarray):
    """max over mixture weights of the columns' sender value, obedient on average; HiGHS's dual simplex first, then
    its interior point, with and without presolve (the columns are often nearly parallel and the simplex stalls)."""
    for solver, presolve in (("highs-ds", True), ("highs-ipm", True), ("highs-ipm", False), ("highs-ds", False)):
        res = linprog(-values, A_ub=-slacks, b_ub=np.full(len(slacks), MASTER_SLACK), A_eq=np.ones((1, len(values))),
                      b_eq=[1.0], bounds=(0, None), method=solver, options={"presolve": presolve})
        if res.status == 0:
            return res
    raise RuntimeError(f"the master LP failed (status {res.status}): {res.message}")


def _state_occupancy(game: TabularMarkovGame, actions: np.ndarray, pt: sp.csc_matrix) -> np.ndarray:
    """``P(s_t = s)`` ``[T, S]`` under the deterministic scheme ``actions[t, s]``."""
    states = np.arange(game.num_states)
    d = np.empty((game.horizon, game.num_states))
    d[0] = game.initial
    for t in range(1, game.horizon):
        d[t] = pt[:, states * game.num_actions + actions[t - 1]] @ d[t - 1]
    return d
