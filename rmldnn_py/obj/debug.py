"""Detection images for ``"debug": true`` (``--app=obj``).

Every evaluation pass whose epoch is a multiple of ``debug_interval`` writes, for every test
image, a PNG of the original image with its detections drawn by
:func:`torchvision.utils.draw_bounding_boxes` (one colour per class, label ``<class> <score>``)
into ``<dir>/detections_<epoch>/<image path without extension>.png``, where ``<dir>`` is
``test_output_path``, else the ``outfile`` stem (``out.txt`` → ``out``), else ``debug``
(the directories of SPEC §7.6). Every process writes its own images.
"""

from __future__ import annotations

import colorsys
import os
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes


def debug_directory(cfg, epoch: int) -> str:
    """``<test_output_path | outfile stem | debug>/detections_<epoch>``."""
    if cfg.data.test_output_path:
        base = cfg.data.test_output_path
    elif cfg.outfile:
        base = os.path.splitext(cfg.outfile)[0]
    else:
        base = "debug"
    return os.path.join(base, f"detections_{epoch}")


def class_color(c: int) -> tuple[int, int, int]:
    """A distinct saturated RGB colour per class (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((c * 0.618033988749895) % 1.0, 0.9, 1.0)
    return int(255 * r), int(255 * g), int(255 * b)


def to_rgb8(raw: torch.Tensor) -> torch.Tensor:
    """Compact image pixels ``(C, H, W)`` (RGB or gray, ``uint8``/``uint16``/float) → ``uint8``
    ``(3, H, W)``."""
    if raw.dtype == torch.uint8:
        x = raw
    elif raw.dtype == torch.uint16 or raw.dtype == torch.int32:
        x = (raw.to(torch.int64) >> 8).to(torch.uint8)
    else:
        x = (raw.to(torch.float32).clamp(0, 1) * 255).round().to(torch.uint8)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x[:3].contiguous()


def draw(raw: torch.Tensor, det: np.ndarray,
         class_names: Optional[Sequence[str]] = None) -> torch.Tensor:
    """The image with its detections: ``uint8`` ``(3, H, W)``.

    Args:
        raw: the original image pixels ``(C, H, W)``.
        det: ``(K, 6)`` x1, y1, x2, y2, score, class in the image's pixels.
    """
    img = to_rgb8(raw)
    det = np.asarray(det, dtype=np.float32).reshape(-1, 6)
    if det.shape[0] == 0:
        return img
    classes = det[:, 5].round().astype(int)
    names = [class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
             for c in classes]
    labels = [f"{n} {s:.2f}" for n, s in zip(names, det[:, 4])]
    return draw_bounding_boxes(img, torch.from_numpy(det[:, :4].copy()), labels=labels,
                               colors=[class_color(int(c)) for c in classes], width=2)


def write_image(directory: str, name: str, img: torch.Tensor) -> str:
    """Save ``img`` ``uint8 (3, H, W)`` as ``<directory>/<name without extension>.png``."""
    path = os.path.join(directory, os.path.splitext(name)[0] + ".png")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)
    return path
