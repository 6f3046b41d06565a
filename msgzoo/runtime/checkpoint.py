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
                    "iteration": it, "log_step": log_step, "env_td": td.to_dict(),
                })
            if stop.requested:
                break
"""
from __future__ import annotations

import contextlib
import os
import pickle
import random
import signal
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "GracefulInterrupt",
    "TrainingInterrupted",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


@contextlib.contextmanager
def _signals_deferred(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the body runs, then deliver them to the handlers that were installed before.

    A Ctrl-C during a checkpoint write would otherwise raise ``KeyboardInterrupt`` inside ``torch.save`` or
    the fsync and lose the checkpoint being written. Outside the main thread handlers cannot be changed (and
    signals are not delivered there): the body just runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for signum in received:  # now that the file is complete: e.g. KeyboardInterrupt from the second Ctrl-C
            signal.raise_signal(signum)


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically save ``state`` with :func:`torch.save` and return the path.

    The state is written to ``<path>.tmp``, fsync'ed, then moved onto ``path`` with
    :func:`os.replace`, so ``path`` always holds either the previous or the new
    complete checkpoint, even if the process dies while saving. SIGINT/SIGTERM
    arriving during the write are delivered once the file is in place.

    :func:`load_checkpoint` reads with ``torch.load(weights_only=True)``: keep ``state``
    to tensors and plain Python containers/scalars (dicts, lists, tuples, numbers,
    strings, ``None``); :func:`rng_state` and ``state_dict()`` of modules and
    optimizers qualify, a ``TensorDict`` does not (store ``td.to_dict()``).

    ``state`` typically holds ``state_dict()``\\ s of modules, optimizers and loss
    modules (target networks and Lagrange multipliers live in the loss modules'
    state dicts), :func:`rng_state`, the iteration and logger step, and any
    tensors/tensordicts (e.g. the environment's current tensordict).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with _signals_deferred():
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
    """Load a checkpoint written by :func:`save_checkpoint`, without running any code from the file.

    The file is read with ``torch.load(weights_only=True)``: only tensors and plain Python
    values are rebuilt, so a crafted ``checkpoint.pt`` cannot execute code; a file holding
    anything else (any pickled class or function) is refused.

    Args:
        path: checkpoint file.
        map_location: passed to :func:`torch.load` (default ``"cpu"``, which works on
            any machine: ``module.load_state_dict`` / ``optimizer.load_state_dict``
            copy the values onto the parameters' devices; move other tensors, e.g.
            a saved env tensordict, with ``.to(device)``).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        ValueError: the file is not a readable checkpoint, or holds objects other than
            tensors and plain Python values (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        hint = ""
        if _tmp_path(path).exists():
            hint = f" ({_tmp_path(path)} exists: a save was interrupted before completing)"
        raise FileNotFoundError(f"checkpoint not found: {path.resolve()}{hint}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load checkpoint {path.resolve()}: it holds objects other than tensors and plain "
            "Python values, and unpickling them could run arbitrary code. msgzoo checkpoints hold only "
            "tensors and plain values; if this file comes from an older msgzoo or another program, retrain "
            f"or convert it in a trusted session. ({str(err).splitlines()[-1][:300]})"
        ) from None
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
    (``"python"``) and ``generators[name].get_state()`` under ``"generators"``, all as
    tensors and plain Python values (a checkpoint must load with ``weights_only=True``).
    """
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {
            "kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian),
        },
        "python": random.getstate(),  # (version, tuple of ints, float or None)
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
    numpy_state = state.get("numpy")
    if numpy_state is not None:
        np.random.set_state((
            numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
            numpy_state["has_gauss"], numpy_state["cached_gaussian"],
        ))
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


class TrainingInterrupted(SystemExit):
    """A run stopped by SIGINT/SIGTERM after saving its checkpoint: exits with status ``128 + signal``.

    A :class:`SystemExit`, so it ends the process with a non-zero status (130 for SIGINT, 143 for
    SIGTERM, the shells' convention) and Hydra does not catch it: a ``-m`` sweep stops instead of
    running its next job. Callers running a pipeline in-process can catch it.
    """

    def __init__(self, signal_name: str, checkpoint: str | os.PathLike | None = None) -> None:
        super().__init__(128 + int(signal.Signals[signal_name]))
        self.signal_name = signal_name
        self.checkpoint = None if checkpoint is None else Path(checkpoint)


class GracefulInterrupt:
    """Turn SIGINT/SIGTERM into a flag so a training loop can stop cleanly.

    Inside the ``with`` block the first SIGINT or SIGTERM only sets
    :attr:`requested` (and :attr:`signal_name`); the loop checks it every
    iteration, saves a checkpoint and stops (msgzoo's pipelines then raise
    :class:`TrainingInterrupted`: a stopped run must not look finished). A second
    SIGINT (Ctrl-C again) raises :class:`KeyboardInterrupt` at once (but never
    inside :func:`save_checkpoint`, which holds it until the file is complete). The previous handlers are
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
