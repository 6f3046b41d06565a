"""TensorDict modules: the signaling scheme, the receiver, critics, encoders, DIAL's channel."""
from msgzoo.modules.critics import make_action_value_critic, make_value_critic
from msgzoo.modules.encoders import GridNet, ObservationMessageNet, VectorNet
from msgzoo.modules.gumbel import GumbelMessageSampler, sample_gumbel, straight_through_one_hot
from msgzoo.modules.receiver import make_receiver_actor
from msgzoo.modules.signaling_scheme import SignalingScheme, make_signaling_scheme, scheme_as_actor

__all__ = [
    "GridNet",
    "GumbelMessageSampler",
    "ObservationMessageNet",
    "SignalingScheme",
    "VectorNet",
    "make_action_value_critic",
    "make_receiver_actor",
    "make_signaling_scheme",
    "make_value_critic",
    "sample_gumbel",
    "scheme_as_actor",
    "straight_through_one_hot",
]
