"""Checks a recipe's config before anything is built: every error names the field, the value and a fix.

Hydra composes the YAML; this module is the type and range check on top of it, plus the cross-field
checks a typo can break (a learning rate of 0, a discount of 1.5, an unknown obedience mode, a
receiver that would read nothing, a CUDA device on a machine without one). It runs in the pipelines
before the environment is made, so a week of sweeps is not lost to a typo found hours in.
"""
from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from msgzoo.objectives.obedience import COUNTERFACTUALS, MARGINS, MODES
from msgzoo.training.methods import METHODS, method_spec


class ConfigError(ValueError):
    """A config field with a bad value; the message names the field, the value and the fix."""


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
ADDED_FIELDS = {"optim.epochs": 1, "optim.minibatches": 1}
_MISSING = "<absent>"


def _under(field: str, prefixes: Sequence[str]) -> bool:
    return any(field == p or field.startswith(p + ".") for p in prefixes)


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
        if not _under(field, RESUME_OVERRIDABLE):
            _fail("resume_override", list(overrides), f"fields under {list(RESUME_OVERRIDABLE)} ({field!r} is not: "
                  "it shapes the networks, the game or the random streams the checkpoint continues)",
                  "start a new run for a different method, task, seed, env or network.")
    return list(overrides)


def check_resume_config(saved: Any, current: Any, overrides: Sequence[str] = (), *, checkpoint: Any = "") -> list[str]:
    """Refuses to resume a checkpoint made with another config.

    ``saved`` is the config the checkpoint recorded, ``current`` the resumed run's (plain dicts). Fields in
    :data:`RESUME_FREE` may differ; fields under ``overrides`` (within :data:`RESUME_OVERRIDABLE`) may differ and
    take the current value. Any other difference raises :class:`ConfigError` listing every changed field with both
    values. Returns the overridden fields that did change.
    """
    overrides = check_resume_override(list(overrides))
    if saved is None:
        raise ConfigError(f"checkpoint {checkpoint} records no config: it cannot be checked against this run's, "
                          "so it is not resumed. Fix: start a new run.")
    old, new = _flatten(saved), _flatten(current)
    for field, value in ADDED_FIELDS.items():
        if any(k.startswith(field.rsplit(".", 1)[0] + ".") for k in old):
            old.setdefault(field, value)
    changed = sorted(k for k in old.keys() | new.keys()
                     if not _under(k, RESUME_FREE) and old.get(k, _MISSING) != new.get(k, _MISSING))
    refused = [k for k in changed if not _under(k, overrides)]
    if refused:
        lines = "\n".join(f"  {k}: checkpoint {old.get(k, _MISSING)!r}, now {new.get(k, _MISSING)!r}" for k in refused)
        allowed = [k for k in refused if _under(k, RESUME_OVERRIDABLE)]
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


def _fail(field: str, value: Any, expected: str, fix: str) -> None:
    raise ConfigError(f"{field}={value!r} is invalid: expected {expected}. Fix: {fix}")


def _get(cfg: DictConfig, field: str) -> Any:
    return OmegaConf.select(cfg, field, default=None)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(cfg: DictConfig, field: str, ok: Callable[[Any], bool], expected: str, example: Any, *, optional: bool = False) -> None:
    value = _get(cfg, field)
    if value is None and optional:
        return
    if value is None or not ok(value):
        _fail(field, value, expected, f"set {field}={example} (on the command line or in the recipe's YAML).")


def _matrix(v) -> bool:
    rows = list(v) if not isinstance(v, (str, bytes)) and hasattr(v, "__iter__") else None
    return bool(rows) and all(
        not isinstance(r, (str, bytes)) and hasattr(r, "__iter__") and len(r) >= 1 and all(_number(x) for x in r)
        for r in rows
    )


def _positive(v) -> bool:
    return _number(v) and v > 0


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _probability(v) -> bool:
    return _number(v) and 0 <= v <= 1


#: The recipes' YAML files: their keys are the schema a composed config is checked against.
RECIPE_CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "config"
#: Top-level keys a recipe config may carry beyond its YAML: the recipe's method, and where the run goes.
EXTRA_KEYS = ("method", "run_dir")
#: Fields read as booleans (a string such as "off" or "no" would be truthy).
BOOLEAN_FIELDS = ("figures", "env.bounded", "env.aligned", "logger.use_wandb")
#: Largest seed: torch's generators take 64-bit seeds (the seeds trained together count up from ``seed``).
MAX_SEED = 2**63 - 1
#: Bytes per float of the largest table: the receiver's policy for every message of every sample.
_FLOAT_BYTES = 4


def _seed(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEED


def _learning_rate(v) -> bool:
    return _number(v) and 0 < v <= 1  # Adam: a step of more than 1 per update is a typo (1e38 overflows in Adam)


def _keys(config: Any, prefix: str = "") -> set[str]:
    """Every key path of a nested mapping (a list or a value is a leaf)."""
    out = set()
    for key, value in config.items():
        name = f"{prefix}{key}"
        out.add(name)
        if isinstance(value, dict):
            out |= _keys(value, name + ".")
    return out


def known_keys(family: str) -> set[str] | None:
    """The key paths of ``recipes/config/<family>.yaml`` (with its map group for Reaching Goals), or None when the
    recipes are not next to the package (an installed wheel)."""
    root = RECIPE_CONFIGS
    if not (root / f"{family}.yaml").is_file():
        return None
    files = [root / f"{family}.yaml", *sorted((root / "map").glob("*.yaml"))] if family == "reaching_goals" else [
        root / f"{family}.yaml"]
    keys = set(EXTRA_KEYS)
    for f in files:
        data = OmegaConf.to_container(OmegaConf.load(f), resolve=False)
        data.pop("defaults", None)
        keys |= _keys(data)
    return keys


def check_known_keys(cfg: DictConfig, family: str) -> None:
    """Refuses keys the recipe does not read (a misspelt key added with ``+``, as Hydra suggests, would be ignored)."""
    known = known_keys(family)
    if known is None:
        return
    given = _keys(OmegaConf.to_container(cfg, resolve=False))
    for key in sorted(given - known):
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        if parent in given - known:
            continue  # reported through its parent
        close = difflib.get_close_matches(key, sorted(known), n=1)
        fix = f"did you mean {close[0]}? Drop the key or fix its spelling." if close else "drop the key."
        raise ConfigError(f"{key} is not a field of the {family} recipes, so it would be silently ignored. Fix: {fix}")


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


def _check_dial_section(cfg: DictConfig) -> None:
    _check(cfg, "dial.noise_std", lambda v: _number(v) and v >= 0, "a non-negative noise scale", 0.5)
    _check(cfg, "dial.lr", _learning_rate, "a learning rate in (0, 1]", 3e-4)
    for eps in ("dial.eps_init", "dial.eps_end"):
        _check(cfg, eps, _probability, "an exploration rate in [0, 1]", 0.05)
    _check(cfg, "dial.annealing_frames", _positive_int, "a positive number of env steps", 1000000)


#: The checks of the config sections a method declares as its own
#: (:attr:`~msgzoo.training.methods.MethodSpec.sections`).
SECTION_CHECKS: dict[str, Callable[[DictConfig], None]] = {"dial": _check_dial_section}


def validate_config(cfg: DictConfig, *, method: str) -> None:
    """Raises :class:`ConfigError` on the first bad field of a one-step or Reaching Goals config."""
    if method not in METHODS:
        _fail("method", method, f"one of {METHODS}", "run one of the recipes in recipes/ (python -m msgzoo --help).")
    reaching_goals = _get(cfg, "env.height") is not None
    check_known_keys(cfg, "reaching_goals" if reaching_goals else "recommendation_letter")
    _check(cfg, "seed", _seed, f"an integer in [0, {MAX_SEED}]", 0)
    _check(cfg, "threads", _positive_int, "a positive integer", 1)
    _check(cfg, "num_seeds", _positive_int, "a positive number of seeds trained together", 1, optional=True)
    check_device(_get(cfg, "device"))
    resume = _get(cfg, "resume")
    if resume is not None and not Path(str(resume)).is_file():
        _fail("resume", resume, "the path of an existing checkpoint.pt", "point resume= at <run_dir>/checkpoint.pt, or drop it.")
    check_resume_override(_get(cfg, "resume_override"))
    for field in BOOLEAN_FIELDS:
        _check(cfg, field, lambda v: isinstance(v, bool), "true or false (a word such as 'off' or 'no' is not "
               "read as false)", "false", optional=True)
    _check(cfg, "network.hidden", lambda v: not isinstance(v, str) and all(_positive_int(x) for x in v),
           "a list of positive layer widths", "[32,32]")

    _check(cfg, "env.num_envs", _positive_int, "a positive integer (environments played in parallel)", 64)
    if reaching_goals:
        for side in ("env.height", "env.width"):
            _check(cfg, side, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2, "an integer >= 2 (cells)", 3)
        _check(cfg, "env.horizon", _positive_int, "a positive number of steps", 50)
        _check(cfg, "env.steps_per_batch", _positive_int, "a positive number of steps per env per batch", 8)
        for amp in ("env.reward_amplifier", "env.punish_amplifier"):
            _check(cfg, amp, lambda v: _number(v) and v >= 0, "a finite non-negative number", 1.0)
        items = _get(cfg, "env.receiver_observes")
        allowed = ("position", "goal")
        if items is None or isinstance(items, str) or any(i not in allowed for i in items):
            _fail("env.receiver_observes", items, f"a list drawn from {list(allowed)}",
                  "use env.receiver_observes=[] (message only), [position] or [position,goal].")
        _check(cfg, "collector.total_episodes", _positive_int, "a positive number of episodes", 100000, optional=True)
        _check(cfg, "collector.total_frames", _positive_int, "a positive number of env steps", 5000000, optional=True)
        if _get(cfg, "collector.total_episodes") is None and _get(cfg, "collector.total_frames") is None:
            _fail("collector.total_episodes", None, "a budget", "set collector.total_episodes=100000.")
        _check(cfg, "eval.episodes", _positive_int, "a positive number of evaluation episodes", 1000, optional=True)
        _check(cfg, "eval.seed", _seed, f"an integer in [0, {MAX_SEED}] (the evaluation env's seed)", 12345,
               optional=True)
    else:  # one-step persuasion
        k = _get(cfg, "env.num_messages")
        if k is not None and not (isinstance(k, int) and not isinstance(k, bool) and k >= 2):
            _fail("env.num_messages", k, "an integer >= 2 (the receiver reads one-hot messages of this size) or null "
                  "(one message per receiver action)", "set env.num_messages=null (or an integer >= 2).")
        prior, us, ur = (_get(cfg, f"env.{f}") for f in ("prior", "sender_utility", "receiver_utility"))
        if prior is not None and (us is None or ur is None):
            _fail("env.sender_utility" if us is None else "env.receiver_utility", None,
                  "both utility matrices when env.prior is given", "give env.sender_utility=[[..]] and env.receiver_utility=[[..]].")
        if prior is None:
            from msgzoo.envs.persuasion_games import MARKOV_GAMES, ONE_STEP_GAMES

            game = _get(cfg, "env.game")
            if game not in ONE_STEP_GAMES and game not in MARKOV_GAMES:
                _fail("env.game", game, f"one of {sorted(ONE_STEP_GAMES | MARKOV_GAMES)}", "pick a registered game or give env.prior and the utilities.")
        _check(cfg, "collector.total_frames", _positive_int, "a positive number of students (env steps)", 5000000)
        # the env checks the rest (one row per state, rows that are distributions)
        _check(cfg, "env.sender_emission", _matrix, "null or an |S| x |E| matrix E(e | s) of numbers",
               "[[0.8,0.2],[0.2,0.8]]", optional=True)

    for lr in ("optim.signaling_lr", "optim.sender_critic_lr", "optim.receiver_actor_lr", "optim.receiver_critic_lr"):
        _check(cfg, lr, _learning_rate, "a learning rate in (0, 1]", 1e-3)
    _check(cfg, "optim.max_grad", _positive, "a positive gradient clamp", 1.0)
    _check(cfg, "optim.epochs", _positive_int, "a positive number of passes over each batch", 1)
    _check(cfg, "optim.minibatches", _positive_int, "a positive number of minibatches per pass", 1)
    if reaching_goals and cfg.env.num_envs % cfg.optim.minibatches:
        _fail("optim.minibatches", cfg.optim.minibatches, f"a divisor of env.num_envs={cfg.env.num_envs} (each "
              "minibatch takes an equal share of the batch's environments)", "set optim.minibatches=1, 2, 4, ...")
    for gamma in ("loss.sender_gamma", "loss.receiver_gamma"):
        _check(cfg, gamma, _probability, "a discount in [0, 1]", 0.99)
    _check(cfg, "loss.lagrange_multiplier", lambda v: _number(v) and v >= 0, "lambda >= 0", 5.0)
    _check(cfg, "loss.epsilon", _number, "a finite constraint right-hand side", 0.0)
    _check(cfg, "loss.receiver_coeff", _number, "a finite weight", 2.0)
    _check(cfg, "loss.obedience_mode", lambda v: v in MODES, f"one of {MODES}", "lagrangian")
    _check(cfg, "loss.counterfactual", lambda v: v in COUNTERFACTUALS, f"one of {COUNTERFACTUALS}", "uniform")
    _check(cfg, "loss.obedience_margin", lambda v: v in MARGINS, f"one of {MARGINS}", "posterior", optional=True)
    _check(cfg, "loss.dual_lr", _positive, "a positive dual step", 0.01)
    _check(cfg, "loss.target_tau", lambda v: _number(v) and 0 < v <= 1, "a soft-update weight in (0, 1]", 0.02)
    for coeff in ("loss.receiver_entropy_coeff", "loss.sender_entropy_coeff"):
        _check(cfg, coeff, lambda v: _number(v) and v >= 0, "a non-negative coefficient", 0.0)
    for section in method_spec(method).sections:  # the sections only this method reads
        SECTION_CHECKS[section](cfg)
    _check(cfg, "logger.log_interval", _positive_int, "a positive number of batches", 20)
    _check(cfg, "logger.checkpoint_interval", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
           "a number of batches >= 0 (0: only at the end)", 0)
    _check(cfg, "logger.wandb_mode", lambda v: v in ("offline", "online", "disabled"), "offline, online or disabled", "offline")
    if reaching_goals:
        check_memory(cfg, method)  # last: it reads the (now checked) map and batch sizes
