"""The PNG grid of generated samples written next to ``output_<epoch>.h5`` (``--app=gan``).

``<test_output_path>/output_<epoch>.png``: the first :data:`GRID_MAX` generated samples (in
sample order, ``nrow`` = 10 per row), tiled by :func:`torchvision.utils.make_grid` (2-pixel
padding) and written by :func:`torchvision.utils.save_image`. Pixel values are mapped from
``value_range`` (the range of the real training images, ``(0, 1)`` for the image loaders) to
[0, 255] and clamped. The image loaders decode colour images in BGR order (SPEC §12 Q3), so a
3-channel sample is flipped to RGB for the PNG; 1-channel samples are written as gray. Samples
that are not ``(1 or 3, H, W)`` images get no PNG. The file is written atomically (temporary file
+ rename).
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["GRID_MAX", "GRID_ROW", "is_image", "grid_tensor", "write_grid"]

GRID_MAX = 100
GRID_ROW = 10


def is_image(sample_shape: Sequence[int]) -> bool:
    """True for channel-first ``(1 or 3, H, W)`` samples."""
    s = tuple(sample_shape)
    return len(s) == 3 and s[0] in (1, 3)


def grid_tensor(samples: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0),
                nrow: int = GRID_ROW) -> torch.Tensor:
    """The grid image of ``samples``.

    Args:
        samples: ``(N, C, H, W)``, C = 1 (gray) or 3 (BGR, as the image loaders decode).
        value_range: the values shown as black and white.

    Returns:
        ``(3, H_grid, W_grid)`` float in [0, 1], RGB (make_grid repeats a gray channel).
    """
    from torchvision.utils import make_grid

    x = samples.detach().float().cpu()
    if x.shape[1] == 3:
        x = x.flip(1)                                   # BGR → RGB
    lo, hi = float(value_range[0]), float(value_range[1])
    x = ((x - lo) / max(hi - lo, 1e-12)).clamp(0.0, 1.0)
    return make_grid(x, nrow=nrow, padding=2, pad_value=0.0)


def write_grid(path: str, samples: torch.Tensor,
               value_range: tuple[float, float] = (0.0, 1.0)) -> str:
    """Write the PNG grid of ``samples`` (see :func:`grid_tensor`) to ``path`` atomically.

    Raises:
        RmldnnError: one line naming the file when it cannot be written.
    """
    from torchvision.utils import save_image

    from ..io.atomic import atomic_path, write_error

    grid = grid_tensor(samples, value_range)
    try:
        with atomic_path(path) as tmp:
            save_image(grid, tmp, format="png")
    except OSError as exc:
        raise write_error(path, exc, "sample grid") from None
    return path
