"""The receiver's action policy pi_theta(a | o, sigma) as a TorchRL ``ProbabilisticActor``."""
from __future__ import annotations

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
