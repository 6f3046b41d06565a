"""A NaN in training stops the run, naming where it appeared, after saving the last good checkpoint."""
from __future__ import annotations

import math

import pytest
import torch

from msgzoo.pipelines.one_step import make_env
from msgzoo.runtime.checkpoint import load_checkpoint
from msgzoo.runtime.experiment import Experiment
from msgzoo.runtime.nan_guard import NonFiniteError
from recipes import build_method
from msgzoo.training.trainer import Trainer


def test_nan_stops_run_and_keeps_last_good_checkpoint(recipe_config, tmp_path):
    cfg = recipe_config("sgoc_recommendation_letter", "env.num_envs=256", "logger.backends=[csv]")
    env = make_env(cfg)
    method = build_method("sgoc", env, cfg)
    with Experiment(method="sgoc", task="nan_test", seed=0, config=cfg, run_dir=str(tmp_path), backends=("csv",)) as exp:
        trainer = Trainer(env, method, exp, total_frames=256 * 200, frames_per_batch=256, log_interval=4)
        update = trainer.update

        def poisoned(batch, metrics=None):  # a receiver weight turns NaN at the 6th sender update
            if trainer.iteration == 11:
                with torch.no_grad():
                    next(method.receiver.parameters()).fill_(math.nan)
            update(batch, metrics)

        trainer.update = poisoned
        with pytest.raises(NonFiniteError) as err:
            trainer.train()
    message = str(err.value)
    assert "nan" in message and ("receiver" in message or "loss" in message)
    assert "learning rate" in message  # the hint
    assert trainer.iteration < 20  # stopped at the first check after the NaN, not at the end
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["iteration"] <= 11  # the last state logged before the NaN
    for tensor in state["policy"].values():
        assert torch.isfinite(tensor).all()
