"""Evaluation of trained policies: exact for one-step games, by rollouts for multi-step ones.

How a method's policies are read (its one-step tables, its sender's message distribution) is the method's own
declaration, a :class:`PolicyReadout` (:attr:`msgzoo.training.methods.Method.readout`): evaluation asks it, never the
method's name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from msgzoo.game_theory.exact_payoffs import exact_payoffs, tabulate_one_step_policies
from msgzoo.game_theory.metrics import best_response_regret, honesty, mutual_information, obedience_violation
from msgzoo.objectives.common import logits_module_of

if TYPE_CHECKING:  # methods.py declares its readouts from here: the import runs one way only
    from msgzoo.training.methods import Method


class PolicyReadout:
    """How evaluation reads a method's policies: a signaling scheme's categorical messages (this class).

    ``tables``: ``phi[s, sigma]`` and ``pi[sigma, a]`` on a one-step game, the scheme's softmax and the receiver's
    stochastic policy per one-hot message. ``message_distribution``: what the sender sends on a batch of states.
    """

    def tables(self, env, method: Method) -> tuple[torch.Tensor, torch.Tensor]:
        return tabulate_one_step_policies(
            logits_module_of(method.scheme), method.receiver, env.num_sender_observations, env.num_messages, env.device
        )

    @torch.no_grad()
    def message_distribution(self, method: Method, tensordict: TensorDictBase) -> tuple[torch.Tensor, str]:
        """``phi(. | s)`` on ``tensordict``'s states, one row per state, and a label."""
        module = logits_module_of(method.scheme)
        td = module(tensordict.select(*module.in_keys, strict=False).copy())
        return torch.softmax(td.get(module.out_keys[0]), -1), "phi(message | s)"


class DRUReadout(PolicyReadout):
    """DIAL's real-valued message through a DRU: its *executed* (deterministic) policies.

    The DRU's hard threshold gives a binary message vector per state, and the receiver acts greedily on its
    Q-values; ``phi`` then lists, per state, the one-hot index of the distinct messages sent and ``pi`` the greedy
    action for each of them. The message distribution is the noise-free DRU output ``sigmoid(m(s))``.
    """

    @torch.no_grad()
    def tables(self, env, method: Method) -> tuple[torch.Tensor, torch.Tensor]:
        s = env.num_sender_observations
        td = TensorDict(
            {("sender", "observation"): torch.eye(s, device=env.device),
             ("receiver", "observation"): torch.zeros(s, 0, device=env.device)},
            batch_size=[s],
        )
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            td = method.scheme(td)
            messages = td.get(("sender", "message"))
            td = method.receiver(td)
        actions = td.get(("receiver", "action")).double()
        # every state sends a distinct-or-shared hard message; index the distinct ones
        _, index = torch.unique(messages, dim=0, return_inverse=True)
        k = int(index.max()) + 1
        phi = torch.nn.functional.one_hot(index, max(k, 2)).double()
        pi = torch.full((max(k, 2), actions.shape[-1]), 1.0 / actions.shape[-1], dtype=torch.float64)
        pi[index] = actions
        return phi, pi

    @torch.no_grad()
    def message_distribution(self, method: Method, tensordict: TensorDictBase) -> tuple[torch.Tensor, str]:
        sender = method.scheme
        first = sender.module[0] if hasattr(sender, "module") else sender
        td = first(tensordict.select(*first.in_keys, strict=False).copy())
        return torch.sigmoid(td.get(first.out_keys[0])), "DRU message sigmoid(m(s))"


SCHEME_READOUT, DRU_READOUT = PolicyReadout(), DRUReadout()


def one_step_tables(env, method: Method) -> tuple[torch.Tensor, torch.Tensor]:
    """``phi[s, sigma]`` and ``pi[sigma, a]`` of the learned policies of a one-step game, as the method's
    :class:`PolicyReadout` reads them."""
    return method.readout.tables(env, method)


def one_step_evaluator(env):
    """``callable(method) -> dict`` of exact per-game payoffs and scheme metrics (no sampling).

    For a Markov persuasion game the values are per step: the one-step formulas on the state occupancy
    ``env.occupancy`` (exact for the stationary policies learned here, since no action changes the states).
    For a partial-sighted sender (``env.sender_emission``) the learned ``phi(sigma | e)`` acts on the states as
    ``sum_e E(e | s) phi(sigma | e)``: payoffs and the scheme metrics are those of this scheme, i.e. of the joint
    ``P(s, e)`` (the ``phi/..`` entries logged are the learned table over emissions).
    """
    prior, us, ur = env.occupancy.double(), env.sender_utility.double(), env.receiver_utility.double()
    emission = None if env.sender_emission is None else env.sender_emission.double()

    def evaluate(method: Method) -> dict:
        phi, pi = one_step_tables(env, method)
        sender, receiver = exact_payoffs(prior, us, ur, phi, pi, sender_emission=emission)
        tables = _table_entries(phi, pi)
        if emission is not None:
            phi = emission.to(phi.device) @ phi  # phi(sigma | s): what the metrics below need
        return tables | {
            "sender_reward": sender,
            "receiver_reward": receiver,
            "welfare": sender + receiver,
            "honesty": honesty(phi),
            "mutual_information_bits": mutual_information(prior, phi),
            "obedience_violation": obedience_violation(prior, ur, phi, pi),
            "receiver_regret": best_response_regret(prior, ur, phi, pi),
        }

    return evaluate


def _table_entries(phi: torch.Tensor, pi: torch.Tensor) -> dict:
    """Small games: every entry of the tables, for per-seed curves like the paper's Figure 3."""
    tables = {}
    if phi.numel() + pi.numel() <= 32:
        tables.update({f"phi/s{s}_m{k}": float(phi[s, k]) for s in range(phi.shape[0]) for k in range(phi.shape[1])})
        tables.update({f"pi/m{k}_a{a}": float(pi[k, a]) for k in range(pi.shape[0]) for a in range(pi.shape[1])})
    return tables


@torch.no_grad()
def evaluate_episodes(env, method: Method, *, deterministic: bool = False) -> dict:
    """Mean return per episode of ``env.num_envs`` full episodes (one per environment).

    Every environment runs exactly one episode (Reaching Goals episodes all last ``horizon`` steps).
    Stochastic policies by default, as trained (``deterministic=True`` takes the modes).
    """
    horizon = env.horizon
    kind = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with set_exploration_type(kind):
        rollout = env.rollout(horizon, method.policy, break_when_any_done=False)
    sender = rollout["next", "sender", "reward"].sum(-2).mean()
    receiver = rollout["next", "receiver", "reward"].sum(-2).mean()
    out = {"sender_return": float(sender), "receiver_return": float(receiver), "welfare": float(sender + receiver)}
    if hasattr(env, "rewards_of_every_move"):
        out["receiver_regret"] = myopic_receiver_regret(env, rollout)
    return out


def myopic_receiver_regret(env, rollout) -> float:
    """What the receiver gives up per episode against a myopic best response to the sender's scheme, estimated on
    ``rollout`` (Reaching Goals): for each (observation, message) pair the receiver can tell apart, the move with the
    highest mean immediate reward over the rollout's visits, and the regret is the mean over steps of that move's
    reward less the reward of the move taken, times the horizon. The exact optimum's receiver (a myopic one that
    obeys when it cannot gain by deviating) has regret 0; in-sample, so a small positive bias where visits are few."""
    state = rollout["sender", "state"].reshape(-1, 3)
    message = rollout["sender", "message"].reshape(state.shape[0], -1).argmax(-1)
    taken = rollout["receiver", "action"].reshape(state.shape[0], -1).argmax(-1)
    rewards = env.rewards_of_every_move(state)[..., 1]  # [steps, moves] the receiver's
    key = env.receiver_information(state, message)
    keys, key = torch.unique(key, return_inverse=True)
    sums = torch.zeros(len(keys), rewards.shape[-1], dtype=rewards.dtype).index_add_(0, key, rewards)
    best = sums.argmax(-1)[key]  # the same argmax as of the means: every move is counted at every visit
    regret = rewards.gather(-1, best.unsqueeze(-1)) - rewards.gather(-1, taken.unsqueeze(-1))
    return float(regret.mean() * env.horizon)
