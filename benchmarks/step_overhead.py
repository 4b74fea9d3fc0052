"""Per-step overhead of rmldnn_py's training loop over a bare PyTorch loop, in one process.

Builds the run of a config exactly as the CLI does (``rmldnn_py.engine.run._build``), then
alternates, epoch by epoch, between

* ``cli``  — :func:`rmldnn_py.engine.run.train_one_epoch` (batches from ``Split.batches``, the
  printed lines, ``_train.txt``, |g|, loss read-back), stdout sent to /dev/null;
* ``hand`` — the same model and optimizer, the same batches pre-materialised as float tensors,
  ``zero_grad / forward / loss / backward / step`` and nothing else;
* ``hand+data`` — as ``hand`` but drawing the batches from ``Split.batches`` (separates the
  data-path cost from the logging / |g| / metrics cost).

Since the same process, model and threads are used and the variants alternate, machine load
affects all alike. Reports the median time per step of each and the overheads in %.

Usage: PYTHONPATH=. python benchmarks/step_overhead.py [--config configs/config_mnist_training.json]
       [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs/config_mnist_training.json"))
    ap.add_argument("--epochs", type=int, default=10, help="epochs per variant")
    ap.add_argument("--extra", default="{}", help="JSON merged into neural_network")
    a = ap.parse_args()

    import torch
    from rmldnn_py.config import load_config
    from rmldnn_py.engine import run as R
    from rmldnn_py.log import Logger

    cfg_path = Path(a.config).resolve()
    raw = json.loads(cfg_path.read_text())
    nn = raw["neural_network"]
    nn.pop("checkpoints", None)
    tmp = Path(tempfile.mkdtemp())
    nn["outfile"] = str(tmp / "out.txt")
    nn["data"].pop("test_input_path", None)
    nn.update(json.loads(a.extra))
    os.chdir(cfg_path.parent.parent if (cfg_path.parent.parent / nn["layers"]).exists()
             else cfg_path.parent)
    (tmp / "cfg.json").write_text(json.dumps(raw))
    cfg, _ = load_config(str(tmp / "cfg.json"))
    log = Logger(enabled=True, stream=open(os.devnull, "w"))
    ctx = R._build(cfg, log, R.choose_device(), 1)
    from rmldnn_py.engine.logfiles import LogFiles
    ctx.logfiles = LogFiles(cfg.outfile)
    split, model, loss_fn = ctx.bundle.train, ctx.model, ctx.loss
    opt = ctx.optimizer.optimizer
    nb = split.num_batches
    cached = [(x.clone(), y.clone()) for x, y, _ in split.batches(1)]

    def hand(batches) -> None:
        model.train()
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            value = loss_fn(model(x), y)
            value.backward()
            opt.step()

    variants = {
        "cli": lambda e: R.train_one_epoch(ctx, e, 10 ** 6),
        "hand": lambda e: hand(cached),
        "hand+data": lambda e: hand((x, y) for x, y, _ in split.batches(e)),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    ctx.train_start = time.perf_counter()
    for name, fn in variants.items():        # warm-up
        fn(1)
    for e in range(2, a.epochs + 2):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn(e)
            times[name].append((time.perf_counter() - t) / nb)
    ctx.logfiles.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"config {cfg_path.name} extra={a.extra}: {nb} steps/epoch, {a.epochs} epochs per "
          f"variant, threads={torch.get_num_threads()}, load={os.getloadavg()[0]:.2f}")
    for k, v in med.items():
        print(f"  {k:10s} {1000 * v:8.2f} ms/step")
    print(f"  data path (hand+data vs hand)       : {100 * (med['hand+data'] / med['hand'] - 1):+.1f} %")
    print(f"  logging, |g|, loss read-back (cli vs hand+data): "
          f"{100 * (med['cli'] / med['hand+data'] - 1):+.1f} %")
    print(f"  total (cli vs hand)                 : {100 * (med['cli'] / med['hand'] - 1):+.1f} %")


if __name__ == "__main__":
    main()
