"""Sample sources: one loader reading one role (inputs or targets) of one split.

A :class:`Source` lists its samples at construction (discovery, no decoding) and reads one sample
on request. ``load(i)`` returns the *compact* form kept in memory by ``preload`` (``uint8`` /
``uint16`` pixels for images, ``float32`` arrays otherwise); ``to_float`` turns a compact sample
``(C, *spatial)`` or a stack of them ``(N, C, *spatial)`` into float32 model input.
"""

from __future__ import annotations

import os
from typing import Iterable

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
    """

    kind = "?"
    unit = "samples"
    noun = "samples"

    def __init__(self, root: str, where: str) -> None:
        self.root = root
        self.where = where

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


def check_exists(path: str, where: str, file_exts: Iterable[str]) -> None:
    """Raise the SPEC error for a missing path (``directory '<p>' does not exist``; ``file`` when
    the path ends with one of ``file_exts``)."""
    if os.path.exists(path):
        return
    what = "file" if path.lower().endswith(tuple(file_exts)) else "directory"
    raise DataError(f"{where}: {what} '{path}' does not exist")


def walk_files(path: str, exts: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(relative name, full path)`` of the files under ``path`` with one of ``exts``
    (lower-case, matched case-insensitively), recursively, sorted by relative path (plain string
    order, ``/`` separators). A single file gives its base name. Hidden files and directories
    below ``path`` (names starting with ``.``, e.g. ``.ipynb_checkpoints``, macOS ``._x.jpg``)
    are skipped."""
    if os.path.isfile(path):
        return [(os.path.basename(path), path)] if path.lower().endswith(exts) else []
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.lower().endswith(exts) and not fn.startswith("."):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                found.append((rel, full))
    found.sort(key=lambda t: t[0])
    return found
