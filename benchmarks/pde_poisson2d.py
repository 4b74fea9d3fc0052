"""Neural Poisson-2D solver vs a classical finite-element solver (issue 12 acceptance).

1. ``python -m rmldnn_py.pde.diffusivity``: 256 training maps 32×32 (seed 0, ``--normalize``:
   each map divided by its mean, which leaves its solution unchanged) and 8 unseen test maps
   (seed 1000, the raw tutorial family, not normalised);
2. ``rmldnn --app=pde`` trains ``networks/unet2d_poisson.json`` with ``Poisson2D_PDE``
   (data-free: the loss is the energy; Adam, exponential learning-rate decay);
3. an inference run (``checkpoints.load``) writes ``output_1.h5``;
4. every test map is solved with bilinear finite elements, 2×2 Gauss quadrature
   (``tests/pde_reference.py``, scipy.sparse), and compared: relative L2 error of the network's
   field and of the trivial field u = 1 − x, energies ∫ν|∇u|² of both (full quadrature).

Usage: ``python benchmarks/pde_poisson2d.py [--dir /tmp/poisson2d] [--epochs 150]``.
Prints one line per test map and the summary; ``run()`` returns the numbers (used by the
acceptance test in tests/test_pde_app.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import pde_reference as R  # noqa: E402


def _rmldnn(args, cwd, threads):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=str(threads))
    exe = shutil.which("rmldnn")
    cmd = ([exe] if exe else [sys.executable, "-m", "rmldnn_py"]) + args
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"rmldnn failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def run(workdir, *, n_train: int = 256, n_test: int = 8, size: int = 32, epochs: int = 150,
        batch: int = 8, lr: float = 2e-3, gamma: float = 0.985, threads: int = 1,
        verbose: bool = True) -> dict:
    """Generate, train, infer, compare (module docstring); returns the numbers."""
    from rmldnn_py.pde import diffusivity as dv

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dv.generate(n_train, str(work / "maps"), size=size, dims=2, seed=0, workers=2,
                progress=False, normalize=True)
    dv.generate(n_test, str(work / "test_maps"), size=size, dims=2, seed=1000, progress=False)
    net = str(REPO / "networks" / "unet2d_poisson.json")
    train = {"neural_network": {
        "outfile": "out_poisson2d.txt", "num_epochs": epochs, "layers": net,
        "checkpoints": {"save": "./model/", "interval": epochs},
        "data": {"type": "numpy", "input_path": "./maps/", "target_path": "./maps/",
                 "batch_size": batch, "preload": True},
        "optimizer": {"type": "Adam", "learning_rate": lr,
                      "lr_scheduler": {"type": "Exponential", "gamma": gamma,
                                       "verbose": False}},
        "loss": {"function": "Poisson2D_PDE"}}}
    infer = {"neural_network": {
        "outfile": "out_poisson2d_inference.txt", "layers": net,
        "checkpoints": {"load": f"./model/model_checkpoint_{epochs}.pt"},
        "data": {"type": "numpy", "test_input_path": "./test_maps/",
                 "test_target_path": "./test_maps/", "test_output_path": "./prediction/"},
        "loss": {"function": "Poisson2D_PDE"}}}
    (work / "train.json").write_text(json.dumps(train, indent=1))
    (work / "infer.json").write_text(json.dumps(infer, indent=1))
    t1 = time.perf_counter()
    _rmldnn(["--app=pde", "--config=./train.json"], work, threads)
    t2 = time.perf_counter()
    _rmldnn(["--app=pde", "--config=./infer.json"], work, threads)
    import h5py

    rows = []
    with h5py.File(work / "prediction" / "output_1.h5") as f:
        for k in range(n_test):
            name = f"diffusivity_{k}.npy"
            u = f[name][()][0].astype(np.float64)
            nu = np.load(work / "test_maps" / name)[0].astype(np.float64)
            ref = R.solve_poisson(nu, "full")
            lin = R.linear_field(ref.shape)
            rows.append({"map": name, "nu_min": float(nu.min()), "nu_max": float(nu.max()),
                         "error": R.relative_l2(u, ref), "trivial": R.relative_l2(lin, ref),
                         "energy_net": R.fem_energy(u, nu), "energy_ref": R.fem_energy(ref, nu),
                         "energy_trivial": R.fem_energy(lin, nu)})
    train_log = [line.split()
                 for line in (work / "out_poisson2d_train.txt").read_text().splitlines()]
    result = {"rows": rows, "errors": [r["error"] for r in rows],
              "trivial": [r["trivial"] for r in rows],
              "first_loss": float(train_log[0][4]), "last_loss": float(train_log[-1][4]),
              "train_seconds": t2 - t1, "total_seconds": time.perf_counter() - t0,
              "epochs": epochs, "steps": len(train_log)}
    if verbose:
        print(f"{'map':<20}{'nu range':>22}{'rel L2 err':>12}{'trivial':>10}{'ratio':>8}"
              f"{'E net':>11}{'E FEM':>11}{'E 1-x':>11}")
        for r in rows:
            print(f"{r['map']:<20}{r['nu_min']:>10.3g} .. {r['nu_max']:<8.3g}{r['error']:>12.4f}"
                  f"{r['trivial']:>10.4f}{r['error'] / r['trivial']:>8.3f}"
                  f"{r['energy_net']:>11.5g}{r['energy_ref']:>11.5g}{r['energy_trivial']:>11.5g}")
        e = np.array(result["errors"])
        print(f"median relative L2 error {np.median(e):.4f}, max {e.max():.4f}; worst error / "
              f"trivial error {max(r['error'] / r['trivial'] for r in rows):.3f}; training "
              f"{result['steps']} steps in {result['train_seconds']:.0f} s "
              f"(loss {result['first_loss']:.4g} -> {result['last_loss']:.4g})")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="/tmp/rmldnn_poisson2d")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if os.path.isdir(a.dir):
        shutil.rmtree(a.dir)
    run(a.dir, epochs=a.epochs, threads=a.threads)


if __name__ == "__main__":
    main()
