"""Preemption timing (issue 10): time from SIGTERM to the exit of every process, at np=1 and
np=2, and what is left on disk.

A 6-epoch run of the MNIST tutorial network on the embedded demo digits (1,437 images, batch 128)
is started with ``"checkpoints": {"save": ..., "resume": true}``; once the second epoch is under
way the signal is sent (np=1: to the process; np=2: to every rank, as Slurm does, and, in a
second variant, to ``mpirun`` itself); the script measures until the launcher exits, checks the
exit code (143), the preemption checkpoint and that no ``*.tmp`` file is left, then resumes the
run to the end.

    PYTHONPATH=. python benchmarks/preemption.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def config(d: Path) -> None:
    cfg = json.loads((REPO / "configs/config_mnist_training.json").read_text())
    nn = cfg["neural_network"]
    nn.update(num_epochs=6, outfile="out.txt", layers=str(REPO / "networks/mnist_keras_net.json"),
              checkpoints={"save": "./ck/", "interval": 1, "resume": True})
    nn["data"].update(input_path=str(REPO / "demo/mnist/training"),
                      test_input_path=str(REPO / "demo/mnist/testing"))
    (d / "config.json").write_text(json.dumps(cfg))


def command(np_: int) -> list[str]:
    exe = [shutil.which("rmldnn") or sys.executable, "--config=", "./config.json"]
    if shutil.which("rmldnn") is None:
        exe = [sys.executable, "-m", "rmldnn_py", "--config=", "./config.json"]
    if np_ == 1:
        return exe
    return [shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", str(np_),
            "--bind-to", "none", "-x", "OMP_NUM_THREADS", "-x", "PYTHONPATH"] + exe


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def ranks(proc: subprocess.Popen, np_: int) -> list[int]:
    if np_ == 1:
        return [proc.pid]
    for _ in range(400):
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        if len(pids) >= np_:
            return pids
        time.sleep(0.05)
    raise RuntimeError("ranks not found")


def trial(np_: int, target: str) -> dict:
    d = Path(tempfile.mkdtemp(prefix="preempt_"))
    try:
        config(d)
        proc = subprocess.Popen(command(np_), cwd=d, env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        pids = ranks(proc, np_)
        log = d / "out_train.txt"
        while not (log.exists() and any(ln.startswith("2 3 ") for ln in log.read_text().splitlines())):
            if proc.poll() is not None:
                raise RuntimeError(proc.communicate()[1][-2000:])
            time.sleep(0.01)
        t0 = time.perf_counter()
        for pid in (pids if target == "ranks" else [proc.pid]):
            os.kill(pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        dt = time.perf_counter() - t0
        left = [p.name for p in d.rglob("*.tmp")]
        partial = sorted(p.name for p in (d / "ck").glob("model_checkpoint_*_*.pt")) \
            if (d / "ck").exists() else []
        again = subprocess.run(command(np_), cwd=d, env=env(), capture_output=True, text=True,
                               timeout=600)
        return {"np": np_, "signal_to": target, "seconds": round(dt, 2), "exit": proc.returncode,
                "checkpoint": partial, "tmp_left": left,
                "resumed_ok": again.returncode == 0 and "Resuming from" in again.stdout,
                "stderr": err.strip().splitlines()[-1:] if err.strip() else []}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cases = [(1, "ranks")]
    if shutil.which("mpirun"):
        cases += [(2, "ranks"), (2, "mpirun")]
    for np_, target in cases:
        for _ in range(args.repeat):
            print(json.dumps(trial(np_, target)), flush=True)


if __name__ == "__main__":
    main()
