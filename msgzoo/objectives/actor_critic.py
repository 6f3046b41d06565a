"""A2C for the receiver and for the policy-gradient sender baseline, on TorchRL's own ``A2CLoss``."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.objectives import A2CLoss
from torchrl.objectives.value import TD0Estimator

from msgzoo.modules.signaling_scheme import SignalingScheme, scheme_as_actor


def make_receiver_a2c_loss(
    actor: nn.Module,
    critic: nn.Module,
    *,
    gamma: float = 0.1,
    entropy_coeff: float = 0.0,
    critic_coeff: float = 1.0,
    loss_critic_type: str = "l2",
    action_key: NestedKey = ("receiver", "action"),
    reward_key: NestedKey = ("receiver", "reward"),
    value_key: NestedKey = ("receiver", "state_value"),
    log_prob_key: NestedKey = ("receiver", "action_log_prob"),
    done_key: NestedKey = "done",
    terminated_key: NestedKey = "terminated",
) -> A2CLoss:
    """TorchRL's ``A2CLoss`` on the receiver's keys (paper, section 4.2: the receiver's policy gradient
    with advantage ``A(o, sigma, a)``), with a TD(0) value estimator.

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
    loss = A2CLoss(
        actor_network=actor,
        critic_network=critic,
        entropy_bonus=entropy_coeff > 0,
        entropy_coeff=entropy_coeff if entropy_coeff > 0 else None,
        critic_coeff=critic_coeff,
        loss_critic_type=loss_critic_type,
    )
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
    )


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


def _prefix(key: NestedKey) -> tuple:
    return () if isinstance(key, str) else tuple(key[:-1])
