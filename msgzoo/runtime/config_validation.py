"""Checks a recipe's config before anything is built: every error names the field, the value and a fix.

Hydra composes the YAML; this module checks it against the typed schemas (the task's here: :class:`OneStepConfig`,
:class:`ReachingGoalsConfig`; the method's beside its spec: :attr:`~msgzoo.training.methods.MethodSpec.config`):
unknown keys, types (a word for a boolean) and ranges (a learning rate of 0, a discount of 1.5, an unknown obedience
mode), then the cross-field checks a typo can break (a receiver that would read nothing, a CUDA device on a machine
without one, a map too large for memory). It runs in the pipelines before the environment is made, so a week of
sweeps is not lost to a typo found hours in. A run is what its task and method read: :func:`method_config` is the
config less the fields only other methods read, which the config hash and the resume check cover.
"""
from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from msgzoo.training.config_schema import (
    ConfigError,
    fail as _fail,
    merge_fields,
    non_negative,
    number,
    one_of,
    positive,
    positive_int,
    schema_fields,
    setting,
    under,
)
from msgzoo.objectives.obedience import DUAL_MODES
from msgzoo.training.methods import METHOD_SPECS, METHODS, method_spec
from msgzoo.training.payoff_normalization import PAYOFF_NORMALIZATIONS


#: Fields a resumed run may change freely: where and how it logs, runs and is evaluated, and its budget
#: (a finished run resumed with a larger budget continues).
RESUME_FREE = ("resume", "resume_override", "run_dir", "logger", "device", "threads", "figures", "eval",
               "collector.total_frames", "collector.total_episodes")
#: Fields ``resume_override=[...]`` may change: hyperparameters whose new values replace the checkpoint's.
#: Everything else (method, task, seed, env, network, num_seeds, DIAL's exploration) shapes the networks, the
#: game or the random streams the checkpoint continues, so it cannot change on resume.
RESUME_OVERRIDABLE = ("optim", "loss", "dial.lr")
#: Fields added to the recipes' configs after checkpoints were made: a checkpoint whose config has the section but
#: not the field ran with this value (what the code did before the field existed).
ADDED_FIELDS = {"optim.epochs": 1, "optim.minibatches": 1, "optim.adam_beta2": 0.999,
                "loss.receiver_gradient": "sampled", "network.receiver_recommendation_logit": 0.0,
                "loss.sender_gradient": "sampled", "loss.obedience_smoothing": 0.0,
                "loss.lagrange_multiplier_final": None, "loss.obedience_recommendation_weight": None,
                "optim.lr_final_fraction": None, "loss.obedience_allowance": "fixed",
                "loss.obedience_firing_rate_decay": 0.99, "env.payoff_normalization": "none"}
_MISSING = "<absent>"


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def check_resume_override(overrides: Any) -> list[str]:
    """``resume_override`` as a list of field names that may be overridden on resume (else :class:`ConfigError`)."""
    if overrides is None:
        return []
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        _fail("resume_override", overrides, "a list of config fields", "write resume_override=[optim.signaling_lr].")
    for field in overrides:
        if not under(field, RESUME_OVERRIDABLE):
            _fail("resume_override", list(overrides), f"fields under {list(RESUME_OVERRIDABLE)} ({field!r} is not: "
                  "it shapes the networks, the game or the random streams the checkpoint continues)",
                  "start a new run for a different method, task, seed, env or network.")
    return list(overrides)


def check_resume_config(
    saved: Any, current: Any, overrides: Sequence[str] = (), *, checkpoint: Any = "", method: str | None = None
) -> list[str]:
    """Refuses to resume a checkpoint made with another config.

    ``saved`` is the config the checkpoint recorded, ``current`` the resumed run's (plain dicts), both compared as
    :func:`method_config` of ``method`` (default: the configs' ``method`` field): a field only other methods read is
    irrelevant. Fields in :data:`RESUME_FREE` may differ; fields under ``overrides`` (within
    :data:`RESUME_OVERRIDABLE`) may differ and take the current value. Any other difference raises
    :class:`ConfigError` listing every changed field with both values. Returns the overridden fields that did change.
    """
    overrides = check_resume_override(list(overrides))
    if saved is None:
        raise ConfigError(f"checkpoint {checkpoint} records no config: it cannot be checked against this run's, "
                          "so it is not resumed. Fix: start a new run.")
    method = method or current.get("method") or saved.get("method")
    old, new = _flatten(method_config(saved, method)), _flatten(method_config(current, method))
    for field, value in ADDED_FIELDS.items():  # only where the method reads the field (its config has it)
        if field in new and any(k.startswith(field.rsplit(".", 1)[0] + ".") for k in old):
            old.setdefault(field, value)
    changed = sorted(k for k in old.keys() | new.keys()
                     if not under(k, RESUME_FREE) and old.get(k, _MISSING) != new.get(k, _MISSING))
    refused = [k for k in changed if not under(k, overrides)]
    if refused:
        lines = "\n".join(f"  {k}: checkpoint {old.get(k, _MISSING)!r}, now {new.get(k, _MISSING)!r}" for k in refused)
        allowed = [k for k in refused if under(k, RESUME_OVERRIDABLE)]
        fix = (f"resume with the checkpoint's values, or allow the change with "
               f"resume_override=[{','.join(allowed)}]" if allowed else "resume with the checkpoint's values")
        raise ConfigError(
            f"resume={checkpoint} was made with a different config; {len(refused)} field(s) differ:\n{lines}\n"
            f"Fix: {fix}" + ("" if len(allowed) == len(refused) else
                             " (method, task, seed, env, network and num_seeds cannot change: start a new run)") + "."
        )
    return changed


def check_resume(cfg: DictConfig) -> None:
    """Refuses ``resume=`` a checkpoint that cannot be loaded safely or was made with another config, before anything
    is built or written (the pipelines call it right after :func:`validate_config`)."""
    from msgzoo.runtime.checkpoint import load_checkpoint
    from msgzoo.runtime.experiment import config_to_dict

    if not _get(cfg, "resume"):
        return
    state = load_checkpoint(cfg.resume)
    check_resume_config(state.get("config"), config_to_dict(cfg), _get(cfg, "resume_override") or (),
                        checkpoint=cfg.resume)


def _get(cfg: DictConfig, field: str) -> Any:
    return OmegaConf.select(cfg, field, default=None)


#: Largest seed: torch's generators take 64-bit seeds (the seeds trained together count up from ``seed``).
MAX_SEED = 2**63 - 1
#: Bytes per float of the largest table: the receiver's policy for every message of every sample.
_FLOAT_BYTES = 4
#: TorchRL's loggers a run may write to (``logger.backends``): :mod:`torchrl.record.loggers`.
LOGGER_BACKENDS = ("csv", "wandb", "tensorboard")
#: Fields that were renamed or replaced: setting one fails naming its replacement (nothing silently changes).
#: The YAML keeps each as ``null`` so that an old command line still reaches this check.
REMOVED_FIELDS = {
    "logger.use_wandb": ("logger.backends lists TorchRL's loggers", "write logger.backends=[csv] for CSV logs only, "
                         "logger.backends=[csv,wandb] for CSV and W&B (the default), and drop logger.use_wandb."),
}


def _seed(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED


def _matrix(v) -> bool:
    rows = list(v) if not isinstance(v, (str, bytes)) and hasattr(v, "__iter__") else None
    return bool(rows) and all(
        not isinstance(r, (str, bytes)) and hasattr(r, "__iter__") and len(r) >= 1 and all(number(x) for x in r)
        for r in rows
    )


def _backends(v) -> bool:
    return all(b in LOGGER_BACKENDS for b in v) and len(set(v)) == len(v)


def check_logger_backends(backends: Any) -> tuple[str, ...]:
    """``logger.backends`` as a tuple of names of TorchRL loggers (else :class:`ConfigError`); a backend whose
    package is missing (tensorboard) fails here, before anything runs."""
    if backends is None or isinstance(backends, str) or not _backends(backends):
        _fail("logger.backends", backends, f"a list drawn from {list(LOGGER_BACKENDS)} (no repeats)",
              "write logger.backends=[csv,wandb] (or [csv] for CSV logs only).")
    if "tensorboard" in backends and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"logger.backends={list(backends)} selects tensorboard, but the tensorboard package is not "
                          "installed (TorchRL's TensorboardLogger writes through torch.utils.tensorboard, which needs "
                          "it; msgzoo does not depend on it). Fix: pip install tensorboard, or drop tensorboard from "
                          "logger.backends.")
    return tuple(str(b) for b in backends)


# ---------------------------------------------------------------- the task schemas (the methods': methods.py)
_COUNT = dict(ok=positive_int, expected="a positive integer", example=1)


@dataclass(frozen=True)
class Network:
    hidden: list = setting(lambda v: all(positive_int(x) for x in v), "a list of positive layer widths", "[32,32]")


@dataclass(frozen=True)
class TrainerOptim:
    """What the trainer reads of ``optim`` for every method (the learning rates are the methods')."""

    max_grad: float = setting(positive, "a positive gradient clamp", 1.0)
    epochs: int = setting(positive_int, "a positive number of passes over each batch", 1)
    minibatches: int = setting(positive_int, "a positive number of minibatches per pass", 1)
    lr_final_fraction: float | None = setting(
        lambda v: 0 <= v <= 1, "a fraction in [0, 1] of each learning rate (null: constant learning rates)", 0.1
    )


@dataclass(frozen=True)
class Logger:
    backends: list = setting(_backends, f"a list drawn from {list(LOGGER_BACKENDS)} (no repeats)", "[csv,wandb]")
    log_interval: int = setting(positive_int, "a positive number of batches", 20)
    checkpoint_interval: int = setting(lambda v: v >= 0, "a number of batches >= 0 (0: only at the end)", 0)
    wandb_mode: str = setting(lambda v: v in ("offline", "online", "disabled"), "offline, online or disabled",
                              "offline")
    project: str = setting(example="msgzoo")
    use_wandb: bool | None = setting(example="null")  # removed: REMOVED_FIELDS names its replacement


@dataclass(frozen=True)
class RunConfig:
    """The fields every recipe reads, whatever its task and method."""

    method: str | None = setting(example="sgoc")
    task: str = setting(example="reaching_goals")
    seed: int = setting(_seed, f"an integer in [0, {MAX_SEED}]", 0)
    num_seeds: int | None = setting(positive_int, "a positive number of seeds trained together", 1)
    device: str = setting(expected="a torch device such as 'cpu' or 'cuda'", example="cpu")
    threads: int = setting(**_COUNT)
    resume: str | None = setting(expected="the path of an existing checkpoint.pt", example="null")
    resume_override: list | None = setting(expected="a list of config fields", example="[optim.signaling_lr]")
    figures: bool = setting(example="false")
    run_dir: str | None = setting(expected="a directory", example="null")
    network: Network
    optim: TrainerOptim
    logger: Logger


@dataclass(frozen=True)
class OneStepEnv:
    """A one-step (or Markov) persuasion game: a registered ``game``, or ``prior`` and the two utilities."""

    game: str = setting(example="recommendation_letter")
    prior: list | None = setting(expected="a list of |S| probabilities", example="[0.5,0.5]")
    sender_utility: list | None = setting(_matrix, "an |S| x |A| matrix of numbers", "[[1,0],[1,0]]")
    receiver_utility: list | None = setting(_matrix, "an |S| x |A| matrix of numbers", "[[1,0],[0,1]]")
    transition: list | None = setting(_matrix, "an |S| x |S| matrix of transition probabilities", "null")
    horizon: int | None = setting(positive_int, "a positive number of steps per episode", "null")
    num_messages: int | None = setting(
        lambda v: v >= 2, "an integer >= 2 (the receiver reads one-hot messages of this size) or null (one message "
        "per receiver action)", "null")
    sender_emission: list | None = setting(_matrix, "null or an |S| x |E| matrix E(e | s) of numbers",
                                           "[[0.8,0.2],[0.2,0.8]]")
    num_envs: int = setting(positive_int, "a positive integer (environments played in parallel)", 64)
    payoff_normalization: str = setting(one_of(PAYOFF_NORMALIZATIONS), f"one of {PAYOFF_NORMALIZATIONS}", "common")


@dataclass(frozen=True)
class OneStepCollector:
    total_frames: int = setting(positive_int, "a positive number of students (env steps)", 5000000)


@dataclass(frozen=True)
class OneStepConfig(RunConfig):
    """The one-step recipes' fields (``recommendation_letter.yaml``) every method reads."""

    env: OneStepEnv
    collector: OneStepCollector


_RECEIVER_OBSERVES = ("position", "goal")


@dataclass(frozen=True)
class ReachingGoalsEnv:
    height: int = setting(lambda v: v >= 2, "an integer >= 2 (cells)", 3)
    width: int = setting(lambda v: v >= 2, "an integer >= 2 (cells)", 3)
    horizon: int = setting(positive_int, "a positive number of steps", 50)
    reward_amplifier: float = setting(non_negative, "a finite non-negative number", 1.0)
    punish_amplifier: float = setting(non_negative, "a finite non-negative number", 1.0)
    bounded: bool = setting(example="true")
    aligned: bool = setting(example="false")
    receiver_observes: list = setting(lambda v: all(i in _RECEIVER_OBSERVES for i in v),
                                      f"a list drawn from {list(_RECEIVER_OBSERVES)}", "[position]")
    num_envs: int = setting(positive_int, "a positive integer (environments played in parallel)", 64)
    steps_per_batch: int = setting(positive_int, "a positive number of steps per env per batch", 8)


@dataclass(frozen=True)
class ReachingGoalsCollector:
    total_episodes: int | None = setting(positive_int, "a positive number of episodes", 100000)
    total_frames: int | None = setting(positive_int, "a positive number of env steps", 5000000)


@dataclass(frozen=True)
class ReachingGoalsEval:
    episodes: int | None = setting(positive_int, "a positive number of evaluation episodes", 1000)
    seed: int | None = setting(_seed, f"an integer in [0, {MAX_SEED}] (the evaluation env's seed)", 12345)


@dataclass(frozen=True)
class ReachingGoalsConfig(RunConfig):
    """The Reaching Goals recipes' fields (``reaching_goals.yaml`` and its ``map`` group) every method reads."""

    env: ReachingGoalsEnv
    collector: ReachingGoalsCollector
    eval: ReachingGoalsEval


def task_schema(cfg: Any) -> type:
    """The task schema of a composed config: Reaching Goals has a map (``env.height``), the rest are one-step."""
    return ReachingGoalsConfig if _get(cfg, "env.height") is not None else OneStepConfig


@lru_cache(maxsize=None)
def _fields_of_other_methods(method: str) -> frozenset[str]:
    every = {f for spec in METHOD_SPECS.values() for f in schema_fields(spec.config)}
    return frozenset(every - set(schema_fields(METHOD_SPECS[method].config)))


def method_config(config: Mapping, method: str | None) -> dict:
    """``config`` (a plain dict) less the fields that only other methods read: what a run of ``method`` is (its
    config hash and resume check cover this). Unknown methods and fields no method declares are kept as they are."""
    if method not in METHOD_SPECS:
        return dict(config)
    drop = _fields_of_other_methods(method)

    def prune(node: Mapping, prefix: str) -> dict:
        out = {}
        for key, value in node.items():
            name = f"{prefix}{key}"
            if name in drop:
                continue
            if isinstance(value, Mapping) and value:
                value = prune(value, name + ".")
                if not value:  # a section only other methods read (DIAL's ``dial``)
                    continue
            out[key] = value
        return out

    return prune(config, "")


def _keys(config: Any, prefix: str = "") -> set[str]:
    """Every key path of a nested mapping (a list or a value is a leaf)."""
    out = set()
    for key, value in config.items():
        name = f"{prefix}{key}"
        out.add(name)
        if isinstance(value, dict):
            out |= _keys(value, name + ".")
    return out


def known_keys(task: type) -> set[str]:
    """Every key path a config of ``task`` may hold: its fields, every method's, and their sections."""
    leaves = set(schema_fields(task)) | {f for spec in METHOD_SPECS.values() for f in schema_fields(spec.config)}
    return leaves | {leaf.rsplit(".", k)[0] for leaf in leaves for k in range(1, leaf.count(".") + 1)}


def check_known_keys(cfg: DictConfig, task: type) -> None:
    """Refuses keys no schema declares (a misspelt key added with ``+``, as Hydra suggests, would be ignored)."""
    known = known_keys(task)
    given = _keys(OmegaConf.to_container(cfg, resolve=False))
    for key in sorted(given - known):
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        if parent in given - known:
            continue  # reported through its parent
        close = difflib.get_close_matches(key, sorted(known), n=1)
        fix = f"did you mean {close[0]}? Drop the key or fix its spelling." if close else "drop the key."
        raise ConfigError(f"{key} is not a field of the recipes' config, so it would be silently ignored. Fix: {fix}")


def check_removed_fields(cfg: DictConfig) -> None:
    """Refuses a field that was replaced (:data:`REMOVED_FIELDS`), naming the replacement."""
    for field, (replacement, fix) in REMOVED_FIELDS.items():
        value = _get(cfg, field)
        if value is not None:
            raise ConfigError(f"{field}={value!r} is no longer read: {replacement}. Fix: {fix}")


def estimate_memory(cfg: DictConfig, method: str) -> int:
    """Bytes of the largest tensors a Reaching Goals run builds: the env's one-hot table (``(H W)^2`` floats) and,
    for SG/SGOC/PGOC, the receiver's hidden layer for every message of every sample of a batch (``B x H W x 3 H W``
    floats: the message is a cell, and the conv layer has 3 channels), twice (kept for the backward pass)."""
    cells = int(cfg.env.height) * int(cfg.env.width)
    table = _FLOAT_BYTES * cells * cells
    if not method_spec(method).receiver_on_every_message:
        return table
    rows = int(cfg.env.num_envs) * int(cfg.env.steps_per_batch) * int(cfg.get("num_seeds", 1) or 1)
    return max(table, 2 * _FLOAT_BYTES * rows * cells * 3 * cells)


def available_memory(device: Any) -> int | None:
    """Free bytes on ``device`` (None where it cannot be told)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.mem_get_info(dev)[0]
    try:  # Linux: MemAvailable counts the page cache the kernel would give back (free pages alone do not)
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(cfg: DictConfig, method: str, available: int | None = None) -> None:
    """Refuses a Reaching Goals config whose largest tensors cannot fit in ``available`` bytes (default: what the
    device has free now), before the env or networks are built."""
    need = estimate_memory(cfg, method)
    available = available_memory(cfg.device) if available is None else available
    if available is not None and need > available:
        h, w = cfg.env.height, cfg.env.width
        raise ConfigError(
            f"env.height={h}, env.width={w} with env.num_envs={cfg.env.num_envs} x env.steps_per_batch="
            f"{cfg.env.steps_per_batch} needs about {need / 1e9:.1f} GB for {method}, more than the "
            f"{available / 1e9:.1f} GB free on {cfg.device}. Fix: a smaller map, or fewer env.num_envs / "
            "env.steps_per_batch (the receiver is evaluated for each of the H*W messages of every sample)."
        )


def check_device(device: Any) -> None:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        _fail("device", device, "a torch device such as 'cpu' or 'cuda'", "set device=cpu or device=cuda.")
    if dev.type not in ("cpu", "cuda", "mps"):
        _fail("device", device, "cpu, cuda or mps (a device that holds data)", "set device=cpu or device=cuda.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        _fail("device", device, "a device this machine has (no CUDA GPU is visible)", "set device=cpu.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        _fail("device", device, "a device this machine has (MPS is not available)", "set device=cpu.")


def check_multiplier_schedule(cfg: DictConfig) -> None:
    """``loss.lagrange_multiplier_final`` schedules a fixed multiplier: with dual ascent (which moves each multiplier
    itself, from ``loss.lagrange_multiplier``) a schedule would be silently overwritten, so it fails."""
    final, mode = _get(cfg, "loss.lagrange_multiplier_final"), _get(cfg, "loss.obedience_mode")
    if final is not None and mode in DUAL_MODES and final != _get(cfg, "loss.lagrange_multiplier"):
        _fail("loss.lagrange_multiplier_final", final, f"null with loss.obedience_mode={mode} (dual ascent moves each "
              "multiplier itself, from loss.lagrange_multiplier)",
              "set loss.lagrange_multiplier_final=null, or loss.obedience_mode=lagrangian.")


def validate_config(cfg: DictConfig, *, method: str) -> None:
    """Raises :class:`ConfigError` on the first bad field of a one-step or Reaching Goals config: a removed or
    unknown key, a field of the task's or ``method``'s schema with a wrong type or range (fields only other
    methods read are not checked), then the cross-field checks."""
    if method not in METHODS:
        _fail("method", method, f"one of {METHODS}", "run one of the recipes in recipes/ (python -m msgzoo --help).")
    task = task_schema(cfg)
    check_removed_fields(cfg)
    check_known_keys(cfg, task)
    for field, spec in merge_fields(task, method_spec(method).config).items():
        spec.check(field, _get(cfg, field))

    check_device(cfg.device)
    resume = _get(cfg, "resume")
    if resume is not None and not Path(str(resume)).is_file():
        _fail("resume", resume, "the path of an existing checkpoint.pt", "point resume= at <run_dir>/checkpoint.pt, or drop it.")
    check_resume_override(_get(cfg, "resume_override"))
    check_logger_backends(cfg.logger.backends)
    check_multiplier_schedule(cfg)
    if task is ReachingGoalsConfig:
        if cfg.collector.total_episodes is None and cfg.collector.total_frames is None:
            _fail("collector.total_episodes", None, "a budget", "set collector.total_episodes=100000.")
        if cfg.env.num_envs % cfg.optim.minibatches:
            _fail("optim.minibatches", cfg.optim.minibatches, f"a divisor of env.num_envs={cfg.env.num_envs} (each "
                  "minibatch takes an equal share of the batch's environments)", "set optim.minibatches=1, 2, 4, ...")
        check_memory(cfg, method)  # last: it reads the (now checked) map and batch sizes
        return
    # one-step persuasion: the env checks the rest (one row per state, rows that are distributions)
    prior, us, ur = (_get(cfg, f"env.{f}") for f in ("prior", "sender_utility", "receiver_utility"))
    if prior is not None and (us is None or ur is None):
        _fail("env.sender_utility" if us is None else "env.receiver_utility", None,
              "both utility matrices when env.prior is given", "give env.sender_utility=[[..]] and env.receiver_utility=[[..]].")
    if prior is None:
        from msgzoo.envs.persuasion_games import MARKOV_GAMES, ONE_STEP_GAMES

        game = _get(cfg, "env.game")
        if game not in ONE_STEP_GAMES and game not in MARKOV_GAMES:
            _fail("env.game", game, f"one of {sorted(ONE_STEP_GAMES | MARKOV_GAMES)}", "pick a registered game or give env.prior and the utilities.")
