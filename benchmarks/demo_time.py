"""Time the README's main job: the MNIST tutorial on the embedded demo digits.

Runs, in a temporary copy of demo/, networks/ and configs/:
  rmldnn --config= ./configs/config_mnist_training.json   (20 epochs, eval each epoch)
  rmldnn --config= ./configs/config_mnist_test.json       (inference on 10 held-out digits)
and prints the wall time of each, the final test accuracy and the held-out digits classified
correctly. Usage: python benchmarks/demo_time.py [--threads N]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "rmldnn_py", "--config="]
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("demo", "networks", "configs"):
            shutil.copytree(REPO / name, Path(tmp) / name)
        t0 = time.perf_counter()
        subprocess.run(cmd + ["./configs/config_mnist_training.json"], cwd=tmp, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        t1 = time.perf_counter()
        subprocess.run(cmd + ["./configs/config_mnist_test.json"], cwd=tmp, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        t2 = time.perf_counter()
        last = (Path(tmp) / "demo_output/out_mnist_test.txt").read_text().splitlines()[-1]
        truth = [int(t) for t in (Path(tmp) / "demo/mnist_digits_labels.txt").read_text().split()]
        with h5py.File(Path(tmp) / "demo_output/mnist_predictions/output_1.h5") as f:
            pred = [int(np.argmax(f[d][()])) for d in f]
    print(f"threads                 : {args.threads}")
    print(f"training (20 epochs)    : {t1 - t0:.1f} s   final: {last}")
    print(f"inference (10 digits)   : {t2 - t1:.1f} s   "
          f"{sum(p == t for p, t in zip(pred, truth))}/10 correct")
    print(f"whole demo              : {t2 - t0:.1f} s")


if __name__ == "__main__":
    main()
