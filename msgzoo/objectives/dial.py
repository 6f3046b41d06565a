"""DIAL (Foerster et al., 2016) as a TorchRL loss module: the receiver's TD error reaches the sender."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torchrl.objectives import LossModule
from torchrl.objectives.utils import distance_loss

from msgzoo.modules.dial import DiscretiseRegulariseUnit
from msgzoo.objectives.common import check_ensemble_shape, check_reads, reduce_per_seed


class DIALLoss(LossModule):
    r"""Differentiable inter-agent learning: the receiver's Q-learning loss, back-propagated through
    the real-valued message into the sender.

    .. math::

        \mathcal{L}(\theta, \eta) = \big(r^j + \gamma (1 - \text{term}) \max_{a'} Q_{\bar\theta}(o', m')
            - Q_\theta(o, \mathrm{DRU}(m_\eta(s)), a)\big)^2 ,

    with :math:`\mathrm{DRU}(m) = \mathrm{sigmoid}(m + \text{noise})` rebuilt from the stored noise, so the
    gradient reaches :math:`\eta` through the message (the paper's section 2 and the baseline of its
    section 5). The sender has no objective of its own: it learns to help the receiver's value estimate,
    which is why DIAL ends near the honest scheme in a mixed-motive game. The next message ``m'`` is sent
    by the current sender with fresh noise, no gradient; ``Q`` has a target copy (``SoftUpdate``).

    Args:
        sender_network: the module that writes the message logits ``m`` (the first module of
            :func:`~msgzoo.modules.dial.make_dial_sender`, or the whole sequence).
        receiver_network: the module that writes ``Q(o, m, .)`` at ``action_value``.

    Keyword Args:
        gamma (float): the receiver's discount. Default 0.1.
        loss_type (str): ``"l2"``, ``"l1"`` or ``"smooth_l1"``. Default ``"l2"``.
        ensemble_shape (tuple of int): the batch's leading dimensions that index seeds trained together
            (``(num_seeds,)`` with :class:`~msgzoo.modules.SeedEnsemble` networks): the loss is then each seed's
            mean summed over seeds (:func:`~msgzoo.objectives.common.reduce_per_seed`). Default ``()``: one run.

    Examples:
        >>> import torch
        >>> from msgzoo.envs import recommendation_letter
        >>> from msgzoo.modules import ObservationMessageNet, VectorNet
        >>> from msgzoo.modules.dial import make_dial_receiver, make_dial_sender
        >>> from msgzoo.objectives import DIALLoss
        >>> env = recommendation_letter(num_envs=8, seed=0)
        >>> sender = make_dial_sender(VectorNet(2, 2))
        >>> receiver = make_dial_receiver(ObservationMessageNet(VectorNet(2, 2)), 2)
        >>> loss = DIALLoss(sender, receiver)
        >>> loss(env.step(receiver(sender(env.reset()))))["loss_dial"].backward()
    """

    @dataclass
    class _AcceptedKeys:
        """Tensordict keys the loss reads; change them with :meth:`set_keys`.

        Attributes:
            message_logits (NestedKey): the sender's pre-DRU output. Defaults to ``("sender", "message_logits")``.
            noise (NestedKey): the DRU noise used at collection. Defaults to ``("sender", "dru_noise")``.
            message (NestedKey): the message the receiver reads. Defaults to ``("sender", "message")``.
            action (NestedKey): the receiver's one-hot action. Defaults to ``("receiver", "action")``.
            action_value (NestedKey): where the receiver writes ``Q(o, m, .)``.
                Defaults to ``("receiver", "action_value")``.
            reward (NestedKey): the receiver's reward (under ``"next"``). Defaults to ``("receiver", "reward")``.
            done (NestedKey): Defaults to ``"done"``.
            terminated (NestedKey): Defaults to ``"terminated"``.
        """

        message_logits: NestedKey = ("sender", "message_logits")
        noise: NestedKey = ("sender", "dru_noise")
        message: NestedKey = ("sender", "message")
        action: NestedKey = ("receiver", "action")
        action_value: NestedKey = ("receiver", "action_value")
        reward: NestedKey = ("receiver", "reward")
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    sender_network: TensorDictModule
    receiver_network: TensorDictModule
    receiver_network_params: TensorDictParams
    target_receiver_network_params: TensorDictParams

    def __init__(
        self, sender_network: nn.Module, receiver_network: nn.Module, *, gamma: float = 0.1, loss_type: str = "l2",
        ensemble_shape: tuple[int, ...] = (),
    ):
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma} is invalid: expected a discount in [0, 1].")
        super().__init__()
        self.sender_network = _first(sender_network)
        self.dru = next((m for m in getattr(sender_network, "module", []) if isinstance(m, DiscretiseRegulariseUnit)), None)
        self.convert_to_functional(_first(receiver_network), "receiver_network", create_target_params=True)
        self.gamma, self.loss_type = float(gamma), loss_type
        self.ensemble_shape = check_ensemble_shape(ensemble_shape)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def _q(self, tensordict: TensorDictBase, params) -> torch.Tensor:
        q = self.receiver_network
        with params.to_module(q, preserve_module_state=False):  # targets stay plain tensors (SoftUpdate)
            return q(tensordict.select(*q.in_keys, strict=False).copy()).get(self.tensor_keys.action_value)

    def _message(self, tensordict: TensorDictBase, noise: torch.Tensor | None) -> torch.Tensor:
        logits = self.sender_network(tensordict.select(*self.sender_network.in_keys, strict=False).copy()).get(
            self.tensor_keys.message_logits
        )
        if noise is None:
            std = self.dru.noise_std if self.dru is not None else 0.0
            noise = std * torch.randn_like(logits)
        return DiscretiseRegulariseUnit.regularise(logits, noise)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        check_reads(self.receiver_network, keys.message, "message", "receiver_network")
        inputs = tensordict.select(*self.receiver_network.in_keys, strict=False).copy()
        inputs.set(keys.message, self._message(tensordict, tensordict.get(keys.noise)))
        q = self._q(inputs, self.receiver_network_params)
        q_taken = (q * tensordict.get(keys.action).to(q.dtype)).sum(-1)
        reward = tensordict.get(("next", *_tuple(keys.reward))).squeeze(-1)
        terminated = tensordict.get(("next", *_tuple(keys.terminated))).squeeze(-1)
        with torch.no_grad():
            if self.gamma > 0:
                nxt = tensordict.get("next").copy()
                nxt.set(keys.message, self._message(nxt, None))
                q_next = self._q(nxt, self.target_receiver_network_params).max(-1).values
                target = reward + self.gamma * (~terminated).to(reward.dtype) * q_next
            else:
                target = reward
        loss = reduce_per_seed(distance_loss(q_taken, target.to(q_taken.dtype), self.loss_type), self.ensemble_shape)
        return TensorDict({"loss_dial": loss, "q_value": q_taken.detach().mean()}, batch_size=[])


def _first(module: nn.Module) -> nn.Module:
    inner = getattr(module, "module", None)
    if isinstance(inner, nn.ModuleList) and len(inner) > 0:
        return inner[0]
    return module


def _tuple(key: NestedKey) -> tuple:
    return (key,) if isinstance(key, str) else tuple(key)
