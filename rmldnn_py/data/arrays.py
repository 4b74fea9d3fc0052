"""Array loaders: ``numpy`` (SPEC §5.4), ``hdf5`` (SPEC §5.5, without slicers), ``mnist``
(SPEC §5.6). Registered in :data:`rmldnn_py.data.build.LOADERS`.

Samples are channel-first float32. A sample whose rank is the network input rank minus one gets
a leading channel axis of size 1 (SPEC §5.4); without the network rank (``input_rank=None``) the
axis is added to 1D/2D arrays and to 3D arrays whose first axis is longer than 4 (a volume rather
than channels).

Sample names (SPEC §7.5.1): ``.npy`` → path relative to the input path (base name for a single
file); ``.npz`` → ``<archive>/<key>``; HDF5 → ``<file>/<dataset path>``; MNIST → the zero-padded
sample index (``"00042"``).
"""

from __future__ import annotations

import gzip
import os
from typing import Optional

import numpy as np
import torch

from ..config.types import DataConfig
from .build import LOADERS, LoaderInfo
from .sources import FileListSource, Source, check_exists, non_numeric, walk_files

NUMPY_EXTENSIONS = (".npy", ".npz")
HDF5_EXTENSIONS = (".h5", ".hdf5")


def add_channel_axis(t: torch.Tensor, input_rank: Optional[int]) -> torch.Tensor:
    """Prepend a size-1 channel axis when the sample lacks one (see module docstring)."""
    if input_rank is not None:
        return t.unsqueeze(0) if t.ndim == input_rank - 1 else t
    if t.ndim <= 2 or (t.ndim == 3 and t.shape[0] > 4):
        return t.unsqueeze(0)
    return t


def _to_tensor(arr: np.ndarray, input_rank: Optional[int]) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(np.asarray(arr, dtype=np.float32)))
    return add_channel_axis(t, input_rank)


class NumpySource(FileListSource):
    """``.npy`` files (one sample each) and ``.npz`` archives (one sample per array, archive
    order) under a directory (recursive, sorted) or a single file."""

    kind = "numpy"
    unit = "samples"
    noun = "NumPy samples"

    def __init__(self, root: str, where: str, input_rank: Optional[int] = None) -> None:
        super().__init__(root, where)
        self.input_rank = input_rank
        check_exists(root, where, NUMPY_EXTENSIONS)
        self._items: list[tuple[str, str, Optional[str]]] = []   # (name, file, npz key)
        walked: list[str] = []
        for rel, full in walk_files(root, NUMPY_EXTENSIONS, walked):
            if rel.lower().endswith(".npz"):
                try:
                    with np.load(full) as z:
                        keys = list(z.files)
                except Exception as e:
                    raise self.error(f"cannot read NumPy archive '{full}': {e}") from None
                self._items += [(f"{rel}/{k}", full, k) for k in keys]
            else:
                self._items.append((rel, full, None))
        self.warnings += [f"{where}: {w}" for w in walked]
        if not self._items:
            raise self.error(f"no NumPy samples (.npy, .npz) found in '{root}'")

    def load(self, index: int) -> torch.Tensor:
        _, path, key = self._items[index]
        try:
            if key is None:
                arr = np.load(path, allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as z:
                    arr = z[key]
        except Exception as e:
            what = f"'{path}'" if key is None else f"array '{key}' of '{path}'"
            reason = (str(e).splitlines() or [type(e).__name__])[0]
            raise self.error(f"cannot read NumPy sample {what}: {reason}") from None
        bad = non_numeric(arr.dtype)
        if bad is not None:
            what = f"'{path}'" if key is None else f"array '{key}' of '{path}'"
            raise self.error(f"NumPy sample {what} holds {bad}")
        return _to_tensor(arr, self.input_rank)


class HDF5Source(FileListSource):
    """Every dataset (recursively, sorted by path) of every ``.h5``/``.hdf5`` file (sorted)."""

    kind = "hdf5"
    unit = "samples"
    noun = "HDF5 samples"

    def __init__(self, root: str, where: str, input_rank: Optional[int] = None) -> None:
        super().__init__(root, where)
        import h5py

        self.input_rank = input_rank
        check_exists(root, where, HDF5_EXTENSIONS)
        self._items: list[tuple[str, str, str]] = []   # (name, file, dataset path)
        walked: list[str] = []
        for rel, full in walk_files(root, HDF5_EXTENSIONS, walked):
            found: list[tuple[str, object]] = []
            try:
                with h5py.File(full, "r") as f:
                    f.visititems(lambda n, obj: found.append((n, obj.dtype))
                                 if isinstance(obj, h5py.Dataset) else None)
            except (OSError, RuntimeError, ValueError) as e:
                reason = (str(e).splitlines() or [type(e).__name__])[0]
                raise self.error(f"cannot read HDF5 file '{full}': {reason}") from None
            for d, dt in found:
                bad = non_numeric(dt)
                if bad is not None:
                    raise self.error(f"dataset '{d}' of HDF5 file '{full}' holds {bad}")
            self._items += [(f"{rel}/{d}", full, d) for d, _ in sorted(found)]
        self.warnings += [f"{where}: {w}" for w in walked]
        if not self._items:
            raise self.error(f"no HDF5 datasets (.h5, .hdf5) found in '{root}'")
        self._handles: dict = {}
        self._pid = os.getpid()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def load(self, index: int) -> torch.Tensor:
        import h5py

        _, path, ds = self._items[index]
        if self._pid != os.getpid():          # a forked worker: do not reuse the parent's handles
            self._handles, self._pid = {}, os.getpid()
        try:
            f = self._handles.get(path)
            if f is None:
                f = self._handles[path] = h5py.File(path, "r")
            arr = f[ds][()]
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as e:
            reason = (str(e).splitlines() or [type(e).__name__])[0]
            raise self.error(f"cannot read dataset '{ds}' of HDF5 file '{path}': "
                             f"{reason}") from None
        bad = non_numeric(np.asarray(arr).dtype)
        if bad is not None:
            raise self.error(f"dataset '{ds}' of HDF5 file '{path}' holds {bad}")
        return _to_tensor(arr, self.input_rank)


_MNIST_PREFIX = {"training": "train", "test": "t10k"}


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"expected {int(np.prod(dims))} values, found {body.size}")
    return body.reshape(dims)


class MnistSource(Source):
    """MNIST IDX files in a directory: ``train-*`` for training, ``t10k-*`` for test, optionally
    gzipped. Images ``(1, 28, 28)`` uint8 (scaled by 1/255), labels int64."""

    kind = "mnist"
    unit = "samples"
    noun = "MNIST samples"

    def __init__(self, root: str, where: str, role: str) -> None:
        super().__init__(root, where)
        check_exists(root, where, ())
        prefix = _MNIST_PREFIX[role]
        img_path = self._find(root, f"{prefix}-images", "idx3-ubyte")
        lab_path = self._find(root, f"{prefix}-labels", "idx1-ubyte")
        try:
            images = _read_idx(img_path)
            labels = _read_idx(lab_path)
        except (OSError, ValueError, EOFError) as e:
            raise self.error(f"cannot read MNIST file in '{root}': {e}") from None
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise self.error(f"MNIST files in '{root}' are inconsistent: images "
                             f"{list(images.shape)}, labels {list(labels.shape)}")
        self._images = torch.from_numpy(images.copy()).unsqueeze(1)   # (N, 1, 28, 28) uint8
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.class_names = [str(k) for k in range(10)]
        self._width = len(str(max(0, len(images) - 1)))
        self._file = img_path

    def _find(self, root: str, stem: str, suffix: str) -> str:
        for name in (f"{stem}-{suffix}", f"{stem}.{suffix}"):
            for ext in ("", ".gz"):
                p = os.path.join(root, name + ext)
                if os.path.isfile(p):
                    return p
        raise self.error(f"no MNIST file '{stem}-{suffix}' (or .gz) found in '{root}'")

    def __len__(self) -> int:
        return len(self._images)

    def name(self, index: int) -> str:
        return f"{index:0{self._width}d}"

    def file(self, index: int) -> str:
        return self._file

    def load(self, index: int) -> torch.Tensor:
        return self._images[index]

    def to_float(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.to(torch.float32).div_(255.0)


def _make_numpy(path: str, where: str, *, which: str, role: str, cfg: DataConfig,
                input_rank: Optional[int]) -> Source:
    return NumpySource(path, where, input_rank)


def _make_hdf5(path: str, where: str, *, which: str, role: str, cfg: DataConfig,
               input_rank: Optional[int]) -> Source:
    return HDF5Source(path, where, input_rank)


def _make_mnist(path: str, where: str, *, which: str, role: str, cfg: DataConfig,
                input_rank: Optional[int]) -> Source:
    return MnistSource(path, where, role)


LOADERS.register("numpy", LoaderInfo(
    _make_numpy, "NumPy samples", lambda role, which: f"Pre-loading {role} {which} NumPy arrays..."))
LOADERS.register("hdf5", LoaderInfo(
    _make_hdf5, "HDF5 samples", lambda role, which: f"Pre-loading {which} HDF5 arrays for {role}..."))
LOADERS.register("mnist", LoaderInfo(
    _make_mnist, "MNIST samples", lambda role, which: f"Pre-loading {role} {which} MNIST samples...",
    labels=True))
