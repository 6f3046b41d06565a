"""Tests for the shared run infrastructure: Experiment, checkpoints, NaN guard."""
from __future__ import annotations

import json
import os
import random
import signal
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from msgzoo.runtime.checkpoint import (
    GracefulInterrupt,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from msgzoo.runtime.experiment import Experiment, config_hash
from msgzoo.runtime.nan_guard import NonFiniteError, check_finite

CFG = {"lr": 1e-3, "seed": 0, "iterations": 10, "logger": {"mode": "offline"}, "run_dir": None}


def make_exp(tmp_path, seed=0, config=CFG, **kw):
    kw.setdefault("backends", ("csv",))
    kw.setdefault("run_dir", tmp_path / f"run_s{seed}")
    return Experiment(method="a2c", task="persuasion", seed=seed, config=config, **kw)


def read_csv(path: Path) -> list[tuple[int, float]]:
    rows = []
    for line in path.read_text().splitlines():
        step, value = line.split(",")
        rows.append((int(step), float(value)))
    return rows


def wandb_warnings(record) -> list:
    return [w for w in record if "wandb" in str(w.message)]


# ----------------------------------------------------------------- Experiment
def test_names_hash_and_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    e1 = Experiment(method="a2c", task="persuasion", seed=1, config={**CFG, "seed": 1}, backends=("csv",))
    e2 = Experiment(method="a2c", task="persuasion", seed=2, config={**CFG, "seed": 2}, backends=("csv",))
    e3 = Experiment(method="a2c", task="persuasion", seed=1, config={**CFG, "lr": 3e-4}, backends=("csv",))
    for e in (e1, e2, e3):
        e.close()
    h = e1.config_hash
    assert len(h) == 8 and int(h, 16) >= 0
    assert e2.config_hash == h  # seed is not part of the hash
    assert config_hash({**CFG, "logger": {"mode": "online"}, "run_dir": "x", "resume": True}) == h
    assert e3.config_hash != h  # a different learning rate is a different config
    assert e1.run_name == f"a2c_persuasion_s1_{h}"
    assert e1.group == f"a2c_persuasion_{h}" == e2.group
    assert e1.tags == ["a2c", "persuasion", "seed=1", f"config={h}"]
    assert e1.run_dir == (tmp_path / "runs" / e1.run_name).resolve()
    assert e1.run_dir.is_dir()
    assert json.loads((e1.run_dir / "config.json").read_text())["lr"] == 1e-3
    assert "lr: 0.001" in (e1.run_dir / "config.yaml").read_text()


def test_run_dir_from_hydra(tmp_path, monkeypatch):
    from hydra.core.hydra_config import HydraConfig

    out = tmp_path / "outputs" / "2024-01-01"
    cfg = types.SimpleNamespace(runtime=types.SimpleNamespace(output_dir=str(out)))
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: cfg))
    exp = Experiment(method="a2c", task="persuasion", seed=0, config=CFG, backends=("csv",))
    exp.close()
    assert exp.run_dir == out.resolve() and out.is_dir()


def test_csv_log_and_last_metrics(tmp_path):
    with make_exp(tmp_path) as exp:
        exp.log({"loss": torch.tensor(0.5), "reward": 1.25, "n": np.float32(2.0)}, step=0)
        exp.log({"loss": torch.tensor([0.25]), "reward": 2.5, "n": 3}, step=10)
        assert exp.last_metrics == {"loss": 0.25, "reward": 2.5, "n": 3}
    scalars = exp.run_dir / "csv" / "scalars"
    assert read_csv(scalars / "loss.csv") == [(0, 0.5), (10, 0.25)]
    assert read_csv(scalars / "reward.csv") == [(0, 1.25), (10, 2.5)]


def test_csv_survives_crash(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with make_exp(tmp_path) as exp:
            exp.log({"loss": 1.0}, step=3)
            raise RuntimeError("boom")
    assert read_csv(exp.run_dir / "csv" / "scalars" / "loss.csv") == [(3, 1.0)]


def test_wandb_fails_to_start(tmp_path, monkeypatch, capsys):
    from torchrl.record.loggers import wandb as tr_wandb

    def broken_init(self, *args, **kwargs):
        raise RuntimeError("wandb is broken")

    monkeypatch.setattr(tr_wandb.WandbLogger, "__init__", broken_init)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        exp = make_exp(tmp_path, backends=("csv", "wandb"))
        exp.log({"loss": 1.0}, step=0)
        exp.log({"loss": 2.0}, step=1)
        path = exp.finish({"final": 2.0})
    ws = wandb_warnings(record)
    assert len(ws) == 1 and "wandb is broken" in str(ws[0].message)
    assert "CSV" in str(ws[0].message)
    assert exp.wandb_logger is None
    assert json.loads(path.read_text())["final"] == 2.0
    assert read_csv(exp.run_dir / "csv" / "scalars" / "loss.csv") == [(0, 1.0), (1, 2.0)]


class _FakeRun:
    def __init__(self):
        self.config = types.SimpleNamespace(update=lambda *a, **k: None)
        self.finished = False

    def log(self, *a, **k):
        pass

    def define_metric(self, *a, **k):
        pass

    def finish(self, *a, **k):
        self.finished = True


def test_wandb_fails_mid_log(tmp_path, monkeypatch):
    from torchrl.record.loggers import wandb as tr_wandb

    def boom(self, *args, **kwargs):
        raise ConnectionError("wandb went away")

    monkeypatch.setattr(tr_wandb.WandbLogger, "_create_experiment", lambda self: _FakeRun())
    monkeypatch.setattr(tr_wandb.WandbLogger, "log_scalar", boom)
    monkeypatch.setattr(tr_wandb.WandbLogger, "log_metrics", boom)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with make_exp(tmp_path, backends=("csv", "wandb")) as exp:
            assert exp.wandb_logger is not None
            run = exp.wandb_logger.experiment
            for step in range(3):
                exp.log({"loss": float(step)}, step=step)
            assert exp.wandb_logger is None
        assert run.finished
    ws = wandb_warnings(record)
    assert len(ws) == 1 and "wandb went away" in str(ws[0].message)
    assert read_csv(exp.run_dir / "csv" / "scalars" / "loss.csv") == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_summary_and_last_line(tmp_path, capsys):
    exp = make_exp(tmp_path, seed=3)
    pbar = exp.progress(total=4, desc="train")
    for i in range(4):
        exp.update_progress(1, {"reward": torch.tensor(1.0 / 3.0), "it": i})
    assert pbar.postfix is not None and "0.333" in pbar.postfix
    exp.log({"reward": 0.5}, step=4)
    path = exp.finish(
        {"return": torch.tensor(1.5), "curve": torch.arange(3.0), "np": np.arange(2), "n": np.int64(7)}
    )
    assert path.is_absolute() and path == exp.run_dir / "summary.json"
    s = json.loads(path.read_text())
    assert s["return"] == 1.5 and s["curve"] == [0.0, 1.0, 2.0] and s["np"] == [0, 1] and s["n"] == 7
    assert s["run_name"] == exp.run_name and s["group"] == exp.group and s["tags"] == exp.tags
    assert s["config_hash"] == exp.config_hash and s["run_dir"] == str(exp.run_dir)
    assert s["last_metrics"] == {"reward": 0.5}
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"summary: {path}"


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(5, 3)).pow(2).mean().backward()
    optim.step()
    gen = torch.Generator().manual_seed(123)
    path = tmp_path / "ckpt" / "checkpoint.pt"
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "optim": optim.state_dict(),
            "rng": rng_state({"env": gen}),
            "iteration": 7,
            "log_step": 70,
            "env_td": torch.ones(2, 3),
        },
    )
    expected = (torch.rand(4), torch.rand(2, generator=gen), np.random.rand(3), random.random())
    assert not path.with_name(path.name + ".tmp").exists()
    assert os.listdir(path.parent) == ["checkpoint.pt"]

    state = load_checkpoint(path)
    model2 = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    optim2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    model2.load_state_dict(state["model"])
    optim2.load_state_dict(state["optim"])
    gen2 = torch.Generator()
    set_rng_state(state["rng"], {"env": gen2})
    assert torch.equal(torch.rand(4), expected[0])
    assert torch.equal(torch.rand(2, generator=gen2), expected[1])
    assert np.array_equal(np.random.rand(3), expected[2])
    assert random.random() == expected[3]
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    s1, s2 = optim.state_dict()["state"], optim2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)
    assert state["iteration"] == 7 and state["log_step"] == 70
    assert torch.equal(state["env_td"], torch.ones(2, 3))


def test_checkpoint_errors(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(missing)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(bad)


def test_graceful_interrupt(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with GracefulInterrupt() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):  # the handler runs between bytecodes
            if stop.requested:
                break
        assert stop.requested and stop.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):
                pass
    assert signal.getsignal(signal.SIGTERM) is before


# ------------------------------------------------------------------ NaN guard
def test_nan_guard():
    scheme = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    scheme(torch.randn(4, 2)).sum().backward()
    losses = {"loss_critic": torch.tensor(1.0), "loss_signaling": torch.tensor(0.5)}
    check_finite(losses, {"scheme": scheme})  # all finite: passes

    with pytest.raises(NonFiniteError, match="loss 'loss_signaling' is nan") as info:
        check_finite({**losses, "loss_signaling": torch.tensor(float("nan"))}, {"scheme": scheme})
    assert "learning rate" in str(info.value) and isinstance(info.value, FloatingPointError)

    scheme[2].weight.grad[0, 1] = float("inf")
    with pytest.raises(
        NonFiniteError, match="gradient of parameter '2.weight' in module 'scheme' is inf"
    ):
        check_finite(losses, {"scheme": scheme})
    check_finite(losses, {"scheme": scheme}, check_grads=False)

    with torch.no_grad():
        scheme[0].bias[1] = float("nan")
    with pytest.raises(NonFiniteError, match="parameter '0.bias' in module 'scheme' is nan"):
        check_finite(losses, {"scheme": scheme})


def test_nan_guard_tensordict():
    from tensordict import TensorDict

    td = TensorDict({"loss_a": torch.tensor(1.0), "sub": {"loss_b": torch.tensor(float("-inf"))}}, [])
    with pytest.raises(NonFiniteError, match="loss 'sub.loss_b' is inf"):
        check_finite(td, None)


def test_existing_csv_logs_warn(tmp_path):
    with make_exp(tmp_path) as exp:
        exp.log({"loss": 1.0}, step=0)
    with pytest.warns(RuntimeWarning, match="already holds CSV logs"):
        make_exp(tmp_path).close()


@pytest.mark.slow
def test_real_offline_wandb(tmp_path, capsys):
    with make_exp(tmp_path, backends=("csv", "wandb"), wandb_mode="offline") as exp:
        assert exp.wandb_logger is not None
        exp.log({"loss": 1.0}, step=0)
        path = exp.finish({"ok": True})
    assert list((exp.run_dir / "wandb").glob("offline-run-*"))
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"summary: {path}"
