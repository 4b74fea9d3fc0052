"""Convolution family (SPEC §4.4): ConvND, DepthwiseConvND, SeparableConvND, ConvNDTranspose.

Tensors are ``(N, C, *spatial)``. ``padding: same`` follows TensorFlow (asymmetric, extra cell at
the end); an int or int list means explicit symmetric zero padding; ``causal`` (Conv1D) pads
``(k-1)·d`` at the start. Torch weight layouts (SPEC §4.10):

* Conv: ``weight (out, in/groups, *k)``, ``bias (out,)``
* Depthwise: ``weight (in·mult, 1, *k)``
* Separable: ``depthwise_weight (in·mult, 1, *k)``, ``pointwise_weight (out, in·mult, 1...)``, ``bias``
* Transposed: ``weight (in, out, *k)``
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import NetworkError
from ..activations import make_activation
from ..initializers import apply_initializer
from .base import (DEFAULT_CTX, Ctx, KerasLayer, cfg_get, check_data_format, conv_out_len, int_arg,
                   ntuple, register, single_input, tf_same_pad)

_CONV_FNS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONVT_FNS = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _padding_mode(cfg: dict, nd: int) -> Any:
    """``'valid'``, ``'same'``, ``'causal'`` or a tuple of explicit symmetric pads."""
    p = cfg_get(cfg, "padding", "valid")
    if isinstance(p, str):
        p = p.lower()
        if p not in ("valid", "same", "causal"):
            raise NetworkError(f"unsupported padding '{p}' (expected 'valid', 'same', an int or a list of ints)")
        if p == "causal" and nd != 1:
            raise NetworkError("padding 'causal' is only supported by 1D convolutions")
        return p
    return ntuple(p, nd, "padding", minimum=0)


def _pads(mode: Any, sizes: tuple, k: tuple, s: tuple, d: tuple) -> list[tuple[int, int]] | None:
    """(before, after) per spatial axis, or None when a size needed for 'same' is unknown."""
    if mode == "valid":
        return [(0, 0)] * len(k)
    if mode == "causal":
        return [((k[0] - 1) * d[0], 0)]
    if isinstance(mode, tuple):
        return [(p, p) for p in mode]
    pads = []
    for n, kk, ss, dd in zip(sizes, k, s, d):
        if ss == 1:
            total = (kk - 1) * dd
            pads.append((total // 2, total - total // 2))
        elif n is None:
            return None
        else:
            pads.append(tf_same_pad(n, kk, ss, dd))
    return pads


def _flat_pad(pads: list[tuple[int, int]]) -> list[int]:
    """Per-axis (before, after) → F.pad argument (last axis first)."""
    out: list[int] = []
    for b, a in reversed(pads):
        out += [b, a]
    return out


class _ConvBase(KerasLayer):
    """Shared padding / shape logic of the forward convolutions."""

    def _setup(self, nd: int, kernel: tuple, strides: tuple, dilation: tuple, mode: Any) -> None:
        self.nd = nd
        self.kernel_size = kernel
        self.stride = strides
        self.dilation = dilation
        self.padding_mode = mode
        # 'same' with stride 1 (and every explicit mode) is size independent: fix it now.
        self._static_pads = _pads(mode, (None,) * nd, kernel, strides, dilation)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Returns the (possibly padded) input and the padding to give the conv op."""
        pads = self._static_pads
        if pads is None:
            pads = _pads(self.padding_mode, tuple(x.shape[2:]), self.kernel_size, self.stride, self.dilation)
        if all(b == a for b, a in pads):
            return x, tuple(b for b, _ in pads)
        return F.pad(x, _flat_pad(pads)), 0

    def _spatial_out(self, sizes: tuple) -> tuple:
        if self.padding_mode == "same":
            return tuple(None if n is None else -(-n // s) for n, s in zip(sizes, self.stride))
        pads = _pads(self.padding_mode, sizes, self.kernel_size, self.stride, self.dilation)
        out = tuple(conv_out_len(n, k, s, d, p) for n, k, s, d, p in
                    zip(sizes, self.kernel_size, self.stride, self.dilation, pads))
        for n, o in zip(sizes, out):
            if o is not None and o < 1:
                raise NetworkError(f"input spatial size {tuple(sizes)} is too small for kernel "
                                   f"{self.kernel_size} with dilation {self.dilation}")
        return out


class ConvND(_ConvBase):
    """Keras ConvND / DepthwiseConvND: ``(N, C_in, *S)`` → ``(N, C_out, *S')``."""

    def __init__(self, nd: int, in_channels: int, out_channels: int, kernel: tuple, strides: tuple,
                 dilation: tuple, mode: Any, groups: int, use_bias: bool, activation: Any) -> None:
        super().__init__()
        self._setup(nd, kernel, strides, dilation, mode)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.weight = torch.nn.Parameter(torch.empty(out_channels, in_channels // groups, *kernel))
        self.bias = torch.nn.Parameter(torch.empty(out_channels)) if use_bias else None
        # PyTorch default initialisation (overridden by Keras initializers when present).
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(max(1, (in_channels // groups) * math.prod(kernel)))
            torch.nn.init.uniform_(self.bias, -bound, bound)
        self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = self._pad(x)
        y = _CONV_FNS[self.nd](x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)
        return y if self.act is None else self.act(y)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes, self.nd + 1)
        if s[0] is not None and s[0] != self.in_channels:
            raise NetworkError(f"expects {self.in_channels} input channels, received shape {s}")
        return (self.out_channels,) + self._spatial_out(s[1:])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding_mode!r}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}")


class SeparableConvND(_ConvBase):
    """Keras SeparableConvND: depthwise conv (no bias) then 1×1 pointwise conv with bias."""

    def __init__(self, nd: int, in_channels: int, out_channels: int, mult: int, kernel: tuple,
                 strides: tuple, dilation: tuple, mode: Any, use_bias: bool, activation: Any) -> None:
        super().__init__()
        self._setup(nd, kernel, strides, dilation, mode)
        self.in_channels, self.out_channels, self.mult = in_channels, out_channels, mult
        mid = in_channels * mult
        self.depthwise_weight = torch.nn.Parameter(torch.empty(mid, 1, *kernel))
        self.pointwise_weight = torch.nn.Parameter(torch.empty(out_channels, mid, *([1] * nd)))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels)) if use_bias else None
        torch.nn.init.kaiming_uniform_(self.depthwise_weight, a=math.sqrt(5))
        torch.nn.init.kaiming_uniform_(self.pointwise_weight, a=math.sqrt(5))
        self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = self._pad(x)
        conv = _CONV_FNS[self.nd]
        y = conv(x, self.depthwise_weight, None, self.stride, pad, self.dilation, self.in_channels)
        y = conv(y, self.pointwise_weight, self.bias)
        return y if self.act is None else self.act(y)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes, self.nd + 1)
        if s[0] is not None and s[0] != self.in_channels:
            raise NetworkError(f"expects {self.in_channels} input channels, received shape {s}")
        return (self.out_channels,) + self._spatial_out(s[1:])


class ConvTransposeND(KerasLayer):
    """Keras ConvNDTranspose with TensorFlow output sizes (SPEC §4.4).

    Runs ``conv_transposeNd`` without padding (full length ``(n-1)·s + k_eff``) and crops / pads
    every spatial axis to the TF length.
    """

    def __init__(self, nd: int, in_channels: int, out_channels: int, kernel: tuple, strides: tuple,
                 dilation: tuple, same: bool, output_padding: tuple | None, use_bias: bool,
                 activation: Any) -> None:
        super().__init__()
        self.nd, self.kernel_size, self.stride, self.dilation = nd, kernel, strides, dilation
        self.same, self.output_padding = same, output_padding
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = torch.nn.Parameter(torch.empty(in_channels, out_channels, *kernel))
        self.bias = torch.nn.Parameter(torch.empty(out_channels)) if use_bias else None
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(max(1, out_channels * math.prod(kernel)))
            torch.nn.init.uniform_(self.bias, -bound, bound)
        self.act = activation

    def _lengths(self, n: int, i: int) -> tuple[int, int]:
        """(TF output length, crop at the start) of spatial axis i for input length n."""
        k_eff = (self.kernel_size[i] - 1) * self.dilation[i] + 1
        s = self.stride[i]
        if self.output_padding is None:
            length = n * s if self.same else n * s + max(k_eff - s, 0)
        else:
            pad = k_eff // 2 if self.same else 0
            length = (n - 1) * s + k_eff - 2 * pad + self.output_padding[i]
        total = max((n - 1) * s + k_eff - length, 0) if self.same else 0
        return length, total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = tuple(int(n) for n in x.shape[2:])
        crops = []                      # (cells cropped at the start, at the end) of the full output
        for i, n in enumerate(sizes):
            length, before = self._lengths(n, i)
            full = (n - 1) * self.stride[i] + (self.kernel_size[i] - 1) * self.dilation[i] + 1
            crops.append((before, full - before - length))
        if all(0 <= a <= b and b - a < max(s, d)
               for (b, a), s, d in zip(crops, self.stride, self.dilation)):
            # The crop is one the op does itself (padding p crops p cells at both ends,
            # output_padding gives back up to max(stride, dilation) - 1 at the end): no copy.
            y = _CONVT_FNS[self.nd](x, self.weight, self.bias, self.stride,
                                    tuple(b for b, _ in crops), tuple(b - a for b, a in crops),
                                    1, self.dilation)
            return y if self.act is None else self.act(y)
        y = _CONVT_FNS[self.nd](x, self.weight, None, self.stride, 0, 0, 1, self.dilation)
        pads = [(-b, -a) for b, a in crops]
        if any(b != 0 or a != 0 for b, a in pads):
            y = F.pad(y, _flat_pad(pads))  # negative = crop; appended cells are zeros (+ bias, as TF)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, *([1] * self.nd))
        return y if self.act is None else self.act(y)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes, self.nd + 1)
        if s[0] is not None and s[0] != self.in_channels:
            raise NetworkError(f"expects {self.in_channels} input channels, received shape {s}")
        return (self.out_channels,) + tuple(None if n is None else self._lengths(n, i)[0]
                                            for i, n in enumerate(s[1:]))


# ----------------------------------------------------------------------------- builders

def _common(cfg: dict, nd: int, input_shapes, ctx: Ctx):
    check_data_format(cfg, ctx)
    s = single_input(input_shapes, nd + 1)
    if s[0] is None:
        raise NetworkError("the channel dimension of the input must be known")
    k = ntuple(cfg.get("kernel_size"), nd, "kernel_size")
    strides = ntuple(cfg_get(cfg, "strides", 1), nd, "strides")
    dil = ntuple(cfg_get(cfg, "dilation_rate", 1), nd, "dilation_rate")
    act = make_activation(cfg.get("activation"), nd + 2, 1 if ctx.channels_last else nd + 1,
                          keras2=ctx.keras2)
    return s, k, strides, dil, act


def _init(tensor: torch.Tensor, cfg: dict, key: str, keras_shape) -> None:
    apply_initializer(tensor, cfg.get(key), keras_shape)


def _build_conv(nd: int):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        s, k, strides, dil, act = _common(cfg, nd, input_shapes, ctx)
        filters = int_arg(cfg, "filters")
        groups = int_arg(cfg, "groups", 1)
        cin = s[0]
        if cin % groups or filters % groups:
            raise NetworkError(f"groups={groups} must divide the input channels ({cin}) and filters ({filters})")
        m = ConvND(nd, cin, filters, k, strides, dil, _padding_mode(cfg, nd), groups,
                   bool(cfg_get(cfg, "use_bias", True)), act)
        _init(m.weight, cfg, "kernel_initializer", k + (cin // groups, filters))
        if m.bias is not None:
            _init(m.bias, cfg, "bias_initializer", (filters,))
        return m, m.output_shape([s])

    return build


def _build_depthwise(nd: int):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        s, k, strides, dil, act = _common(cfg, nd, input_shapes, ctx)
        mult = int_arg(cfg, "depth_multiplier", 1)
        cin = s[0]
        m = ConvND(nd, cin, cin * mult, k, strides, dil, _padding_mode(cfg, nd), cin,
                   bool(cfg_get(cfg, "use_bias", True)), act)
        _init(m.weight, cfg, "depthwise_initializer", k + (cin, mult))
        if m.bias is not None:
            _init(m.bias, cfg, "bias_initializer", (cin * mult,))
        return m, m.output_shape([s])

    return build


def _build_separable(nd: int):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        s, k, strides, dil, act = _common(cfg, nd, input_shapes, ctx)
        mult = int_arg(cfg, "depth_multiplier", 1)
        filters = int_arg(cfg, "filters")
        cin = s[0]
        m = SeparableConvND(nd, cin, filters, mult, k, strides, dil, _padding_mode(cfg, nd),
                            bool(cfg_get(cfg, "use_bias", True)), act)
        _init(m.depthwise_weight, cfg, "depthwise_initializer", k + (cin, mult))
        _init(m.pointwise_weight, cfg, "pointwise_initializer", (1,) * nd + (cin * mult, filters))
        if m.bias is not None:
            _init(m.bias, cfg, "bias_initializer", (filters,))
        return m, m.output_shape([s])

    return build


def _build_transpose(nd: int):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        s, k, strides, dil, act = _common(cfg, nd, input_shapes, ctx)
        filters = int_arg(cfg, "filters")
        mode = _padding_mode(cfg, nd)
        if mode not in ("valid", "same"):
            raise NetworkError(f"transposed convolutions support padding 'valid' or 'same', received {mode!r}")
        if int_arg(cfg, "groups", 1) != 1:
            raise NetworkError("grouped transposed convolutions are not supported")
        op = cfg.get("output_padding")
        op = None if op is None else ntuple(op, nd, "output_padding", minimum=0)
        cin = s[0]
        m = ConvTransposeND(nd, cin, filters, k, strides, dil, mode == "same", op,
                            bool(cfg_get(cfg, "use_bias", True)), act)
        _init(m.weight, cfg, "kernel_initializer", k + (filters, cin))
        if m.bias is not None:
            _init(m.bias, cfg, "bias_initializer", (filters,))
        return m, m.output_shape([s])

    return build


for _nd in (1, 2, 3):
    register(f"Conv{_nd}D", *([f"Convolution{_nd}D"]), fused_activation=True)(_build_conv(_nd))
    register(f"DepthwiseConv{_nd}D", fused_activation=True)(_build_depthwise(_nd))
    register(f"Conv{_nd}DTranspose", fused_activation=True)(_build_transpose(_nd))
for _nd in (1, 2):
    register(f"SeparableConv{_nd}D", fused_activation=True)(_build_separable(_nd))
