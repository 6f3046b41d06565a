"""Straight-through Gumbel-softmax messages whose noise is stored, so a loss can rebuild them exactly."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, exploration_type

from msgzoo.modules.small_softmax import softmax


def sample_gumbel(shape: torch.Size, *, device=None, dtype=torch.float32, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(u))``, finite in float32.

    ``u`` is kept inside ``[tiny, 1 - eps]``: ``u = 0`` would give ``-inf`` and ``u = 1`` would give
    ``+inf`` (the float32 NaN that the reference implementation had to patch).
    """
    u = torch.rand(shape, device=device, dtype=dtype, generator=generator)
    finfo = torch.finfo(dtype)
    u = u.clamp(min=finfo.tiny, max=1.0 - finfo.eps)
    return -torch.log(-torch.log(u))


def straight_through_one_hot(
    logits: torch.Tensor, gumbel: torch.Tensor, temperature: float = 1.0, *, hard: torch.Tensor | None = None
) -> torch.Tensor:
    """Hard one-hot message in the forward pass, the soft sample's gradient in the backward pass.

    ``soft = softmax((logits + gumbel) / temperature)`` and the value is ``hard + (soft - soft.detach())``:
    the added term is an exact zero, so the result equals ``hard`` bit for bit while its gradient
    w.r.t. ``logits`` is that of ``soft``. ``hard`` defaults to ``one_hot(argmax(logits + gumbel))``,
    which is the message that was sent when ``logits`` are those it was sampled with; a loss passes the
    stored message so the two agree even after the scheme has moved.
    """
    soft = softmax((logits + gumbel) / temperature)
    if hard is None:
        hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())


class GumbelMessageSampler(TensorDictModuleBase):
    """Samples a one-hot message from ``logits`` by the Gumbel-max trick and stores the noise used.

    Under ``ExplorationType.RANDOM`` (collection) the message is ``one_hot(argmax(logits + g))``, an exact
    sample of ``Categorical(softmax(logits))``, and ``g`` is written to ``gumbel_key``. Under
    ``DETERMINISTIC`` / ``MODE`` (evaluation) it is ``one_hot(argmax(logits))`` and the stored noise is zero.

    Args:
        logits_key: where the scheme's logits are read.
        message_key: where the one-hot message is written.
        gumbel_key: where the Gumbel noise is written.
    """

    def __init__(
        self,
        *,
        logits_key: NestedKey = ("sender", "logits"),
        message_key: NestedKey = ("sender", "message"),
        gumbel_key: NestedKey = ("sender", "gumbel"),
    ):
        super().__init__()
        self.logits_key, self.message_key, self.gumbel_key = logits_key, message_key, gumbel_key
        self.in_keys = [logits_key]
        self.out_keys = [message_key, gumbel_key]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        logits = tensordict.get(self.logits_key)
        if exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN):
            gumbel = torch.zeros_like(logits)
        else:
            gumbel = sample_gumbel(logits.shape, device=logits.device, dtype=logits.dtype)
        index = (logits.detach() + gumbel).argmax(-1)
        message = torch.nn.functional.one_hot(index, logits.shape[-1]).to(logits.dtype)
        tensordict.set(self.message_key, message)
        tensordict.set(self.gumbel_key, gumbel)
        return tensordict
