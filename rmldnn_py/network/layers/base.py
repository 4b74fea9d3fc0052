"""Shared pieces of the layer builders: the layer registry, the layout context, shape helpers.

Shapes handled here are **torch shapes without the batch axis**: ``(C, *spatial)`` for image-like
tensors, ``(F,)`` for vectors; ``None`` marks a free dimension. A Keras channels-last tensor
``(N, S1, ..., Sk, C)`` is held as ``(N, C, S1, ..., Sk)`` (SPEC §4.3).

A builder is ``builder(config, input_shapes, *, ctx) -> (module, output_shape)``; the module is a
:class:`KerasLayer` that owns its tensors directly (state-dict keys ``<layer>.<tensor>``) and can
recompute its output shape for other input shapes (used by ``KerasNetwork.check_input``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ...errors import NetworkError
from ...registry import Registry

Shape = tuple  # tuple[int | None, ...]


@dataclass(frozen=True)
class LayerEntry:
    """A registered layer type.

    Attributes:
        build: ``(config, input_shapes, *, ctx) -> (module, output_shape)``.
        merge: takes several inputs (Add, Concatenate, ...); all other layers take exactly one.
        fused_activation: the layer has an ``activation`` key that counts as its own operation
            when not linear (SPEC §4.7).
    """

    build: Callable[..., tuple["KerasLayer", Shape]]
    merge: bool = False
    fused_activation: bool = False


LAYERS = Registry("layer type", case_insensitive=False, error_cls=NetworkError)


def register(*names: str, merge: bool = False, fused_activation: bool = False):
    """Decorator registering one builder under one or more exact Keras class names."""

    def deco(fn):
        for n in names:
            LAYERS.register(n, LayerEntry(fn, merge=merge, fused_activation=fused_activation))
        return fn

    return deco


@dataclass(frozen=True)
class Ctx:
    """Model-wide layout information passed to builders.

    ``keras_layout`` is ``"channels_last"`` (Keras tensors are the torch tensors with the channel
    axis moved to the end) or ``"channels_first"`` (a model written entirely in channels_first
    terms: Keras tensors *are* the torch tensors).
    """

    keras_layout: str = "channels_last"
    keras2: bool = False  # the file was written by tf.keras 2 (activation definitions differ slightly)

    @property
    def channels_last(self) -> bool:
        return self.keras_layout == "channels_last"

    def torch_axis(self, axis: Any, rank: int) -> int:
        """Keras axis of a rank-``rank`` tensor (batch included) → torch dim (SPEC §4.3)."""
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise NetworkError(f"expected a single axis, received {list(axis)}")
            axis = axis[0]
        a = int(axis)
        if a < 0:
            a += rank
        if not 0 <= a < rank:
            raise NetworkError(f"axis {axis} is out of range for a tensor of rank {rank}")
        if not self.channels_last or rank <= 2:
            return a
        return 1 if a == rank - 1 else a + 1

    def keras_shape(self, shape: Shape) -> Shape:
        """Torch shape (no batch) → Keras shape (no batch)."""
        if self.channels_last and len(shape) >= 2:
            return tuple(shape[1:]) + (shape[0],)
        return tuple(shape)

    def torch_shape(self, kshape: Sequence) -> Shape:
        """Keras shape (no batch) → torch shape (no batch)."""
        kshape = tuple(kshape)
        if self.channels_last and len(kshape) >= 2:
            return (kshape[-1],) + kshape[:-1]
        return kshape

    def to_keras(self, x: torch.Tensor) -> torch.Tensor:
        """Torch tensor (batch included) → Keras layout."""
        if self.channels_last and x.dim() >= 3:
            return x.movedim(1, -1)
        return x

    def from_keras(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() >= 3:
            return x.movedim(-1, 1)
        return x


DEFAULT_CTX = Ctx()


class KerasLayer(torch.nn.Module):
    """Base class of every layer module: ``output_shape(input_shapes)`` recomputes the shape
    (raising :class:`NetworkError` when the inputs do not fit) without running the layer."""

    def output_shape(self, input_shapes: list[Shape]) -> Shape:  # pragma: no cover - abstract
        raise NotImplementedError


# ----------------------------------------------------------------------------- config helpers

_REQUIRED = object()


def show(value: Any) -> str:
    """A config value as the user wrote it in JSON (``"3"``, ``true``, ``[3, "x"]``)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _describe_min(minimum: int) -> str:
    return {1: "a positive integer", 0: "a non-negative integer"}.get(
        minimum, f"an integer >= {minimum}")


def int_value(value: Any, key: str, minimum: int = 1) -> int:
    """One integer layer argument, checked (Keras: ``expected a positive integer. Received:
    units=-5``): an int (or a float with an integral value, as some tools write ``64.0``) not
    below ``minimum``. Booleans, strings and fractions are refused.

    Raises:
        NetworkError: ``'<key>' must be a positive integer, received -5``.
    """
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        value, ok = int(value), True
    if not ok or value < minimum:
        raise NetworkError(f"'{key}' must be {_describe_min(minimum)}, received {show(value)}")
    return int(value)


def int_arg(cfg: dict, key: str, default: Any = _REQUIRED, minimum: int = 1) -> int:
    """``cfg[key]`` checked by :func:`int_value` (``null`` or absent → ``default``; no default →
    ``'<key>' is required``)."""
    v = cfg.get(key)
    if v is None:
        if default is _REQUIRED:
            raise NetworkError(f"'{key}' is required")
        v = default
    return int_value(v, key, minimum)


def float_arg(cfg: dict, key: str, default: float, *, low: float | None = None,
              high: float | None = None, low_open: bool = False,
              high_open: bool = False) -> float:
    """``cfg[key]`` as a finite float within ``[low, high]`` (``low_open``/``high_open``: the
    bound itself is excluded); ``null`` or absent → ``default``.

    Raises:
        NetworkError: ``'<key>' must be a number in (0, inf), received -1``.
    """
    v = cfg.get(key)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
            (low is not None and (v < low or (low_open and v == low))) or \
            (high is not None and (v > high or (high_open and v == high))):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        rng = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise NetworkError(f"'{key}' must be a number in {rng}, received {show(v)}")
    return float(v)


def ntuple(value: Any, n: int, key: str, minimum: int = 1) -> tuple[int, ...]:
    """An int or a list of n ints (a one-element list is repeated) → tuple of n ints, each
    checked by :func:`int_value` (``minimum`` 1 for sizes/strides/rates, 0 for paddings)."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and n > 1:
            value = list(value) * n
        if len(value) != n:
            raise NetworkError(f"'{key}' must have {n} values, received {list(value)}")
        try:
            return tuple(int_value(v, key, minimum) for v in value)
        except NetworkError:
            raise NetworkError(f"'{key}' must hold {n} values, each {_describe_min(minimum)}, "
                               f"received {show(list(value))}") from None
    if value is None:
        raise NetworkError(f"'{key}' is required")
    return (int_value(value, key, minimum),) * n


def cfg_get(cfg: dict, key: str, default: Any) -> Any:
    v = cfg.get(key, default)
    return default if v is None else v


def single_input(input_shapes: list[Shape], rank: int | None = None, what: str = "") -> Shape:
    """The one input shape; checks the rank (without batch) when given."""
    if len(input_shapes) != 1:
        raise NetworkError(f"expects exactly one input, received {len(input_shapes)}")
    s = tuple(input_shapes[0])
    if rank is not None and len(s) != rank:
        raise NetworkError(f"expects an input of rank {rank + 1} (batch included){what}, "
                           f"received shape {fmt_shape(s)}")
    return s


def fmt_shape(shape: Sequence) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def check_data_format(cfg: dict, ctx: Ctx) -> None:
    """A layer's ``data_format`` must agree with the model layout (mixed models are rejected in graph)."""
    fmt = cfg.get("data_format")
    if fmt not in (None, "channels_last", "channels_first"):
        raise NetworkError(f"unsupported data_format '{fmt}'")


# ----------------------------------------------------------------------------- padding arithmetic

def tf_same_pad(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow 'same' padding of one spatial axis: (before, after) (SPEC §4.4)."""
    k_eff = (k - 1) * d + 1
    total = max((math.ceil(n / s) - 1) * s + k_eff - n, 0)
    return total // 2, total - total // 2


def conv_out_len(n: int | None, k: int, s: int, d: int, pad: tuple[int, int]) -> int | None:
    if n is None:
        return None
    k_eff = (k - 1) * d + 1
    out = (n + pad[0] + pad[1] - k_eff) // s + 1
    return out


def prod(values: Sequence[int | None]) -> int | None:
    p = 1
    for v in values:
        if v is None:
            return None
        p *= v
    return p
