"""The one-step persuasion pipeline behind ``recipes/*_recommendation_letter.py``.

Sections: 1. the game, 2. the method, 3. the run (logs, checkpoints), 4. training, 5. exact evaluation
and the summary (``summary.json``; the last printed line is ``summary: <path>``).
"""
from __future__ import annotations


import torch
from omegaconf import DictConfig

from msgzoo.config_validation import validate_config
from msgzoo.envs import BayesianPersuasionEnv
from msgzoo.envs.persuasion_games import make_one_step_env
from msgzoo.evaluation import one_step_evaluator, one_step_tables
from msgzoo.experiment import Experiment
from msgzoo.methods import build_method
from msgzoo.optimal_scheme import no_information_value, optimal_signaling_scheme
from msgzoo.trainer import Trainer

#: The sender value the issue's speed target counts students up to (the reference reaches 0.64).
TARGET_SENDER_REWARD = 0.64
#: ... reached while the receiver does at least this well (the issue's bound for a persuaded receiver).
RECEIVER_FLOOR = -0.05


def make_env(cfg: DictConfig, *, num_envs: int | None = None, seed: int | None = None) -> BayesianPersuasionEnv:
    e = cfg.env
    kwargs = dict(
        num_envs=num_envs or e.num_envs, num_messages=e.num_messages, device=cfg.device,
        seed=cfg.seed if seed is None else seed,
    )
    if e.prior is not None:
        return BayesianPersuasionEnv(list(e.prior), [list(r) for r in e.sender_utility], [list(r) for r in e.receiver_utility], **kwargs)
    return make_one_step_env(e.game, **kwargs)


def run(cfg: DictConfig, method: str) -> dict:
    validate_config(cfg, method=method)  # fail on a typo before anything runs
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    # 1. The game, and its exact benchmarks: the LP optimum (eq. 1) and the no-information value.
    env = make_env(cfg)
    lp = optimal_signaling_scheme(env.prior, env.sender_utility, env.receiver_utility)
    no_info_sender, no_info_receiver = no_information_value(env.prior, env.sender_utility, env.receiver_utility)

    # 2. The method: networks, losses, optimizers (msgzoo.methods).
    agents = build_method(method, env, cfg, device=cfg.device)

    # 3. The run: CSV + wandb logs, checkpoints, summary.
    with Experiment.from_config(cfg, method) as exp:
        trainer = Trainer(
            env, agents, exp,
            total_frames=cfg.collector.total_frames, frames_per_batch=env.num_envs,
            max_grad=cfg.optim.max_grad, log_interval=cfg.logger.log_interval,
            checkpoint_interval=cfg.logger.checkpoint_interval, evaluate=one_step_evaluator(env), device=cfg.device,
        )
        if cfg.resume:
            trainer.resume(cfg.resume)

        # 4. Training: alternate receiver and sender updates on fresh batches of students.
        trainer.train()
        trainer.save()

        # 5. Exact evaluation of the final policies and the summary.
        final = one_step_evaluator(env)(agents)
        phi, pi = one_step_tables(env, agents)
        # persuasion, not exploitation: the target counts once the receiver is not losing by obeying
        reached = next(
            (
                row for row in trainer.history
                if row.get("eval/sender_reward", -1e9) >= TARGET_SENDER_REWARD
                and row.get("eval/receiver_reward", -1e9) >= RECEIVER_FLOOR
            ),
            None,
        )
        summary = {
            "method": method,
            "task": cfg.task,
            "seed": cfg.seed,
            "env_steps": trainer.frames,
            "wall_time_s": trainer.wall_time,
            "env_steps_per_s": trainer.frames / max(trainer.wall_time, 1e-9),
            **final,
            "lp_sender_value": lp.sender_value,
            "lp_receiver_value": lp.receiver_value,
            "no_info_sender_value": no_info_sender,
            "no_info_receiver_value": no_info_receiver,
            "scheme": phi.tolist(),
            "policy": pi.tolist(),
            "students_to_target": reached["frames"] if reached else None,
            "wall_time_to_target_s": reached["time/wall_s"] if reached else None,
            "target_sender_reward": TARGET_SENDER_REWARD,
            "history": trainer.history,
        }
        exp.finish(summary)
    return summary
