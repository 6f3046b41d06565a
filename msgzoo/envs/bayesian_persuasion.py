"""Bayesian persuasion (Kamenica & Gentzkow, 2011), batched: one-step, or repeated over an exogenous Markov chain."""
from __future__ import annotations

from typing import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, OneHot, Unbounded
from torchrl.envs import EnvBase

from msgzoo.envs.common import (
    agent_reward_spec,
    as_float_tensor,
    check_one_hot,
    check_prior,
    check_step_input,
    done_spec,
    draw_states,
    is_int,
    make_generator,
    require,
    reset_flags,
    resolve_batch_size,
    signaling_action_spec,
)


class BayesianPersuasionEnv(EnvBase):
    """A batch of independent one-step persuasion games.

    Each step: a state ``s ~ prior`` is drawn, the sender observes it (one-hot), sends a message
    (one-hot over ``num_messages``), the receiver sees only the message and acts; the rewards are
    ``sender_utility[s, a]`` and ``receiver_utility[s, a]``; every step ends the episode.

    Keys (all under the env's ``batch_size``: ``[num_envs]`` by default, or the ``batch_size`` given, e.g.
    ``[num_seeds, num_envs_per_seed]``):

    - ``("sender", "observation")``: one-hot state, ``[*batch_size, |S|]``.
    - ``("sender", "state")``: the state index (what exact evaluation needs), ``[*batch_size]``. ``_step`` reads
      the state from the input tensordict (it is the state carrier).
    - ``("receiver", "observation")``: empty, ``[*batch_size, 0]`` (the receiver sees only the message).
    - actions: ``("sender", "message")`` one-hot ``[*batch_size, num_messages]`` and
      ``("receiver", "action")`` one-hot ``[*batch_size, |A|]``.
    - ``("next", "sender", "reward")``, ``("next", "receiver", "reward")``: ``[*batch_size, 1]``; root ``done``
      / ``terminated`` / ``truncated``: bool ``[*batch_size, 1]``.

    The states are drawn for the flattened batch of ``num_envs`` games at once (row-major: game ``(i, j)`` of a
    ``batch_size=[S, M]`` env is flat game ``i * M + j``, with the same draws as a ``num_envs=S * M`` env of the
    same seed). A partial ``env.reset`` (TorchRL's ``"_reset"`` mask ``[*batch_size, 1]``) redraws the masked
    games only.

    **Markov persuasion** (``transition`` given): the game is repeated for ``horizon`` steps over a Markov chain
    of states that no action changes. The first state is drawn from ``prior``, each step's next state from
    ``transition[s]``; rewards are as above; the episode is truncated (never terminated) after ``horizon`` steps,
    and the next observation of every step, the last included, is the chain's next state (so critics bootstrap
    through the truncation). The receiver still sees only the message (not the time, not the state). An extra
    root key ``"step_count"`` (int64 ``[*batch_size, 1]``, TorchRL's ``StepCounter`` convention) counts the steps
    of the current episode; like the state it rides in the tensordict. The exact optimum per step is the
    one-step LP on the state occupancy ``env.occupancy`` (see
    :func:`msgzoo.game_theory.optimal_scheme.state_occupancy`).

    Args:
        prior: probabilities of the |S| states (sums to 1).
        sender_utility: ``[|S|, |A|]`` payoff of the sender.
        receiver_utility: ``[|S|, |A|]`` payoff of the receiver.

    Keyword Args:
        num_messages: size of the message space; default ``max(|S|, |A|)``.
        num_envs: number of games played in parallel (default 1; with ``batch_size``, leave it out or give the
            product of ``batch_size``). ``env.num_envs`` is always the total number of games.
        batch_size: the env's batch shape, a non-empty list of positive integers, e.g. ``[15, 256]`` for 15
            seeds x 256 games (every key then has these leading dimensions); default ``[num_envs]``.
        device: where tensors live.
        seed: seed of the environment's own random generator.
        validate_actions: check the shape, dtype and one-hotness of the incoming message and action
            at every step (a host sync: on in tests, off by default for speed).
        transition: ``[|S|, |S|]`` row-stochastic matrix, ``transition[s, s'] = P(s' | s)``; None (default): the
            one-step game (the same behaviour and random draws as without the argument).
        horizon: steps per episode (an integer >= 1); more than 1 only with a ``transition``. Default 1.
        sender_emission: ``[|S|, |E|]`` row-stochastic matrix, ``sender_emission[s, e] = E(e | s)``: a
            **partial-sighted sender** observes an emission ``e ~ E(. | s)`` of each state, not the state:
            ``("sender", "observation")`` is then one-hot(e) ``[*batch_size, |E|]`` and ``("sender", "emission")``
            (int64 ``[*batch_size]``) holds ``e``; ``("sender", "state")`` still carries the state (the rewards').
            None (default): the sender sees the state (the same behaviour and random draws as without the
            argument). The exact optimum is :func:`msgzoo.game_theory.optimal_scheme.optimal_signaling_scheme` with
            the same ``sender_emission``.

    Attributes:
        occupancy: ``[|S|]`` float tensor, the average state distribution over an episode,
            ``(1/T) sum_{t<T} prior P^t`` (``prior`` itself for a one-step game): the prior of the exact per-step
            benchmarks (:func:`msgzoo.game_theory.optimal_scheme.optimal_signaling_scheme` on ``occupancy``).
        horizon: steps per episode (1 for a one-step game).

    Examples:
        >>> from msgzoo.envs import recommendation_letter
        >>> env = recommendation_letter(num_envs=4, seed=0)
        >>> td = env.rand_step(env.reset())
        >>> td["next", "sender", "reward"].shape
        torch.Size([4, 1])
        >>> env = recommendation_letter(batch_size=[3, 4], seed=0)  # e.g. 3 seeds x 4 games
        >>> env.num_envs, env.rollout(1)["next", "receiver", "reward"].shape
        (12, torch.Size([3, 4, 1, 1]))
        >>> env = BayesianPersuasionEnv([0.5, 0.5], [[0, 1], [0, 1]], [[1, 0], [0, 1]],
        ...     transition=[[0.9, 0.1], [0.2, 0.8]], horizon=4, num_envs=2)  # a 4-step Markov game
        >>> data = env.rollout(4)
        >>> data["step_count"].squeeze(-1).tolist(), data["next", "truncated"].squeeze(-1)[:, -1].tolist()
        ([[0, 1, 2, 3], [0, 1, 2, 3]], [True, True])
    """

    def __init__(
        self,
        prior: Sequence[float] | torch.Tensor,
        sender_utility: Sequence[Sequence[float]] | torch.Tensor,
        receiver_utility: Sequence[Sequence[float]] | torch.Tensor,
        *,
        num_messages: int | None = None,
        num_envs: int | None = None,
        batch_size: Sequence[int] | None = None,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        validate_actions: bool = False,
        transition: Sequence[Sequence[float]] | torch.Tensor | None = None,
        horizon: int = 1,
        sender_emission: Sequence[Sequence[float]] | torch.Tensor | None = None,
    ):
        batch_size, num_envs = resolve_batch_size(num_envs, batch_size)
        device = torch.device(device)
        prior = check_prior(prior, device)
        sender_utility = as_float_tensor(sender_utility, "sender_utility", device)
        receiver_utility = as_float_tensor(receiver_utility, "receiver_utility", device)
        num_states = prior.numel()
        for name, u in (("sender_utility", sender_utility), ("receiver_utility", receiver_utility)):
            require(
                u.ndim == 2 and u.shape[0] == num_states and u.shape[1] >= 2,
                name, list(u.shape), f"a [|S|={num_states}, |A|>=2] matrix (one row per state of the prior)",
            )
        for name, u in (("sender_utility", sender_utility), ("receiver_utility", receiver_utility)):
            require(bool(torch.isfinite(u).all()), name, u.tolist(), "finite payoffs (no nan or inf)")
        require(
            sender_utility.shape == receiver_utility.shape,
            "receiver_utility", list(receiver_utility.shape), f"the shape of sender_utility {list(sender_utility.shape)}",
        )
        num_actions = sender_utility.shape[1]
        if num_messages is None:
            num_messages = max(num_states, num_actions)
        require(isinstance(num_messages, int) and num_messages >= 2, "num_messages", num_messages, "an integer >= 2")
        require(is_int(horizon) and horizon >= 1, "horizon", horizon, "an integer >= 1 (steps per episode)")
        require(
            transition is not None or horizon == 1, "horizon", horizon,
            "1 for a one-step game (give a transition matrix to repeat the game over a Markov chain)",
        )
        if transition is None:
            occupancy = prior
        else:
            # imported here: msgzoo.game_theory.optimal_scheme imports msgzoo.envs; it also validates
            # transition and horizon
            from msgzoo.game_theory.optimal_scheme import state_occupancy

            occupancy = state_occupancy(prior, transition, int(horizon)).to(device=device, dtype=torch.float32)
            transition = as_float_tensor(transition, "transition", device)

        if sender_emission is not None:
            sender_emission = as_float_tensor(sender_emission, "sender_emission", device)
            require(
                sender_emission.ndim == 2 and sender_emission.shape[0] == num_states and sender_emission.shape[1] >= 1,
                "sender_emission", list(sender_emission.shape),
                f"a [|S|={num_states}, |E|>=1] matrix E(e | s) (one row per state of the prior)",
            )
            require(
                bool((sender_emission >= 0).all()) and bool(((sender_emission.sum(-1) - 1.0).abs() < 1e-5).all()),
                "sender_emission", sender_emission.tolist(), "rows that are probability distributions over emissions",
            )

        super().__init__(device=device, batch_size=batch_size)
        #: Total number of games (the product of ``batch_size``).
        self.num_envs = num_envs
        self.num_states, self.num_actions, self.num_messages = num_states, num_actions, num_messages
        self.prior, self.sender_utility, self.receiver_utility = prior, sender_utility, receiver_utility
        self.validate_actions = validate_actions
        self.transition, self.horizon, self.occupancy = transition, int(horizon), occupancy
        self.sender_emission = sender_emission
        #: Size of the sender's one-hot observation: ``|E|`` for a partial-sighted sender, else ``|S|``.
        self.num_sender_observations = num_states if sender_emission is None else sender_emission.shape[1]
        self._generator = make_generator(device)
        self._make_specs()
        self.set_seed(0 if seed is None else seed)

    def _make_specs(self) -> None:
        b, d = tuple(self.batch_size), self.device
        self.observation_spec = Composite(
            sender=Composite(
                observation=OneHot(
                    self.num_sender_observations, shape=(*b, self.num_sender_observations), device=d, dtype=torch.float32
                ),
                state=Categorical(self.num_states, shape=b, device=d),
                shape=b,
            ),
            receiver=Composite(observation=Unbounded(shape=(*b, 0), device=d), shape=b),
            shape=b,
        )
        if self.sender_emission is not None:
            self.observation_spec["sender", "emission"] = Categorical(self.num_sender_observations, shape=b, device=d)
        if self.is_markov:
            self.observation_spec["step_count"] = Bounded(0, self.horizon, shape=(*b, 1), device=d, dtype=torch.int64)
        self.action_spec = signaling_action_spec(b, self.num_messages, self.num_actions, d)
        self.reward_spec = agent_reward_spec(b, d)
        self.done_spec = done_spec(b, d)

    @property
    def is_markov(self) -> bool:
        """Whether the game repeats over a Markov chain of states (a ``transition`` was given)."""
        return self.transition is not None

    def _input_emission(self, tensordict: TensorDictBase) -> torch.Tensor | None:
        if self.sender_emission is None:
            return None
        emission = tensordict.get(("sender", "emission"), None)
        if emission is None:
            raise KeyError("('sender', 'emission') is missing from the input tensordict: start from env.reset() (a "
                           "partial-sighted sender's emission rides in the tensordict, as the state does).")
        return emission

    def _emit(self, state: torch.Tensor) -> torch.Tensor:
        """A partial-sighted sender's emissions ``e ~ E(. | s)`` of ``state``, one draw per game (flat batch)."""
        rows = self.sender_emission.index_select(0, state.reshape(-1))
        return torch.multinomial(rows, 1, generator=self._generator).view(self.batch_size)

    def _observe(
        self, state: torch.Tensor, step_count: torch.Tensor | None = None, emission: torch.Tensor | None = None,
        rewards: tuple[torch.Tensor, torch.Tensor] | None = None, flags: dict | None = None,
    ) -> TensorDict:
        """The observation tensordict of ``state`` (``[*batch_size]`` state indices), for a partial-sighted
        sender of ``emission`` (same shape) and, for a Markov game, ``step_count`` (``[*batch_size, 1]``); with
        the step's ``rewards`` (sender, receiver: ``[*batch_size, 1]``) and done ``flags`` when given."""
        b = self.batch_size
        if emission is None:
            sender = {"observation": torch.nn.functional.one_hot(state, self.num_states).float(), "state": state}
        else:
            sender = {
                "observation": torch.nn.functional.one_hot(emission, self.num_sender_observations).float(),
                "state": state,
                "emission": emission,
            }
        receiver = {"observation": torch.empty(*b, 0, device=self.device)}
        if rewards is not None:
            sender["reward"], receiver["reward"] = rewards
        source = {"sender": sender, "receiver": receiver, **(flags or {})}
        if step_count is not None:
            source["step_count"] = step_count
        return TensorDict(source, batch_size=b, device=self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDict:
        state = draw_states(self.prior, self.batch_size, self._generator)
        emission = None if self.sender_emission is None else self._emit(state)
        step_count = None
        if self.is_markov:
            step_count = torch.zeros(*self.batch_size, 1, dtype=torch.int64, device=self.device)
            mask = tensordict.get("_reset", None) if tensordict is not None else None
            old_state = tensordict.get(("sender", "state"), None) if tensordict is not None else None
            old_count = tensordict.get("step_count", None) if tensordict is not None else None
            # A partial reset: the games outside the mask keep their state exactly (when the input carries it;
            # otherwise TorchRL's reset merges the fresh data under the mask itself).
            if mask is not None and old_state is not None and old_count is not None:
                mask = mask.reshape(*self.batch_size, 1)  # [*batch_size, 1] or [*batch_size]
                state = torch.where(mask.squeeze(-1), state, old_state)
                step_count = torch.where(mask, step_count, old_count)
                if emission is not None:  # ... and what the sender saw of it
                    emission = torch.where(mask.squeeze(-1), emission, tensordict.get(("sender", "emission")))
        return self._observe(state, step_count, emission, flags=reset_flags(self.batch_size, self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        check_step_input(tensordict, self.batch_size, state_key=("sender", "state"), state_shape=(),
                         num_states=self.num_states, num_actions=self.num_actions, validate=self.validate_actions)
        message = tensordict.get(("sender", "message"))
        action = tensordict.get(("receiver", "action"))
        if self.validate_actions:
            check_one_hot(message, ("sender", "message"), self.batch_size, self.num_messages)
            check_one_hot(action, ("receiver", "action"), self.batch_size, self.num_actions)
        # Elementwise in the games: the same arithmetic on [*batch_size, ...] as on the flat batch.
        state = tensordict.get(("sender", "state"))
        action = action.to(self.sender_utility.dtype)
        r_sender = (self.sender_utility[state] * action).sum(-1, keepdim=True)
        r_receiver = (self.receiver_utility[state] * action).sum(-1, keepdim=True)
        if self.is_markov:
            return self._markov_step(tensordict, state, r_sender, r_receiver)
        # the terminal observation repeats the state it ended in (and what the sender saw of it)
        done = torch.ones(*self.batch_size, 1, dtype=torch.bool, device=self.device)
        return self._observe(state, emission=self._input_emission(tensordict), rewards=(r_sender, r_receiver),
                             flags={"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)})

    def _markov_step(
        self, tensordict: TensorDictBase, state: torch.Tensor, r_sender: torch.Tensor, r_receiver: torch.Tensor
    ) -> TensorDict:
        """The chain moves whatever was sent or done: ``s' ~ transition[s]``, one draw per game (flat batch)."""
        step_count = tensordict.get("step_count", None)
        if step_count is None:
            raise KeyError("'step_count' is missing from the input tensordict: start from env.reset() (a Markov "
                           "game counts its steps in the tensordict).")
        rows = self.transition.index_select(0, state.reshape(-1))  # [N, |S|]
        next_state = torch.multinomial(rows, 1, generator=self._generator).view(self.batch_size)
        step_count = step_count + 1
        emission = None if self.sender_emission is None else self._emit(next_state)
        truncated = step_count >= self.horizon
        # the last step too: critics bootstrap through truncation
        return self._observe(next_state, step_count, emission, rewards=(r_sender, r_receiver),
                             flags={"done": truncated.clone(), "terminated": torch.zeros_like(truncated),
                                    "truncated": truncated})

    def _set_seed(self, seed: int | None) -> None:
        self._generator.manual_seed(int(seed) if seed is not None else 0)


#: Recommendation Letter (paper, section 5.1): weak (state 0) with prob. 2/3, strong (state 1) with 1/3;
#: actions 0 = not hire, 1 = hire. HR: +1 strong hire, -1 weak hire; professor: +1 per hire.
RECOMMENDATION_LETTER = dict(
    prior=[2 / 3, 1 / 3],
    sender_utility=[[0.0, 1.0], [0.0, 1.0]],
    receiver_utility=[[0.0, -1.0], [0.0, 1.0]],
)


def recommendation_letter(**kwargs) -> BayesianPersuasionEnv:
    """The paper's Recommendation Letter game (two signals by default); keyword args go to the env."""
    kwargs.setdefault("num_messages", 2)
    return BayesianPersuasionEnv(**RECOMMENDATION_LETTER, **kwargs)
