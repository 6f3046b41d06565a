"""A method declares its update phases, its learning-rate fields and its readout; the trainer follows them."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from msgzoo.pipelines import one_step
from msgzoo.runtime.experiment import Experiment
from msgzoo.training.methods import METHOD_SPECS
from recipes import build_method
from msgzoo.training.trainer import Trainer


def _tiny(recipe_config, method):
    cfg = recipe_config(f"{method}_recommendation_letter", "env.num_envs=32", "logger.backends=[csv]")
    env = one_step.make_env(cfg)
    torch.manual_seed(0)
    return cfg, env, build_method(method, env, cfg)


@pytest.mark.parametrize("method", list(METHOD_SPECS))
def test_every_loss_and_optimizer_belongs_to_one_phase(recipe_config, method):
    cfg, _, m = _tiny(recipe_config, method)
    in_phases = [loss for phase in m.phases for loss in phase.losses.values()]
    declared = [*m.sender_losses.values(), *([m.receiver_loss] if m.receiver_loss is not None else [])]
    assert sorted(map(id, in_phases)) == sorted(map(id, declared))
    assert sorted(p.name for p in m.phases) == sorted(m.optimizers)
    for field in m.learning_rate_fields:  # the fields a resume_override of a learning rate names exist
        assert isinstance(OmegaConf.select(cfg, field), float), field


def test_trainer_steps_only_what_the_phases_declare(recipe_config, tmp_path):
    """A method whose only phase is the sender's: the receiver never moves, the scheme does."""
    _, env, m = _tiny(recipe_config, "sgoc")
    m.phases = (m.phases[1],)
    before = {k: [p.detach().clone() for p in getattr(m, k).parameters()] for k in ("scheme", "receiver")}
    exp = Experiment(method="sgoc", task="t", seed=0, config={}, backends=("csv",), run_dir=tmp_path / "run")
    with exp:
        Trainer(env, m, exp, total_frames=32 * 4, frames_per_batch=32, log_interval=2).train()
    moved = {k: any(not torch.equal(a, b) for a, b in zip(before[k], getattr(m, k).parameters())) for k in before}
    assert moved == {"scheme": True, "receiver": False}


def test_phases_run_their_hooks_in_order(recipe_config, tmp_path):
    _, env, m = _tiny(recipe_config, "dial")
    calls = []
    phase = m.phases[0]
    step, batch_hook = phase.after_step[0], phase.after_batch
    phase.prepare = lambda batch, frames: calls.append(("prepare", frames))
    phase.after_step = (lambda: calls.append(("after_step",)) or step(),)
    phase.after_batch = lambda frames: calls.append(("after_batch", frames)) or batch_hook(frames)
    exp = Experiment(method="dial", task="t", seed=0, config={}, backends=("csv",), run_dir=tmp_path / "run")
    with exp:
        Trainer(env, m, exp, total_frames=32 * 2, frames_per_batch=32, log_interval=2).train()
    assert calls == [("prepare", 0), ("after_step",), ("after_batch", 32),
                     ("prepare", 32), ("after_step",), ("after_batch", 32)]
