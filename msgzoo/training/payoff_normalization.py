"""Payoffs in standard units for the learners of a persuasion game (``env.payoff_normalization``).

Every learning setting of the one-step recipes (λ, ε, the learning rates, the critics' starting values, the gradient
clamp) is a number on the scale of the payoffs they were measured with (the suite's games: payoffs in [-1, 1]). A game
written in other units (cents, a payoff range of 0.1, all payoffs near 100) is the same game: a positive affine change
of an agent's payoffs leaves the obedience constraints and the LP's optimal scheme as they are, but not what a learner
with those settings does with it. So the learners see payoffs divided by the largest payoff magnitude, ``u' = u /
max |u|`` (TorchRL's :class:`~torchrl.envs.transforms.RewardScaling` on the batch they learn from); the collected
batch, the logs and every evaluation stay in the game's units. ``common`` (the recipes' default): both agents by the
largest magnitude over both matrices (a change of units common to both is undone; the ratio of the two agents'
payoffs, which sets how large λ must be, stays the game's); ``per_agent``: each agent by its own matrix's largest
magnitude (a game whose agents' payoffs are in different units learns as one in the same units, but every game's
exact-penalty λ* moves by the ratio of the two scales: measured on the suite, it costs SGOC seeds that ``common``
keeps; docs/results.md, "A game in other units"). A prosocial sender (``sender_objective.receiver_weight >
0``) weighs the two agents' payoffs in the game's units, so it always gets the common map. A common offset (payoffs
all near 100) is not removed: a constant added to an agent's payoffs changes nothing in the game, so write the game
with 0 inside each agent's payoff range.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs.transforms import Compose, RewardScaling

__all__ = ["PAYOFF_NORMALIZATIONS", "PayoffNormalization"]

AGENTS = ("sender", "receiver")
#: ``env.payoff_normalization``'s values.
PAYOFF_NORMALIZATIONS = ("per_agent", "common", "none")


def _scale(values: torch.Tensor) -> float:
    """The largest magnitude of ``values`` (1 for an all-zero matrix)."""
    largest = float(values.abs().max())
    return largest if largest > 0 else 1.0


class PayoffNormalization:
    """``batch -> batch'`` whose ``("next", agent, "reward")`` are divided by the agent's payoff scale.

    Args:
        sender_utility, receiver_utility: the game's ``[|S|, |A|]`` payoff matrices (the env's).
        common: one scale for both agents (the largest magnitude over both matrices), else one per agent.

    The returned batch shares every other entry with ``batch``, which is left as it was (its rewards are what the
    trainer logs).
    """

    def __init__(self, sender_utility: torch.Tensor, receiver_utility: torch.Tensor, *, common: bool = False):
        us, ur = torch.as_tensor(sender_utility).double(), torch.as_tensor(receiver_utility).double()
        scales = [_scale(torch.cat([us.flatten(), ur.flatten()]))] * 2 if common else [_scale(us), _scale(ur)]
        self.scales = dict(zip(AGENTS, scales))
        self.transform = Compose(*[
            RewardScaling(0.0, scale, in_keys=[("next", agent, "reward")], standard_normal=True)
            for agent, scale in self.scales.items()
        ])

    def to(self, device) -> "PayoffNormalization":
        self.transform = self.transform.to(device)
        return self

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        return self.transform(batch.clone(recurse=False))  # a new tree over the same tensors: batch is untouched

    def __repr__(self) -> str:
        shown = ", ".join(f"{a}: u / {scale:.4g}" for a, scale in self.scales.items())
        return f"{type(self).__name__}({shown})"

