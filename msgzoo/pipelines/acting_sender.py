"""SGOC for a sender that also acts (``recipes/sgoc_coaching_letter.py``): the Coaching Letter by default.

The sender has two policies on its observation: an environmental action ``b ~ mu(. | s)`` (an actor trained by its
own policy gradient, TorchRL's ``A2CLoss`` on ``r^i`` with a critic ``V^i(s)``) and the scheme
``phi(sigma | s, b)``, which reads the action it took; the signaling gradient and the obedience loss are the
paper's (``SignalingGradientLoss``, ``ObedienceConstraintLoss``) with critics ``W^i(s, b, .)``, ``W^j(s, b, .)``
that read ``b`` too. The receiver is the one-step recipes' (A2C on its reward, sees only the message).
"""
from __future__ import annotations

import time

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torch.distributions import OneHotCategorical
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import SoftUpdate

from msgzoo.envs import ActingSenderPersuasionEnv
from msgzoo.envs.persuasion_games import COACHING_LETTER
from msgzoo.game_theory.exact_payoffs import tabulate_one_step_policies
from msgzoo.game_theory.optimal_scheme import optimal_acting_sender_scheme, optimal_signaling_scheme
from msgzoo.modules import (
    ObservationMessageNet,
    VectorNet,
    make_action_value_critic,
    make_receiver_actor,
    make_signaling_scheme,
    make_value_critic,
)
from msgzoo.modules.fast import FastTensorDictModule
from msgzoo.objectives import ObedienceConstraintLoss, SignalingGradientLoss, make_receiver_a2c_loss
from msgzoo.pipelines.multi_receiver import clamped_step, write_summary

SENDER_ACTION = ("sender", "action")
SENDER_IN = [("sender", "observation"), SENDER_ACTION]


def build(env: ActingSenderPersuasionEnv, cfg: DictConfig) -> dict:
    """The networks and losses of one seed (call ``torch.manual_seed`` first)."""
    s, b, a, k, L = env.num_states, env.num_sender_actions, env.num_actions, env.num_messages, cfg.loss
    actor = ProbabilisticActor(
        FastTensorDictModule(VectorNet(s, b, bias=False), in_keys=[("sender", "observation")],
                             out_keys=[("sender", "action_logits")]),
        in_keys={"logits": ("sender", "action_logits")}, out_keys=[SENDER_ACTION], distribution_class=OneHotCategorical,
        return_log_prob=True, log_prob_key=("sender", "action_log_prob"),
    )
    scheme = make_signaling_scheme(ObservationMessageNet(VectorNet(s + b, k, bias=False)), in_keys=SENDER_IN)
    receiver = make_receiver_actor(ObservationMessageNet(VectorNet(k, a, bias=False)))
    receiver_critic = make_value_critic(ObservationMessageNet(VectorNet(k, 1, bias=False)),
                                        in_keys=[("receiver", "observation"), ("sender", "message")],
                                        out_key=("receiver", "state_value"))
    action_critic = make_value_critic(VectorNet(s, 1), in_keys=[("sender", "observation")], out_key=("sender", "state_value"))
    w_sender = make_action_value_critic(ObservationMessageNet(VectorNet(s + b, a)), in_keys=SENDER_IN)
    w_receiver = make_action_value_critic(ObservationMessageNet(VectorNet(s + b, a)), in_keys=SENDER_IN,
                                          out_key=("sender", "receiver_action_value"))
    losses = {
        "receiver": make_receiver_a2c_loss(receiver, receiver_critic, gamma=0.0),
        # the sender's own policy gradient for its environmental action
        "action": make_receiver_a2c_loss(
            actor, action_critic, gamma=0.0, action_key=SENDER_ACTION,
            reward_key=("sender", "reward"),
            value_key=("sender", "state_value"), log_prob_key=("sender", "action_log_prob"),
        ),
        "signaling": SignalingGradientLoss(scheme, receiver, w_sender, receiver_coeff=L.receiver_coeff, gamma=0.0,
                                           num_messages=k, gradient=L.sender_gradient),
        "obedience": ObedienceConstraintLoss(
            scheme, receiver, w_receiver, lagrange_multiplier=L.lagrange_multiplier, epsilon=L.epsilon,
            counterfactual="all", gamma=0.0, num_messages=k,
        ),
    }
    return dict(actor=actor, scheme=scheme, receiver=receiver, policy=TensorDictSequential(actor, scheme, receiver),
                losses=losses, critics=[action_critic, w_sender, w_receiver], receiver_critic=receiver_critic)


@torch.no_grad()
def tables(parts: dict, env: ActingSenderPersuasionEnv) -> torch.Tensor:
    """``x[s, b, a] = mu(b | s) * sum_sigma phi(sigma | s, b) pi(a | sigma)``: the played joint of the final policies."""
    s, b = env.num_states, env.num_sender_actions
    mu = torch.softmax(_logits(parts["actor"], torch.eye(s)), -1)
    phi, pi = tabulate_one_step_policies(_PairScheme(parts["scheme"], s), parts["receiver"], s * b, env.num_messages)
    return mu.unsqueeze(-1) * (phi @ pi).reshape(s, b, -1)


def _logits(actor, obs: torch.Tensor) -> torch.Tensor:
    """The action policy's logits on the one-hot states ``obs``."""
    td = TensorDict({("sender", "observation"): obs}, batch_size=[obs.shape[0]])
    return actor.module[0](td).get(("sender", "action_logits")).double()


class _PairScheme(torch.nn.Module):
    """The scheme on one-hot ``(s, b)`` pairs, as :func:`tabulate_one_step_policies` feeds one-hot inputs."""

    def __init__(self, scheme, num_states: int):
        super().__init__()
        self.scheme, self.num_states = scheme, num_states

    def forward(self, td):
        pair = td.get(("sender", "observation"))  # [S * B, S * B] one-hot pairs (s * B + b)
        s = self.num_states
        b = pair.shape[-1] // s
        index = pair.argmax(-1)
        td = td.clone(False)
        td.set(("sender", "observation"), torch.nn.functional.one_hot(index // b, s).to(pair.dtype))
        td.set(SENDER_ACTION, torch.nn.functional.one_hot(index % b, b).to(pair.dtype))
        return self.scheme.logits_module(td)


def train_seed(cfg: DictConfig, seed: int, game: dict, lp_value: float) -> dict:
    torch.manual_seed(seed)
    env = ActingSenderPersuasionEnv(game["prior"], game["sender_utility"], game["receiver_utility"],
                                    num_envs=cfg.env.num_envs, seed=seed)
    parts = build(env, cfg)
    losses, O = parts["losses"], cfg.optim
    receiver_opt = torch.optim.Adam([{"params": parts["receiver"].parameters(), "lr": O.receiver_actor_lr},
                                     {"params": parts["receiver_critic"].parameters(), "lr": O.receiver_critic_lr}])
    sender_opt = torch.optim.Adam(
        [{"params": list(parts["actor"].parameters()) + list(parts["scheme"].parameters()), "lr": O.signaling_lr},
         {"params": [p for c in parts["critics"] for p in c.parameters()], "lr": O.sender_critic_lr}]
    )
    updaters = [SoftUpdate(losses[name], tau=cfg.loss.target_tau) for name in ("signaling", "obedience")]
    batches = max(1, int(cfg.collector.total_frames) // env.num_envs)
    start = time.perf_counter()
    for i in range(batches):
        with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
            batch = env.step(parts["policy"](env.reset()))
        batch.get("next").set(("sender", "message"), torch.zeros_like(batch.get(("sender", "message"))))
        if i % 2 == 0:
            out = losses["receiver"](batch)
            clamped_step(receiver_opt, out["loss_objective"] + out["loss_critic"], O.max_grad)
        else:
            act, sig, obe = (losses[n](batch) for n in ("action", "signaling", "obedience"))
            total = (act["loss_objective"] + act["loss_critic"] + sig["loss_signaling"] + sig["loss_critic"]
                     + obe["loss_obedience"] + obe["loss_critic"])
            clamped_step(sender_opt, total, O.max_grad)
            for updater in updaters:
                updater.step()
    x = tables(parts, env)
    joint = torch.as_tensor(game["prior"], dtype=torch.float64)[:, None, None] * x
    us = torch.as_tensor(game["sender_utility"], dtype=torch.float64)
    ur = torch.as_tensor(game["receiver_utility"], dtype=torch.float64)
    sender = float((joint * us).sum())
    return {
        "seed": seed, "sender_reward": sender, "receiver_reward": float((joint * ur).sum()),
        "fraction_of_lp_gain": sender / lp_value if lp_value > 0 else None,
        "env_steps": batches * env.num_envs, "wall_time_s": time.perf_counter() - start, "played": x.tolist(),
    }


def run(cfg: DictConfig) -> dict:
    torch.set_num_threads(cfg.threads)
    game = COACHING_LETTER
    lp = optimal_acting_sender_scheme(game["prior"], game["sender_utility"], game["receiver_utility"])
    summary = {
        "lp_sender_value": lp.sender_value,
        "lp_receiver_value": lp.receiver_value,
        "lp_best_fixed_action": max(  # the sender always plays the same action b
            optimal_signaling_scheme(game["prior"], [r[b] for r in game["sender_utility"]],
                                     [r[b] for r in game["receiver_utility"]]).sender_value
            for b in range(len(game["sender_utility"][0]))
        ),
        "seeds": [train_seed(cfg, cfg.seed + i, game, lp.sender_value) for i in range(cfg.num_seeds)],
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_summary(cfg, summary)
    return summary
