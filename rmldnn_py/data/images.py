"""The ``images`` loader (SPEC §5.2).

Decoding follows OpenCV's ``imread`` conventions, which the original tool used (SPEC §12 Q3):

* JPEG / PNG are decoded with :func:`torchvision.io.decode_image` (EXIF orientation applied);
  palette PNGs, BMP, TIFF, PPM/PGM (formats torchvision does not decode) go through Pillow;
* the compact (pre-loaded) form is the file's own pixels, ``uint8`` or ``uint16``, 1 or 3
  channels in RGB order, alpha dropped;
* :meth:`ImageSource.to_float` scales by 1/255 (8-bit) or 1/65535 (16-bit), then gives 3 channels
  in **BGR** order, or 1 channel when grayscale is requested (luma ``0.299 R + 0.587 G + 0.114 B``
  computed in float); a 1-channel file becomes 3 identical channels unless grayscale is requested.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from .sources import FileListSource, check_exists, walk_files

# torchvision 0.29 deprecates its image codecs in favour of TorchCodec; they still work and are
# what the project is built on (STYLE.md): keep the per-call warning out of the user's output.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities",
                        category=DeprecationWarning)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
_TORCHVISION_EXTS = (".jpg", ".jpeg", ".png")
_LUMA = (0.299, 0.587, 0.114)  # R, G, B weights


def _png_is_palette(data: bytes) -> bool:
    # colour type byte of the IHDR chunk; 3 = indexed colour (torchvision would return indices)
    return len(data) > 25 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[25] == 3


def _decode_pil(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            arr = np.asarray(im, dtype=np.uint16)
        elif mode == "I":
            arr = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
        elif mode == "F":
            arr = np.asarray(im, dtype=np.float32)
        elif mode in ("L", "LA", "1"):
            arr = np.asarray(im.convert("L"), dtype=np.uint8)
        else:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    t = torch.from_numpy(np.array(arr, copy=True))
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def decode(path: str) -> torch.Tensor:
    """Compact pixels ``(C, H, W)`` of an image file, C in {1, 3} (RGB order, alpha dropped),
    dtype ``uint8``/``uint16`` (``float32`` for floating-point TIFFs).

    Raises:
        ValueError: the file cannot be read or decoded (message = reason).
    """
    with open(path, "rb") as f:
        data = f.read()
    t = None
    if path.lower().endswith(_TORCHVISION_EXTS) and not _png_is_palette(data):
        try:
            t = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                             mode=ImageReadMode.UNCHANGED, apply_exif_orientation=True)
        except RuntimeError:
            t = None   # let Pillow try (e.g. a CMYK JPEG); it raises for really broken files
    if t is None:
        try:
            t = _decode_pil(data)
        except Exception as e:  # Pillow raises many types for broken files
            raise ValueError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if t.shape[0] in (2, 4):          # gray+alpha, RGBA → drop alpha
        t = t[: t.shape[0] - 1]
    return t.contiguous()


def to_float_image(raw: torch.Tensor, grayscale: bool) -> torch.Tensor:
    """Compact pixels (``(C, H, W)`` or ``(N, C, H, W)``, RGB) → float32 in [0, 1], BGR or gray."""
    if raw.dtype == torch.uint8:
        x = raw.to(torch.float32).div_(255.0)
    elif raw.dtype == torch.uint16:
        x = raw.to(torch.float32).div_(65535.0)
    else:
        x = raw.to(torch.float32)
    c = x.shape[-3]
    if grayscale:
        if c == 3:
            r, g, b = x.unbind(-3)
            x = (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)
        return x
    if c == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    return x.flip(-3)                   # RGB → BGR


class ImageSource(FileListSource):
    """Image files under a directory (recursive) or one image file."""

    kind = "images"
    unit = "images"
    noun = "images"

    def __init__(self, root: str, where: str, grayscale: bool = False) -> None:
        super().__init__(root, where)
        self.grayscale = grayscale
        check_exists(root, where, IMAGE_EXTENSIONS)
        self._items = walk_files(root, IMAGE_EXTENSIONS)
        if not self._items:
            raise self.error(f"no images found in '{root}' "
                             f"(extensions: {' '.join(IMAGE_EXTENSIONS)})")

    def load(self, index: int) -> torch.Tensor:
        path = self._items[index][1]
        try:
            return decode(path)
        except (OSError, ValueError) as e:
            reason = (str(e).splitlines() or [type(e).__name__])[0]
            raise self.error(f"cannot decode image '{path}': {reason}") from None

    def to_float(self, raw: torch.Tensor) -> torch.Tensor:
        return to_float_image(raw, self.grayscale)
