"""The seed axis: losses reduced per seed (``reduce_per_seed``), checkpoints counted per seed.

A loss built with ``ensemble_shape=(S,)`` on :class:`SeedEnsemble` networks, backpropagated as it is, must give seed
``k``'s slice of the stacked parameters the gradient that the single-seed loss gives seed ``k``'s own networks on
seed ``k``'s slice of the batch (no rescaling anywhere); its value is the sum of the single-seed losses.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from msgzoo.envs.bayesian_persuasion import recommendation_letter
from msgzoo.modules import (
    ObservationMessageNet,
    VectorNet,
    make_action_value_critic,
    make_receiver_actor,
    make_signaling_scheme,
    make_value_critic,
)
from msgzoo.modules.seed_ensemble import SeedEnsemble
from msgzoo.objectives import (
    ObedienceConstraintLoss,
    PerSeedA2CLoss,
    SignalingGradientLoss,
    attach_next_message,
    make_receiver_a2c_loss,
    reduce_per_seed,
)
from msgzoo.training.trainer import CHECKPOINT_FORMAT, upgrade_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:No target network updater")

SEEDS = 2
W_RECEIVER_KEY = ("sender", "receiver_action_value")


def test_reduce_per_seed_is_each_seeds_mean_summed():
    x = torch.arange(12.0).reshape(2, 3, 2)
    torch.testing.assert_close(reduce_per_seed(x, (2,)), x[0].mean() + x[1].mean())
    torch.testing.assert_close(reduce_per_seed(x), x.mean())  # one run: the plain mean
    torch.testing.assert_close(reduce_per_seed(torch.tensor([1.0, 2.0]), (2,)), torch.tensor(3.0))  # one per seed
    with pytest.raises(ValueError, match=r"ensemble_shape=\(3,\) got a term of shape \(2, 3, 2\).*seed dimensions first"):
        reduce_per_seed(x, (3,))


def _bodies(seed: int) -> dict[str, nn.Module]:
    """One seed's networks: scheme, receiver, the receiver's critic, the sender's two action-value critics."""
    torch.manual_seed(seed)
    return {
        "scheme": VectorNet(2, 2, bias=False),
        "receiver": ObservationMessageNet(VectorNet(2, 2, bias=False)),
        "receiver_critic": ObservationMessageNet(VectorNet(2, 1)),
        "w_sender": VectorNet(2, 2),
        "w_receiver": VectorNet(2, 2),
    }


def _losses(bodies: dict[str, nn.Module], ensemble_shape: tuple[int, ...]):
    """The signaling, obedience and receiver losses on ``bodies`` (and the scheme, for the next message)."""
    scheme = make_signaling_scheme(bodies["scheme"])
    receiver = make_receiver_actor(bodies["receiver"])
    receiver_critic = make_value_critic(
        bodies["receiver_critic"], in_keys=[("receiver", "observation"), ("sender", "message")],
        out_key=("receiver", "state_value"),
    )
    losses = {
        "signaling": SignalingGradientLoss(
            scheme, receiver, make_action_value_critic(bodies["w_sender"]), gamma=0.0, entropy_coeff=0.1,
            ensemble_shape=ensemble_shape,
        ),
        "obedience": ObedienceConstraintLoss(
            scheme, receiver, make_action_value_critic(bodies["w_receiver"], out_key=W_RECEIVER_KEY),
            counterfactual="all", mode="dual", gamma=0.0, num_messages=2, ensemble_shape=ensemble_shape,
        ),
        "receiver": make_receiver_a2c_loss(receiver, receiver_critic, gamma=0.0, entropy_coeff=0.01,
                                           ensemble_shape=ensemble_shape),
    }
    return losses, scheme, receiver


@pytest.mark.parametrize("name", ["signaling", "obedience", "receiver"])
def test_each_seed_gets_its_own_runs_gradient(name):
    singles = [_bodies(seed) for seed in range(SEEDS)]
    stacked = {k: SeedEnsemble([copy.deepcopy(s[k]) for s in singles]) for k in singles[0]}
    losses, scheme, receiver = _losses(stacked, (SEEDS,))
    env = recommendation_letter(num_envs=SEEDS * 16, batch_size=[SEEDS, 16], seed=0)
    torch.manual_seed(1)
    batch = env.step(receiver(scheme(env.reset())))  # [seeds, envs]
    attach_next_message(batch, scheme)

    out = losses[name](batch.clone())
    total = sum(v for k, v in out.items() if k.startswith("loss_"))
    total.backward()  # as it is: no rescaling by the number of seeds
    single_totals = []
    for i, bodies in enumerate(singles):
        single, _, _ = _losses(bodies, ())
        s_out = single[name](batch[i].clone())
        s_total = sum(v for k, v in s_out.items() if k.startswith("loss_"))
        s_total.backward()
        single_totals.append(s_total.detach())
        for key, body in bodies.items():
            for (p_name, p), q in zip(stacked[key].named_parameters(), body.parameters()):
                if q.grad is None:  # a network this loss does not train
                    assert p.grad is None or not p.grad[i].any(), f"{name}: {key}.{p_name}"
                    continue
                torch.testing.assert_close(p.grad[i], q.grad, rtol=1e-5, atol=1e-7, msg=f"{name}: {key}.{p_name}")
    assert any(p.grad is not None for m in stacked.values() for p in m.parameters())
    torch.testing.assert_close(total.detach(), torch.stack(single_totals).sum(), rtol=1e-5, atol=1e-7)


def test_per_seed_a2c_reduces_itself():
    actor = make_receiver_actor(ObservationMessageNet(VectorNet(2, 2)))
    critic = make_value_critic(ObservationMessageNet(VectorNet(2, 1)),
                               in_keys=[("receiver", "observation"), ("sender", "message")],
                               out_key=("receiver", "state_value"))
    with pytest.raises(ValueError, match="reduces per seed itself"):
        PerSeedA2CLoss(actor_network=actor, critic_network=critic, reduction="mean")
    with pytest.raises(ValueError, match="ensemble_shape=.*positive ints"):
        PerSeedA2CLoss(actor_network=actor, critic_network=critic, ensemble_shape=(0,))


def test_layout_2_checkpoints_convert_to_per_seed_counts():
    old = {"format": 2, "config": {"num_seeds": 3}, "frames": 3 * 640, "iteration": 10,
           "history": [{"frames": 3 * 320, "train/sender_reward": 0.5}, {"frames": 3 * 640}]}
    new = upgrade_checkpoint(old, "old.pt")
    assert new["format"] == CHECKPOINT_FORMAT == 3 and new["frames"] == 640 and new["iteration"] == 10
    assert new["history"] == [{"frames": 320, "train/sender_reward": 0.5}, {"frames": 640}]
    single = {**old, "config": {"num_seeds": 1}}
    assert upgrade_checkpoint(single)["frames"] == old["frames"]  # one seed: the counts meant the same
    with pytest.raises(ValueError, match=r"checkpoint .*older.pt has layout 1; .*Fix: start a new run"):
        upgrade_checkpoint({**old, "format": 1}, "runs/older.pt")
