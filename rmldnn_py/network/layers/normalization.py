"""Normalization family (SPEC §4.4): BatchNormalization, LayerNormalization, GroupNormalization,
InstanceNormalization.

BatchNormalization is always affine (``weight``/``bias`` exist and count even when Keras
``scale``/``center`` are false; they then start at 1/0); torch momentum = 1 − Keras momentum.
A frozen BN (``trainable: false``) always uses its moving statistics (SPEC §4.6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import NetworkError
from ..initializers import apply_initializer
from .base import DEFAULT_CTX, Ctx, KerasLayer, cfg_get, float_arg, int_arg, register, single_input


class BatchNorm(KerasLayer):
    """Batch normalisation over the channel axis of ``(N, C, *S)``.

    Tensors: ``weight``, ``bias`` (C,), buffers ``running_mean``, ``running_var`` (C,),
    ``num_batches_tracked``.
    """

    def __init__(self, channels: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.channels, self.eps, self.momentum = channels, eps, momentum
        self.weight = torch.nn.Parameter(torch.ones(channels))
        self.bias = torch.nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_batch = self.training and not self.frozen
        if use_batch:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            use_batch, self.momentum, self.eps)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes)
        if s[0] != self.channels:
            raise NetworkError(f"expects {self.channels} channels, received shape {s}")
        return s

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, momentum={self.momentum}, frozen={self.frozen}"


def _init_gamma_beta(weight, bias, cfg: dict, shape: tuple) -> None:
    """Apply the Keras ``gamma_initializer`` / ``beta_initializer`` to the scale and offset
    tensors (either may be None: absent, or kept at 1 / 0)."""
    if weight is not None:
        apply_initializer(weight, cfg.get("gamma_initializer"), shape)
    if bias is not None:
        apply_initializer(bias, cfg.get("beta_initializer"), shape)


@register("BatchNormalization")
def build_batchnorm(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    s = single_input(input_shapes)
    rank = len(s) + 1
    if rank < 2:
        raise NetworkError("expects an input of rank >= 2")
    axis = cfg_get(cfg, "axis", -1)
    dim = ctx.torch_axis(axis, rank)
    if dim != 1:
        raise NetworkError(f"axis {axis} is not the channel axis; only channel-axis batch "
                           f"normalization is supported")
    if s[0] is None:
        raise NetworkError("the channel dimension of the input must be known")
    if cfg.get("renorm"):
        raise NetworkError("batch renormalization ('renorm': true) is not supported")
    momentum = float_arg(cfg, "momentum", 0.99, low=0.0, high=1.0)
    m = BatchNorm(int(s[0]), float_arg(cfg, "epsilon", 1e-3, low=0.0, low_open=True), 1.0 - momentum)
    c = (int(s[0]),)
    # always affine (SPEC §4.7): without scale/center the tensors keep 1 / 0
    _init_gamma_beta(m.weight if cfg_get(cfg, "scale", True) else None,
                     m.bias if cfg_get(cfg, "center", True) else None, cfg, c)
    apply_initializer(m.running_mean, cfg.get("moving_mean_initializer"), c)
    apply_initializer(m.running_var, cfg.get("moving_variance_initializer"), c)
    return m, m.output_shape([s])


class LayerNorm(KerasLayer):
    """Keras LayerNormalization over the given Keras axes, computed in Keras layout.

    The Keras ``gamma``/``beta`` have the input's sizes at the normalised axes (Keras axis
    order); like every input-shaped weight they are held channel-first: when they have two or
    more axes in a channels_last model, their last axis is moved to the front.
    """

    def __init__(self, ctx: Ctx, axes: tuple[int, ...], param_shape: tuple[int, ...], rank: int,
                 eps: float, scale: bool, center: bool) -> None:
        super().__init__()
        self.ctx, self.axes, self.rank, self.eps = ctx, axes, rank, eps
        self._moved = ctx.channels_last and len(param_shape) >= 2
        held = (param_shape[-1],) + tuple(param_shape[:-1]) if self._moved else tuple(param_shape)
        self.weight = torch.nn.Parameter(torch.ones(held)) if scale else None
        self.bias = torch.nn.Parameter(torch.zeros(held)) if center else None
        self._sizes = tuple(param_shape)
        self._bshape = tuple(param_shape[axes.index(a)] if a in axes else 1 for a in range(1, rank))

    def _keras(self, p: torch.Tensor) -> torch.Tensor:
        return (p.movedim(0, -1) if self._moved else p).reshape(self._bshape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xk = self.ctx.to_keras(x)
        mean = xk.mean(dim=self.axes, keepdim=True)
        var = (xk - mean).square().mean(dim=self.axes, keepdim=True)
        y = (xk - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self._keras(self.weight)
        if self.bias is not None:
            y = y + self._keras(self.bias)
        return self.ctx.from_keras(y)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes, self.rank - 1)
        k = self.ctx.keras_shape(s)
        for a, n in zip(self.axes, self._sizes):
            if k[a - 1] is not None and k[a - 1] != n:
                raise NetworkError(f"expects size {n} on Keras axis {a}, received shape {s}")
        return s


@register("LayerNormalization")
def build_layernorm(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    s = single_input(input_shapes)
    rank = len(s) + 1
    axis = cfg_get(cfg, "axis", -1)
    axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    axes = sorted({int(a) + rank if int(a) < 0 else int(a) for a in axis})
    if any(a < 1 or a >= rank for a in axes):
        raise NetworkError(f"axis {axis} is out of range for an input of rank {rank}")
    if cfg.get("rms_scaling"):
        raise NetworkError("'rms_scaling': true is not supported")
    k = ctx.keras_shape(s)
    pshape = tuple(k[a - 1] for a in axes)
    if any(d is None for d in pshape):
        raise NetworkError(f"the normalised axes must have known sizes, received shape {s}")
    m = LayerNorm(ctx, tuple(axes), pshape, rank, float_arg(cfg, "epsilon", 1e-3, low=0.0, low_open=True),
                  bool(cfg_get(cfg, "scale", True)), bool(cfg_get(cfg, "center", True)))
    _init_gamma_beta(m.weight, m.bias, cfg, pshape)
    return m, m.output_shape([s])


class GroupNorm(KerasLayer):
    """Keras GroupNormalization on the channel axis of ``(N, C, *S)`` (contiguous channel groups)."""

    def __init__(self, channels: int, groups: int, eps: float, scale: bool, center: bool) -> None:
        super().__init__()
        self.channels, self.groups, self.eps = channels, groups, eps
        self.weight = torch.nn.Parameter(torch.ones(channels)) if scale else None
        self.bias = torch.nn.Parameter(torch.zeros(channels)) if center else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.groups, self.weight, self.bias, self.eps)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes)
        if s[0] != self.channels:
            raise NetworkError(f"expects {self.channels} channels, received shape {s}")
        return s


@register("GroupNormalization")
def build_groupnorm(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    s = single_input(input_shapes)
    rank = len(s) + 1
    if ctx.torch_axis(cfg_get(cfg, "axis", -1), rank) != 1:
        raise NetworkError("only channel-axis group normalization is supported")
    groups = int_arg(cfg, "groups", 32, minimum=-1)
    if groups == 0:
        raise NetworkError("'groups' must be a positive integer or -1, received 0")
    if s[0] is None:
        raise NetworkError("the channel dimension of the input must be known")
    if groups == -1:
        groups = int(s[0])
    if s[0] % groups:
        raise NetworkError(f"groups={groups} must divide the number of channels ({s[0]})")
    m = GroupNorm(int(s[0]), groups, float_arg(cfg, "epsilon", 1e-3, low=0.0, low_open=True),
                  bool(cfg_get(cfg, "scale", True)), bool(cfg_get(cfg, "center", True)))
    _init_gamma_beta(m.weight, m.bias, cfg, (int(s[0]),))
    return m, m.output_shape([s])


class InstanceNorm(KerasLayer):
    """InstanceNormalization with PyTorch keys and meaning (SPEC §4.4, §12 Q9) on ``(N, C, *S)``."""

    def __init__(self, channels: int, eps: float, momentum: float, affine: bool, track: bool) -> None:
        super().__init__()
        self.channels, self.eps, self.momentum, self.track = channels, eps, momentum, track
        self.weight = torch.nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = torch.nn.Parameter(torch.zeros(channels)) if affine else None
        if track:
            self.register_buffer("running_mean", torch.zeros(channels))
            self.register_buffer("running_var", torch.ones(channels))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.running_mean = None
            self.running_var = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_input = self.training or not self.track
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               use_input, self.momentum, self.eps)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes)
        if len(s) < 2:
            raise NetworkError(f"expects an input with spatial axes, received shape {s}")
        if s[0] != self.channels:
            raise NetworkError(f"expects {self.channels} channels, received shape {s}")
        if all(d == 1 for d in s[1:]):
            raise NetworkError(f"cannot normalise a single value per channel (input {list(s)}): "
                               "the input of the network is too small for its depth")
        return s


@register("InstanceNormalization")
def build_instancenorm(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    s = single_input(input_shapes)
    if s[0] is None:
        raise NetworkError("the channel dimension of the input must be known")
    affine = cfg.get("affine")
    if affine is None:  # tensorflow_addons style keys
        affine = bool(cfg.get("center", False) or cfg.get("scale", False))
    m = InstanceNorm(int(s[0]), float_arg(cfg, "epsilon", 1e-5, low=0.0, low_open=True),
                     float_arg(cfg, "momentum", 0.1, low=0.0, high=1.0),
                     bool(affine), bool(cfg_get(cfg, "track_running_stats", False)))
    return m, m.output_shape([s])
