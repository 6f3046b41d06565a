"""Episode returns of a uniformly random receiver on Reaching Goals: where an untrained run's curves start.

    python scripts/random_receiver_returns.py [--episodes 20000]

Prints the mean 50-step sender and receiver returns on 3x3 (20 / 5) and 5x5 (12 / 3) under msgzoo's reward (the
normalised distance of ``msgzoo.envs.ReachingGoalsEnv``), and, for comparison, with the distance left in cells
(``punish_amplifier`` times H-1, which is the same thing on square maps).
"""
from __future__ import annotations

import argparse

import torch

from msgzoo.envs import ReachingGoalsEnv

MAPS = {"3x3": (3, 20.0, 5.0), "5x5": (5, 12.0, 3.0)}


def random_returns(size: int, reward: float, punish: float, episodes: int, seed: int = 0) -> tuple[float, float]:
    env = ReachingGoalsEnv(height=size, width=size, reward_amplifier=reward, punish_amplifier=punish,
                           num_envs=episodes, seed=seed)
    torch.manual_seed(seed)
    td = env.rollout(env.horizon, break_when_any_done=False)  # no policy: uniformly random actions
    return td["next", "sender", "reward"].sum(-2).mean().item(), td["next", "receiver", "reward"].sum(-2).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=20000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, (size, reward, punish) in MAPS.items():
        s, r = random_returns(size, reward, punish, args.episodes)
        s_cells, r_cells = random_returns(size, reward, punish * (size - 1), args.episodes)
        print(f"{name}: sender {s:.1f}, receiver {r:.1f} (normalised distance); "
              f"sender {s_cells:.1f}, receiver {r_cells:.1f} (distance in cells)")


if __name__ == "__main__":
    main()
