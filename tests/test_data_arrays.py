"""numpy, hdf5 and mnist loaders (SPEC §5.4–§5.6, sample names §7.5.1)."""

from __future__ import annotations

import gzip
import io
import os

import h5py
import numpy as np
import pytest
import torch

from rmldnn_py.config.types import DataConfig, TransformSpec
from rmldnn_py.data import LOADERS, build_datasets
from rmldnn_py.data.arrays import add_channel_axis
from rmldnn_py.errors import DataError
from rmldnn_py.log import Logger


def build(cfg, **kw):
    out = io.StringIO()
    bundle = build_datasets(cfg, config_path="config.json", logger=Logger(stream=out), **kw)
    return bundle, [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]


def test_loader_registry():
    assert LOADERS.names() == ["images", "numpy", "hdf5", "mnist"]
    with pytest.raises(DataError) as e:
        build(DataConfig(type="tiff", test_input_path="x"))
    assert str(e.value).startswith("config.json: neural_network.data.type: unknown data type "
                                   "'tiff'")


def test_channel_axis_rule():
    assert add_channel_axis(torch.zeros(4, 5), None).shape == (1, 4, 5)
    assert add_channel_axis(torch.zeros(3, 4, 5), None).shape == (3, 4, 5)
    assert add_channel_axis(torch.zeros(8, 8, 8), None).shape == (1, 8, 8, 8)
    assert add_channel_axis(torch.zeros(3, 4, 5), 4).shape == (1, 3, 4, 5)
    assert add_channel_axis(torch.zeros(1, 8, 8, 8), 4).shape == (1, 8, 8, 8)


def test_numpy_directory_npz_and_pairs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("x/sub")
    np.save("x/b.npy", np.full((4, 4), 2.0))
    np.save("x/sub/a.npy", np.full((4, 4), 1.0))
    np.savez("x/c.npz", first=np.full((4, 4), 3.0), second=np.full((4, 4), 4.0))
    cfg = DataConfig(type="numpy", input_path="./x", target_path="./x", preload=True,
                     batch_size=8, transforms=(TransformSpec("normalize", {"std": 0.5}, "t[0]"),))
    bundle, lines = build(cfg, input_rank=3)
    s = bundle.train
    assert [s.sample_name(i) for i in range(4)] == ["b.npy", "c.npz/first", "c.npz/second",
                                                    "sub/a.npy"]
    assert lines == ["Discovering training input NumPy samples...",
                     "Pre-loading training input NumPy arrays...",
                     "Discovering training target NumPy samples...",
                     "Pre-loading training target NumPy arrays..."]
    assert s.kind == "numpy" and s.unit == "samples"
    assert s.dataset_rows()[1] == ("Num samples (total)", "4")
    b = next(s.batches(0))
    assert b.inputs.shape == (4, 1, 4, 4) and b.inputs.dtype == torch.float32
    expect = torch.tensor([[2.0, 3.0, 4.0, 1.0][i] * 2 for i in b.indices.tolist()])
    assert torch.equal(b.inputs[:, 0, 0, 0], expect) and torch.equal(b.targets, b.inputs)


def test_numpy_single_file_and_3d(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("data")
    np.save("data/nu.npy", np.ones((6, 6, 6), np.float64))
    cfg = DataConfig(type="numpy", test_input_path="./data/nu.npy",
                     test_target_path="./data/nu.npy")
    bundle, _ = build(cfg)
    b = next(bundle.test.batches(0))
    assert bundle.test.sample_name(0) == "nu.npy"
    assert b.inputs.shape == (1, 1, 6, 6, 6) and b.targets.shape == (1, 1, 6, 6, 6)
    with pytest.raises(DataError) as e:
        build(DataConfig(type="numpy", test_input_path="./data/mu.npy"))
    assert str(e.value) == ("config.json: neural_network.data.test_input_path: file "
                            "'./data/mu.npy' does not exist")


def test_hdf5_every_dataset_sorted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("h")
    with h5py.File("h/b.h5", "w") as f:
        f["z"] = np.full((2, 3), 1.0)
        f.create_group("g")["a"] = np.full((2, 3), 2.0)
    with h5py.File("h/a.hdf5", "w") as f:
        f["only"] = np.full((2, 3), 3.0)
    cfg = DataConfig(type="hdf5", input_path="./h", preload=True, batch_size=3)
    bundle, lines = build(cfg)
    s = bundle.train
    assert [s.sample_name(i) for i in range(3)] == ["a.hdf5/only", "b.h5/g/a", "b.h5/z"]
    assert lines == ["Discovering training input HDF5 samples...",
                     "Pre-loading input HDF5 arrays for training..."]
    b = next(s.batches(0))
    assert b.inputs.shape == (3, 1, 2, 3)
    assert torch.equal(b.inputs[:, 0, 0, 0], torch.tensor([[3.0, 2.0, 1.0][i]
                                                           for i in b.indices.tolist()]))
    # streaming with a worker process reads the same values
    cfg = DataConfig(type="hdf5", test_input_path="./h", num_workers=1)
    bundle, _ = build(cfg)
    assert torch.equal(next(bundle.test.batches(0)).inputs[:, 0, 0, 0],
                       torch.tensor([3.0, 2.0, 1.0]))


def _idx(path, arr, magic_dims, gz):
    header = bytes([0, 0, 8, magic_dims]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path + ".gz", "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, monkeypatch, gz):
    monkeypatch.chdir(tmp_path)
    os.makedirs("m")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        imgs = rng.integers(0, 256, (n, 28, 28))
        _idx(f"m/{prefix}-images-idx3-ubyte", imgs, 3, gz)
        _idx(f"m/{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 1, gz)
    cfg = DataConfig(type="mnist", input_path="./m", test_input_path="./m", test_batch_size=4,
                     preload=True)
    bundle, lines = build(cfg)
    assert bundle.class_names == [str(k) for k in range(10)]
    assert bundle.train.num_total == 12 and bundle.test.num_total == 5
    assert "Number of class labels: 10" in lines
    b = next(bundle.test.batches(0))
    assert b.inputs.shape == (4, 1, 28, 28) and b.inputs.max() <= 1.0
    assert b.targets.tolist() == [0, 1, 2, 3]
    assert bundle.test.sample_name(3) == "3" and bundle.train.sample_name(3) == "03"
    assert bundle.train.dataset_rows()[0] == ("Type", "mnist")
