"""Data-pipeline throughput and pre-load memory of the ``images`` loader.

Measures, on this machine, through the real code path (:func:`rmldnn_py.data.build_datasets`
and iterating :meth:`Split.batches`):

* images/s decoded and transformed, ``preload: true`` (decode once, then per-epoch conversion and
  transforms of the stacked ``uint8`` tensor) vs streaming (``preload: false``: DataLoader workers
  decode and transform every epoch), for 28×28 grayscale and 224×224 RGB JPEGs;
* the memory used by pre-loading N 224×224×3 images, compared with their raw pixel bytes
  (N·224·224·3): the resident-set growth once loaded (target ≤ 1.1 × raw) and the peak growth
  during loading (including the stacking of the pre-loaded samples on the first batch).

Usage::

    PYTHONPATH=. python benchmarks/data_throughput.py [--n28 4000] [--n224 400] [--mem-n 1000]

Each measurement runs in a fresh subprocess so that memory figures are not polluted by earlier
ones and every mode starts cold (OS file cache aside: the files are read once before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_jpegs(root: Path, n: int, size: int, rgb: bool, classes: int = 10, seed: int = 0) -> None:
    """``root/<class>/img_<k>.jpg``: n JPEGs of smooth random content (compressible like photos)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (64, size // 8 + 1, size // 8 + 1, 3 if rgb else 1), np.uint8)
    for k in range(n):
        d = root / str(k % classes)
        d.mkdir(parents=True, exist_ok=True)
        small = base[k % 64]
        im = Image.fromarray(small[..., 0] if not rgb else small)
        im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im).astype(np.int16) + rng.integers(-8, 9, np.asarray(im).shape)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(d / f"img_{k:05d}.jpg", quality=90)


# ------------------------------------------------------------------------------------- worker
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args: dict) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able dict."""
    import torch

    from rmldnn_py.config.types import DataConfig, TransformSpec
    from rmldnn_py.data import build_datasets

    torch.set_num_threads(int(args.get("threads", 2)))
    path, size, gray = args["path"], args["size"], args["gray"]
    transforms = (TransformSpec("resize", [size, size], "transforms[0]"),
                  TransformSpec("normalize", {"mean": 0.5, "std": 0.25}, "transforms[1]"))
    cfg = DataConfig(input_type="images", target_type="labels", input_path=path,
                     batch_size=args.get("batch", 64), preload=args["preload"], grayscale=gray,
                     input_grayscale=gray, transforms=transforms,
                     num_workers=args.get("workers"))
    # warm the codecs and the allocator pools on another image set so they are not counted
    from rmldnn_py.data.images import decode
    first = next(Path(path).rglob("*.jpg"))
    decode(str(first))
    rss0, peak0 = _rss_bytes(), _peak_bytes()
    t0 = time.perf_counter()
    bundle = build_datasets(cfg, config_path="bench", logger=None)
    t_build = time.perf_counter() - t0
    split = bundle.train
    rss_loaded, peak_loaded = _rss_bytes(), _peak_bytes()
    rss_stacked, peak_stacked = rss_loaded, peak_loaded
    if args["preload"] and split.num_workers == 0:
        # the stacking of the pre-loaded samples that the first batches() call does (private
        # hook, measured on its own so that batch working memory is not counted)
        split._fast_checked = True
        split._prepare_fast_path()
        rss_stacked, peak_stacked = _rss_bytes(), _peak_bytes()
    n = split.num_total
    out = {"n": n, "size": size, "preload": args["preload"], "build_s": t_build,
           "workers": split.num_workers}
    epochs = []
    for epoch in (1, 2, 3):
        t0 = time.perf_counter()
        seen = 0
        for b in split.batches(epoch):
            seen += b.inputs.shape[0]
            if epoch == 1 and seen == b.inputs.shape[0]:
                rss_first, peak_first = _rss_bytes(), _peak_bytes()
        epochs.append(time.perf_counter() - t0)
        assert seen == n, (seen, n)
    split.close()
    out["epoch_s"] = epochs
    raw = n * size * size * (1 if gray else 3)
    out["raw_bytes"] = raw
    out["rss_growth_loaded"] = rss_loaded - rss0
    out["rss_growth_after_first_batch"] = rss_first - rss0
    out["peak_growth"] = max(peak_loaded, peak_first, _peak_bytes()) - peak0 if peak0 else None
    out["peak_growth_loaded"] = peak_loaded - peak0
    out["rss_growth_stacked"] = rss_stacked - rss0
    out["peak_growth_stacked"] = peak_stacked - peak0
    return out


def run_worker(args: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(args)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n28", type=int, default=4000, help="number of 28×28 grayscale JPEGs")
    ap.add_argument("--n224", type=int, default=400, help="number of 224×224 RGB JPEGs")
    ap.add_argument("--mem-n", type=int, default=1000, help="224×224 RGB images for the memory test")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers when streaming (default: automatic)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return

    print(f"cpu cores: {os.cpu_count()}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="rmldnn_bench_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_jpegs(tmp / "d28", a.n28, 28, rgb=False)
        make_jpegs(tmp / "d224", a.n224, 224, rgb=True, seed=1)
        mem_dir = tmp / "d224" if a.mem_n == a.n224 else tmp / "m224"
        if mem_dir != tmp / "d224":
            make_jpegs(mem_dir, a.mem_n, 224, rgb=True, seed=2)
        for p in tmp.rglob("*.jpg"):       # warm the OS file cache
            p.read_bytes()
        print(f"generated test images in {time.perf_counter() - t0:.1f} s")

        print("\nthroughput (images/s; resize + normalize transforms, batch 64, labels targets)")
        print(f"{'images':>16} {'mode':>10} {'workers':>7} {'decode(pre)':>12} "
              f"{'epoch 1':>10} {'epoch 2-3':>10}")
        results = []
        for name, size, gray, n in (("28x28 gray", 28, True, a.n28),
                                    ("224x224 RGB", 224, False, a.n224)):
            for preload in (True, False):
                r = run_worker({"path": str(tmp / ("d28" if size == 28 else "d224")),
                                "size": size, "gray": gray, "preload": preload,
                                "workers": None if preload else a.workers})
                results.append(r)
                dec = f"{n / r['build_s']:12.0f}" if preload else f"{'-':>12}"
                e1 = n / r["epoch_s"][0]
                e23 = 2 * n / (r["epoch_s"][1] + r["epoch_s"][2])
                print(f"{name:>16} {'preload' if preload else 'streaming':>10} "
                      f"{r['workers']:>7} {dec} {e1:10.0f} {e23:10.0f}")

        r = run_worker({"path": str(mem_dir), "size": 224, "gray": False, "preload": True,
                        "workers": 0})
        raw = r["raw_bytes"]
        mib = 1024 * 1024
        print(f"\npre-load memory, {r['n']} images 224x224x3 uint8: raw pixel bytes "
              f"{raw / mib:.1f} MiB")
        print(f"  resident growth after pre-loading      : {r['rss_growth_loaded'] / mib:8.1f} MiB "
              f"({r['rss_growth_loaded'] / raw:.2f} x raw)")
        print(f"  resident growth after stacking         : {r['rss_growth_stacked'] / mib:8.1f} MiB "
              f"({r['rss_growth_stacked'] / raw:.2f} x raw)")
        print(f"  peak growth incl. stacking             : {r['peak_growth_stacked'] / mib:8.1f} MiB "
              f"({r['peak_growth_stacked'] / raw:.2f} x raw)")
        print(f"  resident growth after the first batch  : "
              f"{r['rss_growth_after_first_batch'] / mib:8.1f} MiB "
              f"({r['rss_growth_after_first_batch'] / raw:.2f} x raw)")
        print(f"  peak growth while pre-loading          : {r['peak_growth_loaded'] / mib:8.1f} MiB "
              f"({r['peak_growth_loaded'] / raw:.2f} x raw)")
        print(f"  peak growth incl. 3 epochs of batches  : {r['peak_growth'] / mib:8.1f} MiB "
              f"({r['peak_growth'] / raw:.2f} x raw)")
        held = r["rss_growth_stacked"] <= 1.1 * raw
        peak = r["peak_growth_stacked"] <= 1.1 * raw
        print(f"  target: pre-loaded uint8 memory <= 1.1 x raw pixel bytes: held "
              f"{'met' if held else 'NOT met'}, peak {'met' if peak else 'NOT met'}")


if __name__ == "__main__":
    main()
