"""Merge family (SPEC §4.4): Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate.

Inputs are channel-first tensors of equal rank; size-1 dimensions broadcast as in Keras.
"""

from __future__ import annotations

import torch

from ...errors import NetworkError
from .base import DEFAULT_CTX, Ctx, KerasLayer, cfg_get, fmt_shape, register


def _broadcast(shapes) -> tuple:
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise NetworkError(f"inputs must have the same rank, received shapes "
                           f"{', '.join(fmt_shape(s) for s in shapes)}")
    out = []
    for dims in zip(*shapes):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise NetworkError(f"incompatible input shapes {', '.join(fmt_shape(s) for s in shapes)}")
        if known:
            out.append(known.pop())
        elif None in dims:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


class Merge(KerasLayer):
    """Element-wise merge of several ``(N, C, *S)`` tensors."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        op = self.op
        if op == "subtract":
            return xs[0] - xs[1]
        y = xs[0]
        for x in xs[1:]:
            if op in ("add", "average"):
                y = y + x
            elif op == "multiply":
                y = y * x
            elif op == "maximum":
                y = torch.maximum(y, x)
            else:
                y = torch.minimum(y, x)
        if op == "average":
            y = y / len(xs)
        return y

    def output_shape(self, input_shapes):
        if self.op == "subtract" and len(input_shapes) != 2:
            raise NetworkError(f"Subtract takes exactly 2 inputs, received {len(input_shapes)}")
        if len(input_shapes) < 1:
            raise NetworkError("a merge layer needs at least one input")
        return _broadcast([tuple(s) for s in input_shapes])

    def extra_repr(self) -> str:
        return self.op


def _build_merge(op: str):
    def build(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
        m = Merge(op)
        return m, m.output_shape(input_shapes)

    return build


for _cls, _op in (("Add", "add"), ("Subtract", "subtract"), ("Multiply", "multiply"),
                  ("Average", "average"), ("Maximum", "maximum"), ("Minimum", "minimum")):
    register(_cls, merge=True)(_build_merge(_op))


class Concatenate(KerasLayer):
    """Keras Concatenate along a (mapped) axis."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.dim, self.rank = dim, rank

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)

    def output_shape(self, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        if any(len(s) + 1 != self.rank for s in shapes):
            raise NetworkError(f"inputs must have rank {self.rank}, received shapes "
                               f"{', '.join(fmt_shape(s) for s in shapes)}")
        out = []
        for i, dims in enumerate(zip(*shapes)):
            if i + 1 == self.dim:
                out.append(None if None in dims else sum(dims))
            else:
                known = {d for d in dims if d is not None}
                if len(known) > 1:
                    raise NetworkError(f"inputs must match except on the concatenation axis, received "
                                       f"shapes {', '.join(fmt_shape(s) for s in shapes)}")
                out.append(known.pop() if known else None)
        return tuple(out)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


@register("Concatenate", merge=True)
def build_concatenate(cfg: dict, input_shapes, *, ctx: Ctx = DEFAULT_CTX):
    if not input_shapes:
        raise NetworkError("Concatenate needs at least one input")
    rank = len(input_shapes[0]) + 1
    dim = ctx.torch_axis(cfg_get(cfg, "axis", -1), rank)
    if dim == 0:
        raise NetworkError("concatenation along the batch axis is not supported")
    m = Concatenate(dim, rank)
    return m, m.output_shape(input_shapes)
