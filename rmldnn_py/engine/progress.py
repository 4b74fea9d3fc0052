"""Progress bar per training epoch on an interactive terminal (rmldnn_py extension, issue 13).

:class:`ProgressObserver` draws a `tqdm <https://tqdm.github.io>`_ bar on **stderr** (rank 0)
while an epoch trains::

    Epoch  3/20:  45%|█████▍      | 211/469, 00:04, 6012 samples/s, epoch ETA 00:05, run ETA 01:52

* the first time is the time spent in this epoch;
* samples/s = global samples trained so far in this epoch / wall time since the epoch's first
  batch started (the rate tqdm would show is unusable: batches arrive in bursts, see below);
* epoch ETA = elapsed in this epoch / batches done × batches left;
* run ETA = wall time since training started / epochs done (fractional) × epochs left, so the
  evaluation passes and checkpoints of finished epochs are included in the estimate.

Nothing at all is written when stderr is not a terminal (batch jobs, CI, pipes, ``2> file``) or
when the run sets ``"progress": false``. The bar never changes stdout: while a bar is shown and
stdout is a terminal too, ``sys.stdout`` is wrapped so that each stdout line first clears the bar,
is written unchanged, and the bar is redrawn below it (the lines are exactly the SPEC §7.2 lines).
At the end of an epoch the bar is removed (``leave=False``): the per-batch stdout lines remain the
record of the epoch.

The engine reads training values back only at printed batches, so :meth:`on_train_batch` comes
in bursts that end at a printed batch (SPEC §7.2.4 cadence); the bar is redrawn at printed
batches, at most every ``mininterval`` seconds, and at the last batch of the epoch.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

from .observers import RunObserver
from .tensorboard import is_printed_batch

__all__ = ["ProgressObserver", "format_duration"]


def format_duration(seconds: float) -> str:
    """``mm:ss`` below one hour, ``h:mm:ss`` above, ``d:hh:mm:ss`` above a day (``?`` if unknown)."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}:{hours:02d}:{minutes:02d}:{s:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{s:02d}"
    return f"{minutes:02d}:{s:02d}"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _StdoutAroundBar:
    """Stands in for ``sys.stdout`` while a bar is shown: every complete line clears the bar,
    goes to the real stdout unchanged (flushed), and the bar is redrawn."""

    def __init__(self, wrapped: TextIO, bar) -> None:
        self._wrapped = wrapped
        self._bar = bar
        self._buf: list[str] = []

    def write(self, s: str) -> int:
        pre, sep, post = s.rpartition("\n")
        if not sep:
            self._buf.append(s)
            return len(s)
        text = "".join(self._buf) + pre + sep
        self._buf = [post] if post else []
        with self._bar.get_lock():
            self._bar.clear(nolock=True)
            self._wrapped.write(text)
            self._wrapped.flush()
            self._bar.refresh(nolock=True)
        return len(s)

    def flush(self) -> None:
        if self._buf:
            text = "".join(self._buf)
            self._buf = []
            self._wrapped.write(text)
        self._wrapped.flush()

    def __getattr__(self, name):  # fileno, isatty, encoding, ...
        return getattr(self._wrapped, name)


class ProgressObserver(RunObserver):
    """tqdm bar per training epoch with samples/s, epoch ETA and run ETA (see the module text).

    Args:
        enabled: the run's ``progress`` setting (``cfg.progress``); construct on rank 0 only.
        stream: where the bar goes (default ``sys.stderr``); nothing is drawn unless it is a TTY.
        mininterval: least seconds between two redraws.
        clock: time source in seconds (``time.perf_counter``; tests inject a fake clock).

    Attributes:
        active: whether bars are drawn at all (enabled and ``stream`` is a terminal).
    """

    def __init__(self, enabled: bool = True, stream: Optional[TextIO] = None,
                 mininterval: float = 0.2, clock: Callable[[], float] = time.perf_counter) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.active = bool(enabled) and _isatty(self.stream)
        self.mininterval = mininterval
        self.clock = clock
        self.num_epochs = 1
        self.start_epoch = 1
        self._t_run: Optional[float] = None
        self._bar = None
        self._epoch = 0
        self._nb = 0
        self._done = 0                # batches of this epoch seen
        self._shown = 0               # batches already passed to the bar
        self._samples = 0
        self._t_epoch = 0.0
        self._t_drawn = 0.0
        self._saved_stdout: Optional[TextIO] = None
        self._wrapper: Optional[_StdoutAroundBar] = None
        self._t_mark: Optional[float] = None   # time of the last non-batch event

    # ------------------------------------------------------------------ observer interface
    def on_train_start(self, *, num_epochs: int, start_epoch: int, num_batches: int,
                       batch_size: int) -> None:
        self.num_epochs = int(num_epochs)
        self.start_epoch = int(start_epoch)
        self._t_run = self._t_mark = self.clock()

    def on_train_batch(self, *, epoch: int, batch: int, num_batches: int, samples: int,
                       values: dict, lr: float) -> None:
        if not self.active:
            return
        now = self.clock()
        if self._bar is None or epoch != self._epoch:
            self._open(epoch, num_batches, now)
        self._done = batch
        self._samples += int(samples)
        # a burst ends at a printed batch: draw there (at most every mininterval s) and at the end
        if batch >= num_batches or (is_printed_batch(batch, num_batches)
                                    and now - self._t_drawn >= self.mininterval):
            self._draw(now)

    def on_epoch_end(self, *, epoch: int) -> None:
        self._close_bar()
        self._t_mark = self.clock()

    def on_eval_end(self, *, epoch: int, loss, accuracy, metric_name: str = "accuracy") -> None:
        self._t_mark = self.clock()

    def close(self) -> None:
        self._close_bar()

    # ------------------------------------------------------------------ estimates
    def rates(self, now: Optional[float] = None) -> tuple[float, float, float]:
        """``(samples_per_second, epoch_eta_seconds, run_eta_seconds)`` at ``now``."""
        now = self.clock() if now is None else now
        elapsed = max(now - self._t_epoch, 1e-9)
        sps = self._samples / elapsed
        nb = max(self._nb, 1)
        epoch_eta = elapsed / max(self._done, 1) * (nb - self._done)
        t_run = self._t_run if self._t_run is not None else self._t_epoch
        total = self.num_epochs - self.start_epoch + 1
        frac = (self._epoch - self.start_epoch) + self._done / nb
        run_eta = ((now - t_run) / frac * (total - frac)) if frac > 0 else float("nan")
        return sps, epoch_eta, run_eta

    # ------------------------------------------------------------------ internals
    def _open(self, epoch: int, num_batches: int, now: float) -> None:
        from tqdm import tqdm

        self._close_bar()
        if self._t_run is None:
            self._t_run = now
        self._epoch, self._nb = int(epoch), int(num_batches)
        self._done = self._shown = self._samples = 0
        # the epoch's clock starts at the last event before its first batch (training start,
        # or the end of the previous epoch / evaluation): the first report arrives only after
        # the first printed batch, which may be the 5th (SPEC §7.2.4 cadence)
        self._t_epoch = self._t_mark if self._t_mark is not None else now
        width = len(str(self.num_epochs))
        self._bar = tqdm(total=self._nb, desc=f"Epoch {epoch:{width}d}/{self.num_epochs}",
                         file=self.stream, leave=False, dynamic_ncols=True, mininterval=0,
                         miniters=1, smoothing=0, unit="batch",
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}",
                         postfix=format_duration(now - self._t_epoch))   # tqdm adds ", "
        out = sys.stdout
        if _isatty(out) and not isinstance(out, _StdoutAroundBar):
            self._saved_stdout = out
            self._wrapper = _StdoutAroundBar(out, self._bar)
            sys.stdout = self._wrapper
        self._t_drawn = float("-inf")

    def _draw(self, now: float) -> None:
        sps, epoch_eta, run_eta = self.rates(now)
        self._bar.set_postfix_str(f"{format_duration(now - self._t_epoch)}, {sps:.0f} samples/s, "
                                  f"epoch ETA {format_duration(epoch_eta)}, "
                                  f"run ETA {format_duration(run_eta)}", refresh=False)
        self._bar.update(self._done - self._shown)
        self._shown = self._done
        self._t_drawn = now

    def _close_bar(self) -> None:
        if self._saved_stdout is not None:
            if sys.stdout is self._wrapper:   # (unless someone replaced it meanwhile)
                sys.stdout.flush()
                sys.stdout = self._saved_stdout
            self._saved_stdout = self._wrapper = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
