"""Slice assembly: the predictions of all slices written as whole arrays (SPEC §5.11, §7.5.3).

An :class:`Assembler` receives the network output of every slice of a sliced test split, undoes
the transpose, crops the padding and the zero-filled remainder, and accumulates the valid part
at its place in one array per slice set, counting how many slices cover each cell. At the end
overlapping predictions are averaged (uncovered cells stay 0) and ``hdf5_outfile`` is written:
one dataset per slice set, named after the set, channels-last ``(X1, …, Xn, C2)``, extent N_i
(remainders included) or (n_i − 1)·t_i + s_i (discarded), float32 or float16
(``hdf5_precision``). The file is written under a temporary name and renamed when complete.

Accumulation runs on a background thread (numpy releases the GIL for the array additions), so
the evaluation loop only pays for the device → host copy of each batch.

Several processes: every rank accumulates the slices it evaluated into full-size sum/count
arrays; :meth:`Assembler.close` sums them onto rank 0 with ``torch.distributed.reduce`` (chunked;
through the GPU for the NCCL backend) and rank 0 writes the file. :meth:`Assembler.merge` does the
same for two assemblers in one process, :meth:`Assembler.state` exposes the arrays for any other
reduction.

Usage (evaluation loop, every rank)::

    asm = Assembler(split.slicing, cfg.data.hdf5_outfile, cfg.data.hdf5_precision)
    for x, y, idx in split.batches(epoch):
        out = model(x)                        # (B, C2, *slice spatial)
        asm.add(idx, out)                     # copies to host, accumulation in the background
    path = asm.close()                        # collective when torch.distributed is initialised;
                                              # the written path on rank 0, None elsewhere
"""

from __future__ import annotations

import queue
import threading
from typing import Optional

import h5py  # imported on the main thread (never first on the worker thread, see predictions.py)
import numpy as np
import torch

from ..errors import DataError, RmldnnError
from .atomic import atomic_path

_STOP = object()
_CHUNK = 1 << 24          # elements per torch.distributed.reduce call


def _dist_world() -> tuple[int, int]:
    """``(rank, world size)`` of an initialised default process group, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _comm_device():
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return None


def _reduce_array(arr: np.ndarray, dst: int) -> None:
    """Sum ``arr`` (C-contiguous) over all ranks into rank ``dst``'s copy, in chunks."""
    import torch.distributed as dist

    flat = torch.from_numpy(arr.reshape(-1))
    dev = _comm_device()
    root = dist.get_rank() == dst
    for a in range(0, flat.numel(), _CHUNK):
        part = flat[a:a + _CHUNK]
        if dev is not None:
            g = part.to(dev)
            dist.reduce(g, dst, op=dist.ReduceOp.SUM)
            if root:
                part.copy_(g.cpu())
        else:
            dist.reduce(part, dst, op=dist.ReduceOp.SUM)


class Assembler:
    """Accumulates slice predictions of one split and writes ``hdf5_outfile``.

    Args:
        slicing: the split's :class:`rmldnn_py.data.slicers.Slicing` (``Split.slicing``).
        path: the ``hdf5_outfile`` path (its directory is created when writing).
        precision: ``"single"`` (float32) or ``"half"`` (float16).
        channels: C2, the number of output channels, when known in advance (e.g. from the
            network's output shape); otherwise taken from the first prediction (and agreed on
            between ranks in :meth:`reduce`).
        max_pending: batches queued for the accumulation thread before :meth:`add` waits.

    Raises (from :meth:`add` / :meth:`close`):
        DataError: a prediction is not geometry-preserving, or has another channel count.
        RmldnnError: writing the file failed (names the file).
    """

    def __init__(self, slicing, path: str, precision: str = "single", *,
                 channels: Optional[int] = None, max_pending: int = 4) -> None:
        self.slicing = slicing
        self.path = path
        self.dtype = np.float16 if precision == "half" else np.float32
        self.channels = int(channels) if channels is not None else None
        self._sums: list[Optional[np.ndarray]] = [None] * len(slicing.sets)
        self._counts: list[Optional[np.ndarray]] = [None] * len(slicing.sets)
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=max(1, int(max_pending)))
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._closed = False

    # ---------------------------------------------------------------- accumulation
    def _ensure(self, j: int, channels: int) -> None:
        if self.channels is None:
            self.channels = int(channels)
        elif channels != self.channels:
            raise DataError(f"{self.path}: slice predictions have {channels} channels, earlier "
                            f"ones {self.channels}")
        if self._sums[j] is None:
            extent = self.slicing.sets[j].extent
            self._sums[j] = np.zeros(tuple(extent) + (self.channels,), dtype=np.float32)
            self._counts[j] = np.zeros(tuple(extent), dtype=np.int32)

    def _accumulate(self, index: int, prediction: np.ndarray) -> None:
        s, k = self.slicing.locate(index)
        p = self.slicing.restore(index, prediction, squeeze=False)     # (C2, *region)
        j = self.slicing.sets.index(s)
        self._ensure(j, p.shape[0])
        region = tuple(slice(a, b) for a, b in s.region(k))
        self._sums[j][region] += np.moveaxis(p, 0, -1)
        self._counts[j][region] += 1

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue                          # drain so producers never block
            indices, array = item  # type: ignore[misc]
            try:
                for j, i in enumerate(indices):
                    self._accumulate(i, array[j])
            except BaseException as exc:          # reported by add()/close()
                self._error = exc

    def _raise_error(self) -> None:
        exc = self._error
        if exc is None:
            return
        if isinstance(exc, RmldnnError):
            raise exc
        raise RmldnnError(f"{self.path}: cannot assemble slice predictions: {exc}") from exc

    def add(self, indices, outputs) -> None:
        """Queue one batch: ``indices`` global sample indices ``(B,)`` (tensor or sequence),
        ``outputs`` the network output ``(B, C2, *slice spatial)`` (tensor on any device, or
        numpy). The data are copied to host memory before this returns. The first call starts
        the accumulation thread (after the DataLoader has forked its workers)."""
        self._raise_error()
        if self._closed:
            raise RmldnnError(f"{self.path}: assembler already closed")
        idx = indices.tolist() if isinstance(indices, torch.Tensor) else [int(i) for i in indices]
        if not idx:
            return
        if isinstance(outputs, torch.Tensor):
            arr = outputs.detach().to("cpu", torch.float32, copy=True).numpy()
        else:
            arr = np.array(outputs, dtype=np.float32, copy=True)
        if len(arr) != len(idx):
            raise RmldnnError(f"{self.path}: {len(idx)} indices for {len(arr)} predictions")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="rmldnn-h5-assembler",
                                            daemon=True)
            self._thread.start()
        self._queue.put((idx, arr))

    def wait(self) -> None:
        """Block until every queued batch is accumulated (stops the thread; :meth:`add` may be
        called again afterwards, which starts a new one)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        self._raise_error()

    # ---------------------------------------------------------------- combining ranks
    def _allocate_all(self) -> None:
        c = self.channels if self.channels is not None else 0
        for j in range(len(self._sums)):
            self._ensure(j, c)

    def state(self) -> list[np.ndarray]:
        """``[sum_1, count_1, sum_2, count_2, …]`` per slice set (float32 ``(*extent, C2)`` and
        int32 ``extent``), allocated if needed; summing them element-wise over processes in
        place (e.g. ``torch.distributed.all_reduce(torch.from_numpy(a))``) combines the ranks.
        Waits for pending batches. ``channels`` must be known (given or seen)."""
        self.wait()
        if self.channels is None:
            raise RmldnnError(f"{self.path}: the number of output channels is unknown (no "
                              f"prediction seen; pass channels=)")
        self._allocate_all()
        out: list[np.ndarray] = []
        for s, c in zip(self._sums, self._counts):
            out += [s, c]
        return out

    def merge(self, other: "Assembler") -> None:
        """Add ``other``'s accumulated slices (same slicing) to this one."""
        self.wait()
        other.wait()
        if other.channels is None:
            return
        for j in range(len(self._sums)):
            if other._sums[j] is None:
                continue
            self._ensure(j, other.channels)
            self._sums[j] += other._sums[j]
            self._counts[j] += other._counts[j]

    def reduce(self, dst: int = 0) -> None:
        """Collective (all ranks): sum every rank's arrays onto rank ``dst`` with
        ``torch.distributed``; no-op without an initialised process group. Afterwards only rank
        ``dst`` holds the complete arrays."""
        self.wait()
        rank, world = _dist_world()
        if world <= 1:
            return
        import torch.distributed as dist

        c = torch.tensor([self.channels if self.channels is not None else -1],
                         dtype=torch.int64)
        dev = _comm_device()
        c = c.to(dev) if dev is not None else c
        dist.all_reduce(c, op=dist.ReduceOp.MAX)
        agreed = int(c.item())
        if agreed < 0:
            raise RmldnnError(f"{self.path}: no slice predictions on any rank")
        if self.channels is None:
            self.channels = agreed
        elif self.channels != agreed:
            raise DataError(f"{self.path}: slice predictions have {self.channels} channels on "
                            f"rank {rank}, {agreed} elsewhere")
        self._allocate_all()
        for s, cnt in zip(self._sums, self._counts):
            _reduce_array(s, dst)
            _reduce_array(cnt, dst)

    # ---------------------------------------------------------------- output
    def arrays(self) -> dict[str, np.ndarray]:
        """``{set name: averaged float32 (*extent, C2)}`` (cells covered by no slice are 0).
        Consumes the sums (divides them in place)."""
        self.wait()
        out = {}
        c = self.channels if self.channels is not None else 0
        for s, total, count in zip(self.slicing.sets, self._sums, self._counts):
            if total is None:
                total = np.zeros(tuple(s.extent) + (c,), dtype=np.float32)
            else:
                cnt = count[..., None]
                np.divide(total, cnt, out=total, where=cnt > 0)
            out[s.name] = total
        return out

    def write(self) -> str:
        """Write ``path`` atomically (one dataset per slice set); returns ``path``."""
        arrays = self.arrays()
        current = ""
        try:
            with atomic_path(self.path) as tmp:
                with h5py.File(tmp, "w") as f:
                    for name, a in arrays.items():
                        current = name
                        f.create_dataset(name, data=a if a.dtype == self.dtype
                                         else a.astype(self.dtype))
        except OSError as exc:
            raise RmldnnError(f"{self.path}: cannot write dataset '{current}': {exc}") from None
        return self.path

    def close(self, write: Optional[bool] = None) -> Optional[str]:
        """Finish: wait for the accumulation, :meth:`reduce` onto rank 0 when a process group is
        initialised (collective: every rank must call it), and write the file.

        Args:
            write: write the file here; default: on rank 0 only.

        Returns:
            The written path, or None on ranks that did not write.
        """
        self.wait()
        rank, world = _dist_world()
        if world > 1:
            self.reduce(0)
        if write is None:
            write = rank == 0
        path = self.write() if write else None
        self._closed = True
        self._sums = [None] * len(self._sums)
        self._counts = [None] * len(self._counts)
        return path

    def abort(self) -> None:
        """Stop the accumulation thread without writing (an error happened elsewhere)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        self._closed = True
        self._sums = [None] * len(self._sums)
        self._counts = [None] * len(self._counts)

    def __enter__(self) -> "Assembler":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


__all__ = ["Assembler"]
