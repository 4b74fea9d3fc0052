"""Pooling family (SPEC §4.4): Max/AveragePoolingND, GlobalMax/GlobalAveragePoolingND.

``padding: same`` follows TensorFlow: asymmetric padding (extra cell at the end); padded cells
never win a max and are excluded from averages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import NetworkError
from .base import (DEFAULT_CTX, Ctx, KerasLayer, cfg_get, check_data_format, ntuple, register,
                   single_input, tf_same_pad)

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class Pool(KerasLayer):
    """Keras Max/AveragePoolingND on ``(N, C, *S)``."""

    def __init__(self, nd: int, kind: str, pool: tuple, strides: tuple, same: bool) -> None:
        super().__init__()
        self.nd, self.kind, self.pool_size, self.stride, self.same = nd, kind, pool, strides, same

    def _pads(self, sizes) -> list[tuple[int, int]]:
        return [tf_same_pad(int(n), k, s) for n, k, s in zip(sizes, self.pool_size, self.stride)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same:
            fn = _MAX[self.nd] if self.kind == "max" else _AVG[self.nd]
            return fn(x, self.pool_size, self.stride)
        pads = self._pads(x.shape[2:])
        flat: list[int] = []
        for b, a in reversed(pads):
            flat += [b, a]
        if not any(flat):
            fn = _MAX[self.nd] if self.kind == "max" else _AVG[self.nd]
            return fn(x, self.pool_size, self.stride)
        if self.kind == "max":
            return _MAX[self.nd](F.pad(x, flat, value=float("-inf")), self.pool_size, self.stride)
        # average over the real cells only: pooled sum / pooled count
        ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
        avg = _AVG[self.nd]
        num = avg(F.pad(x, flat), self.pool_size, self.stride)
        den = avg(F.pad(ones, flat), self.pool_size, self.stride)
        return num / den

    def output_shape(self, input_shapes):
        s = single_input(input_shapes, self.nd + 1)
        out = []
        for n, k, st in zip(s[1:], self.pool_size, self.stride):
            if n is None:
                out.append(None)
            elif self.same:
                out.append(-(-n // st))
            else:
                o = (n - k) // st + 1
                if o < 1:
                    raise NetworkError(f"input spatial size {s[1:]} is smaller than pool_size {self.pool_size}")
                out.append(o)
        return (s[0],) + tuple(out)

    def extra_repr(self) -> str:
        return f"{self.kind}, pool_size={self.pool_size}, stride={self.stride}, same={self.same}"


def _build_pool(nd: int, kind: str):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        check_data_format(cfg, ctx)
        pool = ntuple(cfg_get(cfg, "pool_size", 2), nd, "pool_size")
        strides = ntuple(cfg_get(cfg, "strides", pool), nd, "strides")
        padding = str(cfg_get(cfg, "padding", "valid")).lower()
        if padding not in ("valid", "same"):
            raise NetworkError(f"unsupported padding '{padding}' (expected 'valid' or 'same')")
        m = Pool(nd, kind, pool, strides, padding == "same")
        return m, m.output_shape(input_shapes)

    return build


class GlobalPool(KerasLayer):
    """Keras GlobalMax/GlobalAveragePoolingND: ``(N, C, *S)`` → ``(N, C)`` or ``(N, C, 1, ...)``."""

    def __init__(self, nd: int, kind: str, keepdims: bool, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.nd, self.kind, self.keepdims, self.dims = nd, kind, keepdims, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return torch.amax(x, dim=self.dims, keepdim=self.keepdims)
        return torch.mean(x, dim=self.dims, keepdim=self.keepdims)

    def output_shape(self, input_shapes):
        s = single_input(input_shapes, self.nd + 1)
        if self.keepdims:
            return tuple(1 if i + 1 in self.dims else d for i, d in enumerate(s))
        return tuple(d for i, d in enumerate(s) if i + 1 not in self.dims)


def _build_global(nd: int, kind: str):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        check_data_format(cfg, ctx)
        fmt = cfg.get("data_format") or ("channels_last" if ctx.channels_last else "channels_first")
        if ctx.channels_last and fmt == "channels_last" or (not ctx.channels_last and fmt == "channels_first"):
            dims = tuple(range(2, nd + 2))  # spatial dims of (N, C, *S)
        else:
            raise NetworkError(f"data_format '{fmt}' does not match the model's layout")
        m = GlobalPool(nd, kind, bool(cfg_get(cfg, "keepdims", False)), dims)
        return m, m.output_shape(input_shapes)

    return build


for _nd in (1, 2, 3):
    register(f"MaxPooling{_nd}D", f"MaxPool{_nd}D")(_build_pool(_nd, "max"))
    register(f"AveragePooling{_nd}D", f"AvgPool{_nd}D")(_build_pool(_nd, "avg"))
    register(f"GlobalMaxPooling{_nd}D", f"GlobalMaxPool{_nd}D")(_build_global(_nd, "max"))
    register(f"GlobalAveragePooling{_nd}D", f"GlobalAvgPool{_nd}D")(_build_global(_nd, "avg"))
