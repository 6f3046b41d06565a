"""The receiver's action policy pi_theta(a | o, sigma) as a TorchRL ``ProbabilisticActor``, and a grid receiver's
start that reads the message cell as "go there"."""
from __future__ import annotations

from typing import Sequence

import torch
from tensordict.utils import NestedKey
from torch import nn
from torch.distributions import OneHotCategorical
from torchrl.modules import ProbabilisticActor

from msgzoo.modules.fast import FastTensorDictModule


def make_receiver_actor(
    net: nn.Module,
    *,
    observation_key: NestedKey = ("receiver", "observation"),
    message_key: NestedKey = ("sender", "message"),
    logits_key: NestedKey = ("receiver", "logits"),
    action_key: NestedKey = ("receiver", "action"),
    log_prob_key: NestedKey = ("receiver", "action_log_prob"),
) -> ProbabilisticActor:
    """``net(observation, message) -> logits`` (e.g. :class:`~msgzoo.modules.ObservationMessageNet`),
    sampled as a one-hot action.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from msgzoo.modules import ObservationMessageNet, VectorNet, make_receiver_actor
        >>> actor = make_receiver_actor(ObservationMessageNet(VectorNet(2, 2)))
        >>> td = TensorDict({("receiver", "observation"): torch.zeros(3, 0),
        ...                  ("sender", "message"): torch.eye(2)[[0, 1, 1]]}, batch_size=[3])
        >>> actor(td)["receiver", "action"].shape
        torch.Size([3, 2])
    """
    module = FastTensorDictModule(net, in_keys=[observation_key, message_key], out_keys=[logits_key])
    return ProbabilisticActor(
        module,
        in_keys={"logits": logits_key},
        out_keys=[action_key],
        distribution_class=OneHotCategorical,
        return_log_prob=True,
        log_prob_key=log_prob_key,
    )


def moves_toward(width: int, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` bool: which grid moves (Reaching Goals' order: up, down, left, right) take a receiver at flat cell
    ``source`` one step closer to flat cell ``target`` on a ``? x width`` grid (none when it stands on it)."""
    source_row, source_col = source // width, source % width
    target_row, target_col = target // width, target % width
    return torch.stack(
        [target_row < source_row, target_row > source_row, target_col < source_col, target_col > source_col], -1
    )


def fit_to_moves_toward_message(
    net: nn.Module, receiver_observes: Sequence[str], height: int, width: int, logit: float, *, steps: int = 500
) -> float:
    """Fits a grid receiver's freshly initialised ``net`` (``(observation, message) -> 4 move logits``) to the policy
    that reads the message (a cell) as "go there": ``logit`` added to each move that brings it closer to the message
    cell, from its position if it sees it (else from the grid's centre: the message's direction is the move). The
    grid analogue of the one-step receiver that starts by following recommendations; only an initialisation (the
    network is the reference's, and learning may unlearn it). Full-batch Adam on every (position, message) pair,
    random goal cells drawn afresh each step where the receiver sees its goal. Returns the last step's mean
    KL(prior || policy)."""
    cells = height * width
    sees_position = "position" in receiver_observes
    position, message = torch.meshgrid(torch.arange(cells if sees_position else 1), torch.arange(cells), indexing="ij")
    position, message = position.flatten(), message.flatten()
    source = position if sees_position else torch.full_like(message, (height // 2) * width + width // 2)
    prior = torch.log_softmax(logit * moves_toward(width, source, message).float(), -1)
    rows, one_hot_message = torch.arange(len(message)), nn.functional.one_hot(message, cells).float()

    def observation() -> torch.Tensor:  # a fresh random goal cell per step where the receiver sees its goal
        planes = torch.zeros(len(message), len(receiver_observes), cells)
        for channel, item in enumerate(receiver_observes):
            planes[rows, channel, position if item == "position" else torch.randint(cells, position.shape)] = 1.0
        return planes.reshape(len(message), len(receiver_observes), height, width)

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    with torch.enable_grad():  # also when the network is built under no_grad
        for _ in range(steps):
            kl = (prior.exp() * (prior - torch.log_softmax(net(observation(), one_hot_message), -1))).sum(-1).mean()
            optimizer.zero_grad()
            kl.backward()
            optimizer.step()
    net.zero_grad(set_to_none=True)  # the run's optimizers start from no gradient
    return float(kl.detach())
