"""A2C for the receiver and for the policy-gradient sender baseline, on TorchRL's own ``A2CLoss``; and the
authors' variant of that baseline (:class:`SarsaPolicyGradientLoss`: a ``Q(s, sigma)`` critic trained by SARSA)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torchrl.objectives import A2CLoss, LossModule
from torchrl.objectives.utils import distance_loss
from torchrl.objectives.value import TD0Estimator

from msgzoo.modules.signaling_scheme import SignalingScheme, scheme_as_actor
from msgzoo.modules.small_softmax import log_softmax
from msgzoo.objectives.common import (
    _as_tuple,
    check_ensemble_shape,
    check_writes,
    critic_output,
    logits_module_of,
    receiver_dist,
    reduce_per_seed,
    scheme_logits,
)


class PerSeedA2CLoss(A2CLoss):
    """TorchRL's ``A2CLoss`` whose ``loss_*`` terms are reduced per seed (:func:`~msgzoo.objectives.common.reduce_per_seed`):
    built with TorchRL's ``reduction="none"`` (one value per sample), each term is then the mean over a seed's
    samples, summed over the batch's leading ``ensemble_shape`` dimensions. With ``ensemble_shape=()`` (one run) the
    terms are the plain means of ``reduction="mean"``. The other outputs (``entropy``) are TorchRL's, means.

    Args and keyword args: those of ``A2CLoss`` (but ``reduction``), and ``ensemble_shape`` (tuple of int, default
    ``()``): the seed dimensions the batch leads with, e.g. ``(num_seeds,)``.
    """

    def __init__(self, *args, ensemble_shape: tuple[int, ...] = (), **kwargs):
        if kwargs.pop("reduction", "none") != "none":
            raise ValueError("PerSeedA2CLoss reduces per seed itself: build it without reduction=.")
        super().__init__(*args, reduction="none", **kwargs)
        self.ensemble_shape = check_ensemble_shape(ensemble_shape)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = super().forward(tensordict)
        for key in [k for k in out.keys() if k.startswith("loss_")]:
            out.set(key, reduce_per_seed(out.get(key), self.ensemble_shape))
        return out


def make_receiver_a2c_loss(
    actor: nn.Module,
    critic: nn.Module,
    *,
    gamma: float = 0.1,
    entropy_coeff: float = 0.0,
    entropy_bonus: bool | None = None,
    critic_coeff: float = 1.0,
    loss_critic_type: str = "l2",
    action_key: NestedKey = ("receiver", "action"),
    reward_key: NestedKey = ("receiver", "reward"),
    value_key: NestedKey = ("receiver", "state_value"),
    log_prob_key: NestedKey = ("receiver", "action_log_prob"),
    done_key: NestedKey = "done",
    terminated_key: NestedKey = "terminated",
    ensemble_shape: tuple[int, ...] = (),
) -> A2CLoss:
    """TorchRL's ``A2CLoss`` on the receiver's keys (paper, section 4.2: the receiver's policy gradient
    with advantage ``A(o, sigma, a)``), with a TD(0) value estimator; its loss terms reduced per seed over the
    batch's leading ``ensemble_shape`` dimensions (:class:`PerSeedA2CLoss`; ``()``: one run, plain means).

    The receiver's critic ``V(o, sigma)`` reads the message, so the next step's message must be in the
    tensordict (``("next", "sender", "message")``) for bootstrapping: call
    :func:`attach_next_message` on the batch before the loss (one-step games terminate every step, and
    the bootstrap is masked, but the key must still exist).

    Examples:
        >>> from msgzoo.modules import ObservationMessageNet, VectorNet, make_receiver_actor, make_value_critic
        >>> actor = make_receiver_actor(ObservationMessageNet(VectorNet(2, 2)))
        >>> critic = make_value_critic(ObservationMessageNet(VectorNet(2, 1)),
        ...     in_keys=[("receiver", "observation"), ("sender", "message")], out_key=("receiver", "state_value"))
        >>> loss = make_receiver_a2c_loss(actor, critic, gamma=0.1)
    """
    entropy_bonus = entropy_coeff > 0 if entropy_bonus is None else entropy_bonus
    loss = PerSeedA2CLoss(
        actor_network=actor,
        critic_network=critic,
        entropy_bonus=entropy_bonus,
        entropy_coeff=entropy_coeff if entropy_bonus else None,
        critic_coeff=critic_coeff,
        loss_critic_type=loss_critic_type,
        ensemble_shape=ensemble_shape,
    )
    # TorchRL keeps `entropy_bonus and entropy_coeff`, so a bonus that starts at 0 and is scheduled up (the recipes'
    # warm-up: prepare_receiver sets entropy_coeff in place) would never be added: keep the flag as asked
    loss.entropy_bonus = bool(entropy_bonus)
    loss.set_keys(
        action=action_key,
        reward=reward_key,
        value=value_key,
        sample_log_prob=log_prob_key,
        advantage=(*_prefix(value_key), "advantage"),
        value_target=(*_prefix(value_key), "value_target"),
        done=done_key,
        terminated=terminated_key,
    )
    # deactivate_vmap: the critic runs on the batch and on "next" as two plain calls (functorch vmap of these small
    # nets costs more than the nets on CPU); same values.
    loss.make_value_estimator(TD0Estimator, gamma=gamma, value_network=critic, shifted=False, deactivate_vmap=True)
    loss.set_keys(value=value_key, reward=reward_key)
    return loss


def make_sender_a2c_loss(
    scheme: SignalingScheme,
    critic: nn.Module,
    *,
    gamma: float = 0.99,
    entropy_coeff: float = 0.0,
    critic_coeff: float = 1.0,
    loss_critic_type: str = "l2",
    reward_key: NestedKey = ("sender", "reward"),
    value_key: NestedKey = ("sender", "state_value"),
    log_prob_key: NestedKey = ("sender", "message_log_prob"),
    done_key: NestedKey = "done",
    terminated_key: NestedKey = "terminated",
    ensemble_shape: tuple[int, ...] = (),
) -> A2CLoss:
    """The PG baseline (paper, section 4.1): the sender as an ordinary actor-critic whose action is the
    message, ``E[(Q(s, sigma) - V(s)) grad log phi(sigma | s)]``, blind to the receiver's response.

    ``critic`` is ``V^i(s)`` (a ``ValueOperator`` on the sender's observation).
    """
    return make_receiver_a2c_loss(
        scheme_as_actor(scheme, log_prob_key=log_prob_key),
        critic,
        gamma=gamma,
        entropy_coeff=entropy_coeff,
        critic_coeff=critic_coeff,
        loss_critic_type=loss_critic_type,
        action_key=scheme.message_key,
        reward_key=reward_key,
        value_key=value_key,
        log_prob_key=log_prob_key,
        done_key=done_key,
        terminated_key=terminated_key,
        ensemble_shape=ensemble_shape,
    )


#: ``SarsaPolicyGradientLoss(lookup=...)``: which index of ``Q(s, .)`` the advantage reads.
PG_LOOKUPS = ("message", "action")


class SarsaPolicyGradientLoss(LossModule):
    r"""The PG baseline as the authors' code builds it: the sender is an actor over messages with a critic
    ``Q(s, sigma)`` (one value per message) trained by SARSA from a target copy, and no receiver term.

    .. math::

        \mathcal{L}_\text{critic} = \big(Q(s, \sigma) - [r^i + \gamma (1 - d) Q_\text{target}(s', \sigma')]\big)^2,
        \qquad
        \mathcal{L}_\text{objective} = -\mathbb{E}\big[(Q(s, k) - \textstyle\sum_{\sigma''} \varphi(\sigma''|s)
            Q(s, \sigma'')) \log \varphi(\sigma | s)\big],

    with :math:`\sigma'` the message sent at the next step (``("next", message)``, written by
    :func:`attach_next_message`: SARSA, not expected SARSA), :math:`d` the terminated flag (a truncated step
    bootstraps) and the looked-up index :math:`k`:

    - ``lookup="message"`` (default): :math:`k = \sigma`, the message sent, the advantage of the action the
      policy took;
    - ``lookup="action"``: :math:`k = a`, the *receiver's action index* read as a message index (the authors'
      code does this; with |A| = 4 actions and 9 messages it reads one of ``Q(s, 0..3)`` whatever was sent). It is
      here for fidelity only: the advantage is then unrelated to the message whose log-probability it weights.

    The baseline :math:`\sum \varphi Q` leaves the expectation of the message-index gradient unchanged.
    Update the target copy with :class:`torchrl.objectives.SoftUpdate` after each step (the authors: tau 0.02).
    The default sender PG (:func:`make_sender_a2c_loss`) is TorchRL's A2C with a ``V(s)`` critic instead.

    Trains (``loss.parameters()``): the scheme's logits network and the critic.

    Args:
        scheme_network: the signaling scheme (a :class:`~msgzoo.modules.SignalingScheme` or a module that
            writes the logits).
        critic_network: ``Q(s, .)``, writes one value per message at ``message_value`` (e.g.
            ``make_action_value_critic(net, out_key=("sender", "message_value"))``).

    Keyword Args:
        gamma (float): the sender's discount. Default 0.99.
        lookup (str): ``"message"`` or ``"action"`` (above). Default ``"message"``.
        entropy_coeff (float): weight of an entropy bonus on the scheme (``loss_entropy``; the authors' has none).
            Default 0.0.
        critic_coeff (float): weight of ``loss_critic``. Default 1.0.
        loss_critic_type (str): ``"l2"`` (the authors' MSE), ``"l1"`` or ``"smooth_l1"``. Default ``"l2"``.
        ensemble_shape (tuple of int): the batch's leading dimensions that index seeds trained together
            (``(num_seeds,)`` with :class:`~msgzoo.modules.SeedEnsemble` networks): the loss is then each seed's
            mean summed over seeds (:func:`~msgzoo.objectives.common.reduce_per_seed`). Default ``()``: one run.

    Returns, from ``forward``, a TensorDict with ``loss_objective``, ``loss_critic`` (and ``loss_entropy``,
    ``entropy`` with a bonus) and the detached diagnostics ``sender_value`` (mean ``sum phi Q``) and ``advantage``
    (its mean absolute value).

    Examples:
        >>> from msgzoo.envs import recommendation_letter
        >>> from msgzoo.modules import VectorNet, make_action_value_critic, make_signaling_scheme
        >>> env = recommendation_letter(num_envs=8, seed=0)
        >>> scheme = make_signaling_scheme(VectorNet(2, 2, bias=False))
        >>> q = make_action_value_critic(VectorNet(2, 2), out_key=("sender", "message_value"))
        >>> loss = SarsaPolicyGradientLoss(scheme, q, gamma=0.0)
    """

    @dataclass
    class _AcceptedKeys:
        """Tensordict keys the loss reads; change them with :meth:`set_keys`.

        Attributes:
            logits (NestedKey): the scheme's logits. Defaults to ``("sender", "logits")``.
            message (NestedKey): the sent one-hot message; under ``"next"``, the next step's message (SARSA).
                Defaults to ``("sender", "message")``.
            action (NestedKey): the receiver's one-hot action (read with ``lookup="action"`` only).
                Defaults to ``("receiver", "action")``.
            reward (NestedKey): the sender's reward (under ``"next"``). Defaults to ``("sender", "reward")``.
            message_value (NestedKey): where the critic writes ``Q(s, .)``.
                Defaults to ``("sender", "message_value")``.
            done (NestedKey): done flag (under ``"next"``). Defaults to ``"done"``.
            terminated (NestedKey): terminated flag (under ``"next"``). Defaults to ``"terminated"``.
        """

        logits: NestedKey = ("sender", "logits")
        message: NestedKey = ("sender", "message")
        action: NestedKey = ("receiver", "action")
        reward: NestedKey = ("sender", "reward")
        message_value: NestedKey = ("sender", "message_value")
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    scheme_network: TensorDictModule
    critic_network: TensorDictModule
    critic_network_params: TensorDictParams
    target_critic_network_params: TensorDictParams

    def __init__(
        self,
        scheme_network: nn.Module,
        critic_network: TensorDictModule,
        *,
        gamma: float = 0.99,
        lookup: str = "message",
        entropy_coeff: float = 0.0,
        critic_coeff: float = 1.0,
        loss_critic_type: str = "l2",
        ensemble_shape: tuple[int, ...] = (),
    ):
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma} is invalid: expected a discount in [0, 1].")
        if lookup not in PG_LOOKUPS:
            raise ValueError(f"lookup={lookup!r} is invalid: expected one of {PG_LOOKUPS}.")
        if entropy_coeff < 0:
            raise ValueError(f"entropy_coeff={entropy_coeff} is invalid: expected a bonus >= 0.")
        super().__init__()
        self.scheme_network = logits_module_of(scheme_network)
        self.convert_to_functional(critic_network, "critic_network", create_target_params=True)
        self.gamma, self.lookup, self.entropy_coeff = float(gamma), lookup, float(entropy_coeff)
        self.critic_coeff, self.loss_critic_type = float(critic_coeff), loss_critic_type
        self.ensemble_shape = check_ensemble_shape(ensemble_shape)

    @property
    def in_keys(self) -> list:
        keys = self.tensor_keys
        nets = list(dict.fromkeys([*self.scheme_network.in_keys, *self.critic_network.in_keys]))
        root = [*nets, keys.message] + ([keys.action] if self.lookup == "action" else [])
        nxt = [keys.reward, keys.terminated] + ([*self.critic_network.in_keys, keys.message] if self.gamma > 0 else [])
        return list(dict.fromkeys([*root, *(("next", *_as_tuple(k)) for k in nxt)]))

    @property
    def out_keys(self) -> list:
        keys = ["loss_objective", "loss_critic", "sender_value", "advantage"]
        return keys + ["loss_entropy", "entropy"] if self.entropy_coeff > 0 else keys

    def _q(self, tensordict: TensorDictBase, params: TensorDictParams) -> torch.Tensor:
        critic = self.critic_network
        with params.to_module(critic, preserve_module_state=False):
            return critic_output(critic, tensordict, self.tensor_keys.message_value)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        check_writes(self.critic_network, keys.message_value, "message_value", "critic_network")
        # a lookup per key (the set of all leaves of a large batch costs more), as SenderCriticLoss._check_in_keys
        missing = [k for k in self.in_keys if not isinstance(tensordict.get(k, None), torch.Tensor)]
        if missing:
            raise KeyError(
                f"SarsaPolicyGradientLoss needs the keys {missing}, missing from the batch: the next step's message "
                f"is written by attach_next_message(batch, scheme); other names go to loss.set_keys(...)."
            )
        logits = scheme_logits(self.scheme_network, tensordict, keys.logits)
        log_phi_all = log_softmax(logits)
        message = tensordict.get(keys.message).to(logits.dtype)
        log_phi = (log_phi_all * message).sum(-1)

        q = self._q(tensordict, self.critic_network_params)
        _check_critic_width(q, logits.shape[-1], keys.message_value, "messages", "the scheme")
        nxt = tensordict.get("next")
        reward = nxt.get(keys.reward).squeeze(-1)
        with torch.no_grad():
            if self.gamma > 0:
                # SARSA: the target critic at the next state and the message actually sent there
                q_next = self._q(nxt, self.target_critic_network_params)
                q_next = (q_next * nxt.get(keys.message).to(q_next.dtype)).sum(-1)
                alive = (~nxt.get(keys.terminated).squeeze(-1)).to(q_next.dtype)
                target = reward + self.gamma * alive * q_next
            else:
                target = reward
        q_sent = (q * message).sum(-1)
        loss_critic = reduce_per_seed(distance_loss(q_sent, target.to(q_sent.dtype), self.loss_critic_type),
                                      self.ensemble_shape)

        with torch.no_grad():
            q = q.detach()
            if self.lookup == "message":
                q_looked_up = q_sent.detach()
            else:
                index = tensordict.get(keys.action).to(q.dtype).argmax(-1, keepdim=True)
                if int(index.max()) >= q.shape[-1]:
                    raise ValueError(
                        f"lookup='action' reads Q(s, .) at the receiver's action index, but an action index "
                        f"{int(index.max())} is >= the {q.shape[-1]} messages: use lookup='message'."
                    )
                q_looked_up = q.gather(-1, index).squeeze(-1)
            value = (log_phi_all.exp() * q).sum(-1)
            advantage = q_looked_up - value
        out = {
            "loss_objective": -reduce_per_seed(advantage * log_phi, self.ensemble_shape),
            "loss_critic": self.critic_coeff * loss_critic,
            "sender_value": value.mean(),
            "advantage": advantage.abs().mean(),
        }
        if self.entropy_coeff > 0:
            entropy = -(log_phi_all.exp() * log_phi_all).sum(-1)
            out["loss_entropy"] = -self.entropy_coeff * reduce_per_seed(entropy, self.ensemble_shape)
            out["entropy"] = entropy.detach().mean()
        return TensorDict(out, batch_size=[])


#: The receiver's policy-gradient estimators (``loss.receiver_gradient``): ``sampled`` (TorchRL's A2C on the action
#: taken), ``all_actions`` or ``natural`` (:class:`AllActionsA2CLoss`).
RECEIVER_GRADIENTS = ("sampled", "all_actions", "natural")


class AllActionsA2CLoss(LossModule):
    r"""An actor-critic whose policy gradient sums over every action (the "all-actions" gradient of Sutton et al.,
    2000; "mean actor-critic", Allen et al., 2017) instead of weighting the log-probability of the action taken:

    .. math::

        \mathcal{L}_\text{objective} = -\mathbb{E}_{o, \sigma}\Big[\textstyle\sum_a \pi(a | o, \sigma)
            \big(Q(o, \sigma, a) - V(o, \sigma)\big)\Big],
        \qquad V(o, \sigma) = \textstyle\sum_a \pi(a | o, \sigma) Q(o, \sigma, a),

        \mathcal{L}_\text{critic} = \big(Q(o, \sigma, a) - [r + \gamma (1 - d) V(o', \sigma')]\big)^2,

    with ``Q`` detached in the objective and ``V(o', sigma')`` (expected SARSA: the current policy at the next step's
    observation and message, no target copy, as TorchRL's TD(0) estimator bootstraps the A2C critic) detached in the
    target. Its expectation is the A2C gradient's, without the sampling noise of the action (it still has the
    critic's errors, and an action the receiver no longer takes keeps its last estimate). With ``natural=True`` the
    objective is ``-E[sum_a log pi(a | o, sigma) (A(a) - mean_b A(b))]``: each logit moves by its action's
    advantage, the natural policy gradient of a tabular softmax policy (Kakade, 2001) up to a common shift, without
    the ``pi(a)`` factor that slows an action the receiver has all but dropped. It is the receiver's learner of
    ``loss.receiver_gradient=all_actions`` (``natural``: ``loss.receiver_gradient=natural``); the receiver still acts
    by sampling.

    Trains (``loss.parameters()``): the actor's logits network and the critic.

    Args:
        actor_network: the receiver's policy, a ``ProbabilisticActor`` over a categorical on logits (e.g.
            :func:`~msgzoo.modules.make_receiver_actor`).
        critic_network: ``Q(o, sigma, .)``, one value per action at ``action_value`` (e.g.
            ``make_action_value_critic(net, in_keys=[("receiver", "observation"), ("sender", "message")],
            out_key=("receiver", "action_value"))``).

    Keyword Args:
        gamma (float): the discount. Default 0.0 (a myopic receiver).
        entropy_coeff (float): weight of the entropy bonus (``loss_entropy``; schedulable, as TorchRL's A2C's).
            Default 0.0.
        entropy_bonus (bool): whether to add the bonus term at all (None: ``entropy_coeff > 0``).
        critic_coeff (float): weight of ``loss_critic``. Default 1.0.
        loss_critic_type (str): ``"l2"``, ``"l1"`` or ``"smooth_l1"``. Default ``"l2"``.
        natural (bool): the natural gradient above instead of the all-actions gradient. Default False.
        ensemble_shape (tuple of int): the batch's leading seed dimensions (:func:`~msgzoo.objectives.reduce_per_seed`).
            Default ``()``: one run.

    Returns, from ``forward``, a TensorDict with ``loss_objective``, ``loss_critic`` (and ``loss_entropy`` with a
    bonus), and the detached ``entropy`` and ``state_value`` (the mean ``V(o, sigma)``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from msgzoo.modules import ObservationMessageNet, VectorNet, make_action_value_critic, make_receiver_actor
        >>> actor = make_receiver_actor(ObservationMessageNet(VectorNet(2, 2)))
        >>> critic = make_action_value_critic(ObservationMessageNet(VectorNet(2, 2)),
        ...     in_keys=[("receiver", "observation"), ("sender", "message")], out_key=("receiver", "action_value"))
        >>> loss = AllActionsA2CLoss(actor, critic)
        >>> td = TensorDict({("receiver", "observation"): torch.zeros(4, 0),
        ...     ("sender", "message"): torch.eye(2)[[0, 1, 1, 0]], ("receiver", "action"): torch.eye(2)[[1, 1, 0, 0]],
        ...     ("next", "receiver", "reward"): torch.ones(4, 1),
        ...     ("next", "terminated"): torch.ones(4, 1, dtype=torch.bool)}, batch_size=[4])
        >>> sorted(loss(td).keys())
        ['entropy', 'loss_critic', 'loss_objective', 'state_value']
    """

    @dataclass
    class _AcceptedKeys:
        """Tensordict keys the loss reads; change them with :meth:`set_keys`.

        Attributes:
            action (NestedKey): the one-hot action taken. Defaults to ``("receiver", "action")``.
            reward (NestedKey): the reward (under ``"next"``). Defaults to ``("receiver", "reward")``.
            action_value (NestedKey): where the critic writes ``Q(o, sigma, .)``.
                Defaults to ``("receiver", "action_value")``.
            terminated (NestedKey): terminated flag (under ``"next"``). Defaults to ``"terminated"``.
        """

        action: NestedKey = ("receiver", "action")
        reward: NestedKey = ("receiver", "reward")
        action_value: NestedKey = ("receiver", "action_value")
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    _schedulable_buffers = frozenset({"entropy_coeff"})

    actor_network: nn.Module
    critic_network: TensorDictModule

    def __init__(
        self,
        actor_network: nn.Module,
        critic_network: TensorDictModule,
        *,
        gamma: float = 0.0,
        entropy_coeff: float = 0.0,
        entropy_bonus: bool | None = None,
        critic_coeff: float = 1.0,
        loss_critic_type: str = "l2",
        natural: bool = False,
        ensemble_shape: tuple[int, ...] = (),
    ):
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma} is invalid: expected a discount in [0, 1].")
        if entropy_coeff < 0:
            raise ValueError(f"entropy_coeff={entropy_coeff} is invalid: expected a bonus >= 0.")
        super().__init__()
        self.natural = bool(natural)
        self.actor_network, self.critic_network = actor_network, critic_network
        self.gamma, self.critic_coeff, self.loss_critic_type = float(gamma), float(critic_coeff), loss_critic_type
        self.entropy_bonus = entropy_coeff > 0 if entropy_bonus is None else bool(entropy_bonus)
        self.register_buffer("entropy_coeff", torch.tensor(float(entropy_coeff)))
        self.ensemble_shape = check_ensemble_shape(ensemble_shape)

    @property
    def in_keys(self) -> list:
        keys = self.tensor_keys
        nets = [*self.actor_network.in_keys, *self.critic_network.in_keys]
        nxt = [keys.reward, keys.terminated] + (nets if self.gamma > 0 else [])
        return list(dict.fromkeys([*nets, keys.action, *(("next", *_as_tuple(k)) for k in nxt)]))

    @property
    def out_keys(self) -> list:
        keys = ["loss_objective", "loss_critic", "entropy", "state_value"]
        return keys + ["loss_entropy"] if self.entropy_bonus else keys

    def _log_probs(self, tensordict: TensorDictBase) -> torch.Tensor:
        return receiver_dist(self.actor_network, tensordict).logits  # normalised: log pi(. | o, sigma)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        check_writes(self.critic_network, keys.action_value, "action_value", "critic_network")
        log_pi = self._log_probs(tensordict)
        pi = log_pi.exp()
        q = critic_output(self.critic_network, tensordict, keys.action_value)
        _check_critic_width(q, pi.shape[-1], keys.action_value, "actions", "the actor")
        nxt = tensordict.get("next")
        reward = nxt.get(keys.reward).squeeze(-1)
        with torch.no_grad():
            if self.gamma > 0:  # expected SARSA on the current policy at the next observation and message
                q_next = critic_output(self.critic_network, nxt, keys.action_value)
                v_next = (self._log_probs(nxt).exp() * q_next).sum(-1)
                alive = (~nxt.get(keys.terminated).squeeze(-1)).to(v_next.dtype)
                target = reward + self.gamma * alive * v_next
            else:
                target = reward
            q_detached = q.detach()
            value = (pi.detach() * q_detached).sum(-1, keepdim=True)
            advantage = q_detached - value
        q_taken = (q * tensordict.get(keys.action).to(q.dtype)).sum(-1)
        loss_critic = distance_loss(q_taken, target.to(q_taken.dtype), self.loss_critic_type)
        entropy = -(pi * log_pi).sum(-1)
        if self.natural:  # d/d logit(a) = -(A(a) - mean_b A(b)): each logit moves by its advantage
            objective = (log_pi * (advantage - advantage.mean(-1, keepdim=True))).sum(-1)
        else:  # d/d logit(a) = -pi(a) A(a)
            objective = (pi * advantage).sum(-1)
        out = {
            "loss_objective": -reduce_per_seed(objective, self.ensemble_shape),
            "loss_critic": self.critic_coeff * reduce_per_seed(loss_critic, self.ensemble_shape),
            "entropy": entropy.detach().mean(),
            "state_value": value.mean(),
        }
        if self.entropy_bonus:
            out["loss_entropy"] = -self.entropy_coeff * reduce_per_seed(entropy, self.ensemble_shape)
        return TensorDict(out, batch_size=[])


@torch.no_grad()
def attach_next_message(tensordict: TensorDictBase, scheme: nn.Module, *, done_key: NestedKey = "done") -> TensorDictBase:
    """Writes the message the scheme sends at the next step into ``("next", ...)``, in place.

    The receiver's critic ``V(o', sigma')`` needs it to bootstrap. Within a rollout ``[..., T]`` the next
    message of step ``t`` is the message sent at ``t + 1``; the last step's is sampled afresh from the
    scheme (same distribution). Returns ``tensordict``.
    """
    key = scheme.message_key if isinstance(scheme, SignalingScheme) else scheme.out_keys[0]
    nxt = tensordict.get("next")
    fresh = scheme(nxt.select(*scheme.in_keys, strict=False).copy()).get(key)
    if tensordict.ndim >= 2:
        sent = tensordict.get(key)
        done = tensordict.get(("next", *((done_key,) if isinstance(done_key, str) else done_key))).squeeze(-1)
        # step t's next message is the one sent at t + 1, unless the episode ended (then it's fresh)
        shifted = torch.cat([sent[..., 1:, :], fresh[..., -1:, :]], dim=-2)
        fresh = torch.where(done.unsqueeze(-1), fresh, shifted)
    nxt.set(key, fresh)
    return tensordict


def _check_critic_width(values: torch.Tensor, expected: int, key: NestedKey, what: str, owner: str) -> None:
    """A critic with one output per message (or action) of the policy it scores, else ``ValueError`` naming both."""
    if values.shape[-1] != expected:
        raise ValueError(
            f"critic_network writes {values.shape[-1]} values at {key!r}, {owner} has {expected} {what}: build the "
            f"critic with one output per {what[:-1]}."
        )


def _prefix(key: NestedKey) -> tuple:
    return () if isinstance(key, str) else tuple(key[:-1])
