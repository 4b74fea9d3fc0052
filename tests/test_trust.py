"""Runs you can trust (issue 10), through the ``rmldnn`` command:

* full-state resume: a run killed with ``kill -9`` after a checkpoint, or stopped by SIGTERM in
  the middle of an epoch, and started again with the same command ends with the same weights
  (≤ 1e-6) and the same per-batch losses as an uninterrupted run; the same at np=2 (slow);
* preemption: SIGTERM / SIGUSR1 → a full-state checkpoint, exit 128 + signal, no temp files;
* best checkpoint and early stopping follow the rule recomputed by hand from ``_test.txt``;
* ``clip_grad_norm`` bounds the actual weight update (read from the checkpoints);
* divergence is a one-line error naming epoch and batch;
* class-index targets that are not class indices are refused (the 0/1-mask pitfall), the same
  data with ``normalize`` trains to ≥ 95 % pixel accuracy measured from ``output_<e>.h5``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import (REPO, make_image_tree, mpirun_cmd, needs_mpi, rmldnn_cmd, rmldnn_env,
                      strip_ts, write_json)

def _cmd(np_: int) -> list[str]:
    args = ["--config=", "./config.json"]
    if np_ == 1:
        return rmldnn_cmd() + args
    return mpirun_cmd(np_, args)


def _run(cwd: Path, np_: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(np_), cwd=cwd, env=rmldnn_env(1), capture_output=True, text=True,
                          timeout=timeout)


def _start(cwd: Path, np_: int = 1) -> subprocess.Popen:
    return subprocess.Popen(_cmd(np_), cwd=cwd, env=rmldnn_env(1), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _rank_pids(proc: subprocess.Popen, np_: int) -> list[int]:
    """The rmldnn processes of a run: the process itself, or mpirun's children."""
    if np_ == 1:
        return [proc.pid]
    for _ in range(200):
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        if len(pids) >= np_:
            return pids
        time.sleep(0.05)
    raise AssertionError("mpirun's ranks not found")


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"run ended early ({proc.returncode}): "
                                 f"{proc.communicate()[1][-2000:]}")
        if time.time() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def _train_lines(path: Path) -> list[list[str]]:
    return [ln.split() for ln in path.read_text().splitlines()] if path.exists() else []


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def _no_tmp(*dirs: Path) -> None:
    for d in dirs:
        if d.exists():
            left = [p.name for p in d.rglob("*") if p.name.endswith(".tmp")]
            assert not left, left


# --------------------------------------------------------------------------------------------
# the MNIST tutorial network (Dropout), Adam, Step scheduler, 4 epochs


EPOCHS, NB = 4, 15


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    make_image_tree(root / "training", [str(k) for k in range(10)], 24, seed=0)
    make_image_tree(root / "testing", [str(k) for k in range(10)], 3, seed=1)
    return root


def _mnist_config(d: Path, root: Path, **nn) -> None:
    cfg = {"neural_network": {
        "outfile": "out.txt", "num_epochs": EPOCHS,
        "layers": str(REPO / "networks/mnist_keras_net.json"),
        "checkpoints": {"save": "./ck/", "interval": 1, "resume": True},
        "data": {"input_type": "images", "target_type": "labels",
                 "input_path": str(root / "training"), "test_input_path": str(root / "testing"),
                 "batch_size": 16, "test_batch_size": 32, "grayscale": True, "preload": True},
        "optimizer": {"type": "Adam", "learning_rate": 1e-3,
                      "lr_scheduler": {"type": "Step", "step_size": 2, "gamma": 0.5}},
        "loss": {"function": "NLL"}}}
    cfg["neural_network"].update(nn)
    write_json(d / "config.json", cfg)


@pytest.fixture(scope="module")
def reference(digits, tmp_path_factory) -> Path:
    """The uninterrupted 4-epoch run."""
    d = tmp_path_factory.mktemp("uninterrupted")
    _mnist_config(d, digits)
    proc = _run(d)
    assert proc.returncode == 0, proc.stderr
    assert "No checkpoint to resume from in ./ck/: starting from epoch 1" in proc.stdout
    assert len(_train_lines(d / "out_train.txt")) == EPOCHS * NB
    return d


def _assert_same_run(d: Path, ref: Path) -> None:
    diff = _max_diff(_weights(d / f"ck/model_checkpoint_{EPOCHS}.pt"),
                     _weights(ref / f"ck/model_checkpoint_{EPOCHS}.pt"))
    assert diff <= 1e-6, diff
    got, want = _train_lines(d / "out_train.txt"), _train_lines(ref / "out_train.txt")
    assert [r[:3] for r in got] == [r[:3] for r in want]         # every batch exactly once
    np.testing.assert_allclose([float(r[4]) for r in got], [float(r[4]) for r in want],
                               rtol=1e-5, atol=1e-7)             # the same batch sequence
    assert (d / "out_test.txt").read_text() == (ref / "out_test.txt").read_text()


def test_resume_after_kill_9_matches_uninterrupted_run(digits, reference, tmp_path):
    _mnist_config(tmp_path, digits)
    proc = _start(tmp_path)
    _wait_for(lambda: (tmp_path / "ck/model_checkpoint_2.pt").exists(), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / f"ck/model_checkpoint_{EPOCHS}.pt").exists(), "the run was not cut"
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = [ln for ln in strip_ts(again.stdout) if ln.startswith("Resuming from")]
    assert len(resumed) == 1 and "./ck/model_checkpoint_" in resumed[0], resumed
    _assert_same_run(tmp_path, reference)
    _no_tmp(tmp_path / "ck")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_mid_epoch_checkpoints_and_resumes(digits, reference, tmp_path, sig):
    _mnist_config(tmp_path, digits)
    proc = _start(tmp_path)
    log = tmp_path / "out_train.txt"
    _wait_for(lambda: any(r[:2] == ["2", "3"] for r in _train_lines(log)), proc)
    t0 = time.time()
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert time.time() - t0 < 30
    assert err == ""
    stop = [ln for ln in strip_ts(out) if ln.startswith("Preempted by")]
    assert len(stop) == 1 and signal.Signals(sig).name in stop[0], out[-1500:]
    partial = sorted((tmp_path / "ck").glob("model_checkpoint_2_*.pt"))
    assert len(partial) == 1, list((tmp_path / "ck").iterdir())
    state = torch.load(partial[0], map_location="cpu", weights_only=True)
    b = int(partial[0].stem.rsplit("_", 1)[1])
    assert state["position"] == {"epoch": 2, "batch": b, "num_batches": NB, "complete": False,
                                 "evaluating": False}
    assert 3 <= b < NB
    _no_tmp(tmp_path / "ck")
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"Resuming from ./ck/model_checkpoint_2_{b}.pt (epoch 2, batch {b}): continuing " \
           f"with epoch 2, batch {b + 1}" in again.stdout
    _assert_same_run(tmp_path, reference)
    # the superseded preemption checkpoint is removed once a newer checkpoint exists
    assert not partial[0].exists()


def test_signal_during_evaluation_resumes_without_a_second_scheduler_step(digits, reference,
                                                                         tmp_path):
    """A stop during the evaluation of epoch 2: the resumed run redoes that evaluation only
    (the Step schedule must not advance twice) and ends like the uninterrupted run."""
    _mnist_config(tmp_path, digits)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["neural_network"]["data"].update(test_batch_size=2, test_output_path="./pred/")
    write_json(tmp_path / "config.json", cfg)
    proc = _start(tmp_path)
    _wait_for(lambda: any(p.name.startswith(".output_2.h5") for p in (tmp_path / "pred").glob(".*"))
              if (tmp_path / "pred").exists() else False, proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    partial = list((tmp_path / "ck").glob("model_checkpoint_2_*.pt"))
    assert [p.name for p in partial] == [f"model_checkpoint_2_{NB}.pt"]
    pos = torch.load(partial[0], weights_only=True)["position"]
    assert pos["evaluating"] and not pos["complete"]
    _no_tmp(tmp_path / "ck", tmp_path / "pred")
    assert not (tmp_path / "pred/output_2.h5").exists()
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "pred/output_2.h5").exists()
    _assert_same_run(tmp_path, reference)


def test_resume_from_a_given_file(digits, reference, tmp_path):
    _mnist_config(tmp_path, digits)
    shutil.copytree(reference / "ck", tmp_path / "old")
    for p in (tmp_path / "old").glob("model_checkpoint_[34].pt"):
        p.unlink()
    _mnist_config(tmp_path, digits, checkpoints={"save": "./ck/", "interval": 1,
                                                   "resume": "./old/model_checkpoint_2.pt"})
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Resuming from ./old/model_checkpoint_2.pt (epoch 2, batch 15): continuing with " \
           "epoch 3, batch 1" in proc.stdout
    diff = _max_diff(_weights(tmp_path / "ck/model_checkpoint_4.pt"),
                     _weights(reference / "ck/model_checkpoint_4.pt"))
    assert diff <= 1e-6


def test_checkpoints_load_keeps_transfer_learning_meaning(digits, reference, tmp_path):
    """checkpoints.load = weights only: training starts again at epoch 1."""
    _mnist_config(tmp_path, digits, num_epochs=1,
                  checkpoints={"load": str(reference / "ck/model_checkpoint_2.pt")})
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Resuming" not in proc.stdout
    assert "Train Epoch [  1/  1]" in proc.stdout


@pytest.mark.slow
@needs_mpi
def test_two_ranks_sigterm_and_resume(digits, tmp_path_factory):
    """np=2: SIGTERM to every rank (what Slurm does) mid-epoch 2; the resumed run ends like an
    uninterrupted np=2 run."""
    ref = tmp_path_factory.mktemp("np2_ref")
    _mnist_config(ref, digits)
    proc = _run(ref, np_=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    d = tmp_path_factory.mktemp("np2_cut")
    _mnist_config(d, digits)
    proc = _start(d, np_=2)
    pids = _rank_pids(proc, 2)
    _wait_for(lambda: any(r[:2] == ["2", "3"] for r in _train_lines(d / "out_train.txt")), proc)
    t0 = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 30
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    assert len(list((d / "ck").glob("model_checkpoint_2_*.pt"))) == 1
    _no_tmp(d / "ck")
    again = _run(d, np_=2)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Resuming from ./ck/model_checkpoint_2_" in again.stdout
    _assert_same_run(d, ref)


# --------------------------------------------------------------------------------------------
# best checkpoint, early stopping, clipping


def _early_stop_epoch(losses: list[float], patience: int, min_delta: float) -> int:
    """Keras EarlyStopping (mode min, baseline None), recomputed by hand."""
    best, waited = None, 0
    for e, v in enumerate(losses, 1):
        if best is None or v < best - min_delta:
            best, waited = v, 0
        else:
            waited += 1
        if waited >= patience:
            return e
    return len(losses)


def test_best_checkpoint_and_early_stopping_follow_the_rule(digits, tmp_path):
    """A learning rate so high that the evaluation loss soon stops improving."""
    _mnist_config(tmp_path, digits, num_epochs=12,
                  checkpoints={"save": "./ck/", "interval": 100, "best": "loss"},
                  early_stopping={"monitor": "loss", "patience": 2, "min_delta": 0.001},
                  optimizer={"type": "SGD", "learning_rate": 0.3, "momentum": 0.9})
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    losses = [float(ln.split("Loss: ")[1].split()[0])
              for ln in (tmp_path / "out_test.txt").read_text().splitlines()]
    stop = _early_stop_epoch(losses + [float("inf")] * 12, 2, 0.001)
    assert len(losses) == stop, (losses, stop)
    if stop < 12:
        assert f"Early stopping at epoch {stop}:" in proc.stdout
    best_epoch = 1 + int(np.argmin(losses))
    best = torch.load(tmp_path / "ck/model_checkpoint_best.pt", weights_only=True)
    assert best["position"]["epoch"] == best_epoch
    improved = [ln for ln in strip_ts(proc.stdout) if ln.startswith("Best evaluation loss")]
    assert improved and f"(epoch {best_epoch})" in improved[-1]
    assert proc.stdout.rstrip().endswith("All done (return value = 0).")


def test_best_accuracy_needs_test_data(digits, tmp_path):
    _mnist_config(tmp_path, digits, checkpoints={"save": "./ck/", "best": "accuracy"})
    cfg = json.loads((tmp_path / "config.json").read_text())
    del cfg["neural_network"]["data"]["test_input_path"]
    write_json(tmp_path / "config.json", cfg)
    proc = _run(tmp_path)
    assert proc.returncode == 1
    assert "neural_network.checkpoints.best: watches the evaluation accuracy" in proc.stderr
    assert not (tmp_path / "out_train.txt").exists()


def test_clip_grad_norm_bounds_the_update(digits, tmp_path):
    """One SGD step with learning rate 1 on the whole set: ‖w₁ − w₀‖ = min(|g|, clip)."""
    clip = 0.05
    net = json.loads((REPO / "networks/mnist_keras_net.json").read_text())
    net["config"]["layers"] = [ly for ly in net["config"]["layers"]
                               if ly["class_name"] != "Dropout"]     # the same gradient twice
    weights = {}
    for name, lr in (("w0", 1e-30), ("w1", 1.0)):     # 1e-30: a no-op step in float32
        d = tmp_path / name
        d.mkdir()
        _mnist_config(d, digits, num_epochs=1, seed=3, layers=net, checkpoints={"save": "./ck/"},
                      data={"input_type": "images", "target_type": "labels",
                            "input_path": str(digits / "training"), "batch_size": 240,
                            "grayscale": True, "preload": True},
                      optimizer={"type": "SGD", "learning_rate": lr, "clip_grad_norm": clip})
        proc = _run(d)
        assert proc.returncode == 0, proc.stderr
        weights[name] = _weights(d / "ck/model_checkpoint_1.pt")
    w0, w1 = weights["w0"], weights["w1"]
    step = torch.sqrt(sum(((w1[k].double() - w0[k].double()) ** 2).sum() for k in w0
                          if w0[k].is_floating_point()))
    gnorm = float((tmp_path / "w1/out_train.txt").read_text().split()[5])
    assert gnorm > clip                                  # the gradient was clipped ...
    assert float(step) == pytest.approx(clip, rel=1e-4)  # ... to exactly clip_grad_norm


# --------------------------------------------------------------------------------------------
# divergence


def test_divergence_is_a_one_line_error(tmp_path):
    """SGD with learning rate 1e3 on the embedded demo digits blows up within a few batches."""
    cfg = json.loads((REPO / "configs/config_mnist_training.json").read_text())
    nn = cfg["neural_network"]
    nn.update(num_epochs=2, layers=str(REPO / "networks/mnist_keras_net.json"), outfile="out.txt",
              optimizer={"type": "SGD", "learning_rate": 1e3}, checkpoints={"save": "./ck/"})
    nn["data"].update(input_path=str(REPO / "demo/mnist/training"),
                      test_input_path=str(REPO / "demo/mnist/testing"))
    write_json(tmp_path / "config.json", cfg)
    proc = _run(tmp_path)
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rmldnn: error: ./config.json: training diverged "
                                               "at epoch 1, batch "), proc.stderr
    assert "no checkpoint was written yet" in err[0] and "internal error" not in err[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ck").exists() or not list((tmp_path / "ck").iterdir())


def test_bce_divergence_is_not_an_internal_error(tmp_path):
    """A sigmoid/BCE autoencoder whose weights hold a NaN (here loaded from a checkpoint, as after
    an overflow): the run ends with the divergence error, not torch's 'all elements of input
    should be between 0 and 1' reported as an internal error."""
    layers = [
        {"class_name": "Flatten", "config": {"name": "f", "batch_input_shape": [None, 28, 28, 1]}},
        {"class_name": "Dense", "config": {"name": "enc", "units": 32, "activation": "relu"}},
        {"class_name": "Dense", "config": {"name": "dec", "units": 784, "activation": "sigmoid"}},
        {"class_name": "Reshape", "config": {"name": "r", "target_shape": [28, 28, 1]}}]
    bias = torch.zeros(784)
    bias[5] = float("nan")
    torch.save({"model": {"dec.bias": bias}}, tmp_path / "nan.pt")
    write_json(tmp_path / "config.json", {"neural_network": {
        "num_epochs": 1, "layers": layers, "checkpoints": {"load": "./nan.pt"},
        "data": {"type": "images", "input_path": str(REPO / "demo/mnist/training"),
                 "target_path": str(REPO / "demo/mnist/training"), "grayscale": True,
                 "batch_size": 128, "preload": True},
        "optimizer": {"type": "SGD", "learning_rate": 0.1},
        "loss": {"function": "BCE"}}})
    proc = _run(tmp_path)
    assert proc.returncode == 1, proc.stdout[-1500:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "training diverged at epoch 1, batch 1 (Loss = nan" in err[0], err
    assert "internal error" not in proc.stderr


# --------------------------------------------------------------------------------------------
# no silent wrong results


def _binary_masks(root: Path, n: int, seed: int, size: int = 32) -> None:
    """Inputs with bright squares; masks hold the class indices 0/1 as 8-bit PNG values."""
    rng = np.random.default_rng(seed)
    (root / "inputs").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        img = 0.3 + rng.normal(0, 0.06, (size, size))
        mask = np.zeros((size, size), np.uint8)
        for _ in range(rng.integers(1, 3)):
            h, w = rng.integers(6, 14, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            mask[y:y + h, x:x + w] = 1
        img[mask == 1] += 0.45
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(root / "inputs" / f"s{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i:03d}.png")


def _seg_config(d: Path, data: Path, normalize: bool, epochs: int = 6) -> None:
    layers = [
        {"class_name": "Conv2D", "config": {"name": "c1", "batch_input_shape": [None, 32, 32, 1],
                                            "filters": 16, "kernel_size": [3, 3],
                                            "padding": "same", "activation": "relu"}},
        {"class_name": "Conv2D", "config": {"name": "c2", "filters": 16, "kernel_size": [3, 3],
                                            "padding": "same", "activation": "relu"}},
        {"class_name": "Conv2D", "config": {"name": "head", "filters": 2, "kernel_size": [1, 1],
                                            "padding": "same", "activation": "softmax"}}]
    dd = {"type": "images", "input_path": str(data / "train/inputs"),
          "target_path": str(data / "train/masks"), "test_input_path": str(data / "test/inputs"),
          "test_target_path": str(data / "test/masks"), "test_output_path": "./pred/",
          "grayscale": True, "target_is_mask": True, "batch_size": 8, "preload": True}
    if normalize:
        dd["target_transforms"] = [{"normalize": {"mean": 0, "std": 0.003921568}}]
    write_json(d / "config.json", {"neural_network": {
        "outfile": "out.txt", "num_epochs": epochs, "layers": layers, "data": dd,
        "optimizer": {"type": "Adam", "learning_rate": 0.01},
        "loss": {"function": "Dice", "source": "softmax"}}})


@pytest.fixture(scope="module")
def masks01(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("masks01")
    _binary_masks(root / "train", 64, seed=0)
    _binary_masks(root / "test", 12, seed=1)
    return root


def test_01_masks_without_normalize_are_refused(masks01, tmp_path):
    (tmp_path / "out_train.txt").write_text("previous run\n")
    _seg_config(tmp_path, masks01, normalize=False)
    proc = _run(tmp_path)
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert "neural_network.data.target_path" in err[0] and "train/masks" in err[0]
    assert "0, 0.00392157" in err[0] and '"normalize"' in err[0] and "0.00392157}" in err[0]
    assert "Train Epoch" not in proc.stdout
    assert (tmp_path / "out_train.txt").read_text() == "previous run\n"   # nothing opened
    assert not (tmp_path / "pred").exists()


def test_01_masks_with_normalize_reach_95_percent(masks01, tmp_path):
    _seg_config(tmp_path, masks01, normalize=True)
    proc = _run(tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (masks01 / "test/inputs").iterdir())
    with h5py.File(tmp_path / "pred/output_6.h5", "r") as f:
        pred = np.stack([f[n][()].argmax(0) for n in names])
    true = np.stack([np.asarray(Image.open(masks01 / "test/masks" / n)) for n in names])
    acc = float((pred == true).mean())
    assert acc >= 0.95, acc
    assert (pred == 1).any() and (pred == 0).any()      # not one class everywhere


def test_one_class_training_set_warns(tmp_path):
    make_image_tree(tmp_path / "train", ["only"], 8, seed=0)
    layers = [{"class_name": "Flatten", "config": {"name": "f", "batch_input_shape": [None, 28, 28, 1]}},
              {"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "log_softmax"}}]
    write_json(tmp_path / "config.json", {"neural_network": {
        "layers": layers, "data": {"input_type": "images", "target_type": "labels",
                                   "input_path": "./train/", "grayscale": True},
        "optimizer": {"type": "SGD"}, "loss": {"function": "NLL"}}})
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: all 8 training samples belong to one class ('only')" in proc.stdout


def test_one_output_for_two_classes_names_both(tmp_path):
    make_image_tree(tmp_path / "train", ["0", "1"], 4, seed=0)
    layers = [{"class_name": "Flatten", "config": {"name": "f", "batch_input_shape": [None, 28, 28, 1]}},
              {"class_name": "Dense", "config": {"name": "d", "units": 1, "activation": "log_softmax"}}]
    write_json(tmp_path / "config.json", {"neural_network": {
        "outfile": "out.txt", "layers": layers,
        "data": {"input_type": "images", "target_type": "labels", "input_path": "./train/",
                 "grayscale": True},
        "optimizer": {"type": "SGD"}, "loss": {"function": "NLL"}}})
    proc = _run(tmp_path)
    assert proc.returncode == 1
    assert "the network has 1 output (output shape [1]) but the data has 2 classes ('0', '1')" \
        in proc.stderr
    assert not (tmp_path / "out_train.txt").exists()


def test_misspelt_key_fails_before_anything_runs(digits, tmp_path):
    _mnist_config(tmp_path, digits)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["neural_network"]["data"]["input_paht"] = cfg["neural_network"]["data"].pop("input_path")
    write_json(tmp_path / "config.json", cfg)
    proc = _run(tmp_path)
    assert proc.returncode == 1
    assert "neural_network.data.input_paht: unknown key 'input_paht'; did you mean " \
           "'input_path'?" in proc.stderr
    assert proc.stdout == ""


_RANK_LOCAL_NAN = r'''
import types
import torch
from rmldnn_py import distributed
from rmldnn_py.engine.app import Column
from rmldnn_py.engine.preempt import Preemption
from rmldnn_py.engine.run import Context
from rmldnn_py.engine.train import DivergenceError, train_one_epoch

rank = distributed.init(use_cuda=False).rank
NB = 300                                  # batch 4 of 300 is not a printed batch


class Split:
    num_batches = NB

    def batches(self, epoch, start=0):
        for _ in range(start, NB):
            yield torch.zeros(2, 1), None, torch.arange(2)


class App:                                # per-rank losses only, like the GAN's (no global |g|)
    train_columns = (Column("loss_d", "Loss D"), Column("loss_g", "Loss G"))
    steps = 0

    def train_step(self, ctx, x, y):
        self.steps += 1
        bad = rank == 1 and self.steps == 4
        return {"loss_d": torch.tensor(float("nan") if bad else 1.0), "loss_g": torch.tensor(0.5)}


rows = []
ctx = types.SimpleNamespace(
    bundle=types.SimpleNamespace(train=Split()), app=App(), model=torch.nn.Linear(1, 1), world=2,
    device=torch.device("cpu"), target_check=None, to_device=lambda x, y: (x, y),
    comm_timer=None, current_lr=lambda: 0.1, scheduler=None, elapsed=lambda: 0.0,
    log=types.SimpleNamespace(line=lambda s: None, separator=lambda: None),
    observers=types.SimpleNamespace(on_train_batch=lambda **k: None, on_epoch_end=lambda **k: None),
    logfiles=types.SimpleNamespace(train_line=lambda *a: rows.append(a[1])),
    optimizer=types.SimpleNamespace(is_closure_based=False), preemption=Preemption(),
    cfg=types.SimpleNamespace(path="cfg.json"), last_checkpoint=None)
ctx.stop_requested = lambda *a: Context.stop_requested(ctx, *a)
ctx.divergence_message = lambda *a: Context.divergence_message(ctx, *a)
try:
    train_one_epoch(ctx, 1, 1)
    print(f"rank {rank}: no divergence after {len(rows)} batches", flush=True)
except DivergenceError as exc:
    print(f"rank {rank}: {exc} after {len(rows)} batches", flush=True)
import os
os._exit(0)                               # like the CLI: no teardown of the process group
'''


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_that_batch(tmp_path):
    """A per-rank loss that is NaN on rank 1 only (at a batch that is not printed): both ranks
    stop with the divergence error at that batch, instead of rank 1 entering a collective the
    other rank never joins."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ranks.py"
    script.write_text(_RANK_LOCAL_NAN)
    procs = []
    for rank in (0, 1):
        env = dict(rmldnn_env(1), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RMLDNN_DIST_TIMEOUT="60")
        procs.append(subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-2000:]
            outs.append(out.strip())
    finally:
        for p in procs:
            p.kill()
    for rank, out in enumerate(outs):
        assert out.startswith(f"rank {rank}: cfg.json: training diverged at epoch 1, batch 4 "), out
        assert out.endswith("after 3 batches"), out      # batches 1-3 written, nothing after
