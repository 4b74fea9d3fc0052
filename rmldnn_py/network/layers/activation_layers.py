"""Activation layers (SPEC §4.4): ReLU, LeakyReLU, PReLU, ELU, Softmax, ThresholdedReLU."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import NetworkError
from ..initializers import apply_initializer
from .base import DEFAULT_CTX, Ctx, KerasLayer, cfg_get, register, single_input


class _Elementwise(KerasLayer):
    def output_shape(self, input_shapes):
        return single_input(input_shapes)


class ReLU(_Elementwise):
    """Keras ReLU: ``max_value`` if x ≥ max_value; x if threshold ≤ x; negative_slope·(x − threshold) else."""

    def __init__(self, max_value: float | None, negative_slope: float, threshold: float) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.negative_slope == 0.0 and self.threshold == 0.0:
            if self.max_value == 6.0:
                return F.relu6(x)
            y = F.relu(x)
        else:
            y = torch.where(x >= self.threshold, x, self.negative_slope * (x - self.threshold))
        if self.max_value is not None:
            y = torch.clamp(y, max=self.max_value)
        return y

    def extra_repr(self) -> str:
        return f"max_value={self.max_value}, negative_slope={self.negative_slope}, threshold={self.threshold}"


@register("ReLU")
def build_relu(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    mv = cfg.get("max_value")
    m = ReLU(None if mv is None else float(mv), float(cfg_get(cfg, "negative_slope", 0.0)),
             float(cfg_get(cfg, "threshold", 0.0)))
    return m, m.output_shape(input_shapes)


@register("ThresholdedReLU")
def build_thresholded_relu(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    theta = float(cfg_get(cfg, "theta", 1.0))
    m = Threshold(theta)
    return m, m.output_shape(input_shapes)


class Threshold(_Elementwise):
    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = theta

    def forward(self, x):
        return torch.where(x > self.theta, x, torch.zeros_like(x))


class LeakyReLU(_Elementwise):
    def __init__(self, slope: float) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.slope}"


@register("LeakyReLU")
def build_leaky_relu(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    slope = cfg.get("negative_slope", cfg.get("alpha"))
    m = LeakyReLU(0.3 if slope is None else float(slope))
    return m, m.output_shape(input_shapes)


class ELU(_Elementwise):
    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x, self.alpha)


@register("ELU")
def build_elu(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    m = ELU(float(cfg_get(cfg, "alpha", 1.0)))
    return m, m.output_shape(input_shapes)


class Softmax(_Elementwise):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, self.dim)


@register("Softmax")
def build_softmax(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    s = single_input(input_shapes)
    m = Softmax(ctx.torch_axis(cfg_get(cfg, "axis", -1), len(s) + 1))
    return m, s


class PReLU(KerasLayer):
    """Keras PReLU. ``weight`` is Keras' ``alpha`` (input shape, shared axes = 1) held
    channel-first: in a channels_last model with a rank ≥ 2 alpha, its last axis comes first."""

    def __init__(self, ctx: Ctx, alpha_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.ctx = ctx
        self._moved = ctx.channels_last and len(alpha_shape) >= 2
        self._alpha_shape = tuple(alpha_shape)
        held = (alpha_shape[-1],) + tuple(alpha_shape[:-1]) if self._moved else tuple(alpha_shape)
        self.weight = torch.nn.Parameter(torch.zeros(held))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xk = self.ctx.to_keras(x)
        alpha = self.weight.movedim(0, -1) if self._moved else self.weight
        y = F.relu(xk) - alpha * F.relu(-xk)
        return self.ctx.from_keras(y)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes)
        k = self.ctx.keras_shape(s)
        if len(k) != len(self._alpha_shape):
            raise NetworkError(f"input shape {s} does not match alpha shape {self._alpha_shape}")
        for d, a in zip(k, self._alpha_shape):
            if a != 1 and d is not None and d != a:
                raise NetworkError(f"input shape {s} does not match alpha shape {self._alpha_shape}")
        return s


@register("PReLU")
def build_prelu(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    s = single_input(input_shapes)
    k = list(ctx.keras_shape(s))
    shared = cfg.get("shared_axes") or []
    if isinstance(shared, int):
        shared = [shared]
    for a in shared:
        k[int(a) - 1] = 1
    if any(d is None for d in k):
        raise NetworkError(f"PReLU needs known sizes on its non-shared axes, received shape {s}")
    m = PReLU(ctx, tuple(k))
    apply_initializer(m.weight, cfg.get("alpha_initializer"), tuple(k))
    return m, m.output_shape([s])
