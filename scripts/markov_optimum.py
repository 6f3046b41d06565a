"""The exact optimum of Reaching Goals against a myopic, obedient receiver, per map and receiver observation.

    python scripts/markov_optimum.py [--maps 3x3 5x5 5x5_paper] [--out docs/results/reaching_goals_optimum.json]

For each map (the recipes' ``map`` group: size and amplifiers) and each receiver observation ([], [position],
[position, goal]) prints the LP optimum of :mod:`msgzoo.game_theory.optimal_scheme_markov` (sender and receiver
return per 50-step episode, which method solved it, iterations, wall time of the solve) next to two references:
the honest scheme (recommend the receiver's best move) and the sender's value if it moved the receiver itself (no
obedience). ``--out`` writes the same as JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from msgzoo.game_theory.optimal_scheme_markov import evaluate_markov_scheme, optimal_markov_scheme, reaching_goals_game

#: The recipes' maps (recipes/config/map/*.yaml): (size, reward amplifier, punish amplifier).
MAPS = {"3x3": (3, 20.0, 5.0), "5x5": (5, 12.0, 3.0), "5x5_paper": (5, 12.0, 3.5)}
OBSERVATIONS = ([], ["position"], ["position", "goal"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", nargs="+", default=list(MAPS), choices=list(MAPS))
    parser.add_argument("--observations", nargs="+", default=["[]", "[position]", "[position,goal]"],
                        choices=["[]", "[position]", "[position,goal]"])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    results = []
    for name in args.maps:
        size, reward, punish = MAPS[name]
        for label in args.observations:
            observes = [x for x in label.strip("[]").split(",") if x]
            game = reaching_goals_game(height=size, width=size, reward_amplifier=reward, punish_amplifier=punish,
                                       receiver_observes=observes)
            honest = np.broadcast_to(game.receiver_reward.argmax(1), (game.horizon, game.num_states))
            h_sender, h_receiver, _, _ = evaluate_markov_scheme(game, honest)
            # A receiver with nothing at stake obeys anything: the sender's MDP optimum (moving the receiver itself).
            free = optimal_markov_scheme(dataclasses.replace(game, receiver_reward=np.zeros_like(game.receiver_reward)))
            start = time.perf_counter()
            opt = optimal_markov_scheme(game)
            seconds = time.perf_counter() - start
            row = {
                "map": name, "receiver_observes": observes, "states": game.num_states, "horizon": game.horizon,
                "sender_value": opt.sender_value, "receiver_value": opt.receiver_value, "method": opt.method,
                "iterations": opt.iterations, "solve_s": seconds,
                "honest_sender_value": h_sender, "honest_receiver_value": h_receiver,
                "sender_mdp_optimum": free.sender_value,
            }
            results.append(row)
            print(f"{name} {label}: {game.num_states} states, optimum sender {opt.sender_value:.2f} "
                  f"(receiver {opt.receiver_value:.2f}) per episode; honest scheme {h_sender:.2f} / {h_receiver:.2f}; "
                  f"sender's MDP optimum {free.sender_value:.2f}; {opt.method}, {opt.iterations} iterations, "
                  f"{seconds:.1f} s", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
