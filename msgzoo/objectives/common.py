"""Pieces shared by msgzoo's losses: policy tabulation over messages, expected values, critic TD loss."""
from __future__ import annotations


import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import OneHotCategorical, SafeModule
from torchrl.objectives.utils import distance_loss

from msgzoo.modules.gumbel import GumbelMessageSampler
from msgzoo.modules.signaling_scheme import SignalingScheme


def logits_module_of(scheme: nn.Module) -> TensorDictModule:
    """The part of a scheme that computes logits (a :class:`SignalingScheme` without its sampler)."""
    return scheme.logits_module if isinstance(scheme, SignalingScheme) else scheme


def frozen(module: nn.Module):
    """Runs ``module`` with detached parameters: gradients flow through its inputs, never into it."""
    return TensorDict.from_module(module).detach().to_module(module)


def check_reads(module: nn.Module, key: NestedKey, what: str, module_name: str) -> None:
    in_keys = getattr(module, "in_keys", None)
    if in_keys is not None and key not in in_keys:
        raise ValueError(
            f"{module_name} does not read the {what} key {key!r} (its in_keys are {list(in_keys)}): "
            f"pass the same key to loss.set_keys({what}=...) and to the network."
        )


def scheme_logits(scheme: TensorDictModule, tensordict: TensorDictBase, logits_key: NestedKey) -> torch.Tensor:
    memo_key = inputs = None
    if not torch.is_grad_enabled() and _deterministic(scheme):
        # Without autograd the logits are memoised (both critics' TD targets read phi(. | s') of one batch).
        inputs = [tensordict.get(k, None) for k in scheme.in_keys]
        if all(isinstance(t, torch.Tensor) for t in inputs):
            memo_key = ("scheme", id(scheme), logits_key, _versions(inputs), _versions(scheme.parameters()))
            hit = _memo_get(memo_key, inputs)
            if hit is not None:
                return hit
    td = scheme(tensordict.select(*scheme.in_keys, strict=False).copy())
    if logits_key not in td.keys(include_nested=True):
        raise KeyError(
            f"The signaling scheme did not write {logits_key!r}: set the loss's logits key with "
            f"set_keys(logits=...) to the scheme's output key {scheme.out_keys}."
        )
    logits = td.get(logits_key)
    if memo_key is not None:
        _memo_put(memo_key, inputs, logits)
    return logits


# -- a small memo of no-grad results, shared by the losses of one update -------------------------------------
#: Entries: (key, input tensors, output, output version). A key holds the ids and version counters of the module's
#: parameters and of its inputs (any in-place change, e.g. an optimizer step, bumps a version); an entry holds its
#: inputs, so their ids cannot be reused while it is cached; an output changed in place is not served again.
_MEMO: list = []
_MEMO_SIZE = 6


def _versions(tensors) -> tuple:
    return tuple((id(t), t._version) for t in tensors)


def _memo_get(key, inputs):
    for entry_key, entry_inputs, out, version in _MEMO:
        if entry_key == key and all(a is b for a, b in zip(entry_inputs, inputs)) and out._version == version:
            return out
    return None


def _memo_put(key, inputs, out) -> None:
    _MEMO.insert(0, (key, list(inputs), out, out._version))
    del _MEMO[_MEMO_SIZE:]


def _deterministic(module: nn.Module) -> bool:
    """No dropout in training mode, no sampler: the same inputs and parameters give the same output."""
    return not any(
        (isinstance(m, nn.modules.dropout._DropoutNd) and m.training) or isinstance(m, GumbelMessageSampler)
        for m in module.modules()
    )


def receiver_dist(receiver: nn.Module, tensordict: TensorDictBase):
    """The receiver's action distribution (``ProbabilisticActor.get_dist``) on ``tensordict``'s inputs."""
    return receiver.get_dist(tensordict.select(*receiver.in_keys, strict=False).copy())


def receiver_probs_all_messages(
    receiver: nn.Module, tensordict: TensorDictBase, message_key: NestedKey, num_messages: int
) -> torch.Tensor:
    """``pi(a | o_t, sigma)`` for every message sigma: ``[*batch, num_messages, |A|]``.

    Receivers built by :func:`~msgzoo.modules.make_receiver_actor` on an
    :class:`~msgzoo.modules.ObservationMessageNet` take a fast path (the observation part of the net is
    computed once per row, not once per row and message); any other receiver is called on the batch
    expanded over every one-hot message.
    """
    fast = _all_messages_net(receiver, message_key, num_messages)
    if fast is not None:
        net, observation_key = fast
        observation = tensordict.get(observation_key)
        if torch.is_grad_enabled() or not _deterministic(net):
            return _softmax(net.forward_all_messages(observation, num_messages))
        # Without autograd the result is memoised: the signaling-gradient and obedience losses (and both critics'
        # TD targets) ask for the same table on the same batch within one sender update.
        key = ("all_messages", id(net), num_messages, _versions([observation]), _versions(net.parameters()))
        probs = _memo_get(key, [observation])
        if probs is None:
            probs = _softmax(net.forward_all_messages(observation, num_messages))
            _memo_put(key, [observation], probs)
        return probs
    inputs = tensordict.select(*receiver.in_keys, strict=False).exclude(message_key)
    batch = inputs.batch_size
    expanded = inputs.unsqueeze(-1).expand(*batch, num_messages)
    eye = torch.eye(num_messages, device=tensordict.device if tensordict.device is not None else None)
    message = eye.expand(*batch, num_messages, num_messages)
    expanded = expanded.copy()
    expanded.set(message_key, message)
    return receiver.get_dist(expanded).probs


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """``softmax(logits, -1)``, as ``exp(logits - logsumexp)``: several times faster on CPU for the few actions
    of a receiver (``torch.softmax`` is slow over a short last dimension)."""
    return (logits - logits.logsumexp(-1, keepdim=True)).exp()


def _all_messages_net(receiver: nn.Module, message_key: NestedKey, num_messages: int):
    """``(net, observation_key)`` when ``receiver`` is ``ProbabilisticActor(TensorDictModule(net, [obs, message]
    -> logits), categorical on logits)`` with an ``net.forward_all_messages`` fast path; else None."""
    found = None
    modules = getattr(receiver, "module", None)
    if isinstance(receiver, ProbabilisticTensorDictSequential) and isinstance(modules, nn.ModuleList) and len(modules) == 2:
        body, head = modules
        net = getattr(body, "module", None)
        dist = getattr(head, "distribution_class", None)
        if (
            isinstance(body, (TensorDictModule, SafeModule))
            and not isinstance(body, TensorDictSequential)
            and isinstance(head, ProbabilisticTensorDictModule)
            and hasattr(net, "forward_all_messages")
            and hasattr(net, "supports_all_messages")
            and dist in (OneHotCategorical, torch.distributions.OneHotCategorical, torch.distributions.Categorical)
            and not getattr(head, "distribution_kwargs", None)
            and len(body.in_keys) == 2
            and body.in_keys[1] == message_key
            and len(body.out_keys) == 1
            and list(head.in_keys) == [body.out_keys[0]]
            and tuple(getattr(head, "dist_keys", ())) == ("logits",)
            and net.supports_all_messages(num_messages)
        ):
            found = (net, body.in_keys[0])
    return found


def value_under_policies(phi: torch.Tensor, pi_all: torch.Tensor, action_values: torch.Tensor) -> torch.Tensor:
    """``V(s) = sum_sigma phi(sigma|s) sum_a pi(a|o,sigma) W(s,a)`` (paper, Lemma 4.1's baseline)."""
    return torch.einsum("...k,...ka,...a->...", phi, pi_all, action_values)


def action_value_td_loss(
    loss_module,
    tensordict: TensorDictBase,
    *,
    scheme: TensorDictModule,
    receiver: nn.Module,
    num_messages: int,
    gamma: float,
    loss_type: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TD(0) loss of the marginal action-value critic ``W(s, a)`` of ``loss_module`` (its
    ``critic_network`` with ``critic_network_params`` and ``target_critic_network_params``), with an
    expected-SARSA target

    ``y = r + gamma * (1 - terminated) * sum_sigma' phi(sigma'|s') sum_a' pi(a'|o',sigma') W_target(s', a')``.

    The expectation over the next message and action uses the current scheme and receiver, so no next
    action needs to be stored; truncated steps bootstrap, terminated ones do not. Returns the loss and
    the online critic's ``W(s, .)`` (detached) for the caller's baselines.
    """
    keys = loss_module.tensor_keys
    critic = loss_module.critic_network
    action = tensordict.get(keys.action)
    reward = tensordict.get(("next", *_as_tuple(keys.reward))).squeeze(-1)
    terminated = tensordict.get(("next", *_as_tuple(keys.terminated))).squeeze(-1)
    with torch.no_grad():
        if gamma > 0:
            nxt = tensordict.get("next")
            phi_next = torch.softmax(scheme_logits(scheme, nxt, keys.logits), -1)
            pi_next = receiver_probs_all_messages(receiver, nxt, keys.message, num_messages)
            with loss_module.target_critic_network_params.to_module(critic):
                w_next = critic(nxt.select(*critic.in_keys, strict=False).copy()).get(keys.action_value)
            v_next = value_under_policies(phi_next, pi_next, w_next)
            target = reward + gamma * (~terminated).to(reward.dtype) * v_next
        else:
            target = reward
    with loss_module.critic_network_params.to_module(critic):
        w = critic(tensordict.select(*critic.in_keys, strict=False).copy()).get(keys.action_value)
    w_taken = (w * action.to(w.dtype)).sum(-1)
    return distance_loss(w_taken, target.to(w_taken.dtype), loss_type).mean(), w.detach()


def _as_tuple(key: NestedKey) -> tuple:
    return (key,) if isinstance(key, str) else tuple(key)
