"""Batched Markov-signaling-game environments (TorchRL ``EnvBase``)."""
from msgzoo.envs.acting_sender import ActingSenderPersuasionEnv
from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER, BayesianPersuasionEnv, recommendation_letter
from msgzoo.envs.multi_receiver import MultiReceiverPersuasionEnv
from msgzoo.envs.reaching_goals import ReachingGoalsEnv
from msgzoo.envs.rendering import plot_signaling_scheme, render_frame

__all__ = [
    "ActingSenderPersuasionEnv",
    "BayesianPersuasionEnv",
    "RECOMMENDATION_LETTER",
    "recommendation_letter",
    "MultiReceiverPersuasionEnv",
    "ReachingGoalsEnv",
    "render_frame",
    "plot_signaling_scheme",
]
