"""SGOC for one sender and a group of receivers (``recipes/sgoc_voting.py``): a committee vote by default.

Sections: 1. the game and its exact optima, 2. the agents (scheme over message profiles, receivers with one
policy each), 3. the losses, 4. training (receivers and sender alternate on fresh batches), 5. exact evaluation.

The sender's signaling gradient is :class:`~msgzoo.objectives.SignalingGradientLoss` unchanged, on the receivers
seen as one actor over action profiles (``log pi = sum_j log pi_j``); obedience is
:class:`~msgzoo.objectives.ReceiversObedienceLoss` (one constraint per receiver and pair of views); every receiver
learns by TorchRL's ``A2CLoss`` on its own reward and message (the group's agent dimension).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import SoftUpdate

from msgzoo.envs import MultiReceiverPersuasionEnv
from msgzoo.envs.common import require
from msgzoo.game_theory.optimal_scheme_receivers import (
    multi_receiver_payoffs,
    optimal_multi_receiver_scheme,
    played_action_profiles,
    voting_game,
)
from msgzoo.modules import VectorNet, make_action_value_critic, make_signaling_scheme
from msgzoo.modules.receivers_group import (
    MessageRouting,
    ReceiversNet,
    make_joint_receivers_actor,
    make_receivers_actor,
    make_receivers_policy,
)
from msgzoo.objectives import ReceiversObedienceLoss, SignalingGradientLoss, make_receiver_a2c_loss

OBJECTIVE_KEY = ("sender", "objective_reward")


def make_game(cfg: DictConfig):
    g = cfg.game
    costs = None if g.costs is None else [float(c) for c in g.costs]
    return voting_game(int(g.num_voters), int(g.quota), float(g.prior_good), costs)


def no_information_value(prior, sender_utility, receiver_utility, signaling: str) -> float:
    """The sender's best value when its messages cannot depend on the state: the LP on the game whose states are
    merged into their average (two identical copies, as the LP wants at least two states)."""
    p = torch.as_tensor(prior, dtype=torch.float64)
    us = torch.as_tensor(sender_utility, dtype=torch.float64)
    ur = torch.as_tensor(receiver_utility, dtype=torch.float64)
    mean_us = torch.einsum("s,s...->...", p, us)
    mean_ur = torch.einsum("s,js...->j...", p, ur)
    merged = optimal_multi_receiver_scheme(
        [0.5, 0.5], torch.stack([mean_us, mean_us]), torch.stack([mean_ur, mean_ur], 1), signaling=signaling
    )
    return merged.sender_value


class _Agents(nn.Module):
    """Everything one seed trains (kept together for the optimizers and the tables)."""

    def __init__(self, env: MultiReceiverPersuasionEnv, cfg: DictConfig):
        super().__init__()
        n, k, s = env.num_receivers, env.num_actions, env.num_states
        view = env.num_messages  # private: K per receiver; public: M = the whole message
        self.routing = MessageRouting(n, view, env.signaling)
        m = self.routing.profile_size
        self.scheme = make_signaling_scheme(VectorNet(s, m, bias=False), message_key=("sender", "profile"))
        self.receivers_net = ReceiversNet(n, 0, view, k)
        self.actor = make_receivers_actor(self.receivers_net)
        self.joint_actor = make_joint_receivers_actor(self.receivers_net, self.routing, k)
        self.policy = make_receivers_policy(self.scheme, self.routing, self.actor, k)
        self.receivers_critic = TensorDictModule(
            ReceiversNet(n, 0, view, 1), in_keys=[("receivers", "observation"), ("sender", "message")],
            out_keys=[("receivers", "state_value")],
        )
        self.sender_critic = make_action_value_critic(VectorNet(s, k**n))
        self.obedience_critic = TensorDictModule(
            nn.Sequential(VectorNet(s, n * k**n), nn.Unflatten(-1, (n, k**n))),
            in_keys=[("sender", "observation")], out_keys=[("sender", "receivers_action_value")],
        )


def _losses(agents: _Agents, cfg: DictConfig, warmup: bool):
    L = cfg.loss
    receivers = make_receiver_a2c_loss(
        agents.actor, agents.receivers_critic, gamma=0.0, action_key=("receivers", "action"),
        reward_key=("receivers", "reward"), value_key=("receivers", "state_value"),
        log_prob_key=("receivers", "action_log_prob"), done_key=("receivers", "done"),
        terminated_key=("receivers", "terminated"),
    )
    signaling = SignalingGradientLoss(
        agents.scheme, agents.joint_actor, agents.sender_critic, receiver_coeff=L.receiver_coeff, gamma=0.0,
        num_messages=agents.routing.profile_size, gradient=L.sender_gradient,
    )
    signaling.set_keys(message=("sender", "profile"), action=("sender", "action_profile"))
    if warmup:
        signaling.set_keys(reward=OBJECTIVE_KEY)
    obedience = ReceiversObedienceLoss(
        agents.scheme, agents.receivers_net, agents.obedience_critic, agents.routing,
        lagrange_multiplier=L.lagrange_multiplier, epsilon=L.epsilon,
    )
    return receivers, signaling, obedience


def clamped_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad: float) -> None:
    optimizer.zero_grad()
    loss.backward()
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad.clamp_(-max_grad, max_grad)  # elementwise, as the one-step recipes
    optimizer.step()


@torch.no_grad()
def tables(agents: _Agents, env: MultiReceiverPersuasionEnv):
    """``(phi, pi)`` for :func:`~msgzoo.game_theory.optimal_scheme_receivers.multi_receiver_payoffs`."""
    td = env.reset()[: env.num_states]
    td.set(("sender", "observation"), torch.eye(env.num_states))
    phi = torch.softmax(agents.scheme.logits_module(td).get(("sender", "logits")).double(), -1)
    if env.signaling == "private":
        phi = phi.reshape(env.num_states, *(env.num_messages,) * env.num_receivers)
    n, x = env.num_receivers, agents.routing.view_size
    logits = agents.receivers_net(torch.zeros(x, n, 0), torch.eye(x).unsqueeze(1).expand(x, n, x))
    return phi, torch.softmax(logits.double(), -1).transpose(0, 1)


def train_seed(cfg: DictConfig, seed: int, game, lp_value: float, no_info: float) -> dict:
    torch.manual_seed(seed)
    env = MultiReceiverPersuasionEnv(*game, signaling=cfg.signaling, num_envs=cfg.env.num_envs, seed=seed,
                                     num_messages=cfg.env.get("num_messages"))
    agents = _Agents(env, cfg)
    warmup_frames = int(cfg.warmup.frames)
    receivers_loss, signaling_loss, obedience_loss = _losses(agents, cfg, warmup_frames > 0)
    O = cfg.optim
    receivers_opt = torch.optim.Adam(
        [{"params": agents.actor.parameters(), "lr": O.receiver_actor_lr},
         {"params": agents.receivers_critic.parameters(), "lr": O.receiver_critic_lr}]
    )
    sender_opt = torch.optim.Adam(
        [{"params": agents.scheme.parameters(), "lr": O.signaling_lr},
         {"params": list(agents.sender_critic.parameters()) + list(agents.obedience_critic.parameters()),
          "lr": O.sender_critic_lr}]
    )
    updater = SoftUpdate(signaling_loss, tau=cfg.loss.target_tau)
    n, batches = env.num_receivers, max(1, int(cfg.collector.total_frames) // env.num_envs)
    start = time.perf_counter()
    for i in range(batches):
        frames = i * env.num_envs
        with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
            batch = env.step(agents.policy(env.reset()))
        nxt = batch.get("next")
        if i % 2 == 0:  # the receivers: the group's done flags and (masked) next messages for their critic
            for flag in ("done", "terminated"):
                nxt.set(("receivers", flag), nxt.get(flag).unsqueeze(-2).expand(*env.batch_size, n, 1))
            nxt.set(("sender", "message"), torch.zeros_like(batch.get(("sender", "message"))))
            out = receivers_loss(batch)
            clamped_step(receivers_opt, out["loss_objective"] + out["loss_critic"], O.max_grad)
        else:
            if warmup_frames > 0:  # the cooperative warm-up: w from warmup.receiver_weight to 0
                w = float(cfg.warmup.receiver_weight) * max(0.0, 1.0 - frames / warmup_frames)
                mean_receivers = nxt.get(("receivers", "reward")).mean(-2)
                nxt.set(OBJECTIVE_KEY, (1 - w) * nxt.get(("sender", "reward")) + w * mean_receivers)
            out_s, out_o = signaling_loss(batch), obedience_loss(batch)
            total = out_s["loss_signaling"] + out_s["loss_critic"] + out_o["loss_obedience"] + out_o["loss_critic"]
            clamped_step(sender_opt, total, O.max_grad)
            updater.step()
    wall = time.perf_counter() - start
    phi, pi = tables(agents, env)
    sender, receivers = multi_receiver_payoffs(*game, phi, pi, signaling=env.signaling)
    return {
        "seed": seed,
        "sender_reward": sender,
        "receiver_rewards": receivers.tolist(),
        "fraction_of_lp_gain": (sender - no_info) / (lp_value - no_info) if lp_value - no_info > 1e-12 else None,
        "env_steps": batches * env.num_envs,
        "wall_time_s": wall,
        "scheme": phi.reshape(env.num_states, -1).tolist(),
        # P(a | s) over action profiles (row-major: the last receiver varies fastest)
        "played": played_action_profiles(phi, pi, signaling=env.signaling).reshape(env.num_states, -1).tolist(),
        "policies": pi.tolist(),
    }


def run(cfg: DictConfig) -> dict:
    require(cfg.signaling in ("private", "public"), "signaling", cfg.signaling, "private or public")
    require(isinstance(cfg.num_seeds, int) and cfg.num_seeds >= 1, "num_seeds", cfg.num_seeds, "an integer >= 1")
    torch.set_num_threads(cfg.threads)
    game = make_game(cfg)
    lp = {s: optimal_multi_receiver_scheme(*game, signaling=s).sender_value for s in ("private", "public")}
    no_info = no_information_value(*game, signaling=cfg.signaling)
    seeds = [train_seed(cfg, cfg.seed + i, game, lp[cfg.signaling], no_info) for i in range(cfg.num_seeds)]
    summary = {
        "signaling": cfg.signaling,
        "lp_sender_value": lp[cfg.signaling],
        "lp_private_sender_value": lp["private"],
        "lp_public_sender_value": lp["public"],
        "no_info_sender_value": no_info,
        "seeds": seeds,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_summary(cfg, summary)
    return summary


def write_summary(cfg: DictConfig, summary: dict) -> Path:
    """``summary.json`` in ``cfg.run_dir`` (or Hydra's run directory); prints ``summary: <path>`` last."""
    out_dir = Path(cfg.run_dir) if cfg.get("run_dir") else Path(_hydra_output_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=1))
    print(f"summary: {path.resolve()}")
    return path


def _hydra_output_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir
