"""Training throughput of the tutorial's 3D U-Net (64³, batch 4, ``Poisson3D_PDE``) through the
``rmldnn --app=pde`` command vs hand-written PyTorch loops (issue 12 acceptance: CLI ≥ 0.95×).

Three measurements of the time of one training step (batch gathering, forward, loss, backward,
optimizer step, and for the command also |g|, logging and checks), interleaved over ``--repeats``
rounds because the machine may be shared with other work:

* ``cli``: ``rmldnn --app=pde`` on ``--samples`` pre-loaded maps, 3 epochs; step times are the
  differences of the ``seconds`` column of ``_train.txt`` (wall time after each batch), epochs 2
  and 3 only;
* ``hand``: a plain PyTorch loop with a hand-written ``nn.Module`` of the same architecture
  (Conv3d / InstanceNorm3d / LeakyReLU / Dropout / ConvTranspose3d / cat / interpolate / sigmoid),
  Adam, the same loss (:func:`rmldnn_py.pde.losses.poisson_energy` of the Dirichlet-imposed
  output), batches gathered from a pre-loaded tensor;
* ``hand+builder``: the same loop on the network built from ``networks/unet3d_poisson.json`` by
  rmldnn_py's builder (separates the cost of the builder's modules from the engine's).

On a shared machine the fastest step of each variant is the least disturbed estimate of its cost,
so throughputs are batch / minimum step time (the medians are printed too).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/pde_throughput.py [--samples 12] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from pde_poisson2d import _rmldnn  # noqa: E402


class HandUNet3D(nn.Module):
    """The tutorial's 3D U-Net written directly in PyTorch (channel-first)."""

    def __init__(self, filters=(16, 32, 64, 128, 128)) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        c = 1
        for f in filters:
            self.down.append(nn.Sequential(nn.Conv3d(c, f, 4, 2, 1, bias=False),
                                           nn.InstanceNorm3d(f), nn.LeakyReLU(0.2)))
            c = f
        self.drop = nn.Dropout(0.5)
        self.up = nn.ModuleList()
        for lvl in range(len(filters) - 1, 0, -1):
            f = filters[lvl - 1]
            self.up.append(nn.Sequential(nn.ConvTranspose3d(c, f, 4, 2, 1, bias=False),
                                         nn.InstanceNorm3d(f), nn.ReLU()))
            c = f + filters[lvl - 1]
        self.final = nn.Conv3d(c, 1, 3, 1, 1)

    def forward(self, x):
        skips = []
        n = len(self.down)
        for i, block in enumerate(self.down):
            x = block(x)
            if i >= n - 2:
                x = self.drop(x)
            skips.append(x)
        for j, block in enumerate(self.up):
            lvl = n - 1 - j
            x = block(x)
            if j < 2:
                x = self.drop(x)
            x = torch.cat([skips[lvl - 1], x], dim=1)
        x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return torch.sigmoid(self.final(x))


def hand_loop(net: nn.Module, data: torch.Tensor, batch: int, steps: int,
              warmup: int) -> list[float]:
    """Seconds of each of ``steps`` Adam steps after ``warmup`` ones."""
    from rmldnn_py.pde.losses import impose_dirichlet, poisson_energy

    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    net.train()
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, data.shape[0], (batch,), generator=g)
        nu = data.index_select(0, idx)
        out = net(nu)
        loss = poisson_energy(impose_dirichlet(out), nu).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def cli_run(work: Path, samples: int, batch: int, threads: int) -> list[float]:
    """Seconds of each training step of epochs 2 and 3 of an ``rmldnn --app=pde`` run."""
    cfg = {"neural_network": {
        "outfile": "out.txt", "num_epochs": 3,
        "layers": str(REPO / "networks" / "unet3d_poisson.json"),
        "data": {"type": "numpy", "input_path": "./maps/", "target_path": "./maps/",
                 "batch_size": batch, "preload": True},
        "optimizer": {"type": "Adam", "learning_rate": 1e-4},
        "loss": {"function": "Poisson3D_PDE"}, "progress": False}}
    (work / "cfg.json").write_text(json.dumps(cfg))
    _rmldnn(["--app=pde", "--config=./cfg.json"], work, threads)
    rows = [line.split() for line in (work / "out_train.txt").read_text().splitlines()]
    seconds = [float(r[3]) for r in rows]
    first = sum(1 for r in rows if r[0] == "1")
    return [b - a for a, b in zip(seconds[first - 1:], seconds[first:])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=12)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from rmldnn_py.network import build_network
    from rmldnn_py.pde import diffusivity as dv

    work = Path(tempfile.mkdtemp(prefix="pde_throughput_"))
    try:
        dv.generate(a.samples, str(work / "maps"), size=64, dims=3, seed=0, workers=2,
                    progress=False)
        data = torch.from_numpy(np.stack([np.load(work / "maps" / f"diffusivity_{k}.npy")
                                          for k in range(a.samples)]))
        steps = 2 * (a.samples // a.batch)
        times: dict[str, list[float]] = {"cli": [], "hand": [], "hand+builder": []}
        for r in range(a.repeats):
            torch.manual_seed(r)
            times["cli"] += cli_run(work, a.samples, a.batch, a.threads)
            times["hand"] += hand_loop(HandUNet3D(), data, a.batch, steps, 1)
            built = build_network(str(REPO / "networks" / "unet3d_poisson.json"), config_path="x")
            times["hand+builder"] += hand_loop(built, data, a.batch, steps, 1)
            print(f"round {r + 1}: " + "; ".join(
                f"{k} step min {min(v):.3f} s, median {float(np.median(v)):.3f} s"
                for k, v in times.items()), flush=True)
        best = {k: a.batch / min(v) for k, v in times.items()}
        med = {k: a.batch / float(np.median(v)) for k, v in times.items()}
        print(f"3D U-Net 64^3, batch {a.batch}, {a.threads} thread(s), "
              f"{len(times['cli'])} steps each: samples/s (fastest step) cli {best['cli']:.3f}, "
              f"hand {best['hand']:.3f}, hand+builder {best['hand+builder']:.3f}; "
              f"cli/hand = {best['cli'] / best['hand']:.3f}, cli/hand+builder = "
              f"{best['cli'] / best['hand+builder']:.3f} (medians: cli/hand = "
              f"{med['cli'] / med['hand']:.3f}, cli/hand+builder = "
              f"{med['cli'] / med['hand+builder']:.3f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
