"""The task helpers of ``recipes/*_recommendation_letter.py`` (as TorchRL's scripts import their ``utils_*.py``):
one-step games and Markov games. :func:`make_env` (the game of ``cfg.env``), :func:`make_trainer` (the run's
budget, logs and checkpoints), :func:`finish` (exact evaluation against the LP optimum, the summaries; the last
printed line is ``summary: <path>``).

A Markov persuasion game (``env.game`` in :data:`~msgzoo.envs.persuasion_games.MARKOV_GAMES`, or ``env.prior``
with ``+env.transition=[[..]] +env.horizon=T``) runs on the same code path: a batch still holds ``env.num_envs``
steps, now ``ceil(env.num_envs / T)`` games played for one whole episode each, so every update sees the steps
of an episode in equal proportions, i.e. the state occupancy. Rewards, the budget and the exact evaluation are
per step; the benchmarks (LP optimum, no information) are the one-step ones on the occupancy ``env.occupancy``.
"""
from __future__ import annotations

import warnings

from omegaconf import DictConfig

from msgzoo.envs import BayesianPersuasionEnv
from msgzoo.envs.common import is_int, require
from msgzoo.envs.persuasion_games import MARKOV_GAMES, make_persuasion_env
from msgzoo.game_theory.optimal_scheme import (
    no_information_value,
    obedience_penalty_threshold,
    optimal_signaling_scheme,
)
from msgzoo.runtime.experiment import Experiment, seeds_summary
from msgzoo.training.config_schema import schema_fields
from msgzoo.training.evaluation import one_step_evaluator, one_step_tables
from msgzoo.training.methods import Method, method_spec, prosocial_weight
from msgzoo.training.payoff_normalization import PayoffNormalization
from msgzoo.training.trainer import Trainer

#: The sender value the issue's speed target counts students up to (the reference reaches 0.64).
TARGET_SENDER_REWARD = 0.64
#: ... reached while the receiver does at least this well (the issue's bound for a persuaded receiver).
RECEIVER_FLOOR = -0.05


def make_env(
    cfg: DictConfig, *, num_envs: int | None = None, seed: int | None = None, num_seeds: int = 1
) -> BayesianPersuasionEnv:
    """The game of ``cfg.env``; with ``num_seeds > 1`` one row of games per seed.

    ``num_envs`` (default ``cfg.env.num_envs``) is the number of steps per batch and seed: as many games for a
    one-step game, ``ceil(num_envs / horizon)`` games for a Markov game (each plays a whole episode per batch).
    """
    e = cfg.env
    horizon = _horizon(cfg)
    n = -(-(num_envs or e.num_envs) // horizon)
    kwargs = dict(
        num_envs=n * num_seeds, batch_size=[num_seeds, n] if num_seeds > 1 else None,
        device=cfg.device, seed=cfg.seed if seed is None else seed,
    )
    if e.num_messages is not None:
        kwargs["num_messages"] = e.num_messages
    if e.get("horizon") is not None:
        kwargs["horizon"] = horizon  # the env rejects horizon > 1 without a transition
    if e.get("sender_emission") is not None:
        kwargs["sender_emission"] = [list(r) for r in e.sender_emission]
    if e.prior is not None:
        sender_utility = [list(r) for r in e.sender_utility]
        kwargs.setdefault("num_messages", len(sender_utility[0]))  # one recommendation per action (eq. 1)
        transition = e.get("transition")
        if transition is not None:
            kwargs.update(transition=[list(r) for r in transition], horizon=horizon)
        return BayesianPersuasionEnv(list(e.prior), sender_utility, [list(r) for r in e.receiver_utility], **kwargs)
    return make_persuasion_env(e.game, **kwargs)


def _horizon(cfg: DictConfig) -> int:
    """Steps per episode: ``env.horizon`` if set, else the registered Markov game's, else 1 (one-step)."""
    e = cfg.env
    if e.get("horizon") is not None:
        # the env checks the rest (> 1 only with a transition); this one sizes the batch first
        require(is_int(e.horizon) and e.horizon >= 1, "env.horizon", e.horizon, "an integer >= 1 (steps per episode)")
        return int(e.horizon)
    if e.prior is None and e.game in MARKOV_GAMES:
        return MARKOV_GAMES[e.game]["horizon"]
    return 1


def make_trainer(cfg: DictConfig, env: BayesianPersuasionEnv, method: Method, exp: Experiment) -> Trainer:
    """The :class:`Trainer` of a recipe's run: per seed the budget and batch a single run would have (``num_envs``
    students; whole episodes of a Markov game), the config's log / checkpoint intervals and replay passes, the exact
    payoffs logged at every log step, one run folder per seed when several train together; resumed from
    ``cfg.resume`` if set. The learners see payoffs in the units ``env.payoff_normalization`` sets
    (:mod:`msgzoo.training.payoff_normalization`)."""
    normalization = make_payoff_normalization(cfg, env)
    warn_if_penalty_is_weak(cfg, env, normalization, method.name)
    return Trainer.from_config(
        cfg, env, method, exp, frames_per_batch=env.batch_size[-1] * env.horizon, evaluate=one_step_evaluator(env),
        reward_transform=normalization,
    )


def make_payoff_normalization(cfg: DictConfig, env: BayesianPersuasionEnv) -> PayoffNormalization | None:
    """What the learners see of ``env``'s payoffs (``env.payoff_normalization``): None for ``none``; the common scale
    for ``common`` and whenever the sender's objective mixes in the receiver's payoff (a prosocial sender weighs
    both in the game's units)."""
    mode = cfg.env.get("payoff_normalization", "none")
    if mode == "none":
        return None
    common = mode == "common" or prosocial_weight(cfg) > 0
    return PayoffNormalization(env.sender_utility, env.receiver_utility, common=common).to(env.device)


#: How far below a game's exact-penalty threshold lambda* the fixed lambda of the obedience hinges may be before a run
#: warns. On the suite and its 20 held-out games (65 games) lambda = 5 is below lambda* on six: five at most 10.9
#: (2.2 lambda), which reach 0.9 of the LP gain in 2 to 5 seeds of 5 (random_71_5x4 the 2-3), and random_17_3x3
#: (23.3: 4.7 lambda), in 0 (SGOC) and 1 (PGOC) (docs/results.md, "A game in other units").
WEAK_PENALTY_FACTOR = 4.0


def warn_if_penalty_is_weak(cfg: DictConfig, env: BayesianPersuasionEnv, normalization: PayoffNormalization | None,
                            method: str):
    """Warns when ``loss.lagrange_multiplier`` (with a fixed multiplier: ``loss.obedience_mode=lagrangian``) is below
    1 / :data:`WEAK_PENALTY_FACTOR` of the game's exact-penalty threshold (``obedience_penalty_threshold``, eq. 7's
    hinge per pair) in the units the learners see: there breaking obedience pays the sender more than the hinge
    charges, and its schemes end where the receiver stops following them. The usual cause in a game of one's own:
    the agents' payoffs in different units (the common scale keeps their ratio), which ``per_agent`` undoes. Checked
    for a selfish sender that sees the state and one message per action (the threshold's setting), and a ``method``
    whose config has ``loss.lagrange_multiplier`` (the obedience loss's: SGOC, PGOC)."""
    if "loss.lagrange_multiplier" not in schema_fields(method_spec(method).config):
        return
    loss = cfg.loss
    if loss.get("obedience_mode", "lagrangian") != "lagrangian":
        return
    if prosocial_weight(cfg) > 0:  # lambda* is for the sender's own payoff
        return
    if env.sender_emission is not None or env.num_messages != env.num_actions:
        return
    lam = max(float(loss.lagrange_multiplier), float(loss.get("lagrange_multiplier_final") or 0.0))

    def threshold(scales: dict[str, float]) -> float:
        return obedience_penalty_threshold(env.occupancy, env.sender_utility / scales["sender"],
                                           env.receiver_utility / scales["receiver"])

    seen = threshold(normalization.scales if normalization is not None else {"sender": 1.0, "receiver": 1.0})
    if seen <= WEAK_PENALTY_FACTOR * lam:
        return
    fix = f"raise loss.lagrange_multiplier towards {seen:.3g}"
    if cfg.env.get("payoff_normalization", "none") != "per_agent":
        per_agent = threshold(PayoffNormalization(env.sender_utility, env.receiver_utility).scales)
        if per_agent <= WEAK_PENALTY_FACTOR * lam:
            fix += (f", or, if the two agents' payoffs are in different units, set env.payoff_normalization=per_agent "
                    f"(lambda* = {per_agent:.3g} there)")
    warnings.warn(
        f"loss.lagrange_multiplier={lam:g} is below 1/{WEAK_PENALTY_FACTOR:g} of this game's exact-penalty threshold "
        f"lambda* = {seen:.3g} (in the units the learners see): breaking obedience pays the sender more than the "
        f"hinges charge, and learned schemes tend to end where the receiver stops following them "
        f"(docs/equations.md, 'How large lambda must be'). A penalty of at least lambda* is needed, though not always "
        f"enough: {fix}.", stacklevel=2)


def finish(cfg: DictConfig, exp: Experiment, env: BayesianPersuasionEnv, method: Method, trainer: Trainer) -> dict:
    """After training: the checkpoint; a stopped run's ``status: interrupted`` summary (then exit status 128 +
    signal); else the exact evaluation of each seed's final policies against the game's exact benchmarks (the LP
    optimum of eq. 1 and the no-information value, per step on the state occupancy: the prior for a one-step
    game), each seed's ``summary.json`` and, with several seeds, ``seeds_summary.json``. Returns the summary."""
    trainer.save()
    trainer.finish_if_interrupted()
    lp = optimal_signaling_scheme(
        env.occupancy, env.sender_utility, env.receiver_utility, sender_emission=env.sender_emission
    )
    no_info = no_information_value(env.occupancy, env.sender_utility, env.receiver_utility)
    name = method.name
    if method.seeds is None:
        return _finish(cfg, name, exp, env, method, trainer, trainer.history, lp, no_info)
    summaries = [
        _finish(cfg, name, run, env, method.member(i), trainer, trainer.seed_history[i], lp, no_info)
        for i, run in enumerate(trainer.seed_experiments)
    ]
    summary = seeds_summary(
        summaries,
        keys=(
            "sender_reward", "receiver_reward", "honesty", "students_to_target", "wall_time_to_target_s",
            "objective_gain_fraction",  # prosocial runs only
        ),
        method=name, task=cfg.task, env_steps=trainer.frames_all_seeds, env_steps_per_seed=trainer.frames,
        wall_time_s=trainer.wall_time, env_steps_per_s=trainer.frames_all_seeds / max(trainer.wall_time, 1e-9),
        lp_sender_value=lp.sender_value, no_info_sender_value=no_info[0],
        **trainer.resume_record(),
    )
    exp.finish(summary, filename="seeds_summary.json")
    return summary


def _finish(cfg, method, exp, env, agents, trainer, history, lp, no_info) -> dict:
    """Exact evaluation of one seed's final policies; writes its summary into ``exp`` and returns it."""
    frames = trainer.frames  # this seed's env steps
    final = one_step_evaluator(env)(agents)
    phi, pi = one_step_tables(env, agents)
    # persuasion, not exploitation: the target counts once the receiver is not losing by obeying
    reached = next(
        (
            row for row in history
            if row.get("eval/sender_reward", -1e9) >= TARGET_SENDER_REWARD
            and row.get("eval/receiver_reward", -1e9) >= RECEIVER_FLOOR
        ),
        None,
    )
    summary = {
        "method": method,
        "task": cfg.task,
        "seed": exp.seed,
        "env_steps": frames,
        "wall_time_s": trainer.wall_time,
        "env_steps_per_s": frames / max(trainer.wall_time, 1e-9),
        "num_seeds_trained_together": trainer.num_seeds,
        "horizon": env.horizon,
        "state_occupancy": env.occupancy.tolist(),
        **final,
        "lp_sender_value": lp.sender_value,
        "lp_receiver_value": lp.receiver_value,
        "no_info_sender_value": no_info[0],
        "no_info_receiver_value": no_info[1],
        "scheme": phi.tolist(),
        "policy": pi.tolist(),
        **_prosocial_benchmarks(cfg, env, final),
        "students_to_target": reached["frames"] if reached else None,
        "wall_time_to_target_s": reached["time/wall_s"] if reached else None,
        "target_sender_reward": TARGET_SENDER_REWARD,
        "history": history,
        **trainer.resume_record(),
    }
    summary["summary_path"] = str(exp.finish(summary))
    return summary


def _prosocial_benchmarks(cfg, env, final: dict) -> dict:
    """A prosocial sender's exact benchmarks (``sender_objective.receiver_weight = w > 0``; else none): the
    objective ``(1 - w) U_s + w U_r`` of the final policies, of the prosocial LP optimum and of no information,
    and the fraction of the LP's gain over no information that the policies reach."""
    w = prosocial_weight(cfg)
    if w == 0.0:
        return {}
    game = (env.occupancy, env.sender_utility, env.receiver_utility)
    lp = optimal_signaling_scheme(*game, receiver_weight=w, sender_emission=env.sender_emission).objective_value(w)
    no_info = no_information_value(*game, receiver_weight=w)
    base = (1.0 - w) * no_info[0] + w * no_info[1]
    value = (1.0 - w) * final["sender_reward"] + w * final["receiver_reward"]
    return {
        "sender_objective_receiver_weight": w,
        "objective_value": value,
        "lp_objective_value": lp,
        "no_info_objective_value": base,
        # None: no information is already optimal, there is no gain to measure
        "objective_gain_fraction": (value - base) / (lp - base) if lp - base > 1e-12 else None,
    }
