"""Regularisation family: Dropout, SpatialDropout1D/2D/3D (inactive in evaluation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import NetworkError
from .base import DEFAULT_CTX, Ctx, KerasLayer, float_arg, register, single_input


class Dropout(KerasLayer):
    """Element-wise dropout (``spatial=False``) or channel-wise dropout of ``(N, C, *S)``."""

    def __init__(self, rate: float, spatial_rank: int = 0) -> None:
        super().__init__()
        self.rate, self.spatial_rank = rate, spatial_rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        if self.spatial_rank == 0:
            return F.dropout(x, self.rate, True)
        # one Bernoulli draw per (sample, channel), as nn.Dropout1d/2d/3d
        keep = torch.empty(x.shape[:2] + (1,) * (x.dim() - 2), dtype=x.dtype, device=x.device)
        keep.bernoulli_(1.0 - self.rate)
        return x * keep / (1.0 - self.rate)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes)
        if self.spatial_rank and len(s) != self.spatial_rank + 1:
            raise NetworkError(f"expects an input of rank {self.spatial_rank + 2} (batch included), "
                               f"received shape {s}")
        return s

    def extra_repr(self) -> str:
        return f"rate={self.rate}" + (f", spatial_rank={self.spatial_rank}" if self.spatial_rank else "")


def _rate(cfg: dict) -> float:
    return float_arg(cfg, "rate", 0.0, low=0.0, high=1.0, high_open=True)


@register("Dropout")
def build_dropout(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    m = Dropout(_rate(cfg))
    return m, m.output_shape(input_shapes)


def _build_spatial(nd: int):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        m = Dropout(_rate(cfg), nd)
        return m, m.output_shape(input_shapes)

    return build


for _nd in (1, 2, 3):
    register(f"SpatialDropout{_nd}D")(_build_spatial(_nd))


class GaussianNoise(KerasLayer):
    """Keras GaussianNoise (additive, ``stddev``) / GaussianDropout (multiplicative, ``rate``):
    active in training only."""

    def __init__(self, stddev: float, multiplicative: bool) -> None:
        super().__init__()
        self.stddev, self.multiplicative = stddev, multiplicative

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.stddev == 0.0:
            return x
        noise = torch.randn_like(x) * self.stddev
        return x * (1.0 + noise) if self.multiplicative else x + noise

    def output_shape(self, input_shapes):
        return single_input(input_shapes)


@register("GaussianNoise")
def build_gaussian_noise(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    m = GaussianNoise(float_arg(cfg, "stddev", 0.0, low=0.0), False)
    return m, m.output_shape(input_shapes)


@register("GaussianDropout")
def build_gaussian_dropout(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    rate = _rate(cfg)
    m = GaussianNoise((rate / (1.0 - rate)) ** 0.5, True)
    return m, m.output_shape(input_shapes)


class Identity(KerasLayer):
    """Layers without effect on the forward pass (Identity, ActivityRegularization)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def output_shape(self, input_shapes):
        return single_input(input_shapes)


@register("Identity")
@register("ActivityRegularization")
def build_identity(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    m = Identity()
    return m, m.output_shape(input_shapes)
