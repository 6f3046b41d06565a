"""Typed configs per method and task: a method's config is what its builder reads, the hash and the resume check
cover only that, the schemas check types and unknown keys, and the loggers are a list of TorchRL backends."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from omegaconf import OmegaConf

from msgzoo.pipelines import one_step
from msgzoo.runtime.config_validation import (
    ConfigError,
    check_resume_config,
    method_config,
    task_schema,
    validate_config,
)
from msgzoo.runtime.experiment import Experiment, config_hash, config_to_dict
from msgzoo.training.config_schema import merge_fields, schema_fields
from msgzoo.training.methods import METHOD_SPECS
from recipes import build_method

TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def _hash(recipe_config, method, *overrides):
    return config_hash(recipe_config(f"{method}_recommendation_letter", *overrides), method)


# ------------------------------------------------------------ 1. the hash covers what the method reads
def test_a_field_sg_does_not_read_leaves_its_hash_and_changes_sgocs(recipe_config):
    lam = "loss.lagrange_multiplier=7.0"
    assert _hash(recipe_config, "sg") == _hash(recipe_config, "sg", lam)
    assert _hash(recipe_config, "sgoc") != _hash(recipe_config, "sgoc", lam)
    # a field SG reads, a task field and DIAL's own section
    assert _hash(recipe_config, "sg") != _hash(recipe_config, "sg", "loss.receiver_coeff=3.0")
    assert _hash(recipe_config, "sg") != _hash(recipe_config, "sg", "env.num_envs=64")
    assert _hash(recipe_config, "sg") == _hash(recipe_config, "sg", "dial.lr=0.01")
    assert _hash(recipe_config, "dial") != _hash(recipe_config, "dial", "dial.lr=0.01")
    assert _hash(recipe_config, "dial") == _hash(recipe_config, "dial", "optim.signaling_lr=0.5", lam)


def test_the_run_folder_name_follows_the_method_hash(recipe_config, tmp_path):
    names = []
    for lam in ("1.0", "7.0"):
        cfg = recipe_config("sg_recommendation_letter", f"loss.lagrange_multiplier={lam}")
        with Experiment(method="sg", task=cfg.task, seed=0, config=cfg, run_dir=tmp_path / lam) as exp:
            names.append(exp.run_name)
            assert "lagrange_multiplier" not in exp.config_hash
    assert names[0] == names[1]


def test_method_config_drops_only_other_methods_fields(recipe_config):
    cfg = config_to_dict(recipe_config("sg_recommendation_letter"))
    sg = method_config(cfg, "sg")
    assert "dial" not in sg and "lagrange_multiplier" not in sg["loss"] and "joint_epsilon" not in sg["warmup"]
    assert sg["env"] == cfg["env"] and sg["loss"]["receiver_coeff"] == cfg["loss"]["receiver_coeff"]
    assert method_config(cfg, "not_a_method") == cfg  # no schema: nothing is dropped
    assert method_config({"game": {"num_voters": 3}, "loss": {"epsilon": 0.1}}, "sgoc") == {
        "game": {"num_voters": 3}, "loss": {"epsilon": 0.1}}  # fields no method declares are kept


@pytest.mark.parametrize("method", list(METHOD_SPECS))
def test_each_method_builds_from_its_declared_fields_alone(recipe_config, method):
    """The declaration is complete: the builder, given only the task's and the method's fields (struct mode, so
    reading any other field raises), builds the method."""
    cfg = recipe_config(f"{method}_recommendation_letter", "env.num_envs=16")
    fields = merge_fields(task_schema(cfg), METHOD_SPECS[method].config)
    data = config_to_dict(cfg)
    only: dict = {}
    for name in fields:
        node, value = only, OmegaConf.select(cfg, name)
        *sections, leaf = name.split(".")
        for s in sections:
            node = node.setdefault(s, {})
        if OmegaConf.select(OmegaConf.create(data), name, default="<absent>") != "<absent>":
            node[leaf] = value
    small = OmegaConf.create(only)
    OmegaConf.set_struct(small, True)
    env = one_step.make_env(cfg)
    torch.manual_seed(0)
    method_ = build_method(method, env, small)
    assert method_.phases


# ------------------------------------------------------------ resume: a field the method reads may not change
def test_resume_compares_the_fields_the_method_reads(recipe_config):
    saved = config_to_dict(recipe_config("sg_recommendation_letter"))
    moved = config_to_dict(recipe_config("sg_recommendation_letter", "loss.lagrange_multiplier=7.0", "dial.lr=0.01"))
    assert check_resume_config(saved, moved, checkpoint="c.pt") == []  # SG reads neither
    with pytest.raises(ConfigError, match=r"loss.lagrange_multiplier: checkpoint 5.0, now 7.0"):
        check_resume_config(saved, moved, checkpoint="c.pt", method="sgoc")
    read = config_to_dict(recipe_config("sg_recommendation_letter", "loss.sender_entropy_coeff=0.1"))
    with pytest.raises(ConfigError, match=r"loss.sender_entropy_coeff: checkpoint 0.0, now 0.1"):
        check_resume_config(saved, read, checkpoint="c.pt")


# ------------------------------------------------------------ 2. the schemas check types and keys
@pytest.mark.parametrize("method,override,named", [
    ("sg", "loss.receiver_coeff=two", "loss.receiver_coeff='two' is invalid: expected a finite weight"),
    ("sgoc", "loss.epsilon_final=soon", "loss.epsilon_final='soon' is invalid"),
    ("pg", "warmup.frames=-1", "warmup.frames=-1 is invalid"),
    ("pgoc", "sender_objective.receiver_weight=2", "sender_objective.receiver_weight=2 is invalid"),
    ("dial", "dial.annealing_frames=1.5", "dial.annealing_frames=1.5 is invalid"),
    ("sg", "optim.epochs=true", "optim.epochs=True is invalid"),
    ("sgoc", "optim.lr_final_fraction=2", "optim.lr_final_fraction=2 is invalid: expected a fraction in [0, 1]"),
    ("sg", "env.num_envs=1.5", "env.num_envs=1.5 is invalid"),
])
def test_a_wrong_type_or_range_names_the_field_and_fix(recipe_config, method, override, named):
    with pytest.raises(ConfigError, match="Fix: set") as err:
        validate_config(recipe_config(f"{method}_recommendation_letter", override), method=method)
    assert named in str(err.value)


def test_fields_only_other_methods_read_are_not_checked(recipe_config):
    validate_config(recipe_config("sg_recommendation_letter", "loss.lagrange_multiplier=-1"), method="sg")
    with pytest.raises(ConfigError, match="loss.lagrange_multiplier=-1"):
        validate_config(recipe_config("sgoc_recommendation_letter", "loss.lagrange_multiplier=-1"), method="sgoc")


def test_an_unknown_key_names_the_closest_field(recipe_config):
    with pytest.raises(ConfigError, match="did you mean loss.lagrange_multiplier"):
        validate_config(recipe_config("sg_recommendation_letter", "+loss.lagrange=1"), method="sg")


def test_every_methods_fields_are_in_both_tasks_yaml(recipe_config):
    """Every field a method needs has its value in the YAML (a nullable one may be left out: null)."""
    for task in ("recommendation_letter", "reaching_goals"):
        cfg = recipe_config(f"sgoc_{task}")
        for spec in METHOD_SPECS.values():
            for field, setting in schema_fields(spec.config).items():
                assert setting.nullable or OmegaConf.select(cfg, field, default="<absent>") != "<absent>", (task, field)


# ------------------------------------------------------------ 3. loggers: a list of TorchRL backends
def test_the_old_use_wandb_field_fails_naming_backends(recipe_config):
    for recipe in ("sgoc_recommendation_letter", "sg_reaching_goals"):
        with pytest.raises(ConfigError, match=r"logger.use_wandb=False is no longer read.*logger.backends=\[csv\]"):
            validate_config(recipe_config(recipe, "logger.use_wandb=false"), method="sgoc")


@pytest.mark.parametrize("backends", ["[csv,mlflow]", "[csv,csv]", "csv"])
def test_unknown_backends_are_refused(recipe_config, backends):
    with pytest.raises(ConfigError, match=r"logger.backends=.*is invalid.*Fix:"):
        validate_config(recipe_config("sgoc_recommendation_letter", f"logger.backends={backends}"), method="sgoc")


@pytest.mark.skipif(TENSORBOARD, reason="tensorboard is installed here")
def test_tensorboard_without_its_package_fails_naming_the_fix(recipe_config, tmp_path):
    cfg = recipe_config("sgoc_recommendation_letter", "logger.backends=[csv,tensorboard]")
    with pytest.raises(ConfigError, match="pip install tensorboard, or drop tensorboard from logger.backends"):
        validate_config(cfg, method="sgoc")
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        Experiment(method="sgoc", task="t", seed=0, config={}, backends=("tensorboard",), run_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was written


@pytest.mark.skipif(not TENSORBOARD, reason="tensorboard is not installed")
def test_tensorboard_backend_writes_event_files(tmp_path):
    with Experiment(method="sgoc", task="t", seed=0, config={}, backends=("csv", "tensorboard"), run_dir=tmp_path) as exp:
        exp.log({"loss": 1.0}, step=0)
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))


def test_backends_choose_the_loggers(tmp_path):
    with Experiment(method="sgoc", task="t", seed=0, config={}, backends=(), run_dir=tmp_path / "none") as exp:
        exp.log({"loss": 1.0}, step=0)
        assert exp.loggers == []
    assert not (tmp_path / "none" / "csv").exists()
    with Experiment(method="sgoc", task="t", seed=0, config={}, backends=["csv"], run_dir=tmp_path / "csv") as exp:
        exp.log({"loss": 1.0}, step=0)
        assert [type(lg).__name__ for lg in exp.loggers] == ["CSVLogger"]
    assert (tmp_path / "csv" / "csv" / "scalars" / "loss.csv").read_text().strip() == "0,1.0"
