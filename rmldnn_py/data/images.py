"""The ``images`` loader (SPEC §5.2).

Decoding follows OpenCV's ``imread`` conventions, which the original tool used (SPEC §12 Q3):

* JPEG / PNG are decoded with :func:`torchvision.io.decode_image` (EXIF orientation applied);
  palette PNGs, BMP, TIFF, PPM/PGM (formats torchvision does not decode) go through Pillow;
* the compact (pre-loaded) form is the file's own pixels, ``uint8`` or ``uint16``, 1 or 3
  channels in RGB order, alpha dropped;
* :meth:`ImageSource.to_float` scales by 1/255 (8-bit) or 1/65535 (16-bit), then gives 3 channels
  in **BGR** order, or 1 channel when grayscale is requested (luma ``0.299 R + 0.587 G + 0.114 B``
  computed in float); a 1-channel file becomes 3 identical channels unless grayscale is requested.

Safety:

* decompression bombs: the image size is read from the file header (PNG ``IHDR``, JPEG ``SOF``
  marker, Pillow's lazy ``Image.open`` for the other formats) and an image of more than
  ``neural_network.data.max_image_pixels`` pixels (default 178956970, Pillow's limit) is refused
  before any pixel is decoded;
* libpng / libjpeg print warnings and errors on the C-level stderr (``libpng error: IDAT: bad
  header``); while torchvision decodes, file descriptor 2 points to ``/dev/null`` so that the
  user sees only the one-line error of the tool (see :func:`_quiet_stderr`).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from .sources import FileListSource, check_exists, walk_files

# our own limit (max_image_pixels) is checked on the header; Pillow's (a warning above 89M pixels,
# an error above 179M) would print a DecompressionBombWarning or refuse a raised limit
Image.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = 178956970

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


# ---------------------------------------------------------------------------------------------
# C-level stderr of the codecs
# ---------------------------------------------------------------------------------------------

_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_fd: Optional[int] = None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at ``/dev/null`` while the body runs (libpng/libjpeg messages).

    Reference-counted across threads (the pre-loading thread pool decodes in parallel): the first
    thread in redirects, the last one out restores. Python-level messages are not affected in
    practice: the tool prints its own messages on stdout, and its one-line error after decoding.
    """
    global _quiet_depth, _saved_fd
    with _quiet_lock:
        if _quiet_depth == 0:
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                _saved_fd = os.dup(2)
                os.dup2(null, 2)
                os.close(null)
            except OSError:
                _saved_fd = None
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved_fd is not None:
                try:
                    os.dup2(_saved_fd, 2)
                    os.close(_saved_fd)
                except OSError:
                    pass
                _saved_fd = None


def _restore_stderr_in_child() -> None:
    """A process forked while a decode had fd 2 redirected gets its stderr back."""
    global _quiet_depth, _saved_fd, _quiet_lock
    _quiet_lock = threading.Lock()
    if _saved_fd is not None:
        try:
            os.dup2(_saved_fd, 2)
            os.close(_saved_fd)
        except OSError:
            pass
    _quiet_depth, _saved_fd = 0, None


os.register_at_fork(after_in_child=_restore_stderr_in_child)


# ---------------------------------------------------------------------------------------------
# header size (decompression bombs)
# ---------------------------------------------------------------------------------------------

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from the first SOF marker of a JPEG, or None."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        m = data[i + 1]
        if m == 0xFF:                    # fill byte
            i += 1
            continue
        if m in (0x01,) or 0xD0 <= m <= 0xD9:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if m in _SOF:
            if i + 9 > n:
                return None
            h = int.from_bytes(data[i + 5:i + 7], "big")
            w = int.from_bytes(data[i + 7:i + 9], "big")
            return w, h
        if length < 2:
            return None
        i += 2 + length
    return None


def header_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) of an encoded image read from its header only, or None when the header
    cannot be read (the decoder then reports the broken file)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        size = _jpeg_size(data)
        if size is not None:
            return size
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None


def check_pixels(size: Optional[tuple[int, int]], max_pixels: Optional[int]) -> None:
    """Raise ``ValueError`` when ``size`` has more than ``max_pixels`` pixels."""
    if size is None or not max_pixels:
        return
    w, h = size
    if w * h > max_pixels:
        raise ValueError(f"the image has {w} x {h} = {w * h} pixels, more than "
                         f"neural_network.data.max_image_pixels = {max_pixels} (refused before "
                         f"decoding; raise the limit to accept it)")


def _decode_pil(data: bytes, max_pixels: Optional[int] = None) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as im:
        check_pixels(im.size, max_pixels)
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


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    if not text:
        return type(e).__name__
    first = text.splitlines()[0]
    if first.startswith("cannot identify image file"):
        return "cannot identify image file (not an image, or a format Pillow cannot read)"
    return first


def decode(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Compact pixels ``(C, H, W)`` of an image file, C in {1, 3} (RGB order, alpha dropped),
    dtype ``uint8``/``uint16`` (``float32`` for floating-point TIFFs).

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels, from the header, before decoding (None or 0:
            no limit).

    Raises:
        ValueError: the file cannot be read or decoded, or is too large (message = reason).
    """
    with open(path, "rb") as f:
        data = f.read()
    t = None
    if path.lower().endswith(_TORCHVISION_EXTS) and not _png_is_palette(data):
        check_pixels(header_size(data), max_pixels)
        try:
            with _quiet_stderr():
                t = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                 mode=ImageReadMode.UNCHANGED, apply_exif_orientation=True)
        except RuntimeError:
            t = None   # let Pillow try (e.g. a CMYK JPEG); it raises for really broken files
    if t is None:
        try:
            t = _decode_pil(data, max_pixels)
        except ValueError as e:
            raise ValueError(_reason(e)) from None
        except Exception as e:  # Pillow raises many types for broken files
            raise ValueError(_reason(e)) from None
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
    """Image files under a directory (recursive) or one image file.

    Args:
        root / where: the configured path and the error-message prefix.
        grayscale: convert to 1 channel in :meth:`to_float`.
        max_pixels: ``neural_network.data.max_image_pixels`` (images above are refused before
            decoding; None or 0: no limit).
    """

    kind = "images"
    unit = "images"
    noun = "images"

    def __init__(self, root: str, where: str, grayscale: bool = False,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(root, where)
        self.grayscale = grayscale
        self.max_pixels = max_pixels
        check_exists(root, where, IMAGE_EXTENSIONS)
        found: list[str] = []
        self._items = walk_files(root, IMAGE_EXTENSIONS, found)
        self.warnings += [f"{where}: {w}" for w in found]
        if not self._items:
            raise self.error(f"no images found in '{root}' "
                             f"(extensions: {' '.join(IMAGE_EXTENSIONS)})")

    def load(self, index: int) -> torch.Tensor:
        path = self._items[index][1]
        try:
            return decode(path, self.max_pixels)
        except (OSError, ValueError) as e:
            reason = (str(e).splitlines() or [type(e).__name__])[0]
            raise self.error(f"cannot decode image '{path}': {reason}") from None

    def to_float(self, raw: torch.Tensor) -> torch.Tensor:
        return to_float_image(raw, self.grayscale)
