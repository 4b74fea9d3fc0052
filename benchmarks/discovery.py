"""Start-up cost of a large image folder: how long discovery takes for N files (no decoding at
discovery), measured through ``rmldnn_py.data.build_datasets`` without preload.

Creates N tiny PNG files (copies of one encoded image, in 10 class folders) in a temporary
directory, then times ``build_datasets`` (directory walk, sort, label mapping, partitioning) and
the first batch. Usage: python benchmarks/discovery.py [--n 100000]
"""

import argparse
import io
import os
import tempfile
import time

import numpy as np
from PIL import Image

from rmldnn_py.config.types import DataConfig
from rmldnn_py.data import build_datasets
from rmldnn_py.log import Logger


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).save(
        buf, format="PNG")
    data = buf.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for c in range(10):
            os.makedirs(os.path.join(tmp, str(c)))
        for i in range(args.n):
            with open(os.path.join(tmp, str(i % 10), f"img_{i:06d}.png"), "wb") as f:
                f.write(data)
        t1 = time.perf_counter()
        cfg = DataConfig(input_type="images", target_type="labels", input_path=tmp,
                         batch_size=64, input_grayscale=True, grayscale=True, num_workers=2)
        bundle = build_datasets(cfg, config_path="bench", logger=Logger(enabled=False))
        t2 = time.perf_counter()
        first = next(iter(bundle.train.batches(1)))
        t3 = time.perf_counter()
    print(f"files                       : {args.n} ({len(data)} bytes each)")
    print(f"writing them                : {t1 - t0:.1f} s")
    print(f"build_datasets (discovery)  : {t2 - t1:.2f} s   ({bundle.train.num_total} images, "
          f"{bundle.train.num_batches} batches)")
    print(f"first batch (2 workers)     : {t3 - t2:.2f} s   shape {tuple(first[0].shape)}")


if __name__ == "__main__":
    main()
