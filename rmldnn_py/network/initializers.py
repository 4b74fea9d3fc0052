"""Keras initializers (SPEC §4.9): fill a torch tensor as Keras would fill the Keras weight.

Fans are computed from the *Keras* weight shape (``(k..., in, out)`` for kernels, Keras
``compute_fans``); values are drawn i.i.d., so the torch layout of the tensor does not matter.
Unknown or absent initializers leave the PyTorch default in place.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

_TRUNC_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]


def compute_fans(keras_shape: Sequence[int]) -> tuple[float, float]:
    shape = tuple(keras_shape)
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


_ALIASES = {
    "glorotuniform": ("vs", 1.0, "fan_avg", "uniform"),
    "glorotnormal": ("vs", 1.0, "fan_avg", "truncated_normal"),
    "heuniform": ("vs", 2.0, "fan_in", "uniform"),
    "henormal": ("vs", 2.0, "fan_in", "truncated_normal"),
    "lecununiform": ("vs", 1.0, "fan_in", "uniform"),
    "lecunnormal": ("vs", 1.0, "fan_in", "truncated_normal"),
}


def _norm_name(name: str) -> str:
    return name.replace("_", "").lower()


def _truncated(t: torch.Tensor, mean: float, std: float) -> None:
    torch.nn.init.trunc_normal_(t, mean=mean, std=std, a=mean - 2 * std, b=mean + 2 * std)


@torch.no_grad()
def apply_initializer(tensor: torch.Tensor, spec: Any, keras_shape: Sequence[int]) -> bool:
    """Fill ``tensor`` according to the Keras initializer ``spec``.

    Returns:
        True if the initializer was recognised and applied, False otherwise (tensor unchanged).
    """
    if spec is None:
        return False
    if isinstance(spec, str):
        name, cfg = spec, {}
    elif isinstance(spec, dict):
        name, cfg = spec.get("class_name"), spec.get("config") or {}
        if not isinstance(name, str):
            return False
    else:
        return False
    key = _norm_name(name)
    if key in ("zeros", "zero"):
        tensor.zero_()
        return True
    if key in ("ones", "one"):
        tensor.fill_(1.0)
        return True
    if key == "constant":
        tensor.fill_(float(cfg.get("value", 0.0)))
        return True
    if key in ("randomnormal", "normal"):
        tensor.normal_(float(cfg.get("mean", 0.0)), float(cfg.get("stddev", 0.05)))
        return True
    if key in ("randomuniform", "uniform"):
        tensor.uniform_(float(cfg.get("minval", -0.05)), float(cfg.get("maxval", 0.05)))
        return True
    if key == "truncatednormal":
        _truncated(tensor, float(cfg.get("mean", 0.0)), float(cfg.get("stddev", 0.05)))
        return True
    if key in _ALIASES:
        _, scale, mode, dist = _ALIASES[key]
    elif key == "variancescaling":
        scale = float(cfg.get("scale", 1.0))
        mode = str(cfg.get("mode", "fan_in")).lower()
        dist = str(cfg.get("distribution", "truncated_normal")).lower()
    else:
        return False
    fan_in, fan_out = compute_fans(keras_shape)
    n = {"fan_in": fan_in, "fan_out": fan_out}.get(mode, (fan_in + fan_out) / 2.0)
    scale = scale / max(1.0, n)
    if dist == "uniform":
        limit = math.sqrt(3.0 * scale)
        tensor.uniform_(-limit, limit)
    elif dist in ("truncated_normal", "normal"):  # Keras 2.0 "normal" means truncated
        _truncated(tensor, 0.0, math.sqrt(scale) / _TRUNC_STD)
    else:  # untruncated_normal
        tensor.normal_(0.0, math.sqrt(scale))
    return True
