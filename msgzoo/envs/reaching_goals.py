"""Reaching Goals (paper, section 5.2): a batched grid-world Markov signaling game.

A receiver walks on an ``H x W`` grid. Two apples lie on the grid: the sender's red apple and the receiver's green
apple. The sender sees everything and sends a message (a cell, i.e. a "fake apple"); the receiver sees its own
observation (by default its position) and the message, and moves. Each agent is paid for the receiver reaching
*its* apple, so the sender wants to lure the receiver towards the red apple.

Everything is computed on flat cell indices (``cell = row * W + col``) with precomputed lookup tables, for the whole
batch at once: no Python loop over environments, no host synchronisation in ``_step`` / ``_reset`` (unless
``validate_actions`` is on). The batch may have several dimensions (``batch_size=[num_seeds, num_envs]``): the
games are then computed on the flattened batch and only reshaped at the boundaries of ``_reset`` / ``_step``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Bounded, Categorical, Composite
from torchrl.envs import EnvBase

from msgzoo.envs.common import (
    agent_reward_spec,
    check_one_hot,
    check_step_input,
    done_spec,
    is_int,
    make_generator,
    require,
    reset_flags,
    resolve_batch_size,
    signaling_action_spec,
)

#: Receiver moves, in the order of the one-hot action: up, down, left, right (as (d_row, d_col)).
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))
#: Items the receiver may observe, in the order of its observation channels.
RECEIVER_ITEMS = ("position", "goal")
#: Root key of the step counter (TorchRL's ``StepCounter`` convention: ``[*batch_size, 1]`` int64).
STEP_COUNT_KEY = "step_count"


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class ReachingGoalsEnv(EnvBase):
    """A batch of independent Reaching Goals games.

    Dynamics, per environment and step: the receiver moves (``up, down, left, right``; with ``bounded=True`` a move
    off the grid leaves it in place, with ``bounded=False`` the grid is a torus). Then, for each agent separately
    (sender: red apple, receiver: green apple): if the receiver stands on that agent's apple, the agent gets
    ``+reward_amplifier`` and the apple respawns uniformly on a cell the receiver is not on; otherwise the agent
    gets ``-punish_amplifier * d / sqrt(2)`` with ``d = sqrt((di / (H-1))**2 + (dj / (W-1))**2)`` the normalised
    distance from the receiver to the apple. The distance is the *plain* grid distance, also when
    ``bounded=False`` (it is not the toroidal distance). The message is ignored by the dynamics: it only reaches
    the receiver's policy. After ``horizon`` steps the episode is truncated (``terminated`` is always False).

    At reset the receiver is uniform over the cells and each apple uniform over the other cells (the two apples
    may coincide; with ``aligned=True`` they are always the same cell, respawned together).

    Keys (all under the env's ``batch_size``: ``[num_envs]`` by default, or the ``batch_size`` given, e.g.
    ``[num_seeds, num_envs_per_seed]``; cells are flat indices ``row * width + col``):

    - ``("sender", "observation")``: float ``[*batch_size, 3, H, W]``, one one-hot plane per channel: receiver
      position, sender's (red) apple, receiver's (green) apple.
    - ``("sender", "state")``: int64 ``[*batch_size, 3]``, the cells (receiver, red apple, green apple). This is
      the state carrier: ``_step`` reads the state from the input tensordict (the env is stateless, like
      TorchRL's Pendulum).
    - ``("receiver", "observation")``: float ``[*batch_size, C, H, W]``, the ``receiver_observes`` items in the
      order ``("position", "goal")`` (goal = the green apple); ``C = 0`` when the receiver sees the message only.
    - ``"step_count"``: int64 ``[*batch_size, 1]``, steps taken in the current episode (TorchRL's
      ``StepCounter`` key; do not stack a ``StepCounter`` transform on top, the env already truncates at
      ``horizon``).
    - actions: ``("sender", "message")`` one-hot ``[*batch_size, H*W]`` (a cell) and ``("receiver", "action")``
      one-hot ``[*batch_size, 4]``.
    - ``("next", "sender", "reward")``, ``("next", "receiver", "reward")``: float ``[*batch_size, 1]``; root
      ``done`` / ``terminated`` / ``truncated``: bool ``[*batch_size, 1]``.

    Partial resets through TorchRL's ``"_reset"`` mask ``[*batch_size, 1]`` redraw only the masked environments;
    partial steps through ``"_step"`` advance only the masked ones (the others keep their state and get zero
    reward).

    The games of a multi-dimensional batch are as independent as those of a flat one: an env with
    ``batch_size=[S, M]`` plays the same games as one with ``num_envs=S * M`` (row-major flattening: game
    ``(i, j)`` is flat game ``i * M + j``), with the same random draws for the same seed.

    Keyword Args:
        height, width: grid size (>= 2 each).
        horizon: episode length in steps (>= 1).
        reward_amplifier: pay for reaching one's apple (>= 0).
        punish_amplifier: scale of the per-step distance penalty (>= 0).
        bounded: walls (True) or wrap-around (False) at the border.
        aligned: the two apples are the same cell (the agents' interests are aligned).
        receiver_observes: items the receiver observes, any of ``"position"``, ``"goal"`` (a bare string is one
            item; an empty tuple: the message only).
        num_envs: number of games played in parallel (default 1; with ``batch_size``, leave it out or give the
            product of ``batch_size``). ``env.num_envs`` is always the total number of games.
        batch_size: the env's batch shape, a non-empty list of positive integers, e.g. ``[15, 256]`` for 15
            seeds x 256 games (every key then has these leading dimensions); default ``[num_envs]``.
        device: where tensors live.
        seed: seed of the environment's own random generator (``None``: 0).
        validate_actions: check the incoming message and action at every step (a host sync; off by default).

    Examples:
        >>> from msgzoo.envs import ReachingGoalsEnv
        >>> env = ReachingGoalsEnv(num_envs=8, seed=0)
        >>> td = env.rollout(5)
        >>> td["next", "sender", "reward"].shape
        torch.Size([8, 5, 1])
        >>> env = ReachingGoalsEnv(batch_size=[2, 4], seed=0)  # e.g. 2 seeds x 4 games
        >>> env.num_envs, env.rollout(5)["sender", "observation"].shape
        (8, torch.Size([2, 4, 5, 3, 3, 3]))
    """

    def __init__(
        self,
        *,
        height: int = 3,
        width: int = 3,
        horizon: int = 50,
        reward_amplifier: float = 20.0,
        punish_amplifier: float = 5.0,
        bounded: bool = True,
        aligned: bool = False,
        receiver_observes: Sequence[str] | str = ("position",),
        num_envs: int | None = None,
        batch_size: Sequence[int] | None = None,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        validate_actions: bool = False,
    ):
        require(is_int(height) and height >= 2, "height", height, "an integer >= 2")
        require(is_int(width) and width >= 2, "width", width, "an integer >= 2")
        require(is_int(horizon) and horizon >= 1, "horizon", horizon, "an integer >= 1")
        for name, value in (("bounded", bounded), ("aligned", aligned)):  # bool("no") would be True
            require(isinstance(value, (bool, np.bool_)), name, value, "True or False")
        for name, value in (("reward_amplifier", reward_amplifier), ("punish_amplifier", punish_amplifier)):
            require(_is_real(value) and math.isfinite(value) and value >= 0, name, value, "a finite number >= 0")
        if isinstance(receiver_observes, str):
            receiver_observes = (receiver_observes,)
        require(
            isinstance(receiver_observes, (list, tuple)) and all(isinstance(x, str) for x in receiver_observes),
            "receiver_observes", receiver_observes, f"a list or tuple of item names from {RECEIVER_ITEMS}",
        )
        for item in receiver_observes:
            require(item in RECEIVER_ITEMS, "receiver_observes", tuple(receiver_observes),
                    f"items from {RECEIVER_ITEMS} (unknown item {item!r})")
        require(len(set(receiver_observes)) == len(receiver_observes), "receiver_observes",
                tuple(receiver_observes), "items without repetitions")
        batch_size, num_envs = resolve_batch_size(num_envs, batch_size)
        device = torch.device(device)

        super().__init__(device=device, batch_size=batch_size)
        #: Total number of games (the product of ``batch_size``); the internals work on this flat batch.
        self.num_envs = num_envs
        self._multi_dim = len(batch_size) > 1
        self._height, self._width, self._horizon = int(height), int(width), int(horizon)
        self._reward_amplifier, self._punish_amplifier = float(reward_amplifier), float(punish_amplifier)
        self._bounded, self._aligned = bool(bounded), bool(aligned)
        # Canonical order ("position", "goal") whatever order the user gave.
        self._receiver_observes = tuple(item for item in RECEIVER_ITEMS if item in receiver_observes)
        self.num_cells = self._height * self._width
        self.num_actions = len(MOVES)
        self.num_messages = self.num_cells
        self.num_receiver_channels = len(self._receiver_observes)
        self.validate_actions = bool(validate_actions)
        self._generator = make_generator(device)
        self._build_tables()
        self._make_specs()
        self.set_seed(0 if seed is None else seed)

    # ------------------------------------------------------------------ configuration
    height = property(lambda self: self._height, doc="Number of grid rows.")
    width = property(lambda self: self._width, doc="Number of grid columns.")
    horizon = property(lambda self: self._horizon, doc="Episode length (steps before truncation).")
    reward_amplifier = property(lambda self: self._reward_amplifier, doc="Pay for reaching one's apple.")
    punish_amplifier = property(lambda self: self._punish_amplifier, doc="Scale of the distance penalty.")
    bounded = property(lambda self: self._bounded, doc="Walls (True) or wrap-around (False).")
    aligned = property(lambda self: self._aligned, doc="Whether both apples are always the same cell.")
    receiver_observes = property(lambda self: self._receiver_observes, doc="Receiver channels, in order.")

    def _build_tables(self) -> None:
        """Lookup tables on flat cells: the move table and the per-(receiver, apple) reward table."""
        h, w, n = self._height, self._width, self.num_cells
        rows, cols = np.divmod(np.arange(n), w)
        moves = np.empty((n, len(MOVES)), dtype=np.int64)
        for a, (dr, dc) in enumerate(MOVES):
            r, c = rows + dr, cols + dc
            if self._bounded:
                inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
                r, c = np.where(inside, r, rows), np.where(inside, c, cols)
            else:
                r, c = r % h, c % w
            moves[:, a] = r * w + c
        di = (rows[:, None] - rows[None, :]) / (h - 1)
        dj = (cols[:, None] - cols[None, :]) / (w - 1)
        dist = np.sqrt(di**2 + dj**2)
        reward = -self._punish_amplifier * dist / math.sqrt(2.0)
        np.fill_diagonal(reward, self._reward_amplifier)
        d = self.device
        # move_table[cell * 4 + action] -> next cell; reward_table[receiver * n + apple] -> reward.
        self._move_table = torch.as_tensor(moves.reshape(-1), device=d)
        self._reward_table = torch.as_tensor(reward.reshape(-1), dtype=torch.float32, device=d)
        self._action_ids = torch.arange(len(MOVES), device=d, dtype=torch.float32)
        # Rows of the identity: the one-hot observation is a single index_select of the state's cells.
        self._eye = torch.eye(n, device=d, dtype=torch.float32)
        channel_of = {"position": 0, "goal": 2}
        self._receiver_channels = [channel_of[item] for item in self._receiver_observes]

    def _make_specs(self) -> None:
        b, d = tuple(self.batch_size), self.device
        h, w, c = self._height, self._width, self.num_receiver_channels
        self.observation_spec = Composite(
            sender=Composite(
                observation=Binary(shape=(*b, 3, h, w), device=d, dtype=torch.float32),
                state=Categorical(self.num_cells, shape=(*b, 3), device=d, dtype=torch.int64),
                shape=b,
            ),
            receiver=Composite(observation=Binary(shape=(*b, c, h, w), device=d, dtype=torch.float32), shape=b),
            step_count=Bounded(0, self._horizon, shape=(*b, 1), device=d, dtype=torch.int64),
            shape=b,
        )
        self.action_spec = signaling_action_spec(b, self.num_messages, self.num_actions, d)
        self.reward_spec = agent_reward_spec(b, d)
        self.done_spec = done_spec(b, d)

    # ------------------------------------------------------------------ helpers
    def _respawn(self, receiver: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` cells per env, each uniform over the cells other than ``receiver`` ([N] -> [N, count])."""
        k = torch.randint(0, self.num_cells - 1, (self.num_envs, count), generator=self._generator, device=self.device)
        return k + (k >= receiver.unsqueeze(-1))  # int64 + bool -> int64

    def _draw_apples(self, receiver: torch.Tensor) -> torch.Tensor:
        if self._aligned:
            return self._respawn(receiver, 1).expand(-1, 2)
        return self._respawn(receiver, 2)

    def _unflatten(self, value: torch.Tensor) -> torch.Tensor:
        """``[num_envs, ...]`` -> ``[*batch_size, ...]`` (a view for the contiguous outputs of ``_observe``)."""
        return value.reshape(*self.batch_size, *value.shape[1:])

    def _observe(self, state: torch.Tensor, step_count: torch.Tensor, extra: dict) -> TensorDict:
        """The output tensordict from the flat ``state`` ``[N, 3]``, ``step_count`` ``[N, 1]`` and ``extra`` leaves
        (``[N, ...]``, possibly one level nested under ``"sender"`` / ``"receiver"``), under ``batch_size``."""
        n, h, w = self.num_envs, self._height, self._width
        obs = self._eye.index_select(0, state.reshape(-1)).view(n, 3, h, w)
        channels = self._receiver_channels
        if len(channels) == 1:
            receiver_obs = obs[:, channels[0] : channels[0] + 1].clone()
        elif channels:
            receiver_obs = obs[:, channels]
        else:
            receiver_obs = obs.new_zeros(n, 0, h, w)
        if self._multi_dim:  # the flat batch -> the env's batch shape (the flat path skips this entirely)
            u = self._unflatten
            obs, state, receiver_obs, step_count = u(obs), u(state), u(receiver_obs), u(step_count)
            extra = {k: ({kk: u(vv) for kk, vv in v.items()} if isinstance(v, dict) else u(v)) for k, v in extra.items()}
        source = {
            "sender": {"observation": obs, "state": state, **extra.get("sender", {})},
            "receiver": {"observation": receiver_obs, **extra.get("receiver", {})},
            STEP_COUNT_KEY: step_count,
            **{k: v for k, v in extra.items() if k not in ("sender", "receiver")},
        }
        return TensorDict(source, batch_size=self.batch_size, device=self.device)

    # ------------------------------------------------------------------ EnvBase API
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDict:
        n = self.num_envs
        receiver = torch.randint(0, self.num_cells, (n,), generator=self._generator, device=self.device)
        state = torch.cat((receiver.unsqueeze(-1), self._draw_apples(receiver)), dim=-1)
        step_count = torch.zeros(n, 1, dtype=torch.int64, device=self.device)
        if tensordict is not None:
            mask = tensordict.get("_reset", None)
            old_state = tensordict.get(("sender", "state"), None)
            old_count = tensordict.get(STEP_COUNT_KEY, None)
            # A partial reset: the environments outside the mask keep their state exactly (when the input
            # carries it; otherwise TorchRL's reset merges the fresh data under the mask itself).
            if mask is not None and old_state is not None and old_count is not None:
                mask = mask.reshape(n, 1)  # [*batch_size, 1] or [*batch_size] -> [N, 1]
                state = torch.where(mask, state, old_state.reshape(n, 3))
                step_count = torch.where(mask, step_count, old_count.reshape(n, 1))
        return self._observe(state, step_count, reset_flags(n, self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        check_step_input(tensordict, self.batch_size, state_key=("sender", "state"), state_shape=(3,),
                         num_states=self.num_cells, num_actions=self.num_actions, validate=self.validate_actions)
        action = tensordict.get(("receiver", "action"))
        if self.validate_actions:
            check_one_hot(tensordict.get(("sender", "message"), None), ("sender", "message"),
                          self.batch_size, self.num_messages)
            check_one_hot(action, ("receiver", "action"), self.batch_size, self.num_actions)
        state = tensordict.get(("sender", "state"))
        step_count = tensordict.get(STEP_COUNT_KEY)
        n, nc = self.num_envs, self.num_cells
        if self._multi_dim:  # [*batch_size, ...] -> the flat batch [N, ...]
            action, state, step_count = action.reshape(n, -1), state.reshape(n, 3), step_count.reshape(n, 1)
        # One-hot -> index with a tiny mat-vec (much cheaper than argmax on CPU); the clamp keeps a malformed
        # action (validation off) inside the move table.
        a = (action.to(torch.float32) @ self._action_ids).long().clamp_(0, len(MOVES) - 1)
        receiver = self._move_table[state[:, 0] * len(MOVES) + a]  # [N]
        apples = state[:, 1:]  # [N, 2] red (sender), green (receiver)
        reward = self._reward_table[receiver.unsqueeze(-1) * nc + apples]  # [N, 2]
        reached = apples == receiver.unsqueeze(-1)
        apples = torch.where(reached, self._draw_apples(receiver), apples)
        new_state = torch.cat((receiver.unsqueeze(-1), apples), dim=-1)
        new_count = step_count + 1
        partial = tensordict.get("_step", None)
        if partial is not None:  # TorchRL partial step: the envs outside the mask do not move
            partial = partial.reshape(n, 1)  # [*batch_size, 1] or [*batch_size] -> [N, 1]
            new_state = torch.where(partial, new_state, state)
            new_count = torch.where(partial, new_count, step_count)
            reward = reward * partial
        truncated = new_count >= self._horizon
        terminated = torch.zeros_like(truncated)
        return self._observe(
            new_state,
            new_count,
            {
                "sender": {"reward": reward[:, 0:1]},
                "receiver": {"reward": reward[:, 1:2]},
                "done": truncated.clone(),
                "terminated": terminated,
                "truncated": truncated,
            },
        )

    def rewards_of_every_move(self, state: torch.Tensor) -> torch.Tensor:
        """``[..., 4, 2]``: the (sender, receiver) reward each move (:data:`MOVES` order) would pay from ``state``
        (``[..., 3]`` cells: receiver, red apple, green apple), as :meth:`_step` pays it."""
        moved = self._move_table[state[..., :1] * len(MOVES) + torch.arange(len(MOVES), device=state.device)]
        return self._reward_table[moved.unsqueeze(-1) * self.num_cells + state[..., None, 1:]]

    def receiver_information(self, state: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        """``[...]`` int64: one index per distinct (receiver observation, message) pair, in
        ``[0, num_cells ** (1 + len(receiver_observes)))``: what the receiver's policy can tell apart."""
        index = message
        for channel in self._receiver_channels:  # 0: its position, 2: its (green) apple
            index = index * self.num_cells + state[..., channel]
        return index

    def _set_seed(self, seed: int | None) -> None:
        self._generator.manual_seed(int(seed) if seed is not None else 0)

    # ------------------------------------------------------------------ rendering
    def render(self, tensordict: TensorDictBase, index: int = 0, cell_px: int = 48) -> np.ndarray:
        """An RGB frame (``uint8 [H * cell_px, W * cell_px, 3]``) of environment ``index`` of ``tensordict``.

        Reads ``("sender", "state")`` and, when present, marks the ``("sender", "message")`` cell (see
        :func:`msgzoo.envs.rendering.render_frame`). ``index`` counts over the flattened batch dimensions, so a
        rollout ``[N, T]`` is indexed ``env * T + t`` (and one ``[S, M, T]`` of a ``batch_size=[S, M]`` env
        ``(s * M + m) * T + t``).
        """
        from msgzoo.envs.rendering import render_frame

        state = tensordict.get(("sender", "state"))
        if state.ndim > 1:
            state = state.reshape(-1, 3)[index]
        message = tensordict.get(("sender", "message"), None)
        message_cell = None
        if message is not None:
            message = message.reshape(-1, self.num_messages)[index if message.ndim > 1 else 0]
            message_cell = int(message.argmax())
        return render_frame(state, self._height, self._width, message_cell=message_cell, cell_px=cell_px)
