"""Softmax and log-softmax over a short last dimension (a scheme's messages, a receiver's actions), fast on CPU.

``torch.softmax`` / ``torch.log_softmax`` over a last dimension of 2-5 entries cost 2-6x these compositions of
elementwise ops and one small reduction (``benchmarks/small_softmax_cost.py``; in the one-step loop's profile,
``benchmarks/training_throughput.py --profile-loop``, softmax was the most expensive op). The values agree with torch's to a few float ulps; the gradients are the same
functions (the shift by the row maximum is detached: softmax does not depend on it).
"""
from __future__ import annotations

import torch

__all__ = ["log_softmax", "softmax"]


def _shifted(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` less each row's maximum (detached), so ``exp`` cannot overflow."""
    return logits - logits.detach().amax(-1, keepdim=True)


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(logits, -1)``, to a few ulps."""
    e = _shifted(logits).exp()
    return e / e.sum(-1, keepdim=True)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``torch.log_softmax(logits, -1)``, to a few ulps."""
    shifted = _shifted(logits)
    return shifted - shifted.exp().sum(-1, keepdim=True).log()
