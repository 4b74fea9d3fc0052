"""Sample sources: one loader reading one role (inputs or targets) of one split.

A :class:`Source` lists its samples at construction (discovery, no decoding) and reads one sample
on request. ``load(i)`` returns the *compact* form kept in memory by ``preload`` (``uint8`` /
``uint16`` pixels for images, ``float32`` arrays otherwise); ``to_float`` turns a compact sample
``(C, *spatial)`` or a stack of them ``(N, C, *spatial)`` into float32 model input.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

import numpy as np
import torch

from ..errors import DataError


class Source:
    """Base class. Subclasses set ``kind``/``unit`` and implement ``__len__``, ``name``, ``file``,
    ``load``.

    Attributes:
        kind: loader name shown as ``Type`` in the Dataset block (``"images"``, ``"numpy"``).
        unit: ``"images"`` or ``"samples"`` (``Num images`` / ``Num samples`` rows).
        noun: wording of the discovery messages (``"images"``, ``"NumPy samples"``).
        root: the path as written in the config.
        where: ``"<config>: neural_network.data.<key>"`` prefix for error messages.
        warnings: one-line warnings found at discovery (``"<where>: '<dir>' leads to a
            directory already listed ..."`` for a symbolic link loop); the caller prints them.
    """

    kind = "?"
    unit = "samples"
    noun = "samples"

    def __init__(self, root: str, where: str) -> None:
        self.root = root
        self.where = where
        self.warnings: list[str] = []

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, index: int) -> str:
        """Sample name relative to ``root`` (the HDF5 dataset path of SPEC §7.5.1)."""
        raise NotImplementedError

    def file(self, index: int) -> str:
        """Path of the file holding sample ``index`` (used for labels from directory names)."""
        raise NotImplementedError

    def load(self, index: int) -> torch.Tensor:
        """Compact sample ``(C, *spatial)``; raises :class:`DataError` naming the file if unreadable."""
        raise NotImplementedError

    def to_float(self, raw: torch.Tensor) -> torch.Tensor:
        """Compact sample or stack of samples → float32 (default: plain cast)."""
        return raw.to(torch.float32)

    def error(self, message: str) -> DataError:
        return DataError(f"{self.where}: {message}")


class FileListSource(Source):
    """A source whose samples were listed at discovery in ``self._items``, one tuple per sample
    starting with ``(name, file, ...)`` (further entries are the subclass's own)."""

    _items: list[tuple]

    def __len__(self) -> int:
        return len(self._items)

    def name(self, index: int) -> str:
        return self._items[index][0]

    def file(self, index: int) -> str:
        return self._items[index][1]


_KINDS = {"c": "complex numbers", "S": "byte strings", "U": "strings", "O": "Python objects",
          "V": "compound records", "M": "dates", "m": "time differences"}


def non_numeric(dtype) -> Optional[str]:
    """Why an array of ``dtype`` cannot be a sample (``"complex numbers (complex128)"``), or
    None for booleans, integers and real floating point numbers. Complex arrays are refused:
    converting them to float32 would silently drop the imaginary part."""
    dt = np.dtype(dtype)
    if dt.kind in "biuf":
        return None
    if dt.kind == "O" and dt.metadata and "vlen" in dt.metadata:      # h5py variable-length
        what = "strings" if dt.metadata["vlen"] in (str, bytes) else "variable-length values"
    else:
        what = _KINDS.get(dt.kind, f"values of type {dt}")
    return f"{what} ({dt}), expected real numbers (integer or floating point)"


def check_exists(path: str, where: str, file_exts: Iterable[str]) -> None:
    """Raise the SPEC error for a missing path (``directory '<p>' does not exist``; ``file`` when
    the path ends with one of ``file_exts``)."""
    if os.path.exists(path):
        return
    what = "file" if path.lower().endswith(tuple(file_exts)) else "directory"
    raise DataError(f"{where}: {what} '{path}' does not exist")


def walk_files(path: str, exts: tuple[str, ...],
               warnings: Optional[list[str]] = None) -> list[tuple[str, str]]:
    """``(relative name, full path)`` of the files under ``path`` with one of ``exts``
    (lower-case, matched case-insensitively), recursively, sorted by relative path (plain string
    order, ``/`` separators). A single file gives its base name. Hidden files and directories
    below ``path`` (names starting with ``.``, e.g. ``.ipynb_checkpoints``, macOS ``._x.jpg``)
    are skipped.

    Symbolic links to directories are followed, but every directory is visited once, by its
    real path: a link that leads back to a directory being walked (``ln -s . loop``) or to one
    already walked is skipped, and one line saying so is appended to ``warnings`` (when given)
    for the first such link.
    """
    if os.path.isfile(path):
        return [(os.path.basename(path), path)] if path.lower().endswith(exts) else []
    found: list[tuple[str, str]] = []
    seen: set[str] = {os.path.realpath(path)}
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            full_dir = os.path.join(dirpath, d)
            real = os.path.realpath(full_dir)
            if real in seen:
                skipped.append(full_dir)
                continue
            seen.add(real)
            keep.append(d)
        dirnames[:] = keep
        for fn in filenames:
            if fn.lower().endswith(exts) and not fn.startswith("."):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                found.append((rel, full))
    if skipped and warnings is not None:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        warnings.append(f"'{skipped[0]}' leads to a directory already listed (symbolic link "
                        f"loop or duplicate); skipped{more}")
    found.sort(key=lambda t: t[0])
    return found
