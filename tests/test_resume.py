"""A killed run resumes from its checkpoint exactly; SIGTERM checkpoints and stops cleanly."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RECIPES
from recipes import run_recipe as run
from msgzoo.runtime.checkpoint import load_checkpoint

COMMON = [
    "collector.total_frames=153600", "env.num_envs=256", "logger.backends=[csv]",
    "logger.log_interval=5", "logger.checkpoint_interval=10", "seed=3",
]
COMPARED = ("sender_reward", "receiver_reward", "honesty", "scheme", "policy", "env_steps")


def _start(tmp_path, name, *extra):
    return subprocess.Popen(
        [sys.executable, str(RECIPES / "sgoc_recommendation_letter.py"), *COMMON, *extra,
         f"hydra.run.dir={tmp_path / name}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(path, proc, timeout=120.0):
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its first checkpoint: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("no checkpoint appeared")
        time.sleep(0.005)


# the second: decaying learning rates from the first step, so the checkpoint holds scaled rates (a resume scales the
# config's, never the checkpoint's, or it would not step as the uninterrupted run did)
@pytest.mark.parametrize("extra", [(), ("optim.lr_final_fraction=0.2", "warmup.frames=0")], ids=["default", "lr_decay"])
def test_killed_run_resumes_exactly(recipe_config, tmp_path, extra):
    full = run(recipe_config("sgoc_recommendation_letter", *COMMON, *extra, f"+run_dir={tmp_path / 'full'}"),
               method="sgoc")

    proc = _start(tmp_path, "killed", *extra)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    _wait_for(checkpoint, proc)
    proc.kill()  # SIGKILL: no handler runs, only the periodic checkpoint survives
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    resumed = run(
        recipe_config("sgoc_recommendation_letter", *COMMON, *extra, f"+run_dir={tmp_path / 'resumed'}",
                      f"resume={checkpoint}"),
        method="sgoc",
    )
    assert 0 < load_checkpoint(checkpoint)["frames"] < full["env_steps"]  # it did start mid-way
    for key in COMPARED:
        assert resumed[key] == full[key], key
    # the summary's curve is the whole run's (the killed session's part comes from the checkpoint)
    assert [r["frames"] for r in resumed["history"]] == [r["frames"] for r in full["history"]]
    assert [r["eval/sender_reward"] for r in resumed["history"]] == [r["eval/sender_reward"] for r in full["history"]]


def test_sigterm_checkpoints_stops_with_a_failure_status_and_resumes(recipe_config, tmp_path):
    """SIGTERM: a checkpoint, exit status 143 (not 0), a summary marked interrupted; the resume finishes the run."""
    proc = _start(tmp_path, "term", "collector.total_frames=2560000")
    _wait_for(tmp_path / "term" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "SIGTERM: checkpoint saved to" in out and "resume=" in out
    stopped = json.loads((tmp_path / "term" / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["signal"] == "SIGTERM"
    assert 0 < stopped["env_steps"] < stopped["budget_env_steps"] == 2560000
    assert "sender_reward" not in stopped  # no final evaluation that would pass for a finished run's

    checkpoint = tmp_path / "term" / "checkpoint.pt"
    budget = stopped["env_steps"] + 256 * 10  # a larger budget is the one change a resume may make freely
    resumed = run(recipe_config("sgoc_recommendation_letter", *COMMON, f"collector.total_frames={budget}",
                                f"+run_dir={tmp_path / 'resumed'}", f"resume={checkpoint}"), method="sgoc")
    assert json.loads(Path(resumed["summary_path"]).read_text())["status"] == "complete"
    assert resumed["env_steps"] == budget
    assert resumed["resumed_from"] == str(checkpoint.resolve()) and resumed["resume_override"] == []
    assert resumed["history"][0]["frames"] == stopped["history"][0]["frames"]  # the whole curve, not its tail


@pytest.mark.parametrize("num_seeds", [1, 2])
@pytest.mark.parametrize("task", ["recommendation_letter", "reaching_goals"])
def test_stopped_run_continues_exactly(recipe_config, tmp_path, task, num_seeds):
    """A run stopped at its budget and resumed with a larger one ends where the uninterrupted run ends."""
    small = ["env.num_envs=16", "collector.total_frames={}", "logger.backends=[csv]", "logger.log_interval=5",
             f"num_seeds={num_seeds}", "seed=1", "figures=false"]
    if task == "reaching_goals":
        small += ["eval.episodes=8", "env.horizon=10"]
    frames = 64 * 40 if task == "reaching_goals" else 16 * 40

    def cfg(name, budget, *extra):
        overrides = [o.format(budget) for o in small]
        return recipe_config(f"sgoc_{task}", *overrides, f"+run_dir={tmp_path / name}", *extra)

    full = run(cfg("full", frames), method="sgoc")
    run(cfg("stopped", frames // 2), method="sgoc")
    resumed = run(cfg("resumed", frames, f"resume={tmp_path / 'stopped' / 'checkpoint.pt'}"), method="sgoc")
    keys = ("sender_return", "receiver_return") if task == "reaching_goals" else ("sender_reward", "receiver_reward")
    for key in keys:
        assert resumed[key] == full[key], key
    assert resumed["env_steps"] == full["env_steps"]
