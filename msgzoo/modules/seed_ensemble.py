"""Many independent copies of one network, one per seed, evaluated in one call with ``torch.vmap``.

Training 15 seeds one after the other repeats the same small-batch work (and its per-call Python overhead) 15
times. :class:`SeedEnsemble` stacks the seeds' parameters along a leading seed dimension and evaluates every seed's
network on its own slice of the input in one vectorised call (PyTorch's model-ensembling recipe:
``torch.func.stack_module_state`` + ``functional_call`` under ``torch.vmap``). Where the member's architecture has an
every-seed path of its own (a method ``<name>_stacked(params, *inputs)``, e.g. :class:`~msgzoo.modules.VectorNet`'s:
one ``bmm`` per layer from the stacked parameters, the same numbers as vmap bit for bit), that path runs instead and
saves vmap's per-call cost; it returns None where it does not apply, and vmap runs. Seeds stay independent: seed ``i``'s
output depends only on seed ``i``'s parameters and input slice, so the gradient of a sum of per-seed losses with
respect to seed ``i``'s slice of the stacked parameters is exactly seed ``i``'s own gradient.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

__all__ = ["SeedEnsemble", "seed_members", "num_seeds_of"]


class _MethodCall(nn.Module):
    """Calls ``base.<name>(*args)``: lets ``functional_call`` reach methods other than ``forward``."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def forward(self, name: str, *args):
        return getattr(self.base, name)(*args)


class SeedEnsemble(nn.Module):
    """``len(modules)`` copies of one architecture, their parameters stacked along a new leading dimension.

    ``ensemble(x)`` expects every tensor argument with the seed dimension first (``[S, *batch, *event]``) and
    returns ``[S, *batch, *out]``: row ``i`` is ``modules[i](x[i])``. Non-tensor arguments (e.g. sizes) are
    passed unchanged. The stacked parameters are ordinary :class:`~torch.nn.Parameter` s (names: the
    member's, with ``.`` replaced by ``__``), so optimizers, TorchRL's functional losses, target copies and
    ``state_dict`` treat them as usual; elementwise optimizers (Adam) and elementwise gradient clamping then
    act on each seed exactly as on a separate run.

    The members' extra methods used by msgzoo's losses (``forward_all_messages`` / ``supports_all_messages``)
    are vectorised too; :meth:`member` returns a standalone copy of one seed's network.

    Args:
        modules: the seeds' networks (same architecture, parameters only, no buffers).

    Examples:
        >>> import torch
        >>> from msgzoo.modules import VectorNet
        >>> from msgzoo.modules.seed_ensemble import SeedEnsemble
        >>> nets = [VectorNet(3, 2) for _ in range(4)]
        >>> ensemble = SeedEnsemble(nets)
        >>> x = torch.randn(4, 10, 3)
        >>> torch.allclose(ensemble(x)[2], nets[2](x[2]))
        True
    """

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__()
        modules = list(modules)
        if len(modules) < 1:
            raise ValueError("modules is empty: expected at least one network (one per seed).")
        signature = [(n, p.shape) for n, p in modules[0].named_parameters()]
        names = [n for n, _ in signature]
        for i, m in enumerate(modules):
            if type(m) is not type(modules[0]) or [(n, p.shape) for n, p in m.named_parameters()] != signature:
                raise ValueError(f"modules[{i}] differs in architecture from modules[0]: expected copies of one network.")
            if list(m.buffers()):
                raise ValueError(f"modules[{i}] has buffers: SeedEnsemble stacks parameters only.")
        params, _ = stack_module_state(modules)
        self.num_seeds = len(modules)
        self._names = {name: name.replace(".", "__") for name in names}
        for name, value in params.items():
            self.register_parameter(self._names[name], nn.Parameter(value.detach().clone()))
        # The architecture, without parameters of its own (functional_call supplies them).
        base = copy.deepcopy(modules[0]).to("meta")
        object.__setattr__(self, "_caller", _MethodCall(base))

    @property
    def base(self) -> nn.Module:
        """The members' architecture (parameters on the ``meta`` device: a template, not a network to call)."""
        return self._caller.base

    def _stacked(self) -> dict[str, torch.Tensor]:
        # getattr, not self._parameters: TorchRL's losses swap parameters in with ``to_module`` at call time
        return {f"base.{name}": getattr(self, flat) for name, flat in self._names.items()}

    def _vmapped(self, name: str, *args):
        in_dims = tuple(0 if isinstance(a, torch.Tensor) else None for a in args)
        for a, d in zip(args, in_dims):
            if d == 0 and (a.ndim == 0 or a.shape[0] != self.num_seeds):
                raise ValueError(
                    f"SeedEnsemble of {self.num_seeds} seeds got an input of shape {tuple(a.shape)}: expected the seed "
                    f"dimension first ([{self.num_seeds}, ...]); build the env with batch_size=[num_seeds, num_envs]."
                )

        # a member's own every-seed path (``<name>_stacked``, e.g. VectorNet's): same numbers, without vmap's cost
        stacked = getattr(self.base, f"{name}_stacked", None)
        if stacked is not None:
            out = stacked({member: getattr(self, flat) for member, flat in self._names.items()}, *args)
            if out is not None:
                return out

        def call(params, *xs):
            return functional_call(self._caller, params, (name, *xs))

        params = self._stacked()
        return torch.vmap(call, in_dims=(0, *in_dims))(params, *args)

    def forward(self, *args):
        return self._vmapped("forward", *args)

    # -- the fast paths of msgzoo's receiver nets (see ObservationMessageNet) --------------------------
    def supports_all_messages(self, num_messages: int) -> bool:
        return bool(getattr(self.base, "supports_all_messages", lambda k: False)(num_messages))

    def forward_all_messages(self, observation: torch.Tensor, num_messages: int) -> torch.Tensor:
        return self._vmapped("forward_all_messages", observation, num_messages)

    # -- one seed ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def member(self, index: int) -> nn.Module:
        """A standalone copy of seed ``index``'s network, with its current parameters (a copy: not trained
        further when the ensemble is)."""
        if not 0 <= index < self.num_seeds:
            raise IndexError(f"index={index} is out of range for an ensemble of {self.num_seeds} seeds.")
        net = copy.deepcopy(self.base).to_empty(device=getattr(self, next(iter(self._names.values()))).device)
        state = {name: getattr(self, flat)[index].detach().clone() for name, flat in self._names.items()}
        net.load_state_dict(state)
        return net

    def extra_repr(self) -> str:
        return f"num_seeds={self.num_seeds}, base={type(self.base).__name__}"


def num_seeds_of(module: nn.Module) -> int:
    """The number of seeds of the first :class:`SeedEnsemble` inside ``module`` (1 when there is none)."""
    for m in module.modules():
        if isinstance(m, SeedEnsemble):
            return m.num_seeds
    return 1


def seed_members(module: nn.Module, index: int, memo: dict | None = None) -> nn.Module:
    """A copy of ``module`` (any module tree, e.g. a policy) in which every :class:`SeedEnsemble` is replaced by
    its seed-``index`` member: the single-seed module one would have trained separately.

    Modules without an ensemble inside are shallow-copied (their parameters are shared, not copied); modules held
    outside ``_modules`` (e.g. a ``ProbabilisticActor``'s cached ``_det_part``) are mapped too. Pass the same
    ``memo`` dict to several calls to keep modules they share shared in the copies.
    """
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    if isinstance(module, SeedEnsemble):
        out = memo[id(module)] = module.member(index)
        return out
    out = memo[id(module)] = copy.copy(module)
    out._modules = {name: None if child is None else seed_members(child, index, memo) for name, child in module._modules.items()}
    for name, value in vars(module).items():
        if isinstance(value, nn.Module):
            out.__dict__[name] = seed_members(value, index, memo)
    return out
