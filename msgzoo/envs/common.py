"""Helpers shared by msgzoo's environments: argument checks, batch shapes, generators, action validation.

The environments compute on a flat batch of ``num_envs`` games and expose it under a batch shape ``batch_size``
(``[num_envs]`` by default, or e.g. ``[num_seeds, num_envs_per_seed]``): the spec helpers below take that batch
shape (an ``int`` ``n`` stands for ``[n]``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchrl.data import Categorical, Composite, OneHot, Unbounded


def require(condition: bool, name: str, value: Any, expected: str) -> None:
    """Raise a ``ValueError`` that names the argument, its bad value and what it should be."""
    if not condition:
        raise ValueError(f"{name}={value!r} is invalid: expected {expected}.")


def is_int(value: Any) -> bool:
    """A Python or NumPy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def resolve_batch_size(num_envs: int | None, batch_size: Sequence[int] | None) -> tuple[torch.Size, int]:
    """The env's batch shape and its number of games, from the ``num_envs`` / ``batch_size`` arguments.

    ``batch_size=None``: ``[num_envs]`` (``num_envs`` defaults to 1). Otherwise ``batch_size`` (a non-empty list or
    tuple of positive integers) is the batch shape and the number of games is its product; ``num_envs``, when
    given too, must equal that product.

    Examples:
        >>> resolve_batch_size(8, None)
        (torch.Size([8]), 8)
        >>> resolve_batch_size(None, [15, 256])
        (torch.Size([15, 256]), 3840)
    """
    if batch_size is None:
        n = 1 if num_envs is None else num_envs
        require(is_int(n) and n > 0, "num_envs", num_envs, "a positive integer")
        return torch.Size([int(n)]), int(n)
    require(
        isinstance(batch_size, (list, tuple, torch.Size))
        and len(batch_size) > 0
        and all(is_int(b) and b > 0 for b in batch_size),
        "batch_size", batch_size,
        "a non-empty list or tuple of positive integers (the env's batch shape, e.g. [num_seeds, num_envs])",
    )
    shape = torch.Size([int(b) for b in batch_size])
    n = shape.numel()
    if num_envs is not None:
        require(
            is_int(num_envs) and int(num_envs) == n, "num_envs", num_envs,
            f"the number of games of batch_size={list(shape)}, i.e. their product {n} (or leave num_envs out)",
        )
    return shape, n


def _batch_shape(batch: int | Sequence[int]) -> tuple[int, ...]:
    return (int(batch),) if is_int(batch) else tuple(int(b) for b in batch)


def as_float_tensor(value: Any, name: str, device: torch.device) -> torch.Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float32, device=device)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}={value!r} is invalid: expected numbers ({err}).") from None


def make_generator(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device)


def check_prior(prior: Any, device: torch.device) -> torch.Tensor:
    """The prior as a float32 tensor: a 1-d list of at least 2 non-negative probabilities that sum to 1."""
    prior = as_float_tensor(prior, "prior", device)
    require(prior.ndim == 1 and prior.numel() >= 2, "prior", prior.tolist(), "a 1-d list of at least 2 probabilities")
    require(
        bool((prior >= 0).all()) and abs(float(prior.sum()) - 1.0) < 1e-5,
        "prior", prior.tolist(), "non-negative probabilities that sum to 1",
    )
    return prior


def draw_states(prior: torch.Tensor, batch_size: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Fresh states from ``prior`` for every game of the batch: one draw for the flat batch, viewed as
    ``batch_size`` (the same states for the same generator state whatever the batch shape)."""
    return torch.multinomial(prior, batch_size.numel(), replacement=True, generator=generator).view(batch_size)


def check_one_hot(value: torch.Tensor | None, key: tuple, batch: int | Sequence[int], size: int) -> None:
    """Validate a one-hot action or message of shape ``[*batch, size]`` (``batch``: the env's batch shape, or an
    ``int`` ``N`` for ``[N]``). A host sync: only behind the envs' validation flag."""
    if value is None:
        raise ValueError(f"{key} is missing from the input tensordict: the policy must write it.")
    expected = (*_batch_shape(batch), size)
    if tuple(value.shape) != expected:
        raise ValueError(
            f"{key} has shape {tuple(value.shape)}: expected {expected}, one one-hot row per environment."
        )
    if value.is_complex() or not (value.is_floating_point() or value.dtype in (torch.bool, torch.uint8, torch.int64, torch.int32)):
        raise ValueError(f"{key} has dtype {value.dtype}: expected a float or integer one-hot tensor.")
    v = value.float()
    if not bool(((v == 0) | (v == 1)).all() & (v.sum(-1) == 1).all()):
        raise ValueError(f"{key} is not one-hot: each row must hold a single 1 and zeros elsewhere.")


def check_step_input(
    tensordict, batch: Sequence[int], *, state_key: tuple, state_shape: tuple, num_states: int, num_actions: int,
    validate: bool,
) -> None:
    """Checks what ``_step`` reads: the state ``reset()`` wrote and the receiver's one-hot action.

    Always (shape metadata only, no host sync): the state is there (a step before ``reset()`` has none) and the
    action has shape ``[*batch, num_actions]`` (an index action ``[*batch]`` would be read as garbage). With
    ``validate`` (a host sync) also: the state has its shape and indices in ``[0, num_states)`` (a negative one would
    index from the end).
    """
    state = tensordict.get(state_key, None)
    if state is None:
        raise RuntimeError(
            f"{state_key} is missing from the input tensordict: step() continues the games reset() started. "
            "Fix: call td = env.reset() first and step that tensordict with the actions set (env.rollout and "
            "TorchRL's collectors do this)."
        )
    action = tensordict.get(("receiver", "action"), None)
    expected = (*_batch_shape(batch), num_actions)
    if action is None or tuple(action.shape) != expected:
        raise ValueError(
            f"('receiver', 'action') has shape {None if action is None else tuple(action.shape)}: expected {expected}, "
            f"one one-hot row per environment (one-hot encode index actions: torch.nn.functional.one_hot(a, "
            f"{num_actions}))."
        )
    if validate:
        full = (*_batch_shape(batch), *state_shape)
        if tuple(state.shape) != full or state.is_floating_point() or bool(((state < 0) | (state >= num_states)).any()):
            raise ValueError(
                f"{state_key} must be integer indices in [0, {num_states}) of shape {full} (got shape "
                f"{tuple(state.shape)}, dtype {state.dtype}): step the tensordict reset() or step() returned."
            )


def done_spec(batch: int | Sequence[int], device: torch.device) -> Composite:
    """Root-level ``done`` / ``terminated`` / ``truncated`` flags, ``[*batch, 1]`` booleans."""
    b = _batch_shape(batch)
    flag = Categorical(2, shape=(*b, 1), dtype=torch.bool, device=device)
    return Composite(done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=b, device=device)


def reset_flags(batch: int | Sequence[int], device: torch.device) -> dict[str, torch.Tensor]:
    """The ``done`` / ``terminated`` / ``truncated`` flags of a fresh episode (all False, ``[*batch, 1]``), matching
    :func:`done_spec`."""
    done = torch.zeros(*_batch_shape(batch), 1, dtype=torch.bool, device=device)
    return {"done": done, "terminated": done.clone(), "truncated": done.clone()}


def signaling_action_spec(
    batch: int | Sequence[int], num_messages: int, num_actions: int, device: torch.device
) -> Composite:
    """The joint action of a signaling game: the sender's one-hot message and the receiver's one-hot action."""
    b = _batch_shape(batch)
    return Composite(
        sender=Composite(
            message=OneHot(num_messages, shape=(*b, num_messages), device=device, dtype=torch.float32), shape=b
        ),
        receiver=Composite(
            action=OneHot(num_actions, shape=(*b, num_actions), device=device, dtype=torch.float32), shape=b
        ),
        shape=b,
    )


def agent_reward_spec(batch: int | Sequence[int], device: torch.device) -> Composite:
    """``("sender", "reward")`` and ``("receiver", "reward")``, ``[*batch, 1]`` each."""
    b = _batch_shape(batch)
    return Composite(
        sender=Composite(reward=Unbounded(shape=(*b, 1), device=device), shape=b),
        receiver=Composite(reward=Unbounded(shape=(*b, 1), device=device), shape=b),
        shape=b,
    )
