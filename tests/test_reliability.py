"""Hostile and careless use, flaky machines: each test provokes one case of docs/reliability.md."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import RECIPES
from msgzoo.pipelines.one_step import make_env
from recipes import run_recipe as run
from msgzoo.report.compare import find_runs, report
from msgzoo.runtime.checkpoint import GracefulInterrupt, TrainingInterrupted, load_checkpoint, save_checkpoint
from msgzoo.runtime.config_validation import ConfigError, check_memory, estimate_memory, validate_config
from msgzoo.runtime.experiment import Experiment
from msgzoo.runtime.nan_guard import NonFiniteError
from recipes import build_method
from msgzoo.training.trainer import Trainer

TINY = ["env.num_envs=64", "collector.total_frames=1280", "logger.backends=[csv]", "logger.log_interval=4", "seed=2"]


def _tiny_run(recipe_config, tmp_path, name, *extra, method="sgoc"):
    return run(recipe_config(f"{method}_recommendation_letter", *TINY, f"+run_dir={tmp_path / name}", *extra),
               method=method)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny SGOC run (its folder), shared by the tests that only read or resume its checkpoint."""
    from hydra import compose, initialize_config_dir

    root = tmp_path_factory.mktemp("finished")
    with initialize_config_dir(config_dir=str(RECIPES / "config"), version_base="1.3"):
        cfg = compose(config_name="sgoc_recommendation_letter", overrides=[*TINY, f"+run_dir={root / 'a'}"])
    summary = run(cfg, method="sgoc")
    return root / "a", summary


def _trainer(recipe_config, tmp_path, *, batches=40, log_interval=4, **kwargs):
    cfg = recipe_config("sgoc_recommendation_letter", "env.num_envs=64", "logger.backends=[csv]")
    env = make_env(cfg)
    exp = Experiment(method="sgoc", task="t", seed=0, config=cfg, run_dir=str(tmp_path), backends=("csv",))
    trainer = Trainer(env, build_method("sgoc", env, cfg), exp, total_frames=64 * batches, frames_per_batch=64,
                      log_interval=log_interval, **kwargs)
    return trainer, exp


# ------------------------------------------------------------ 1. checkpoints cannot run code
class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_cannot_run_code(recipe_config, tmp_path):
    marker, crafted = tmp_path / "code_ran", tmp_path / "checkpoint.pt"
    torch.save({"iteration": 0, "payload": _RunsCode(marker)}, crafted)
    with pytest.raises(ValueError, match="refusing to load checkpoint .*could run arbitrary code"):
        load_checkpoint(crafted)
    with pytest.raises(ValueError, match="refusing to load"):  # through resume=: refused before anything is built
        _tiny_run(recipe_config, tmp_path, "resumed", f"resume={crafted}")
    assert not marker.exists()
    assert not (tmp_path / "resumed").exists()


def test_training_checkpoint_loads_weights_only(finished):
    state = torch.load(finished[0] / "checkpoint.pt", weights_only=True)  # what load_checkpoint does
    assert state["config"]["optim"]["signaling_lr"] == 2.0e-2 and state["config"]["seed"] == 2
    assert isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)


def test_truncated_or_older_checkpoints_are_refused_by_name(finished, recipe_config, tmp_path):
    from tensordict import TensorDict

    data = (finished[0] / "checkpoint.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="could not read checkpoint .*truncated.pt"):
        load_checkpoint(truncated)
    older = tmp_path / "older.pt"  # msgzoo <= 0.1 pickled the collector's TensorDict
    torch.save({"iteration": 3, "carrier": TensorDict({"x": torch.ones(2)}, [2])}, older)
    with pytest.raises(ValueError, match="refusing to load checkpoint .*older.pt"):
        load_checkpoint(older)
    trainer, exp = _trainer(recipe_config, tmp_path / "b")
    with exp, pytest.raises(ValueError, match="layout None; this msgzoo reads layouts 2 and 3 .*Fix: start a new run"):
        trainer.load_state_dict({"iteration": 3})


# ------------------------------------------------------------ 2. resumes cannot lie
@pytest.mark.parametrize("change,field", [
    (["optim.signaling_lr=0.5"], "optim.signaling_lr: checkpoint 0.02, now 0.5"),
    (["loss.lagrange_multiplier=7"], "loss.lagrange_multiplier: checkpoint 5.0, now 7"),
    (["seed=5"], "seed: checkpoint 2, now 5"),
    (["env.game=prosecutor_judge"], "env.game: checkpoint 'recommendation_letter', now 'prosecutor_judge'"),
    (["env.num_envs=32"], "env.num_envs: checkpoint 64, now 32"),
    (["num_seeds=2"], "num_seeds: checkpoint 1, now 2"),
])
def test_resume_refuses_a_changed_config(finished, recipe_config, tmp_path, change, field):
    with pytest.raises(ConfigError) as err:
        _tiny_run(recipe_config, tmp_path, "b", f"resume={finished[0] / 'checkpoint.pt'}", *change)
    assert field in str(err.value) and "Fix:" in str(err.value)
    assert not (tmp_path / "b").exists()  # refused before the run folder (config.json, summary) is written


def test_resume_refuses_another_method_by_name(finished, recipe_config, tmp_path):
    with pytest.raises(ConfigError, match="method: checkpoint 'sgoc', now 'pg'"):
        _tiny_run(recipe_config, tmp_path, "b", f"resume={finished[0] / 'checkpoint.pt'}", method="pg")


def test_resume_override_applies_the_new_values_and_is_recorded(finished, recipe_config, tmp_path):
    summary = _tiny_run(
        recipe_config, tmp_path, "b", f"resume={finished[0] / 'checkpoint.pt'}", "collector.total_frames=2560",
        "optim.signaling_lr=0.05", "loss.lagrange_multiplier=20",
        "resume_override=[optim.signaling_lr,loss.lagrange_multiplier]",
    )
    assert summary["resume_override"] == ["optim.signaling_lr", "loss.lagrange_multiplier"]
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert state["optimizers"]["sender"]["param_groups"][0]["lr"] == 0.05  # trained with the new value
    assert torch.all(state["losses"]["loss_obedience"]["lagrange_multiplier"] == 20)


def test_adams_beta2_is_refused_or_applied_on_resume_and_older_checkpoints_ran_with_torchs(
        finished, recipe_config, tmp_path):
    checkpoint = finished[0] / "checkpoint.pt"
    refused = r"(?s)optim.adam_beta2: checkpoint 0.99, now 0.9.*resume_override=\[optim.adam_beta2"
    with pytest.raises(ConfigError, match=refused):
        _tiny_run(recipe_config, tmp_path, "b", f"resume={checkpoint}", "optim.adam_beta2=0.9")
    _tiny_run(recipe_config, tmp_path, "c", f"resume={checkpoint}", "collector.total_frames=2560",
              "optim.adam_beta2=0.9", "resume_override=[optim.adam_beta2]")
    state = load_checkpoint(tmp_path / "c" / "checkpoint.pt")
    assert all(g["betas"] == (0.9, 0.9) for opt in state["optimizers"].values() for g in opt["param_groups"])
    # a checkpoint made before the field existed ran with torch's 0.999: today's 0.99 is a change it must allow
    older = load_checkpoint(checkpoint)
    del older["config"]["optim"]["adam_beta2"], older["config"]["loss"]["receiver_gradient"]
    save_checkpoint(tmp_path / "older.pt", older)
    with pytest.raises(ConfigError, match="optim.adam_beta2: checkpoint 0.999, now 0.99"):
        _tiny_run(recipe_config, tmp_path, "d", f"resume={tmp_path / 'older.pt'}")
    _tiny_run(recipe_config, tmp_path, "e", f"resume={tmp_path / 'older.pt'}", "optim.adam_beta2=0.999",
              "collector.total_frames=2560")


def test_resume_override_cannot_change_the_game_or_networks(finished, recipe_config, tmp_path):
    with pytest.raises(ConfigError, match="resume_override=.*'env.num_envs' is not"):
        _tiny_run(recipe_config, tmp_path, "b", f"resume={finished[0] / 'checkpoint.pt'}", "env.num_envs=32",
                  "resume_override=[env.num_envs]")


# ------------------------------------------------------------ 3. a stop is not a finish
def test_sigint_stops_with_status_interrupted_and_exit_status_130(recipe_config, tmp_path):
    trainer, exp = _trainer(recipe_config, tmp_path)
    update = trainer.update

    def ctrl_c(batch, metrics=None):
        if trainer.iteration == 5:
            os.kill(os.getpid(), signal.SIGINT)
        update(batch, metrics)

    trainer.update = ctrl_c
    with exp:
        trainer.train()
        assert trainer.interrupted == "SIGINT" and trainer.frames < trainer.total_frames
        with pytest.raises(TrainingInterrupted) as stop:
            trainer.finish_if_interrupted()
    assert stop.value.code == 130 and isinstance(stop.value, SystemExit)  # Hydra does not catch a SystemExit
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["env_steps"] == trainer.frames
    assert load_checkpoint(tmp_path / "checkpoint.pt")["frames"] == trainer.frames


def test_a_crash_writes_status_failed(tmp_path):
    with pytest.raises(RuntimeError):
        with Experiment(method="m", task="t", seed=0, config={}, run_dir=tmp_path, backends=("csv",)):
            raise RuntimeError("out of memory")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "out of memory" in summary["error"]


def test_sigterm_stops_a_hydra_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, str(RECIPES / "sgoc_recommendation_letter.py"), "-m", "seed=0,1",
         "collector.total_frames=2560000", "env.num_envs=256", "logger.backends=[csv]",
         "logger.checkpoint_interval=10", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while not (sweep / "0" / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "the first job wrote no checkpoint"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert not (sweep / "1").exists()  # the sweep stopped: the second job never started
    assert json.loads((sweep / "0" / "summary.json").read_text())["status"] == "interrupted"


# ------------------------------------------------------------ 4. a second Ctrl-C during the write
def test_second_ctrl_c_during_the_checkpoint_write_keeps_the_checkpoint(monkeypatch, tmp_path):
    path, fsync = tmp_path / "checkpoint.pt", os.fsync

    def fsync_then_ctrl_c(fd):
        fsync(fd)
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, inside the fsync
        for _ in range(1000):  # Python runs handlers between bytecodes: give it every chance to fire here
            pass

    with GracefulInterrupt() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: a stop request
        while not stop.requested:
            pass
        monkeypatch.setattr(os, "fsync", fsync_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):  # still aborts, but after the file is complete
            save_checkpoint(path, {"weights": torch.arange(3.0)})
    assert torch.equal(load_checkpoint(path)["weights"], torch.arange(3.0))
    assert not path.with_name("checkpoint.pt.tmp").exists()


# ------------------------------------------------------------ 6. non-finite updates between logs
def test_a_non_finite_update_between_logs_stops_at_the_last_good_checkpoint(recipe_config, tmp_path):
    trainer, exp = _trainer(recipe_config, tmp_path, log_interval=4)
    apply = trainer._apply

    def inf_loss_once(name, loss, metrics):  # batch 5 (not a logged one): an inf loss, finite gradients
        apply(name, loss + (math.inf if trainer.iteration == 5 else 0.0), metrics)

    trainer._apply = inf_loss_once
    with exp, pytest.raises(NonFiniteError, match="batch 5"):
        trainer.train()
    assert trainer.iteration == 8  # read at the next log, not at the end of the run
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["iteration"] == 4  # the last state logged before the bad update
    assert all(torch.isfinite(t).all() for t in state["policy"].values())


def test_a_crash_keeps_the_last_good_state(recipe_config, tmp_path):
    trainer, exp = _trainer(recipe_config, tmp_path, log_interval=4)
    update = trainer.update

    def crash(batch, metrics=None):
        if trainer.iteration == 9:
            raise RuntimeError("CUDA error: an illegal memory access")
        update(batch, metrics)

    trainer.update = crash
    with exp, pytest.raises(RuntimeError, match="illegal"):
        trainer.train()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 8


# ------------------------------------------------------------ 7. summaries of resumed runs
def test_resuming_a_finished_run_reports_its_real_speed(finished, recipe_config, tmp_path):
    _, first = finished
    again = _tiny_run(recipe_config, tmp_path, "b", f"resume={finished[0] / 'checkpoint.pt'}")
    assert again["wall_time_s"] == first["wall_time_s"] > 0  # no training happened: the run's own time
    assert again["env_steps_per_s"] == first["env_steps_per_s"]
    assert again["history"] == first["history"]


def test_a_resumed_run_counts_both_sessions(finished, recipe_config, tmp_path):
    before = load_checkpoint(finished[0] / "checkpoint.pt")["wall_time"]
    resumed = _tiny_run(recipe_config, tmp_path, "b", f"resume={finished[0] / 'checkpoint.pt'}",
                        "collector.total_frames=2560")
    assert resumed["wall_time_s"] > before
    assert resumed["history"][-1]["time/wall_s"] > before  # the logged clock continues too
    assert resumed["env_steps_per_s"] == pytest.approx(2560 / resumed["wall_time_s"])


# ------------------------------------------------------------ 8. the report
def _summary(root, name, **fields):
    run = {"task": "rl", "method": "sgoc", "seed": 0, "config_hash": "aaaa", "status": "complete",
           "sender_reward": 0.5, "receiver_reward": 0.0, "welfare": 0.5, **fields}
    path = root / name / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(run))
    return path


def test_report_counts_finished_runs_once(tmp_path):
    _summary(tmp_path, "stopped", status="interrupted", sender_reward=None)
    _summary(tmp_path, "crashed", status="failed")
    _summary(tmp_path, "first_half")  # resumed by "second_half": one run, not two
    _summary(tmp_path, "second_half", resumed_from=str(tmp_path / "first_half" / "checkpoint.pt"),
             sender_reward=0.7)
    _summary(tmp_path, "repeat", sender_reward=0.9)  # seed 0 again: the newest one is kept
    _summary(tmp_path, "other_config", config_hash="bbbb", seed=1)
    _summary(tmp_path, "seed1", seed=1, sender_reward="n/a", welfare=True)
    (tmp_path / "truncated").mkdir()
    (tmp_path / "truncated" / "summary.json").write_text('{"task": "rl", "meth')
    skipped: list[str] = []
    runs = find_runs([tmp_path], skipped)
    assert sorted(r["run_dir"].rsplit("/", 1)[1] for r in runs) == ["other_config", "repeat", "seed1"]
    reasons = "\n".join(skipped)
    for expected in ("stopped/summary.json: status 'interrupted'", "crashed/summary.json: status 'failed'",
                     "first_half: continued by a resumed run", "a repeat of seed 0",
                     "truncated/summary.json: unreadable"):
        assert expected in reasons

    result = report([tmp_path], tmp_path / "out")
    rows = {r["method"]: r for r in json.loads((tmp_path / "out" / "table.json").read_text())}
    assert set(rows) == {"sgoc (aaaa)", "sgoc (bbbb)"}  # two configs, two rows
    row = rows["sgoc (aaaa)"]
    assert row["seeds"] == 2 and row["sender_reward"]["n"] == 1  # "n/a" is not a number
    assert row["welfare"]["n"] == 1 and row["welfare"]["mean"] == 0.5  # true is not 1.0
    assert result["runs"] == 3 and len(result["skipped"]) == 5
    assert "Left out (5)" in (tmp_path / "out" / "table.md").read_text()


# ------------------------------------------------------------ 5. yes/no fields and unknown keys
@pytest.mark.parametrize("override", ["env.aligned=off", "env.bounded=no", "figures=nope"])
def test_yes_no_fields_take_only_true_or_false(recipe_config, override):
    cfg = recipe_config("sgoc_reaching_goals", override)
    field, value = override.split("=")
    with pytest.raises(ConfigError, match=f"{field}=.*expected true or false"):
        validate_config(cfg, method="sgoc")


@pytest.mark.parametrize("recipe,override,hint", [
    ("sgoc_recommendation_letter", "+optim.signalling_lr=0.1", "did you mean optim.signaling_lr?"),
    ("sgoc_reaching_goals", "+env.recever_observes=[goal]", "did you mean env.receiver_observes?"),
    ("sgoc_reaching_goals", "+evaluation.episodes=5", "evaluation is not a field"),
])
def test_a_misspelt_key_added_with_plus_is_refused(recipe_config, recipe, override, hint):
    with pytest.raises(ConfigError, match="silently ignored") as err:
        validate_config(recipe_config(recipe, override), method="sgoc")
    assert hint in str(err.value)


# ------------------------------------------------------------ 9. settings that used to crash later
@pytest.mark.parametrize("override,named", [
    ("eval.seed=-1", "eval.seed=-1"),
    ("network.hidden=[-1]", "network.hidden=[-1]"),
    ("seed=18446744073709551616", "seed=18446744073709551616"),
    ("device=meta", "device='meta'"),
    ("optim.signaling_lr=1e38", "optim.signaling_lr=1e+38"),
])
def test_settings_that_crashed_later_fail_at_validation(recipe_config, override, named):
    with pytest.raises(ConfigError, match="Fix:") as err:
        validate_config(recipe_config("sgoc_reaching_goals", override), method="sgoc")
    assert named in str(err.value)


def test_a_map_that_cannot_fit_is_refused_before_building(recipe_config):
    cfg = recipe_config("sgoc_reaching_goals", "env.height=100", "env.width=100", "env.num_envs=4")
    # one [16, 10^4, 3 x 10^4] float tensor (19.2 GB, the size of the reported crash); its sum and ReLU: twice
    assert estimate_memory(cfg, "sgoc") == 2 * 4 * (4 * 4) * 10_000 * 3 * 10_000
    with pytest.raises(ConfigError, match="needs about 38.4 GB for sgoc, more than the 16.0 GB free"):
        check_memory(cfg, "sgoc", available=16 * 10**9)
    huge = recipe_config("sgoc_reaching_goals", "env.height=1000", "env.width=1000")
    with pytest.raises(ConfigError, match="Fix: a smaller map"):  # beyond any machine
        validate_config(huge, method="sgoc")


# ------------------------------------------------------------ 10. env misuse
def _envs():
    from msgzoo.envs import ReachingGoalsEnv
    from msgzoo.envs.bayesian_persuasion import recommendation_letter

    return [ReachingGoalsEnv(num_envs=4), recommendation_letter(num_envs=4)]


@pytest.mark.parametrize("env", _envs(), ids=["reaching_goals", "one_step"])
def test_env_misuse_is_refused(env):
    with pytest.raises(RuntimeError, match="call td = env.reset"):  # a step before reset
        env.step(env.full_action_spec.rand())
    td = env.reset().update(env.full_action_spec.rand())
    td["receiver", "action"] = torch.tensor([0, 1, 1, 0])  # index actions, validation off
    with pytest.raises(ValueError, match=r"shape \(4,\): expected \(4, \d\), one one-hot row"):
        env.step(td)
    env.validate_actions = True
    td = env.reset().update(env.full_action_spec.rand())
    td["sender", "state"].view(-1)[0] = -1  # would index from the end
    with pytest.raises(ValueError, match=r"integer indices in \[0, \d\)"):
        env.step(td)


def test_env_arguments_are_strict():
    from msgzoo.envs import BayesianPersuasionEnv, ReachingGoalsEnv

    with pytest.raises(ValueError, match="sender_utility=.*finite payoffs"):
        BayesianPersuasionEnv([0.5, 0.5], [[0.0, math.nan], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="receiver_utility=.*finite payoffs"):
        BayesianPersuasionEnv([0.5, 0.5], [[0.0, 1.0], [0.0, 1.0]], [[0.0, math.inf], [0.0, 1.0]])
    with pytest.raises(ValueError, match="bounded='no' is invalid: expected True or False"):
        ReachingGoalsEnv(bounded="no")
