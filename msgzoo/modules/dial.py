"""DIAL's differentiable channel (Foerster et al., 2016): a real-valued message through a DRU."""
from __future__ import annotations

from typing import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import OneHot
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import EGreedyModule

from msgzoo.modules.fast import FastTensorDictModule


class DiscretiseRegulariseUnit(TensorDictModuleBase):
    """DRU: ``sigmoid(m + noise)`` in training (noise ~ N(0, noise_std^2), stored so a loss can rebuild
    the message), ``1[m > 0]`` at execution (deterministic exploration)."""

    def __init__(
        self,
        *,
        noise_std: float = 0.5,
        logits_key: NestedKey = ("sender", "message_logits"),
        noise_key: NestedKey = ("sender", "dru_noise"),
        message_key: NestedKey = ("sender", "message"),
    ):
        super().__init__()
        if noise_std < 0:
            raise ValueError(f"noise_std={noise_std} is invalid: expected a non-negative standard deviation.")
        self.noise_std = float(noise_std)
        self.logits_key, self.noise_key, self.message_key = logits_key, noise_key, message_key
        self.in_keys = [logits_key]
        self.out_keys = [message_key, noise_key]

    @staticmethod
    def regularise(logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits + noise)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        logits = tensordict.get(self.logits_key)
        if exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN):
            noise = torch.zeros_like(logits)
            message = (logits > 0).to(logits.dtype)
        else:
            noise = self.noise_std * torch.randn_like(logits)
            message = self.regularise(logits, noise)
        tensordict.set(self.message_key, message)
        tensordict.set(self.noise_key, noise)
        return tensordict


def make_dial_sender(
    net: nn.Module,
    *,
    noise_std: float = 0.5,
    in_keys: Sequence[NestedKey] = (("sender", "observation"),),
    logits_key: NestedKey = ("sender", "message_logits"),
    noise_key: NestedKey = ("sender", "dru_noise"),
    message_key: NestedKey = ("sender", "message"),
) -> TensorDictSequential:
    """``net(s) -> m`` (one real value per message dimension) followed by the DRU."""
    return TensorDictSequential(
        FastTensorDictModule(net, in_keys=list(in_keys), out_keys=[logits_key]),
        DiscretiseRegulariseUnit(noise_std=noise_std, logits_key=logits_key, noise_key=noise_key, message_key=message_key),
    )


class GreedyOneHot(TensorDictModuleBase):
    """``one_hot(argmax Q)``: exactly one action even when Q-values tie (the first maximal index).

    TorchRL's ``QValueModule`` marks every tied action in one-hot mode, which an environment that sums
    payoffs over the one-hot vector would read as several actions at once.
    """

    def __init__(self, *, action_value_key: NestedKey, action_key: NestedKey):
        super().__init__()
        self.action_value_key, self.action_key = action_value_key, action_key
        self.in_keys, self.out_keys = [action_value_key], [action_key]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        q = tensordict.get(self.action_value_key)
        tensordict.set(self.action_key, torch.nn.functional.one_hot(q.argmax(-1), q.shape[-1]).to(q.dtype))
        return tensordict


def make_dial_receiver(
    net: nn.Module,
    num_actions: int,
    *,
    observation_key: NestedKey = ("receiver", "observation"),
    message_key: NestedKey = ("sender", "message"),
    action_value_key: NestedKey = ("receiver", "action_value"),
    action_key: NestedKey = ("receiver", "action"),
) -> TensorDictSequential:
    """The DIAL receiver: ``Q(o, m, .)`` with greedy one-hot actions.

    Wrap it with :func:`dial_exploration` for epsilon-greedy collection."""
    q = FastTensorDictModule(net, in_keys=[observation_key, message_key], out_keys=[action_value_key])
    return TensorDictSequential(q, GreedyOneHot(action_value_key=action_value_key, action_key=action_key))


def dial_exploration(
    num_actions: int, *, eps_init: float = 1.0, eps_end: float = 0.05, annealing_num_steps: int = 1000,
    action_key: NestedKey = ("receiver", "action"),
) -> EGreedyModule:
    """Epsilon-greedy over the receiver's one-hot actions (TorchRL's ``EGreedyModule``)."""
    spec = OneHot(num_actions, dtype=torch.float32)
    return EGreedyModule(spec, eps_init, eps_end, annealing_num_steps, action_key=action_key)
