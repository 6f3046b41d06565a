"""DIAL on Recommendation Letter, or any one-step persuasion game by config.

    python recipes/dial_recommendation_letter.py seed=3 collector.total_frames=1_000_000
    python recipes/dial_recommendation_letter.py env.game=seller_buyer env.num_messages=3

``make_method`` assembles DIAL (networks, losses, optimizers, the joint update); ``train`` runs it. The task's
helpers (the game, the run's trainer, exact evaluation) are in msgzoo.pipelines.one_step.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig
from tensordict.nn import TensorDictSequential
from torchrl.objectives import SoftUpdate

from msgzoo.modules.dial import dial_exploration, make_dial_receiver, make_dial_sender
from msgzoo.objectives import DIALLoss
from msgzoo.pipelines import one_step as task
from msgzoo.runtime.experiment import Experiment, start_run
from msgzoo.training.evaluation import DRU_READOUT
from msgzoo.training.methods import Method, Networks, UpdatePhase, adam

METHOD = "dial"


def make_method(env, cfg, *, seeds=None, device="cpu") -> Method:
    """DIAL (Foerster et al., 2016): sender and receiver trained together by the receiver's TD loss through a
    differentiable channel (DRU)."""
    D = cfg.dial
    # Networks: biased linear maps on one-step games (a zero message must not tie every Q-value); one copy per seed
    nets = Networks(env, hidden=cfg.network.hidden, linear_bias=True, seeds=seeds)
    sender = make_dial_sender(nets.sender(nets.num_messages), noise_std=D.noise_std).to(device)  # message + DRU
    receiver = make_dial_receiver(nets.receiver(nets.num_actions), nets.num_actions).to(device)  # Q(o, m, .)
    exploration = dial_exploration(  # the receiver's epsilon-greedy, annealed over each seed's env steps
        nets.num_actions, eps_init=D.eps_init, eps_end=D.eps_end, annealing_num_steps=D.annealing_frames
    ).to(device)

    # The loss: the receiver's TD error, backpropagated through the channel into the sender
    loss = DIALLoss(sender, receiver, gamma=cfg.loss.receiver_gamma, ensemble_shape=nets.ensemble_shape)

    # One optimizer for both agents, and the target network's soft update
    optimizers = {METHOD: adam([(sender, D.lr), (receiver, D.lr)])}
    updater = SoftUpdate(loss, tau=cfg.loss.target_tau)

    # The update: one joint phase on every batch
    phase = UpdatePhase(METHOD, {METHOD: loss}, after_step=(updater.step,), after_batch=exploration.step)
    return Method(
        METHOD, TensorDictSequential(sender, receiver, exploration), sender, receiver, {METHOD: loss}, None,
        optimizers, [updater], exploration, seeds=nets.seeds, phases=(phase,), readout=DRU_READOUT,
        learning_rate_fields=("dial.lr",),
    )


def train(cfg: DictConfig) -> dict:
    seeds = start_run(cfg, METHOD)  # config checks, threads, torch seed; the seeds trained together (or None)

    # 1. The game: num_envs students per seed (whole episodes of a Markov game), one row of games per seed
    env = task.make_env(cfg, num_seeds=len(seeds) if seeds else 1)

    # 2. The method
    method = make_method(env, cfg, seeds=seeds, device=cfg.device)

    # 3. The run: its folder, loggers (logger.backends), checkpoints; one folder per seed with several seeds
    with Experiment.from_config(cfg, METHOD) as exp:
        trainer = task.make_trainer(cfg, env, method, exp)  # budget, log and checkpoint intervals; resume=

        # 4. Training: TorchRL's Collector gathers num_envs students per seed; each batch goes, through a
        #    replay buffer (optim.epochs passes of optim.minibatches minibatches), to the joint update of both agents.
        #    The trainer logs, checks for nan/inf and checkpoints around every batch, and stops on SIGINT/SIGTERM.
        with trainer.collecting() as collector:
            for batch in collector:
                trainer.update(batch)  # the method's next phase: its one joint phase, every batch
                if trainer.end_of_batch(batch):
                    break

        # 5. Exact evaluation of each seed's final policies against the LP optimum, and the summaries
        return task.finish(cfg, exp, env, method, trainer)


@hydra.main(config_path="config", config_name="dial_recommendation_letter", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
