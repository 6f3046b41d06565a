"""A registry of one-step persuasion games (Bayesian persuasion), each playable as a batched environment.

Every entry of :data:`ONE_STEP_GAMES` holds ``prior`` ``[|S|]``, ``sender_utility`` and ``receiver_utility``
``[|S|, |A|]`` (states are rows, receiver actions columns), ``state_names``, ``action_names`` and a
one-paragraph ``description``. Besides the paper's Recommendation Letter there are three 3-state x 3-action
games chosen so that persuasion matters: the sender-optimal obedient scheme (the LP of the paper's eq. 1,
:func:`msgzoo.game_theory.optimal_scheme.optimal_signaling_scheme`) is worth far more to the sender than revealing
nothing, and is strictly better for it than revealing everything. Their exact benchmark values (obedient
receiver, ties to the sender; LP optimum unique in every game):

=======================  ================  ==============  ================
game                     LP (sender, recv)  no information  full information
=======================  ================  ==============  ================
recommendation_letter    (0.667, 0.000)    (0.000, 0.000)  (0.333, 0.333)
prosecutor_judge         (1.117, 0.300)    (0.000, 0.300)  (0.700, 1.000)
seller_buyer             (1.200, 0.000)    (0.000, 0.000)  (0.700, 0.450)
health_agency_citizens   (0.610, 0.000)    (0.000, 0.000)  (0.440, 0.160)
=======================  ================  ==============  ================

:data:`MARKOV_GAMES` holds multi-step games: the same entries plus a ``transition`` matrix ``[|S|, |S|]`` of a
Markov chain over the states that no action changes, and a ``horizon`` (steps per episode); ``prior`` is the
first state's distribution. The receiver still sees only the message. Their exact benchmarks are per step: the
one-step values above computed on the state occupancy ``d = (1/T) sum_{t<T} prior P^t``
(:func:`msgzoo.game_theory.optimal_scheme.state_occupancy`; why this is exact:
:mod:`msgzoo.game_theory.optimal_scheme`):

================  =======  =====================  ==============  ==============  ================
game              horizon  occupancy d            LP (send, rcv)  no information  full information
================  =======  =====================  ==============  ==============  ================
weather_forecast  8        (0.289, 0.462, 0.248)  (0.818, 0.479)  (0.116, 0.231)  (0.674, 0.769)
================  =======  =====================  ==============  ==============  ================

Example:
    >>> from msgzoo.envs.persuasion_games import ONE_STEP_GAMES, make_one_step_env
    >>> env = make_one_step_env("seller_buyer", num_envs=8, seed=0)
    >>> env.num_states, env.num_actions, env.num_messages
    (3, 3, 3)
"""
from __future__ import annotations

from typing import Any

from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER, BayesianPersuasionEnv

__all__ = ["COACHING_LETTER", "MARKOV_GAMES", "ONE_STEP_GAMES", "make_one_step_env", "make_persuasion_env", "random_persuasion_game"]


_RECOMMENDATION_LETTER = dict(
    **RECOMMENDATION_LETTER,
    state_names=["weak", "strong"],
    action_names=["not hire", "hire"],
    description=(
        "The paper's Recommendation Letter (Section 5.1, Appendix F). A professor (sender) writes letters for "
        "students who are weak with probability 2/3 and strong with probability 1/3; HR (receiver) sees only "
        "the letter and decides whether to hire. HR gets +1 for hiring a strong student, -1 for a weak one "
        "and 0 for not hiring; the professor gets +1 per hire whatever the quality. Without information HR "
        "hires nobody (0, 0); an honest letter gives (1/3, 1/3); the LP optimum recommends every strong "
        "student and half of the weak ones, leaving HR indifferent: (2/3, 0)."
    ),
)

_PROSECUTOR_JUDGE = dict(
    prior=[0.5, 0.3, 0.2],
    # verdicts: acquit, convict of the lesser charge, convict of the serious charge
    sender_utility=[
        [0.0, 1.0, 2.0],
        [0.0, 1.0, 2.0],
        [0.0, 1.0, 2.0],
    ],
    receiver_utility=[
        [1.0, -1.0, -2.0],  # innocent: acquittal is right, convictions are miscarriages of justice
        [0.0, 1.0, -1.0],  # guilty of a minor offence: the lesser charge is right
        [-1.0, 0.0, 1.0],  # guilty of a serious offence: the serious charge is right, the lesser one lenient
    ],
    state_names=["innocent", "minor offence", "serious offence"],
    action_names=["acquit", "convict (lesser charge)", "convict (serious charge)"],
    description=(
        "A prosecutor (sender) investigates a defendant who is innocent (prob. 0.5), guilty of a minor offence "
        "(0.3) or guilty of a serious one (0.2), and chooses what evidence to present; the judge (receiver) "
        "sees only the evidence and acquits, convicts on the lesser charge or on the serious charge. The judge "
        "gets +1 for the right verdict, -1/-2 for convicting an innocent on the lesser/serious charge, -1 for "
        "acquitting a serious offender or over-convicting a minor one, 0 for the lenient lesser conviction of a "
        "serious offender. The prosecutor earns 1 per lesser and 2 per serious conviction, whatever the truth. "
        "Without evidence the judge acquits (sender 0, judge 0.3); full disclosure gives (0.7, 1.0). The LP "
        "optimum pools 30% of the innocent with the minor offenders and 4/15 of them with the serious "
        "offenders, just enough to keep the judge obedient: sender 67/60 ~ 1.117, judge 0.3, no better for "
        "the judge than no evidence at all (the Kamenica-Gentzkow prosecutor, with three verdicts)."
    ),
)

_SELLER_BUYER = dict(
    prior=[0.5, 0.3, 0.2],
    # buyer: walk away, buy the basic version, buy the premium version
    sender_utility=[
        [0.0, 1.0, 2.0],
        [0.0, 1.0, 2.0],
        [0.0, 1.0, 2.0],
    ],
    receiver_utility=[
        [0.0, -1.0, -2.0],  # low quality: any purchase is a loss
        [0.0, 0.5, 0.0],  # medium quality: the basic version is worth it, premium is break-even
        [0.0, 0.5, 1.5],  # high quality: premium is the best buy
    ],
    state_names=["low quality", "medium quality", "high quality"],
    action_names=["walk away", "buy basic", "buy premium"],
    description=(
        "A seller (sender) knows whether this season's product is of low (prob. 0.5), medium (0.3) or high "
        "(0.2) quality and designs its product reviews / test reports; the buyer (receiver) reads them and walks "
        "away, buys the basic version or buys the premium version. The seller's margin is 1 on basic and 2 on "
        "premium regardless of quality. The buyer's surplus: low quality -1 (basic) / -2 (premium), medium "
        "0.5 / 0, high 0.5 / 1.5; walking away gives 0. Without information the buyer walks away (0, 0); "
        "honest reports give (0.7, 0.45). The LP optimum sends 'premium' reports on all high-quality items, a "
        "third of the medium and 30% of the low ones, 'basic' on two thirds of the medium and 20% of the low "
        "ones, and 'walk' on the remaining half of the low ones: the seller earns 1.2 and the buyer is left "
        "with nothing (0)."
    ),
)

_HEALTH_AGENCY_CITIZENS = dict(
    prior=[0.5, 0.3, 0.2],
    # citizens: carry on as usual, wear masks, stay at home
    sender_utility=[
        [0.0, 0.5, 0.2],  # low risk: the agency still wants masks (externalities); lockdowns cost the economy
        [0.0, 0.8, 0.6],  # elevated risk: masks are the right measure
        [0.0, 0.6, 1.0],  # high risk: staying home is the right measure
    ],
    receiver_utility=[
        [0.0, -0.2, -1.0],  # low risk: precautions are a private cost
        [0.0, 0.2, -0.4],  # elevated risk: masks pay off privately
        [0.0, 0.1, 0.5],  # high risk: staying home pays off privately
    ],
    state_names=["low risk", "elevated risk", "high risk"],
    action_names=["carry on", "wear masks", "stay home"],
    description=(
        "A public-health agency (sender) monitors an epidemic whose risk is low (prob. 0.5), elevated (0.3) or "
        "high (0.2) and publishes advisories; citizens (receiver) carry on as usual, wear masks or stay at "
        "home. Interests are partly aligned: both want masks at elevated and home-staying at high risk, but "
        "the agency, which internalises infections of others, values precautions even at low risk (masks 0.5, "
        "staying home 0.2, carrying on 0) while citizens find them a private cost there (-0.2, -1). Without "
        "advisories citizens carry on (0, 0); honest advisories give (0.44, 0.16). The LP optimum is honest "
        "about elevated and high risk but, at low risk, advises masks 60% and staying home 20% of the time, "
        "so each advisory is barely credible: the agency gets 0.61 and the citizens 0 (mixed motives: the "
        "agency's gain is the citizens' loss compared with honesty)."
    ),
)

#: One-step persuasion games by name: ``prior``, ``sender_utility``, ``receiver_utility`` (states are rows,
#: actions columns), ``state_names``, ``action_names`` and a one-paragraph ``description``.
ONE_STEP_GAMES: dict[str, dict[str, Any]] = {
    "recommendation_letter": _RECOMMENDATION_LETTER,
    "prosecutor_judge": _PROSECUTOR_JUDGE,
    "seller_buyer": _SELLER_BUYER,
    "health_agency_citizens": _HEALTH_AGENCY_CITIZENS,
}

#: A sender that also acts (:func:`msgzoo.game_theory.optimal_scheme.optimal_acting_sender_scheme`, issue 18):
#: payoffs are ``[|S|, |B|, |A|]`` (state, sender action, receiver action).
COACHING_LETTER = dict(
    prior=[2 / 3, 1 / 3],
    # the professor: +1 per hire, coaching costs 0.2
    sender_utility=[[[0.0, 1.0], [-0.2, 0.8]], [[0.0, 1.0], [-0.2, 0.8]]],
    # HR: a weak student is worth -1, a coached weak student -0.6, a strong one +1 (coached or not)
    receiver_utility=[[[0.0, -1.0], [0.0, -0.6]], [[0.0, 1.0], [0.0, 1.0]]],
    state_names=["weak", "strong"],
    sender_action_names=["no coaching", "coaching"],
    action_names=["not hire", "hire"],
    description=(
        "The Recommendation Letter with a professor who can also coach the student before writing (cost 0.2): "
        "a coached weak student costs HR 0.6 instead of 1. Coaching buys more hires per unit of HR's surplus "
        "(0.8 / 0.6 > 1 / 1), so the optimum coaches and recommends 5/6 of the weak students, leaves the other 1/6 "
        "uncoached and unrecommended, and recommends every strong student: professor 7/9 = 0.778, HR 0 "
        "(indifferent after \"hire\"). Both levers matter: signaling alone gives 2/3 (the Recommendation Letter), "
        "and without information HR hires nobody, even if every weak student is coached."
    ),
)

_WEATHER_FORECAST = dict(
    prior=[0.1, 0.8, 0.1],  # the first day: the season starts mild
    transition=[
        [0.7, 0.2, 0.1],  # weather persists from day to day
        [0.2, 0.6, 0.2],
        [0.1, 0.3, 0.6],
    ],
    horizon=8,
    # farmer: irrigate, wait, harvest early; the forecaster gets 1 per irrigated day + half the farmer's payoff
    sender_utility=[
        [1.5, 0.0, -0.5],
        [0.75, 0.25, -0.25],
        [0.5, 0.0, 0.5],
    ],
    receiver_utility=[
        [1.0, 0.0, -1.0],  # dry: irrigating saves the crop, harvesting now is premature
        [-0.5, 0.5, -0.5],  # mild: waiting is right, irrigating wastes water
        [-1.0, 0.0, 1.0],  # wet: harvest before the rain, irrigating waterlogs the field
    ],
    state_names=["dry", "mild", "wet"],
    action_names=["irrigate", "wait", "harvest early"],
    description=(
        "A Markov persuasion game over 8 days. The weather is dry, mild or wet and persists from day to day "
        "(stays with probability 0.7 / 0.6 / 0.6; the season starts mild with probability 0.8); nobody's action "
        "changes it. Each day a forecasting service run by the irrigation-water supplier (sender) sees the weather "
        "and issues a forecast; the farmer (receiver) sees only the forecast, not the weather nor the date, and "
        "irrigates, waits or harvests early. The farmer gets +1 for irrigating on a dry day and for harvesting "
        "before a wet one, +0.5 for waiting on a mild day, -0.5 for irrigating or harvesting on a mild day, -1 for "
        "irrigating on a wet day or harvesting on a dry one, 0 for waiting otherwise. The forecaster earns 1 per "
        "irrigated day plus half the farmer's payoff (partly aligned). Per day, over the occupancy d = (0.289, "
        "0.462, 0.248): without forecasts the farmer always waits (0.116, 0.231); honest forecasts give (0.674, "
        "0.769); the LP optimum is honest about dry and wet days but calls 62.6% of the mild days dry, the most "
        "that keeps the farmer obedient: (0.818, 0.479). The first day's prior alone would give a different, "
        "wrong benchmark (LP 0.45): the occupancy matters."
    ),
)

#: Markov persuasion games by name: the entries of :data:`ONE_STEP_GAMES` plus ``transition`` ``[|S|, |S|]``
#: (rows: today's state, columns: tomorrow's) and ``horizon`` (steps per episode); ``prior`` is the first state's.
MARKOV_GAMES: dict[str, dict[str, Any]] = {
    "weather_forecast": _WEATHER_FORECAST,
}

#: Message-space size used by :func:`make_one_step_env` when none is given (otherwise |A|).
_DEFAULT_NUM_MESSAGES = {"recommendation_letter": 2}


def make_persuasion_env(name: str, **env_kwargs: Any) -> BayesianPersuasionEnv:
    """A batched persuasion environment for a game of :data:`ONE_STEP_GAMES` or :data:`MARKOV_GAMES`.

    One-step games are built by :func:`make_one_step_env`; a Markov game gets its ``transition`` and (unless
    ``horizon`` is given) its ``horizon`` too, and ``num_messages`` defaults to ``|A|``.

    Args:
        name: a key of :data:`ONE_STEP_GAMES` or :data:`MARKOV_GAMES`.
        **env_kwargs: ``num_messages``, ``num_envs``, ``batch_size``, ``device``, ``seed``, ``validate_actions``
            and, for a Markov game, ``horizon``.

    Raises:
        ValueError: naming ``name`` if the game is unknown (or naming the bad environment argument).

    Examples:
        >>> env = make_persuasion_env("weather_forecast", num_envs=4, seed=0)
        >>> env.horizon, [round(p, 3) for p in env.occupancy.tolist()]
        (8, [0.289, 0.462, 0.248])
    """
    if isinstance(name, str) and name in MARKOV_GAMES:
        game = MARKOV_GAMES[name]
        env_kwargs.setdefault("num_messages", len(game["sender_utility"][0]))
        env_kwargs.setdefault("horizon", game["horizon"])
        return BayesianPersuasionEnv(
            game["prior"], game["sender_utility"], game["receiver_utility"], transition=game["transition"], **env_kwargs
        )
    if not isinstance(name, str) or name not in ONE_STEP_GAMES:
        raise ValueError(f"name={name!r} is invalid: expected one of {sorted(ONE_STEP_GAMES | MARKOV_GAMES)}.")
    return make_one_step_env(name, **env_kwargs)


def make_one_step_env(name: str, **env_kwargs: Any) -> BayesianPersuasionEnv:
    """A batched :class:`~msgzoo.envs.bayesian_persuasion.BayesianPersuasionEnv` for a registered game.

    The game's ``prior``, ``sender_utility`` and ``receiver_utility`` come from :data:`ONE_STEP_GAMES`; the
    message space defaults to ``|A|`` (the revelation-principle size of eq. 1; 2 for the Recommendation Letter,
    as in the paper), and every other keyword goes to the environment.

    Args:
        name: a key of :data:`ONE_STEP_GAMES`.
        **env_kwargs: ``num_messages``, ``num_envs``, ``batch_size`` (a multi-dimensional batch shape, e.g.
            ``[num_seeds, num_envs]``), ``device``, ``seed``, ``validate_actions``.

    Returns:
        The environment.

    Raises:
        ValueError: naming ``name`` if the game is unknown (or naming the bad environment argument).

    Examples:
        >>> env = make_one_step_env("prosecutor_judge", num_envs=4, seed=0)
        >>> td = env.rand_step(env.reset())
        >>> td["next", "receiver", "reward"].shape
        torch.Size([4, 1])
        >>> env = make_one_step_env("seller_buyer", batch_size=[15, 256], seed=0)  # 15 seeds x 256 games
        >>> env.num_envs, env.reset()["sender", "observation"].shape
        (3840, torch.Size([15, 256, 3]))
    """
    if isinstance(name, str) and name in MARKOV_GAMES:
        raise ValueError(f"name={name!r} is invalid here: it is a Markov game; build it with make_persuasion_env.")
    if not isinstance(name, str) or name not in ONE_STEP_GAMES:
        raise ValueError(f"name={name!r} is invalid: expected one of {sorted(ONE_STEP_GAMES)}.")
    game = ONE_STEP_GAMES[name]
    env_kwargs.setdefault("num_messages", _DEFAULT_NUM_MESSAGES.get(name, len(game["sender_utility"][0])))
    return BayesianPersuasionEnv(
        game["prior"], game["sender_utility"], game["receiver_utility"], **env_kwargs
    )


def random_persuasion_game(seed: int, num_states: int, num_actions: int) -> dict[str, Any]:
    """A random one-step persuasion game: the generator of msgzoo's benchmark suite (:mod:`msgzoo.game_theory.suite`).

    ``prior ~ Dirichlet(1, ..., 1)`` and both payoff matrices uniform in ``[-1, 1]``, rounded to 2 decimals
    (the prior to 4, then renormalised so it sums to 1), all drawn from ``numpy.random.default_rng(seed)``: the
    same arguments give the same game on every machine.

    Args:
        seed: a non-negative integer.
        num_states: ``|S| >= 2``.
        num_actions: ``|A| >= 2``.

    Returns:
        A dict with ``prior``, ``sender_utility``, ``receiver_utility`` (nested lists, states are rows),
        ``state_names``, ``action_names`` and ``description``, like the entries of :data:`ONE_STEP_GAMES`.

    Examples:
        >>> game = random_persuasion_game(0, 3, 2)
        >>> len(game["prior"]), len(game["sender_utility"][0])
        (3, 2)
        >>> env = BayesianPersuasionEnv(game["prior"], game["sender_utility"], game["receiver_utility"], num_envs=4)
    """
    for name, value, least in (("seed", seed, 0), ("num_states", num_states, 2), ("num_actions", num_actions, 2)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {least}.")
    import numpy as np  # only the generator needs numpy's seeded streams

    rng = np.random.default_rng(seed)
    prior = np.round(rng.dirichlet(np.ones(num_states)), 4)
    prior = np.maximum(prior, 1e-4)  # no state of probability 0 after rounding
    prior = prior / prior.sum()
    sender = np.round(rng.uniform(-1.0, 1.0, (num_states, num_actions)), 2)
    receiver = np.round(rng.uniform(-1.0, 1.0, (num_states, num_actions)), 2)
    return dict(
        prior=prior.tolist(),
        sender_utility=sender.tolist(),
        receiver_utility=receiver.tolist(),
        state_names=[f"s{i}" for i in range(num_states)],
        action_names=[f"a{i}" for i in range(num_actions)],
        description=(
            f"A random {num_states}-state x {num_actions}-action persuasion game (generator seed {seed}): prior "
            "Dirichlet(1), both payoffs uniform in [-1, 1] rounded to 2 decimals."
        ),
    )
