"""Preprocessing layers (SPEC §4.4 [P] extras): Rescaling, Normalization."""

from __future__ import annotations

import torch

from ...errors import NetworkError
from .base import DEFAULT_CTX, Ctx, KerasLayer, cfg_get, register, single_input


def _channel_view(values: torch.Tensor, rank: int) -> torch.Tensor:
    """(C,) → (1, C, 1, ...) for a rank-``rank`` channel-first tensor."""
    return values.reshape((1, -1) + (1,) * (rank - 2))


class Rescaling(KerasLayer):
    """``x · scale + offset`` (scalars, or per-channel lists)."""

    def __init__(self, scale, offset) -> None:
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32), persistent=False)
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, offset = self.scale, self.offset
        if scale.dim() == 1:
            scale = _channel_view(scale, x.dim())
        if offset.dim() == 1:
            offset = _channel_view(offset, x.dim())
        return x * scale + offset

    def output_shape(self, input_shapes):
        return single_input(input_shapes)


@register("Rescaling")
def build_rescaling(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    scale, offset = cfg_get(cfg, "scale", 1.0), cfg_get(cfg, "offset", 0.0)
    m = Rescaling(scale, offset)
    return m, m.output_shape(input_shapes)


class Normalization(KerasLayer):
    """Keras Normalization on the channel axis: ``(x − mean) / max(sqrt(variance), 1e-7)``
    (``invert``: ``x · max(sqrt(variance), 1e-7) + mean``). Buffers ``mean``, ``variance`` (C,)."""

    def __init__(self, channels: int, invert: bool, mean=None, variance=None) -> None:
        super().__init__()
        self.invert = invert
        self.register_buffer("mean", torch.zeros(channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(-1).expand(channels).clone())
        self.register_buffer("variance", torch.ones(channels) if variance is None else torch.as_tensor(variance, dtype=torch.float32).reshape(-1).expand(channels).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = _channel_view(self.mean, x.dim()) if x.dim() >= 2 else self.mean
        std = torch.clamp(torch.sqrt(self.variance), min=1e-7)
        std = _channel_view(std, x.dim()) if x.dim() >= 2 else std
        return x * std + mean if self.invert else (x - mean) / std

    def output_shape(self, input_shapes):
        return single_input(input_shapes)


@register("Normalization")
def build_normalization(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    s = single_input(input_shapes)
    axis = cfg_get(cfg, "axis", -1)
    if ctx.torch_axis(axis, len(s) + 1) != 1:
        raise NetworkError("only channel-axis Normalization is supported")
    if s[0] is None:
        raise NetworkError("the channel dimension of the input must be known")
    m = Normalization(int(s[0]), bool(cfg_get(cfg, "invert", False)), cfg.get("mean"), cfg.get("variance"))
    return m, s
