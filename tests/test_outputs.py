"""HDF5 predictions (SPEC §7.5.1) and log files (SPEC §7.3)."""

import os
import re

import h5py
import numpy as np
import pytest

from rmldnn_py.engine.logfiles import LogFiles, log_paths
from rmldnn_py.errors import RmldnnError
from rmldnn_py.io.predictions import PredictionWriter, output_path


def test_writer_datasets_groups_and_precision(tmp_path):
    path = output_path(str(tmp_path / "pred"), 1)
    assert path.endswith("output_1.h5")
    rng = np.random.default_rng(0)
    data = {"digit_0.jpg": rng.normal(size=10), "AnnualCrop/a b&c.jpg": rng.normal(size=(3, 4, 5))}
    with PredictionWriter(path, "half") as w:
        for k, v in data.items():
            w.add(k, v)
    with h5py.File(path) as f:
        assert list(f) == ["AnnualCrop", "digit_0.jpg"]
        assert f["AnnualCrop"]["a b&c.jpg"].shape == (3, 4, 5)
        assert f["digit_0.jpg"].dtype == np.float16
        np.testing.assert_allclose(f["digit_0.jpg"][()], data["digit_0.jpg"], rtol=1e-3, atol=1e-3)
    assert os.listdir(tmp_path / "pred") == ["output_1.h5"]


def test_writer_failure_keeps_old_file(tmp_path):
    path = str(tmp_path / "output_1.h5")
    with PredictionWriter(path) as w:
        w.add("a", np.zeros(2))
    with pytest.raises(RmldnnError, match="cannot write dataset 'a'"):
        with PredictionWriter(path) as w:
            w.add("a", np.zeros(2))
            w.add("a", np.zeros(2))  # duplicate name → h5py error on the writer thread
    with h5py.File(path) as f:
        assert list(f) == ["a"]
    assert os.listdir(tmp_path) == ["output_1.h5"]


def test_log_paths():
    assert log_paths("out_mnist.txt") == ("out_mnist_train.txt", "out_mnist_test.txt")
    assert log_paths("./logs/out") == ("./logs/out_train.txt", "./logs/out_test.txt")


def test_log_file_formats(tmp_path):
    logs = LogFiles(str(tmp_path / "out.txt"))
    logs.train_line(1, 13, 13, 0.2521, 0.67041234, 0.58412345)
    logs.test_line(3, 0.49521234, 1.0)
    logs.test_line(4, 0.5, None)
    logs.close()
    assert (tmp_path / "out_train.txt").read_text() == "1 13 1.000000 0.252 0.670412 0.584123\n"
    lines = (tmp_path / "out_test.txt").read_text().splitlines()
    assert lines == ["Epoch: 3 Loss: 0.495212 Accuracy: 1.000", "Epoch: 4 Loss: 0.5"]
    # the T-HPO parsers: first number is the epoch, the value after 'Accuracy: ' is a float
    assert int(re.findall(r"[0-9]*\.?[0-9]+", lines[0])[0]) == 3
    assert float(lines[0].split("Accuracy: ")[1]) == 1.0
