"""Transforms that move boxes with the image (``--app=obj``, SPEC §3.4, §5.10, §8.4).

The transform lists of the data section are read with the registry of
:mod:`rmldnn_py.data.transforms` (same names, same parameter checks, same image results); the
geometric ones are then applied to the image **and** its boxes in one call, with one random draw,
through torchvision's v2 kernels for :class:`torchvision.tv_tensors.BoundingBoxes`:

==========================  =====================================================================
``resize``                  ``v2.Resize`` (boxes scaled by the size ratios); with
                            ``data.letterbox: true`` a :class:`Letterbox` instead
``center_crop``             ``F.crop`` on both (boxes shifted, clipped)
``jitter_crop``             ``F.crop`` with the random window
``random_horizontal_flip``  ``v2.RandomHorizontalFlip`` / ``v2.RandomVerticalFlip``
``random_vertical_flip``
``random_zoom``             ``F.resized_crop``
``rotate``                  ``F.rotate`` (clockwise for positive angles, about the centre): a
``random_rotate``           box becomes the enclosing box of its rotated corners
``convert_color``           image only (boxes unchanged)
``normalize``
==========================  =====================================================================

``random_patches`` (inpainting) and ``target_transforms`` do not apply to boxes and are refused;
``input_transforms`` may hold only the image-only transforms (a geometric transform there would
move the image away from its boxes).

After the transforms, boxes are clipped to the image and boxes narrower or lower than
``min_size`` pixels (default 1) are dropped. A sample's target is float32 ``(K_max, 5)``: rows
``class, cx, cy, w, h`` normalised by the *transformed* image size, then padding rows with class
``-1`` (and zeros) up to ``K_max``, the most objects of one image of the split, so that samples
stack into batches ``(B, K_max, 5)``.

The way back (predictions in original pixels, SPEC §7.5): :meth:`BoxPipeline.to_original` inverts
the deterministic geometric transforms of an evaluation split (``resize``, ``letterbox``,
``center_crop``, ``rotate``) with the same torchvision kernels, then clips to the original image.
Random transforms never run on evaluation data (SPEC §5.9).

Coordinates are pixels with (0, 0) the top-left corner of the top-left pixel, x to the right,
y down (torchvision's convention); ``(H, W)`` = (height, width).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

from ..config.types import TransformSpec
from ..data import transforms as T
from ..errors import ConfigError, DataError

XYXY = tv_tensors.BoundingBoxFormat.XYXY
_BOXES = (tv_tensors.Image, tv_tensors.Mask, tv_tensors.BoundingBoxes)

#: transforms that move pixels (applied to the image and its boxes)
GEOMETRIC = ("resize", "center_crop", "jitter_crop", "random_horizontal_flip",
             "random_vertical_flip", "random_zoom", "rotate", "random_rotate")
#: transforms that change pixel values only (boxes unchanged)
PHOTOMETRIC = ("convert_color", "normalize")
LETTERBOX_FILL = 0.5   # Darknet's letterbox grey


# --------------------------------------------------------------------------------------------
# box-aware versions of the registry's own v2 transforms (same parameters, same draws)


class BoxCenterCrop(T.CenterCrop):
    """:class:`rmldnn_py.data.transforms.CenterCrop` that also crops boxes."""

    _transformed_types = _BOXES


class BoxJitterCrop(T.JitterCrop):
    """:class:`rmldnn_py.data.transforms.JitterCrop` that also crops boxes."""

    _transformed_types = _BOXES


class BoxRandomZoom(T.RandomZoom):
    """:class:`rmldnn_py.data.transforms.RandomZoom` that also zooms boxes."""

    _transformed_types = _BOXES


class BoxRotate(T.Rotate):
    """:class:`rmldnn_py.data.transforms.Rotate` that also rotates boxes (enclosing boxes)."""

    _transformed_types = _BOXES


class BoxRandomRotate(T.RandomRotate):
    """:class:`rmldnn_py.data.transforms.RandomRotate` that also rotates boxes."""

    _transformed_types = _BOXES


class Letterbox(v2.Transform):
    """Resize keeping the aspect ratio, then pad to ``[h, w]`` (``data.letterbox``).

    Scale ``s = min(h / H, w / W)``; the image is resized (bilinear, no antialias, as ``resize``)
    to ``(round(H·s), round(W·s))`` and centred: ``top = (h − nh) // 2``,
    ``left = (w − nw) // 2``; the border is filled with 0.5 (Darknet's grey; 0 for masks).
    Boxes are scaled and shifted with the same kernels.
    """

    _transformed_types = _BOXES

    def __init__(self, size: Sequence[int]) -> None:
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    @staticmethod
    def geometry(hw: tuple[int, int], size: Sequence[int]) -> tuple[int, int, int, int]:
        """``(nh, nw, top, left)`` for an image of size ``hw`` letterboxed into ``size``."""
        H, W = hw
        h, w = int(size[0]), int(size[1])
        s = min(h / H, w / W)
        nh, nw = max(1, min(h, round(H * s))), max(1, min(w, round(W * s)))
        return nh, nw, (h - nh) // 2, (w - nw) // 2

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        nh, nw, top, left = self.geometry(query_size(flat_inputs), self.size)
        h, w = self.size
        return dict(size=[nh, nw], padding=[left, top, w - nw - left, h - nh - top])

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = self._call_kernel(F.resize, inpt, size=params["size"],
                                interpolation=T.BILINEAR, antialias=False)
        fill = LETTERBOX_FILL if isinstance(inpt, tv_tensors.Image) else 0.0
        return self._call_kernel(F.pad, out, padding=params["padding"], fill=fill)


_BOX_AWARE = {
    T.CenterCrop: lambda t: BoxCenterCrop(t.size),
    T.JitterCrop: lambda t: BoxJitterCrop(t.cmax),
    T.RandomZoom: lambda t: BoxRandomZoom(t.cmax),
    T.Rotate: lambda t: BoxRotate(t.degrees),
    T.RandomRotate: lambda t: BoxRandomRotate(t.alpha),
}


def _box_transform(step: Any) -> v2.Transform:
    """The box-aware v2 transform of a registry step (torchvision's own classes — Resize, the
    flips — already move boxes)."""
    t = step.transform
    make = _BOX_AWARE.get(type(t))
    return make(t) if make is not None else t


# --------------------------------------------------------------------------------------------
# the pipeline


class _Step:
    """One configured transform: its spec, canonical name, v2 transform, geometric or not."""

    def __init__(self, spec: TransformSpec, name: str, transform: v2.Transform,
                 geometric: bool) -> None:
        self.spec, self.name, self.transform, self.geometric = spec, name, transform, geometric


class BoxPipeline:
    """The transforms of one ``--app=obj`` split (duck-types :class:`rmldnn_py.data.transforms.
    Pipeline` for :class:`rmldnn_py.data.split.SampleReader`).

    Args:
        shared / input_only / target_only: the three config lists (see the module docstring for
            what is allowed where).
        train: training split (random transforms kept) or evaluation split (dropped).
        letterbox: ``resize`` entries are :class:`Letterbox` resizes.
        max_objects: ``K_max``, rows of every target (at least 1).
        config_path: prefix of error messages.
        min_size: boxes narrower or lower than this many pixels after the transforms are dropped.

    Raises:
        ConfigError: a transform that cannot apply to boxes, ``letterbox`` without ``resize``.
    """

    makes_targets = False
    empty = False            # never: targets are always converted and padded

    def __init__(self, shared: Sequence[TransformSpec], input_only: Sequence[TransformSpec],
                 target_only: Sequence[TransformSpec], *, train: bool, letterbox: bool,
                 max_objects: int, config_path: str, min_size: float = 1.0) -> None:
        self.config_path = config_path
        self.max_objects = max(1, int(max_objects))
        self.min_size = float(min_size)
        self.letterbox = letterbox
        if target_only:
            s = target_only[0]
            raise ConfigError(f"{config_path}: {s.where}: target_transforms do not apply to "
                              "object boxes (--app=obj); put geometric transforms in "
                              "'transforms' so that boxes move with the image")
        self.steps = self._build(shared, train, geometric_ok=True)
        self.input_steps = self._build(input_only, train, geometric_ok=False)
        if letterbox and not any(s.name == "resize" for s in self.steps):
            raise ConfigError(f"{config_path}: neural_network.data.letterbox: needs a 'resize' "
                              "transform in neural_network.data.transforms giving the network "
                              "input size [height, width]")
        self.specs: tuple[TransformSpec, ...] = tuple(s.spec for s in self.steps + self.input_steps)

    def _build(self, specs: Sequence[TransformSpec], train: bool,
               geometric_ok: bool) -> list[_Step]:
        out = []
        for s in specs:
            where = f"{self.config_path}: {s.where}" if s.where else self.config_path
            info = T.TRANSFORMS.get(s.name, where)
            name = T.TRANSFORMS.canonical(s.name)
            if name not in GEOMETRIC + PHOTOMETRIC:
                raise ConfigError(f"{where}: {name} cannot be used with --app=obj (it does not "
                                  f"apply to object boxes)")
            geometric = name in GEOMETRIC
            if geometric and not geometric_ok:
                raise ConfigError(f"{where}: {name} in input_transforms would move the image "
                                  f"but not its boxes; put it in neural_network.data.transforms")
            step = info.build(s.value, where)     # validates the value (ConfigError)
            if info.random and not train:
                continue
            if name == "resize" and self.letterbox:
                transform: v2.Transform = Letterbox(step.transform.size)   # [h, w], checked
            else:
                transform = _box_transform(step)
            out.append(_Step(s, name, transform, geometric))
        return out

    # ---------------------------------------------------------------- properties used by Split
    @property
    def deterministic(self) -> bool:
        """No random transform is active."""
        return not any(T.TRANSFORMS.get(s.spec.name, "").random
                       for s in self.steps + self.input_steps)

    # ---------------------------------------------------------------- forward
    def _apply(self, step: _Step, img, boxes, sample: str):
        try:
            if step.geometric and boxes is not None:
                return step.transform(img, boxes)
            return step.transform(img), boxes
        except (ValueError, TypeError, RuntimeError) as e:
            msg = (str(e).splitlines() or [type(e).__name__])[0]
            raise DataError(f"{self.config_path}: {step.spec.where}: {step.name} failed on "
                            f"'{sample}': {msg}") from None

    def transform(self, x: torch.Tensor, y: Optional[torch.Tensor],
                  sample: str = "") -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Transform one image and its objects without padding.

        Args:
            x: float32 ``(C, H, W)``.
            y: float32 ``(K, 5)`` rows ``class, cx, cy, w, h`` normalised by ``(W, H)``, or None.

        Returns:
            ``(x', y')``: the transformed image ``(C, H', W')`` and the kept objects
            ``(K', 5)`` normalised by ``(W', H')`` (None when ``y`` is None).
        """
        if x.ndim != 3:
            raise DataError(f"{self.config_path}: --app=obj needs 2D images (C, H, W); "
                            f"'{sample}' has shape {list(x.shape)}")
        img = tv_tensors.Image(x)
        boxes = cls = None
        if y is not None:
            H, W = x.shape[-2:]
            cls = y[:, 0]
            boxes = tv_tensors.BoundingBoxes(normalized_to_xyxy(y[:, 1:5], (H, W)), format=XYXY,
                                             canvas_size=(H, W), clamping_mode=None)
        for step in self.steps + self.input_steps:
            img, boxes = self._apply(step, img, boxes, sample)
        x = img.as_subclass(torch.Tensor)
        if y is None:
            return x, None
        H, W = x.shape[-2:]
        b = boxes.as_subclass(torch.Tensor).reshape(-1, 4)
        b = torch.stack([b[:, 0].clamp(0, W), b[:, 1].clamp(0, H), b[:, 2].clamp(0, W),
                         b[:, 3].clamp(0, H)], dim=1)
        keep = ((b[:, 2] - b[:, 0]) >= self.min_size) & ((b[:, 3] - b[:, 1]) >= self.min_size)
        out = torch.cat([cls[keep].unsqueeze(1), xyxy_to_normalized(b[keep], (H, W))], dim=1)
        return x, out

    def __call__(self, x: torch.Tensor, y: Optional[torch.Tensor],
                 sample: str = "") -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """:meth:`transform`, then the target padded to ``(K_max, 5)`` (class −1 rows)."""
        x, objs = self.transform(x, y, sample)
        if objs is None:
            return x, None
        return x, pad_targets(objs, self.max_objects)

    def apply_batch(self, inp: torch.Tensor, tgt: Optional[torch.Tensor],
                    sample: str = "") -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """A batch ``(N, C, H, W)`` of equally sized images (pre-loaded evaluation data without
        targets): sample by sample."""
        outs = [self(inp[j], None if tgt is None else tgt[j], sample) for j in range(inp.shape[0])]
        x = torch.stack([o[0] for o in outs])
        y = None if tgt is None else torch.stack([o[1] for o in outs])
        return x, y

    # ---------------------------------------------------------------- back to original pixels
    def geometry(self, hw: tuple[int, int]) -> list[tuple[_Step, tuple[int, int], tuple[int, int]]]:
        """The geometric steps of this (deterministic) pipeline for an image of size ``hw``:
        ``(step, size before, size after)`` in order.

        Raises:
            DataError: a random transform is active (training pipelines cannot be inverted).
        """
        chain = []
        for step in self.steps:
            if not step.geometric:
                continue
            if step.name in ("resize", "center_crop"):
                after = tuple(step.transform.size)
            elif step.name == "rotate":
                after = hw
            else:
                raise DataError(f"{self.config_path}: {step.spec.where}: the random transform "
                                f"{step.name} cannot be inverted")
            chain.append((step, tuple(hw), (int(after[0]), int(after[1]))))
            hw = (int(after[0]), int(after[1]))
        return chain

    def to_original(self, boxes: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Boxes predicted on the transformed image → pixels of the original image.

        Args:
            boxes: ``(K, 4)`` x1, y1, x2, y2 in pixels of the network input.
            hw: ``(H, W)`` of the original image.

        Returns:
            ``(K, 4)`` float32 in original pixels, clipped to ``[0, W] × [0, H]``. The inverse of
            each geometric step runs through torchvision's box kernels (resize back, shift back,
            rotate by the opposite angle: a rotated box becomes its enclosing box).
        """
        chain = self.geometry(hw)
        out_hw = chain[-1][2] if chain else tuple(hw)
        b = tv_tensors.BoundingBoxes(boxes.detach().to(torch.float32).cpu().reshape(-1, 4),
                                     format=XYXY, canvas_size=out_hw, clamping_mode=None)
        for step, before, after in reversed(chain):
            H, W = before
            if isinstance(step.transform, Letterbox):
                nh, nw, top, left = Letterbox.geometry(before, step.transform.size)
                b = F.crop(b, top=top, left=left, height=nh, width=nw)
                b = F.resize(b, [H, W])
            elif step.name == "resize":
                b = F.resize(b, [H, W])
            elif step.name == "center_crop":
                h, w = after
                top, left = (H - h) // 2, (W - w) // 2
                b = F.pad(b, [left, top, W - w - left, H - h - top])
            elif step.name == "rotate":
                b = F.rotate(b, angle=step.transform.degrees)    # forward was -degrees
        H, W = hw
        t = b.as_subclass(torch.Tensor)
        return torch.stack([t[:, 0].clamp(0, W), t[:, 1].clamp(0, H), t[:, 2].clamp(0, W),
                            t[:, 3].clamp(0, H)], dim=1)


# --------------------------------------------------------------------------------------------
# small helpers


def normalized_to_xyxy(cxcywh: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``(K, 4)`` cx, cy, w, h normalised by ``(W, H)`` → x1, y1, x2, y2 in pixels."""
    H, W = hw
    scale = torch.tensor([W, H, W, H], dtype=torch.float32)
    px = cxcywh.to(torch.float32) * scale
    return torch.cat([px[:, :2] - px[:, 2:] / 2, px[:, :2] + px[:, 2:] / 2], dim=1)


def xyxy_to_normalized(xyxy: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``(K, 4)`` x1, y1, x2, y2 in pixels → cx, cy, w, h normalised by ``(W, H)``."""
    H, W = hw
    c = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    s = xyxy[:, 2:] - xyxy[:, :2]
    return torch.cat([c, s], dim=1) / torch.tensor([W, H, W, H], dtype=xyxy.dtype)


def pad_targets(objs: torch.Tensor, rows: int) -> torch.Tensor:
    """``(K, 5)`` objects → ``(rows, 5)``: the objects, then rows ``[-1, 0, 0, 0, 0]``."""
    if objs.shape[0] > rows:    # pragma: no cover - transforms never add objects
        raise ValueError(f"{objs.shape[0]} objects for {rows} target rows")
    out = torch.zeros((rows, 5), dtype=torch.float32)
    out[:, 0] = -1.0
    out[:objs.shape[0]] = objs
    return out
