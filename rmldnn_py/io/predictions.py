"""HDF5 prediction files ``<test_output_path>/output_<epoch>.h5`` (SPEC §7.5.1).

One dataset per input sample, named by the sample's path relative to ``test_input_path``
(sub-directories become HDF5 groups), holding the raw channel-first network output for that sample
with the batch axis removed (``(10,)`` for MNIST, ``(C, H, W)`` for segmentation), float32 or
float16 (``hdf5_precision``).

Writing runs on a background thread so inference does not wait for the disk; the file is written
under a temporary name and renamed when complete, so a failed run never leaves a half-written file
or damages an existing one.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Optional

import h5py  # imported here, never on the writer thread: a fork while a thread holds the import
import numpy as np  # lock would deadlock DataLoader workers

from ..errors import RmldnnError
from .atomic import atomic_path

_STOP = object()


def output_path(directory: str, epoch: int) -> str:
    """``<directory>/output_<epoch>.h5``."""
    return os.path.join(directory, f"output_{epoch}.h5")


class PredictionWriter:
    """Writes ``(name, array)`` pairs to an HDF5 file from a background thread.

    Usage::

        with PredictionWriter(path, precision="single") as w:
            w.add("digit_0.png", logits_numpy)       # (10,)

    Args:
        path: final file path; its directory is created.
        precision: ``"single"`` (float32) or ``"half"`` (float16).

    Raises:
        RmldnnError: on :meth:`close` if writing failed (names the file and the dataset).
    """

    def __init__(self, path: str, precision: str = "single", max_pending: int = 256) -> None:
        self.path = path
        self.dtype = np.float16 if precision == "half" else np.float32
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=max_pending)
        self._error: Optional[BaseException] = None
        self._ctx = atomic_path(path)
        self._tmp = self._ctx.__enter__()
        self._thread = threading.Thread(target=self._work, name="rmldnn-h5-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        current = ""
        try:
            with h5py.File(self._tmp, "w") as f:
                while True:
                    item = self._queue.get()
                    if item is _STOP:
                        break
                    if self._error is not None:
                        continue
                    name, array = item  # type: ignore[misc]
                    current = name
                    f.create_dataset(name, data=np.asarray(array, dtype=self.dtype))
        except BaseException as exc:  # reported by close()
            self._error = RmldnnError(f"{self.path}: cannot write dataset '{current}': {exc}")
            while self._queue.get() is not _STOP:  # drain so producers never block
                pass

    def add(self, name: str, array: np.ndarray) -> None:
        """Queue one sample's prediction (channel-first, no batch axis) under dataset ``name``."""
        if self._error is not None:
            raise self._error
        self._queue.put((name, array))

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
        self._ctx.__exit__(None, None, None)

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
