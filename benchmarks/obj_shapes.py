"""Learning benchmark of ``--app=obj`` (issue 14): YOLOv3 on generated coloured shapes.

Generates (never commits) a detection set — 3 classes (rectangle, ellipse, triangle) of
coloured shapes on textured noise, 1–4 objects per image, sizes 8–40 px, 128×128 images —
into a temporary directory, then runs the two commands of the README section, timing each:

    rmldnn --app=obj --config= ./configs/config_obj_shapes.json       (training, CPU)
    rmldnn --app=obj --config= ./configs/config_obj_shapes_test.json  (inference on unseen images)

and computes mAP@0.5 and mAP@0.5:0.95 **from the written prediction file** against the label
files with pycocotools directly (not the figure rmldnn prints, which is shown next to it).

Usage: python benchmarks/obj_shapes.py [--train 400] [--test 100] [--epochs 25] [--threads N]
       [--keep DIR]   (keep the data and outputs in DIR)
       python benchmarks/obj_shapes.py --make-data DIR     (only write DIR/data/shapes)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from obj_helpers import SHAPE_CLASSES, make_shapes_dataset, map_from_files  # noqa: E402

TRAIN_SEED, TEST_SEED = 14, 1014


def make_data(root: Path, n_train: int, n_test: int) -> None:
    """``root/data/shapes/{train,test}/{images,labels}`` and ``classes.txt``."""
    d = root / "data" / "shapes"
    make_shapes_dataset(d / "train", n_train, TRAIN_SEED)
    make_shapes_dataset(d / "test", n_test, TEST_SEED)
    (d / "classes.txt").write_text("\n".join(SHAPE_CLASSES) + "\n")


def run_benchmark(root: Path, *, n_train: int = 400, n_test: int = 100, epochs: int = 25,
                  threads: int | None = None, quiet: bool = True) -> dict:
    """Generate the data in ``root``, train, run inference, evaluate the written predictions.

    Returns:
        ``map50``, ``map`` (pycocotools on the prediction file), ``printed`` (the last
        ``Detection mAP`` line of the inference run), ``train_s``, ``infer_s``, counts.
    """
    make_data(root, n_train, n_test)
    for name in ("networks", "configs"):
        shutil.copytree(REPO / name, root / name, dirs_exist_ok=True)
    train_cfg = root / "configs" / "config_obj_shapes.json"
    test_cfg = root / "configs" / "config_obj_shapes_test.json"
    cfg = json.loads(train_cfg.read_text())
    cfg["neural_network"]["num_epochs"] = epochs
    cfg["neural_network"]["checkpoints"]["interval"] = epochs
    train_cfg.write_text(json.dumps(cfg, indent=4))
    tcfg = json.loads(test_cfg.read_text())
    tcfg["neural_network"]["checkpoints"]["load"] = \
        f"./obj_output/shapes_model/model_checkpoint_{epochs}.pt"
    test_cfg.write_text(json.dumps(tcfg, indent=4))

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "rmldnn_py", "--app=obj", "--config="]
    out = None if not quiet else subprocess.PIPE

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    c0, t0 = cpu(), time.perf_counter()
    p1 = subprocess.run(cmd + ["./configs/config_obj_shapes.json"], cwd=root, env=env,
                        stdout=out, stderr=subprocess.STDOUT, text=True)
    c1, t1 = cpu(), time.perf_counter()
    if p1.returncode:
        raise RuntimeError(f"training failed:\n{(p1.stdout or '')[-3000:]}")
    p2 = subprocess.run(cmd + ["./configs/config_obj_shapes_test.json"], cwd=root, env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t2 = time.perf_counter()
    if p2.returncode:
        raise RuntimeError(f"inference failed:\n{p2.stdout[-3000:]}")
    res = map_from_files(root / "obj_output/shapes_predictions/output_1.h5",
                         root / "data/shapes/test/images", root / "data/shapes/test/labels")
    printed = [ln for ln in p2.stdout.splitlines() if "Detection mAP" in ln]
    res.update(train_s=t1 - t0, infer_s=t2 - t1, train_cpu_s=c1 - c0, infer_cpu_s=cpu() - c1,
               printed=printed[-1] if printed else "",
               epochs=epochs, n_train=n_train, n_test=n_test)
    test_log = root / "obj_output/out_obj_shapes_test.txt"
    res["test_log"] = test_log.read_text().splitlines() if test_log.exists() else []
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--make-data", type=Path, default=None)
    ap.add_argument("--verbose", action="store_true", help="show rmldnn's training output")
    a = ap.parse_args()
    if a.make_data:
        make_data(a.make_data, a.train, a.test)
        print(f"wrote {a.make_data / 'data' / 'shapes'}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        r = run_benchmark(root, n_train=a.train, n_test=a.test, epochs=a.epochs,
                          threads=a.threads, quiet=not a.verbose)
    print(f"data                  : {r['n_train']} training / {r['n_test']} unseen test images "
          f"({r['objects']} test objects), 128x128, 3 classes")
    print(f"training ({r['epochs']} epochs)  : {r['train_s']:.1f} s wall, "
          f"{r['train_cpu_s']:.1f} s CPU "
          f"(OMP_NUM_THREADS={a.threads or os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"inference             : {r['infer_s']:.1f} s wall, {r['infer_cpu_s']:.1f} s CPU, "
          f"{r['detections']} detections")
    print(f"mAP@0.5 (pycocotools) : {r['map50']:.4f}   <- from output_1.h5 vs the label files")
    print(f"mAP@0.5:0.95          : {r['map']:.4f}")
    printed = re.sub(r"^\[[^]]*\] ", "", r["printed"])
    print(f"rmldnn printed        : {printed}")
    if r["test_log"]:
        print(f"evaluation per epoch  : {' | '.join(r['test_log'][-5:])}")


if __name__ == "__main__":
    main()
