"""See and ship the result (issue 13), end to end through the ``rmldnn`` command:

* TensorBoard events read back with tensorboard's ``EventAccumulator`` equal the ``_train.txt`` /
  ``_test.txt`` values of the same run;
* the classification report equals scikit-learn's ``classification_report`` /
  ``confusion_matrix`` computed from ``output_<epoch>.h5`` and the true labels (np=1 and np=2);
* ``output_<epoch>.h5`` carries the class names; ``predictions_<epoch>.csv`` names the argmax
  class with its probability; an inference run on an unlabelled folder takes the class names
  from the training checkpoint;
* ``rmldnn plot`` on the run writes the figures whose data equal the logs.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import (REPO, make_flat_images, make_image_tree, mpirun_cmd, needs_mpi, rmldnn_env,
                      run_rmldnn, write_json)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
CLASSES = [str(k) for k in range(4)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("four_classes")
    make_image_tree(root / "training", CLASSES, 20, seed=0)
    make_image_tree(root / "testing", CLASSES, 7, seed=1)
    make_flat_images(root / "flat", [3, 1, 0, 2], seed=5)
    return root


def _net(classes: int = len(CLASSES)) -> dict:
    """The MNIST tutorial network with one output per class of the data."""
    net = json.loads((REPO / "networks/mnist_keras_net.json").read_text())
    net["config"]["layers"][-1]["config"]["units"] = classes
    return net


def _config(d: Path, data: Path, epochs: int = 3) -> None:
    write_json(d / "config.json", {"neural_network": {
        "outfile": "out.txt", "num_epochs": epochs, "tensorboard": "./runs/",
        "layers": _net(),
        "checkpoints": {"save": "./ck/", "interval": epochs},
        "data": {"input_type": "images", "target_type": "labels",
                 "input_path": str(data / "training"), "test_input_path": str(data / "testing"),
                 "test_output_path": "./pred/", "test_output_format": "both",
                 "batch_size": 16, "test_batch_size": 8, "grayscale": True, "preload": True},
        "optimizer": {"type": "Adam", "learning_rate": 2e-4},
        "loss": {"function": "NLL"}}})


def _mpirun(np_: int, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(mpirun_cmd(np_, ["--config=./config.json"]), cwd=cwd, env=rmldnn_env(1),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("results")
    _config(d, data)
    proc = run_rmldnn(["--config=./config.json"], cwd=d)
    assert proc.returncode == 0, proc.stderr
    assert "report" not in proc.stdout          # stdout keeps rmldnn's lines exactly
    return d


def _printed(b: int, nb: int) -> bool:
    return (100 * b) // nb > (100 * (b - 1)) // nb


def test_tensorboard_equals_the_logs(run):
    from rmldnn_py.engine.tensorboard import read_scalars

    scalars = read_scalars(str(run / "runs"))
    rows = [ln.split() for ln in (run / "out_train.txt").read_text().splitlines()]
    nb = max(int(r[1]) for r in rows)
    want_loss = {(int(r[0]) - 1) * nb + int(r[1]): float(r[4]) for r in rows
                 if _printed(int(r[1]), nb)}
    want_g = {(int(r[0]) - 1) * nb + int(r[1]): float(r[5]) for r in rows
              if _printed(int(r[1]), nb)}
    assert dict(scalars["train/loss"]) == pytest.approx(want_loss, rel=1e-5)
    assert dict(scalars["train/grad_norm"]) == pytest.approx(want_g, rel=1e-5)
    assert all(v == pytest.approx(2e-4) for _, v in scalars["train/learning_rate"])
    test = [ln.split() for ln in (run / "out_test.txt").read_text().splitlines()]
    assert dict(scalars["eval/loss"]) == pytest.approx({int(t[1]): float(t[3]) for t in test},
                                                       rel=1e-5)
    assert dict(scalars["eval/accuracy"]) == pytest.approx(
        {int(t[1]): float(t[5]) for t in test}, abs=5e-4)       # _test.txt has 3 decimals


def _truth(data: Path) -> dict[str, int]:
    return {f"{c}/{p.name}": k for k, c in enumerate(CLASSES)
            for p in sorted((data / "testing" / c).iterdir())}


def _check_report(d: Path, data: Path, epoch: int) -> None:
    truth = _truth(data)
    with h5py.File(d / f"pred/output_{epoch}.h5", "r") as f:
        assert [str(n) for n in f.attrs["class_names"]] == CLASSES
        names = sorted(truth)
        pred = np.array([int(np.argmax(f[n][()])) for n in names])
    true = np.array([truth[n] for n in names])
    report = json.loads((d / "out_report.json").read_text())
    sk = sklearn_metrics.classification_report(true, pred, labels=list(range(4)),
                                               target_names=CLASSES, output_dict=True,
                                               zero_division=0)
    cm = sklearn_metrics.confusion_matrix(true, pred, labels=list(range(4)))
    assert report["classes"] == CLASSES
    assert np.array_equal(np.array(report["confusion_matrix"]), cm)
    for c in CLASSES:
        for key in ("precision", "recall", "f1-score", "support"):
            assert report["per_class"][c][key] == pytest.approx(sk[c][key], abs=1e-9), (c, key)
    for avg in ("macro avg", "weighted avg"):
        for key in ("precision", "recall", "f1-score"):
            assert report[avg][key] == pytest.approx(sk[avg][key], abs=1e-9), (avg, key)
    assert report["accuracy"] == pytest.approx(sk["accuracy"], abs=1e-12)
    txt = (d / "out_report.txt").read_text()
    assert "precision" in txt and "recall" in txt and "f1" in txt


def test_classification_report_matches_sklearn(run, data):
    _check_report(run, data, 3)
    acc = json.loads((run / "out_report.json").read_text())["accuracy"]
    assert 0.3 < acc < 1.0, acc          # a partly trained network: the matrix is not diagonal


def test_class_names_and_csv_predictions(run, data):
    rows = list(csv.DictReader(open(run / "pred/predictions_3.csv")))
    assert [r["sample"] for r in rows] == sorted(_truth(data))
    with h5py.File(run / "pred/output_3.h5", "r") as f:
        for r in rows:
            out = f[r["sample"]][()]
            assert r["predicted_class"] == CLASSES[int(np.argmax(out))]
            assert float(r["probability"]) == pytest.approx(float(np.exp(out.max())), rel=1e-4)


def test_inference_names_classes_from_the_checkpoint(run, data, tmp_path):
    write_json(tmp_path / "config.json", {"neural_network": {
        "layers": _net(),
        "checkpoints": {"load": str(run / "ck/model_checkpoint_3.pt")},
        "data": {"input_type": "images", "test_input_path": str(data / "flat"),
                 "test_output_path": "./pred/", "test_output_format": "csv",
                 "grayscale": True}}})
    proc = run_rmldnn(["--config=./config.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "pred/output_1.h5").exists()           # csv only
    rows = list(csv.DictReader(open(tmp_path / "pred/predictions_1.csv")))
    assert [r["sample"] for r in rows] == [f"digit_{i}.jpg" for i in range(4)]
    assert all(r["predicted_class"] in CLASSES for r in rows)


def test_plot_data_equal_the_logs(run, tmp_path):
    proc = run_rmldnn(["plot", str(run / "out.txt"), f"--output={tmp_path}/figs",
                       f"--data={tmp_path}/d.json"], cwd=run)
    assert proc.returncode == 0, proc.stderr
    for name in ("training_loss.png", "test_loss.png", "test_accuracy.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 5000
    series = json.loads((tmp_path / "d.json").read_text())["figures"]
    raw = [s for s in series["training_loss.png"] if s["kind"] == "raw"][0]
    rows = [ln.split() for ln in (run / "out_train.txt").read_text().splitlines()]
    assert raw["x"] == pytest.approx([float(r[2]) for r in rows])
    assert raw["y"] == pytest.approx([float(r[4]) for r in rows])
    acc = series["test_accuracy.png"][0]
    test = [ln.split() for ln in (run / "out_test.txt").read_text().splitlines()]
    assert acc["y"] == pytest.approx([float(t[5]) for t in test])


@pytest.mark.slow
@needs_mpi
def test_classification_report_two_ranks(data, tmp_path):
    _config(tmp_path, data, epochs=1)
    proc = _mpirun(2, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_report(tmp_path, data, 1)
