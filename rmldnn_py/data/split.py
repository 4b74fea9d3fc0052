"""One split (training or test): sample reading, pre-loading, batching (SPEC §5.7).

Two ways of producing batches:

* **pre-loaded** (``preload: true``): this rank's samples are decoded once into their compact form
  (``uint8`` images); per batch they are converted to float and transformed in the main process.
  When all samples share one shape and no random transform is active, a batch is one gather of
  a stacked tensor, converted and transformed as a whole (same result as sample by sample);
* **streaming**: a :class:`torch.utils.data.DataLoader` with worker processes decodes, converts
  and transforms each sample (persistent workers, ``pin_memory`` on CUDA).

Random transforms draw from torch's global generator of the process that runs them.

Test batches of a sliced split whose slice sets give samples of different shapes hold samples of
one slice set each: a rank's block is cut at the slice-set boundaries and each piece into batches
(:func:`_grouped_test_batches`); ``num_batches`` is the largest count over the ranks, so it is the
same on every rank, and ranks with fewer batches run empty ones at the end.

With ``preload``, pre-loaded samples that a batch would hold together are checked to have one
shape after the (deterministic) transforms before training starts
(:meth:`Split._check_preloaded_shapes`), instead of failing when the batch is stacked mid-epoch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config.types import TransformSpec
from ..errors import DataError
from ..log import kv_row
from . import partition
from .sources import Source
from .transforms import Pipeline, describe


class Batch(NamedTuple):
    """``inputs`` float32 ``(B, C, *spatial)``; ``targets`` int64 ``(B,)`` labels, a float32
    ``(B, C_t, *spatial)`` array, or None; ``indices`` int64 ``(B,)`` global sample indices."""

    inputs: torch.Tensor
    targets: Optional[torch.Tensor]
    indices: torch.Tensor


@dataclass
class DataBundle:
    """Result of :func:`rmldnn_py.data.build_datasets`."""

    train: Optional["Split"]
    test: Optional["Split"]
    class_names: Optional[list[str]]


class _Failure:
    """A DataError raised inside a DataLoader worker, carried to the main process so that the
    user sees the one-line message (DataLoader would wrap it in a traceback)."""

    def __init__(self, message: str) -> None:
        self.message = message


class SampleReader:
    """Reads and transforms sample ``i`` of a split (picklable, runs in DataLoader workers).

    Args:
        inputs: the input source.
        targets: dense target source (``images``/``numpy``/``hdf5``) or None.
        labels: int64 ``(N,)`` class labels or None.
        pipeline: transforms of this split.
    """

    def __init__(self, inputs: Source, targets: Optional[Source], labels: Optional[torch.Tensor],
                 pipeline: Pipeline) -> None:
        self.inputs = inputs
        self.targets = targets
        self.labels = labels
        self.pipeline = pipeline
        self.cache_in: dict[int, torch.Tensor] = {}
        self.cache_tgt: dict[int, torch.Tensor] = {}

    @property
    def reads_targets(self) -> bool:
        # random_patches builds the targets from the inputs: loaded targets would be discarded
        return self.targets is not None and not self.pipeline.makes_targets

    def raw_input(self, i: int) -> torch.Tensor:
        t = self.cache_in.get(i)
        return t if t is not None else self.inputs.load(i)

    def raw_target(self, i: int) -> torch.Tensor:
        t = self.cache_tgt.get(i)
        return t if t is not None else self.targets.load(i)

    def sample(self, i: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x = self.inputs.to_float(self.raw_input(i))
        y = self.targets.to_float(self.raw_target(i)) if self.reads_targets else None
        x, y = self.pipeline(x, y, self.inputs.name(i))
        if self.labels is not None:
            y = self.labels[i]
        return x, y


class _SampleDataset(Dataset):
    def __init__(self, reader: SampleReader) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader.inputs)

    def __getitem__(self, i: int):
        try:
            x, y = self.reader.sample(i)
        except DataError as e:
            return _Failure(str(e))
        return x, y, i


def _stack(tensors: Sequence[torch.Tensor], where: str, what: str,
           names: Sequence[str]) -> torch.Tensor:
    shape = tensors[0].shape
    for t, n in zip(tensors, names):
        if t.shape != shape:
            raise DataError(f"{where}: {what} of one batch have different shapes: '{names[0]}' "
                            f"{list(shape)}, '{n}' {list(t.shape)} (add a 'resize' transform)")
    return torch.stack(list(tensors))


class _Collate:
    """Stacks the samples of one batch into a :class:`Batch` (runs in the DataLoader worker, so
    the DataLoader's pin-memory thread can pin the result). Errors travel as :class:`_Failure`."""

    def __init__(self, inputs: Source, role: str) -> None:
        self.inputs = inputs
        self.role = role

    def __call__(self, items):
        for it in items:
            if isinstance(it, _Failure):
                return it
        try:
            return _stack_batch(self.inputs, self.role, [it[0] for it in items],
                                [it[1] for it in items], [it[2] for it in items])
        except DataError as e:
            return _Failure(str(e))


def _stack_batch(inputs: Source, role: str, xs, ys, idx) -> Batch:
    names = [inputs.name(i) for i in idx]
    x = _stack(xs, inputs.where, f"{role} input samples", names)
    y = None if ys[0] is None else _stack(ys, inputs.where, f"{role} targets", names)
    return Batch(x, y, torch.tensor(idx, dtype=torch.int64))


def _stack_draining(cache: dict, keys: list) -> torch.Tensor:
    """``torch.stack([cache[k] for k in keys])`` that empties ``cache`` as it goes, so the peak
    memory stays ≈ one copy of the pre-loaded pixels instead of two."""
    first = cache[keys[0]]
    out = torch.empty((len(keys), *first.shape), dtype=first.dtype)
    for j, k in enumerate(keys):
        out[j] = cache.pop(k)
    cache.clear()
    return out


def _shape_groups(src: Source) -> Optional[list[tuple[int, int]]]:
    """``[(first, end), ...]`` global index ranges of the slice sets of a sliced source whose
    sets give samples of different shapes; None otherwise (no slicers, or one shape)."""
    slicing = getattr(src, "slicing", None)
    sets = getattr(slicing, "sets", None)
    if not sets or len({tuple(s.sample_shape) for s in sets}) < 2:
        return None
    return [(s.offset, s.offset + s.num_samples) for s in sets]


def _grouped_test_batches(block: list[int], groups: list[tuple[int, int]],
                          batch_local: int) -> list[list[int]]:
    """The test batches of one rank's contiguous ``block`` when a batch may only hold samples of
    one group (slice set): the block is cut at the group boundaries and each piece into batches
    of ``batch_local`` (the last batch of a piece may be partial). Order = sample order."""
    out: list[list[int]] = []
    if not block:
        return out
    lo, hi = block[0], block[-1] + 1
    for a, b in groups:
        a, b = max(a, lo), min(b, hi)
        for k in range(a, b, batch_local):
            out.append(list(range(k, min(k + batch_local, b))))
    return out


def _worker_init(_worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM/SIGUSR1 to the main process (Slurm and
    ``scancel --signal`` signal every process of a job step: a worker must not die of the
    preemption signal the main process turns into a checkpoint)."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass


_EXIT_HOOK = False


def _kill_workers_at_exit() -> None:
    """At interpreter exit, SIGKILL the daemonic children (the DataLoader workers) that are still
    alive. multiprocessing's own exit handler, which runs after this one, terminates them with
    SIGTERM and joins them; workers ignore SIGTERM (:func:`_worker_init`), so a loader never shut
    down (persistent workers of a split left open, e.g. after an exception) would make the
    process wait for them forever."""
    import multiprocessing

    for p in multiprocessing.active_children():
        if p.daemon:
            try:
                p.kill()
            except (OSError, ValueError):
                pass


def _register_exit_hook() -> None:
    global _EXIT_HOOK
    if not _EXIT_HOOK:
        import atexit

        atexit.register(_kill_workers_at_exit)   # LIFO: runs before multiprocessing's handler
        _EXIT_HOOK = True


class _EpochBatches(Sampler):
    """Batch sampler whose batches are set before each epoch (works with persistent workers)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Split:
    """One role (``"training"`` or ``"test"``) of the data. See ``docs/ARCHITECTURE.md``.

    Attributes:
        role: ``"training"`` or ``"test"``.
        kind: data type for the Dataset block (``"images"``, ``"numpy"``, ...).
        unit: ``"images"`` or ``"samples"``.
        num_total / num_local: samples in the split / processed by this rank per epoch.
        batch_requested / batch_local: global and per-process batch sizes.
        num_batches: batches per epoch, identical on every rank.
        transforms: the transforms actually applied (Transforms listing).
        has_targets / target_kind: targets exist / their type (``"labels"``, ``"images"``, ...).
        input_path: the split's input path as written in the config.
    """

    def __init__(self, role: str, reader: SampleReader, *, target_kind: Optional[str],
                 batch_size: int, rank: int, world_size: int, seed: int, preload: bool,
                 num_workers: Optional[int], device_is_cuda: bool) -> None:
        self.role = role
        self.reader = reader
        src = reader.inputs
        self.kind = src.kind
        self.unit = src.unit
        self.input_path = src.root
        self.num_total = len(src)
        self.batch_requested = batch_size
        self.batch_local = partition.per_process_batch(batch_size, world_size)
        self.num_batches = partition.num_batches(self.num_total, world_size, self.batch_local)
        self.transforms: tuple[TransformSpec, ...] = reader.pipeline.specs
        self._target_kind = target_kind
        self.seed = seed
        self._train = role == "training"
        self._rank, self._world = rank, world_size
        if self._train:
            # a rank's training samples change every epoch (partition.train_batches): it may
            # read (and pre-loads) any sample
            self._share = list(range(self.num_total))
            self.num_local = partition.share_size(self.num_total, world_size)
        else:
            self._share = partition.test_block(self.num_total, rank, world_size)
            self.num_local = len(self._share)
        # test slices of several shapes: a batch holds samples of one slice set (issue 11)
        self._grouped_plan: Optional[list[list[int]]] = None
        groups = _shape_groups(src)
        if not self._train and groups is not None:
            plans = [_grouped_test_batches(partition.test_block(self.num_total, r, world_size),
                                           groups, self.batch_local) for r in range(world_size)]
            self.num_batches = max(len(p) for p in plans)
            mine = plans[rank]
            self._grouped_plan = mine + [[] for _ in range(self.num_batches - len(mine))]
        self._preload = preload
        self._pin = bool(device_is_cuda) and torch.cuda.is_available()
        if num_workers is None:
            num_workers = 0 if preload else min(4, os.cpu_count() or 1)
        self.num_workers = max(0, int(num_workers))
        self._loader: Optional[DataLoader] = None
        self._sampler = _EpochBatches()
        self._stacked_in: Optional[torch.Tensor] = None
        self._stacked_tgt: Optional[torch.Tensor] = None
        self._row: dict[int, int] = {}
        self._sample_shapes: Optional[tuple] = None
        self._fast_checked = False

    @property
    def has_targets(self) -> bool:
        r = self.reader
        return r.labels is not None or r.targets is not None or r.pipeline.makes_targets

    @property
    def target_kind(self) -> Optional[str]:
        if not self.has_targets:
            return None
        return "images" if self.reader.pipeline.makes_targets and self._target_kind is None \
            else self._target_kind

    def set_targets(self, kind: Optional[str], *, labels: Optional[torch.Tensor] = None,
                    source: Optional[Source] = None) -> None:
        """Attach the targets discovered after the inputs (labels or a dense source)."""
        self._target_kind = kind
        self.reader.labels = labels
        self.reader.targets = source

    # ---------------------------------------------------------------- pre-loading
    def _decode_all(self, load, indices: list[int]) -> dict[int, torch.Tensor]:
        threads = min(8, os.cpu_count() or 1)
        if threads <= 1 or len(indices) < 64:
            return {i: load(i) for i in indices}
        with ThreadPoolExecutor(threads) as pool:
            return dict(zip(indices, pool.map(load, indices)))

    def preload_inputs(self, logger=None, message: str = "") -> None:
        """Decode this rank's inputs (``preload: true``): its test block, or the whole training
        set (a rank's training samples change every epoch, see :mod:`.partition`)."""
        if not self._preload:
            return
        if logger is not None and message:
            logger.line(message)
        local = sorted(set(self._share))
        if getattr(self.reader.inputs, "lazy_preload", False):   # slicers: keep the array only
            self.reader.inputs.preload(local)
            return
        self.reader.cache_in = self._decode_all(self.reader.inputs.load, local)
        self._check_preloaded_shapes()

    def preload_targets(self, logger=None, message: str = "") -> None:
        """Decode this rank's targets (called after the target discovery messages)."""
        if not self._preload or not self.reader.reads_targets:
            return
        if logger is not None and message:
            logger.line(message)
        local = sorted(set(self._share))
        if getattr(self.reader.targets, "lazy_preload", False):
            self.reader.targets.preload(local)
            return
        self.reader.cache_tgt = self._decode_all(self.reader.targets.load, local)
        self._check_preloaded_shapes()

    def _check_preloaded_shapes(self) -> None:
        """Before training: pre-loaded samples that a batch would hold together must have the
        same shape after the transforms (else the batch cannot be stacked, mid-epoch).

        Runs when the transforms are deterministic (random ones are not drawn here: that would
        change the random stream of the run); one sample per distinct raw shape is transformed.
        Training batches are random draws, so any two samples may meet; test batches are fixed.

        Raises:
            DataError: naming two samples and their shapes (as the batch would).
        """
        r = self.reader
        if self.batch_local <= 1 or not r.cache_in or not r.pipeline.deterministic:
            return
        tgt = r.cache_tgt if r.reads_targets else {}

        def raw(i: int) -> tuple:
            t = tgt.get(i)
            return (tuple(r.cache_in[i].shape), None if t is None else tuple(t.shape))

        reps: dict[tuple, int] = {}
        for i in r.cache_in:
            reps.setdefault(raw(i), i)
        if len(reps) < 2:
            return
        final: dict[tuple, tuple] = {}
        for key, i in reps.items():
            x, y = r.sample(i)
            final[key] = (tuple(x.shape), None if y is None or y.dim() == 0 else tuple(y.shape))
        groups = [list(r.cache_in)] if self._train else self._epoch_batches(1)
        for batch in groups:
            first = None
            for i in batch:
                if i not in r.cache_in:
                    continue
                if first is None:
                    first = i
                    continue
                a, b = final[raw(first)], final[raw(i)]
                if a != b:
                    which = 0 if a[0] != b[0] else 1
                    what = "input samples" if which == 0 else "targets"
                    where = r.inputs.where if which == 0 else r.targets.where
                    raise DataError(
                        f"{where}: {self.role} {what} of different shapes would share a batch: "
                        f"'{r.inputs.name(first)}' {list(a[which])}, '{r.inputs.name(i)}' "
                        f"{list(b[which])} (add a 'resize' transform, or use a batch size of 1)")

    def _prepare_fast_path(self) -> None:
        """Stack the pre-loaded samples when one gather per batch is enough."""
        r = self.reader
        if not self._preload or not r.pipeline.deterministic or not r.cache_in:
            return
        keys = sorted(r.cache_in)
        first = r.cache_in[keys[0]]
        if any(r.cache_in[k].shape != first.shape or r.cache_in[k].dtype != first.dtype
               for k in keys):
            return
        if not r.pipeline.empty and first.ndim != 3:
            return        # transforms run on batches of 2D samples only
        tgt = None
        if r.reads_targets:
            f0 = r.cache_tgt[keys[0]]
            if any(r.cache_tgt[k].shape != f0.shape or r.cache_tgt[k].dtype != f0.dtype
                   for k in keys):
                return
            if not r.pipeline.empty and f0.ndim != 3:
                return
            tgt = _stack_draining(r.cache_tgt, keys)
        self._stacked_in = _stack_draining(r.cache_in, keys)
        self._stacked_tgt = tgt
        self._row = {k: n for n, k in enumerate(keys)}

    # ---------------------------------------------------------------- batching
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        if self._train:
            return partition.train_batches(self.num_total, self._rank, self._world,
                                           self.batch_local, self.seed, epoch)
        if self._grouped_plan is not None:
            return [list(b) for b in self._grouped_plan]
        return partition.chunk(list(self._share), self.batch_local, self.num_batches)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Exactly ``num_batches`` batches of this rank for ``epoch`` (see module docstring);
        with ``start`` = k the first k are skipped without being read (resuming inside an
        epoch: the remaining batches are the same as in an uninterrupted run)."""
        plan = self._epoch_batches(epoch)[start:]
        real = [b for b in plan if b]
        if self._preload and self.num_workers == 0:
            if not self._fast_checked:
                self._fast_checked = True
                self._prepare_fast_path()
            produced = (self._make_batch(b) for b in real)
        else:
            produced = self._loader_batches(real)
        count = 0
        for batch in produced:
            count += 1
            yield batch
        for _ in range(len(plan) - count):
            yield self._empty_batch()

    def _loader_batches(self, real: list[list[int]]) -> Iterator[Batch]:
        if not real:
            return
        if self._loader is None:
            workers = self.num_workers
            self._loader = DataLoader(
                _SampleDataset(self.reader), batch_sampler=self._sampler, num_workers=workers,
                collate_fn=_Collate(self.reader.inputs, self.role), pin_memory=self._pin,
                persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                worker_init_fn=_worker_init if workers > 0 else None)
            if workers > 0:
                _register_exit_hook()
        self._sampler.batches = real
        for item in self._loader:
            if isinstance(item, _Failure):
                raise DataError(item.message)
            self._remember_shapes(item)
            yield item

    def _make_batch(self, idx: list[int]) -> Batch:
        r = self.reader
        if self._stacked_in is not None:
            rows = torch.tensor([self._row[i] for i in idx], dtype=torch.int64)
            x = r.inputs.to_float(self._stacked_in.index_select(0, rows))
            y = None
            if self._stacked_tgt is not None:
                y = r.targets.to_float(self._stacked_tgt.index_select(0, rows))
            x, y = r.pipeline.apply_batch(x, y, r.inputs.name(idx[0]))
            if r.labels is not None:
                y = r.labels[idx]
            return self._finish(x, y, torch.tensor(idx, dtype=torch.int64))
        xs, ys = [], []
        for i in idx:
            x, y = r.sample(i)
            xs.append(x)
            ys.append(y)
        b = _stack_batch(r.inputs, self.role, xs, ys, idx)
        return self._finish(b.inputs, b.targets, b.indices)

    def _remember_shapes(self, b: Batch) -> None:
        if self._sample_shapes is None:
            y = b.targets
            self._sample_shapes = (tuple(b.inputs.shape[1:]),
                                   None if y is None else tuple(y.shape[1:]))

    def _finish(self, x, y, idx) -> Batch:
        b = Batch(x, y, idx)
        self._remember_shapes(b)
        if self._pin:
            x = x.pin_memory()
            y = y.pin_memory() if y is not None else None
        return Batch(x, y, idx)

    def _empty_batch(self) -> Batch:
        self.sample_shape  # noqa: B018  (fills _sample_shapes)
        xs, ys = self._sample_shapes
        x = torch.zeros((0, *xs), dtype=torch.float32)
        if ys is None:
            y = None
        elif self.reader.labels is not None:
            y = torch.zeros((0,), dtype=torch.int64)
        else:
            y = torch.zeros((0, *ys), dtype=torch.float32)
        return Batch(x, y, torch.zeros((0,), dtype=torch.int64))

    # ---------------------------------------------------------------- information
    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Channel-first shape of one (transformed) input sample, e.g. ``(1, 28, 28)`` (reads
        this rank's first sample once; used to build networks that declare no input shape)."""
        if self._sample_shapes is None:
            x, y = self.reader.sample(self._share[0] if self._share else 0)
            self._sample_shapes = (tuple(x.shape), None if y is None else tuple(y.shape))
        return self._sample_shapes[0]

    def sample_name(self, index: int) -> str:
        """Name of global sample ``index`` relative to the input path (SPEC §7.5.1)."""
        return self.reader.inputs.name(index)

    @property
    def slicing(self):
        """The :class:`rmldnn_py.data.slicers.Slicing` of a sliced split (SPEC §5.11), else None."""
        return getattr(self.reader.inputs, "slicing", None)

    def output_array(self, index: int, prediction):
        """What ``test_output_path`` stores for sample ``index`` (SPEC §7.5.1, §5.11): the
        prediction unchanged, or for a slice its part inside the array (transpose undone, padding
        and zero-filled remainder cropped; squeezed dimensions stay squeezed)."""
        slicing = self.slicing
        return prediction if slicing is None else slicing.restore(index, prediction)

    def dataset_rows(self) -> list[tuple[str, str]]:
        """The six key/value rows of the Dataset block (label width 25, SPEC §7.2.3)."""
        u = "Num images " if self.unit == "images" else "Num samples"
        return [("Type", self.kind),
                (f"{u} (total)", str(self.num_total)),
                (f"{u} (per process)", str(self.num_local)),
                ("Batch size  (requested)", str(self.batch_requested)),
                ("Batch size  (per process)", str(self.batch_local)),
                ("Num batches (per process)", str(self.num_batches))]

    def transform_rows(self) -> list[tuple[str, str]]:
        """(name, value) of every applied transform (``("resize", "[28, 28]")``)."""
        return [(s.name, describe(s)) for s in self.transforms]

    def dataset_lines(self) -> list[str]:
        """Message texts of this split's part of the Dataset block, without the ``Training
        dataset:`` title: the six rows, then ``   Transforms:`` and one line per transform
        (``      resize                : [28, 28]``) when there are any."""
        lines = [kv_row(label, value, 25) for label, value in self.dataset_rows()]
        rows = self.transform_rows()
        if rows:
            lines.append("   Transforms:")
            lines += [kv_row(name, value, 22, indent=6) for name, value in rows]
        return lines

    def close(self) -> None:
        """Stop DataLoader workers (also happens at garbage collection)."""
        self._loader = None
