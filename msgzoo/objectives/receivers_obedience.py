"""Obedience per receiver for one sender and a group of receivers (eq. 4 for several receivers), a TorchRL loss."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from msgzoo.modules.receivers_group import MessageRouting, ReceiversNet, _profiles
from msgzoo.modules.small_softmax import softmax
from msgzoo.objectives.common import logits_module_of, scheme_logits


def receivers_obedience_matrix(
    phi: torch.Tensor, pi_view: torch.Tensor, w: torch.Tensor, routing: MessageRouting, weights: torch.Tensor | None = None
) -> torch.Tensor:
    r"""``C[j, x, x']``: receiver ``j``'s gain from following its policy after view ``x`` rather than acting as
    after ``x'``, the others following theirs (eq. 4 per receiver):

    .. math::

        C_j(x,x') = \sum_t w_t\sum_{m:\,v_j(m)=x}\varphi(m\mid s_t)\sum_a\big(\pi_j(a_j\mid x)-\pi_j(a_j\mid x')\big)
            \prod_{i\ne j}\pi_i(a_i\mid v_i(m))\,W_j(s_t,a)

    Args:
        phi: ``[T, M]`` the scheme over message profiles at each sampled (or enumerated) state.
        pi_view: ``[N, X, |A|]`` receiver ``j``'s policy after each view (receivers that see only their message).
        w: ``[T, N, |A|^N]`` each receiver's action value of every action profile at the same states.
        routing: the :class:`~msgzoo.modules.receivers_group.MessageRouting` (what each receiver sees of ``m``).
        weights: ``[T]`` weights of the states (default: ``1 / T``, the batch mean; the prior to enumerate).

    Returns:
        ``[N, X, X]``; the diagonal is zero.
    """
    n, x_size, k = pi_view.shape
    profiles = _profiles(n, k).to(pi_view.device)  # [A^N, N]
    view = routing.route.argmax(-1)  # [N, M]: v_j(m)
    # per[j, m, a] = pi_j(a_j | v_j(m)) for every action profile a
    per = torch.stack([pi_view[j][view[j]][:, profiles[:, j]] for j in range(n)])  # [N, M, A^N]
    joint = per.prod(0)  # [M, A^N]
    # dev[j, x', m, a] = pi_j(a_j | x') prod_{i != j} pi_i(a_i | v_i(m)) (products, not joint / per: exact zeros)
    others = torch.stack([per[[i for i in range(n) if i != j]].prod(0) for j in range(n)])  # [N, M, A^N]
    own_dev = torch.stack([pi_view[j][:, profiles[:, j]] for j in range(n)])  # [N, X, A^N]
    dev = others.unsqueeze(1) * own_dev.unsqueeze(2)  # [N, X, M, A^N]
    q = torch.einsum("ma,tja->tjm", joint, w)  # [T, N, M]
    q_dev = torch.einsum("jyma,tja->tjym", dev, w)  # [T, N, X', M]
    gain = q.unsqueeze(2) - q_dev  # [T, N, X', M]
    told = torch.nn.functional.one_hot(view, x_size).to(phi.dtype)  # [N, M, X]
    if weights is None:
        weights = torch.full((phi.shape[0],), 1.0 / phi.shape[0], dtype=phi.dtype, device=phi.device)
    return torch.einsum("t,tm,jmx,tjym->jxy", weights, phi, told, gain)


class ReceiversObedienceLoss(LossModule):
    r"""Obedience per receiver (eq. 4 for a group of receivers), estimated on a batch, as a penalty on the scheme.

    ``loss_obedience = lagrange_multiplier * sum_{j, x != x'} relu(epsilon - C_hat[j, x, x'])`` with
    :func:`receivers_obedience_matrix` on the batch's states (gradient through the scheme only; the receivers'
    policies and the critic are detached), plus ``loss_critic``: the critic ``W_j(s, a)`` of every receiver,
    ``[.., N, |A|^N]``, regressed on the receivers' rewards of the action profile played (one-step games: the
    target is the reward).

    The receivers must see only their messages (an empty observation): their policy after each view is then one
    table, computed once per batch.

    Args:
        scheme_network: the scheme over message profiles (writes ``logits``).
        receivers_net: the :class:`~msgzoo.modules.receivers_group.ReceiversNet` of the receivers' actor.
        critic_network: writes ``action_value`` ``[.., N, |A|^N]`` from the sender's observation.
        routing: the :class:`~msgzoo.modules.receivers_group.MessageRouting`.

    Keyword Args:
        lagrange_multiplier (float): lambda. Default 20.0.
        epsilon (float): the constraints' right-hand side. Default 0.01.
    """

    @dataclass
    class _AcceptedKeys:
        """Tensordict keys the loss reads; change them with :meth:`set_keys`.

        Attributes:
            logits (NestedKey): the scheme's logits over profiles. Defaults to ``("sender", "logits")``.
            action_profile (NestedKey): the one-hot action profile played. Defaults to ``("sender", "action_profile")``.
            reward (NestedKey): the receivers' rewards ``[.., N, 1]`` (under ``"next"``).
                Defaults to ``("receivers", "reward")``.
            action_value (NestedKey): where the critic writes ``W_j(s, .)``.
                Defaults to ``("sender", "receivers_action_value")``.
        """

        logits: NestedKey = ("sender", "logits")
        action_profile: NestedKey = ("sender", "action_profile")
        reward: NestedKey = ("receivers", "reward")
        action_value: NestedKey = ("sender", "receivers_action_value")

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(
        self,
        scheme_network: torch.nn.Module,
        receivers_net: ReceiversNet,
        critic_network: TensorDictModule,
        routing: MessageRouting,
        *,
        lagrange_multiplier: float = 20.0,
        epsilon: float = 0.01,
    ):
        if lagrange_multiplier < 0:
            raise ValueError(f"lagrange_multiplier={lagrange_multiplier} is invalid: expected lambda >= 0.")
        super().__init__()
        self.scheme_network = logits_module_of(scheme_network)
        self.critic_network = critic_network
        self.routing = routing
        self.lagrange_multiplier, self.epsilon = float(lagrange_multiplier), float(epsilon)
        self.receivers_net = receivers_net  # read, never trained (left out of named_parameters)

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """The parameters this loss trains: the scheme's and its critic's, not the receivers' it reads."""
        skip = f"{prefix}.receivers_net." if prefix else "receivers_net."
        for name, param in super().named_parameters(prefix=prefix, recurse=recurse):
            if not name.startswith(skip):
                yield name, param

    @property
    def out_keys(self) -> list:
        return ["loss_obedience", "loss_critic", "constraint_min", "violation_rate"]

    @torch.no_grad()
    def receiver_tables(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[N, X, |A|]``: each receiver's policy after each view it can see."""
        n, x = self.routing.num_receivers, self.routing.view_size
        device = self.routing.route.device
        message = torch.eye(x, device=device, dtype=dtype).unsqueeze(1).expand(x, n, x)
        logits = self.receivers_net(torch.zeros(x, n, 0, device=device, dtype=dtype), message)  # [X, N, A]
        return softmax(logits).transpose(0, 1)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        logits = scheme_logits(self.scheme_network, tensordict, keys.logits)
        phi = softmax(logits)
        critic_out = self.critic_network(tensordict.select(*self.critic_network.in_keys, strict=False).copy())
        w = critic_out.get(keys.action_value)  # [B, N, A^N]
        played = tensordict.get(keys.action_profile).to(w.dtype)  # [B, A^N]
        reward = tensordict.get(("next", *keys.reward)).squeeze(-1)  # [B, N]
        loss_critic = ((w * played.unsqueeze(-2)).sum(-1) - reward).pow(2).mean()
        c = receivers_obedience_matrix(phi, self.receiver_tables(phi.dtype), w.detach(), self.routing)
        off = ~torch.eye(c.shape[-1], dtype=torch.bool, device=c.device).expand_as(c)
        hinge = torch.relu(self.epsilon - c[off])
        return TensorDict(
            {
                "loss_obedience": self.lagrange_multiplier * hinge.sum(),
                "loss_critic": loss_critic,
                "constraint_min": c[off].min().detach(),
                "violation_rate": (c[off] < self.epsilon).float().mean().detach(),
            },
            batch_size=[],
        )
