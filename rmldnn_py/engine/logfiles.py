"""The ``<outfile>_train.txt`` and ``<outfile>_test.txt`` logs (SPEC §7.3), written by rank 0.

* ``_train.txt``: one line per training batch, ``<epoch> <batch> <frac_epoch> <seconds> <loss>
  <grad_norm>`` (frac_epoch 6 decimals, seconds since the start of training 3 decimals, loss and
  |g| ``%.6g``).
* ``_test.txt``: one line per evaluation pass with targets, ``Epoch: <e> Loss: <%.6g>
  Accuracy: <%.3f>`` (or without the accuracy part when the loss has no metric). The first number
  is the integer epoch and the line ends with ``Accuracy: <value>``, as the tutorials' parsers need.
"""

from __future__ import annotations

import os
from typing import Optional, TextIO


def log_paths(outfile: str) -> tuple[str, str]:
    """``out_mnist.txt`` → (``out_mnist_train.txt``, ``out_mnist_test.txt``); a name without
    extension gets the suffixes appended directly."""
    base = os.path.splitext(outfile)[0]
    return base + "_train.txt", base + "_test.txt"


class LogFiles:
    """Both log files, created (truncated) when opened; every line is flushed.

    Args:
        outfile: the ``outfile`` config value, or None for no log files (then every method is a
            no-op).
    """

    def __init__(self, outfile: Optional[str]) -> None:
        self.train: Optional[TextIO] = None
        self.test: Optional[TextIO] = None
        if outfile:
            train_path, test_path = log_paths(outfile)
            for p in (train_path, test_path):
                d = os.path.dirname(p)
                if d:
                    os.makedirs(d, exist_ok=True)
            self.train = open(train_path, "w", buffering=1)
            self.test = open(test_path, "w", buffering=1)

    def train_line(self, epoch: int, batch: int, num_batches: int, seconds: float,
                   loss: float, grad_norm: float) -> None:
        if self.train:
            frac = (epoch - 1) + batch / num_batches
            self.train.write(f"{epoch} {batch} {frac:.6f} {seconds:.3f} {loss:.6g} {grad_norm:.6g}\n")

    def test_line(self, epoch: int, loss: float, accuracy: Optional[float]) -> None:
        if self.test:
            acc = f" Accuracy: {accuracy:.3f}" if accuracy is not None else ""
            self.test.write(f"Epoch: {epoch} Loss: {loss:.6g}{acc}\n")

    def close(self) -> None:
        for f in (self.train, self.test):
            if f:
                f.close()
