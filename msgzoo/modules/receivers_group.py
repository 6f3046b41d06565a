"""Modules for one sender and a group of N receivers (:class:`~msgzoo.envs.MultiReceiverPersuasionEnv`).

The sender's scheme is an ordinary :class:`~msgzoo.modules.SignalingScheme` over *message profiles*: one categorical
over ``M`` joint messages (private: ``M = K^N``, one message per receiver, so recommendations can be correlated, as
the private optimum needs; public: ``M`` messages every receiver sees). :class:`MessageRouting` turns the sent
profile into each receiver's view ``[.., N, X]``, a linear map, so a straight-through message keeps its gradient.
Each receiver acts on its own view with its own parameters (TorchRL's ``MultiAgentMLP``); the group as one
actor over joint actions (:func:`make_joint_receivers_actor`, ``log pi(a | m) = sum_j log pi_j(a_j | view_j(m))``)
is what the sender's signaling gradient differentiates.
"""
from __future__ import annotations

import itertools

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.utils import NestedKey
from torch import nn
from torch.distributions import OneHotCategorical
from torchrl.modules import MultiAgentMLP, ProbabilisticActor

from msgzoo.envs.common import require

SIGNALING = ("private", "public")


def _profiles(num_agents: int, size: int) -> torch.Tensor:
    """``[size^N, N]`` row-major profiles (the last agent varies fastest), as the env indexes them."""
    return torch.tensor(list(itertools.product(range(size), repeat=num_agents)), dtype=torch.long)


class MessageRouting(nn.Module):
    """``[.., M]`` message profile -> ``[.., N, X]``: what each receiver sees.

    Private: ``M = K^N`` and receiver ``j`` sees component ``m_j`` (``X = K``); public: ``X = M``, every receiver
    sees the whole message.
    """

    def __init__(self, num_receivers: int, num_messages: int, signaling: str = "private"):
        super().__init__()
        require(signaling in SIGNALING, "signaling", signaling, f"one of {SIGNALING}")
        self.num_receivers, self.num_messages, self.signaling = num_receivers, num_messages, signaling
        if signaling == "private":
            route = torch.nn.functional.one_hot(_profiles(num_receivers, num_messages), num_messages).float()
            route = route.transpose(0, 1)  # [N, K^N, K]
        else:
            route = torch.eye(num_messages).expand(num_receivers, num_messages, num_messages).clone()
        self.register_buffer("route", route)

    @property
    def profile_size(self) -> int:
        """``M``, the size of the scheme's categorical."""
        return self.route.shape[1]

    @property
    def view_size(self) -> int:
        """``X``, the size of each receiver's message."""
        return self.route.shape[2]

    def forward(self, profile: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...m,nmx->...nx", profile, self.route.to(profile.dtype))


class JointLogits(nn.Module):
    """Per-receiver logits ``[.., N, |A|]`` -> joint log-probabilities over action profiles ``[.., |A|^N]``."""

    def __init__(self, num_receivers: int, num_actions: int):
        super().__init__()
        self.register_buffer("profiles", _profiles(num_receivers, num_actions))  # [|A|^N, N]

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, -1)  # [.., N, A]
        idx = self.profiles.T.expand(*logp.shape[:-1], self.profiles.shape[0])  # [.., N, A^N]
        return logp.gather(-1, idx).sum(-2)


class ProfileIndex(nn.Module):
    """One-hot actions ``[.., N, |A|]`` -> the one-hot action profile ``[.., |A|^N]`` (row-major, as the env)."""

    def __init__(self, num_receivers: int, num_actions: int):
        super().__init__()
        self.num_actions = num_actions
        self.register_buffer("strides", num_actions ** torch.arange(num_receivers - 1, -1, -1))

    def forward(self, action: torch.Tensor) -> torch.Tensor:
        index = (action.argmax(-1) * self.strides).sum(-1)
        return torch.nn.functional.one_hot(index, self.num_actions ** self.strides.numel()).to(action.dtype)


class ReceiversNet(nn.Module):
    """``(observation [.., N, O], message [.., N, X]) -> logits [.., N, |A|]``: one bias-free linear map per
    receiver on its observation and message (TorchRL's ``MultiAgentMLP``, depth 0, no parameter sharing)."""

    def __init__(self, num_receivers: int, observation_size: int, view_size: int, num_actions: int, *, depth: int = 0):
        super().__init__()
        self.net = MultiAgentMLP(
            n_agent_inputs=observation_size + view_size, n_agent_outputs=num_actions, n_agents=num_receivers,
            centralized=False, share_params=False, depth=depth, num_cells=32, bias_last_layer=False,
        )

    def forward(self, observation: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([observation.to(message.dtype), message], -1))


class _RoutedNet(nn.Module):
    """``(observation, profile) -> per-receiver logits``: the routing, then the receivers' net."""

    def __init__(self, routing: MessageRouting, net: ReceiversNet):
        super().__init__()
        self.routing, self.net = routing, net

    def forward(self, observation: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        return self.net(observation, self.routing(profile))


def make_receivers_actor(
    net: ReceiversNet,
    *,
    observation_key: NestedKey = ("receivers", "observation"),
    message_key: NestedKey = ("sender", "message"),
    logits_key: NestedKey = ("receivers", "logits"),
    action_key: NestedKey = ("receivers", "action"),
    log_prob_key: NestedKey = ("receivers", "action_log_prob"),
) -> ProbabilisticActor:
    """The receivers as a group actor: each samples its one-hot action from its own view ``[.., N, X]``
    (``log_prob`` per receiver, ``[.., N]``), what the env steps and the receivers' A2C trains."""
    module = TensorDictModule(net, in_keys=[observation_key, message_key], out_keys=[logits_key])
    return ProbabilisticActor(
        module, in_keys={"logits": logits_key}, out_keys=[action_key], distribution_class=OneHotCategorical,
        return_log_prob=True, log_prob_key=log_prob_key,
    )


def make_joint_receivers_actor(
    net: ReceiversNet,
    routing: MessageRouting,
    num_actions: int,
    *,
    observation_key: NestedKey = ("receivers", "observation"),
    profile_key: NestedKey = ("sender", "profile"),
    logits_key: NestedKey = ("sender", "action_profile_logits"),
    action_key: NestedKey = ("sender", "action_profile"),
) -> ProbabilisticActor:
    """The same receivers (shared parameters) as one actor over action profiles, reading the message profile:
    ``pi(a | m) = prod_j pi_j(a_j | view_j(m))``. It plugs into
    :class:`~msgzoo.objectives.SignalingGradientLoss` (``log pi`` is the sum of every receiver's log-prob, eq. 2
    for several receivers) and :class:`~msgzoo.objectives.ReceiversObedienceLoss`."""
    body = _JointNet(_RoutedNet(routing, net), JointLogits(routing.num_receivers, num_actions))
    module = TensorDictModule(body, in_keys=[observation_key, profile_key], out_keys=[logits_key])
    return ProbabilisticActor(
        module, in_keys={"logits": logits_key}, out_keys=[action_key], distribution_class=OneHotCategorical,
    )


class _JointNet(nn.Module):
    def __init__(self, routed: _RoutedNet, joint: JointLogits):
        super().__init__()
        self.routed, self.joint = routed, joint

    def forward(self, observation: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        return self.joint(self.routed(observation, profile))


def make_receivers_policy(
    scheme: nn.Module,
    routing: MessageRouting,
    actor: ProbabilisticActor,
    num_actions: int,
    *,
    profile_key: NestedKey = ("sender", "profile"),
    message_key: NestedKey = ("sender", "message"),
    action_key: NestedKey = ("receivers", "action"),
    joint_action_key: NestedKey = ("sender", "action_profile"),
) -> TensorDictSequential:
    """Collection policy: the scheme samples a profile, the routing writes each receiver's message, the receivers
    act, and their one-hot action profile is written at ``joint_action_key`` (what the sender's losses read; under
    ``"sender"``, since the group's batch has the agent dimension)."""
    return TensorDictSequential(
        scheme,
        TensorDictModule(routing, in_keys=[profile_key], out_keys=[message_key]),
        actor,
        TensorDictModule(ProfileIndex(routing.num_receivers, num_actions), in_keys=[action_key],
                         out_keys=[joint_action_key]),
    )
