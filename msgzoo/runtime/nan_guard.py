"""Cheap detection of NaN/inf losses, gradients and parameters.

Call :func:`check_finite` after ``loss.backward()`` and *before*
``optimizer.step()``: at that point the parameters are still the last good ones,
so the checkpoint saved on failure can be resumed from (with a lower learning
rate, say)::

    loss_td = loss_module(batch)
    loss = loss_td["loss_actor"] + loss_td["loss_critic"]
    loss.backward()
    try:
        check_finite(loss_td, {"policy": policy, "critic": critic})
    except NonFiniteError:
        save_checkpoint(exp.run_dir / "last_good.pt", make_state())  # params not yet updated
        raise
    optim.step()
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["NonFiniteError", "check_finite"]

_HINT = (
    "Hint: lower the learning rate, clip gradients, or check the reward scale "
    "(rewards/advantages that are too large, log of zero probabilities)."
)


class NonFiniteError(FloatingPointError):
    """A loss, gradient or parameter holds NaN or inf.

    Attributes:
        what: the offender, e.g. ``"loss 'loss_signaling'"`` or
            ``"gradient of parameter 'sender.0.weight' in module 'scheme'"``.
        kind: ``"nan"`` or ``"inf"``.
    """

    def __init__(self, message: str, what: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.what = what
        self.kind = kind


def _loss_items(losses: Any) -> list[tuple[str, Tensor]]:
    try:
        from tensordict import TensorDictBase

        if isinstance(losses, TensorDictBase):
            return [
                (".".join(k) if isinstance(k, tuple) else str(k), v)
                for k, v in losses.items(include_nested=True, leaves_only=True)
                if isinstance(v, Tensor)
            ]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(losses, Tensor):
        return [("loss", losses)]
    out = []
    for k, v in losses.items():
        if not isinstance(v, Tensor):
            v = torch.as_tensor(v)
        out.append((str(k), v))
    return out


def _module_items(modules: Any) -> list[tuple[str, nn.Module]]:
    if modules is None:
        return []
    if isinstance(modules, nn.Module):
        return [("module", modules)]
    return [(str(k), m) for k, m in modules.items()]


def _describe(t: Tensor) -> tuple[str, str] | None:
    """``(kind, detail)`` if ``t`` holds non-finite values, else ``None``."""
    t = t.detach()
    if not t.is_floating_point() and not t.is_complex():
        return None
    bad = ~torch.isfinite(t)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return None
    kind = "nan" if bool(torch.isnan(t).any()) else "inf"
    detail = f" ({n_bad} of {t.numel()} elements non-finite)" if t.numel() > 1 else ""
    return kind, detail


def _raise(what: str, kind: str, detail: str) -> None:
    raise NonFiniteError(f"{what} is {kind}{detail}. {_HINT}", what=what, kind=kind)


def check_finite(
    losses: Mapping[str, Tensor] | Tensor,
    modules: Mapping[str, nn.Module] | nn.Module | None = None,
    *,
    check_grads: bool = True,
    check_params: bool = True,
) -> None:
    """Raise :class:`NonFiniteError` if a loss, gradient or parameter is NaN/inf.

    Cheap: all checks are reduced on the device into one boolean and read back
    with a single host sync (per-loss ``isfinite(...).all()`` flags, plus the total
    norms of the gradients and of the parameters computed with fused foreach
    kernels, since NaN/inf propagate into a norm). Only when that flag is false
    are the items walked, in order (losses; then for each module each parameter
    followed by its gradient), to name the first offender, e.g.
    ``"loss 'loss_signaling' is nan"`` or ``"gradient of parameter
    'sender.0.weight' in module 'scheme' is inf"``.

    Args:
        losses: name -> loss tensor (a dict or a loss module's output TensorDict;
            nested keys are joined with ``"."``), or a single tensor.
        modules: name -> module whose parameters (and gradients) are checked.
        check_grads: check the ``.grad`` of the parameters (call after ``backward``).
        check_params: check the parameter values.

    Pattern: call it after ``backward()`` and before ``optimizer.step()``; on
    :class:`NonFiniteError` the parameters are still the last good ones, so save a
    checkpoint of them and re-raise::

        try:
            check_finite(loss_td, {"scheme": scheme})
        except NonFiniteError:
            save_checkpoint(run_dir / "last_good.pt", state)
            raise
    """
    loss_items = _loss_items(losses)
    module_items = _module_items(modules)
    params = [p for _, m in module_items for p in m.parameters()] if check_params else []
    grads = (
        [p.grad for _, m in module_items for p in m.parameters() if p.grad is not None]
        if check_grads
        else []
    )

    flags = [torch.isfinite(v.detach()).all() for _, v in loss_items]
    with torch.no_grad():
        for tensors in (params, grads):
            tensors = [t.detach() for t in tensors if t.is_floating_point() and t.numel()]
            if tensors:
                flags.append(torch.isfinite(torch.nn.utils.get_total_norm(tensors)))
    if not flags:
        return
    device = flags[0].device
    if bool(torch.stack([f.to(device) for f in flags]).all()):  # the one host sync
        return

    # Slow path: name the first offender.
    for name, v in loss_items:
        found = _describe(v)
        if found:
            _raise(f"loss {name!r}", *found)
    for mod_name, module in module_items:
        for p_name, p in module.named_parameters():
            if check_params:
                found = _describe(p)
                if found:
                    _raise(f"parameter {p_name!r} in module {mod_name!r}", *found)
            if check_grads and p.grad is not None:
                found = _describe(p.grad)
                if found:
                    _raise(f"gradient of parameter {p_name!r} in module {mod_name!r}", *found)
    # Only reachable if a norm overflowed on finite (but huge, > ~1e19) values.
