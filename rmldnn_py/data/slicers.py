"""Slicers: one large array cut into samples (SPEC §3.5, §5.11).

Layout. The array is ``(C, X1, …, Xn)`` channel-first or ``(X1, …, Xn)`` without a channel axis
(C = 1); ``n = len(sizes)`` decides which (SPEC §12 Q17). Targets are sliced with the geometry of
the inputs (their spatial shape must be the same; their channel axis is decided the same way).

Geometry of one slice set, per dimension i (extent N_i, size s_i, stride t_i):

* ``discard_remainders``: n_i = ⌊(N_i − s_i)/t_i⌋ + 1 (error if s_i > N_i);
* otherwise: n_i = 1 if N_i ≤ s_i, else ⌈(N_i − s_i)/t_i⌉ + 1, capped at ⌈N_i/t_i⌉ so that no
  slice starts outside the array (the cap only matters when t_i > s_i); the part of the last
  slice beyond the array is zero-filled;
* origins o_i = k·t_i, slices enumerate in C order (last dimension fastest);
* padding ``(before_i, after_i)`` of zeros around the slice (``padding`` p → (p, p);
  ``padded_sizes`` P → before = ⌊(P − s)/2⌋, after = the rest);
* dimensions whose padded size is 1 are squeezed; ``transpose`` swaps the two spatial axes of a
  2D sample.

Samples of all slice sets follow each other (set 1 first); the samples of a split are the slices.
Sample names (SPEC §5.11): the unpadded region in array coordinates ``"x0:x1,y0:y1,z0:z1"`` (end
exclusive, clipped to the array), prefixed by ``<set name>/`` when there are several sets.

Memory: nothing is cut in advance. Without ``preload`` each slice is read from the file when its
batch is made (``.npy`` files are memory-mapped, HDF5 datasets read region by region); with
``preload`` the bounding box of this rank's slices is read once and slices are cut from it.
"""

from __future__ import annotations

import bisect
import math
import os
from typing import Optional, Sequence

import numpy as np
import torch

from ..config.types import DataConfig, SlicerConfig
from ..errors import DataError
from .sources import Source, check_exists, non_numeric, walk_files

NUMPY_EXTENSIONS = (".npy", ".npz")
HDF5_EXTENSIONS = (".h5", ".hdf5")


def _fmt_list(values: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------

class SliceSet:
    """Geometry of one slice set over an array of spatial shape ``full`` (SPEC §5.11).

    Attributes:
        name: slice-set name (dataset name in ``hdf5_outfile``).
        position: index of the set in ``data.slicers``.
        full: spatial extent N of the sliced array.
        sizes / strides: s and t per dimension.
        before / after: zero padding per dimension; ``padded`` = s + before + after.
        discard: ``discard_remainders``; ``transpose``: transpose 2D samples.
        counts: n per dimension; ``num_samples`` = their product.
        offset: global index of the first slice of this set in the split.
        squeezed: per dimension, True when it is removed from the sample (padded size 1).
        sample_shape: spatial shape of one sample as the network sees it (squeezed, transposed).
        extent: spatial shape of the assembled prediction (SPEC §5.11 point 4).
    """

    def __init__(self, cfg: SlicerConfig, position: int, full: Sequence[int], offset: int,
                 where: str) -> None:
        n = len(full)
        self.name = cfg.name
        self.position = position
        self.full = tuple(int(v) for v in full)
        self.sizes = tuple(int(v) for v in cfg.sizes)
        self.strides = tuple(int(v) for v in (cfg.strides if cfg.strides is not None
                                                else cfg.sizes))
        self.discard = bool(cfg.discard_remainders)
        self.transpose = bool(cfg.transpose)
        self.offset = int(offset)
        if cfg.padding is not None:
            self.before = tuple(int(p) for p in cfg.padding)
            self.after = self.before
        elif cfg.padded_sizes is not None:
            self.before = tuple((int(p) - s) // 2 for p, s in zip(cfg.padded_sizes, self.sizes))
            self.after = tuple(int(p) - s - b for p, s, b in
                               zip(cfg.padded_sizes, self.sizes, self.before))
        else:
            self.before = self.after = (0,) * n
        self.padded = tuple(s + b + a for s, b, a in zip(self.sizes, self.before, self.after))
        counts = []
        for i, (N, s, t) in enumerate(zip(self.full, self.sizes, self.strides)):
            if self.discard:
                if s > N:
                    raise DataError(
                        f"{where}.sizes: slice size {s} is larger than the array extent {N} of "
                        f"dimension {i + 1} (array {_fmt_list(self.full)}) with "
                        f"discard_remainders: true")
                counts.append((N - s) // t + 1)
            elif N <= s:
                counts.append(1)
            else:
                counts.append(min(math.ceil((N - s) / t) + 1, math.ceil(N / t)))
        self.counts = tuple(counts)
        self.num_samples = int(np.prod(self.counts, dtype=np.int64))
        self.squeezed = tuple(p == 1 for p in self.padded)
        shape = tuple(p for p in self.padded if p != 1)
        if self.transpose:
            shape = (shape[1], shape[0])
        self.sample_shape = shape
        if self.discard:
            self.extent = tuple((c - 1) * t + s for c, t, s in
                                zip(self.counts, self.strides, self.sizes))
        else:
            self.extent = self.full

    # ---------------------------------------------------------------- per slice
    def origin(self, k: int) -> tuple[int, ...]:
        """Array coordinates of the first cell of slice ``k`` (0-based within the set)."""
        idx = np.unravel_index(int(k), self.counts)
        return tuple(int(i) * t for i, t in zip(idx, self.strides))

    def region(self, k: int) -> tuple[tuple[int, int], ...]:
        """Unpadded region ``((x0, x1), …)`` of slice ``k``, end exclusive, clipped to the array."""
        return tuple((o, min(o + s, N)) for o, s, N in zip(self.origin(k), self.sizes, self.full))

    def region_name(self, k: int) -> str:
        return ",".join(f"{a}:{b}" for a, b in self.region(k))

    def regions(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`region` for many slices: ``(lo, hi)`` arrays of shape ``(K, n)``."""
        idx = np.stack(np.unravel_index(np.asarray(ks, dtype=np.int64), self.counts), axis=1)
        lo = idx * np.asarray(self.strides, dtype=np.int64)
        hi = np.minimum(lo + np.asarray(self.sizes, dtype=np.int64),
                        np.asarray(self.full, dtype=np.int64))
        return lo, hi

    # ---------------------------------------------------------------- report
    def block_lines(self) -> list[str]:
        """The per-set block of SPEC §5.11 (message texts, without timestamps)."""
        pad = "[" + "".join(f"({b},{a})" for b, a in zip(self.before, self.after)) + "]"
        rows = [("Sizes", _fmt_list(self.sizes)), ("Padding", pad),
                ("Padded sizes", _fmt_list(self.padded)), ("Strides", _fmt_list(self.strides)),
                ("Remainders", "discarded" if self.discard else "included"),
                ("Transpose", "true" if self.transpose else "false"),
                ("Num samples", str(self.num_samples))]
        return [f"   Slicer: {self.name}"] + [f"      {k.ljust(12)}: {v}" for k, v in rows]


def check_slicer_configs(slicers: Sequence[SlicerConfig], config_path: str) -> None:
    """Checks that need no array: value ranges, ``padding`` vs ``padded_sizes``, equal sample
    ranks of all sets, ``transpose`` only for 2D samples."""
    ranks: list[tuple[str, int]] = []
    for k, c in enumerate(slicers):
        where = f"{config_path}: neural_network.data.slicers[{k}]"
        n = len(c.sizes)
        if n == 0:
            raise DataError(f"{where}.sizes: at least one slice size is required")
        if any(int(s) < 1 for s in c.sizes):
            raise DataError(f"{where}.sizes: slice sizes must be at least 1, received "
                            f"{_fmt_list(c.sizes)}")
        for key in ("padding", "padded_sizes", "strides"):
            v = getattr(c, key)
            if v is not None and len(v) != n:
                raise DataError(f"{where}.{key}: expected {n} values (one per entry of 'sizes'), "
                                f"received {len(v)}")
        if c.padding is not None and c.padded_sizes is not None:
            raise DataError(f"{where}: 'padding' and 'padded_sizes' are mutually exclusive")
        if c.padding is not None and any(int(p) < 0 for p in c.padding):
            raise DataError(f"{where}.padding: padding must not be negative, received "
                            f"{_fmt_list(c.padding)}")
        if c.padded_sizes is not None and any(int(p) < int(s) for p, s in
                                              zip(c.padded_sizes, c.sizes)):
            raise DataError(f"{where}.padded_sizes: each padded size must be at least the slice "
                            f"size {_fmt_list(c.sizes)}, received {_fmt_list(c.padded_sizes)}")
        if c.strides is not None and any(int(t) < 1 for t in c.strides):
            raise DataError(f"{where}.strides: strides must be at least 1, received "
                            f"{_fmt_list(c.strides)}")
        if c.padding is not None:
            padded = [int(s) + 2 * int(p) for s, p in zip(c.sizes, c.padding)]
        elif c.padded_sizes is not None:
            padded = [int(p) for p in c.padded_sizes]
        else:
            padded = [int(s) for s in c.sizes]
        sample = [p for p in padded if p != 1]
        if c.transpose and len(sample) != 2:
            raise DataError(f"{where}.transpose: transpose needs 2D slices, slice set '{c.name}' "
                            f"gives {len(sample)}D slices {_fmt_list(sample)}")
        ranks.append((c.name, len(sample)))
    if len({r for _, r in ranks}) > 1:
        shown = ", ".join(f"'{name}' {r}D" for name, r in ranks)
        raise DataError(f"{config_path}: neural_network.data.slicers: all slice sets must give "
                        f"samples of the same rank, received {shown}")


class Slicing:
    """All slice sets of one split: global sample index ↔ (set, slice).

    Attributes:
        sets: the :class:`SliceSet` objects in config order.
        full: spatial shape of the sliced array.
        grouped: several sets → sample names are ``<set>/<region>``.
    """

    def __init__(self, slicers: Sequence[SlicerConfig], full: Sequence[int],
                 config_path: str = "config") -> None:
        self.full = tuple(int(v) for v in full)
        sets: list[SliceSet] = []
        offset = 0
        for k, c in enumerate(slicers):
            where = f"{config_path}: neural_network.data.slicers[{k}]"
            if len(c.sizes) != len(self.full):
                raise DataError(f"{where}.sizes: {len(c.sizes)} slice sizes for an array with "
                                f"{len(self.full)} spatial dimensions {_fmt_list(self.full)}")
            s = SliceSet(c, k, self.full, offset, where)
            sets.append(s)
            offset += s.num_samples
        self.sets = tuple(sets)
        self._offsets = [s.offset for s in self.sets]
        self.num_samples = offset
        self.grouped = len(self.sets) > 1

    def __len__(self) -> int:
        return self.num_samples

    def locate(self, index: int) -> tuple[SliceSet, int]:
        """``(slice set, slice number within the set)`` of global sample ``index``."""
        index = int(index)
        if not 0 <= index < self.num_samples:
            raise IndexError(f"slice index {index} out of range (0..{self.num_samples - 1})")
        j = bisect.bisect_right(self._offsets, index) - 1
        s = self.sets[j]
        return s, index - s.offset

    def name(self, index: int) -> str:
        """``"x0:x1,y0:y1"`` (``"<set>/x0:x1,y0:y1"`` with several sets), SPEC §5.11."""
        s, k = self.locate(index)
        region = s.region_name(k)
        return f"{s.name}/{region}" if self.grouped else region

    def bounding_box(self, indices: Sequence[int]) -> Optional[tuple[tuple[int, ...],
                                                                      tuple[int, ...]]]:
        """Smallest box ``(lo, hi)`` holding the unpadded regions of ``indices`` (None if empty)."""
        idx = np.asarray(sorted(set(int(i) for i in indices)), dtype=np.int64)
        if idx.size == 0:
            return None
        lo_all, hi_all = [], []
        for s in self.sets:
            sel = idx[(idx >= s.offset) & (idx < s.offset + s.num_samples)] - s.offset
            if sel.size:
                lo, hi = s.regions(sel)
                lo_all.append(lo.min(axis=0))
                hi_all.append(hi.max(axis=0))
        lo = np.min(np.stack(lo_all), axis=0)
        hi = np.max(np.stack(hi_all), axis=0)
        return tuple(int(v) for v in lo), tuple(int(v) for v in hi)

    # ---------------------------------------------------------------- cutting
    def cut(self, read, index: int, channels: int) -> np.ndarray:
        """Sample ``index`` as float32 ``(C, *sample_shape)``.

        Args:
            read: ``read(lo, hi) -> ndarray (C, *box)`` returns the array over the spatial box
                ``[lo, hi)``.
            channels: C.
        """
        s, k = self.locate(index)
        region = s.region(k)
        lo = tuple(a for a, _ in region)
        hi = tuple(b for _, b in region)
        data = read(lo, hi)
        valid = tuple(b - a for a, b in region)
        if valid == s.sizes and not any(s.before) and not any(s.after):
            out = np.array(data, dtype=np.float32, copy=True)
        else:
            out = np.zeros((channels,) + s.padded, dtype=np.float32)
            out[(slice(None),) + tuple(slice(b, b + v) for b, v in zip(s.before, valid))] = data
        out = out.reshape((channels,) + tuple(p for p in s.padded if p != 1))
        if s.transpose:
            out = np.ascontiguousarray(out.transpose(0, 2, 1))
        return out

    def restore(self, index: int, prediction, squeeze: bool = True) -> np.ndarray:
        """The part of a slice's prediction that belongs to the array (SPEC §5.11).

        Args:
            index: global sample index.
            prediction: ``(C2, *sample_shape)`` network output of that sample (numpy or tensor).
            squeeze: keep the squeezed dimensions removed (per-slice output); False gives the
                n-dimensional ``(C2, *valid region)`` used for assembly.

        Returns:
            float32 ``(C2, *region)`` channel-first, transpose undone, padding and the zero-filled
            remainder cropped.

        Raises:
            DataError: the prediction does not have the slice's spatial shape.
        """
        if isinstance(prediction, torch.Tensor):
            prediction = prediction.detach().to("cpu", torch.float32).numpy()
        p = np.asarray(prediction)
        s, k = self.locate(index)
        if p.ndim != len(s.sample_shape) + 1 or tuple(p.shape[1:]) != s.sample_shape:
            raise DataError(
                f"slice set '{s.name}': the network output {list(p.shape)} of slice "
                f"'{s.region_name(k)}' does not have the slice's spatial shape "
                f"{list(s.sample_shape)} (assembling slices needs a geometry-preserving network: "
                f"(C1, spatial...) -> (C2, same spatial...))")
        c2 = p.shape[0]
        if s.transpose:
            p = p.transpose(0, 2, 1)
        p = p.reshape((c2,) + s.padded)
        region = s.region(k)
        p = p[(slice(None),) + tuple(slice(b, b + (e - a)) for b, (a, e) in
                                     zip(s.before, region))]
        if squeeze:
            p = p.reshape((c2,) + tuple(e - a for (a, e), q in zip(region, s.squeezed) if not q))
        return p


# --------------------------------------------------------------------------------------------
# array access
# --------------------------------------------------------------------------------------------

class _ArrayFile:
    """One array in a ``.npy``/``.npz``/HDF5 file, read by spatial box.

    ``shape`` is the stored shape; ``channel_first`` tells whether axis 0 is a channel axis."""

    def __init__(self, kind: str, path: str, dataset: Optional[str], shape: tuple[int, ...],
                 dtype, n: int, where: str) -> None:
        self.kind = kind
        self.path = path
        self.dataset = dataset
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self.where = where
        if len(self.shape) == n:
            self.channel_first = False
        elif len(self.shape) == n + 1:
            self.channel_first = True
        else:
            what = f"dataset '{dataset}' of '{path}'" if kind == "hdf5" else f"array '{path}'"
            raise DataError(f"{where}: {what} has shape {_fmt_list(self.shape)}; slicers with "
                            f"{n} sizes need an array of rank {n} (no channel axis) or {n + 1} "
                            f"(channel-first)")
        self.spatial = self.shape[1:] if self.channel_first else self.shape
        self.channels = self.shape[0] if self.channel_first else 1
        self._handle = None
        self._file = None
        self._pid = None
        self._mem: Optional[np.ndarray] = None       # pre-loaded box (C, *box)
        self._mem_lo: tuple[int, ...] = ()
        self._mem_hi: tuple[int, ...] = ()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"] = None
        state["_file"] = None
        state["_pid"] = None
        return state

    def _open(self):
        if self._handle is None or self._pid != os.getpid():
            self._pid = os.getpid()
            try:
                if self.kind == "hdf5":
                    import h5py

                    self._file = h5py.File(self.path, "r")
                    self._handle = self._file[self.dataset]
                elif self.dataset is not None:        # .npz member: no memory mapping
                    with np.load(self.path, allow_pickle=False) as z:
                        self._handle = z[self.dataset]
                else:
                    self._handle = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (OSError, KeyError, ValueError) as e:
                raise DataError(f"{self.where}: cannot read {self._what()}: {e}") from None
        return self._handle

    def _what(self) -> str:
        if self.kind == "hdf5":
            return f"dataset '{self.dataset}' of HDF5 file '{self.path}'"
        if self.dataset is not None:
            return f"array '{self.dataset}' of '{self.path}'"
        return f"NumPy file '{self.path}'"

    def _read_file(self, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
        h = self._open()
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        try:
            data = h[(slice(None),) + sl] if self.channel_first else h[sl]
        except (OSError, ValueError) as e:
            raise DataError(f"{self.where}: cannot read {self._what()}: {e}") from None
        data = np.asarray(data)
        return data if self.channel_first else data[None]

    def read(self, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
        """``(C, *box)`` over the spatial box ``[lo, hi)`` (a view when pre-loaded)."""
        m = self._mem
        if m is not None and all(a >= ml and b <= mh for a, b, ml, mh in
                                 zip(lo, hi, self._mem_lo, self._mem_hi)):
            return m[(slice(None),) + tuple(slice(a - ml, b - ml) for a, b, ml in
                                            zip(lo, hi, self._mem_lo))]
        return self._read_file(lo, hi)

    def preload(self, lo: Sequence[int], hi: Sequence[int]) -> None:
        """Keep the box ``[lo, hi)`` in memory (float64 is stored as float32)."""
        data = self._read_file(lo, hi)
        if data.dtype == np.float64:
            data = data.astype(np.float32)
        self._mem = np.ascontiguousarray(data)
        self._mem_lo, self._mem_hi = tuple(lo), tuple(hi)


def _find_array(kind: str, path: str, where: str, n: int) -> _ArrayFile:
    """The single array under ``path`` (a file or a directory holding one file)."""
    exts = HDF5_EXTENSIONS if kind == "hdf5" else NUMPY_EXTENSIONS
    check_exists(path, where, exts)
    files = walk_files(path, exts)
    kind_name = "HDF5" if kind == "hdf5" else "NumPy"
    if not files:
        raise DataError(f"{where}: no {kind_name} files ({', '.join(exts)}) found in '{path}'")
    found: list[tuple[str, Optional[str], tuple, object]] = []   # (file, dataset, shape, dtype)
    for rel, full in files:
        shown = path if os.path.isfile(path) else full
        try:
            if kind == "hdf5":
                import h5py

                with h5py.File(full, "r") as f:
                    items: list[tuple[str, tuple, object]] = []
                    f.visititems(lambda name, obj: items.append((name, obj.shape, obj.dtype))
                                 if isinstance(obj, h5py.Dataset) else None)
                found += [(shown, name, shape, dt) for name, shape, dt in sorted(items)]
            elif full.lower().endswith(".npz"):
                with np.load(full, allow_pickle=False) as z:
                    for key in z.files:
                        arr = z[key]
                        found.append((shown, key, arr.shape, arr.dtype))
            else:
                arr = np.load(full, mmap_mode="r", allow_pickle=False)
                found.append((shown, None, arr.shape, arr.dtype))
        except (OSError, ValueError) as e:
            raise DataError(f"{where}: cannot read {kind_name} file '{full}': {e}") from None
    if len(found) != 1:
        if not found:
            raise DataError(f"{where}: no arrays found in '{path}' (slicers need one array)")
        if kind == "hdf5":
            listed = ", ".join(f"'{ds}' in '{f}'" if len(files) > 1 else f"'{ds}'"
                               for f, ds, _, _ in found)
            raise DataError(f"{where}: slicers need exactly one array to slice, found "
                            f"{len(found)} datasets in '{path}': {listed}")
        listed = ", ".join(f"'{f}'" if ds is None else f"'{f}/{ds}'" for f, ds, _, _ in found)
        raise DataError(f"{where}: slicers need exactly one array to slice, found {len(found)} "
                        f"arrays in '{path}': {listed}")
    f, ds, shape, dt = found[0]
    bad = non_numeric(dt)
    if bad is not None:
        what = f"dataset '{ds}' of HDF5 file '{f}'" if kind == "hdf5" else (
            f"NumPy file '{f}'" if ds is None else f"array '{ds}' of '{f}'")
        raise DataError(f"{where}: {what} holds {bad}")
    return _ArrayFile(kind, f, ds, tuple(shape), dt, n, where)


# --------------------------------------------------------------------------------------------
# the source
# --------------------------------------------------------------------------------------------

class SlicedSource(Source):
    """Samples = the slices of one array (inputs or targets of one split).

    ``lazy_preload``: :meth:`rmldnn_py.data.split.Split.preload_inputs` calls :meth:`preload`
    with this rank's sample indices instead of caching every sample.
    """

    unit = "samples"
    lazy_preload = True

    def __init__(self, array: _ArrayFile, slicing: Slicing, root: str, where: str) -> None:
        super().__init__(root, where)
        self.array = array
        self.slicing = slicing
        self.kind = array.kind
        self.noun = "HDF5 samples" if array.kind == "hdf5" else "NumPy samples"
        self.channels = array.channels

    def __len__(self) -> int:
        return len(self.slicing)

    def name(self, index: int) -> str:
        return self.slicing.name(index)

    def file(self, index: int) -> str:
        return self.array.path

    def load(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.slicing.cut(self.array.read, index, self.channels))

    def preload(self, indices: Sequence[int]) -> None:
        """Read the bounding box of the slices ``indices`` into memory once."""
        box = self.slicing.bounding_box(indices)
        if box is not None:
            self.array.preload(*box)


def sliced_source(kind: str, path: str, where: str, *, cfg: DataConfig, config_path: str,
                  logger=None, which: str = "input",
                  slicing: Optional[Slicing] = None) -> SlicedSource:
    """Open the single array under ``path`` and slice it with ``cfg.slicers``.

    Prints (through ``logger``) ``Slicing dataset '<ds>' from HDF5 file: <path>`` or
    ``Loading file: <path>``, ``Full size: [..]`` (the stored shape) and, for inputs (no
    ``slicing`` given), the per-set blocks of SPEC §5.11.

    Args:
        kind: ``"numpy"`` or ``"hdf5"``.
        path / where: the configured path and its error prefix.
        slicing: geometry of the inputs, for targets (the spatial shapes must match).

    Raises:
        DataError: see :func:`check_slicer_configs`, :func:`_find_array`, :class:`SliceSet`.
    """
    if kind not in ("numpy", "hdf5"):
        raise DataError(f"{config_path}: neural_network.data.slicers: slicers need data type "
                        f"'numpy' or 'hdf5' for the {which}s, not '{kind}'")
    check_slicer_configs(cfg.slicers, config_path)
    n = len(cfg.slicers[0].sizes)
    array = _find_array(kind, path, where, n)

    def log(msg: str) -> None:
        if logger is not None:
            logger.line(msg)

    if kind == "hdf5":
        log(f"Slicing dataset '{array.dataset}' from HDF5 file: {array.path}")
    else:
        shown = array.path if array.dataset is None else f"{array.path} ({array.dataset})"
        log(f"Loading file: {shown}")
    log(f"Full size: {_fmt_list(array.shape)}")
    if slicing is None:
        slicing = Slicing(cfg.slicers, array.spatial, config_path)
        for s in slicing.sets:
            for line in s.block_lines():
                log(line)
    elif tuple(array.spatial) != slicing.full:
        raise DataError(f"{where}: the {which} array {_fmt_list(array.shape)} does not have the "
                        f"spatial shape of the input array {_fmt_list(slicing.full)} (targets are "
                        f"sliced with the input geometry)")
    return SlicedSource(array, slicing, path, where)
