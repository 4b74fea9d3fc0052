"""End-to-end: the seismic 3D-slicing tutorial (SPEC §11.9) in miniature — HDF5 volumes cut into
3D slices for training, then one large slice through the same fully convolutional network at
inference, assembled into ``hdf5_outfile`` (channels-last) — through the ``rmldnn`` command."""

import json

import h5py
import numpy as np
import pytest

from conftest import run_rmldnn, strip_ts

pytestmark = pytest.mark.slow

NET = {"class_name": "Model", "keras_version": "2.3.1", "backend": "tensorflow", "config": {
    "name": "Unet-3D-mini",
    "layers": [
        {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
         "config": {"name": "input_1", "batch_input_shape": [None, 8, 8, 16, 1]}},
        {"class_name": "Conv3D", "name": "c1", "inbound_nodes": [[["input_1", 0, 0, {}]]],
         "config": {"name": "c1", "filters": 8, "kernel_size": [3, 3, 3], "padding": "same",
                    "activation": "relu"}},
        {"class_name": "Conv3D", "name": "out", "inbound_nodes": [[["c1", 0, 0, {}]]],
         "config": {"name": "out", "filters": 2, "kernel_size": [1, 1, 1], "padding": "same",
                    "activation": "log_softmax"}}],
    "input_layers": [["input_1", 0, 0]], "output_layers": [["out", 0, 0]]}}


def _volume(rng, shape):
    """Input: noisy field; target: class 1 where the clean field is positive (learnable)."""
    clean = np.sin(np.linspace(0, 6, shape[0]))[:, None, None] * np.ones(shape)
    x = (clean + 0.1 * rng.normal(size=shape)).astype(np.float32)
    return x, (clean > 0).astype(np.int64)


def test_seismic_slicing_train_and_assemble(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "parihaka"
    d.mkdir()
    for part, shape in (("train", (24, 16, 40)), ("test", (9, 16, 40))):
        x, t = _volume(rng, shape)
        with h5py.File(d / f"input3D_{part}.h5", "w") as f:
            f["input"] = x
        with h5py.File(d / f"target3D_{part}.h5", "w") as f:
            f["target"] = t
    (tmp_path / "unet3d_seismic.json").write_text(json.dumps(NET))
    train = {"neural_network": {
        "outfile": "out_seismic3d.txt", "checkpoints": {"save": "./model_seismic3d/", "interval": 2},
        "layers": "./unet3d_seismic.json", "num_epochs": 4,
        "data": {"type": "hdf5", "input_path": "./parihaka/input3D_train.h5",
                 "target_path": "./parihaka/target3D_train.h5",
                 "test_input_path": "./parihaka/input3D_test.h5",
                 "test_target_path": "./parihaka/target3D_test.h5",
                 "batch_size": 4, "test_batch_size": 4, "preload": True,
                 "slicers": [{"name": "samples", "sizes": [8, 8, 16], "strides": [8, 8, 6],
                              "discard_remainders": True}]},
        "optimizer": {"type": "Adam", "learning_rate": 1e-2}, "loss": {"function": "NLL"}}}
    (tmp_path / "config_dnn_seismic3d.json").write_text(json.dumps(train))
    proc = run_rmldnn(["--config=", "./config_dnn_seismic3d.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = strip_ts(proc.stdout)
    # 3·2·5 training slices; test (9,16,40): 1·2·5
    assert "      Num samples : 30" in lines and "      Num samples : 10" in lines
    assert "   Slicer: samples" in lines
    assert sorted(p.name for p in (tmp_path / "model_seismic3d").iterdir()) == [
        "model_checkpoint_2.pt", "model_checkpoint_4.pt"]
    acc = float((tmp_path / "out_seismic3d_test.txt").read_text().splitlines()[-1]
                .split("Accuracy: ")[1])
    assert acc > 0.8

    infer = {"neural_network": {
        "checkpoints": {"load": "./model_seismic3d/model_checkpoint_4.pt"},
        "layers": "./unet3d_seismic.json",
        "data": {"type": "hdf5", "test_input_path": "./parihaka/input3D_test.h5",
                 "test_target_path": "./parihaka/target3D_test.h5",
                 "hdf5_outfile": "./prediction.h5", "test_batch_size": 1,
                 "slicers": [{"name": "pred", "sizes": [8, 16, 32], "discard_remainders": True}]},
        "loss": {"function": "Dice", "source": "log_softmax"}}}
    (tmp_path / "config_dnn_seismic3d_inference.json").write_text(json.dumps(infer))
    proc = run_rmldnn(["--config=", "./config_dnn_seismic3d_inference.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Writing inference output to file: ./prediction.h5" in proc.stdout
    with h5py.File(tmp_path / "prediction.h5") as f:
        pred = f["pred"][()]
    assert pred.shape == (8, 16, 32, 2) and pred.dtype == np.float32
    with h5py.File(d / "target3D_test.h5") as f:
        target = f["target"][:8, :16, :32]
    assert (pred.argmax(-1) == target).mean() > 0.8
