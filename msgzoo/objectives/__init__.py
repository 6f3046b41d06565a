"""Loss modules for Markov signaling games (TorchRL ``LossModule`` subclasses and factories)."""
from msgzoo.objectives.actor_critic import (
    AllActionsA2CLoss,
    PerSeedA2CLoss,
    SarsaPolicyGradientLoss,
    attach_next_message,
    make_receiver_a2c_loss,
    make_sender_a2c_loss,
)
from msgzoo.objectives.common import ExpectedStateValue, reduce_per_seed
from msgzoo.objectives.dial import DIALLoss
from msgzoo.objectives.obedience import ObedienceConstraintLoss
from msgzoo.objectives.receivers_obedience import ReceiversObedienceLoss, receivers_obedience_matrix
from msgzoo.objectives.signaling_gradient import SignalingGradientLoss

__all__ = [
    "AllActionsA2CLoss",
    "DIALLoss",
    "ExpectedStateValue",
    "ObedienceConstraintLoss",
    "PerSeedA2CLoss",
    "ReceiversObedienceLoss",
    "SarsaPolicyGradientLoss",
    "SignalingGradientLoss",
    "attach_next_message",
    "make_receiver_a2c_loss",
    "make_sender_a2c_loss",
    "receivers_obedience_matrix",
    "reduce_per_seed",
]
