"""Checkpoints, RNG state and graceful interruption for training loops.

Typical loop::

    ckpt_path = exp.run_dir / "checkpoint.pt"
    start = 0
    if cfg.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        policy.load_state_dict(state["policy"]); optim.load_state_dict(state["optim"])
        loss_module.load_state_dict(state["loss"])     # target nets, Lagrange multipliers
        set_rng_state(state["rng"], {"env": env_generator})
        start = state["iteration"] + 1

    with GracefulInterrupt() as stop:
        for it in range(start, cfg.iterations):
            ...
            if stop.requested or it % cfg.ckpt_every == 0:
                save_checkpoint(ckpt_path, {
                    "policy": policy.state_dict(), "optim": optim.state_dict(),
                    "loss": loss_module.state_dict(),
                    "rng": rng_state({"env": env_generator}),
                    "iteration": it, "log_step": log_step, "env_td": td,
                })
            if stop.requested:
                break
"""
from __future__ import annotations

import os
import random
import signal
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "GracefulInterrupt",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically save ``state`` with :func:`torch.save` and return the path.

    The state is written to ``<path>.tmp``, fsync'ed, then moved onto ``path`` with
    :func:`os.replace`, so ``path`` always holds either the previous or the new
    complete checkpoint, even if the process dies while saving.

    ``state`` typically holds ``state_dict()``\\ s of modules, optimizers and loss
    modules (target networks and Lagrange multipliers live in the loss modules'
    state dicts), :func:`rng_state`, the iteration and logger step, and any
    tensors/tensordicts (e.g. the environment's current tensordict).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: checkpoint file.
        map_location: passed to :func:`torch.load` (default ``"cpu"``, which works on
            any machine: ``module.load_state_dict`` / ``optimizer.load_state_dict``
            copy the values onto the parameters' devices; move other tensors, e.g.
            a saved env tensordict, with ``.to(device)``).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        ValueError: the file is not a readable checkpoint (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        hint = ""
        if _tmp_path(path).exists():
            hint = f" ({_tmp_path(path)} exists: a save was interrupted before completing)"
        raise FileNotFoundError(f"checkpoint not found: {path.resolve()}{hint}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise ValueError(
            f"could not read checkpoint {path.resolve()}: it is corrupt or not a "
            f"torch checkpoint ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(state, dict):
        raise ValueError(
            f"checkpoint {path.resolve()} holds a {type(state).__name__}, expected a dict"
        )
    return state


def rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Capture every random number generator state a run depends on.

    Returns a dict with the torch CPU RNG (``"torch"``), all CUDA RNGs (``"cuda"``,
    ``None`` without CUDA), numpy's global RNG (``"numpy"``), Python's ``random``
    (``"python"``) and ``generators[name].get_state()`` under ``"generators"``.
    """
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }


def set_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Restore RNG states captured by :func:`rng_state` (same ``generators`` names)."""
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        else:
            warnings.warn(
                f"checkpoint has CUDA RNG states for {len(cuda)} devices but "
                f"{torch.cuda.device_count()} are visible; CUDA RNGs not restored",
                RuntimeWarning,
                stacklevel=2,
            )
    if state.get("numpy") is not None:
        np.random.set_state(state["numpy"])
    if state.get("python") is not None:
        random.setstate(state["python"])
    saved = state.get("generators", {})
    for name, g in (generators or {}).items():
        if name not in saved:
            raise KeyError(
                f"no state for generator {name!r} in the RNG state "
                f"(it has: {sorted(saved)})"
            )
        g.set_state(saved[name].cpu())


class GracefulInterrupt:
    """Turn SIGINT/SIGTERM into a flag so a training loop can stop cleanly.

    Inside the ``with`` block the first SIGINT or SIGTERM only sets
    :attr:`requested` (and :attr:`signal_name`); the loop checks it every
    iteration, saves a checkpoint and exits normally. A second SIGINT (Ctrl-C
    again) raises :class:`KeyboardInterrupt` at once. The previous handlers are
    restored on exit. Outside the main thread signals cannot be caught: the
    context manager then does nothing (``requested`` stays ``False``).

    Example::

        with GracefulInterrupt() as stop:
            for it in range(n):
                train_step()
                if stop.requested:
                    save_checkpoint(path, state)
                    break
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = tuple(signals)
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        first = not self.requested
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        if first:
            # os.write is safe here, unlike print (which may be mid-write).
            msg = (
                f"\nreceived {self.signal_name}: stopping after this iteration "
                "(saving a checkpoint); press Ctrl-C again to abort at once\n"
            )
            try:
                os.write(2, msg.encode())
            except OSError:
                pass

    def __enter__(self) -> GracefulInterrupt:
        self.requested = False
        self.signal_name = None
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()
        return False
