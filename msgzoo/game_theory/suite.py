"""msgzoo's benchmark suite of persuasion games, each with its exact benchmark values.

The suite is every named game of :data:`~msgzoo.envs.persuasion_games.ONE_STEP_GAMES` and
:data:`~msgzoo.envs.persuasion_games.MARKOV_GAMES` (multi-step: their values are per step, on the state occupancy,
see :func:`~msgzoo.game_theory.optimal_scheme.state_occupancy`) plus ``num_random`` games
from :func:`~msgzoo.envs.persuasion_games.random_persuasion_game`: game ``i`` of the generator's stream has
``2 + i % 4`` states, ``2 + (i // 4) % 3`` actions and generator seed ``i``, and the stream is read until
``num_random`` games have an LP gain over no information of at least :data:`MIN_GAIN` (the others have
nothing to learn: they are listed with ``trivial=True`` and left out of the training benchmark).

Learning is scored by the **fraction of the LP gain**, ``(v - v_none) / (v_LP - v_none)``: 0 for a scheme
worth no more than revealing nothing, 1 for the sender-optimal obedient scheme (eq. 1).

Example:
    >>> games = persuasion_suite(num_random=4)
    >>> [g.name for g in games if not g.trivial][:5]
    ['recommendation_letter', 'prosecutor_judge', 'seller_buyer', 'health_agency_citizens', 'random_01_3x2']
    >>> round(games[0].lp_value, 4), games[0].no_info_value
    (0.6667, 0.0)
"""
from __future__ import annotations

from dataclasses import dataclass

from msgzoo.envs.persuasion_games import MARKOV_GAMES, ONE_STEP_GAMES, random_persuasion_game
from msgzoo.game_theory.optimal_scheme import (
    full_information_value,
    no_information_value,
    optimal_signaling_scheme,
    state_occupancy,
)

__all__ = ["MIN_GAIN", "SuiteGame", "persuasion_suite", "fraction_of_gain"]

#: Games whose LP optimum beats revealing nothing by less than this (per step) have nothing to learn.
MIN_GAIN = 0.02


@dataclass(frozen=True)
class SuiteGame:
    """One game of the suite with its exact values (sender's unless named ``receiver``; per step for a Markov
    game, whose ``occupancy`` is the prior of its exact benchmarks)."""

    name: str
    prior: list[float]
    sender_utility: list[list[float]]
    receiver_utility: list[list[float]]
    lp_value: float
    lp_receiver_value: float
    no_info_value: float
    full_info_value: float
    horizon: int = 1
    occupancy: list[float] | None = None

    @property
    def num_states(self) -> int:
        return len(self.prior)

    @property
    def num_actions(self) -> int:
        return len(self.sender_utility[0])

    @property
    def gain(self) -> float:
        """What the LP optimum is worth over revealing nothing."""
        return self.lp_value - self.no_info_value

    @property
    def trivial(self) -> bool:
        return self.gain < MIN_GAIN

    def with_payoffs_transformed(self, sender: tuple[float, float] = (1.0, 0.0),
                                 receiver: tuple[float, float] = (1.0, 0.0)) -> "SuiteGame":
        """The same game with payoffs in other units: ``u -> scale * u + shift`` for each agent (``sender`` and
        ``receiver`` are ``(scale, shift)``, scales > 0), its exact values recomputed. A positive affine change of
        either agent's payoffs leaves the obedience constraints, the LP's optimal scheme and every fraction of the
        LP gain as they were; a learner that depends on the units shows it here. One-step games only (a Markov
        game's recipe reads its payoffs from the registry by name)."""
        for who, (scale, _) in (("sender", sender), ("receiver", receiver)):
            if not scale > 0:
                raise ValueError(f"{who} payoff scale {scale!r} must be > 0 (a positive affine change keeps the game)")
        if self.horizon != 1:
            raise ValueError(f"{self.name} is a Markov game: payoff transforms are for one-step games only")
        (a, c), (b, d) = sender, receiver
        return _scored(self.name, self.prior, [[a * x + c for x in row] for row in self.sender_utility],
                       [[b * x + d for x in row] for row in self.receiver_utility])

    def overrides(self) -> list[str]:
        """Hydra overrides that make the one-step recipes play this game (``task`` names the run)."""
        if self.name in MARKOV_GAMES:
            return [f"env.game={self.name}", f"task={self.name}"]
        return [
            f"env.game={self.name}" if self.name in ONE_STEP_GAMES else "env.game=custom",
            f"task={self.name}",
            f"env.prior={self.prior}",
            f"env.sender_utility={self.sender_utility}",
            f"env.receiver_utility={self.receiver_utility}",
        ]


def _scored(name: str, prior, sender_utility, receiver_utility, transition=None, horizon: int = 1) -> SuiteGame:
    occupancy = None
    if transition is not None:
        occupancy = [float(x) for x in state_occupancy(prior, transition, horizon)]
    values_prior = prior if occupancy is None else occupancy
    lp = optimal_signaling_scheme(values_prior, sender_utility, receiver_utility)
    return SuiteGame(
        name=name,
        prior=[float(p) for p in prior],
        sender_utility=[[float(x) for x in row] for row in sender_utility],
        receiver_utility=[[float(x) for x in row] for row in receiver_utility],
        lp_value=lp.sender_value,
        lp_receiver_value=lp.receiver_value,
        no_info_value=no_information_value(values_prior, sender_utility, receiver_utility)[0],
        full_info_value=full_information_value(values_prior, sender_utility, receiver_utility)[0],
        horizon=horizon,
        occupancy=occupancy,
    )


def persuasion_suite(num_random: int = 40) -> list[SuiteGame]:
    """The named one-step games, the Markov games, then the generator's stream until ``num_random`` non-trivial
    random games (the trivial ones met on the way are included, marked ``trivial``)."""
    if not isinstance(num_random, int) or isinstance(num_random, bool) or num_random < 0:
        raise ValueError(f"num_random={num_random!r} is invalid: expected a non-negative integer.")
    games = [
        _scored(name, g["prior"], g["sender_utility"], g["receiver_utility"]) for name, g in ONE_STEP_GAMES.items()
    ]
    games += [
        _scored(name, g["prior"], g["sender_utility"], g["receiver_utility"], g["transition"], g["horizon"])
        for name, g in MARKOV_GAMES.items()
    ]
    found, i = 0, 0
    while found < num_random:
        s, a = 2 + i % 4, 2 + (i // 4) % 3
        g = random_persuasion_game(i, s, a)
        game = _scored(f"random_{i:02d}_{s}x{a}", g["prior"], g["sender_utility"], g["receiver_utility"])
        games.append(game)
        found += not game.trivial
        i += 1
    return games


def fraction_of_gain(value: float, game: SuiteGame) -> float:
    """``(value - v_none) / (v_LP - v_none)``: the share of the LP optimum's gain over no information."""
    return (value - game.no_info_value) / game.gain
