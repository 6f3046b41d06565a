"""The sender's signaling scheme phi_eta(sigma | s, o) as a TensorDict module."""
from __future__ import annotations

from typing import Sequence

from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import ProbabilisticActor
from torch.distributions import OneHotCategorical

from msgzoo.modules.fast import FastTensorDictModule
from msgzoo.modules.gumbel import GumbelMessageSampler


class SignalingScheme(TensorDictSequential):
    """``logits_module`` writes ``log phi(. | s, o)`` (unnormalised) to ``logits_key``; a
    :class:`GumbelMessageSampler` then writes the one-hot message and the Gumbel noise it used.

    Losses call :attr:`logits_module` alone (recomputing the logits with gradients) and rebuild the
    straight-through message from the stored noise, so they never resample.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from msgzoo.modules import VectorNet, make_signaling_scheme
        >>> scheme = make_signaling_scheme(VectorNet(2, 2, bias=False))
        >>> td = TensorDict({("sender", "observation"): torch.eye(2)}, batch_size=[2])
        >>> scheme(td)["sender", "message"].sum(-1)
        tensor([1., 1.])
    """

    def __init__(self, logits_module: TensorDictModule, sampler: GumbelMessageSampler):
        super().__init__(logits_module, sampler)

    @property
    def logits_module(self) -> TensorDictModule:
        return self.module[0]

    @property
    def sampler(self) -> GumbelMessageSampler:
        return self.module[1]

    @property
    def logits_key(self) -> NestedKey:
        return self.sampler.logits_key

    @property
    def message_key(self) -> NestedKey:
        return self.sampler.message_key


def make_signaling_scheme(
    net: nn.Module,
    *,
    in_keys: Sequence[NestedKey] = (("sender", "observation"),),
    logits_key: NestedKey = ("sender", "logits"),
    message_key: NestedKey = ("sender", "message"),
    gumbel_key: NestedKey = ("sender", "gumbel"),
) -> SignalingScheme:
    """Wraps ``net`` (inputs: the tensors at ``in_keys``; output: one logit per message) as a scheme."""
    logits_module = FastTensorDictModule(net, in_keys=list(in_keys), out_keys=[logits_key])
    sampler = GumbelMessageSampler(logits_key=logits_key, message_key=message_key, gumbel_key=gumbel_key)
    return SignalingScheme(logits_module, sampler)


def scheme_as_actor(scheme: SignalingScheme, *, log_prob_key: NestedKey = ("sender", "message_log_prob")) -> ProbabilisticActor:
    """The scheme seen as an ordinary policy whose action is the message (the PG/PGOC baselines).

    It shares the scheme's logits network (same parameters), so TorchRL's ``A2CLoss`` can train it.
    """
    return ProbabilisticActor(
        scheme.logits_module,
        in_keys={"logits": scheme.logits_key},
        out_keys=[scheme.message_key],
        distribution_class=OneHotCategorical,
        return_log_prob=True,
        log_prob_key=log_prob_key,
    )
