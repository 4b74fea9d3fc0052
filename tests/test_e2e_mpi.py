"""Two-process data-parallel runs under ``mpirun`` (CPU, gloo): SPEC §2.5, §9, §11.1 criterion 2."""

import os
import shutil
import subprocess

import h5py
import pytest

from conftest import REPO, rmldnn_cmd, strip_ts

pytestmark = pytest.mark.slow

MPIRUN = shutil.which("mpirun")


def mpirun(np_, args, cwd, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RMLDNN_DEBUG", None)
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np_), "--bind-to", "none",
           "-x", "OMP_NUM_THREADS=1", "-x", "PYTHONPATH"] + rmldnn_cmd() + args
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(MPIRUN is None, reason="mpirun not installed")
def test_two_process_smoke(smoke_dir):
    cfg = smoke_dir / "config_rmldnn_test.json"
    cfg.write_text(cfg.read_text().replace('"num_epochs": 10', '"num_epochs": 2')
                   .replace('"test_tag": "testing",',
                            '"test_tag": "testing", "test_output_path": "./pred/",'))
    proc = mpirun(2, ["--config=", "./config_rmldnn_test.json"], cwd=smoke_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = strip_ts(proc.stdout)
    assert "RocketML : 2 MPI processes" in lines
    assert "-------------- Gradient reducer -------------" in lines
    assert "   Num images  (per process): 100" in lines
    assert "   Batch size  (per process): 8" in lines
    assert "   Num batches (per process): 13" in lines
    # only rank 0 prints: one header
    assert lines.count("RocketML : dnn") == 1
    train = [t for t in lines if t.startswith("Train Epoch")]
    assert len(train) == 2 * 13 and all("Grad/Comm:" in t for t in train)
    assert len((smoke_dir / "out_dnn_mnist_sgd_train.txt").read_text().splitlines()) == 26
    assert len((smoke_dir / "out_dnn_mnist_sgd_test.txt").read_text().splitlines()) == 2
    # every test sample exactly once in the predictions, gathered from both ranks
    with h5py.File(smoke_dir / "pred/output_2.h5") as f:
        names = sorted(f"{g}/{d}" for g in f for d in f[g])
    assert len(names) == 20 and len(set(names)) == 20
