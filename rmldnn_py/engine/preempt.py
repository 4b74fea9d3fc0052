"""Preemption: SIGTERM / SIGUSR1 stop training at the next batch boundary (rmldnn_py extension).

Slurm (``--signal=USR1@120``, ``scancel --signal``, the wall-time limit), ``docker stop`` and
``kill`` send SIGTERM or SIGUSR1. The handler only records the signal; the training loop asks
:meth:`Preemption.requested` after every batch (and the evaluation loop after every batch), every
rank takes part in one small all-reduce so that all ranks stop at the same batch even when the
signal reached only some of them, and the run then writes a full-state checkpoint and exits with
``128 + signal`` (143 for SIGTERM, 138 for SIGUSR1) on every rank.
"""

from __future__ import annotations

import signal
from typing import Optional

from .. import distributed

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Raised by the loops when the run must stop; carries the position reached. Not an error:
    :func:`rmldnn_py.engine.run.run` catches it, checkpoints and returns ``exit_code``.

    Attributes:
        signum: the signal received.
        epoch: the epoch in progress (1-based).
        batch: training batches of ``epoch`` completed.
        evaluating: the stop came during the evaluation of ``epoch`` (its training pass and
            scheduler step are done).
        exit_code: ``128 + signum``.
    """

    def __init__(self, signum: int, epoch: int, batch: int, evaluating: bool = False) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.epoch = epoch
        self.batch = batch
        self.evaluating = evaluating
        self.exit_code = 128 + signum


class Preemption:
    """Installs the handlers on construction (main thread), restores them on :meth:`close`."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous = {}
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):     # not the main thread: no preemption support
                pass

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def requested(self, diverged: bool = False) -> tuple[Optional[int], bool]:
        """``(signal, diverged)``: the signal number when any rank received SIGTERM/SIGUSR1 (else
        None), and whether any rank reported ``diverged`` (non-finite batch values). One
        all-reduce in a multi-process run: every rank calls it at the same points, so all ranks
        stop at the same batch for either reason."""
        signum, bad = distributed.any_rank(self.signum or 0, int(diverged))
        return (signum or None), bool(bad)

    def close(self) -> None:
        for sig, handler in self._previous.items():
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError, TypeError):
                pass
        self._previous.clear()
