"""The Reaching Goals pipeline behind ``recipes/*_reaching_goals.py``.

Sections: 1. the game, 2. the method, 3. the run (logs, checkpoints), 4. training, 5. evaluation of the final
policies by rollouts on a separate environment and the summary (``summary.json``), 6. figures (learning curves,
the learned signaling scheme, an episode GIF). The last printed line is ``summary: <path>``.
"""
from __future__ import annotations

import time

import torch
from omegaconf import DictConfig

from msgzoo.config_validation import validate_config
from msgzoo.envs import ReachingGoalsEnv
from msgzoo.evaluation import evaluate_episodes
from msgzoo.experiment import Experiment
from msgzoo.methods import build_method
from msgzoo.trainer import Trainer

#: The sender return per episode the issue's target counts episodes up to (the paper's SGOC reaches ~250 on 3x3).
TARGET_SENDER_RETURN = 200.0


def make_env(cfg: DictConfig, *, num_envs: int | None = None, seed: int | None = None) -> ReachingGoalsEnv:
    """The Reaching Goals env of ``cfg.env`` (``num_envs`` / ``seed`` override the config's)."""
    e = cfg.env
    return ReachingGoalsEnv(
        height=e.height, width=e.width, horizon=e.horizon,
        reward_amplifier=e.reward_amplifier, punish_amplifier=e.punish_amplifier,
        bounded=e.bounded, aligned=e.aligned, receiver_observes=tuple(e.receiver_observes),
        num_envs=num_envs or e.num_envs, device=cfg.device, seed=cfg.seed if seed is None else seed,
    )


def budget_frames(cfg: DictConfig) -> int:
    """The budget in env steps: ``collector.total_frames`` if set, else ``total_episodes * horizon``."""
    c = cfg.collector
    if c.get("total_frames") is not None:
        return int(c.total_frames)
    return int(c.total_episodes) * int(cfg.env.horizon)


def run(cfg: DictConfig, method: str) -> dict:
    validate_config(cfg, method=method)  # fail on a typo before anything runs
    torch.set_num_threads(int(cfg.get("threads", 1)))
    torch.manual_seed(cfg.seed)

    # 1. The game: a batch of num_envs Reaching Goals games, and a separate one for the final evaluation.
    env = make_env(cfg)
    horizon = env.horizon
    total_frames = budget_frames(cfg)
    frames_per_batch = env.num_envs * int(cfg.env.steps_per_batch)

    # 2. The method: networks (one conv layer + MLP), losses, optimizers (msgzoo.methods).
    agents = build_method(method, env, cfg, device=cfg.device)

    # 3. The run: CSV + wandb logs, checkpoints, summary.
    with Experiment.from_config(cfg, method) as exp:
        trainer = Trainer(
            env, agents, exp,
            total_frames=total_frames, frames_per_batch=frames_per_batch,
            max_grad=cfg.optim.max_grad, log_interval=cfg.logger.log_interval,
            checkpoint_interval=cfg.logger.checkpoint_interval, episode_length=horizon, device=cfg.device,
        )
        if cfg.resume:
            trainer.resume(cfg.resume)

        # 4. Training: alternate receiver and sender updates on fresh batches of num_envs x steps_per_batch
        #    steps (DIAL: one joint update per batch). Train curves are mean step rewards x horizon.
        cpu_start = time.process_time()
        trainer.train()
        cpu_time = time.process_time() - cpu_start  # this process's CPU time (the wall time counts other loads too)
        trainer.save()

        # 5. Evaluation of the final policies: eval.episodes full episodes on a separate env, and the summary.
        eval_env = make_env(cfg, num_envs=int(cfg.eval.episodes), seed=int(cfg.eval.seed))
        final = evaluate_episodes(eval_env, agents)
        reached = next(
            (row for row in trainer.history if row.get("train/sender_reward", -1e9) >= TARGET_SENDER_RETURN), None
        )
        summary = {
            "method": method,
            "task": cfg.task,
            "map": f"{env.height}x{env.width}",
            "seed": cfg.seed,
            "episodes": trainer.frames / horizon,
            "env_steps": trainer.frames,
            "wall_time_s": trainer.wall_time,
            "env_steps_per_s": trainer.frames / max(trainer.wall_time, 1e-9),
            "cpu_time_s": cpu_time,
            "env_steps_per_cpu_s": trainer.frames / max(cpu_time, 1e-9),
            "eval_episodes": eval_env.num_envs,
            **final,
            "episodes_to_target": reached["frames"] / horizon if reached else None,
            "wall_time_to_target_s": reached["time/wall_s"] if reached else None,
            "target_sender_return": TARGET_SENDER_RETURN,
            "history": trainer.history,
        }

        # 6. Figures: learning curves, signaling-scheme heatmaps, an episode GIF with the message.
        if cfg.figures:
            from msgzoo.plotting import reaching_goals_figures

            figure_env = make_env(cfg, num_envs=4, seed=int(cfg.eval.seed))
            figures = reaching_goals_figures(
                exp.run_dir, trainer.history, agents, figure_env, horizon=horizon, seed=int(cfg.eval.seed), final=final
            )
            summary["figures"] = {k: str(v) for k, v in figures.items()}
            for name, path in figures.items():
                print(f"figure ({name}): {path}", flush=True)
        exp.finish(summary)
    return summary
