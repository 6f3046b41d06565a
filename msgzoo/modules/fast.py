"""TensorDict module classes that write their tensor outputs straight into the tensordict.

tensordict 0.14's ``TensorDictModule._write_to_tensordict`` passes every output through ``TensorDict.from_any``,
which, for a plain tensor, ends with ``importlib.util.find_spec("pandas")`` (a file-system search when pandas is
not installed) before returning the tensor unchanged. On the small networks of msgzoo that probe costs as much as
the network itself, twice per environment step. These subclasses set plain-tensor outputs directly (the same
result) and defer to the parent for anything else.
"""
from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule
from torchrl.modules import ValueOperator

__all__ = ["DirectWriteMixin", "FastTensorDictModule", "FastValueOperator"]


class DirectWriteMixin:
    """Overrides ``_write_to_tensordict`` for the common case: in-place output of plain tensors."""

    def _write_to_tensordict(self, tensordict, tensors, tensordict_out=None, out_keys=None):
        if out_keys is None:
            out_keys = self.out_keys_source
        if (
            tensordict_out is not None
            or self.inplace is not True
            or len(out_keys) != len(tensors)
            or not all(type(t) is torch.Tensor for t in tensors)
        ):
            return super()._write_to_tensordict(tensordict, tensors, tensordict_out, out_keys)
        for key, tensor in zip(out_keys, tensors):
            if key != "_":
                tensordict.set(key, tensor)
        return tensordict


class FastTensorDictModule(DirectWriteMixin, TensorDictModule):
    """A :class:`tensordict.nn.TensorDictModule` (same constructor, same results), minus the per-call overhead."""


class FastValueOperator(DirectWriteMixin, ValueOperator):
    """A :class:`torchrl.modules.ValueOperator` (same constructor, same results), minus the per-call overhead."""
