"""Run bookkeeping shared by every recipe: run directory, names, loggers, summary.

Typical use inside a recipe::

    with Experiment(method="a2c", task="persuasion", seed=cfg.seed, config=cfg) as exp:
        pbar = exp.progress(total=cfg.iterations, desc=exp.run_name)
        for it in range(cfg.iterations):
            ...
            if it % cfg.log_every == 0:
                exp.log({"loss": loss.detach(), "reward": reward.mean()}, step=it)
                exp.update_progress(cfg.log_every, {"reward": exp.last_metrics["reward"]})
        exp.finish({"final_reward": reward.mean()})   # last printed line: "summary: <path>"

Files written in ``exp.run_dir``:

* ``config.yaml`` / ``config.json`` -- the run's configuration;
* ``csv/scalars/<metric>.csv`` -- one ``step,value`` line per logged value when ``"csv"`` is one
  of the backends (TorchRL's :class:`~torchrl.record.loggers.CSVLogger`; flushed on every write,
  so the logs survive a crash);
* ``wandb/`` -- the W&B run (offline by default) when ``"wandb"`` is one of the backends;
* ``tensorboard/<run_name>/`` -- TensorBoard's event files when ``"tensorboard"`` is one of them;
* ``summary.json`` -- written by :meth:`Experiment.write_summary` / :meth:`Experiment.finish`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Sequence

import torch
from torchrl.record.loggers import CSVLogger, TensorboardLogger

from msgzoo.runtime.config_validation import check_logger_backends, check_resume, method_config, validate_config
from msgzoo.training.config_schema import fail

__all__ = ["Experiment", "config_hash", "config_seeds", "config_to_dict", "seeds_summary", "to_jsonable"]

#: Top-level config keys that do not change *what* is trained, so they are left
#: out of the config hash (all seeds of one configuration share a hash/group).
HASH_EXCLUDED_KEYS = ("seed", "num_seeds", "run_dir", "resume", "resume_override", "logger")

#: Sub-directory of the run dir (``exp_name`` of the CSVLogger) holding the CSV logs.
CSV_SUBDIR = "csv"
#: Sub-directory of the run dir holding TensorBoard's event files (in ``<run_name>/``).
TENSORBOARD_SUBDIR = "tensorboard"
#: How messages name each logger backend.
BACKEND_NAMES = {"csv": "CSV logs", "wandb": "W&B", "tensorboard": "TensorBoard"}


def start_run(cfg: Any, method: str) -> list[int] | None:
    """What every recipe does before it builds anything: checks ``cfg`` against ``method``'s schema (a typo fails
    before anything runs) and a ``resume=`` checkpoint against ``cfg``, sets torch's threads (``threads``) and seed;
    returns the seeds trained together (:func:`config_seeds`: None for one seed)."""
    if cfg.get("method", method) != method:
        fail("method", cfg.method, f"{method!r}, the method this recipe trains",
             f"run recipes/{cfg.method}_<task>.py instead, or drop the method= override")
    validate_config(cfg, method=method)
    check_resume(cfg)
    torch.set_num_threads(int(cfg.get("threads", 1)))
    torch.manual_seed(cfg.seed)
    return config_seeds(cfg)


def config_seeds(cfg: Any) -> list[int] | None:
    """The seeds a recipe's config trains together: ``[seed, ..., seed + num_seeds - 1]``; None for one seed."""
    n = int(cfg.get("num_seeds", 1) or 1)
    return None if n == 1 else list(range(int(cfg.seed), int(cfg.seed) + n))


def seeds_summary(runs: list[dict], *, keys: tuple[str, ...], **extra: Any) -> dict:
    """The summary of a multi-seed run: each seed's summary path, and mean / std / min / max of ``keys``."""
    import statistics

    out: dict[str, Any] = dict(extra)
    out["seeds"] = [r["seed"] for r in runs]
    out["num_seeds"] = len(runs)
    for key in keys:
        values = [float(r[key]) for r in runs if r.get(key) is not None]
        if values:
            out[key] = {
                "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values), "max": max(values), "per_seed": values,
            }
    out["seed_summaries"] = [r["summary_path"] for r in runs]
    return out


def config_to_dict(config: Any) -> dict:
    """Return ``config`` (a dict, an OmegaConf ``DictConfig`` or a dataclass) as a plain dict."""
    if config is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return {k: _container(v) for k, v in config.items()}
    raise TypeError(f"config must be a mapping, a DictConfig or a dataclass, got {type(config)!r}")


def _container(value: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Mapping):
        return {k: _container(v) for k, v in value.items()}
    return value


def to_jsonable(obj: Any) -> Any:
    """Recursively convert ``obj`` to JSON-serializable Python objects.

    Tensors and numpy arrays become (nested) lists (0-d ones become scalars), numpy
    scalars become Python scalars, paths become strings, tuples/sets become lists,
    dataclasses become dicts. Anything else unknown becomes ``str(obj)``.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    try:
        import numpy as np

        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    try:
        from omegaconf import DictConfig, ListConfig

        if isinstance(obj, (DictConfig, ListConfig)):
            return to_jsonable(_container(obj))
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def config_hash(config: Any, method: str | None = None) -> str:
    """First 8 hex digits of the sha1 of the JSON-dumped config (sorted keys).

    The top-level keys in :data:`HASH_EXCLUDED_KEYS` (``seed``, ``run_dir``,
    ``resume``, ``logger``) are removed first, so every seed of one configuration
    gets the same hash; so are the fields only other methods than ``method`` read
    (:func:`~msgzoo.runtime.config_validation.method_config`): a change to
    ``loss.lagrange_multiplier`` changes SGOC's hash, not SG's.
    """
    cfg = {k: v for k, v in method_config(config_to_dict(config), method).items() if k not in HASH_EXCLUDED_KEYS}
    blob = json.dumps(to_jsonable(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:8]


def _hydra_output_dir() -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return str(HydraConfig.get().runtime.output_dir)
    except Exception:  # hydra missing, or no runtime info
        return None
    return None


def _scalar(value: Any) -> float | None:
    """A Python number for ``value``, or ``None`` if it is not a scalar."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        return value.item()
    if isinstance(value, (bool, int, float)):
        return value
    try:
        return float(value)  # numpy scalars, 1-element arrays, ...
    except (TypeError, ValueError):
        return None


def _fmt3(value: Any) -> str:
    v = _scalar(value)
    if v is None:
        return str(value)
    if isinstance(v, bool) or (isinstance(v, int) and abs(v) < 1000):
        return str(v)
    return f"{v:.3g}"


class Experiment:
    """One training run's outputs: run directory, loggers, progress bar and summary.

    Args:
        method: algorithm name (e.g. ``"a2c"``).
        task: task / environment name.
        seed: the run's seed.
        config: the full run config (dict, Hydra ``DictConfig`` or dataclass).
        run_dir: output directory. If ``None``: Hydra's runtime output dir when a Hydra
            run is active, else ``./runs/<run_name>``. Created if needed.
        wandb_mode: ``"offline"`` (default), ``"online"`` or ``"disabled"``.
        wandb_project: W&B project.
        backends: TorchRL's loggers to write to, drawn from ``"csv"``, ``"wandb"``,
            ``"tensorboard"`` (``logger.backends`` of a recipe). W&B problems (import,
            start, logging) never stop the run: they are reported by a single warning
            and the run goes on with the other backends. A missing tensorboard package
            fails at once (:func:`~msgzoo.runtime.config_validation.check_logger_backends`).

    Attributes:
        run_name: ``f"{method}_{task}_s{seed}_{config_hash}"``.
        group: ``f"{method}_{task}_{config_hash}"`` (all seeds of one config).
        tags: ``[method, task, f"seed={seed}", f"config={config_hash}"]``.
        config_hash: see :func:`config_hash` (of ``method``'s fields).
        run_dir: absolute :class:`~pathlib.Path` of the run directory.
        config: the config as a plain dict.
        loggers: the active TorchRL loggers, in the order of ``backends`` (W&B only if it started).
        last_metrics: the last metrics passed to :meth:`log` (as Python numbers).

    Use it as a context manager: if the body raises, the loggers are still closed
    (CSV files flushed and closed, W&B run finished with a non-zero exit code)
    and the exception propagates.
    """

    def __init__(
        self,
        *,
        method: str,
        task: str,
        seed: int,
        config: Any,
        run_dir: str | os.PathLike | None = None,
        wandb_mode: str = "offline",
        wandb_project: str = "msgzoo",
        backends: Sequence[str] = ("csv",),
        num_seeds: int = 1,
    ) -> None:
        backends = check_logger_backends(backends)
        self.method = str(method)
        self.task = str(task)
        self.seed = int(seed)
        self.config = config_to_dict(config)
        self.config_hash = config_hash(self.config, self.method)
        # several seeds trained together (seeds seed .. seed + num_seeds - 1): one run for all of them
        seeds = f"s{self.seed}" if num_seeds == 1 else f"s{self.seed}-{self.seed + int(num_seeds) - 1}"
        self.run_name = f"{self.method}_{self.task}_{seeds}_{self.config_hash}"
        self.group = f"{self.method}_{self.task}_{self.config_hash}"
        self.tags = [self.method, self.task, f"seed={seeds[1:]}", f"config={self.config_hash}"]

        if run_dir is None:
            run_dir = _hydra_output_dir() or os.path.join("runs", self.run_name)
        self.run_dir = Path(run_dir).expanduser().resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()

        self.last_metrics: dict[str, float] = {}
        self._pbar = None
        self._closed = False
        self._finished = False
        self._skipped_keys: set[str] = set()

        scalars = self.run_dir / CSV_SUBDIR / "scalars"
        if scalars.is_dir() and any(scalars.rglob("*.csv")):
            warnings.warn(
                f"{scalars} already holds CSV logs: new values are appended to them "
                "(expected when resuming; otherwise use a fresh run_dir)",
                RuntimeWarning,
                stacklevel=2,
            )
        # TorchRL's loggers, one per backend; scalars go to each (W&B may drop out, see _wandb_failed)
        self._loggers: dict[str, Any] = {}
        for backend in backends:
            if backend == "csv":
                self._loggers["csv"] = CSVLogger(exp_name=CSV_SUBDIR, log_dir=str(self.run_dir))
            elif backend == "tensorboard":
                self._loggers["tensorboard"] = TensorboardLogger(exp_name=self.run_name,
                                                                 log_dir=str(self.run_dir / TENSORBOARD_SUBDIR))
            elif wandb_mode != "disabled":
                wandb_logger = self._start_wandb(wandb_mode, wandb_project)
                if wandb_logger is not None:
                    self._loggers["wandb"] = wandb_logger

    # ------------------------------------------------------------------ setup
    @classmethod
    def from_config(cls, cfg: Any, method: str) -> Experiment:
        """The run of a recipe's config: its task, seed(s) (``seed``, ``num_seeds``), optional ``run_dir`` and
        ``logger`` section."""
        logger = cfg.logger
        return cls(
            method=method, task=cfg.task, seed=cfg.seed, config=cfg, run_dir=cfg.get("run_dir"),
            backends=tuple(logger.backends), wandb_mode=logger.wandb_mode, wandb_project=logger.project,
            num_seeds=int(cfg.get("num_seeds", 1) or 1),
        )

    def seed_runs(self, cfg: Any, method: str) -> list["Experiment"]:
        """One run per seed of a multi-seed config, in ``<run_dir>/seed<k>``, named, grouped and configured as
        separate runs with ``seed=k`` would be (CSV logs only, if this run writes them: W&B and TensorBoard log
        the seeds' curves in this run)."""
        from omegaconf import OmegaConf

        runs = []
        for k in range(self.seed, self.seed + int(cfg.get("num_seeds", 1) or 1)):
            seed_cfg = OmegaConf.merge(cfg, {"seed": k, "num_seeds": 1})
            runs.append(type(self)(
                method=method, task=cfg.task, seed=k, config=seed_cfg, run_dir=self.run_dir / f"seed{k}",
                backends=[b for b in self._loggers if b == "csv"],
            ))
        return runs

    def _write_config(self) -> None:
        cfg = to_jsonable(self.config)
        (self.run_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=False) + "\n")
        try:
            from omegaconf import OmegaConf

            text = OmegaConf.to_yaml(OmegaConf.create(cfg))
        except Exception:  # pragma: no cover - fall back to JSON, which is valid YAML
            text = json.dumps(cfg, indent=2) + "\n"
        (self.run_dir / "config.yaml").write_text(text)

    def _start_wandb(self, mode: str, project: str):
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            from torchrl.record.loggers.wandb import WandbLogger

            # mode is passed to wandb.init directly (offline=False avoids TorchRL
            # setting WANDB_MODE=dryrun process-wide).
            return WandbLogger(
                exp_name=self.run_name,
                offline=False,
                save_dir=str(self.run_dir),
                project=project,
                group=self.group,
                tags=list(self.tags),
                config=to_jsonable(self.config),
                mode=mode,
            )
        except Exception as err:  # ImportError, wandb.Error, network errors, ...
            self._wandb_failed("could not start", err)
            return None

    def _wandb_failed(self, what: str, err: BaseException) -> None:
        """Warn once, then drop W&B and keep going with the other backends."""
        logger = self._loggers.pop("wandb", None)
        warnings.warn(
            f"wandb {what} ({type(err).__name__}: {err}); W&B logging is disabled for "
            f"this run, which continues with {', '.join(BACKEND_NAMES[b] for b in self._loggers) or 'no loggers'} "
            f"in {self.run_dir}",
            RuntimeWarning,
            stacklevel=3,
        )
        if logger is not None:
            try:
                logger.experiment.finish(exit_code=1)
            except Exception:
                pass

    @property
    def loggers(self) -> list:
        return list(self._loggers.values())

    @property
    def csv_logger(self) -> CSVLogger | None:
        return self._loggers.get("csv")

    @property
    def wandb_logger(self):
        return self._loggers.get("wandb")

    # ---------------------------------------------------------------- logging
    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log scalar ``metrics`` at ``step`` to every logger.

        Values may be Python numbers, numpy scalars or one-element tensors (converted
        with ``.item()``, i.e. one host sync per value -- call this every N
        iterations, not every iteration). Non-scalar values are skipped with a
        warning (once per key). ``last_metrics`` is replaced by these values.
        """
        step = int(step)
        values: dict[str, float] = {}
        for name, value in metrics.items():
            v = _scalar(value)
            if v is None:
                if name not in self._skipped_keys:
                    self._skipped_keys.add(name)
                    warnings.warn(
                        f"Experiment.log: metric {name!r} is not a scalar "
                        f"({type(value).__name__}); it is not logged",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                continue
            values[str(name)] = v
        self.last_metrics = values
        if not values:
            return
        for backend, logger in list(self._loggers.items()):
            if backend != "wandb":
                for name, v in values.items():
                    logger.log_scalar(name, v, step=step)
                continue
            try:
                logger.log_metrics(values, step=step)
            except Exception as err:
                self._wandb_failed("failed while logging", err)

    # --------------------------------------------------------------- progress
    def progress(self, total: int, desc: str | None = None):
        """Create (and return) the run's tqdm progress bar (written to stderr)."""
        from tqdm.auto import tqdm

        if self._pbar is not None:
            self._pbar.close()
        self._pbar = tqdm(
            total=total, desc=desc or self.run_name, mininterval=1.0, dynamic_ncols=True
        )
        return self._pbar

    def update_progress(self, n: int = 1, metrics: Mapping[str, Any] | None = None) -> None:
        """Advance the progress bar by ``n`` and show ``metrics`` (3 significant figures).

        Pass only a few numbers; tensors are converted with ``.item()`` (host sync).
        """
        if self._pbar is None:
            return
        if metrics:
            self._pbar.set_postfix({k: _fmt3(v) for k, v in metrics.items()}, refresh=False)
        self._pbar.update(n)

    def close_progress(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    # ---------------------------------------------------------------- summary
    def write_summary(self, summary: Mapping[str, Any] | None = None, *, filename: str = "summary.json") -> Path:
        """Write ``summary.json`` (indent 2) into the run dir and return its absolute path.

        The run's identity (``run_name``, ``group``, ``tags``, ``config_hash``,
        ``run_dir``, ``method``, ``task``, ``seed``) is added; tensors become lists
        and numpy values Python ones.
        """
        out = dict(to_jsonable(dict(summary or {})))
        out.update(
            run_name=self.run_name,
            group=self.group,
            tags=list(self.tags),
            config_hash=self.config_hash,
            run_dir=str(self.run_dir),
            method=self.method,
            task=self.task,
            seed=self.seed,
        )
        path = self.run_dir / filename
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        os.replace(tmp, path)
        return path.resolve()

    def finish(self, summary: Mapping[str, Any] | None = None, *, filename: str = "summary.json") -> Path:
        """End the run: write the summary, close the loggers and progress bar.

        If ``summary`` has no ``"last_metrics"`` key, :attr:`last_metrics` is stored
        under it; without a ``"status"`` the run is ``"complete"`` (others: ``"interrupted"``,
        ``"failed"``, which :mod:`msgzoo.report` leaves out). Prints ``summary: <absolute path of summary.json>`` as the last
        line (stdout, flushed) and returns that path.
        """
        self.close_progress()
        summary = dict(summary or {})
        summary.setdefault("status", "complete")
        summary.setdefault("last_metrics", dict(self.last_metrics))
        path = self.write_summary(summary, filename=filename)
        self.close()
        self._finished = True
        sys.stderr.flush()
        print(f"summary: {path}", flush=True)
        return path

    def close(self, exit_code: int = 0) -> None:
        """Close the progress bar and loggers (idempotent). Never raises for W&B."""
        if self._closed:
            return
        self._closed = True
        self.close_progress()
        if self.csv_logger is not None:
            # CSV: every write is already flushed; close the files for good measure.
            files = getattr(self.csv_logger.experiment, "files", {})
            for fd in list(files.values()):
                try:
                    fd.flush()
                    fd.close()
                except Exception:
                    pass
            files.clear()
        if "tensorboard" in self._loggers:
            self._loggers["tensorboard"].experiment.close()  # SummaryWriter: flush the event files
        logger = self._loggers.pop("wandb", None)
        if logger is not None:
            try:
                logger.experiment.finish(exit_code=exit_code)
            except Exception as err:
                warnings.warn(
                    f"wandb could not finish cleanly ({type(err).__name__}: {err}); "
                    f"the other logs are in {self.run_dir}",
                    RuntimeWarning,
                    stacklevel=2,
                )

    # -------------------------------------------------------- context manager
    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None and not self._finished:
            # a summary a report can tell from a finished run's (a stale one from an earlier session is replaced)
            status = "interrupted" if issubclass(exc_type, (KeyboardInterrupt, SystemExit)) else "failed"
            try:
                self.write_summary({"status": status, "error": f"{exc_type.__name__}: {exc}",
                                    "last_metrics": dict(self.last_metrics)})
            except OSError:  # e.g. the disk is full: the original error matters more
                pass
        self.close(exit_code=0 if exc_type is None else 1)
        return False

    def __repr__(self) -> str:
        return f"Experiment(run_name={self.run_name!r}, run_dir={str(self.run_dir)!r})"
