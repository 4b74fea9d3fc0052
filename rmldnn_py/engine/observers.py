"""Optional behaviours that watch a run: progress bar, TensorBoard, ... (rank 0 only).

The engine calls every observer of the run at fixed points of the loop; an observer never changes
what the run computes or prints on stdout. Adding one is a :class:`RunObserver` subclass and one
line in :func:`rmldnn_py.engine.run._observers`.

Training values are read back from the device only at printed batches (SPEC §7.2.4 cadence), so
``on_train_batch`` arrives in bursts: once for every batch, in order, with that batch's exact
values, but several calls in a row at each printed batch.
"""

from __future__ import annotations

from typing import Optional


class RunObserver:
    """Base class; every method is a no-op."""

    def on_train_start(self, *, num_epochs: int, start_epoch: int, num_batches: int,
                       batch_size: int) -> None:
        """Before the first training batch. ``start_epoch`` > 1 after a resume; ``batch_size``
        is the global batch (all ranks)."""

    def on_train_batch(self, *, epoch: int, batch: int, num_batches: int, samples: int,
                       values: dict[str, float], lr: float) -> None:
        """One training batch (1-based ``batch`` of ``num_batches``): ``samples`` in the global
        batch, ``values`` as in the batch line (``{"loss": .., "grad_norm": ..}``; GAN:
        ``{"loss_d": .., "loss_g": ..}``), ``lr`` the learning rate of the step."""

    def on_epoch_end(self, *, epoch: int) -> None:
        """After the training pass of ``epoch`` (before its evaluation)."""

    def on_eval_end(self, *, epoch: int, loss: Optional[float], accuracy: Optional[float],
                    metric_name: str = "accuracy") -> None:
        """After an evaluation pass: global loss and accuracy (None when not computed);
        ``metric_name`` says what the accuracy is (``accuracy``, ``dice``, ``mAP50``)."""

    def close(self) -> None:
        """At the end of the run, also after an error."""


class Observers(RunObserver):
    """Fans every call out to a list of observers."""

    def __init__(self, observers: list[RunObserver]) -> None:
        self.observers = list(observers)

    def __bool__(self) -> bool:
        return bool(self.observers)

    def on_train_start(self, **kw) -> None:
        for o in self.observers:
            o.on_train_start(**kw)

    def on_train_batch(self, **kw) -> None:
        for o in self.observers:
            o.on_train_batch(**kw)

    def on_epoch_end(self, **kw) -> None:
        for o in self.observers:
            o.on_epoch_end(**kw)

    def on_eval_end(self, **kw) -> None:
        for o in self.observers:
            o.on_eval_end(**kw)

    def close(self) -> None:
        for o in self.observers:
            try:
                o.close()
            except Exception:   # closing must never hide the run's own result or error
                pass
