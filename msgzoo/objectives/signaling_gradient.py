"""The signaling gradient (paper, Lemma 4.1, eq. 2) as a TorchRL loss module."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn

from msgzoo.modules.gumbel import straight_through_one_hot
from msgzoo.modules.small_softmax import log_softmax, softmax
from msgzoo.objectives.common import (
    SenderCriticLoss,
    action_value_td_loss,
    check_ensemble_shape,
    check_reads,
    frozen,
    logits_module_of,
    memo_receiver_probs_all_messages,
    receiver_log_prob,
    receiver_log_probs_all_actions,
    recommended,
    reduce_per_seed,
    scheme_logits,
    value_under_policies,
)

#: The estimators of eq. 2 (``gradient=``): ``sampled`` on the message and action sent, ``expected`` in closed form
#: over every message and action.
SENDER_GRADIENTS = ("sampled", "expected")


class SignalingGradientLoss(SenderCriticLoss):
    r"""The sender's signaling gradient with its action-value critic ``W^i``.

    Lemma 4.1 (eq. 2) of Lin et al. (2023):

    .. math::

        \nabla_\eta V^i(s) \propto \mathbb{E}_{\varphi,\pi}\big[(W^i(s,a) - V^i(s))
            (\nabla_\eta \log\varphi_\eta(\sigma|s,o) + c\,\nabla_\eta \log\pi_\theta(a|o,\sigma))\big],

    with the baseline :math:`V^i(s)=\sum_\sigma\varphi(\sigma|s,o)\sum_a\pi(a|o,\sigma)W^i(s,a)` (which
    leaves the expectation unchanged). The :math:`\log\pi` term reaches :math:`\eta` only *through the
    message*: the message is rebuilt as a straight-through Gumbel-softmax from the stored noise (equal
    to the sent one-hot message, with the soft sample's gradient), and the receiver's parameters are
    detached. ``receiver_coeff`` is :math:`c` (the paper's derivation gives 1, the reference code uses 2;
    0 gives a score-function-only sender, the "signal as an action" gradient with a ``W`` critic).

    The critic :math:`W^i(s,\cdot)` is trained by TD(0) with an expected-SARSA target from a target
    network (update it with :class:`torchrl.objectives.SoftUpdate`); :meth:`make_value_estimator` gives it a
    TD(1) or TD(lambda) target instead (``ValueEstimators.TD1`` / ``TDLambda``, on ``[*B, T]`` rollouts).

    Trains (``loss.parameters()``): the scheme and the critic. The receiver is read, never trained, and its
    parameters are not among the loss's.

    Args:
        scheme_network: the signaling scheme (a :class:`~msgzoo.modules.SignalingScheme` or a module that
            writes the logits).
        receiver_network: the receiver's ``ProbabilisticActor`` (reads the message at ``message``).
        critic_network: ``W^i(s, .)``, writes one value per receiver action at ``action_value``.

    Keyword Args:
        receiver_coeff (float): :math:`c`, the weight of the receiver's log-prob term. Default 2.0.
        gamma (float): the sender's discount. Default 0.99.
        temperature (float): Gumbel-softmax temperature of the rebuilt message. Default 1.0.
        critic_coeff (float): weight of the critic loss in ``loss_critic``. Default 1.0.
        loss_critic_type (str): ``"l2"``, ``"l1"`` or ``"smooth_l1"``. Default ``"l2"``.
        num_messages (int, optional): size of the message space; read from the logits if omitted.
        entropy_coeff (float): weight of an entropy bonus on the scheme, ``-entropy_coeff * H(phi(. | s))``
            returned as ``loss_entropy`` (not part of eq. 2; a regulariser that keeps the scheme from
            saturating early). Default 0.0: no bonus, no ``loss_entropy`` key.
        ensemble_shape (tuple of int): the batch's leading dimensions that index seeds trained together, e.g.
            ``(num_seeds,)`` with :class:`~msgzoo.modules.SeedEnsemble` networks: every ``loss_*`` term is then
            each seed's mean summed over seeds (:func:`~msgzoo.objectives.common.reduce_per_seed`), so each seed's
            parameters get their own run's gradient. Default ``()``: one run, plain means.
        gradient (str): the estimator of eq. 2. ``"sampled"`` (the paper's): both terms at the message and action
            sent, weighted by the sampled action's advantage :math:`W^i(s,a) - V^i(s)`. ``"expected"``: eq. 2's
            expectation taken in closed form where it can be, with the same critic: the :math:`\log\varphi` term
            over every message and action, :math:`\sum_\sigma \nabla_\eta\varphi_\eta(\sigma|s,o)
            \big(\sum_a\pi(a|o,\sigma)W^i(s,a) - V^i(s)\big)`, and the :math:`\log\pi` term over every action at
            the (straight-through) message sent, :math:`\sum_a \pi(a|o,\sigma)(W^i(s,a) - V^i(s))
            \nabla_\eta\log\pi_\theta(a|o,\sigma(\eta))`. The same expected gradient without the sampling noise
            of the message and the action (only that of the states and the Gumbel noise is left), as
            ``counterfactual="all"`` does for the obedience constraints. Default ``"sampled"``.

    Returns, from ``forward``, a TensorDict with ``loss_signaling`` (the negated surrogate of eq. 2),
    ``loss_critic`` and the detached diagnostics ``sender_value`` (mean :math:`V^i(s)`) and ``advantage``.

    Examples:
        >>> import torch
        >>> from msgzoo.envs import recommendation_letter
        >>> from msgzoo.modules import (ObservationMessageNet, VectorNet, make_action_value_critic,
        ...     make_receiver_actor, make_signaling_scheme)
        >>> from msgzoo.objectives import SignalingGradientLoss
        >>> env = recommendation_letter(num_envs=16, seed=0)
        >>> scheme = make_signaling_scheme(VectorNet(2, 2, bias=False))
        >>> receiver = make_receiver_actor(ObservationMessageNet(VectorNet(2, 2, bias=False)))
        >>> loss = SignalingGradientLoss(scheme, receiver, make_action_value_critic(VectorNet(2, 2)))
        >>> td = env.step(receiver(scheme(env.reset())))
        >>> out = loss(td)
        >>> (out["loss_signaling"] + out["loss_critic"]).backward()
    """

    @dataclass
    class _AcceptedKeys:
        """Tensordict keys the loss reads; change them with :meth:`set_keys`.

        Attributes:
            logits (NestedKey): where the scheme writes its logits. Defaults to ``("sender", "logits")``.
            message (NestedKey): the sent one-hot message (also what the receiver reads).
                Defaults to ``("sender", "message")``.
            gumbel (NestedKey): the Gumbel noise the message was sampled with.
                Defaults to ``("sender", "gumbel")``.
            action (NestedKey): the receiver's one-hot action. Defaults to ``("receiver", "action")``.
            reward (NestedKey): the sender's reward (read under ``"next"``).
                Defaults to ``("sender", "reward")``.
            action_value (NestedKey): where the critic writes ``W^i(s, .)``.
                Defaults to ``("sender", "action_value")``.
            value (NestedKey): where a value estimator's state value ``V^i(s)`` is written (only with
                :meth:`make_value_estimator`). Defaults to ``("sender", "value")``.
            done (NestedKey): done flag (under ``"next"``). Defaults to ``"done"``.
            terminated (NestedKey): terminated flag (under ``"next"``). Defaults to ``"terminated"``.
        """

        logits: NestedKey = ("sender", "logits")
        message: NestedKey = ("sender", "message")
        gumbel: NestedKey = ("sender", "gumbel")
        action: NestedKey = ("receiver", "action")
        reward: NestedKey = ("sender", "reward")
        action_value: NestedKey = ("sender", "action_value")
        value: NestedKey = ("sender", "value")
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    scheme_network: TensorDictModule
    receiver_network: nn.Module
    critic_network: TensorDictModule
    critic_network_params: TensorDictParams
    target_critic_network_params: TensorDictParams

    def __init__(
        self,
        scheme_network: nn.Module,
        receiver_network: nn.Module,
        critic_network: TensorDictModule,
        *,
        receiver_coeff: float = 2.0,
        gamma: float = 0.99,
        temperature: float = 1.0,
        critic_coeff: float = 1.0,
        loss_critic_type: str = "l2",
        num_messages: int | None = None,
        entropy_coeff: float = 0.0,
        recommendation_weight: float = 0.0,
        ensemble_shape: tuple[int, ...] = (),
        gradient: str = "sampled",
    ):
        if gradient not in SENDER_GRADIENTS:
            raise ValueError(f"gradient={gradient!r} is invalid: expected one of {SENDER_GRADIENTS}.")
        if not 0.0 <= recommendation_weight <= 1.0:
            raise ValueError(f"recommendation_weight={recommendation_weight} is invalid: expected a weight in [0, 1].")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma} is invalid: expected a discount in [0, 1].")
        if entropy_coeff < 0:
            raise ValueError(f"entropy_coeff={entropy_coeff} is invalid: expected a bonus >= 0.")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} is invalid: expected a positive temperature.")
        super().__init__()
        self.scheme_network = logits_module_of(scheme_network)
        self.receiver_network = receiver_network
        self.convert_to_functional(critic_network, "critic_network", create_target_params=True)
        self.receiver_coeff, self.gamma, self.temperature = float(receiver_coeff), float(gamma), float(temperature)
        self.critic_coeff, self.loss_critic_type, self.num_messages = float(critic_coeff), loss_critic_type, num_messages
        self.entropy_coeff = float(entropy_coeff)
        self.recommendation_weight = float(recommendation_weight)
        self.ensemble_shape = check_ensemble_shape(ensemble_shape)
        self.gradient = gradient

    def _extra_in_keys(self) -> list:
        return [self.tensor_keys.gumbel]

    @property
    def out_keys(self) -> list:
        keys = ["loss_signaling", "loss_critic", "sender_value", "advantage"]
        return keys + ["loss_entropy", "entropy"] if self.entropy_coeff > 0 else keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        check_reads(self.receiver_network, keys.message, "message", "receiver_network")
        self._check_in_keys(tensordict)
        logits = scheme_logits(self.scheme_network, tensordict, keys.logits)
        num_messages = logits.shape[-1]
        message = tensordict.get(keys.message).to(logits.dtype)
        action = tensordict.get(keys.action)
        sampled = self.gradient == "sampled"
        log_phi = (log_softmax(logits) * message).sum(-1) if sampled else None

        # log pi(a | o, sigma(eta)): the straight-through message carries eta's gradient, theta is frozen.
        st_message = straight_through_one_hot(logits, tensordict.get(keys.gumbel), self.temperature, hard=message)
        inputs = tensordict.select(*self.receiver_network.in_keys, strict=False).copy()
        inputs.set(keys.message, st_message)
        with frozen(self.receiver_network):
            if sampled:  # at the action taken
                log_pi = receiver_log_prob(self.receiver_network, inputs, action)
            else:  # at every action
                log_pi = receiver_log_probs_all_actions(self.receiver_network, inputs, action.shape[-1])

        loss_critic, w = action_value_td_loss(
            self, tensordict, scheme=self.scheme_network, receiver=self.receiver_network,
            num_messages=num_messages, gamma=self.gamma, loss_type=self.loss_critic_type,
        )
        with torch.no_grad():
            pi_all = memo_receiver_probs_all_messages(self, tensordict, num_messages)
            value = value_under_policies(softmax(logits), pi_all, w)
            advantage = (w * action.to(w.dtype)).sum(-1) - value
        if sampled:
            surrogate = advantage * (log_phi + self.receiver_coeff * log_pi)
        else:
            with torch.no_grad():  # what each message is worth, and pi(. | o, sigma sent)
                message_advantage = torch.einsum("...ka,...a->...k", pi_all, w) - value.unsqueeze(-1)
                pi_sent = torch.einsum("...ka,...k->...a", pi_all, message)
                action_advantage = w - value.unsqueeze(-1)
            score = (softmax(logits) * message_advantage).sum(-1)
            path = (pi_sent * action_advantage * log_pi).sum(-1)
            surrogate = score + self.receiver_coeff * path
        loss_signaling = -reduce_per_seed(surrogate, self.ensemble_shape)
        beta = self.recommendation_weight
        if beta > 0:
            # the value of the scheme to a receiver that obeys it (message k = "take action k"), exactly in phi
            obeyed = (softmax(logits) * recommended(w, num_messages)).sum(-1)
            loss_signaling = (1.0 - beta) * loss_signaling - beta * reduce_per_seed(obeyed, self.ensemble_shape)
        out = {
            "loss_signaling": loss_signaling,
            "loss_critic": self.critic_coeff * loss_critic,
            "sender_value": value.mean(),
            "advantage": advantage.abs().mean(),
        }
        if self.entropy_coeff > 0:
            log_probs = log_softmax(logits)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            out["loss_entropy"] = -self.entropy_coeff * reduce_per_seed(entropy, self.ensemble_shape)
            out["entropy"] = entropy.detach().mean()
        return TensorDict(out, batch_size=[])
