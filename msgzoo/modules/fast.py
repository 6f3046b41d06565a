"""Faster equivalents of TensorDict modules, for msgzoo's small networks: same results, less per-call overhead.

``FastTensorDictModule`` / ``FastValueOperator`` write their tensor outputs straight into the tensordict;
``FusedSchemeReceiverPolicy`` is the collection policy (scheme then receiver) in one module.

tensordict 0.14's ``TensorDictModule._write_to_tensordict`` passes every output through ``TensorDict.from_any``,
which, for a plain tensor, ends with ``importlib.util.find_spec("pandas")`` (a file-system search when pandas is
not installed) before returning the tensor unchanged. On the small networks of msgzoo that probe costs as much as
the network itself, twice per environment step. These subclasses set plain-tensor outputs directly (the same
result) and defer to the parent for anything else.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    TensorDictModule,
    TensorDictModuleBase,
    TensorDictSequential,
)
from tensordict.nn.probabilistic import interaction_type
from torchrl.modules import ValueOperator

from msgzoo.modules.gumbel import sample_gumbel

__all__ = ["DirectWriteMixin", "FastTensorDictModule", "FastValueOperator", "FusedSchemeReceiverPolicy", "fuse_policy"]


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


class FusedSchemeReceiverPolicy(TensorDictModuleBase):
    """``TensorDictSequential(scheme, receiver)`` of :func:`~msgzoo.modules.make_signaling_scheme` and
    :func:`~msgzoo.modules.make_receiver_actor` as one module, for collection: the same networks (shared, not
    copied), the same keys, the same distributions and the same random draws in the same order (Gumbel noise with
    ``torch.rand``, then ``torch.multinomial`` for the action), so a collection with it equals one with the
    sequence (the action's probabilities are the log-probabilities' ``exp``, which can differ from the sequence's
    ``softmax`` by an ulp: a draw within that of a boundary, about one in ten million, may differ). It skips the
    per-call machinery of ``ProbabilisticActor`` (distribution objects, key checks), which costs more than these small
    networks. Build it with :func:`fuse_policy` (which checks the structure).
    """

    def __init__(self, scheme, receiver):
        super().__init__()
        logits_module, sampler = scheme.logits_module, scheme.sampler
        body, head = receiver.module[0], receiver.module[1]
        self.scheme_net, self.receiver_net = logits_module.module, body.module
        self.scheme_in_keys, self.receiver_in_keys = list(logits_module.in_keys), list(body.in_keys)
        self.scheme_logits_key, self.message_key, self.gumbel_key = (
            sampler.logits_key, sampler.message_key, sampler.gumbel_key)
        self.receiver_logits_key = body.out_keys[0]
        self.action_key, self.log_prob_key = head.out_keys[0], head.log_prob_key
        self.receiver_default = head.default_interaction_type
        self.in_keys = list(dict.fromkeys(self.scheme_in_keys + [k for k in self.receiver_in_keys if k != self.message_key]))
        self.out_keys = [self.scheme_logits_key, self.message_key, self.gumbel_key, self.receiver_logits_key,
                         self.action_key, self.log_prob_key]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        kind = interaction_type()
        logits = self.scheme_net(*[tensordict.get(k) for k in self.scheme_in_keys])
        tensordict.set(self.scheme_logits_key, logits)
        # GumbelMessageSampler's rule: noise unless a deterministic interaction type is set.
        if kind in (InteractionType.DETERMINISTIC, InteractionType.MODE, InteractionType.MEAN):
            gumbel = torch.zeros_like(logits)
        else:
            gumbel = sample_gumbel(logits.shape, device=logits.device, dtype=logits.dtype)
        index = (logits.detach() + gumbel).argmax(-1)
        tensordict.set(self.message_key, torch.nn.functional.one_hot(index, logits.shape[-1]).to(logits.dtype))
        tensordict.set(self.gumbel_key, gumbel)
        r_logits = self.receiver_net(*[tensordict.get(k) for k in self.receiver_in_keys])
        tensordict.set(self.receiver_logits_key, r_logits)
        # ProbabilisticActor's rule: the interaction type, else the module's default; OneHotCategorical's sampling.
        num_actions = r_logits.shape[-1]
        normalized = r_logits - r_logits.logsumexp(-1, keepdim=True)  # OneHotCategorical's log-probs, bit for bit
        if (kind or self.receiver_default) == InteractionType.RANDOM:
            probs = normalized.exp()  # torch.softmax's probabilities to an ulp, at a fifth of its cost
            action = torch.multinomial(probs.reshape(-1, num_actions), 1, True).T.reshape(r_logits.shape[:-1])
        else:
            action = normalized.argmax(-1)
        tensordict.set(self.action_key, torch.nn.functional.one_hot(action, num_actions).to(r_logits.dtype))
        tensordict.set(self.log_prob_key, normalized.gather(-1, action.unsqueeze(-1)).squeeze(-1))
        return tensordict


def fuse_policy(policy) -> FusedSchemeReceiverPolicy | None:
    """A :class:`FusedSchemeReceiverPolicy` equal to ``policy`` when ``policy`` is ``TensorDictSequential(scheme,
    receiver)`` built by msgzoo's factories (a :class:`~msgzoo.modules.SignalingScheme` with its Gumbel sampler, a
    ``ProbabilisticActor`` sampling a ``OneHotCategorical`` from logits with its log-prob); None otherwise."""
    from torch.distributions import OneHotCategorical
    from torchrl.modules import ProbabilisticActor

    from msgzoo.modules.gumbel import GumbelMessageSampler
    from msgzoo.modules.signaling_scheme import SignalingScheme

    modules = getattr(policy, "module", None)
    if type(policy) is not TensorDictSequential or not isinstance(modules, torch.nn.ModuleList) or len(modules) != 2:
        return None
    scheme, receiver = modules
    if type(scheme) is not SignalingScheme or type(receiver) is not ProbabilisticActor:
        return None
    logits_module, sampler = scheme.logits_module, scheme.sampler
    if type(sampler) is not GumbelMessageSampler or not isinstance(logits_module, TensorDictModule):
        return None
    if isinstance(logits_module, TensorDictSequential) or list(logits_module.out_keys) != [sampler.logits_key]:
        return None
    parts = receiver.module
    if len(parts) != 2:
        return None
    body, head = parts
    if not isinstance(body, TensorDictModule) or isinstance(body, TensorDictSequential) or len(body.out_keys) != 1:
        return None
    if (
        not isinstance(head, ProbabilisticTensorDictModule)
        or head.distribution_class is not OneHotCategorical
        or head.distribution_kwargs
        or tuple(head.dist_keys) != ("logits",)
        or list(head.in_keys) != [body.out_keys[0]]
        or not head.return_log_prob
        or len(head.out_keys) != 2
        or getattr(head, "num_samples", None) not in (None, ())
        or getattr(head, "safe", False)
        or getattr(head, "_generator", None) is not None
        or getattr(head, "_generator_key", None) is not None
        or sampler.message_key not in body.in_keys
        or any(isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in policy.modules())
    ):
        return None
    return FusedSchemeReceiverPolicy(scheme, receiver)
