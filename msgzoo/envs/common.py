"""Helpers shared by msgzoo's environments: argument checks, generators, action validation."""
from __future__ import annotations

from typing import Any

import torch
from torchrl.data import Categorical, Composite, OneHot, Unbounded


def require(condition: bool, name: str, value: Any, expected: str) -> None:
    """Raise a ``ValueError`` that names the argument, its bad value and what it should be."""
    if not condition:
        raise ValueError(f"{name}={value!r} is invalid: expected {expected}.")


def as_float_tensor(value: Any, name: str, device: torch.device) -> torch.Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float32, device=device)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}={value!r} is invalid: expected numbers ({err}).") from None


def make_generator(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device)


def check_one_hot(value: torch.Tensor | None, key: tuple, num_envs: int, size: int) -> None:
    """Validate a one-hot action or message (a host sync: only behind the envs' validation flag)."""
    if value is None:
        raise ValueError(f"{key} is missing from the input tensordict: the policy must write it.")
    if tuple(value.shape) != (num_envs, size):
        raise ValueError(
            f"{key} has shape {tuple(value.shape)}: expected ({num_envs}, {size}), one one-hot row per environment."
        )
    if value.is_complex() or not (value.is_floating_point() or value.dtype in (torch.bool, torch.uint8, torch.int64, torch.int32)):
        raise ValueError(f"{key} has dtype {value.dtype}: expected a float or integer one-hot tensor.")
    v = value.float()
    if not bool(((v == 0) | (v == 1)).all() & (v.sum(-1) == 1).all()):
        raise ValueError(f"{key} is not one-hot: each row must hold a single 1 and zeros elsewhere.")


def done_spec(num_envs: int, device: torch.device) -> Composite:
    """Root-level ``done`` / ``terminated`` / ``truncated`` flags, ``[num_envs, 1]`` booleans."""
    flag = Categorical(2, shape=(num_envs, 1), dtype=torch.bool, device=device)
    return Composite(done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=(num_envs,), device=device)


def signaling_action_spec(num_envs: int, num_messages: int, num_actions: int, device: torch.device) -> Composite:
    """The joint action of a signaling game: the sender's one-hot message and the receiver's one-hot action."""
    n = num_envs
    return Composite(
        sender=Composite(
            message=OneHot(num_messages, shape=(n, num_messages), device=device, dtype=torch.float32), shape=(n,)
        ),
        receiver=Composite(
            action=OneHot(num_actions, shape=(n, num_actions), device=device, dtype=torch.float32), shape=(n,)
        ),
        shape=(n,),
    )


def agent_reward_spec(num_envs: int, device: torch.device) -> Composite:
    """``("sender", "reward")`` and ``("receiver", "reward")``, ``[num_envs, 1]`` each."""
    n = num_envs
    return Composite(
        sender=Composite(reward=Unbounded(shape=(n, 1), device=device), shape=(n,)),
        receiver=Composite(reward=Unbounded(shape=(n, 1), device=device), shape=(n,)),
        shape=(n,),
    )
