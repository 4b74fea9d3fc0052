"""One training pass (SPEC §7.1a, §7.2.4): the loop shared by every application.

The application's :meth:`~rmldnn_py.engine.app.Application.train_step` does the optimisation step
of one batch and returns its values (``loss``, ``grad_norm``; GAN: ``loss_d``, ``loss_g``) as
device tensors. This loop times the steps, reads the values back to the host only at printed
batches (for all pending batches at once: no per-step device synchronisation on GPUs), averages
the per-rank losses over the ranks, writes every batch to ``_train.txt``, prints the SPEC batch
lines, feeds the observers, and stops the run

* with a :class:`DivergenceError` at the first batch whose values are not finite (checked at every
  step on the CPU, where reading them back is free; at printed batches on GPUs, naming the first
  bad batch), and
* with :class:`~rmldnn_py.engine.preempt.Preempted` at the next batch boundary after a
  SIGTERM/SIGUSR1.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from .. import distributed
from ..errors import RmldnnError
from .evaluate import printed
from .preempt import Preempted

if TYPE_CHECKING:  # pragma: no cover
    from .run import Context


class DivergenceError(RmldnnError):
    """A non-finite loss or gradient norm: the run stops at that batch."""


def _fmt(v: float) -> str:
    return f"{v:.4f}" if math.isfinite(v) else str(v)


def train_one_epoch(ctx: "Context", epoch: int, epochs: int, skip: int = 0) -> None:
    """Train on this rank's batches of ``epoch`` (1-based, of ``epochs``), skipping the first
    ``skip`` (resume inside an epoch).

    Several processes: DistributedDataParallel averages the gradients during backward (every rank
    holds equally many samples of the global batch, so this is the gradient of the global-batch
    mean loss) and |g| is therefore global; per-rank values (losses) are averaged over the ranks
    in one all-reduce per printed line. ``Grad/Comm`` is the share of the step during which
    gradient all-reduces were in flight (overlapped with backward).

    Raises:
        DivergenceError: non-finite values (names the epoch and batch).
        Preempted: a preemption signal arrived.
    """
    split, app = ctx.bundle.train, ctx.app
    cols = app.train_columns
    mean_mask = torch.tensor([c.rank_mean for c in cols])
    nb = split.num_batches
    ctx.model.train()
    multi = ctx.world > 1
    eager = ctx.device.type == "cpu"     # reading values back costs nothing on the CPU
    check_targets = ctx.target_check is not None and ctx.target_check.active.get("training")
    pending: list[tuple[int, float, int, float, torch.Tensor]] = []
    signum, _ = ctx.stop_requested()
    if signum:
        raise Preempted(signum, epoch, skip)
    t_prev = time.perf_counter()
    for b, (x, y, _idx) in enumerate(split.batches(epoch, start=skip), skip + 1):
        if check_targets and y is not None:
            ctx.target_check.check_batch(y, "training")
        n = int(x.shape[0])
        x, y = ctx.to_device(x, y)
        t_ready = time.perf_counter()
        if ctx.comm_timer is not None:
            ctx.comm_timer.reset()
        lr = ctx.current_lr()
        values = app.train_step(ctx, x, y)
        if ctx.scheduler is not None and ctx.scheduler.per_batch:
            ctx.scheduler.step_batch()
        t_done = time.perf_counter()
        comm = ctx.comm_timer.span() if ctx.comm_timer is not None else 0.0
        vec = torch.stack([values[c.key].detach().float().reshape(()) for c in cols])
        pending.append((b, ctx.elapsed(), n * ctx.world, lr, vec))
        diverged = eager and not bool(torch.isfinite(vec).all())
        if printed(b, nb) or b == nb:
            shown = _flush(ctx, epoch, nb, pending, cols, mean_mask, multi)
            if printed(b, nb):
                total = max(time.perf_counter() - t_prev, 1e-12)
                data_pct = int(100 * (t_ready - t_prev) / total)
                comp_pct = int(100 * (t_done - t_ready) / total)
                text = "; ".join(f"{c.label} = {_fmt(v)}" for c, v in zip(cols, shown))
                line = (f"Train Epoch [{epoch:3d}/{epochs:3d}] : Batch [{b:5d}/{nb:5d}] "
                        f"({text}) [Data: {data_pct}%; Compute: {comp_pct}%")
                if multi:
                    line += f"; Grad/Comm: {int(100 * comm / total)}%"
                ctx.log.line(line + "]")
        t_prev = time.perf_counter()
        # one collective for both: a rank that saw non-finite values of its own (a per-rank loss)
        # makes every rank flush at this batch, where the rank mean makes them non-finite on all
        signum, diverged = ctx.stop_requested(diverged)
        if diverged or signum:
            _flush(ctx, epoch, nb, pending, cols, mean_mask, multi)   # DivergenceError if not finite
        if signum:
            raise Preempted(signum, epoch, b)
    ctx.log.separator()
    if ctx.target_check is not None:
        ctx.target_check.end_of_first_epoch()
    ctx.observers.on_epoch_end(epoch=epoch)


def _flush(ctx: "Context", epoch: int, nb: int, pending: list, cols, mean_mask: torch.Tensor,
           multi: bool) -> list[float]:
    """Read the pending batches' values back (one device synchronisation), average the per-rank
    columns over the ranks, check they are finite, write them to ``_train.txt`` and the
    observers. Returns the last batch's values. Collective when ``multi``."""
    if not pending:
        return []
    stacked = torch.stack([p[4] for p in pending])          # (batches, columns) on the device
    if multi and bool(mean_mask.any()):
        means = stacked[:, mean_mask.to(stacked.device)].contiguous()
        if not ctx.optimizer.is_closure_based:               # (LBFGS losses are global already)
            distributed.all_reduce_mean(means)
        stacked = stacked.clone()
        stacked[:, mean_mask.to(stacked.device)] = means
    rows = stacked.cpu().tolist()
    for (b, secs, samples, lr, _), vals in zip(pending, rows):
        if not all(math.isfinite(v) for v in vals):
            pending.clear()
            raise DivergenceError(ctx.divergence_message(epoch, b, cols, vals))
        ctx.logfiles.train_line(epoch, b, nb, secs, *vals)
        ctx.observers.on_train_batch(epoch=epoch, batch=b, num_batches=nb, samples=samples,
                                     values={c.key: v for c, v in zip(cols, vals)}, lr=lr)
    pending.clear()
    return rows[-1]
