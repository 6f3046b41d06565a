"""Critics: W(s, .) with one value per receiver action, V(o, sigma) for the receiver, V(s) for PG."""
from __future__ import annotations

from typing import Sequence

from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import ValueOperator

from msgzoo.modules.fast import FastTensorDictModule, FastValueOperator


def make_action_value_critic(
    net: nn.Module,
    *,
    in_keys: Sequence[NestedKey] = (("sender", "observation"),),
    out_key: NestedKey = ("sender", "action_value"),
) -> TensorDictModule:
    """The marginal action value ``W(s, .)`` (paper, section 3): ``net(s) -> [|A|]``, one value per
    receiver action, so ``W(s, a) = (W(s, .) * one_hot(a)).sum(-1)`` and every action's value is
    available to the baselines and constraints."""
    return FastTensorDictModule(net, in_keys=list(in_keys), out_keys=[out_key])


def make_value_critic(
    net: nn.Module,
    *,
    in_keys: Sequence[NestedKey],
    out_key: NestedKey,
) -> ValueOperator:
    """A state-value critic (``net -> [1]``): the receiver's ``V(o, sigma)`` or the PG sender's ``V(s)``."""
    return FastValueOperator(net, in_keys=list(in_keys), out_keys=[out_key])
