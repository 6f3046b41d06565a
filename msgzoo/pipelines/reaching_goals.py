"""The task helpers of ``recipes/*_reaching_goals.py`` (as TorchRL's scripts import their ``utils_*.py``):
:func:`make_env` (the game of ``cfg.env``), :func:`make_trainer` (the run's budget, logs and checkpoints),
:func:`finish` (evaluation of the final policies by rollouts on a separate environment, the summaries and figures:
learning curves, the learned signaling scheme, an episode GIF). The last printed line is ``summary: <path>``.
"""
from __future__ import annotations

from omegaconf import DictConfig

from msgzoo.envs import ReachingGoalsEnv
from msgzoo.runtime.experiment import Experiment, seeds_summary
from msgzoo.training.evaluation import evaluate_episodes
from msgzoo.training.methods import Method
from msgzoo.training.trainer import Trainer

#: The sender return per episode the issue's target counts episodes up to (the paper's SGOC reaches ~250 on 3x3).
TARGET_SENDER_RETURN = 200.0


def make_env(
    cfg: DictConfig, *, num_envs: int | None = None, seed: int | None = None, num_seeds: int = 1
) -> ReachingGoalsEnv:
    """The Reaching Goals env of ``cfg.env`` (``num_envs`` / ``seed`` override the config's); with ``num_seeds > 1``
    one row of ``num_envs`` games per seed (``batch_size=[num_seeds, num_envs]``)."""
    e = cfg.env
    n = num_envs or e.num_envs
    return ReachingGoalsEnv(
        height=e.height, width=e.width, horizon=e.horizon,
        reward_amplifier=e.reward_amplifier, punish_amplifier=e.punish_amplifier,
        bounded=e.bounded, aligned=e.aligned, receiver_observes=tuple(e.receiver_observes),
        num_envs=n * num_seeds, batch_size=[num_seeds, n] if num_seeds > 1 else None,
        device=cfg.device, seed=cfg.seed if seed is None else seed,
    )


def make_trainer(cfg: DictConfig, env: ReachingGoalsEnv, method: Method, exp: Experiment) -> Trainer:
    """The :class:`Trainer` of a recipe's run: per seed the budget and batch a single run would have (``num_envs``
    games x ``env.steps_per_batch`` steps), the config's log / checkpoint intervals and replay passes, one run folder
    per seed when several train together; resumed from ``cfg.resume`` if set."""
    return Trainer.from_config(
        cfg, env, method, exp, frames_per_batch=env.batch_size[-1] * int(cfg.env.steps_per_batch),
        episode_length=env.horizon,
    )


def finish(cfg: DictConfig, exp: Experiment, env: ReachingGoalsEnv, method: Method, trainer: Trainer) -> dict:
    """After training: the checkpoint; a stopped run's ``status: interrupted`` summary (then exit status 128 +
    signal); else each seed's final policies evaluated by ``eval.episodes`` rollouts on a separate env, its
    ``summary.json`` and figures (learning curves, the learned signaling scheme, an episode GIF) and, with several
    seeds, ``seeds_summary.json``. Returns the summary."""
    trainer.save()
    trainer.finish_if_interrupted()
    name, cpu_time = method.name, trainer.cpu_time  # this process's CPU time (the wall time counts other loads too)
    if method.seeds is None:
        return _finish(cfg, name, exp, method, trainer, trainer.history, cpu_time)
    summaries = [
        _finish(cfg, name, run, method.member(i), trainer, trainer.seed_history[i], cpu_time)
        for i, run in enumerate(trainer.seed_experiments)
    ]
    summary = seeds_summary(
        summaries, keys=("sender_return", "receiver_return", "welfare", "episodes_to_target"),
        method=name, task=cfg.task, map=f"{env.height}x{env.width}", env_steps=trainer.frames_all_seeds,
        env_steps_per_seed=trainer.frames, wall_time_s=trainer.wall_time,
        env_steps_per_s=trainer.frames_all_seeds / max(trainer.wall_time, 1e-9), cpu_time_s=cpu_time,
        **trainer.resume_record(),
    )
    exp.finish(summary, filename="seeds_summary.json")
    return summary


def _finish(cfg, method, exp, agents, trainer, history, cpu_time) -> dict:
    """Evaluates one seed's final policies, writes its summary (and figures) into ``exp``; returns the summary."""
    horizon = int(cfg.env.horizon)
    frames = trainer.frames  # this seed's env steps
    # 5. Evaluation of the final policies: eval.episodes full episodes on a separate env, and the summary.
    eval_env = make_env(cfg, num_envs=int(cfg.eval.episodes), seed=int(cfg.eval.seed))
    final = evaluate_episodes(eval_env, agents)
    reached = next((row for row in history if row.get("train/sender_reward", -1e9) >= TARGET_SENDER_RETURN), None)
    summary = {
        "method": method,
        "task": cfg.task,
        "map": f"{eval_env.height}x{eval_env.width}",
        "seed": exp.seed,
        "episodes": frames / horizon,
        "env_steps": frames,
        "wall_time_s": trainer.wall_time,
        "env_steps_per_s": frames / max(trainer.wall_time, 1e-9),
        "cpu_time_s": cpu_time,
        "env_steps_per_cpu_s": frames / max(cpu_time, 1e-9),
        "num_seeds_trained_together": trainer.num_seeds,
        "eval_episodes": eval_env.num_envs,
        **final,
        "episodes_to_target": reached["frames"] / horizon if reached else None,
        "wall_time_to_target_s": reached["time/wall_s"] if reached else None,
        "target_sender_return": TARGET_SENDER_RETURN,
        "history": history,
        **trainer.resume_record(),
    }

    # 6. Figures: learning curves, signaling-scheme heatmaps, an episode GIF with the message.
    if cfg.figures:
        from msgzoo.report.plotting import reaching_goals_figures

        figure_env = make_env(cfg, num_envs=4, seed=int(cfg.eval.seed))
        figures = reaching_goals_figures(
            exp.run_dir, history, agents, figure_env, horizon=horizon, seed=int(cfg.eval.seed), final=final
        )
        summary["figures"] = {k: str(v) for k, v in figures.items()}
        for name, path in figures.items():
            print(f"figure ({name}): {path}", flush=True)
    summary["summary_path"] = str(exp.finish(summary))
    return summary
