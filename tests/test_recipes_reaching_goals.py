"""Smoke runs of the Reaching Goals recipes with tiny budgets, and the summary (and figures) they must write.

The five recipes run as a user would run them (subprocesses with Hydra overrides), all started at once so the
interpreter start-ups overlap; the map and observation variants are checked in-process.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import RECIPES
from msgzoo.envs import ReachingGoalsEnv
from msgzoo.pipelines.reaching_goals import make_env
from msgzoo.training.evaluation import myopic_receiver_regret
from msgzoo.training.methods import budget_frames
from recipes import run_recipe as run

METHODS = ["sgoc", "sg", "pgoc", "pg", "dial"]
REQUIRED = [
    "method", "task", "seed", "episodes", "env_steps", "wall_time_s", "env_steps_per_s",
    "sender_return", "receiver_return", "welfare", "eval_episodes", "history",
]
TINY = [
    "collector.total_episodes=20", "env.num_envs=32", "env.steps_per_batch=4", "eval.episodes=40",
    "logger.backends=[csv]", "logger.log_interval=2",
]
FIGURES = ("learning_curves.png", "signaling_scheme.png", "episode.gif")


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory):
    """Runs every recipe once (figures off), plus SGOC with its figures on; all processes at once."""
    root = tmp_path_factory.mktemp("reaching_goals")
    jobs = {method: [f"{method}_reaching_goals.py", *TINY, "figures=false", "seed=2"] for method in METHODS}
    jobs["sgoc_figures"] = ["sgoc_reaching_goals.py", *TINY]
    jobs["pgoc_three_seeds"] = ["pgoc_reaching_goals.py", *TINY, "figures=false", "seed=4", "num_seeds=3"]
    jobs["sg_expected_two_seeds"] = ["sg_reaching_goals.py", *TINY, "figures=false", "num_seeds=2",
                                     "loss.sender_gradient=expected"]
    procs = {}
    for name, (script, *overrides) in jobs.items():
        cwd = root / name
        cwd.mkdir()
        procs[name] = subprocess.Popen(
            [sys.executable, str(RECIPES / script), *overrides, f"hydra.run.dir={cwd / 'run'}"],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=240)
        results[name] = (proc.returncode, out, err)
    return results


def _summary(result) -> tuple[dict, list[str]]:
    code, out, err = result
    assert code == 0, err[-3000:]
    lines = out.strip().splitlines()
    last = lines[-1]
    assert last.startswith("summary: "), lines[-5:]
    path = Path(last.removeprefix("summary: "))
    assert path.is_absolute() and path.exists()
    return json.loads(path.read_text()), lines


@pytest.mark.parametrize("method", METHODS)
def test_recipe_runs_and_summarises(method, recipe_runs):
    summary, _ = _summary(recipe_runs[method])
    for key in REQUIRED:
        assert key in summary, key
    assert summary["method"] == method and summary["task"] == "reaching_goals" and summary["seed"] == 2
    assert summary["env_steps"] >= 20 * 50 and summary["episodes"] == summary["env_steps"] / 50
    assert summary["eval_episodes"] == 40 and summary["env_steps_per_s"] > 0
    # 50-step returns on 3x3 with amplifiers 20 / 5: at most +20 and at least -5 per step
    for key in ("sender_return", "receiver_return"):
        assert -250.0 - 1e-3 <= summary[key] <= 1000.0 + 1e-3
    assert summary["welfare"] == pytest.approx(summary["sender_return"] + summary["receiver_return"], abs=1e-3)
    assert "figures" not in summary
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "checkpoint.pt").exists()
    assert (run_dir / "csv" / "scalars" / "train" / "sender_reward.csv").exists()


def test_seeds_trained_together_summarise_as_separate_runs(recipe_runs):
    summary, lines = _summary(recipe_runs["pgoc_three_seeds"])
    assert Path(lines[-1].removeprefix("summary: ")).name == "seeds_summary.json"
    assert summary["seeds"] == [4, 5, 6] and summary["num_seeds"] == 3
    assert summary["env_steps"] == 3 * summary["env_steps_per_seed"]
    assert [l for l in lines if l.startswith("summary: ")][:3] == [f"summary: {p}" for p in summary["seed_summaries"]]
    returns = []
    for seed, path in zip((4, 5, 6), summary["seed_summaries"]):
        one = json.loads(Path(path).read_text())
        for key in REQUIRED:
            assert key in one, key
        assert one["seed"] == seed and one["method"] == "pgoc" and one["env_steps"] == summary["env_steps_per_seed"]
        assert one["eval_episodes"] == 40 and one["num_seeds_trained_together"] == 3
        assert (Path(path).parent / "csv" / "scalars" / "train" / "sender_reward.csv").exists()
        assert f"seed: {seed}" in (Path(path).parent / "config.yaml").read_text()
        returns.append(one["sender_return"])
    assert summary["sender_return"]["per_seed"] == returns
    assert summary["sender_return"]["mean"] == pytest.approx(sum(returns) / 3)


def test_the_expected_signaling_gradient_trains_every_seed(recipe_runs):
    summary, _ = _summary(recipe_runs["sg_expected_two_seeds"])
    assert summary["seeds"] == [0, 1] and summary["env_steps"] == 2 * summary["env_steps_per_seed"]
    for path in summary["seed_summaries"]:
        assert "sender_gradient: expected" in (Path(path).parent / "config.yaml").read_text()


def test_main_job_writes_its_figures(recipe_runs):
    summary, lines = _summary(recipe_runs["sgoc_figures"])
    figures = summary["figures"]
    assert set(figures) == {"learning_curves", "signaling_scheme", "episode_gif"}
    for name in FIGURES:
        path = Path(summary["run_dir"]) / "figures" / name
        assert path.exists() and path.stat().st_size > 1000, name
    # the figure paths are printed before the final summary line
    printed = [line for line in lines[:-1] if line.startswith("figure (")]
    assert len(printed) == 3 and all(Path(line.split(": ", 1)[1]).exists() for line in printed)


@pytest.mark.parametrize(
    "map_name, size, amplifiers, observes, episodes",
    [
        ("3x3", 3, (20.0, 5.0), ("position",), 100_000),
        ("5x5", 5, (12.0, 3.0), (), 300_000),
        ("5x5_paper", 5, (12.0, 3.5), ("position",), 300_000),
    ],
)
def test_map_variants(recipe_config, map_name, size, amplifiers, observes, episodes):
    cfg = recipe_config("sgoc_reaching_goals", f"map={map_name}")
    env = make_env(cfg, num_envs=2)
    assert (env.height, env.width) == (size, size)
    assert (env.reward_amplifier, env.punish_amplifier) == amplifiers
    assert env.receiver_observes == observes
    assert budget_frames(cfg) == episodes * 50
    assert budget_frames(recipe_config("sgoc_reaching_goals", "collector.total_frames=1234")) == 1234


def test_receiver_observation_variant_trains(recipe_config, tmp_path, capsys):
    """A 5x5 map whose receiver sees its position and its own apple: the nets adapt to the channels."""
    cfg = recipe_config(
        "sgoc_reaching_goals", "map=5x5", "env.receiver_observes=[position,goal]", *TINY, "figures=false",
        f"+run_dir={tmp_path}",
    )
    assert make_env(cfg, num_envs=1).num_receiver_channels == 2
    summary = run(cfg, method="sgoc")
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"summary: {tmp_path / 'summary.json'}"
    assert summary["map"] == "5x5" and summary["env_steps"] >= 1000


def _regret_by_hand(env, rollout) -> float:
    """The myopic regret with a Python dict per (observation, message) pair."""
    state = rollout["sender", "state"].reshape(-1, 3).tolist()
    message = rollout["sender", "message"].reshape(len(state), -1).argmax(-1).tolist()
    taken = rollout["receiver", "action"].reshape(len(state), -1).argmax(-1).tolist()
    rewards = env.rewards_of_every_move(torch.tensor(state))[..., 1].tolist()
    sums = {}
    for s, m, r in zip(state, message, rewards):
        key = (m, *(s[c] for c, item in ((0, "position"), (2, "goal")) if item in env.receiver_observes))
        sums[key] = [a + b for a, b in zip(sums.get(key, [0.0] * 4), r)]
    total = 0.0
    for s, m, a, r in zip(state, message, taken, rewards):
        key = (m, *(s[c] for c, item in ((0, "position"), (2, "goal")) if item in env.receiver_observes))
        best = max(range(4), key=lambda k: sums[key][k])
        total += r[best] - r[a]
    return total / len(state) * env.horizon


@pytest.mark.parametrize("observes", [(), ("position",), ("position", "goal")])
def test_myopic_receiver_regret(observes):
    env = ReachingGoalsEnv(num_envs=64, horizon=20, receiver_observes=observes, seed=1)
    rollout = env.rollout(20, break_when_any_done=False)  # random messages and moves
    regret = myopic_receiver_regret(env, rollout)
    assert regret > 1.0
    assert regret == pytest.approx(_regret_by_hand(env, rollout), rel=1e-5)
    # a receiver that takes each pair's best move has no regret
    state = rollout["sender", "state"]
    rewards = env.rewards_of_every_move(state)[..., 1]
    key = env.receiver_information(state, rollout["sender", "message"].argmax(-1)).flatten()
    sums = torch.zeros(int(key.max()) + 1, 4).index_add_(0, key, rewards.reshape(-1, 4))
    best = torch.nn.functional.one_hot(sums.argmax(-1)[key], 4).reshape(*state.shape[:-1], 4)
    rollout.set(("receiver", "action"), best)
    assert myopic_receiver_regret(env, rollout) == pytest.approx(0.0, abs=1e-9)
