"""Core family: InputLayer, Dense, Activation (SPEC §4.4, §4.5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import NetworkError
from ..activations import make_activation
from ..initializers import apply_initializer
from .base import DEFAULT_CTX, Ctx, KerasLayer, cfg_get, int_arg, register, single_input


class Input(KerasLayer):
    """The network input node (an ``InputLayer`` or the implicit input): identity."""

    def __init__(self, shape: tuple) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def output_shape(self, input_shapes):
        return tuple(input_shapes[0]) if input_shapes else self.shape


@register("InputLayer")
def build_input(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    shape = tuple(input_shapes[0]) if input_shapes else ()
    return Input(shape), shape


class Dense(KerasLayer):
    """Keras Dense on Keras' last axis: ``(N, F)`` → ``(N, units)``; for rank ≥ 3 tensors
    ``(N, C, *S)`` → ``(N, units, *S)`` in channels_last models (Keras' last axis is our channel
    axis), ``(..., F)`` → ``(..., units)`` in channels_first models."""

    def __init__(self, in_features: int, units: int, use_bias: bool, activation,
                 channel_axis: bool = True) -> None:
        super().__init__()
        self.in_features, self.units, self.channel_axis = in_features, units, channel_axis
        self.weight = torch.nn.Parameter(torch.empty(units, in_features))
        self.bias = torch.nn.Parameter(torch.empty(units)) if use_bias else None
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
            torch.nn.init.uniform_(self.bias, -bound, bound)
        self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() <= 2 or not self.channel_axis:
            y = F.linear(x, self.weight, self.bias)
        else:
            y = F.linear(x.movedim(1, -1), self.weight, self.bias).movedim(-1, 1)
        return y if self.act is None else self.act(y)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes)
        if len(s) < 1:
            raise NetworkError("expects an input of rank >= 2 (batch included)")
        if not self.channel_axis:
            if s[-1] != self.in_features:
                raise NetworkError(f"expects {self.in_features} input features on the last axis, "
                                   f"received shape {s}")
            return tuple(s[:-1]) + (self.units,)
        if s[0] != self.in_features:
            raise NetworkError(f"expects {self.in_features} input features on the channel axis, "
                               f"received shape {s}")
        return (self.units,) + tuple(s[1:])

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, units={self.units}, bias={self.bias is not None}"


@register("Dense", fused_activation=True)
def build_dense(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    s = single_input(input_shapes)
    channel_axis = ctx.channels_last or len(s) < 2
    feat = s[0] if channel_axis else s[-1] if s else None
    if feat is None:
        raise NetworkError(f"the feature (last Keras) axis of the input must be known, received shape {s}")
    units = int_arg(cfg, "units")
    dim = 1 if channel_axis else len(s)
    m = Dense(int(feat), int(units), bool(cfg_get(cfg, "use_bias", True)),
              make_activation(cfg.get("activation"), len(s) + 1, dim, keras2=ctx.keras2), channel_axis)
    apply_initializer(m.weight, cfg.get("kernel_initializer"), (int(feat), int(units)))
    if m.bias is not None:
        apply_initializer(m.bias, cfg.get("bias_initializer"), (int(units),))
    return m, m.output_shape([s])


class ActivationLayer(KerasLayer):
    """Keras Activation layer; ``axis`` (a Keras axis) selects the softmax dim."""

    def __init__(self, act) -> None:
        super().__init__()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.act is None else self.act(x)

    def output_shape(self, input_shapes):
        return single_input(input_shapes)


@register("Activation")
def build_activation(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    s = single_input(input_shapes)
    rank = len(s) + 1
    dim = ctx.torch_axis(cfg["axis"], rank) if cfg.get("axis") is not None else (1 if ctx.channels_last else rank - 1)
    return ActivationLayer(make_activation(cfg.get("activation"), rank, dim, keras2=ctx.keras2)), s
