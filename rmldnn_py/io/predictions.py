"""HDF5 prediction files ``<test_output_path>/output_<epoch>.h5`` (SPEC §7.5.1).

One dataset per input sample, named by the sample's path relative to ``test_input_path``
(sub-directories become HDF5 groups), holding the raw channel-first network output for that sample
with the batch axis removed (``(10,)`` for MNIST, ``(C, H, W)`` for segmentation), float32 or
float16 (``hdf5_precision``).

Dataset names are UTF-8 text (HDF5 names are). A file name that is not valid UTF-8 (on Linux a
name is any bytes; Python reads the undecodable bytes as surrogates) is stored in its escaped
form: each byte that is not part of valid UTF-8 becomes ``\\xNN`` (two lower-case hex digits), so
``digit_\\xff.png`` names the file whose name has the byte 0xFF there; every other character is
kept as is. See :func:`dataset_name`.

Writing runs on a background thread so inference does not wait for the disk; the file is written
under a temporary name and renamed when complete, so a failed run never leaves a half-written file
or damages an existing one. A full disk (or a file size limit, a read-only file system, ...) ends
the writing cleanly: the temporary file is removed and the next :meth:`PredictionWriter.add` or
:meth:`PredictionWriter.close` raises one :class:`~rmldnn_py.errors.RmldnnError` line
``<file>: cannot write predictions: no space left on device``. HDF5 itself never sees the write
error (it writes through :class:`~rmldnn_py.io.atomic.GuardedFile`, which keeps the bytes that no
longer fit in memory until the file is closed): HDF5 does not survive write errors (it prints
errors from destructors and may crash when closing).
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Mapping, Optional

import h5py  # imported here, never on the writer thread: a fork while a thread holds the import
import numpy as np  # lock would deadlock DataLoader workers

from ..errors import RmldnnError
from .atomic import GuardedFile, atomic_path, write_error

_STOP = object()


def output_path(directory: str, epoch: int) -> str:
    """``<directory>/output_<epoch>.h5``."""
    return os.path.join(directory, f"output_{epoch}.h5")


def dataset_name(name: str) -> str:
    """The HDF5 dataset name of a sample name: unchanged when it is valid Unicode text; bytes of
    a non-UTF-8 file name (surrogates ``\\udc80``-``\\udcff`` from ``os.fsdecode``) become
    ``\\xNN`` (``'a\\udcff.png'`` → ``'a\\\\xff.png'``, i.e. the text ``a\\xff.png``)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _attr_value(value: Any) -> Any:
    if isinstance(value, str):
        return dataset_name(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [dataset_name(v) for v in value]
    return value


class PredictionWriter:
    """Writes ``(name, array)`` pairs to an HDF5 file from a background thread.

    Usage::

        with PredictionWriter(path, precision="single", attrs={"class_names": names}) as w:
            w.add("digit_0.png", logits_numpy)       # (10,)

    Dataset names are the sample names escaped by :func:`dataset_name` (a non-UTF-8 byte of a
    file name becomes ``\\xNN``).

    Args:
        path: final file path; its directory is created.
        precision: ``"single"`` (float32) or ``"half"`` (float16).
        max_pending: samples queued before :meth:`add` waits for the disk.
        attrs: file-level HDF5 attributes (``str``, numbers, lists of them), e.g. the class names;
            strings are escaped like dataset names.

    Raises:
        RmldnnError: one line naming the file: at construction when the temporary file cannot
            be created (read-only directory, a file in the way), on :meth:`add` / :meth:`close`
            when writing failed (``no space left on device``, or the dataset that could not be
            written). The temporary file is removed; an existing file is never modified.
    """

    def __init__(self, path: str, precision: str = "single", max_pending: int = 256,
                 attrs: Optional[Mapping[str, Any]] = None) -> None:
        self.path = path
        self.dtype = np.float16 if precision == "half" else np.float32
        self.attrs = dict(attrs or {})
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=max_pending)
        self._error: Optional[RmldnnError] = None
        self._ctx = atomic_path(path)
        try:
            self._tmp = self._ctx.__enter__()
        except OSError as exc:
            raise write_error(path, exc, "predictions") from None
        self._thread = threading.Thread(target=self._work, name="rmldnn-h5-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        current = ""
        stopped = False
        guard: Optional[GuardedFile] = None
        try:
            guard = GuardedFile(self._tmp, fail_soft=True)
            with h5py.File(guard, "w") as f:
                for key, value in self.attrs.items():
                    f.attrs[key] = _attr_value(value)
                while True:
                    item = self._queue.get()
                    if item is _STOP:
                        stopped = True
                        break
                    if self._error is not None:
                        continue
                    name, array = item  # type: ignore[misc]
                    current = name
                    f.create_dataset(name, data=np.asarray(array, dtype=self.dtype))
                    if guard.error is not None:
                        self._error = write_error(self.path, guard.error, "predictions")
                current = ""
        except BaseException as exc:  # reported by add() / close()
            if guard is not None and guard.error is not None:
                self._error = write_error(self.path, guard.error, "predictions")
            else:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                where = f"dataset '{current}'" if current else "file"
                self._error = RmldnnError(f"{self.path}: cannot write {where}: {reason}")
            while not stopped and self._queue.get() is not _STOP:  # drain: producers never block
                pass
        finally:
            if guard is not None:
                if guard.error is not None and self._error is None:
                    self._error = write_error(self.path, guard.error, "predictions")
                try:
                    guard.close()
                except OSError as exc:
                    if self._error is None:
                        self._error = write_error(self.path, exc, "predictions")

    def add(self, name: str, array: np.ndarray) -> None:
        """Queue one sample's prediction (channel-first, no batch axis) under dataset
        ``dataset_name(name)``.

        Raises:
            RmldnnError: an earlier write failed (see the class docstring).
        """
        if self._error is not None:
            raise self._error
        self._queue.put((dataset_name(name), array))

    def close(self) -> None:
        """Finish writing and move the file into place.

        Raises:
            RmldnnError: a write failed; the temporary file is removed, any old file is kept.
        """
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            self._ctx.__exit__(type(self._error), self._error, None)
            raise self._error
        try:
            self._ctx.__exit__(None, None, None)
        except OSError as exc:          # the rename failed
            raise write_error(self.path, exc, "predictions") from None

    def abort(self) -> None:
        """Stop without producing the file (an error happened elsewhere)."""
        self._queue.put(_STOP)
        self._thread.join()
        exc = RuntimeError("aborted")
        try:
            self._ctx.__exit__(RuntimeError, exc, None)
        except RuntimeError:
            pass

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
