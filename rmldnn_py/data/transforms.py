"""Transforms of ``transforms`` / ``input_transforms`` / ``target_transforms`` (SPEC §3.4, §5.10).

Every transform is a :class:`torchvision.transforms.v2.Transform` (torchvision's own class where
its behaviour matches the spec, a small subclass otherwise). A pipeline step calls it on the input
``tv_tensors.Image`` and the target together, so one random draw is shared (a flipped image gets a
flipped mask); targets with ``target_is_mask`` are ``tv_tensors.Mask`` and therefore resized /
rotated / zoomed with nearest-neighbour interpolation by torchvision's kernels.

Conventions (see the docstrings): sizes are ``[height, width]``; bilinear resizing does **not**
antialias (it reproduces OpenCV's ``INTER_LINEAR``, which the original tool used); rotations are
clockwise for positive angles, about the centre, same size, uncovered areas filled with 0.

Mask targets (``target_is_mask``) stay float32 ``(C, H, W)`` (``(1, H, W)`` with
``target_grayscale``) holding the decoded values (``k / 255`` for 8-bit files), not int64 class
maps: ``normalize {std: 1/255}`` must bring T-PETS masks back to their integers 0/1/2 and
binary 0/255 masks must reach BCE as 0/1 (SPEC §5.10, §11.6–11.8); losses round float class
targets to int64 themselves (SPEC §6.3). Only the interpolation (nearest) differs for masks.

Registry ``TRANSFORMS`` (case-insensitive): name → :class:`TransformInfo`. Random transforms
(``random``) are applied to training data only (SPEC §5.9).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

from ..config.types import TransformSpec
from ..errors import ConfigError, DataError
from ..log import fmt_g
from ..registry import Registry

BILINEAR = v2.InterpolationMode.BILINEAR
_LUMA = (0.299, 0.587, 0.114)   # R, G, B


# --------------------------------------------------------------------------------------------
# custom v2 transforms
# --------------------------------------------------------------------------------------------

class CenterCrop(v2.Transform):
    """Centred ``[h, w]`` window, offsets ``floor((H - h) / 2)``, ``floor((W - w) / 2)``
    (torchvision's CenterCrop rounds and pads instead). A window larger than the image is an
    error."""

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask)

    def __init__(self, size: Sequence[int]) -> None:
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        H, W = query_size(flat_inputs)
        h, w = self.size
        if h > H or w > W:
            raise ValueError(f"crop window {h}x{w} is larger than the image {H}x{W}")
        return dict(top=(H - h) // 2, left=(W - w) // 2, height=h, width=w)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


class JitterCrop(v2.Transform):
    """For each spatial dim i: ``c_i ~ U[0, cmax)``, ``m_i = floor(c_i * S_i / 2)``, keep
    ``S_i - m_i`` pixels starting at a random offset in ``[0, m_i]``. The size varies per draw."""

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask)

    def __init__(self, cmax: float) -> None:
        super().__init__()
        self.cmax = float(cmax)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        H, W = query_size(flat_inputs)
        c = torch.rand(2) * self.cmax
        mh, mw = int(math.floor(c[0].item() * H / 2)), int(math.floor(c[1].item() * W / 2))
        top = int(torch.randint(0, mh + 1, ()).item())
        left = int(torch.randint(0, mw + 1, ()).item())
        return dict(top=top, left=left, height=H - mh, width=W - mw)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


class RandomZoom(v2.Transform):
    """``c ~ U[0, cmax)``; remove ``floor(c * S_i / 2)`` pixels from each side of dim i, then
    resize back to ``(H, W)`` (bilinear, nearest for masks)."""

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask)

    def __init__(self, cmax: float) -> None:
        super().__init__()
        self.cmax = float(cmax)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        H, W = query_size(flat_inputs)
        c = torch.rand(()).item() * self.cmax
        mh, mw = int(math.floor(c * H / 2)), int(math.floor(c * W / 2))
        return dict(top=mh, left=mw, height=H - 2 * mh, width=W - 2 * mw, size=[H, W])

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resized_crop, inpt, **params, interpolation=BILINEAR,
                                 antialias=False)


class Rotate(v2.Transform):
    """Fixed rotation by ``degrees`` **clockwise** about the centre (torchvision angles are
    counter-clockwise, hence the sign), same size; outside pixels read as 0 (zero padding)."""

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask)

    def __init__(self, degrees: float) -> None:
        super().__init__()
        self.degrees = float(degrees)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.rotate, inpt, angle=-self.degrees, interpolation=BILINEAR)


class RandomRotate(v2.Transform):
    """Clockwise rotation by an angle ``~ U[-alpha, alpha]``."""

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask)

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = abs(float(alpha))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return dict(angle=torch.empty(()).uniform_(-self.alpha, self.alpha).item())

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.rotate, inpt, angle=-params["angle"], interpolation=BILINEAR)


class Normalize(v2.Transform):
    """``x' = (x - mean) / std`` on images **and** masks (T-PETS divides masks by 1/255); scalars
    or per-channel lists. Works for samples of any rank ``(C, *spatial)``."""

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask, torch.Tensor)

    def __init__(self, mean: Any = 0.0, std: Any = 1.0) -> None:
        super().__init__()
        self.mean = mean
        self.std = std

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x = inpt.as_subclass(torch.Tensor)
        if not x.is_floating_point():
            x = x.to(torch.float32)
        # Image / Mask: 2D samples (C, H, W) or batches (N, C, H, W): channels at -3;
        # plain tensors: one sample (C, *spatial) of any rank: channels at 0
        trailing = 2 if isinstance(inpt, tv_tensors.TVTensor) else x.ndim - 1
        mean = self._per_channel(self.mean, x, trailing)
        std = self._per_channel(self.std, x, trailing)
        out = (x - mean) / std
        if isinstance(inpt, tv_tensors.Mask):   # std 0.003921568 ≈ 1/255: exact integers (§11.6)
            out = torch.where((out - out.round()).abs() < 1e-3, out.round(), out)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    @staticmethod
    def _per_channel(v: Any, x: torch.Tensor, trailing: int) -> Any:
        if isinstance(v, numbers.Number):
            return float(v)
        vals = [float(a) for a in v]
        c = x.shape[-1 - trailing]
        if len(vals) == 1:
            return vals[0]
        if len(vals) != c:
            raise ValueError(f"normalize has {len(vals)} values per channel for a sample with "
                             f"{c} channels")
        return torch.tensor(vals, dtype=x.dtype).reshape(c, *([1] * trailing))


def _rgb_to_hsv(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
    # OpenCV float convention: H in [0, 360), S and V in [0, 1]
    v = torch.maximum(torch.maximum(r, g), b)
    mn = torch.minimum(torch.minimum(r, g), b)
    d = v - mn
    s = torch.where(v > 0, d / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    dd = torch.where(d > 0, d, torch.ones_like(d))
    h = torch.where(v == r, 60 * (g - b) / dd,
                    torch.where(v == g, 120 + 60 * (b - r) / dd, 240 + 60 * (r - g) / dd))
    h = torch.where(d > 0, h, torch.zeros_like(h))
    h = torch.where(h < 0, h + 360, h)
    return [h, s, v]


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> list[torch.Tensor]:
    hh = (h % 360) / 60
    i = torch.floor(hh)
    f = hh - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.to(torch.int64) % 6
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = []
    for ch in range(3):
        res = torch.zeros_like(v)
        for k in range(6):
            res = torch.where(i == k, table[k][ch], res)
        out.append(res)
    return out


def _ycrcb(r, g, b):
    y = _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b
    return [y, (r - y) * 0.713 + 0.5, (b - y) * 0.564 + 0.5]


def _ycrcb_to_rgb(y, cr, cb):
    return [y + 1.403 * (cr - 0.5), y - 0.714 * (cr - 0.5) - 0.344 * (cb - 0.5),
            y + 1.773 * (cb - 0.5)]


def _rgb_in(order: str) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    return (lambda x: list(x.unbind(-3))) if order == "RGB" else (lambda x: list(x.unbind(-3))[::-1])


def _rgb_out(order: str) -> Callable[[list[torch.Tensor]], torch.Tensor]:
    return (lambda c: torch.stack(c, -3)) if order == "RGB" else (lambda c: torch.stack(c[::-1], -3))


def _color_table() -> dict[str, tuple[int, Callable[[torch.Tensor], torch.Tensor]]]:
    """OpenCV ``COLOR_<code>`` conversions for float images in [0, 1]:
    code → (input channels, function on ``(..., C, H, W)``)."""
    t: dict[str, tuple[int, Callable]] = {
        "BGR2RGB": (3, lambda x: x.flip(-3)),
        "RGB2BGR": (3, lambda x: x.flip(-3)),
    }
    for o in ("BGR", "RGB"):
        fin, fout = _rgb_in(o), _rgb_out(o)
        t[f"{o}2GRAY"] = (3, lambda x, fin=fin: (lambda c: (_LUMA[0] * c[0] + _LUMA[1] * c[1]
                                                          + _LUMA[2] * c[2]).unsqueeze(-3))(fin(x)))
        t[f"GRAY2{o}"] = (1, lambda x: x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous())
        t[f"{o}2HSV"] = (3, lambda x, fin=fin: torch.stack(_rgb_to_hsv(*fin(x)), -3))
        t[f"HSV2{o}"] = (3, lambda x, fout=fout: fout(_hsv_to_rgb(*x.unbind(-3))))
        t[f"{o}2YCRCB"] = (3, lambda x, fin=fin: torch.stack(_ycrcb(*fin(x)), -3))
        t[f"YCRCB2{o}"] = (3, lambda x, fout=fout: fout(_ycrcb_to_rgb(*x.unbind(-3))))
    return t


COLOR_CONVERSIONS = _color_table()


class ConvertColor(v2.Transform):
    """OpenCV colour conversion (``BGR2RGB``, ``BGR2GRAY``, ``GRAY2BGR``, ``BGR2HSV``,
    ``BGR2YCrCb`` and the RGB / inverse variants), float convention (HSV: H in degrees).
    Images whose channel count does not fit the code are left unchanged; masks are never
    converted."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code.upper()
        self.channels, self.fn = COLOR_CONVERSIONS[self.code]

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if inpt.shape[-3] != self.channels:
            return inpt
        return tv_tensors.wrap(self.fn(inpt.as_subclass(torch.Tensor)), like=inpt)


# --------------------------------------------------------------------------------------------
# pipeline steps
# --------------------------------------------------------------------------------------------

Pair = tuple[torch.Tensor, Optional[torch.Tensor]]


class V2Step:
    """Applies one v2 transform to ``(input, target)`` with a single random draw."""

    def __init__(self, transform: v2.Transform) -> None:
        self.transform = transform

    def __call__(self, inp: torch.Tensor, tgt: Optional[torch.Tensor]) -> Pair:
        if tgt is None:
            return self.transform(inp), None
        if not isinstance(inp, tv_tensors.TVTensor):
            # 1D / 3D samples (normalize only, deterministic): one call per tensor, because v2
            # treats only the first plain tensor of a sample as an image
            return self.transform(inp), self.transform(tgt)
        return self.transform(inp, tgt)


class RandomPatchesStep:
    """Inpainting pairs: ``number`` square windows of side ``size`` at uniform positions fully
    inside the image (overlaps allowed), M = their union; input → ``image * (1 - M)``,
    target → ``image * M`` (any loaded target is replaced)."""

    def __init__(self, number: int, size: int) -> None:
        self.number, self.size = int(number), int(size)

    def mask(self, H: int, W: int) -> torch.Tensor:
        k = self.size
        if k > H or k > W:
            raise ValueError(f"patch size {k} is larger than the image {H}x{W}")
        m = torch.zeros(H, W)
        for _ in range(self.number):
            top = int(torch.randint(0, H - k + 1, ()).item())
            left = int(torch.randint(0, W - k + 1, ()).item())
            m[top:top + k, left:left + k] = 1.0
        return m

    def __call__(self, inp: torch.Tensor, tgt: Optional[torch.Tensor]) -> Pair:
        m = self.mask(inp.shape[-2], inp.shape[-1])
        x = inp.as_subclass(torch.Tensor)
        return tv_tensors.Image(x * (1 - m)), tv_tensors.Image(x * m)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TransformInfo:
    """Registry entry.

    Attributes:
        build: ``(value, where) -> step`` (validates the value, raises ConfigError).
        random: stochastic (training data only).
        any_rank: also allowed on 1D / 3D samples (only ``normalize``).
        describe: value → text of the Dataset block's Transforms listing.
    """

    build: Callable[[Any, str], Callable[..., Pair]]
    random: bool = False
    any_rank: bool = False
    describe: Callable[[Any], str] = fmt_g


TRANSFORMS = Registry("transform", case_insensitive=True, error_cls=ConfigError)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _size2(value: Any, where: str, name: str) -> list[int]:
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        return [int(value[0]), int(value[1])]
    raise ConfigError(f"{where}: {name} expects [height, width] (two positive integers). "
                      f"Received: {value!r}")


def _fraction(value: Any, where: str, name: str, closed: bool = False) -> float:
    ok = _is_num(value) and 0 <= value and (value <= 1 if closed else value < 1)
    if not ok:
        rng = "[0, 1]" if closed else "[0, 1)"
        raise ConfigError(f"{where}: {name} expects a number in {rng}. Received: {value!r}")
    return float(value)


def _angle(value: Any, where: str, name: str) -> float:
    if not _is_num(value):
        raise ConfigError(f"{where}: {name} expects an angle in degrees. Received: {value!r}")
    return float(value)


def _normalize_args(value: Any, where: str) -> tuple[Any, Any]:
    if not isinstance(value, dict) or set(value) - {"mean", "std"}:
        raise ConfigError(f"{where}: normalize expects {{\"mean\": a, \"std\": s}} (numbers or "
                          f"per-channel lists). Received: {value!r}")
    out = []
    for key, default in (("mean", 0.0), ("std", 1.0)):
        v = value.get(key, default)
        vals = v if isinstance(v, (list, tuple)) else [v]
        if not vals or not all(_is_num(a) for a in vals):
            raise ConfigError(f"{where}: normalize {key} must be a number or a list of numbers. "
                              f"Received: {v!r}")
        if key == "std" and any(a == 0 for a in vals):
            raise ConfigError(f"{where}: normalize std must not be 0. Received: {v!r}")
        out.append(list(v) if isinstance(v, (list, tuple)) else v)
    return out[0], out[1]


def _describe_normalize(value: Any) -> str:
    mean = value.get("mean", 0.0) if isinstance(value, dict) else 0.0
    std = value.get("std", 1.0) if isinstance(value, dict) else 1.0
    return f"mean: {fmt_g(mean)}, std: {fmt_g(std)}"


def _describe_dict(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt_g(v)}" for k, v in value.items())
    return fmt_g(value)


def _random_patches(value: Any, where: str) -> RandomPatchesStep:
    ok = (isinstance(value, dict) and set(value) <= {"number", "size"}
          and all(isinstance(value.get(k), int) and not isinstance(value.get(k), bool)
                  for k in ("number", "size"))
          and value["number"] >= 0 and value["size"] >= 1)
    if not ok:
        raise ConfigError(f"{where}: random_patches expects {{\"number\": n, \"size\": k}} "
                          f"(integers, k >= 1). Received: {value!r}")
    return RandomPatchesStep(value["number"], value["size"])


def _convert_color(value: Any, where: str) -> V2Step:
    if not isinstance(value, str) or value.upper() not in COLOR_CONVERSIONS:
        names = ", ".join(sorted(COLOR_CONVERSIONS))
        raise ConfigError(f"{where}: convert_color expects one of: {names}. Received: {value!r}")
    return V2Step(ConvertColor(value))


def _resize(value: Any, where: str) -> V2Step:
    return V2Step(v2.Resize(_size2(value, where, "resize"), interpolation=BILINEAR,
                            antialias=False))


TRANSFORMS.register("resize", TransformInfo(_resize))
TRANSFORMS.register("center_crop", TransformInfo(
    lambda v, w: V2Step(CenterCrop(_size2(v, w, "center_crop")))))
TRANSFORMS.register("jitter_crop", TransformInfo(
    lambda v, w: V2Step(JitterCrop(_fraction(v, w, "jitter_crop"))), random=True))
TRANSFORMS.register("random_horizontal_flip", TransformInfo(
    lambda v, w: V2Step(v2.RandomHorizontalFlip(_fraction(v, w, "random_horizontal_flip", True))),
    random=True))
TRANSFORMS.register("random_vertical_flip", TransformInfo(
    lambda v, w: V2Step(v2.RandomVerticalFlip(_fraction(v, w, "random_vertical_flip", True))),
    random=True))
TRANSFORMS.register("random_zoom", TransformInfo(
    lambda v, w: V2Step(RandomZoom(_fraction(v, w, "random_zoom"))), random=True))
TRANSFORMS.register("rotate", TransformInfo(lambda v, w: V2Step(Rotate(_angle(v, w, "rotate")))))
TRANSFORMS.register("random_rotate", TransformInfo(
    lambda v, w: V2Step(RandomRotate(_angle(v, w, "random_rotate"))), random=True))
TRANSFORMS.register("convert_color", TransformInfo(_convert_color))
TRANSFORMS.register("normalize", TransformInfo(
    lambda v, w: V2Step(Normalize(*_normalize_args(v, w))), any_rank=True,
    describe=_describe_normalize))
TRANSFORMS.register("random_patches", TransformInfo(_random_patches, random=True,
                                                    describe=_describe_dict))


def is_random(spec: TransformSpec) -> bool:
    """Whether the transform of ``spec`` is stochastic (skipped for evaluation data)."""
    return TRANSFORMS.get(spec.name, spec.where).random


def describe(spec: TransformSpec) -> str:
    """Value text of the Transforms listing (``[28, 28]``, ``mean: 0, std: 0.00392157``)."""
    return TRANSFORMS.get(spec.name, spec.where).describe(spec.value)


# --------------------------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Flags:
    random: bool
    any_rank: bool


class Pipeline:
    """The transforms of one split.

    Args:
        shared / input_only / target_only: the three config lists (SPEC §5.10 order: shared first,
            then the input-only and target-only lists with independent draws).
        train: training split (random transforms kept) or evaluation split (dropped).
        target_is_mask: targets are ``tv_tensors.Mask`` (nearest-neighbour geometry).
        config_path: prefix of error messages.
    """

    def __init__(self, shared: Sequence[TransformSpec], input_only: Sequence[TransformSpec],
                 target_only: Sequence[TransformSpec], *, train: bool, target_is_mask: bool,
                 config_path: str) -> None:
        self.target_is_mask = target_is_mask
        self.config_path = config_path

        def build(specs: Sequence[TransformSpec]) -> list[tuple[TransformSpec, _Flags, Any]]:
            out = []
            for s in specs:
                where = f"{config_path}: {s.where}" if s.where else config_path
                info = TRANSFORMS.get(s.name, where)
                if info.random and not train:
                    continue
                # keep only picklable parts (the registry entries hold lambdas; DataLoader
                # workers started with "spawn" receive the pipeline by pickling)
                out.append((s, _Flags(info.random, info.any_rank), info.build(s.value, where)))
            return out

        self.shared = build(shared)
        self.input_only = build(input_only)
        self.target_only = build(target_only)
        for s, _, _ in self.target_only:
            if TRANSFORMS.canonical(s.name) == "random_patches":
                raise ConfigError(f"{config_path}: {s.where}: random_patches creates the targets "
                                  f"from the inputs; use it in 'transforms' or 'input_transforms'")
        self.specs: tuple[TransformSpec, ...] = tuple(
            s for s, _, _ in self.shared + self.input_only + self.target_only)
        self.makes_targets = any(TRANSFORMS.canonical(s.name) == "random_patches"
                                 for s, _, _ in self.shared + self.input_only)

    @property
    def empty(self) -> bool:
        return not self.specs

    @property
    def deterministic(self) -> bool:
        """No random transform is active (evaluation splits, or training without augmentation):
        the pipeline may then run on whole batches (:meth:`apply_batch`)."""
        return not any(info.random for _, info, _ in self.shared + self.input_only
                       + self.target_only)

    def _wrap_target(self, tgt: torch.Tensor) -> torch.Tensor:
        return tv_tensors.Mask(tgt) if self.target_is_mask else tv_tensors.Image(tgt)

    def _run(self, steps, inp, tgt, sample: str, pair: bool = True, ndim: int = 3) -> Pair:
        """Apply ``steps``; with ``pair=False`` only ``inp`` is transformed (``tgt`` is kept,
        except that random_patches replaces it). ``ndim``: 3 for samples, 4 for batches."""
        for spec, info, step in steps:
            if not info.any_rank:
                for t in (inp, tgt if pair else None):
                    if t is not None and t.ndim != ndim:
                        shape = list(t.shape[ndim - 3:])
                        raise DataError(f"{self.config_path}: {spec.where}: {spec.name} needs 2D "
                                        f"samples (C, H, W); '{sample}' has shape {shape}")
            try:
                if pair or isinstance(step, RandomPatchesStep):
                    inp, tgt = step(inp, tgt)
                else:
                    inp, _ = step(inp, None)
            except (ValueError, TypeError, RuntimeError) as e:
                msg = (str(e).splitlines() or [type(e).__name__])[0]
                raise DataError(f"{self.config_path}: {spec.where}: {spec.name} failed on "
                                f"'{sample}': {msg}") from None
        return inp, tgt

    def apply_batch(self, inp: torch.Tensor, tgt: Optional[torch.Tensor],
                    sample: str = "") -> Pair:
        """Deterministic pipelines only: transform a batch ``(N, C, H, W)`` of equally sized 2D
        samples at once (same result as sample by sample)."""
        assert self.deterministic
        if self.empty:
            return inp, tgt
        x = tv_tensors.Image(inp) if inp.ndim == 4 else inp
        y = self._wrap_target(tgt) if tgt is not None and tgt.ndim == 4 else tgt
        x, y = self._run(self.shared, x, y, sample, ndim=4)
        x, y = self._run(self.input_only, x, y, sample, pair=False, ndim=4)
        if y is not None:
            y, _ = self._run(self.target_only, y, None, sample, pair=False, ndim=4)
        x = x.as_subclass(torch.Tensor)
        y = y.as_subclass(torch.Tensor) if y is not None else None
        return x, y

    def __call__(self, inp: torch.Tensor, tgt: Optional[torch.Tensor],
                 sample: str = "") -> Pair:
        """Transform one sample: ``inp`` float ``(C, *spatial)``; ``tgt`` a dense target of the
        same layout or None (labels are not passed here). Returns plain tensors."""
        if self.empty:
            return inp, tgt
        x = tv_tensors.Image(inp) if inp.ndim == 3 else inp
        y = tgt
        if tgt is not None and tgt.ndim == 3:
            y = self._wrap_target(tgt)
        x, y = self._run(self.shared, x, y, sample)
        x, y = self._run(self.input_only, x, y, sample, pair=False)
        if y is not None:
            y, _ = self._run(self.target_only, y, None, sample, pair=False)
        x = x.as_subclass(torch.Tensor)
        y = y.as_subclass(torch.Tensor) if y is not None else None
        return x, y
