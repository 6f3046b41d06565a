"""SGOC on Recommendation Letter, or any one-step persuasion game by config.

    python recipes/sgoc_recommendation_letter.py seed=3 collector.total_frames=1_000_000
    python recipes/sgoc_recommendation_letter.py env.game=seller_buyer env.num_messages=3
    python recipes/sgoc_recommendation_letter.py env.game=weather_forecast env.num_messages=3  # a Markov game

``make_method`` assembles SGOC (networks, losses, optimizers, the alternating update); ``train`` runs it. The task's
helpers (the game, the run's trainer, exact evaluation) are in msgzoo.pipelines.one_step.
"""
from __future__ import annotations

from functools import partial

import hydra
from omegaconf import DictConfig
from tensordict.nn import TensorDictSequential
from torchrl.objectives import SoftUpdate

from msgzoo.modules import make_action_value_critic, make_receiver_actor, make_signaling_scheme
from msgzoo.objectives import ObedienceConstraintLoss, SignalingGradientLoss
from msgzoo.pipelines import one_step as task
from msgzoo.runtime.experiment import Experiment, start_run
from msgzoo.training.evaluation import SCHEME_READOUT
from msgzoo.training.methods import (
    OPTIM_LEARNING_RATES, SENDER_OBJECTIVE_KEY, Method, Networks, UpdatePhase, adam, epsilon_from_config,
    lagrange_multiplier_from_config, make_receiver_loss, obedience_allowance_from_config,
    obedience_noise_allowance_from_config,
    obedience_recommendation_weight_from_config, obedience_smoothing_from_config, recommendation_scheduled_losses,
    prepare_receiver, prepare_sender, reward_mix_from_config,
    schedule_after_warmup, schedule_over_warmup,
)

METHOD = "sgoc"


def make_method(env, cfg, *, seeds=None, device="cpu") -> Method:
    """SGOC: the signaling gradient (eq. 4-5) plus the extended obedience constraints (eq. 6-7); an A2C receiver."""
    L, O = cfg.loss, cfg.optim
    # Networks (one independent copy per seed when several seeds train together)
    nets = Networks(env, hidden=cfg.network.hidden, seeds=seeds)
    scheme = make_signaling_scheme(nets.sender(nets.num_messages)).to(device)  # the sender's phi(sigma | s)
    # the receiver's pi(a | o, sigma); it starts reading message k as action k if receiver_recommendation_logit > 0
    receiver_net = nets.receiver(nets.num_actions, recommendation_logit=cfg.network.receiver_recommendation_logit)
    receiver = make_receiver_actor(receiver_net).to(device)

    # The receiver's loss (loss.receiver_gradient): TorchRL's A2C with a critic V(o, sigma) (sampled, the paper's),
    # or every action's advantage under a critic Q(o, sigma, .) (all_actions, natural); its entropy bonus moves from
    # warmup.receiver_entropy_coeff to loss.receiver_entropy_coeff over the warm-up (a constant without one)
    receiver_critic, receiver_loss, receiver_entropy = make_receiver_loss(receiver, nets, cfg, device=device)

    # The sender's losses: the signaling gradient through the receiver's policy, with its critic W^i(s, a), and
    # the obedience constraints with the receiver's W^j(s, a); summed in one update
    sender_critic = make_action_value_critic(nets.sender(nets.num_actions)).to(device)
    signaling_loss = SignalingGradientLoss(
        scheme, receiver, sender_critic, receiver_coeff=L.receiver_coeff, gamma=L.sender_gamma,
        num_messages=nets.num_messages, entropy_coeff=L.sender_entropy_coeff, gradient=L.sender_gradient,
        recommendation_weight=L.recommendation_weight, ensemble_shape=nets.ensemble_shape,
    )
    receiver_value = make_action_value_critic(
        nets.sender(nets.num_actions), out_key=("sender", "receiver_action_value")
    ).to(device)
    obedience_loss = ObedienceConstraintLoss(
        scheme, receiver, receiver_value,
        lagrange_multiplier=L.lagrange_multiplier, epsilon=L.epsilon, mode=L.obedience_mode,
        counterfactual=L.counterfactual, dual_lr=L.dual_lr, gamma=L.receiver_gamma, num_messages=nets.num_messages,
        margin=L.obedience_margin, joint_epsilon=L.joint_epsilon, ensemble_shape=nets.ensemble_shape,
        recommendation_weight=obedience_recommendation_weight_from_config(cfg),
        noise_allowance=obedience_noise_allowance_from_config(cfg), smoothing=obedience_smoothing_from_config(cfg),
        **obedience_allowance_from_config(cfg),
    ).to(device)
    obedience_loss.share_memo(signaling_loss)  # their shared no-grad results are computed once per update
    sender_losses = {"signaling": signaling_loss, "obedience": obedience_loss}

    # Optimizers (Adam, one per agent), and the sender's critics' target copies
    optimizers = {
        "receiver": adam([(receiver, O.receiver_actor_lr), (receiver_critic, O.receiver_critic_lr)],
                         beta2=O.adam_beta2),
        "sender": adam([(scheme, O.signaling_lr), (sender_critic, O.sender_critic_lr),
                        (receiver_value, O.sender_critic_lr)], beta2=O.adam_beta2),
    }
    target_updaters = [SoftUpdate(loss, tau=L.target_tau) for loss in sender_losses.values()]

    # Schedules over each seed's env steps: the cooperative warm-up's reward mix, the obedience margins and
    # multiplier, the recommendation weight (each None where the config keeps it constant)
    reward_mix = reward_mix_from_config(cfg)
    if reward_mix is not None:  # the sender learns from the mixed reward the sender phase writes
        signaling_loss.set_keys(reward=SENDER_OBJECTIVE_KEY)
    joint_epsilon, epsilon = schedule_over_warmup(cfg, "joint_epsilon"), epsilon_from_config(cfg)
    lagrange_multiplier = lagrange_multiplier_from_config(cfg)

    # The alternating update: the receiver learns on one batch, the sender on the next
    receiver_phase = UpdatePhase(
        "receiver", {"receiver": receiver_loss},
        # the receiver's critic bootstraps on the next step's message
        prepare=partial(prepare_receiver, scheme=scheme, loss=receiver_loss, entropy=receiver_entropy),
    )
    sender_phase = UpdatePhase(
        "sender", sender_losses,
        prepare=partial(prepare_sender, reward_mix=reward_mix, joint_epsilon=joint_epsilon, epsilon=epsilon,
                        lagrange_multiplier=lagrange_multiplier,
                        obedience=obedience_loss, recommendation=schedule_after_warmup(cfg, "recommendation_weight"),
                        losses=recommendation_scheduled_losses(sender_losses, cfg)),
        after_loss={"obedience": obedience_loss.update_state},  # dual ascent, firing rates (where used)
        after_step=tuple(u.step for u in target_updaters),
    )
    return Method(
        METHOD, TensorDictSequential(scheme, receiver), scheme, receiver, sender_losses, receiver_loss, optimizers,
        target_updaters, seeds=nets.seeds, reward_mix=reward_mix, joint_epsilon=joint_epsilon, epsilon=epsilon,
        phases=(receiver_phase, sender_phase), readout=SCHEME_READOUT, learning_rate_fields=OPTIM_LEARNING_RATES,
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
        #    replay buffer (optim.epochs passes of optim.minibatches minibatches), to the method's next update phase.
        #    The trainer logs, checks for nan/inf and checkpoints around every batch, and stops on SIGINT/SIGTERM.
        with trainer.collecting() as collector:
            for batch in collector:
                trainer.update(batch)  # the method's next phase: the receiver's, then the sender's, in turn
                if trainer.end_of_batch(batch):
                    break

        # 5. Exact evaluation of each seed's final policies against the LP optimum, and the summaries
        return task.finish(cfg, exp, env, method, trainer)


@hydra.main(config_path="config", config_name="sgoc_recommendation_letter", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
