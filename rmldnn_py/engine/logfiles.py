"""The ``<outfile>_train.txt`` and ``<outfile>_test.txt`` logs (SPEC §7.3), written by rank 0.

* ``_train.txt``: one line per training batch, ``<epoch> <batch> <frac_epoch> <seconds> <loss>
  <grad_norm>`` (frac_epoch 6 decimals, seconds since the start of training 3 decimals, loss and
  |g| ``%.6g``).
* ``_test.txt``: one line per evaluation pass with targets, ``Epoch: <e> Loss: <%.6g>
  Accuracy: <%.3f>`` (or without the accuracy part when the loss has no metric). The first number
  is the integer epoch and the line ends with ``Accuracy: <value>``, as the tutorials' parsers need.

Opening. Nothing is created or truncated when :class:`LogFiles` is constructed. The log files
are *started* when the first line of either is written: then a log of an earlier run that this
run will not write (``_test.txt`` of a run without test data) is removed, and each file is
created (truncated) when its own first line is written. So a run that fails before its first
line leaves the earlier run's logs untouched, and a run without test data creates no empty
``_test.txt``.

Resuming (``resume_from=(E, B)``). Instead of truncating, starting rewrites each existing log
atomically keeping only the lines of the run being resumed up to the checkpoint: ``_train.txt``
lines with epoch < E, or epoch == E and batch <= B (``B = None``: all of epoch E);
``_test.txt`` lines whose epoch (first number on the line) is <= E. Lines that do not parse and
an unterminated last line (a killed run) are dropped. New lines are then appended.

Errors. A failed write (disk full, file size limit, a directory in the way, permissions) raises
one :class:`~rmldnn_py.errors.RmldnnError` line ``<file>: cannot write log file: <reason>``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from typing import BinaryIO, Optional

from ..errors import RmldnnError
from ..io.atomic import atomic_path, write_error

_NUMBER = re.compile(r"[-+]?\d+")


def log_paths(outfile: str) -> tuple[str, str]:
    """``out_mnist.txt`` → (``out_mnist_train.txt``, ``out_mnist_test.txt``); a name without
    extension gets the suffixes appended directly."""
    base = os.path.splitext(outfile)[0]
    return base + "_train.txt", base + "_test.txt"


def _keep_train(line: str, epoch: int, batch: Optional[int]) -> bool:
    parts = line.split()
    if len(parts) < 2:
        return False
    try:
        e, b = int(parts[0]), int(parts[1])
    except ValueError:
        return False
    return e < epoch or (e == epoch and (batch is None or b <= batch))


def _keep_test(line: str, epoch: int) -> bool:
    m = _NUMBER.search(line)
    return m is not None and int(m.group()) <= epoch


class LogFiles:
    """Both log files, opened lazily (see the module docstring); every line is flushed.

    Args:
        outfile: the ``outfile`` config value, or None for no log files (then every method is a
            no-op).
        resume_from: ``(epoch, batch)`` of the checkpoint a resumed run starts from (``batch``
            None = the whole epoch); the existing logs are cut there and appended to.

    Raises:
        RmldnnError: from the line methods, when a log cannot be created or written.
    """

    def __init__(self, outfile: Optional[str],
                 resume_from: Optional[tuple[int, Optional[int]]] = None) -> None:
        self.train: Optional[BinaryIO] = None
        self.test: Optional[BinaryIO] = None
        self.paths: Optional[tuple[str, str]] = log_paths(outfile) if outfile else None
        self.resume_from = resume_from
        self._started = False
        self._failed = False

    # ------------------------------------------------------------------ opening
    def _start(self) -> None:
        """First line of the run: cut (resume) or remove the earlier run's logs."""
        self._started = True
        assert self.paths is not None
        for p, keep in zip(self.paths, (self._keep_train_line, self._keep_test_line)):
            try:
                if self.resume_from is None:
                    if os.path.isfile(p):
                        os.remove(p)
                elif os.path.isfile(p):
                    with open(p, encoding="utf-8", errors="surrogateescape") as f:
                        lines = [ln for ln in f if ln.endswith("\n") and keep(ln)]
                    with atomic_path(p) as tmp:
                        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as out:
                            out.writelines(lines)
            except OSError as exc:
                self._failed = True
                raise write_error(p, exc, "log file") from None

    def _keep_train_line(self, line: str) -> bool:
        e, b = self.resume_from  # type: ignore[misc]
        return _keep_train(line, int(e), None if b is None else int(b))

    def _keep_test_line(self, line: str) -> bool:
        return _keep_test(line, int(self.resume_from[0]))  # type: ignore[index]

    def _open(self, which: int) -> BinaryIO:
        assert self.paths is not None
        if not self._started:
            self._start()
        p = self.paths[which]
        try:
            d = os.path.dirname(p)
            if d:
                os.makedirs(d, exist_ok=True)
            mode = "ab" if self.resume_from is not None else "wb"
            # unbuffered: each line is one write, and a failed write leaves nothing to flush
            # at exit (a buffered file would print "Exception ignored" when collected)
            return open(p, mode, buffering=0)
        except OSError as exc:
            self._failed = True
            raise write_error(p, exc, "log file") from None

    def _write(self, which: int, text: str) -> None:
        if self.paths is None or self._failed:
            return
        f = self.train if which == 0 else self.test
        if f is None:
            f = self._open(which)
            if which == 0:
                self.train = f
            else:
                self.test = f
        data = memoryview(text.encode("utf-8", "surrogateescape"))
        try:
            while data:
                n = f.write(data)
                if not n:
                    raise OSError(errno.EIO, "write returned 0 bytes")
                data = data[n:]
        except OSError as exc:
            self._failed = True
            raise write_error(self.paths[which], exc, "log file") from None

    # ------------------------------------------------------------------ lines
    def train_line(self, epoch: int, batch: int, num_batches: int, seconds: float,
                   loss: float, grad_norm: float) -> None:
        """Append ``<epoch> <batch> <frac_epoch> <seconds> <loss> <grad_norm>`` to
        ``_train.txt`` (created by the first call)."""
        frac = (epoch - 1) + batch / num_batches
        self._write(0, f"{epoch} {batch} {frac:.6f} {seconds:.3f} {loss:.6g} {grad_norm:.6g}\n")

    def test_line(self, epoch: int, loss: float, accuracy: Optional[float]) -> None:
        """Append ``Epoch: <e> Loss: <l>[ Accuracy: <a>]`` to ``_test.txt`` (created by the first
        call)."""
        acc = f" Accuracy: {accuracy:.3f}" if accuracy is not None else ""
        self._write(1, f"Epoch: {epoch} Loss: {loss:.6g}{acc}\n")

    def close(self) -> None:
        """Close both files. A failure to flush raises the one-line error, unless a write had
        already failed (that error was raised then)."""
        files, self.train, self.test = (self.train, self.test), None, None
        error: Optional[RmldnnError] = None
        for which, f in enumerate(files):
            if f is None:
                continue
            try:
                f.close()
            except OSError as exc:
                if not self._failed and error is None and self.paths is not None:
                    error = write_error(self.paths[which], exc, "log file")
                with contextlib.suppress(OSError):
                    f.close()
        if error is not None:
            self._failed = True
            raise error
