"""Multi-process data-parallel runs under ``mpirun`` and ``torchrun`` (CPU, gloo): SPEC §2.4,
§2.5, §5.7, §9, §11.1 criterion 2.

Every run here is small (tens of 28×28 images); the whole module takes about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import pytest
import torch

from conftest import (REPO, make_image_tree, mpirun_cmd, needs_mpi, rmldnn_env, strip_ts)

pytestmark = pytest.mark.slow


def mpirun(np_, args, cwd, timeout=300):
    return subprocess.run(mpirun_cmd(np_, args), cwd=cwd, env=rmldnn_env(1), capture_output=True,
                          text=True, timeout=timeout)


def _config(tmp_path, name="cfg.json", *, epochs=1, batch=16, test_batch=None, preload=False,
            predictions=False, save=None, optimizer=None, seed=None):
    """The SMOKE network/config on ``data/train`` and ``data/test`` of ``tmp_path``."""
    cfg = json.loads((REPO / "configs/config_rmldnn_test.json").read_text())
    nn = cfg["neural_network"]
    nn["num_epochs"] = epochs
    nn["outfile"] = "out.txt"
    d = nn["data"]
    d.update(input_path="./data/train/", test_input_path="./data/test/", batch_size=batch,
             preload=preload)
    for key in ("training_tag", "test_tag"):
        d.pop(key, None)
    if test_batch is not None:
        d["test_batch_size"] = test_batch
    if predictions:
        d["test_output_path"] = "./pred/"
    if save:
        nn["checkpoints"] = {"save": save, "interval": epochs}
    if optimizer:
        nn["optimizer"] = optimizer
    if seed is not None:
        nn["seed"] = seed
    (tmp_path / name).write_text(json.dumps(cfg))
    return name


def _data(tmp_path, n_train_per_class, n_test_per_class):
    make_image_tree(tmp_path / "data/train", ["0", "1"], n_train_per_class, seed=0)
    make_image_tree(tmp_path / "data/test", ["0", "1"], n_test_per_class, seed=1)


def _h5_names(path):
    with h5py.File(path) as f:
        names = []
        f.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
    return names


def _train_losses(path):
    return [float(line.split()[4]) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------------------


@needs_mpi
def test_two_process_smoke(smoke_dir):
    cfg = smoke_dir / "config_rmldnn_test.json"
    cfg.write_text(cfg.read_text().replace('"num_epochs": 10', '"num_epochs": 2')
                   .replace('"test_tag": "testing",',
                            '"test_tag": "testing", "test_output_path": "./pred/",'))
    proc = mpirun(2, ["--config=", "./config_rmldnn_test.json"], cwd=smoke_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = strip_ts(proc.stdout)
    assert "RocketML : 2 MPI processes" in lines
    i = lines.index("----------------- Device(s) -----------------")
    assert lines[i + 1:i + 3] == ["   CPU", "---------------------------------------------"]
    assert lines[i + 3:i + 6] == ["-------------- Gradient reducer -------------", "   Type: oneshot",
                                  "---------------------------------------------"]
    assert "   Num images  (total)      : 200" in lines
    assert "   Num images  (per process): 100" in lines
    assert "   Batch size  (per process): 8" in lines
    assert "   Num batches (per process): 13" in lines
    # only rank 0 prints: one header
    assert lines.count("RocketML : dnn") == 1
    assert lines[-1] == "All done (return value = 0)."
    train = [t for t in lines if t.startswith("Train Epoch")]
    assert len(train) == 2 * 13 and all("Grad/Comm:" in t for t in train)
    assert len((smoke_dir / "out_dnn_mnist_sgd_train.txt").read_text().splitlines()) == 26
    assert len((smoke_dir / "out_dnn_mnist_sgd_test.txt").read_text().splitlines()) == 2
    # every test sample exactly once in the predictions, gathered from both ranks
    names = sorted(_h5_names(smoke_dir / "pred/output_2.h5"))
    assert len(names) == 20 and len(set(names)) == 20
    assert not list((smoke_dir / "pred").glob("*.tmp*"))


@needs_mpi
def test_one_and_two_processes_train_identically(tmp_path):
    """Same seed and global batch: np=1 and np=2 give the same batch losses and final weights
    (global batch k of np=2 = batch k of np=1; gradients averaged over the global batch)."""
    _data(tmp_path, 100, 5)
    sgd = {"type": "SGD", "learning_rate": 0.05, "momentum": 0.5}
    runs = {}
    for np_ in (1, 2):
        d = tmp_path / f"np{np_}"
        d.mkdir()
        (d / "data").symlink_to(tmp_path / "data")
        _config(d, epochs=3, batch=16, save="./model/", optimizer=sgd, seed=11)
        proc = mpirun(np_, ["--config=cfg.json"], cwd=d)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs[np_] = d
    l1, l2 = (_train_losses(runs[n] / "out_train.txt") for n in (1, 2))
    assert len(l1) == len(l2) == 3 * 13
    assert l1[0] != l1[-1]                                          # it did train
    for a, b in zip(l1, l2):
        assert abs(a - b) <= 1e-4 * abs(a) + 1e-6, (l1, l2)
    w1, w2 = (torch.load(runs[n] / "model/model_checkpoint_3.pt", weights_only=True)["model"]
              for n in (1, 2))
    assert w1.keys() == w2.keys()
    for k in w1:
        diff = (w1[k].double() - w2[k].double()).norm()
        assert diff <= 1e-4 * w1[k].double().norm() + 1e-7, k


def _corrupt_run(tmp_path, preload):
    _data(tmp_path, 10, 4)
    # test blocks are contiguous: of the 8 sorted test images, rank 1 evaluates 1/image_0..3
    bad = tmp_path / "data/test/1/image_2.jpg"
    bad.write_bytes(b"this is not a jpeg")
    _config(tmp_path, preload=preload, batch=4, test_batch=2)
    t0 = time.monotonic()
    proc = mpirun(2, ["--config=cfg.json"], cwd=tmp_path, timeout=120)
    return proc, time.monotonic() - t0


@needs_mpi
@pytest.mark.parametrize("preload", [False, True], ids=["streaming", "preload"])
def test_error_on_one_rank_ends_the_job(tmp_path, preload):
    proc, secs = _corrupt_run(tmp_path, preload)
    assert proc.returncode != 0
    assert secs < 30
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("rmldnn: error:")]
    assert errors, proc.stderr[-3000:]
    assert errors[0].startswith("rmldnn: error: rank 1: ") and "image_2.jpg" in errors[0]
    assert "Traceback" not in proc.stderr


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def _rank_of(pid: int):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    except OSError:
        return None
    r = env.get(b"OMPI_COMM_WORLD_RANK")
    return int(r) if r is not None else None


@needs_mpi
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_killed_rank_ends_the_job(tmp_path):
    """SIGKILL of rank 1 mid-training: mpirun ends the job, non-zero, within seconds."""
    _data(tmp_path, 100, 5)
    _config(tmp_path, epochs=500, batch=8)
    out, err = open(tmp_path / "stdout", "w"), open(tmp_path / "stderr", "w")
    # output to files: orphaned DataLoader workers of the killed rank may hold pipes open a while
    proc = subprocess.Popen(mpirun_cmd(2, ["--config=cfg.json"]), cwd=tmp_path, env=rmldnn_env(1),
                            stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 90
        train = tmp_path / "out_train.txt"
        while time.monotonic() < deadline and proc.poll() is None:   # wait until training runs
            if train.exists() and train.stat().st_size > 0:
                break
            time.sleep(0.2)
        assert proc.poll() is None, (tmp_path / "stderr").read_text()[-3000:]
        ranks = {_rank_of(p): p for p in _children(proc.pid)}   # mpirun's children are the ranks
        assert 1 in ranks, ranks
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.monotonic()
        code = proc.wait(timeout=60)
        assert time.monotonic() - t0 < 30
        assert code != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        err.close()


def test_torchrun_uneven_shards_and_fewer_test_samples_than_ranks(tmp_path):
    """``torchrun --nproc_per_node=2 -m rmldnn_py`` (env:// rendezvous, no MPI); 21 training
    samples on 2 ranks (padded to 11 each), 1 test sample (rank 1 evaluates nothing, runs empty
    batches): no hang, and the predictions hold that one sample once."""
    make_image_tree(tmp_path / "data/train", ["0", "1", "2"], 7, seed=0)
    make_image_tree(tmp_path / "data/test", ["0"], 1, seed=1)
    _config(tmp_path, epochs=2, batch=4, test_batch=4, predictions=True, preload=True)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["neural_network"]["layers"][-2]["config"]["units"] = 3
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = rmldnn_env(1)
    for k in list(env):       # not inside an MPI job
        if k.startswith(("OMPI_", "PMI", "PMIX", "SLURM_")):
            del env[k]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "rmldnn_py", "--config=cfg.json"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = strip_ts(proc.stdout)
    assert "RocketML : 2 MPI processes" in lines
    assert lines.count("RocketML : dnn") == 1
    assert "   Num images  (per process): 11" in lines          # training: ceil(21 / 2)
    assert "   Num batches (per process): 6" in lines           # ceil(11 / 2)
    assert "   Num images  (per process): 1" in lines           # test: rank 0's block
    assert len([t for t in lines if t.startswith("Train Epoch")]) == 2 * 6
    assert len([t for t in lines if t.startswith("Eval  Epoch")]) == 2
    assert lines[-1] == "All done (return value = 0)."
    assert _h5_names(tmp_path / "pred/output_2.h5") == ["0/image_0.jpg"]
