"""One-step persuasion of several receivers (the paper's Section 3 extension), batched, with a receivers group."""
from __future__ import annotations

from typing import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, OneHot, Unbounded
from torchrl.envs import EnvBase

from msgzoo.envs.common import (
    as_float_tensor,
    check_one_hot,
    done_spec,
    draw_states,
    make_generator,
    require,
    reset_flags,
    resolve_batch_size,
)

SIGNALING = ("private", "public")


class MultiReceiverPersuasionEnv(EnvBase):
    """A batch of one-step persuasion games with one sender and N receivers (a TorchRL agent group).

    Each step: a state ``s ~ prior`` is drawn, the sender observes it (one-hot) and sends either one message per
    receiver (``signaling="private"``: receiver ``j`` sees only message ``j``) or one message seen by all
    (``"public"``); the receivers act at once; the payoffs depend on the state and the joint action profile.

    Keys, the TorchRL multi-agent way (``("receivers", ...)`` has the agent dimension ``N`` after the env's
    ``batch_size``, as in TorchRL's MARL envs and BenchMARL's groups):

    - ``("sender", "observation")`` float ``[*B, |S|]`` one-hot state; ``("sender", "state")`` int64 ``[*B]``.
    - ``("receivers", "observation")`` float ``[*B, N, 0]`` (empty: receivers see only their messages).
    - actions: ``("sender", "message")`` one-hot ``[*B, N, K]``, the message each receiver sees (public: the same
      row for every receiver); ``("receivers", "action")`` one-hot ``[*B, N, |A|]``.
    - ``("next", "sender", "reward")`` ``[*B, 1]``; ``("next", "receivers", "reward")`` ``[*B, N, 1]``;
      root ``done`` / ``terminated`` / ``truncated`` bool ``[*B, 1]``.

    The exact optima of both signaling modes are
    :func:`msgzoo.game_theory.optimal_scheme_receivers.optimal_multi_receiver_scheme`; exact payoffs of tabular
    policies, :func:`msgzoo.game_theory.optimal_scheme_receivers.multi_receiver_payoffs`; SGOC on it:
    ``recipes/sgoc_voting.py``.

    Args:
        prior: probabilities of the |S| states.
        sender_utility: ``[|S|, |A|, ..., |A|]`` (one action axis per receiver): the sender's payoff.
        receiver_utility: ``[N, |S|, |A|, ..., |A|]``: receiver ``j``'s payoff is ``receiver_utility[j]``.

    Keyword Args:
        signaling: ``"private"`` (default) or ``"public"``.
        num_messages: ``K``, the size of each message; default ``|A|`` per receiver (private: a recommendation
            each) or ``|A|^N`` (public: a recommended profile).
        num_envs, batch_size, device, seed, validate_actions: as in
            :class:`~msgzoo.envs.bayesian_persuasion.BayesianPersuasionEnv`.

    Examples:
        >>> from msgzoo.game_theory.optimal_scheme_receivers import voting_game
        >>> env = MultiReceiverPersuasionEnv(*voting_game(), num_envs=4)
        >>> td = env.rand_step(env.reset())
        >>> td["receivers", "action"].shape, td["next", "receivers", "reward"].shape
        (torch.Size([4, 3, 2]), torch.Size([4, 3, 1]))
    """

    def __init__(
        self,
        prior: Sequence[float] | torch.Tensor,
        sender_utility: Sequence | torch.Tensor,
        receiver_utility: Sequence | torch.Tensor,
        *,
        signaling: str = "private",
        num_messages: int | None = None,
        num_envs: int | None = None,
        batch_size: Sequence[int] | None = None,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        validate_actions: bool = False,
    ):
        # imported here: msgzoo.game_theory.optimal_scheme_receivers imports msgzoo.envs (via
        # msgzoo.game_theory.exact_payoffs)
        from msgzoo.game_theory.optimal_scheme_receivers import SIGNALING as MODES, check_multi_receiver_game

        require(signaling in MODES, "signaling", signaling, f"one of {MODES}")
        p, us, ur = check_multi_receiver_game(prior, sender_utility, receiver_utility)  # float64 numpy, validated
        batch_size, num_envs = resolve_batch_size(num_envs, batch_size)
        device = torch.device(device)
        num_states, num_receivers, num_actions = p.shape[0], us.ndim - 1, us.shape[1]
        if num_messages is None:
            num_messages = num_actions if signaling == "private" else num_actions**num_receivers
        require(isinstance(num_messages, int) and num_messages >= 2, "num_messages", num_messages, "an integer >= 2")
        super().__init__(device=device, batch_size=batch_size)
        self.num_envs, self.signaling = num_envs, signaling
        self.num_states, self.num_receivers, self.num_actions, self.num_messages = (
            num_states, num_receivers, num_actions, num_messages,
        )
        self.prior = as_float_tensor(p, "prior", device)
        self.sender_utility = as_float_tensor(us, "sender_utility", device)
        self.receiver_utility = as_float_tensor(ur, "receiver_utility", device)
        # row-major profile index of a joint action: sum_j a_j |A|^(N-1-j)
        self._strides = num_actions ** torch.arange(num_receivers - 1, -1, -1, device=device)
        self.validate_actions = validate_actions
        self._generator = make_generator(device)
        self._make_specs()
        self.set_seed(0 if seed is None else seed)

    def _make_specs(self) -> None:
        b, d, n, k, a = tuple(self.batch_size), self.device, self.num_receivers, self.num_messages, self.num_actions
        group = (*b, n)
        self.observation_spec = Composite(
            sender=Composite(
                observation=OneHot(self.num_states, shape=(*b, self.num_states), device=d, dtype=torch.float32),
                state=Categorical(self.num_states, shape=b, device=d),
                shape=b,
            ),
            receivers=Composite(observation=Unbounded(shape=(*group, 0), device=d), shape=group),
            shape=b,
        )
        self.action_spec = Composite(
            sender=Composite(message=OneHot(k, shape=(*group, k), device=d, dtype=torch.float32), shape=b),
            receivers=Composite(action=OneHot(a, shape=(*group, a), device=d, dtype=torch.float32), shape=group),
            shape=b,
        )
        self.reward_spec = Composite(
            sender=Composite(reward=Unbounded(shape=(*b, 1), device=d), shape=b),
            receivers=Composite(reward=Unbounded(shape=(*group, 1), device=d), shape=group),
            shape=b,
        )
        self.done_spec = done_spec(b, d)

    def _observe(self, state: torch.Tensor) -> TensorDict:
        b, n = self.batch_size, self.num_receivers
        return TensorDict(
            {
                "sender": TensorDict(
                    {"observation": torch.nn.functional.one_hot(state, self.num_states).float(), "state": state},
                    batch_size=b,
                ),
                "receivers": TensorDict({"observation": torch.empty(*b, n, 0, device=self.device)}, batch_size=(*b, n)),
            },
            batch_size=b,
            device=self.device,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDict:
        out = self._observe(draw_states(self.prior, self.batch_size, self._generator))
        out.update(reset_flags(self.batch_size, self.device))
        return out

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        state = tensordict.get(("sender", "state"), None)
        if state is None:
            raise RuntimeError("('sender', 'state') is missing from the input tensordict: call td = env.reset() first "
                               "and step that tensordict with the actions set.")
        action = tensordict.get(("receivers", "action"), None)
        group = (*self.batch_size, self.num_receivers)
        if action is None or tuple(action.shape) != (*group, self.num_actions):
            raise ValueError(
                f"('receivers', 'action') has shape {None if action is None else tuple(action.shape)}: expected "
                f"{(*group, self.num_actions)}, one one-hot row per receiver and environment."
            )
        if self.validate_actions:
            check_one_hot(action, ("receivers", "action"), group, self.num_actions)
            # the rewards never read the message (public: the policy copies one message to every receiver)
            check_one_hot(tensordict.get(("sender", "message"), None), ("sender", "message"), group, self.num_messages)
        profile = (action.argmax(-1) * self._strides).sum(-1)  # [*B] index into the flattened action profiles
        flat_state = state.reshape(-1)
        flat_profile = profile.reshape(-1)
        us = self.sender_utility.reshape(self.num_states, -1)
        ur = self.receiver_utility.reshape(self.num_receivers, self.num_states, -1)
        r_sender = us[flat_state, flat_profile].view(*self.batch_size, 1)
        r_receivers = ur[:, flat_state, flat_profile].T.reshape(*group, 1)
        out = self._observe(state)  # the terminal observation repeats the state it ended in
        out.set(("sender", "reward"), r_sender)
        out.set(("receivers", "reward"), r_receivers)
        done = torch.ones(*self.batch_size, 1, dtype=torch.bool, device=self.device)
        out.update({"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)})
        return out

    def _set_seed(self, seed: int | None) -> None:
        self._generator.manual_seed(int(seed) if seed is not None else 0)
