"""Reshaping family (SPEC §4.3, §4.4): Flatten, Reshape, Permute, UpSamplingND, ZeroPaddingND,
CroppingND.

Flatten / Reshape / Permute reproduce Keras element order: in a channels_last model the tensor
``(N, C, *S)`` is first viewed as Keras' ``(N, *S, C)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import NetworkError
from .base import (DEFAULT_CTX, Ctx, KerasLayer, cfg_get, check_data_format, fmt_shape, int_value,
                   ntuple, prod, register, show, single_input)


class Flatten(KerasLayer):
    """``(N, C, *S)`` → ``(N, C·ΠS)`` in Keras order (channels-last unless ``to_last`` is False)."""

    def __init__(self, to_last: bool) -> None:
        super().__init__()
        self.to_last = to_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.to_last and x.dim() >= 3:
            x = x.movedim(1, -1)
        return x.flatten(1)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes)
        return (prod(s),)


@register("Flatten")
def build_flatten(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    fmt = cfg_get(cfg, "data_format", "channels_last" if ctx.channels_last else "channels_first")
    if fmt not in ("channels_last", "channels_first"):
        raise NetworkError(f"unsupported data_format '{fmt}'")
    # Keras: channels_first moves axis 1 to the end before flattening. Our tensor is the Keras
    # tensor with its last axis moved to position 1 (channels_last models) or the Keras tensor
    # itself (channels_first models).
    if ctx.channels_last:
        to_last = fmt == "channels_last"
        if not to_last:
            raise NetworkError("Flatten with data_format 'channels_first' in a channels_last model is not supported")
    else:
        to_last = fmt == "channels_first"
    m = Flatten(to_last)
    return m, m.output_shape(input_shapes)


class Reshape(KerasLayer):
    """Keras Reshape: view as Keras layout, reshape to ``(N, *target)``, back to channel-first."""

    def __init__(self, target: tuple[int, ...], ctx: Ctx) -> None:
        super().__init__()
        self.target = target
        self.channels_last = ctx.channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() >= 3:
            x = x.movedim(1, -1)
        y = x.reshape((x.shape[0],) + self.target)
        if self.channels_last and y.dim() >= 3:
            y = y.movedim(-1, 1)
        return y

    def output_shape(self, input_shapes):
        s = single_input(input_shapes)
        total = prod(s)
        target = list(self.target)
        if target.count(-1) > 1:
            raise NetworkError(f"target_shape {tuple(target)} has more than one -1")
        known = prod([t for t in target if t != -1])
        if -1 in target:
            if total is None:
                target[target.index(-1)] = None
            else:
                if known == 0 or total % known:
                    raise NetworkError(f"cannot reshape input of shape {fmt_shape(s)} to {tuple(self.target)}")
                target[target.index(-1)] = total // known
        elif total is not None and total != known:
            raise NetworkError(f"cannot reshape input of shape {fmt_shape(s)} "
                               f"({total} values) to {tuple(self.target)} ({known} values)")
        if self.channels_last and len(target) >= 2:
            return (target[-1],) + tuple(target[:-1])
        return tuple(target)


@register("Reshape")
def build_reshape(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    t = cfg.get("target_shape")
    if not isinstance(t, (list, tuple)):
        raise NetworkError("'target_shape' must be a list of ints")
    try:
        target = tuple(-1 if v is None or v == -1 else int_value(v, "target_shape") for v in t)
    except NetworkError:
        raise NetworkError(f"'target_shape' must hold positive integers (or one -1/null for the "
                           f"inferred size), received {show(list(t))}") from None
    m = Reshape(target, ctx)
    return m, m.output_shape(input_shapes)


class Permute(KerasLayer):
    """Keras Permute (``dims`` 1-based, batch excluded) applied in Keras layout."""

    def __init__(self, dims: tuple[int, ...], ctx: Ctx) -> None:
        super().__init__()
        self.dims = dims
        self.ctx = ctx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ctx.from_keras(self.ctx.to_keras(x).permute((0,) + self.dims))

    def output_shape(self, input_shapes):
        s = single_input(input_shapes)
        if sorted(self.dims) != list(range(1, len(s) + 1)):
            raise NetworkError(f"'dims' {self.dims} is not a permutation of 1..{len(s)}")
        k = self.ctx.keras_shape(s)
        return self.ctx.torch_shape(tuple(k[d - 1] for d in self.dims))


@register("Permute")
def build_permute(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    dims = cfg.get("dims", ())
    if not isinstance(dims, (list, tuple)):
        raise NetworkError(f"'dims' must be a list of integers, received {show(dims)}")
    m = Permute(tuple(int_value(d, "dims") for d in dims), ctx)
    return m, m.output_shape(input_shapes)


class UpSampling(KerasLayer):
    """Keras UpSamplingND: nearest repetition, or bilinear with half-pixel centres (2D)."""

    def __init__(self, nd: int, size: tuple[int, ...], mode: str) -> None:
        super().__init__()
        self.nd, self.size, self.mode = nd, size, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            # integer factors: output[i] = input[floor(i / f)], i.e. Keras' repetition (one
            # interpolate kernel instead of one repeat_interleave copy per axis: ~2x faster with
            # its backward on 3D volumes)
            if all(f == 1 for f in self.size):
                return x
            return F.interpolate(x, scale_factor=tuple(float(f) for f in self.size),
                                 mode="nearest")
        return F.interpolate(x, scale_factor=tuple(float(f) for f in self.size), mode=self.mode,
                             align_corners=False)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes, self.nd + 1)
        return (s[0],) + tuple(None if n is None else n * f for n, f in zip(s[1:], self.size))


def _build_upsampling(nd: int):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        check_data_format(cfg, ctx)
        size = ntuple(cfg_get(cfg, "size", 2), nd, "size")
        interp = str(cfg_get(cfg, "interpolation", "nearest")).lower()
        modes = {"nearest": "nearest", "bilinear": "bilinear"} if nd == 2 else {"nearest": "nearest"}
        if interp not in modes:
            raise NetworkError(f"unsupported interpolation '{interp}' (expected one of: {', '.join(modes)})")
        m = UpSampling(nd, size, modes[interp])
        return m, m.output_shape(input_shapes)

    return build


def _pairs(value, nd: int, key: str) -> tuple[tuple[int, int], ...]:
    """int | [a, b, ...] | [[b0, a0], [b1, a1], ...] → ((before, after), ...) per spatial axis.

    For 1D layers a two-int list means (before, after) as in Keras ZeroPadding1D/Cropping1D.
    """
    def one(v) -> int:
        try:
            return int_value(v, key, 0)
        except NetworkError:
            raise NetworkError(f"'{key}' must hold non-negative integers, received {show(value)}") from None

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ((one(value), one(value)),) * nd
    if not isinstance(value, (list, tuple)):
        raise NetworkError(f"cannot read '{key}': {value!r}")
    if nd == 1 and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return ((one(value[0]), one(value[1])),)
    if len(value) != nd:
        raise NetworkError(f"'{key}' must have {nd} entries, received {value!r}")
    out = []
    for v in value:
        if isinstance(v, (list, tuple)):
            if len(v) != 2:
                raise NetworkError(f"'{key}' entries must be ints or [before, after] pairs, received {value!r}")
            out.append((one(v[0]), one(v[1])))
        else:
            out.append((one(v), one(v)))
    return tuple(out)


class ZeroPadding(KerasLayer):
    """Keras ZeroPaddingND on the spatial axes of ``(N, C, *S)``."""

    def __init__(self, nd: int, pads: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.nd, self.pads = nd, pads
        self._flat: list[int] = []
        for b, a in reversed(pads):
            self._flat += [b, a]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self._flat)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes, self.nd + 1)
        return (s[0],) + tuple(None if n is None else n + b + a for n, (b, a) in zip(s[1:], self.pads))


class Cropping(KerasLayer):
    """Keras CroppingND on the spatial axes of ``(N, C, *S)``."""

    def __init__(self, nd: int, crops: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.nd, self.crops = nd, crops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = [slice(None), slice(None)]
        for i, (b, a) in enumerate(self.crops):
            idx.append(slice(b, x.shape[2 + i] - a))
        return x[tuple(idx)]

    def output_shape(self, input_shapes):
        s = single_input(input_shapes, self.nd + 1)
        out = []
        for n, (b, a) in zip(s[1:], self.crops):
            if n is not None and n - b - a < 1:
                raise NetworkError(f"cropping {self.crops} removes all of the input of shape {fmt_shape(s)}")
            out.append(None if n is None else n - b - a)
        return (s[0],) + tuple(out)


def _build_zeropad(nd: int):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        check_data_format(cfg, ctx)
        m = ZeroPadding(nd, _pairs(cfg_get(cfg, "padding", 1), nd, "padding"))
        return m, m.output_shape(input_shapes)

    return build


def _build_crop(nd: int):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        check_data_format(cfg, ctx)
        m = Cropping(nd, _pairs(cfg_get(cfg, "cropping", 1 if nd == 1 else 0), nd, "cropping"))
        return m, m.output_shape(input_shapes)

    return build


for _nd in (1, 2, 3):
    register(f"UpSampling{_nd}D")(_build_upsampling(_nd))
    register(f"ZeroPadding{_nd}D")(_build_zeropad(_nd))
    register(f"Cropping{_nd}D")(_build_crop(_nd))
