"""kill -9 while checkpoints are written (issue 11 acceptance).

Usage::

    python benchmarks/kill9_checkpoints.py [--trials 20] [--units 2048] [--seed 0]

A run trains a largish MLP (784 -> units -> units -> 2, SGD with momentum: the checkpoint holds
the weights and the momentum buffers, ~``2 * 4 * (784 + units) * units`` bytes) for 3 epochs on
32 tiny images, saving a checkpoint every epoch into ``ckpt/``, so most of its time is spent in
``torch.save``. Each trial starts the command in the same folder, waits until a temporary
checkpoint file appears in ``ckpt/`` (a save is in progress), sleeps a random fraction of the time
a save takes, and sends SIGKILL to the whole process group.

Checks, after every trial and at the end:

* every ``model_checkpoint_<n>.pt`` in the folder loads with ``torch.load(weights_only=True)``
  (atomic writes: a killed save leaves the old file or none, never a partial one);
* the temporary files a killed run left behind are gone once the next run in the same folder has
  started (``clean_stale_temps`` at start-up), and after a final complete run no temporary file
  is left at all.

Prints one line per trial and the totals: corrupt final files, stale temporary files seen after
the next run started, temporary files left after the final run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import make_image_tree  # noqa: E402


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OMP_NUM_THREADS", "1")
    e.pop("RMLDNN_DEBUG", None)
    return e


def config(units: int, epochs: int) -> dict:
    return {"neural_network": {
        "num_epochs": epochs, "outfile": "out_kill9.txt",
        "checkpoints": {"save": "./ckpt/", "interval": 1},
        "data": {"input_type": "images", "target_type": "labels", "grayscale": True,
                 "input_path": "./data/training/", "batch_size": 16},
        "optimizer": {"type": "SGD", "learning_rate": 0.01, "momentum": 0.9},
        "loss": {"function": "NLL"},
        "layers": [
            {"class_name": "Flatten", "config": {"name": "flat", "batch_input_shape": [None, 28, 28, 1]}},
            {"class_name": "Dense", "config": {"name": "fc1", "units": units, "activation": "relu"}},
            {"class_name": "Dense", "config": {"name": "fc2", "units": units, "activation": "relu"}},
            {"class_name": "Dense", "config": {"name": "fc3", "units": 2}},
            {"class_name": "Activation", "config": {"name": "sm", "activation": "log_softmax"}}]}}


def temps(ckpt: Path) -> set[str]:
    return {p.name for p in ckpt.glob(".*.tmp")} if ckpt.is_dir() else set()


def corrupt(ckpt: Path) -> list[str]:
    bad = []
    for p in sorted(ckpt.glob("model_checkpoint_*.pt")):
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
            assert isinstance(state, dict) and "model" in state
        except Exception as exc:  # noqa: BLE001 - any failure is a corrupt file
            bad.append(f"{p.name}: {type(exc).__name__}")
    return bad


def start(d: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rmldnn_py", "--config=config.json"], cwd=d,
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--units", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="work folder (default: a new temp folder)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    d = Path(args.dir or tempfile.mkdtemp(prefix="rmldnn_kill9_"))
    make_image_tree(d / "data/training", ["0", "1"], 16)
    (d / "config.json").write_text(json.dumps(config(args.units, 3)))
    ckpt = d / "ckpt"
    size_mb = 2 * 4 * (784 * args.units + args.units * args.units + 2 * args.units) / 2 ** 20
    print(f"folder {d}; checkpoint ~{size_mb:.0f} MiB; {args.trials} trials", flush=True)

    # how long one save takes here (the kill lands uniformly within that window)
    units = args.units
    state = {"model": {f"w{k}": torch.zeros(n) for k, n in
                       enumerate((784 * units, units * units, 2 * units))}}
    state["optimizer"] = {k: v.clone() for k, v in state["model"].items()}
    t0 = time.time()
    torch.save(state, d / "calibration.pt")
    save_s = max(0.05, time.time() - t0)
    (d / "calibration.pt").unlink()
    del state
    print(f"one save takes ~{save_s:.2f} s", flush=True)

    total_corrupt = 0
    stale_after_next_start = 0
    killed_during_save = 0
    previous_stale: set[str] = set()
    for t in range(1, args.trials + 1):
        proc = start(d)
        t0 = time.time()
        seen_start = None
        target = rng.randint(1, 3)               # kill during the 1st, 2nd or 3rd save
        saves: set[str] = set()
        while proc.poll() is None and time.time() - t0 < 600:
            now = temps(ckpt)
            mine = now - previous_stale
            if mine and not saves:
                # this run reached its first save: start-up (and its clean-up) is over
                stale_after_next_start += len(previous_stale & now)
            saves |= mine
            if len(saves) >= target and seen_start is None:
                seen_start = time.time()
                delay = rng.uniform(0.0, save_s)
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.002)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        left_now = temps(ckpt)
        during = bool(left_now - previous_stale)
        killed_during_save += during
        bad = corrupt(ckpt)
        total_corrupt += len(bad)
        finals = len(list(ckpt.glob("model_checkpoint_*.pt")))
        print(f"trial {t:2d}: rc {proc.returncode}, killed {'during' if during else 'outside'} "
              f"save #{target}, temp files now {len(left_now)}, final files {finals} all "
              f"loadable: {not bad}" + (f" ({bad})" if bad else "")
              + (f", stderr: {err.splitlines()[-1][:120]}" if err and proc.returncode not in
                 (-9,) else ""), flush=True)
        previous_stale = left_now
    # a final complete run: it must leave no temporary file at all
    (d / "config.json").write_text(json.dumps(config(args.units, 1)))
    proc = start(d)
    rc = proc.wait(timeout=1200)
    err = proc.stderr.read().decode(errors="replace").strip()
    final_left = temps(ckpt)
    bad = corrupt(ckpt)
    total_corrupt += len(bad)
    print(f"final run: rc {rc}{' ' + err[-200:] if rc else ''}; temp files left {len(final_left)}; "
          f"corrupt {bad or 0}")
    print()
    print(f"trials                                       : {args.trials}")
    print(f"killed while a save was in progress          : {killed_during_save}")
    print(f"corrupt model_checkpoint_*.pt                 : {total_corrupt}")
    print(f"stale temp files still there after next start: {stale_after_next_start}")
    print(f"temp files left after the final run          : {len(final_left)}")
    ok = total_corrupt == 0 and stale_after_next_start == 0 and not final_left and rc == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
