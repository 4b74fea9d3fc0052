"""``predictions.csv`` for label targets (``"test_output_format": "csv"``; issue 13).

One row per test sample, in the order the samples are added (the engine adds them in sample
order, as in ``output_<epoch>.h5``)::

    sample,predicted_class,probability
    0/digit_0.jpg,0,0.998213
    "Albatross, Black-footed/img_1.jpg","Albatross, Black-footed",0.731002

* ``sample``: the sample's name, i.e. its path relative to ``test_input_path`` (the HDF5 dataset
  name of SPEC §7.5.1);
* ``predicted_class``: the class name (the training folder name, in label order) when the names
  are known, else the class index;
* ``probability``: the model's probability of that class, ``%.6g``, obtained from the raw network
  output according to ``source``:

  ==================  ============================  ===========================================
  ``source``          network output                probabilities
  ==================  ============================  ===========================================
  ``"log_softmax"``   log-probabilities (NLL nets)  ``exp(output)``
  ``"softmax"``       probabilities                 the output itself
  ``"sigmoid"``       independent probabilities     the output itself
  ``"logits"``        unnormalised scores           ``softmax(output)``; ``sigmoid`` when C = 1
  ==================  ============================  ===========================================

  With a single output channel (binary classifier) the predicted class is 1 when its probability
  is ≥ 0.5 and the probability printed is that of the predicted class (p or 1 − p).

Written with the ``csv`` module (quoting as needed, ``\\n`` line ends) under a temporary name and
renamed when complete (:func:`rmldnn_py.io.atomic.atomic_path`).
"""

from __future__ import annotations

import csv
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import DataError
from .atomic import atomic_path

__all__ = ["SOURCES", "probabilities", "predicted", "output_source", "CsvPredictionWriter",
           "write_predictions_csv", "HEADER"]

SOURCES = ("log_softmax", "softmax", "sigmoid", "logits")
HEADER = ("sample", "predicted_class", "probability")


def probabilities(outputs: np.ndarray, source: str) -> np.ndarray:
    """Class probabilities of raw outputs ``(N, C)`` (see the table in the module text);
    ``(N, 1)`` outputs give the probability of class 1.

    Raises:
        ValueError: unknown ``source``.
    """
    x = np.asarray(outputs, dtype=np.float64)
    if source not in SOURCES:
        raise ValueError(f"unknown output source {source!r} (expected one of: {', '.join(SOURCES)})")
    if source == "log_softmax":
        return np.exp(x)
    if source in ("softmax", "sigmoid"):
        return x
    if x.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-x))
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predicted(outputs: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """``(classes int64 (N,), probability of that class float64 (N,))`` for outputs ``(N, C)``."""
    p = probabilities(outputs, source)
    if p.shape[1] == 1:
        cls = (p[:, 0] >= 0.5).astype(np.int64)
        return cls, np.where(cls == 1, p[:, 0], 1.0 - p[:, 0])
    cls = p.argmax(axis=1)
    return cls.astype(np.int64), p[np.arange(p.shape[0]), cls]


def output_source(net) -> str:
    """The ``source`` of a :class:`~rmldnn_py.network.KerasNetwork`: the activation of its output
    layer (a ``Softmax`` layer, an ``Activation`` layer or a layer's fused ``activation``):
    ``log_softmax``, ``softmax``, ``sigmoid``, else ``logits``."""
    from ..network.activations import activation_name

    name = net.output_name
    cls = net.layer_classes.get(name, "")
    if cls == "Softmax":
        return "softmax"
    act = activation_name((net.layer_configs.get(name) or {}).get("activation"))
    return act if act in ("log_softmax", "softmax", "sigmoid") else "logits"


class CsvPredictionWriter:
    """Collects ``(sample name, output vector)`` and writes ``predictions.csv`` on :meth:`close`.

    Args:
        path: the CSV file (its directory is created).
        class_names: names in label order, or None (then indices are written).
        source: how to turn outputs into probabilities (see the module text).

    Raises:
        ValueError: unknown ``source``.
        DataError: on :meth:`add`, an output that is not a vector; on :meth:`close`, a file that
            cannot be written (names it).
    """

    def __init__(self, path: str, class_names: Optional[Sequence[str]] = None,
                 source: str = "logits") -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown output source {source!r} (expected one of: {', '.join(SOURCES)})")
        self.path = path
        self.class_names = list(class_names) if class_names is not None else None
        self.source = source
        self._names: list[str] = []
        self._outputs: list[np.ndarray] = []

    def add(self, name: str, output: np.ndarray) -> None:
        """One sample: ``output`` is the raw network output ``(C,)`` of that sample."""
        out = np.asarray(output, dtype=np.float64).reshape(-1) if np.ndim(output) <= 1 else None
        if out is None:
            raise DataError(f"{self.path}: sample '{name}': predictions.csv needs one output "
                            f"vector per sample, received shape {np.shape(output)}")
        self._names.append(name)
        self._outputs.append(out)

    def rows(self) -> list[tuple[str, str, str]]:
        """The data rows as written (strings)."""
        if not self._outputs:
            return []
        cls, prob = predicted(np.stack(self._outputs), self.source)
        names = self.class_names
        return [(n, names[c] if names is not None and c < len(names) else str(int(c)), f"{p:.6g}")
                for n, c, p in zip(self._names, cls.tolist(), prob.tolist())]

    def close(self) -> None:
        """Write the file atomically."""
        _write(self.path, self.rows())

    def abort(self) -> None:
        """Drop the collected rows without writing."""
        self._names.clear()
        self._outputs.clear()


def write_predictions_csv(path: str, rows: Iterable[tuple[str, np.ndarray]],
                          class_names: Optional[Sequence[str]] = None,
                          source: str = "logits") -> None:
    """Write ``predictions.csv`` in one call.

    Args:
        path: the CSV file (its directory is created; written atomically).
        rows: ``(sample name, raw output (C,))`` pairs, in the order to write.
        class_names: names in label order, or None (indices are written).
        source: see the module text. ``"logits"`` also gives the right probabilities for
            log-probabilities (softmax is invariant to the per-sample constant that separates
            them from logits); only ``softmax``/``sigmoid`` outputs need their own source.

    Raises:
        ValueError: unknown ``source``. DataError: an output that is not a vector, or a file
            that cannot be written.
    """
    w = CsvPredictionWriter(path, class_names, source)
    for name, out in rows:
        w.add(name, out)
    w.close()


def _write(path: str, rows: Iterable[Sequence[str]]) -> None:
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(HEADER)
                writer.writerows(rows)
    except OSError as exc:
        raise DataError(f"{path}: cannot write predictions: {exc.strerror or exc}") from None
