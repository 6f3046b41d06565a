"""The Reaching Goals pipeline behind ``recipes/*_reaching_goals.py``.

Sections: 1. the game, 2. the method, 3. the run (logs, checkpoints), 4. training, 5. evaluation of the final
policies by rollouts on a separate environment and the summary (``summary.json``), 6. figures (learning curves,
the learned signaling scheme, an episode GIF). The last printed line is ``summary: <path>``.
"""
from __future__ import annotations

import time

import torch
from omegaconf import DictConfig

from msgzoo.envs import ReachingGoalsEnv
from msgzoo.runtime.config_validation import check_resume, validate_config
from msgzoo.runtime.experiment import Experiment, config_seeds, seeds_summary
from msgzoo.training.evaluation import evaluate_episodes
from msgzoo.training.methods import budget_frames, build_method
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


def run(cfg: DictConfig, method: str) -> dict:
    validate_config(cfg, method=method)  # fail on a typo before anything runs
    check_resume(cfg)  # ... or on a checkpoint made with another config
    torch.set_num_threads(int(cfg.get("threads", 1)))
    torch.manual_seed(cfg.seed)
    seeds = config_seeds(cfg)  # None, or the seeds trained together (num_seeds > 1)
    num_seeds = len(seeds) if seeds else 1

    # 1. The game: a batch of num_envs Reaching Goals games (per seed), and a separate one for the final evaluation.
    env = make_env(cfg, num_seeds=num_seeds)

    # 2. The method: networks (one conv layer + MLP; one copy per seed), losses, optimizers (msgzoo.training.methods).
    agents = build_method(method, env, cfg, device=cfg.device, seeds=seeds)

    # 3. The run: CSV + wandb logs, checkpoints, summary (and one run folder per seed when several train together).
    with Experiment.from_config(cfg, method) as exp:
        seed_runs = exp.seed_runs(cfg, method) if seeds else None
        trainer = Trainer(
            env, agents, exp,
            # per seed: what a single run would have
            total_frames=budget_frames(cfg), frames_per_batch=env.batch_size[-1] * int(cfg.env.steps_per_batch),
            max_grad=cfg.optim.max_grad, log_interval=cfg.logger.log_interval,
            checkpoint_interval=cfg.logger.checkpoint_interval, episode_length=env.horizon, device=cfg.device,
            seed_experiments=seed_runs, epochs=cfg.optim.epochs, minibatches=cfg.optim.minibatches,
        )
        if cfg.resume:
            trainer.resume(cfg.resume, cfg.get("resume_override") or ())

        # 4. Training: alternate receiver and sender updates on fresh batches of num_envs x steps_per_batch
        #    steps (DIAL: one joint update per batch), each batch through a replay buffer: optim.epochs passes of
        #    optim.minibatches minibatches of environments. Train curves are mean step rewards x horizon.
        cpu_start = time.process_time()
        trainer.train()
        cpu_time = time.process_time() - cpu_start  # this process's CPU time (the wall time counts other loads too)
        trainer.save()
        trainer.finish_if_interrupted()  # a stopped run: status "interrupted", no evaluation, exit status 128 + signal

        # 5-6. Evaluation of the final policies, the summary and the figures: per seed.
        if seeds is None:
            return _finish(cfg, method, exp, agents, trainer, trainer.history, cpu_time)
        summaries = [
            _finish(cfg, method, run, agents.member(i), trainer, trainer.seed_history[i], cpu_time)
            for i, run in enumerate(seed_runs)
        ]
        summary = seeds_summary(
            summaries, keys=("sender_return", "receiver_return", "welfare", "episodes_to_target"),
            method=method, task=cfg.task, map=f"{env.height}x{env.width}", env_steps=trainer.frames_all_seeds,
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
