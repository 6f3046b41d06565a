"""Encoders for grid observations and one-hot vectors, the bodies of every msgzoo network."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _mlp(in_features: int, hidden: Sequence[int], out_features: int, *, bias: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width, bias=bias), nn.ReLU()]
        in_features = width
    layers.append(nn.Linear(in_features, out_features, bias=bias))
    return nn.Sequential(*layers)


class VectorNet(nn.Module):
    """An MLP over a flat vector (one-hot states or messages). ``hidden=()`` is a single linear map.

    The reference Recommendation Letter nets are bias-free linear maps: ``VectorNet(n, m, bias=False)``.
    """

    def __init__(self, in_features: int, out_features: int, *, hidden: Sequence[int] = (), bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.net = _mlp(in_features, hidden, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GridNet(nn.Module):
    """One conv layer over ``[C, H, W]`` grids, then an MLP (the reference: 3 filters, kernel 5, same
    padding, two hidden layers of 32, ReLU). Any leading batch dimensions are accepted."""

    def __init__(
        self,
        in_channels: int,
        height: int,
        width: int,
        out_features: int,
        *,
        conv_channels: int = 3,
        kernel_size: int = 5,
        hidden: Sequence[int] = (32, 32),
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size={kernel_size} is invalid: expected an odd size ('same' padding).")
        self.in_channels, self.height, self.width = in_channels, height, width
        self.conv = nn.Conv2d(in_channels, conv_channels, kernel_size, padding=kernel_size // 2)
        self.head = _mlp(conv_channels * height * width, hidden, out_features)
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-3]
        h = torch.relu(self.conv(x.reshape(-1, *x.shape[-3:])))
        return self.head(h.flatten(1)).reshape(*batch, self.out_features)


class ObservationMessageNet(nn.Module):
    """Reads the receiver's own observation and the message together.

    For grids, the message (one-hot over the ``H*W`` cells) becomes one more channel of the observation
    ``[C, H, W]``; for vectors the two are concatenated. ``body`` maps the result to the output.
    """

    def __init__(self, body: nn.Module, *, grid_shape: tuple[int, int] | None = None):
        super().__init__()
        self.body, self.grid_shape = body, grid_shape

    def forward(self, observation: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        if self.grid_shape is not None:
            message = message.reshape(*message.shape[:-1], 1, *self.grid_shape)
            return self.body(torch.cat([observation, message.to(observation.dtype)], dim=-3))
        return self.body(torch.cat([observation, message.to(observation.dtype)], dim=-1))
