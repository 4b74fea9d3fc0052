"""One evaluation pass (SPEC §7.1c, §7.2.4, §7.5): the loop shared by every application.

The application's :class:`~rmldnn_py.engine.app.Evaluator` runs the network on each batch and
keeps the loss / accuracy sums; this module prints the running global values at the printed
batches, streams the predictions to rank 0 and writes ``output_<epoch>.h5`` (and
``predictions_<epoch>.csv``), writes the ``_test.txt`` line and tells the observers.

Predictions are streamed: with several ranks, every batch's predictions are gathered to rank 0
right away (over the Gloo control group, host memory only) and handed to the writer thread, so
no rank holds more than a few batches of predictions and rank 0's memory does not grow with the
test set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch

from .. import distributed

if TYPE_CHECKING:  # pragma: no cover
    from .run import Context


def printed(batch: int, num_batches: int) -> bool:
    """Print cadence of SPEC §7.2.4: batch b of nb is printed iff ⌊100b/nb⌋ > ⌊100(b−1)/nb⌋."""
    return (100 * batch) // num_batches > (100 * (batch - 1)) // num_batches


def global_sums(t: torch.Tensor) -> torch.Tensor:
    """``t`` (a CPU float64 tensor of sums) summed over all ranks (a copy)."""
    t = t.detach().to(torch.float64).cpu().clone()
    return distributed.all_reduce_sum(t)


class PredictionSink:
    """Collects ``(name, array)`` predictions of every rank on rank 0 and writes them.

    ``output_<epoch>.h5`` (``test_output_format`` ``h5``/``both``) and, for classification
    outputs, ``predictions_<epoch>.csv`` (``csv``/``both``). Every rank calls :meth:`add` once
    per batch (collective when there are several ranks).
    """

    def __init__(self, ctx: "Context", epoch: int) -> None:
        cfg = ctx.cfg.data
        self.ctx, self.epoch = ctx, epoch
        self.directory = cfg.test_output_path
        fmt = (cfg.test_output_format or "h5").lower()
        self.h5 = fmt in ("h5", "both")
        self.csv = fmt in ("csv", "both")
        self.main = ctx.rank == 0
        self.writer = None
        self.rows: list[tuple[str, np.ndarray]] = []
        self.class_names = ctx.class_names

    def _start(self) -> None:
        # started at the first batch: DataLoader workers are forked when the batch iterator
        # starts, and a fork must not happen while the writer thread runs
        if self.writer is None and self.h5 and self.main:
            from ..io.predictions import PredictionWriter, output_path

            attrs = {"class_names": list(self.class_names)} if self.class_names else None
            self.writer = PredictionWriter(output_path(self.directory, self.epoch),
                                           self.ctx.cfg.data.hdf5_precision, attrs=attrs)

    def add(self, preds: Sequence[tuple[str, np.ndarray]]) -> None:
        if self.ctx.world > 1:
            gathered = distributed.gather_object(list(preds))
            items = [p for part in gathered for p in part] if gathered is not None else []
        else:
            items = list(preds)
        if not self.main or not items:
            return
        self._start()
        for name, arr in items:
            if self.writer is not None:
                self.writer.add(name, arr)
            if self.csv:
                self.rows.append((name, np.asarray(arr)))

    def close(self) -> list[str]:
        msgs = []
        if not self.main:
            return msgs
        self._start()    # an empty test block still gives a (complete, empty) file
        if self.writer is not None:
            self.writer.close()
            msgs.append(f"Writing inference output to file: {self.writer.path}")
            self.writer = None
        if self.csv:
            from ..io.csv_predictions import output_source

            path = write_csv(self.directory, self.epoch, self.rows, self.class_names,
                             output_source(self.ctx.net))
            if path:
                msgs.append(f"Writing inference output to file: {path}")
        return msgs

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


def write_csv(directory: str, epoch: int, rows, class_names,
              source: str = "logits") -> Optional[str]:
    """``predictions_<epoch>.csv`` of classification outputs (``sample, predicted_class,
    probability``); None when the outputs are not class scores (1-D). ``source``: what the
    network's last activation produces (``log_softmax``, ``softmax``, ``sigmoid``, ``logits``)."""
    import os

    if not rows or any(np.asarray(a).ndim != 1 for _, a in rows):
        return None
    from ..io import csv_predictions

    path = os.path.join(directory, f"predictions_{epoch}.csv")
    csv_predictions.write_predictions_csv(path, rows, class_names=class_names, source=source)
    return path


def evaluate(ctx: "Context", epoch: int, epochs: int) -> tuple[Optional[float], Optional[float]]:
    """The evaluation pass of ``epoch`` (1-based, of ``epochs``) over ``ctx.bundle.test``.

    Returns:
        The global ``(loss, accuracy)`` (None where not computed).

    Raises:
        Preempted: a SIGTERM/SIGUSR1 arrived (the partial prediction file is removed).
    """
    from .preempt import Preempted

    split = ctx.bundle.test
    ev = ctx.app.evaluator(ctx, epoch)
    ctx.net.eval()
    nb = split.num_batches
    sink = PredictionSink(ctx, epoch) if ctx.cfg.data.test_output_path else None
    loss_val = acc = None
    try:
        with torch.no_grad():
            for b, (x, y, idx) in enumerate(split.batches(epoch), 1):
                preds = ev.step(x, y, idx)
                if sink is not None:
                    sink.add(preds)
                if printed(b, nb) or b == nb:
                    loss_val, acc = ev.running(final=b == nb)
                    if printed(b, nb):
                        line = f"Eval  Epoch [{epoch:3d}/{epochs:3d}] : Batch [{b:5d}/{nb:5d}]"
                        if ev.has_loss:
                            line += f" (Loss: {loss_val:.4f})"
                            if acc is not None:
                                line += f" | Accuracy: {acc:.3f}"
                        ctx.log.line(line)
                signum, _ = ctx.stop_requested()
                if signum:
                    raise Preempted(signum, epoch, ctx.num_train_batches, evaluating=True)
        ctx.log.separator()
        msgs = sink.close() if sink is not None else []
        sink = None
        msgs += ev.finish()
        for m in msgs:
            ctx.log.line(m)
        if ev.has_loss:
            ctx.logfiles.test_line(epoch, loss_val, acc)
        ctx.observers.on_eval_end(epoch=epoch, loss=loss_val if ev.has_loss else None,
                                  accuracy=acc, metric_name=ev.metric_name)
        return (loss_val if ev.has_loss else None), acc
    except BaseException:
        if sink is not None:
            sink.abort()
        ev.abort()
        raise
