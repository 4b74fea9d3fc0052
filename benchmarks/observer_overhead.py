"""Per-step cost of the progress bar + TensorBoard observers relative to a demo training step
(issue 13 target: ≤ 2 %).

A demo training step: the demo network (``networks/mnist_keras_net.json``), Adam, NLL loss, a
batch of 128 random 1×28×28 images (the demo's batch size): zero_grad / forward / loss /
backward / |g| / step. The loop reads loss and |g| back at printed batches only (SPEC §7.2.4
cadence), writes the stdout line there, and — in the ``observers`` variant — feeds every batch of
the burst to :class:`ProgressObserver` (drawing a real tqdm bar into a terminal-like sink, with
``sys.stdout`` a terminal too, so the clear/redraw around each stdout line is included) and
:class:`TensorBoardObserver` (event file in a temporary directory, flushed at each epoch end), as
the engine does.

Epochs alternate between ``plain`` and ``observers`` so machine load (the CPU may be shared)
affects both alike. Reports the median time per step of each variant, the overhead in %, and the
observers' own time per step measured directly around their calls (less noisy on a busy machine).

Usage: PYTHONPATH=. python benchmarks/observer_overhead.py [--epochs 6] [--num-batches 12]
       [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class _TTYSink(io.TextIOBase):
    """A terminal that discards what it is sent (so tqdm really formats and writes its bar)."""

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6, help="epochs per variant")
    ap.add_argument("--num-batches", type=int, default=12, help="batches per epoch (demo: 12)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    from rmldnn_py.engine.observers import Observers
    from rmldnn_py.engine.optim import grad_norm
    from rmldnn_py.engine.progress import ProgressObserver
    from rmldnn_py.engine.tensorboard import TensorBoardObserver, is_printed_batch
    from rmldnn_py.log import Logger
    from rmldnn_py.network import build_network

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = build_network(str(REPO / "networks/mnist_keras_net.json"), config_path="bench")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    params = [p for p in net.parameters() if p.requires_grad]
    nb, bs = a.num_batches, a.batch_size
    xs = [torch.randn(bs, 1, 28, 28) for _ in range(nb)]
    ys = [torch.randint(0, 10, (bs,)) for _ in range(nb)]
    tmp = tempfile.mkdtemp()
    sink = _TTYSink()
    real_stdout = sys.stdout
    epochs_total = 2 * a.epochs
    obs = Observers([ProgressObserver(enabled=True, stream=sink),
                     TensorBoardObserver(os.path.join(tmp, "tb"))])
    obs.on_train_start(num_epochs=epochs_total, start_epoch=1, num_batches=nb, batch_size=bs)
    step_times = {"plain": [], "observers": []}
    epoch_time: list[float] = []
    observer_time: list[float] = []                 # per training step, time inside observers

    def run_epoch(epoch: int, with_obs: bool) -> None:
        sys.stdout = sink                           # stdout lines go to a (discarding) terminal
        log = Logger(enabled=True)
        pending = []
        t_prev = time.perf_counter()
        for b in range(1, nb + 1):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.nll_loss(net(xs[b - 1]), ys[b - 1])
            loss.backward()
            g = grad_norm(params)
            opt.step()
            pending.append((b, loss.detach(), g.detach()))
            if is_printed_batch(b, nb) or b == nb:
                losses = torch.stack([p[1] for p in pending]).tolist()
                gs = torch.stack([p[2] for p in pending]).tolist()
                if with_obs:
                    for (bb, _, _), lv, gv in zip(pending, losses, gs):
                        t0 = time.perf_counter()
                        obs.on_train_batch(epoch=epoch, batch=bb, num_batches=nb, samples=bs,
                                           values={"loss": lv, "grad_norm": gv}, lr=1e-3)
                        observer_time.append(time.perf_counter() - t0)
                pending.clear()
                log.line(f"Train Epoch [{epoch:3d}/{epochs_total:3d}] : Batch [{b:5d}/{nb:5d}] "
                         f"(Loss = {losses[-1]:.4f}; |g| = {gs[-1]:.4f})")
            now = time.perf_counter()
            step_times["observers" if with_obs else "plain"].append(now - t_prev)
            t_prev = now
        if with_obs:
            t0 = time.perf_counter()
            obs.on_epoch_end(epoch=epoch)
            obs.on_eval_end(epoch=epoch, loss=0.5, accuracy=0.9)
            epoch_time.append(time.perf_counter() - t0)
        sys.stdout = real_stdout

    run_epoch(1, False)                             # warm-up (not counted)
    run_epoch(1, True)
    step_times = {"plain": [], "observers": []}
    observer_time.clear()
    epoch_time.clear()
    for e in range(1, a.epochs + 1):
        run_epoch(2 * e - 1, False)
        run_epoch(2 * e, True)
    obs.close()
    plain = statistics.median(step_times["plain"])
    witho = statistics.median(step_times["observers"])
    per_step = statistics.median(observer_time)
    per_epoch = statistics.median(epoch_time)
    direct = per_step + per_epoch / nb
    print(f"steps per variant: {len(step_times['plain'])} (batch {bs}, {nb} batches/epoch, "
          f"{a.threads} thread(s))")
    print(f"median step, plain     : {plain * 1e3:.2f} ms")
    print(f"median step, observers : {witho * 1e3:.2f} ms  ({100 * (witho - plain) / plain:+.2f} %)")
    print(f"observer time (medians measured around the calls): {per_step * 1e3:.3f} ms per "
          f"on_train_batch + {per_epoch * 1e3:.3f} ms per epoch end/eval end = "
          f"{direct * 1e3:.3f} ms per step = {100 * direct / plain:.3f} % of a plain step")


if __name__ == "__main__":
    main()
