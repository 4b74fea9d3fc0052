"""TensorBoard scalars of a run (``"tensorboard": "<logdir>"``; rmldnn_py extension, issue 13).

Written with ``torch.utils.tensorboard.SummaryWriter`` (package ``tensorboard``) by rank 0:

* per **printed** training batch (SPEC §7.2.4 cadence: batch b of nb iff
  ⌊100·b/nb⌋ > ⌊100·(b−1)/nb⌋, which always includes the last batch), at global step
  ``(epoch − 1)·num_batches + batch``:
  ``train/loss`` and ``train/grad_norm`` (any other value key ``k`` → ``train/k``, e.g.
  ``train/loss_d``, ``train/loss_g`` for the GAN) and ``train/learning_rate``;
* per evaluation pass, at step ``epoch``: ``eval/loss`` and ``eval/<metric_name>``
  (``eval/accuracy``; ``eval/dice`` for segmentation, ``eval/mAP50`` for detection).

The values are the ones written to ``<outfile>_train.txt`` / ``_test.txt`` for the same batches
and epochs (stored by TensorBoard as float32), with the wall time of the batch. Training scalars
are collected in memory and handed to the writer together, every ``write_interval`` seconds
(10 s) and at the end of every epoch: one ``add_scalar`` right after a training step costs
milliseconds on a loaded CPU (cold caches, a wake-up of the writer thread), a group of them
costs tens of microseconds each. Events are flushed to disk at the end of every epoch and of
every evaluation, and the file is closed at the end of the run. View with
``tensorboard --logdir <logdir>``.
"""

from __future__ import annotations

import time
from typing import Optional

from ..errors import ConfigError
from .observers import RunObserver

__all__ = ["TensorBoardObserver", "read_scalars", "is_printed_batch"]


def is_printed_batch(batch: int, num_batches: int) -> bool:
    """SPEC §7.2.4: batch b of nb is printed iff ⌊100b/nb⌋ > ⌊100(b−1)/nb⌋."""
    return (100 * batch) // num_batches > (100 * (batch - 1)) // num_batches


class TensorBoardObserver(RunObserver):
    """Writes the run's scalars to a TensorBoard event file in ``logdir`` (see the module text).

    Args:
        logdir: the ``tensorboard`` config value; created if missing. Several runs may share
            it only if each gets its own sub-directory (TensorBoard shows one curve per event
            directory).
        where: prefix of error messages (``config.json: neural_network.tensorboard``).
        every_batch: log every training batch instead of the printed ones only.
        write_interval: seconds between hand-overs of the collected training scalars to the
            writer (they are also handed over at every epoch end, evaluation and close).

    Raises:
        ConfigError: ``logdir`` cannot be created or written (one line naming it).
    """

    def __init__(self, logdir: str, *, where: str = "tensorboard", every_batch: bool = False,
                 write_interval: float = 10.0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = logdir
        self.every_batch = every_batch
        self.write_interval = write_interval
        self._pending: list[tuple[str, float, int, float]] = []   # tag, value, step, wall time
        self._last_write = time.time()
        try:
            self.writer: Optional[SummaryWriter] = SummaryWriter(log_dir=logdir)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot write TensorBoard events to '{logdir}': "
                              f"{exc.strerror or exc}") from None

    def on_train_batch(self, *, epoch: int, batch: int, num_batches: int, samples: int,
                       values: dict, lr: float) -> None:
        if self.writer is None or not (self.every_batch or is_printed_batch(batch, num_batches)):
            return
        step = (epoch - 1) * num_batches + batch
        now = time.time()
        for key, value in values.items():
            self._pending.append((f"train/{key}", float(value), step, now))
        if lr is not None:
            self._pending.append(("train/learning_rate", float(lr), step, now))
        if now - self._last_write >= self.write_interval:
            self._write_pending()

    def _write_pending(self) -> None:
        for tag, value, step, wall in self._pending:
            self.writer.add_scalar(tag, value, step, walltime=wall)
        self._pending.clear()
        self._last_write = time.time()

    def on_epoch_end(self, *, epoch: int) -> None:
        if self.writer is not None:
            self._write_pending()
            self.writer.flush()

    def on_eval_end(self, *, epoch: int, loss: Optional[float], accuracy: Optional[float],
                    metric_name: str = "accuracy") -> None:
        if self.writer is None:
            return
        self._write_pending()
        if loss is not None:
            self.writer.add_scalar("eval/loss", float(loss), epoch)
        if accuracy is not None:
            self.writer.add_scalar(f"eval/{metric_name}", float(accuracy), epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self._write_pending()
            self.writer.close()
            self.writer = None


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of ``logdir`` (read with tensorboard's
    ``EventAccumulator``, nothing sampled away): tag → ``[(step, value), ...]`` in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logdir, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
