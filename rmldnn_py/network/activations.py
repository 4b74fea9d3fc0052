"""Activation functions by Keras name (SPEC §4.5), looked up case-insensitively.

``make_activation(spec, rank, ctx)`` resolves a config value (a string, ``None``, or a Keras 3
serialised activation object) once, at build time, into a stateless :class:`Activation` module.
Softmax-type activations act on the channel axis (Keras' last axis) unless ``axis`` is given
(a Keras axis, mapped with SPEC §4.3).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import NetworkError
from ..registry import Registry

ACTIVATIONS = Registry("activation", case_insensitive=True, error_cls=NetworkError)

_LINEAR_NAMES = ("linear", "identity", "none")


def _reg(*names: str, axis: bool = False):
    def deco(fn):
        fn.uses_axis = axis
        ACTIVATIONS.register(names[0], fn, aliases=names[1:])
        return fn

    return deco


@_reg("linear", "identity")
def _linear(x, dim):
    return x


@_reg("relu")
def _relu(x, dim):
    return F.relu(x)


@_reg("relu6")
def _relu6(x, dim):
    return F.relu6(x)


@_reg("leaky_relu")
def _leaky_relu(x, dim):
    return F.leaky_relu(x, 0.2)


@_reg("softmax", axis=True)
def _softmax(x, dim):
    return torch.softmax(x, dim)


@_reg("log_softmax", "log_softmax_v2", axis=True)
def _log_softmax(x, dim):
    return torch.log_softmax(x, dim)


@_reg("sigmoid")
def _sigmoid(x, dim):
    return torch.sigmoid(x)


@_reg("tanh")
def _tanh(x, dim):
    return torch.tanh(x)


@_reg("swish", "silu")
def _silu(x, dim):
    return F.silu(x)


@_reg("elu")
def _elu(x, dim):
    return F.elu(x)


@_reg("selu")
def _selu(x, dim):
    return F.selu(x)


@_reg("softplus")
def _softplus(x, dim):
    return F.softplus(x)


@_reg("softsign")
def _softsign(x, dim):
    return F.softsign(x)


@_reg("gelu")
def _gelu(x, dim):
    # keras.activations.gelu defaults to approximate=False (Keras 3 and tf.keras).
    return F.gelu(x)


@_reg("hard_sigmoid")
def _hard_sigmoid(x, dim):
    # Keras 3 definition: relu6(x + 3) / 6 (tf.keras 2 used clip(0.2 x + 0.5, 0, 1)).
    return F.hardsigmoid(x)


@_reg("hard_sigmoid_tf_keras2")
def _hard_sigmoid_v2(x, dim):
    # tf.keras 2 definition: clip(0.2 x + 0.5, 0, 1)
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


@_reg("hard_silu", "hard_swish")
def _hard_silu(x, dim):
    return F.hardswish(x)


@_reg("exponential")
def _exp(x, dim):
    return torch.exp(x)


@_reg("mish")
def _mish(x, dim):
    return F.mish(x)


@_reg("log_sigmoid")
def _log_sigmoid(x, dim):
    return F.logsigmoid(x)


def activation_name(spec: Any) -> str:
    """Config value → lower-case activation name (``None``/absent → ``linear``).

    Keras 3 may serialise an activation as an object: ``{"class_name": "function", "config":
    "relu", ...}`` or ``{"class_name": "ReLU", ...}``; the name is taken from it.
    """
    if spec is None:
        return "linear"
    if isinstance(spec, dict):
        cfg = spec.get("config")
        if isinstance(cfg, str):
            return cfg.lower()
        if isinstance(cfg, dict) and isinstance(cfg.get("name"), str) and spec.get("class_name") in ("function", None):
            return cfg["name"].lower()
        name = spec.get("class_name") or spec.get("registered_name")
        if not isinstance(name, str):
            raise NetworkError(f"cannot read activation {spec!r}")
        return _snake(name)
    if isinstance(spec, str):
        return spec.lower()
    raise NetworkError(f"cannot read activation {spec!r}")


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0 and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    s = "".join(out)
    return {"re_lu": "relu", "leaky_re_lu": "leaky_relu", "p_re_lu": "prelu"}.get(s, s)


def is_linear(spec: Any) -> bool:
    """True when the activation is the identity (``linear``, ``None`` or absent)."""
    return activation_name(spec) in _LINEAR_NAMES


class Activation(torch.nn.Module):
    """A stateless activation; ``dim`` is the torch dim for softmax-type functions."""

    def __init__(self, name: str, dim: int = 1) -> None:
        super().__init__()
        self.name = ACTIVATIONS.canonical(name)
        self.fn: Callable = ACTIVATIONS.get(name)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, self.dim)

    def extra_repr(self) -> str:
        return self.name + (f", dim={self.dim}" if self.fn.uses_axis else "")


def make_activation(spec: Any, rank: int, dim: int | None = None, *, keras2: bool = False) -> Activation | None:
    """Activation module for a config value, or None when it is linear.

    Args:
        rank: tensor rank including batch (used to default the softmax dim to the channel axis).
        dim: explicit torch dim for softmax-type activations.
        keras2: the file comes from tf.keras 2 (``hard_sigmoid`` then means clip(0.2·x + 0.5, 0, 1)).
    """
    name = activation_name(spec)
    if keras2 and name == "hard_sigmoid":
        name = "hard_sigmoid_tf_keras2"
    if name in _LINEAR_NAMES:
        return None
    if name not in ACTIVATIONS:
        ACTIVATIONS.get(name)  # raises with the valid names
    if dim is None:
        dim = 1 if rank >= 2 else 0
    return Activation(name, dim)


__all__ = ["ACTIVATIONS", "Activation", "activation_name", "is_linear", "make_activation"]
