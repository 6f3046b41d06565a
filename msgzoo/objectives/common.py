"""Pieces shared by msgzoo's losses: policy tabulation over messages, expected values, critic TD targets, and the
one reduction of a loss term over a batch that may hold several seeds (:func:`reduce_per_seed`)."""
from __future__ import annotations

import contextlib

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictModuleBase,
    TensorDictSequential,
)
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import OneHotCategorical, SafeModule, ValueOperator
from torchrl.objectives import LossModule
from torchrl.objectives.utils import ValueEstimators, default_value_kwargs, distance_loss
from torchrl.objectives.value import TD0Estimator, TD1Estimator, TDLambdaEstimator, ValueEstimatorBase

from msgzoo.modules.fast import FastTensorDictModule, FastValueOperator
from msgzoo.modules.signaling_scheme import SignalingScheme
from msgzoo.modules.small_softmax import softmax


def check_ensemble_shape(ensemble_shape) -> tuple[int, ...]:
    """``ensemble_shape`` as a tuple of positive ints (else ``ValueError`` naming it)."""
    shape = tuple(ensemble_shape)
    if not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"ensemble_shape={ensemble_shape!r} is invalid: expected a tuple of positive ints.")
    return shape


def reduce_per_seed(terms: torch.Tensor, ensemble_shape: tuple[int, ...] = ()) -> torch.Tensor:
    """A loss term reduced so that each seed's parameters get their own run's gradient: the mean over each seed's
    samples, summed over the seeds.

    The convention of every msgzoo loss: a loss built with ``ensemble_shape=(S,)`` trains ``S`` seeds together
    (networks that are :class:`~msgzoo.modules.seed_ensemble.SeedEnsemble` s) and reads batches whose leading
    dimensions are ``ensemble_shape``, seed ``k``'s samples at index ``k`` (as an env with ``batch_size=[S,
    num_envs]`` and the trainer give them: ``[S, num_envs, T]``). Seed ``k``'s term is the mean over its samples,
    which depends on its parameters alone, so the sum over seeds gives seed ``k``'s slice of the stacked
    parameters exactly the gradient of seed ``k``'s separate run, and nothing downstream rescales the loss.
    ``terms`` may also be already one value per seed (``[*ensemble_shape]``). With ``ensemble_shape=()`` (one run)
    it is ``terms.mean()``.
    """
    if not ensemble_shape:
        return terms.mean()
    if tuple(terms.shape[: len(ensemble_shape)]) != tuple(ensemble_shape):
        raise ValueError(
            f"a loss built with ensemble_shape={tuple(ensemble_shape)} got a term of shape {tuple(terms.shape)}: "
            f"expected the seed dimensions first ([{', '.join(map(str, ensemble_shape))}, ...]); build the env with "
            f"batch_size=[num_seeds, num_envs], or the loss with the batch's seed dimensions."
        )
    return terms.reshape(*ensemble_shape, -1).mean(-1).sum()


def logits_module_of(scheme: nn.Module) -> TensorDictModule:
    """The part of a scheme that computes logits (a :class:`SignalingScheme` without its sampler)."""
    return scheme.logits_module if isinstance(scheme, SignalingScheme) else scheme


def frozen(module: nn.Module):
    """Runs ``module`` with detached parameters: gradients flow through its inputs, never into it."""
    return TensorDict.from_module(module).detach().to_module(module, preserve_module_state=False)


def check_reads(module: nn.Module, key: NestedKey, what: str, module_name: str) -> None:
    _check_key(module, "in_keys", key, f"{module_name} does not read the {what} key {key!r}",
               f"pass the same key to loss.set_keys({what}=...) and to the network.")


def check_writes(module: nn.Module, key: NestedKey, what: str, module_name: str) -> None:
    out_keys = list(getattr(module, "out_keys", None) or [None])
    _check_key(module, "out_keys", key, f"{module_name} does not write the {what} key {key!r}",
               f"build it with out_key={key!r} (e.g. make_action_value_critic(net, out_key={key!r})) or point the "
               f"loss at the key it writes with loss.set_keys({what}={out_keys[0]!r}).")


def _check_key(module: nn.Module, attribute: str, key: NestedKey, problem: str, fix: str) -> None:
    keys = getattr(module, attribute, None)
    if keys is not None and key not in keys:
        raise ValueError(f"{problem} (its {attribute} are {list(keys)}): {fix}")


#: TensorDict modules whose call is ``out_keys[0] <- module(*in_keys)`` and nothing else (msgzoo's networks are
#: wrapped in these): :func:`module_output` calls their network directly.
_PLAIN_MODULES = (TensorDictModule, FastTensorDictModule, ValueOperator, FastValueOperator)


def module_output(module: nn.Module, tensordict: TensorDictBase, key: NestedKey) -> torch.Tensor | None:
    """``module(tensordict)[key]``, where ``module`` is a plain one-output TensorDict module writing ``key``: its
    network called on the tensors at its ``in_keys`` (the same computation, without copying the inputs into a new
    tensordict). None for any other module (then call it the usual way)."""
    if type(module) not in _PLAIN_MODULES or list(module.out_keys) != [key]:
        return None
    out = module.module(*[tensordict.get(k) for k in module.in_keys])
    return out if type(out) is torch.Tensor else None


def scheme_logits(scheme: TensorDictModule, tensordict: TensorDictBase, logits_key: NestedKey) -> torch.Tensor:
    logits = module_output(scheme, tensordict, logits_key)
    if logits is not None:
        return logits
    td = scheme(tensordict.select(*scheme.in_keys, strict=False).copy())
    if logits_key not in td.keys(include_nested=True):
        raise KeyError(
            f"The signaling scheme did not write {logits_key!r}: set the loss's logits key with "
            f"set_keys(logits=...) to the scheme's output key {scheme.out_keys}."
        )
    return td.get(logits_key)


def receiver_dist(receiver: nn.Module, tensordict: TensorDictBase):
    """The receiver's action distribution (``ProbabilisticActor.get_dist``) on ``tensordict``'s inputs."""
    return receiver.get_dist(tensordict.select(*receiver.in_keys, strict=False).copy())


def _categorical_logits(receiver: nn.Module, tensordict: TensorDictBase) -> torch.Tensor | None:
    """The receiver's logits, computed directly when it is ``ProbabilisticActor(TensorDictModule(net) -> logits,
    OneHotCategorical)`` (what :func:`~msgzoo.modules.make_receiver_actor` builds); None for any other receiver."""
    modules = getattr(receiver, "module", None)
    if isinstance(receiver, ProbabilisticTensorDictSequential) and isinstance(modules, nn.ModuleList) and len(modules) == 2:
        body, head = modules
        if (
            type(body) in _PLAIN_MODULES and len(body.out_keys) == 1
            and isinstance(head, ProbabilisticTensorDictModule)
            and getattr(head, "distribution_class", None) is torch.distributions.OneHotCategorical
            and not getattr(head, "distribution_kwargs", None)
            and tuple(getattr(head, "dist_keys", ())) == ("logits",)
            and list(head.in_keys) == [body.out_keys[0]]
        ):
            return module_output(body, tensordict, body.out_keys[0])
    return None


def receiver_log_prob(receiver: nn.Module, tensordict: TensorDictBase, action: torch.Tensor) -> torch.Tensor:
    """``log pi(action | inputs)`` of the receiver on ``tensordict``'s inputs: ``receiver_dist(...).log_prob(action)``.

    For ``ProbabilisticActor(TensorDictModule(net) -> logits, OneHotCategorical)`` (what
    :func:`~msgzoo.modules.make_receiver_actor` builds) it is computed as ``torch.distributions.OneHotCategorical``
    computes it (the logits less their ``logsumexp``, at the action's ``max`` index), without building the
    distribution: the same values and gradients.
    """
    logits = _categorical_logits(receiver, tensordict)
    if logits is not None:
        normalized = logits - logits.logsumexp(dim=-1, keepdim=True)
        index = action.max(-1)[1].long().unsqueeze(-1)
        index, normalized = torch.broadcast_tensors(index, normalized)
        return normalized.gather(-1, index[..., :1]).squeeze(-1)
    return receiver_dist(receiver, tensordict).log_prob(action)


def receiver_log_probs_all_actions(receiver: nn.Module, tensordict: TensorDictBase, num_actions: int) -> torch.Tensor:
    """``log pi(a | inputs)`` for every action ``a``: ``[*batch, num_actions]`` (the log-softmax of the logits for
    :func:`receiver_log_prob`'s fast path; ``log_prob`` of each one-hot action otherwise)."""
    logits = _categorical_logits(receiver, tensordict)
    if logits is not None:
        return logits - logits.logsumexp(dim=-1, keepdim=True)
    dist = receiver_dist(receiver, tensordict)
    eye = torch.eye(num_actions, device=tensordict.device if tensordict.device is not None else None)
    batch = tensordict.batch_size
    return torch.stack([dist.log_prob(eye[a].expand(*batch, num_actions)) for a in range(num_actions)], -1)


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
        return softmax(net.forward_all_messages(tensordict.get(observation_key), num_messages))
    inputs = tensordict.select(*receiver.in_keys, strict=False).exclude(message_key)
    batch = inputs.batch_size
    expanded = inputs.unsqueeze(-1).expand(*batch, num_messages)
    eye = torch.eye(num_messages, device=tensordict.device if tensordict.device is not None else None)
    message = eye.expand(*batch, num_messages, num_messages)
    expanded = expanded.copy()
    expanded.set(message_key, message)
    return receiver.get_dist(expanded).probs


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


def recommended(action_values: torch.Tensor, num_messages: int) -> torch.Tensor:
    """``W(s, a_sigma)`` for every message sigma, where message ``k`` recommends action ``k`` (the revelation
    principle's reading of a message space no larger than the action space): ``[*batch, num_messages]``."""
    if num_messages > action_values.shape[-1]:
        raise ValueError(
            f"recommendation_weight > 0 reads message k as 'take action k', so it needs num_messages <= the "
            f"{action_values.shape[-1]} actions (got {num_messages}): give at most that many messages or a weight of 0 "
            f"(recipes: env.num_messages=null or loss.recommendation_weight=0)."
        )
    return action_values[..., :num_messages]


def mix_with_recommendations(message_values: torch.Tensor, action_values: torch.Tensor, beta: float) -> torch.Tensor:
    """``(1 - beta) q[..., k] + beta W(s, a_k)``: what message k is worth to a receiver that obeys it with weight
    ``beta`` and otherwise plays its learned policy (``q``, ``[*batch, num_messages]``). Message ``k`` recommends action
    ``k``; messages beyond the actions recommend nothing and keep ``q`` (the learned receiver alone)."""
    num_actions = action_values.shape[-1]
    if message_values.shape[-1] <= num_actions:
        return (1.0 - beta) * message_values + beta * recommended(action_values, message_values.shape[-1])
    head = (1.0 - beta) * message_values[..., :num_actions] + beta * action_values
    return torch.cat([head, message_values[..., num_actions:]], dim=-1)


class NoGradMemo:
    """Results of no-grad computations that the sender's losses of one update share: the receiver's policy over
    every message on the batch and on the next states, and the scheme's ``phi`` on the next states (both
    :class:`~msgzoo.objectives.SignalingGradientLoss` and :class:`~msgzoo.objectives.ObedienceConstraintLoss` need
    them; see :meth:`SenderCriticLoss.share_memo`).

    An entry is served again only for the very same input tensors (the same objects, with the same values) and the
    same modules whose parameters and buffers hold the same values as when it was computed, so a hit returns what
    the computation would return, bit for bit (CPU arithmetic is deterministic); an optimizer step or an in-place
    change of an input makes it a miss. With autograd enabled nothing is cached (the results would carry graphs), nor
    off the CPU (there the comparisons would be host syncs inside the training loop). The checks cost a few
    element-wise comparisons of the inputs and parameters, far less than the all-messages forward they save.
    """

    def __init__(self, size: int = 4):
        self.size = int(size)
        self._entries: list[tuple] = []

    def __call__(self, tag: str, inputs: list[torch.Tensor], modules: list[nn.Module], compute):
        """``compute()``, or its result for the same ``tag``, ``inputs`` and ``modules`` if still valid."""
        state = [t for m in modules for t in (*m.parameters(), *m.buffers())]
        if torch.is_grad_enabled() or any(t.device.type != "cpu" for t in (*inputs, *state)):
            return compute()
        for entry in self._entries:
            if entry[0] == tag and _same(entry[1], entry[2], inputs) and _same(entry[3], entry[4], state):
                return entry[5]
        value = compute()
        snapshot = [t.detach().clone() for t in inputs], [t.detach().clone() for t in state]
        self._entries.insert(0, (tag, list(inputs), snapshot[0], state, snapshot[1], value))
        del self._entries[self.size:]
        return value

    def clear(self) -> None:
        self._entries.clear()


def _same(objects: list[torch.Tensor], values: list[torch.Tensor], current: list[torch.Tensor]) -> bool:
    """``current`` are the same tensor objects as ``objects``, still holding ``values``."""
    return len(objects) == len(current) and all(
        a is b and torch.equal(v, b) for a, v, b in zip(objects, values, current)
    )


def value_under_policies(phi: torch.Tensor, pi_all: torch.Tensor, action_values: torch.Tensor) -> torch.Tensor:
    """``V(s) = sum_sigma phi(sigma|s) sum_a pi(a|o,sigma) W(s,a)`` (paper, Lemma 4.1's baseline)."""
    return torch.einsum("...k,...ka,...a->...", phi, pi_all, action_values)


def state_value(loss_module, tensordict: TensorDictBase, params: TensorDictBase, num_messages: int) -> torch.Tensor:
    """``V(s) = sum_sigma phi(sigma|s) sum_a pi(a|o,sigma) W(s,a)`` on ``tensordict``'s states, with the critic of
    ``loss_module`` run with ``params`` (its online or its target parameters) and its current scheme and receiver."""
    keys = loss_module.tensor_keys
    critic = loss_module.critic_network
    phi = _scheme_probs(loss_module, tensordict)
    pi_all = memo_receiver_probs_all_messages(loss_module, tensordict, num_messages)
    # preserve_module_state=False: the (plain-tensor) target parameters are not turned into nn.Parameters that
    # require grad, which would make SoftUpdate refuse them (as TorchRL's own losses call to_module)
    with params.to_module(critic, preserve_module_state=False):
        w = critic_output(critic, tensordict, keys.action_value)
    return value_under_policies(phi, pi_all, w)


def online_params(params: TensorDictBase, module: nn.Module):
    """``params.to_module(module)`` as a context, or nothing to do when ``params`` are the module's own parameters
    (the online parameters of ``LossModule.convert_to_functional`` are: putting them in place changes nothing)."""
    own = list(module.parameters())
    leaves = list(params.values(include_nested=True, leaves_only=True))
    if len(own) == len(leaves) and all(a is b for a, b in zip(own, leaves)) and not list(module.buffers()):
        return contextlib.nullcontext()
    return params.to_module(module, preserve_module_state=False)


def critic_output(critic: nn.Module, tensordict: TensorDictBase, key: NestedKey) -> torch.Tensor:
    """``critic(tensordict)[key]`` (through :func:`module_output` when the critic is a plain module)."""
    out = module_output(critic, tensordict, key)
    if out is None:
        out = critic(tensordict.select(*critic.in_keys, strict=False).copy()).get(key)
    return out


def _scheme_probs(loss_module, tensordict: TensorDictBase) -> torch.Tensor:
    """``phi(. | s)`` of ``loss_module``'s scheme on ``tensordict`` (through its memo, see :class:`NoGradMemo`)."""
    scheme, key = loss_module.scheme_network, loss_module.tensor_keys.logits
    compute = lambda: softmax(scheme_logits(scheme, tensordict, key))  # noqa: E731
    if loss_module.memo is None:
        return compute()
    return loss_module.memo("phi", [tensordict.get(k) for k in scheme.in_keys], [scheme], compute)


def memo_receiver_probs_all_messages(loss_module, tensordict: TensorDictBase, num_messages: int) -> torch.Tensor:
    """:func:`receiver_probs_all_messages` of ``loss_module``'s receiver, through its memo (see :class:`NoGradMemo`)."""
    receiver, message = loss_module.receiver_network, loss_module.tensor_keys.message
    compute = lambda: receiver_probs_all_messages(receiver, tensordict, message, num_messages)  # noqa: E731
    if loss_module.memo is None:
        return compute()
    inputs = [tensordict.get(k) for k in receiver.in_keys if k != message]
    return loss_module.memo(f"pi_all/{num_messages}", inputs, [receiver], compute)


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
    """TD loss of the marginal action-value critic ``W(s, a)`` of ``loss_module`` (its
    ``critic_network`` with ``critic_network_params`` and ``target_critic_network_params``).

    By default (no :meth:`make_value_estimator` call) the target is TD(0) expected-SARSA,

    ``y = r + gamma * (1 - terminated) * sum_sigma' phi(sigma'|s') sum_a' pi(a'|o',sigma') W_target(s', a')``.

    The expectation over the next message and action uses the current scheme and receiver, so no next
    action needs to be stored; truncated steps bootstrap, terminated ones do not. With a value estimator
    the target is the estimator's ``value_estimate`` (TD(0), TD(1) or TD(lambda)) bootstrapped from the same
    ``V(s')`` (:class:`ExpectedStateValue`). Returns the loss (reduced per seed over ``loss_module.ensemble_shape``,
    :func:`reduce_per_seed`) and the online critic's ``W(s, .)`` (detached) for the caller's baselines.
    """
    keys = loss_module.tensor_keys
    critic = loss_module.critic_network
    check_writes(critic, keys.action_value, "action_value", "critic_network")
    action = tensordict.get(keys.action)
    reward = tensordict.get(("next", *_as_tuple(keys.reward))).squeeze(-1)
    terminated = tensordict.get(("next", *_as_tuple(keys.terminated))).squeeze(-1)
    with torch.no_grad():
        estimator = loss_module.explicit_value_estimator()
        if estimator is not None:
            target = estimator.value_estimate(tensordict.copy()).squeeze(-1)
        elif gamma > 0:
            v_next = state_value(loss_module, tensordict.get("next"), loss_module.target_critic_network_params, num_messages)
            target = reward + gamma * (~terminated).to(reward.dtype) * v_next
        else:
            target = reward
    with online_params(loss_module.critic_network_params, critic):
        w = critic_output(critic, tensordict, keys.action_value)
    w_taken = (w * action.to(w.dtype)).sum(-1)
    loss = reduce_per_seed(distance_loss(w_taken, target.to(w_taken.dtype), loss_type), loss_module.ensemble_shape)
    return loss, w.detach()


class ExpectedStateValue(TensorDictModuleBase):
    """``V(s) = sum_sigma phi(sigma|s) sum_a pi(a|o,sigma) W_target(s,a)`` as a TensorDict module: the state value a
    TorchRL value estimator bootstraps the sender's action-value critic from.

    Reads the scheme's, the receiver's (all but the message: every message is summed over) and the critic's
    inputs, writes ``V`` (``[*batch, 1]``) at the loss's ``value`` key. It holds no parameters of its own: it runs
    the loss's current scheme and receiver, and the critic with the loss's *target* parameters (which
    ``SoftUpdate`` moves), so a TorchRL estimator calls it without ``target_params``.
    """

    def __init__(self, loss_module: LossModule):
        super().__init__()
        self.__dict__["loss_module"] = loss_module  # not a submodule: the networks are the loss's

    @property
    def in_keys(self) -> list:
        return network_in_keys(self.loss_module)

    @property
    def out_keys(self) -> list:
        return [self.loss_module.tensor_keys.value]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        loss, keys = self.loss_module, self.loss_module.tensor_keys
        num_messages = scheme_logits(loss.scheme_network, tensordict, keys.logits).shape[-1]
        value = state_value(loss, tensordict, loss.target_critic_network_params, num_messages)
        tensordict.set(keys.value, value.unsqueeze(-1))
        return tensordict


def network_in_keys(loss_module) -> list:
    """What the scheme, the receiver (less the message) and the critic of a sender loss read."""
    message = loss_module.tensor_keys.message
    keys = [
        *loss_module.scheme_network.in_keys,
        *(k for k in loss_module.receiver_network.in_keys if k != message),
        *loss_module.critic_network.in_keys,
    ]
    return list(dict.fromkeys(keys))


#: ``make_value_estimator`` of the sender losses: the estimators whose target for ``W(s_t, a_t)`` is a return
#: bootstrapped from a state value ``V(s')``.
VALUE_ESTIMATORS = {
    ValueEstimators.TD0: TD0Estimator,
    ValueEstimators.TD1: TD1Estimator,
    ValueEstimators.TDLambda: TDLambdaEstimator,
}


class SenderCriticLoss(LossModule):
    """What the sender's losses with an action-value critic ``W(s, .)`` share: the parameters they train, their
    value estimators, their ``in_keys``.

    Subclasses set ``scheme_network``, ``receiver_network`` (read, never trained) and the critic (through
    ``convert_to_functional(..., "critic_network", create_target_params=True)``), ``gamma``, and define
    ``out_keys``.
    """

    default_value_estimator = ValueEstimators.TD0

    #: The batch's leading dimensions that index seeds trained together (see :func:`reduce_per_seed`); subclasses
    #: take it as a keyword argument. ``()``: one run.
    ensemble_shape: tuple[int, ...] = ()

    #: The no-grad results this loss computes on a batch (see :class:`NoGradMemo`); :meth:`share_memo` gives two
    #: losses of one update the same one.
    memo: NoGradMemo | None = None

    def share_memo(self, other: "SenderCriticLoss") -> "SenderCriticLoss":
        """Lets this loss and ``other`` (e.g. the signaling gradient and the obedience constraints summed in one
        update, on the same scheme and receiver) reuse each other's no-grad results on the same batch: the
        receiver's policy over every message and the scheme's ``phi`` on the next states are then computed once per
        update instead of once per loss, with the same values (see :class:`NoGradMemo`). Returns ``self``."""
        if other.memo is None:
            other.memo = NoGradMemo()
        self.memo = other.memo
        return self

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """The parameters this loss trains: the scheme's and its own critic's. The receiver's are left out (the
        loss reads the receiver but never trains it), so that ``Adam(loss.parameters())`` holds exactly these."""
        skip = f"{prefix}.receiver_network." if prefix else "receiver_network."
        for name, param in super().named_parameters(prefix=prefix, recurse=recurse):
            if not name.startswith(skip):
                yield name, param

    def make_value_estimator(self, value_type: ValueEstimators | None = None, **hyperparams) -> "SenderCriticLoss":
        """Sets the critic's target: ``ValueEstimators.TD0`` (the default; ``gamma``), ``TD1`` (``gamma``) or
        ``TDLambda`` (``gamma``, ``lmbda``), each bootstrapped from :class:`ExpectedStateValue` (the target critic
        summed over the next message and action); ``gamma`` defaults to the loss's.

        TD(1) and TD(lambda) read batches ``[*B, T]`` with time last, as TorchRL's ``Collector`` returns them
        (one row of consecutive steps per env). ``GAE`` and ``VTrace`` estimate advantages of a state-value
        critic; the critic here is an action-value ``W(s, a)``, so they raise ``NotImplementedError``. A
        ``ValueEstimatorBase`` subclass or instance is accepted as in TorchRL (a subclass gets
        :class:`ExpectedStateValue` as its ``value_network`` unless one is given).
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, type) and issubclass(value_type, ValueEstimatorBase):
            hyperparams.setdefault("value_network", ExpectedStateValue(self))
        elif isinstance(value_type, ValueEstimators):
            if value_type not in VALUE_ESTIMATORS:
                supported = ", ".join(f"ValueEstimators.{v.name}" for v in VALUE_ESTIMATORS)
                raise NotImplementedError(
                    f"ValueEstimators.{value_type.name} is not available for {type(self).__name__}: its critic is "
                    f"an action value W(s, a), whose target is a return bootstrapped from V(s'); use one of "
                    f"{supported}."
                )
            kwargs = {**default_value_kwargs(value_type), "gamma": self.gamma, **hyperparams}
            if not 0.0 <= kwargs["gamma"] <= 1.0:
                raise ValueError(f"gamma={kwargs['gamma']} is invalid: expected a discount in [0, 1].")
            self.gamma = float(kwargs["gamma"])
            estimator = VALUE_ESTIMATORS[value_type](value_network=ExpectedStateValue(self), **kwargs)
            super().make_value_estimator(estimator)
            self.value_type = value_type
            self._forward_value_estimator_keys()
            return self
        super().make_value_estimator(value_type, **hyperparams)
        self._forward_value_estimator_keys()
        return self

    def explicit_value_estimator(self) -> ValueEstimatorBase | None:
        """The estimator :meth:`make_value_estimator` set, or None: the critic's built-in TD(0) expected-SARSA target
        (TorchRL's ``value_estimator`` property would build a default one instead of reporting that none was set)."""
        return self._value_estimator

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        if self._value_estimator is not None:
            keys = self.tensor_keys
            self._value_estimator.set_keys(
                value=keys.value, reward=keys.reward, done=keys.done, terminated=keys.terminated
            )

    def _extra_in_keys(self) -> list:
        return []

    def _check_in_keys(self, tensordict: TensorDictBase) -> None:
        """Fails fast, naming every key of :attr:`in_keys` that ``tensordict`` lacks."""
        # a lookup per key (the set of all leaves of a large batch costs more)
        missing = [k for k in self.in_keys if not isinstance(tensordict.get(k, None), torch.Tensor)]
        if missing:
            raise KeyError(
                f"{type(self).__name__} needs the keys {missing}, missing from the batch: collect them, or tell the "
                f"loss the names your environment and networks use with loss.set_keys(...) (fields: "
                f"{list(self.tensor_keys.__dataclass_fields__)})."
            )

    @property
    def in_keys(self) -> list:
        """Every key ``forward`` reads (the next step's network inputs only when the critic bootstraps)."""
        keys = self.tensor_keys
        nets = network_in_keys(self)
        root = [*nets, keys.message, keys.action, *self._extra_in_keys()]
        nxt = [keys.reward, keys.terminated]
        if self._value_estimator is not None:
            nxt = [*nxt, keys.done, *nets]
        elif self.gamma > 0:
            nxt = [*nxt, *nets]
        return list(dict.fromkeys([*root, *(("next", *_as_tuple(k)) for k in nxt)]))


def _as_tuple(key: NestedKey) -> tuple:
    return (key,) if isinstance(key, str) else tuple(key)
