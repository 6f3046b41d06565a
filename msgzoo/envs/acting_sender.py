"""One-step persuasion where the sender also takes an environmental action (the paper's Section 3 extension)."""
from __future__ import annotations

from typing import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, OneHot, Unbounded
from torchrl.envs import EnvBase

from msgzoo.envs.common import (
    agent_reward_spec,
    as_float_tensor,
    check_one_hot,
    check_prior,
    check_step_input,
    done_spec,
    draw_states,
    make_generator,
    require,
    reset_flags,
    resolve_batch_size,
    signaling_action_spec,
)


class ActingSenderPersuasionEnv(EnvBase):
    """A batch of one-step persuasion games in which the sender acts as well as signals.

    Each step: ``s ~ prior``; the sender sees ``s`` (one-hot) and takes an action ``b`` (``("sender", "action")``,
    one-hot ``[*B, |B|]``) and sends a message; the receiver sees only the message and acts; the payoffs are
    ``sender_utility[s, b, a]`` and ``receiver_utility[s, b, a]``. Other keys are those of
    :class:`~msgzoo.envs.BayesianPersuasionEnv` (``("sender", "observation")``, ``("sender", "state")``, the empty
    ``("receiver", "observation")``, the message, the receiver's action, both rewards, the done flags). The exact
    optimum is :func:`msgzoo.game_theory.optimal_scheme.optimal_acting_sender_scheme`.

    Args:
        prior: ``[|S|]`` state probabilities.
        sender_utility, receiver_utility: ``[|S|, |B|, |A|]`` payoffs.

    Keyword Args:
        num_messages: size of the message space (default ``|A|``, a recommendation).
        num_envs, batch_size, device, seed, validate_actions: as in
            :class:`~msgzoo.envs.BayesianPersuasionEnv`.

    Examples:
        >>> from msgzoo.envs.persuasion_games import COACHING_LETTER as G
        >>> env = ActingSenderPersuasionEnv(G["prior"], G["sender_utility"], G["receiver_utility"], num_envs=4)
        >>> env.rand_step(env.reset())["sender", "action"].shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        prior: Sequence[float] | torch.Tensor,
        sender_utility: Sequence | torch.Tensor,
        receiver_utility: Sequence | torch.Tensor,
        *,
        num_messages: int | None = None,
        num_envs: int | None = None,
        batch_size: Sequence[int] | None = None,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        validate_actions: bool = False,
    ):
        batch_size, num_envs = resolve_batch_size(num_envs, batch_size)
        device = torch.device(device)
        prior = check_prior(prior, device)
        us = as_float_tensor(sender_utility, "sender_utility", device)
        ur = as_float_tensor(receiver_utility, "receiver_utility", device)
        require(us.ndim == 3 and us.shape[0] == prior.numel() and us.shape[2] >= 2, "sender_utility", list(us.shape),
                f"a [|S|={prior.numel()}, |B|, |A|>=2] array (state, sender action, receiver action)")
        require(ur.shape == us.shape, "receiver_utility", list(ur.shape), f"sender_utility's shape {list(us.shape)}")
        num_states, num_sender_actions, num_actions = us.shape
        num_messages = num_actions if num_messages is None else num_messages
        require(isinstance(num_messages, int) and num_messages >= 2, "num_messages", num_messages, "an integer >= 2")
        super().__init__(device=device, batch_size=batch_size)
        self.num_envs = num_envs
        self.num_states, self.num_sender_actions, self.num_actions = num_states, num_sender_actions, num_actions
        self.num_messages = num_messages
        self.prior, self.sender_utility, self.receiver_utility = prior, us, ur
        self.validate_actions = validate_actions
        self._generator = make_generator(device)
        b, d = tuple(self.batch_size), device
        self.observation_spec = Composite(
            sender=Composite(
                observation=OneHot(num_states, shape=(*b, num_states), device=d, dtype=torch.float32),
                state=Categorical(num_states, shape=b, device=d),
                shape=b,
            ),
            receiver=Composite(observation=Unbounded(shape=(*b, 0), device=d), shape=b),
            shape=b,
        )
        self.action_spec = signaling_action_spec(b, num_messages, num_actions, d)
        self.action_spec["sender", "action"] = OneHot(
            num_sender_actions, shape=(*b, num_sender_actions), device=d, dtype=torch.float32
        )
        self.reward_spec = agent_reward_spec(b, d)
        self.done_spec = done_spec(b, d)
        self.set_seed(0 if seed is None else seed)

    def _observe(self, state: torch.Tensor) -> TensorDict:
        b = self.batch_size
        return TensorDict(
            {
                "sender": TensorDict(
                    {"observation": torch.nn.functional.one_hot(state, self.num_states).float(), "state": state},
                    batch_size=b,
                ),
                "receiver": TensorDict({"observation": torch.empty(*b, 0, device=self.device)}, batch_size=b),
            },
            batch_size=b,
            device=self.device,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDict:
        out = self._observe(draw_states(self.prior, self.batch_size, self._generator))
        out.update(reset_flags(self.batch_size, self.device))
        return out

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        check_step_input(tensordict, self.batch_size, state_key=("sender", "state"), state_shape=(),
                         num_states=self.num_states, num_actions=self.num_actions, validate=self.validate_actions)
        sender_action = tensordict.get(("sender", "action"), None)
        expected = (*self.batch_size, self.num_sender_actions)
        if sender_action is None or tuple(sender_action.shape) != expected:
            raise ValueError(
                f"('sender', 'action') has shape {None if sender_action is None else tuple(sender_action.shape)}: "
                f"expected {expected}, the sender's one-hot environmental action."
            )
        action = tensordict.get(("receiver", "action"))
        if self.validate_actions:
            check_one_hot(sender_action, ("sender", "action"), self.batch_size, self.num_sender_actions)
            check_one_hot(tensordict.get(("sender", "message"), None), ("sender", "message"), self.batch_size,
                          self.num_messages)
            check_one_hot(action, ("receiver", "action"), self.batch_size, self.num_actions)
        state = tensordict.get(("sender", "state"))
        b, a = sender_action.argmax(-1), action.argmax(-1)
        out = self._observe(state)
        out.set(("sender", "reward"), self.sender_utility[state, b, a].unsqueeze(-1))
        out.set(("receiver", "reward"), self.receiver_utility[state, b, a].unsqueeze(-1))
        done = torch.ones(*self.batch_size, 1, dtype=torch.bool, device=self.device)
        out.update({"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)})
        return out

    def _set_seed(self, seed: int | None) -> None:
        self._generator.manual_seed(int(seed) if seed is not None else 0)
