"""Encoders for grid observations and one-hot vectors, the bodies of every msgzoo network."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(in_features: int, hidden: Sequence[int], out_features: int, *, bias: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width, bias=bias), nn.ReLU()]
        in_features = width
    layers.append(nn.Linear(in_features, out_features, bias=bias))
    return nn.Sequential(*layers)


def run_mlp(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)`` for an :func:`_mlp` (``Linear`` and ``ReLU`` layers), calling each layer's function directly: the
    same operations, without the per-module call machinery, which costs more than these small layers (module hooks
    on the layers are not run)."""
    for layer in mlp:
        if type(layer) is nn.Linear:
            x = F.linear(x, layer.weight, layer.bias)
        elif type(layer) is nn.ReLU and not layer.inplace:
            x = torch.relu(x)
        else:
            x = layer(x)
    return x


def _stackable(mlp: nn.Sequential) -> bool:
    return all(type(layer) is nn.Linear or (type(layer) is nn.ReLU and not layer.inplace) for layer in mlp)


def _rows_per_seed(x: torch.Tensor) -> torch.Tensor:
    """``[S, *batch, in] -> [S, N, in]`` (also for ``in = 0``: an observation-free receiver)."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:-1]), x.shape[-1])


def run_mlp_stacked(
    mlp: nn.Sequential, params: Mapping[str, torch.Tensor], prefix: str, x: torch.Tensor
) -> torch.Tensor:
    """:func:`run_mlp` of ``mlp`` for ``S`` seeds at once, from parameters stacked along a leading seed
    dimension (``params[f"{prefix}{i}.weight"]``: ``[S, out, in]``) on ``x`` ``[S, N, in]``: one ``bmm`` per layer,
    the kernel ``torch.vmap`` lowers each seed's ``F.linear`` to, so the results are the same bit for bit, without
    vmap's per-call cost (tested). Only for :func:`_mlp`'s ``Linear`` / ``ReLU`` layers (see :func:`_stackable`)."""
    for i, layer in enumerate(mlp):
        if type(layer) is nn.Linear:
            x = torch.bmm(x, params[f"{prefix}{i}.weight"].transpose(1, 2))
            bias = params.get(f"{prefix}{i}.bias")
            if bias is not None:
                x = x + bias.unsqueeze(1)
        else:
            x = torch.relu(x)
    return x


class VectorNet(nn.Module):
    """An MLP over a flat vector (one-hot states or messages). ``hidden=()`` is a single linear map.

    The reference Recommendation Letter nets are bias-free linear maps: ``VectorNet(n, m, bias=False)``.
    """

    def __init__(self, in_features: int, out_features: int, *, hidden: Sequence[int] = (), bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.net = _mlp(in_features, hidden, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_mlp(self.net, x)

    def _check_one_hot_input(self, x: torch.Tensor, num_one_hot: int) -> int:
        """The features ``d`` of :meth:`forward_all_one_hot`'s input (the net's less the one-hot part), checked."""
        d, expected = x.shape[-1], self.net[0].in_features - num_one_hot
        if d != expected:
            raise ValueError(f"x has {d} features: expected {expected} (+ {num_one_hot} one-hot).")
        return d

    def forward_all_one_hot(self, x: torch.Tensor, num_one_hot: int) -> torch.Tensor:
        """``forward(cat([x, e_k]))`` for every one-hot ``e_k`` of size ``num_one_hot`` at once: ``[..., K, out]``.

        The first layer is linear, so ``W [x, e_k] + b = W_x x + W[:, k] + b``: the input part is computed once
        per row instead of once per (row, k).
        """
        first = self.net[0]
        d = self._check_one_hot_input(x, num_one_hot)
        h = torch.nn.functional.linear(x, first.weight[:, :d])  # [..., F]
        h = h.unsqueeze(-2) + first.weight[:, d:].transpose(0, 1)  # [..., K, F]
        if first.bias is not None:
            h = h + first.bias
        return run_mlp(self.net[1:], h)

    # -- SeedEnsemble's fast paths: every seed at once from stacked parameters (None: not supported, use vmap) ------
    def forward_stacked(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor | None:
        """:meth:`forward` of ``S`` seeds: ``params`` by parameter name, stacked ``[S, ...]``; ``x``
        ``[S, *batch, in]`` -> ``[S, *batch, out]``."""
        if not _stackable(self.net):
            return None
        out = run_mlp_stacked(self.net, params, "net.", _rows_per_seed(x))
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def forward_all_one_hot_stacked(
        self, params: Mapping[str, torch.Tensor], x: torch.Tensor, num_one_hot: int
    ) -> torch.Tensor | None:
        """:meth:`forward_all_one_hot` of ``S`` seeds, as :meth:`forward_stacked`: ``[S, *batch, K, out]``. Single
        linear maps only (the one-step nets): behind a hidden layer vmap's kernels round differently, so deeper nets
        keep vmap (None)."""
        if len(self.net) != 1 or type(self.net[0]) is not nn.Linear:
            return None
        d, k = self._check_one_hot_input(x, num_one_hot), num_one_hot
        weight, bias = params["net.0.weight"], params.get("net.0.bias")  # [S, out, d + K], [S, out]
        h = torch.bmm(_rows_per_seed(x), weight[:, :, :d].transpose(1, 2))  # [S, N, out]
        h = h.unsqueeze(-2) + weight[:, :, d:].transpose(1, 2).unsqueeze(1)  # [S, N, K, out]
        if bias is not None:
            h = h + bias[:, None, None, :]
        return h.reshape(*x.shape[:-1], k, h.shape[-1])


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

    #: Grids with at most this many input values (``C * H * W``) take the dense path of :meth:`forward`.
    DENSE_MAX_FEATURES = 512

    def conv_matrix(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The convolution as a dense matrix ``M`` (``[C*H*W, F*H*W]``): ``conv(x).flatten() = x.flatten() @ M +
        bias``. On small grids one matmul beats ``conv2d`` (whose per-image cost dominates at kernel 5 on 3x3).

        ``M`` is the convolution of the ``C*H*W`` basis images: each entry is one kernel weight (the one that links
        that input cell to that output cell) or zero. It is gathered from the weights with a fixed index
        (:meth:`_conv_index`), which gives the same values as convolving the basis images, bit for bit, at a fifth
        of the cost, and follows the weights and their gradient.

        ``weight``: the kernel to use instead of the conv's own, with any leading dimensions (``[S, F, C, k, k]``:
        one matrix per seed, ``[S, C*H*W, F*H*W]``)."""
        weight = self.conv.weight if weight is None else weight
        flat = weight.flatten(-4)
        padded = torch.cat([flat, flat.new_zeros(*flat.shape[:-1], 1)], dim=-1)  # the last entry: the zeros of M
        return padded[..., self._conv_index(weight.device)]

    def _conv_index(self, device: torch.device) -> torch.Tensor:
        """``[C*H*W, F*H*W]`` indices into the flat kernel (its size: a zero): entry ``((c, y, x), (f, oy, ox))``
        is kernel weight ``[f, c, y - oy + p, x - ox + p]`` (cross-correlation, padding ``p``) where that lies in the
        kernel. Built once per device (a plain attribute, not state: it follows from the shapes)."""
        cached = getattr(self, "_conv_index_cache", None)
        if cached is not None and cached.device == device:
            return cached
        c, h, w = self.in_channels, self.height, self.width
        f, k = self.conv.out_channels, self.conv.kernel_size[0]
        p = k // 2
        ci, y, x = (torch.arange(n, device=device).view(*s) for n, s in
                    ((c, (c, 1, 1, 1, 1, 1)), (h, (1, h, 1, 1, 1, 1)), (w, (1, 1, w, 1, 1, 1))))
        fo, oy, ox = (torch.arange(n, device=device).view(*s) for n, s in
                      ((f, (1, 1, 1, f, 1, 1)), (h, (1, 1, 1, 1, h, 1)), (w, (1, 1, 1, 1, 1, w))))
        ky, kx = y - oy + p, x - ox + p
        inside = (ky >= 0) & (ky < k) & (kx >= 0) & (kx < k)
        flat = ((fo * c + ci) * k + ky.clamp(0, k - 1)) * k + kx.clamp(0, k - 1)
        index = torch.where(inside, flat, f * c * k * k).reshape(c * h * w, f * h * w)
        self._conv_index_cache = index
        return index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])
        if self.in_channels * self.height * self.width <= self.DENSE_MAX_FEATURES:
            bias = self.conv.bias.repeat_interleave(self.height * self.width)
            h = torch.relu(torch.addmm(bias, flat.flatten(1), self.conv_matrix()))
        else:
            h = torch.relu(self.conv(flat)).flatten(1)
        return run_mlp(self.head, h).reshape(*batch, self.out_features)

    def _check_cells_input(self, x: torch.Tensor) -> int:
        """The observation channels ``c`` of :meth:`forward_all_cells`'s input (one less than the net's), checked."""
        c, h, w = self.in_channels - 1, self.height, self.width
        if x.shape[-3:] != (c, h, w):
            raise ValueError(
                f"x has shape {tuple(x.shape)}: expected [..., {c}, {h}, {w}] (one channel less than the net)."
            )
        return c

    def forward_all_cells(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(cat([x, onehot_plane(k)], channel))`` for every cell ``k`` at once: ``[..., H*W, out]``.

        ``x`` has ``in_channels - 1`` channels (possibly 0); the last input channel is the one-hot plane of cell
        ``k``. The convolution is linear, so its output is ``conv_x(x) + conv_plane(e_k)``: the observation part
        is convolved once per row and the ``H*W`` plane parts once per call (not once per row and cell).
        """
        h, w = self.height, self.width
        c = self._check_cells_input(x)
        batch = x.shape[:-3]
        conv = self.conv
        if self.in_channels * h * w <= self.DENSE_MAX_FEATURES:
            # the dense convolution: rows [0, c*h*w) read the observation, row c*h*w + k is cell k's plane
            matrix = self.conv_matrix()  # [C*H*W, F*H*W]
            planes = matrix[c * h * w:]  # [K, F*H*W]
            bias = conv.bias.repeat_interleave(h * w)
            if c > 0:
                base = torch.addmm(bias, x.reshape(-1, c * h * w), matrix[: c * h * w])
            else:
                base = bias.expand(batch.numel(), -1)
        else:
            cells = torch.eye(h * w, device=x.device, dtype=conv.weight.dtype).view(h * w, 1, h, w)
            planes = F.conv2d(cells, conv.weight[:, c:], None, padding=conv.padding).flatten(1)  # [K, F*H*W]
            if c > 0:
                base = F.conv2d(x.reshape(-1, c, h, w), conv.weight[:, :c], conv.bias, padding=conv.padding).flatten(1)
            else:
                base = conv.bias.repeat_interleave(h * w).expand(batch.numel(), -1)
        hidden = torch.relu(base.unsqueeze(1) + planes)  # [B, K, F*H*W]
        out = run_mlp(self.head, hidden.reshape(-1, planes.shape[-1]))  # [B * K, out]: 2-D inputs keep matmuls fast
        return out.reshape(*batch, h * w, self.out_features)

    # -- SeedEnsemble's fast paths (the dense convolution only; None: use vmap) -------------------------------------
    def _dense_stacked(self, params: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Every seed's :meth:`conv_matrix` ``[S, C*H*W, F*H*W]`` and its bias per output ``[S, F*H*W]``."""
        if self.in_channels * self.height * self.width > self.DENSE_MAX_FEATURES or not _stackable(self.head):
            return None
        matrix = self.conv_matrix(params["conv.weight"])
        return matrix, params["conv.bias"].repeat_interleave(self.height * self.width, dim=1)

    def _head_params(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: value for name, value in params.items() if name.startswith("head.")}

    def forward_stacked(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor | None:
        """:meth:`forward` of ``S`` seeds from stacked parameters: ``x`` ``[S, *batch, C, H, W]``."""
        dense = self._dense_stacked(params)
        if dense is None:
            return None
        matrix, bias = dense
        flat = x.reshape(x.shape[0], math.prod(x.shape[1:-3]), -1)
        h = torch.relu(torch.baddbmm(bias.unsqueeze(1), flat, matrix))
        out = run_mlp_stacked(self.head, self._head_params(params), "head.", h)
        return out.reshape(*x.shape[:-3], self.out_features)

    def forward_all_cells_stacked(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor | None:
        """:meth:`forward_all_cells` of ``S`` seeds from stacked parameters: ``[S, *batch, H*W, out]``."""
        h, w = self.height, self.width
        c = self._check_cells_input(x)
        dense = self._dense_stacked(params)
        if dense is None:
            return None
        matrix, bias = dense
        seeds, rows = x.shape[0], math.prod(x.shape[1:-3])
        planes = matrix[:, c * h * w:]  # [S, K, F*H*W]
        if c > 0:
            base = torch.baddbmm(bias.unsqueeze(1), x.reshape(seeds, rows, c * h * w), matrix[:, : c * h * w])
        else:
            base = bias.unsqueeze(1).expand(seeds, rows, -1)
        hidden = torch.relu(base.unsqueeze(2) + planes.unsqueeze(1))  # [S, B, K, F*H*W]
        hidden = hidden.reshape(seeds, -1, planes.shape[-1])
        out = run_mlp_stacked(self.head, self._head_params(params), "head.", hidden)
        return out.reshape(*x.shape[:-3], h * w, self.out_features)


class ObservationMessageNet(nn.Module):
    """Reads the receiver's own observation and the message together.

    For grids, the message (one-hot over the ``H*W`` cells) becomes one more channel of the observation
    ``[C, H, W]``; for vectors the two are concatenated. ``body`` maps the result to the output.
    """

    def __init__(self, body: nn.Module, *, grid_shape: tuple[int, int] | None = None):
        super().__init__()
        self.body, self.grid_shape = body, grid_shape

    def _joined(self, observation: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        """The body's input: the message as one more grid channel, or concatenated to a vector observation."""
        if self.grid_shape is not None:
            message = message.reshape(*message.shape[:-1], 1, *self.grid_shape)
            return torch.cat([observation, message.to(observation.dtype)], dim=-3)
        return torch.cat([observation, message.to(observation.dtype)], dim=-1)

    def forward(self, observation: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        return self.body(self._joined(observation, message))

    def supports_all_messages(self, num_messages: int) -> bool:
        """Whether :meth:`forward_all_messages` has a fast path for one-hot messages of this size."""
        if self.grid_shape is not None:
            return isinstance(self.body, GridNet) and num_messages == self.grid_shape[0] * self.grid_shape[1]
        return isinstance(self.body, VectorNet) and isinstance(self.body.net[0], nn.Linear)

    def forward_all_messages(self, observation: torch.Tensor, num_messages: int) -> torch.Tensor:
        """The output for every one-hot message at once: ``[..., num_messages, out]``.

        Equal (up to float rounding) to calling the net on each ``(observation, e_k)``, at the cost of about one
        call for the observation part (see :meth:`GridNet.forward_all_cells`, :meth:`VectorNet.forward_all_one_hot`).
        Other bodies fall back to the expanded batch.
        """
        if self.supports_all_messages(num_messages):
            if self.grid_shape is not None:
                return self.body.forward_all_cells(observation)
            return self.body.forward_all_one_hot(observation, num_messages)
        event = observation.shape[-3:] if self.grid_shape is not None else observation.shape[-1:]
        batch = observation.shape[: observation.ndim - len(event)]
        obs = observation.unsqueeze(len(batch)).expand(*batch, num_messages, *event)
        eye = torch.eye(num_messages, device=observation.device, dtype=observation.dtype)
        return self(obs, eye.expand(*batch, num_messages, num_messages))

    # -- SeedEnsemble's fast paths (VectorNet and dense GridNet bodies; None: use vmap) ------------------------
    def _body_params(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name[len("body."):]: value for name, value in params.items() if name.startswith("body.")}

    def forward_stacked(
        self, params: Mapping[str, torch.Tensor], observation: torch.Tensor, message: torch.Tensor
    ) -> torch.Tensor | None:
        """:meth:`forward` of ``S`` seeds from stacked parameters (see :meth:`VectorNet.forward_stacked`)."""
        if not isinstance(self.body, (VectorNet, GridNet)):
            return None
        return self.body.forward_stacked(self._body_params(params), self._joined(observation, message))

    def forward_all_messages_stacked(
        self, params: Mapping[str, torch.Tensor], observation: torch.Tensor, num_messages: int
    ) -> torch.Tensor | None:
        """:meth:`forward_all_messages` of ``S`` seeds from stacked parameters (bodies with the fast path)."""
        if not self.supports_all_messages(num_messages):
            return None
        if self.grid_shape is not None:
            return self.body.forward_all_cells_stacked(self._body_params(params), observation)
        return self.body.forward_all_one_hot_stacked(self._body_params(params), observation, num_messages)
