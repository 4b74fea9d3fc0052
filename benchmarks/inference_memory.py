"""Peak memory of distributed inference (issue 11, item 11): predictions are streamed to rank 0
batch by batch, so the peak RSS of every rank must not grow with the size of the test set.

Runs inference of a small fully convolutional network on N = 100 and N = 2,000 generated
``numpy`` samples of shape 3×128×128 (float32, 192 KiB of prediction each: 19 MiB vs 375 MiB of
predictions in total) with ``test_output_path`` at np=2 (and np=1), and reports every rank's peak
RSS (``ru_maxrss`` of the rank process, read by a wrapper at exit).

    PYTHONPATH=. python benchmarks/inference_memory.py [--sizes 100 2000] [--np 2]

Target: the peaks at N = 100 and N = 2,000 within 10 % of each other.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

WRAPPER = """
import resource, sys
from rmldnn_py.cli import main
try:
    rc = main(sys.argv[1:])
finally:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stderr.write(f"PEAK_RSS_KIB {rss}\\n")
sys.exit(rc)
"""

LAYERS = [
    {"class_name": "Conv2D", "config": {"name": "c1", "batch_input_shape": [None, 128, 128, 3],
                                        "filters": 8, "kernel_size": [3, 3], "padding": "same",
                                        "activation": "relu"}},
    {"class_name": "Conv2D", "config": {"name": "head", "filters": 3, "kernel_size": [1, 1],
                                        "padding": "same", "activation": "softmax"}},
]


def make_data(root: Path, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(root / f"s{i:05d}.npy", rng.random((3, 128, 128), dtype=np.float32))


def run(d: Path, n: int, np_: int) -> dict:
    data = d / f"data_{n}"
    if not data.exists():
        make_data(data, n)
    work = d / f"run_{n}_{np_}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "wrap.py").write_text(WRAPPER)
    (work / "config.json").write_text(json.dumps({"neural_network": {
        "layers": LAYERS,
        "data": {"type": "numpy", "test_input_path": str(data), "test_output_path": "./pred/",
                 "test_batch_size": 16 * np_}}}))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "wrap.py", "--config=./config.json"]
    if np_ > 1:
        cmd = [shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", str(np_),
               "--bind-to", "none", "-x", "OMP_NUM_THREADS", "-x", "PYTHONPATH"] + cmd
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    peaks = [int(ln.split()[1]) for ln in proc.stderr.splitlines() if ln.startswith("PEAK_RSS_KIB")]
    size = (work / "pred/output_1.h5").stat().st_size
    return {"samples": n, "np": np_, "peak_rss_mib_per_rank": sorted(round(p / 1024, 1) for p in peaks),
            "output_mib": round(size / 2 ** 20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 2000])
    ap.add_argument("--np", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="infmem_"))
    try:
        results = []
        for np_ in args.np:
            for n in args.sizes:
                r = run(d, n, np_)
                results.append(r)
                print(json.dumps(r), flush=True)
        for np_ in args.np:
            rows = [r for r in results if r["np"] == np_]
            lo, hi = max(rows[0]["peak_rss_mib_per_rank"]), max(rows[-1]["peak_rss_mib_per_rank"])
            print(f"np={np_}: largest rank peak {lo} MiB at N={rows[0]['samples']} vs {hi} MiB "
                  f"at N={rows[-1]['samples']} ({100 * (hi - lo) / lo:+.1f} %)")
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
