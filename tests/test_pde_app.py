"""``--app=pde`` through the command line (SPEC §8.2, §5.8, §11.10, issue 12).

Always run (seconds): a 2-epoch Poisson-2D run (exact Dirichlet planes in the written field, the
energy in ``_test.txt`` = the energy of that field computed here with NumPy), a short Burgers run
on the ``pde`` generator (Dataset block, loss falling, ``_test.txt`` = NumPy loss of the written
fields), multigrid transfer 32² → 64² with ``checkpoints.load``, the generator's formulas and
partitioning, and every bad-input case (one line, exit 1).

Slow: the tutorial's configs with the 3D U-Net at 64³; np = 2 under mpirun = np = 1.
Acceptance (``-m acceptance``, minutes): the physics checks against tests/pde_reference.py, run by
the scripts benchmarks/pde_poisson2d.py and benchmarks/pde_burgers.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import pde_reference as R
from conftest import REPO, mpirun_cmd, needs_mpi, rmldnn_env, run_rmldnn, strip_ts
from rmldnn_py.cli import main
from rmldnn_py.config.types import DataConfig
from rmldnn_py.pde import diffusivity as dv
from rmldnn_py.pde.generator import build_generator_bundle, frequencies, raised_cosines

UNET2D = REPO / "networks" / "unet2d_poisson.json"


# ------------------------------------------------------------------------------------------------
# helpers


def maps(directory, n, size, dims=2, seed=0, normalize=False):
    dv.generate(n, str(directory), size=size, dims=dims, seed=seed, progress=False,
                normalize=normalize)


def poisson_cfg(path, *, layers=str(UNET2D), loss="Poisson2D_PDE", epochs=2, train="./maps/",
                test="./test_maps/", batch=4, out="./pred/", save=None, load=None, **extra):
    data = {"type": "numpy", "batch_size": batch, "test_batch_size": 4, "preload": True}
    if train:
        data.update(input_path=train, target_path=train)
    if test:
        data.update(test_input_path=test, test_target_path=test)
    if out:
        data["test_output_path"] = out
    data.update(extra.pop("data", {}))
    nn = {"outfile": "out.txt", "num_epochs": epochs, "layers": layers, "data": data,
          "loss": {"function": loss}}
    if train:
        nn["optimizer"] = {"type": "Adam", "learning_rate": 1e-3}
    ck = {}
    if save:
        ck.update(save=save, interval=epochs)
    if load:
        ck["load"] = load
    if ck:
        nn["checkpoints"] = ck
    nn.update(extra)
    path.write_text(json.dumps({"neural_network": nn}))
    return path.name


def sequential(layers, input_shape):
    """A tf.keras 2 Sequential model JSON (channels-last ``input_shape``)."""
    first = {"class_name": "InputLayer", "config": {"name": "input_1",
                                                    "batch_input_shape": [None] + input_shape}}
    return {"class_name": "Sequential", "config": {"name": "sequential",
                                                   "layers": [first] + layers}}


def conv2d(name, filters, activation="relu", padding="same"):
    return {"class_name": "Conv2D", "config": {"name": name, "filters": filters,
                                               "kernel_size": [3, 3], "padding": padding,
                                               "activation": activation, "use_bias": True}}


def fully_conv(tmp_path, name, extra=(), out_filters=1, out_padding="same", dims=2):
    layers = [conv2d("conv_a", 8), conv2d("conv_b", 8), *extra,
              conv2d("conv_out", out_filters, "sigmoid", out_padding)]
    if dims == 3:
        for layer in layers:
            layer["class_name"] = "Conv3D"
            layer["config"]["kernel_size"] = [3, 3, 3]
    (tmp_path / name).write_text(json.dumps(sequential(layers, [None] * dims + [1])))
    return name


def cli(tmp_path, monkeypatch, capsys, *args):
    """``rmldnn`` in this process (fast: torch is loaded already); returns (code, out, err)."""
    monkeypatch.chdir(tmp_path)
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line_error(code, err, *fragments):
    lines = [e for e in err.strip().splitlines() if e]
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("rmldnn: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def log_rows(path):
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------
# Poisson 2D through the CLI


def test_poisson2d_cli_writes_dirichlet_field_and_its_energy(tmp_path, monkeypatch, capsys):
    maps(tmp_path / "maps", 8, 32, seed=0)
    maps(tmp_path / "test_maps", 3, 32, seed=1)
    cfg = poisson_cfg(tmp_path / "cfg.json")
    code, out, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=", f"./{cfg}")
    assert code == 0, err
    lines = strip_ts(out)
    assert "RocketML : pde" in lines
    assert "   Function: Poisson2D PDE" in lines
    assert "   Num samples (total)      : 8" in lines
    evals = [line for line in lines if line.startswith("Eval  Epoch")]
    assert evals and all("(Loss: " in e and "Accuracy" not in e for e in evals)
    assert lines[-1] == "All done (return value = 0)."
    logged = log_rows(tmp_path / "out_test.txt")
    assert [row[:2] for row in logged] == [["Epoch:", "1"], ["Epoch:", "2"]]
    assert all(len(row) == 4 for row in logged)          # "Epoch: e Loss: x", no accuracy
    with h5py.File(tmp_path / "pred" / "output_2.h5") as f:
        names = sorted(f)
        fields = {n: f[n][()] for n in names}
    assert names == ["diffusivity_0.npy", "diffusivity_1.npy", "diffusivity_2.npy"]
    energies = []
    for n in names:
        u = fields[n]
        assert u.shape == (1, 32, 32) and u.dtype == np.float32
        assert np.all(u[0, 0] == 1.0) and np.all(u[0, -1] == 0.0)     # exact Dirichlet planes
        assert 0 < u[0, 1:-1].min() and u[0, 1:-1].max() < 1            # sigmoid interior
        nu = np.load(tmp_path / "test_maps" / n)[0]
        energies.append(R.centre_energy(u[0], nu))
    assert float(logged[1][3]) == pytest.approx(np.mean(energies), rel=2e-5)
    # the training log: one line per batch, 2 batches per epoch
    train = log_rows(tmp_path / "out_train.txt")
    assert [(int(r[0]), int(r[1])) for r in train] == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_multigrid_transfer_32_to_64(tmp_path, monkeypatch, capsys):
    """A fully convolutional network trained at 32² keeps its weights at 64² (SPEC §8.2, TL):
    the same network loads everything; a network with a layer added for the finer grid reports
    that layer as skipped and keeps training."""
    maps(tmp_path / "maps", 4, 32, seed=0)
    maps(tmp_path / "maps64", 4, 64, seed=2)
    coarse = fully_conv(tmp_path, "coarse.json")
    fine = fully_conv(tmp_path, "fine.json", extra=[conv2d("conv_fine", 8)])
    poisson_cfg(tmp_path / "c32.json", layers=coarse, test=None, out=None, save="./m32/")
    code, out, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./c32.json")
    assert code == 0, err
    ckpt = "./m32/model_checkpoint_2.pt"
    # the same network at 64²: every tensor loads, inference output = the checkpoint's network
    poisson_cfg(tmp_path / "i64.json", layers=coarse, train=None, test="./maps64/",
                out="./pred64/", load=ckpt)
    code, out, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./i64.json")
    assert code == 0, err
    assert f"Loading model checkpoint from file: {ckpt}" in out and "Skipping" not in out
    from rmldnn_py.network import build_network
    from rmldnn_py.pde.losses import impose_dirichlet

    net = build_network(str(tmp_path / coarse), config_path="x", input_shape=(1, 64, 64))
    net.load_state_dict(torch.load(tmp_path / ckpt, weights_only=True)["model"])
    net.eval()
    nu = np.load(tmp_path / "maps64" / "diffusivity_1.npy")
    with torch.no_grad():
        want = impose_dirichlet(net(torch.from_numpy(nu)[None]))[0].numpy()
    with h5py.File(tmp_path / "pred64" / "output_1.h5") as f:
        np.testing.assert_allclose(f["diffusivity_1.npy"][()], want, rtol=1e-5, atol=1e-6)
    # a network with an extra layer for the finer grid: that layer is reported and trained
    poisson_cfg(tmp_path / "c64.json", layers=fine, train="./maps64/", test=None, out=None,
                load=ckpt, epochs=1)
    code, out, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./c64.json")
    assert code == 0, err
    lines = [line.split("] ", 1)[1] for line in out.splitlines()]
    skipped = [line for line in lines if line.lstrip().startswith("Skipping")]
    assert skipped == ["   Skipping layer conv_fine: not found in model",
                       "   Skipping parameter conv_fine.weight: not found in model",
                       "   Skipping parameter conv_fine.bias: not found in model"]
    assert any(line.startswith("Train Epoch [  1/  1]") for line in lines)
    assert lines[-1] == "All done (return value = 0)."


# ------------------------------------------------------------------------------------------------
# Burgers through the CLI and the generator


def burgers_net(path, d, T, hidden=32, d_out=None):
    d_out = d_out or d
    layers = [{"class_name": "Flatten", "config": {"name": "flatten"}},
              {"class_name": "Dense", "config": {"name": "dense_1", "units": hidden,
                                                 "activation": "tanh"}},
              {"class_name": "Dense", "config": {"name": "dense_out", "units": T * d_out}},
              {"class_name": "Reshape", "config": {"name": "field",
                                                   "target_shape": [T, d_out, 1]}}]
    path.write_text(json.dumps(sequential(layers, [d, 1])))
    return path.name


def burgers_cfg(path, *, layers, epochs=40, d=16, data=None, loss=None):
    dd = {"type": "pde", "domain_size": d, "num_examples": 8, "num_test_examples": 2,
          "batch_size": 4, "test_batch_size": 2, "bc_frequency": [1, 2],
          "bc_type": "fixed_uniform", "test_output_path": "./pred/"}
    dd.update(data or {})
    nn = {"outfile": "out.txt", "num_epochs": epochs, "layers": layers, "data": dd,
          "optimizer": {"type": "Adam", "learning_rate": 1e-2},
          "loss": loss or {"function": "Burgers_pde", "diffusion_coeff": 0.05,
                           "boundary_factor": 64}}
    path.write_text(json.dumps({"neural_network": nn}))
    return path.name


def test_burgers_cli(tmp_path, monkeypatch, capsys):
    d, T = 16, 8
    net = burgers_net(tmp_path / "net.json", d, T)
    cfg = burgers_cfg(tmp_path / "cfg.json", layers=net)
    code, out, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=", f"./{cfg}")
    assert code == 0, err
    lines = strip_ts(out)
    block = lines[lines.index("Training dataset:"):lines.index("Test dataset:")]
    assert block == ["Training dataset:",
                     "   Type                     : pde",
                     "   Num samples (total)      : 8",
                     "   Num samples (per process): 8",
                     "   Batch size  (requested)  : 4",
                     "   Batch size  (per process): 4",
                     "   Num batches (per process): 2",
                     "   Domain size              : 16",
                     "   BC type                  : fixed_uniform",
                     "   BC frequency             : [1, 2]"]
    assert "Generating training conditions..." in lines
    assert ["   Function       : Burgers PDE", "   Diffusion coeff: 0.05",
            "   Boundary factor: 64"] == lines[lines.index("-------------------- Loss "
                                                           "-------------------") + 1:][:3]
    train = log_rows(tmp_path / "out_train.txt")
    first, last = float(train[0][4]), float(train[-1][4])
    assert last * 10 <= first, (first, last)
    # the test conditions: fixed_uniform with M = 2 → c = 1, 2; b(x) = ½(1 − cos(2πcx/d))
    logged = float(log_rows(tmp_path / "out_test.txt")[-1][3])
    last = len(log_rows(tmp_path / "out_test.txt"))
    with h5py.File(tmp_path / "pred" / f"output_{last}.h5") as f:
        assert sorted(f) == ["condition_0", "condition_1"]
        losses = []
        for j, c in enumerate((1.0, 2.0)):
            u = f[f"condition_{j}"][()].astype(np.float64)
            assert u.shape == (1, T, d)
            b = R.raised_cosine(c, d)
            res = R.burgers_residual_numpy(u[0], 0.05)
            losses.append(np.mean(res ** 2) + 64 * (np.mean((u[0, 0] - b) ** 2)
                                                    + np.mean(u[0, :, 0] ** 2)))
    assert logged == pytest.approx(np.mean(losses), rel=2e-5)


def test_generator_formulas_and_partition():
    c = frequencies(5, (1.0, 3.0), "fixed_uniform", 1, 0, "training")
    np.testing.assert_allclose(c[:, 0], [1.0, 1.5, 2.0, 2.5, 3.0])
    assert frequencies(1, (2.0, 3.0), "fixed_uniform", 1, 0, "test")[0, 0] == 2.0
    c2 = frequencies(4, (1.0, 4.0), "fixed_uniform", 2, 0, "training")
    np.testing.assert_allclose(c2, [[1, 3], [2, 4], [3, 1], [4, 2]])
    r = frequencies(1000, (1.0, 4.0), "random_uniform", 3, 7, "training")
    assert r.shape == (1000, 3) and r.min() >= 1.0 and r.max() <= 4.0
    assert abs(r.mean() - 2.5) < 0.1
    np.testing.assert_array_equal(r, frequencies(1000, (1.0, 4.0), "random_uniform", 3, 7,
                                                 "training"))
    assert not np.array_equal(r, frequencies(1000, (1.0, 4.0), "random_uniform", 3, 7, "test"))
    b = raised_cosines(np.array([[1.0, 3.0]]), 10)[0]
    x = np.arange(10)
    np.testing.assert_allclose(b, 0.25 * (1 - np.cos(2 * np.pi * x / 10))
                               + 0.25 * (1 - np.cos(6 * np.pi * x / 10)))
    cfg = DataConfig(type="pde", input_type="pde", domain_size=12, num_examples=10,
                     num_test_examples=5, batch_size=4, test_batch_size=4,
                     bc_frequency=(1.0, 2.0))
    one = build_generator_bundle(cfg, config_path="c.json", logger=None, seed=3)
    two = [build_generator_bundle(cfg, config_path="c.json", logger=None, seed=3, rank=r,
                                  world_size=2) for r in range(2)]
    assert one.train.sample_shape == (1, 12) and one.train.num_batches == 3
    for epoch in (1, 2):
        for k, (x1, y1, i1) in enumerate(one.train.batches(epoch)):
            parts = [list(t.train.batches(epoch))[k] for t in two]
            assert torch.equal(torch.cat([p.indices for p in parts]), i1)
            assert torch.equal(torch.cat([p.inputs for p in parts]), x1) and y1 is x1
    test_idx = [torch.cat([b.indices for b in t.test.batches(1)]).tolist() for t in two]
    assert test_idx == [[0, 1, 2], [3, 4]]
    assert one.test.sample_name(3) == "condition_3"


@pytest.mark.parametrize("name", ["config_poisson2d_pde.json",
                                  "config_poisson2d_pde_inference.json",
                                  "config_burgers_pde.json"])
def test_shipped_configs_are_valid_for_app_pde(name):
    from rmldnn_py.config import load_config
    from rmldnn_py.engine.app import get_application

    cfg, warnings = load_config(str(REPO / "configs" / name))
    assert warnings == []
    get_application("pde").check_config(cfg)
    assert os.path.isfile(REPO / cfg.layers)


# ------------------------------------------------------------------------------------------------
# bad input: one line, exit 1


def test_pde_loss_needs_app_pde_and_app_pde_needs_pde_loss(tmp_path, monkeypatch, capsys):
    maps(tmp_path / "maps", 2, 16)
    poisson_cfg(tmp_path / "p.json", test=None, out=None)
    code, _, err = cli(tmp_path, monkeypatch, capsys, "--config=./p.json")
    one_line_error(code, err, "p.json: neural_network.loss.function",
                   "loss function 'Poisson2D_PDE' requires --app=pde")
    poisson_cfg(tmp_path / "n.json", loss="NLL", test=None, out=None)
    code, _, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./n.json")
    one_line_error(code, err, "n.json: neural_network.loss.function",
                   "'NLL' cannot be used with --app=pde",
                   "Burgers_PDE, Poisson2D_PDE, Poisson3D_PDE")
    doc = json.loads((tmp_path / "n.json").read_text())
    del doc["neural_network"]["loss"], doc["neural_network"]["optimizer"]
    doc["neural_network"]["data"] = {"type": "numpy", "test_input_path": "./maps/"}
    (tmp_path / "none.json").write_text(json.dumps(doc))
    code, _, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./none.json")
    one_line_error(code, err, "none.json: neural_network.loss", "--app=pde needs a loss")


def test_poisson_needs_targets(tmp_path, monkeypatch, capsys):
    maps(tmp_path / "maps", 2, 16)
    poisson_cfg(tmp_path / "p.json", train=None, test=None, out=None,
                data={"test_input_path": "./maps/"})
    code, out, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./p.json")
    one_line_error(code, err, "p.json: neural_network.data.test_target_path",
                   "reads the diffusivity ν from the targets")
    assert out == ""                                      # before anything runs


def test_poisson2d_loss_on_3d_data(tmp_path, monkeypatch, capsys):
    maps(tmp_path / "maps", 2, 8, dims=3)
    net = fully_conv(tmp_path, "net3d.json", dims=3)
    poisson_cfg(tmp_path / "p.json", layers=net, test=None, out=None)
    code, _, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./p.json")
    one_line_error(code, err, "p.json: neural_network.data.target_path",
                   "Poisson2D_PDE solves a 2D problem but the diffusivity maps are 3D",
                   "use Poisson3D_PDE")
    assert not (tmp_path / "out_train.txt").exists()      # failed before any output


@pytest.mark.parametrize("kind", ["channels", "spatial"])
def test_network_output_must_match_nu(tmp_path, monkeypatch, capsys, kind):
    maps(tmp_path / "maps", 2, 16)
    if kind == "channels":
        net = fully_conv(tmp_path, "net.json", out_filters=2)
        frag = "the network output has shape [2, 16, 16]; Poisson2D_PDE needs one channel"
    else:
        net = fully_conv(tmp_path, "net.json", out_padding="valid")
        frag = "the network output has shape [1, 14, 14] but the diffusivity ν has [1, 16, 16]"
    poisson_cfg(tmp_path / "p.json", layers=net, test=None, out=None)
    code, _, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./p.json")
    one_line_error(code, err, "p.json: net.json: ", frag)


@pytest.mark.parametrize("bad_index,value", [(1, -0.5), (6, np.nan), (2, 0.0), (7, np.inf)])
def test_nu_must_be_positive_and_finite(tmp_path, monkeypatch, capsys, bad_index, value):
    maps(tmp_path / "maps", 8, 16)
    path = tmp_path / "maps" / f"diffusivity_{bad_index}.npy"
    arr = np.load(path)
    arr[0, 5, 7] = value
    np.save(path, arr)
    poisson_cfg(tmp_path / "p.json", layers=fully_conv(tmp_path, "net.json"), test=None,
                out=None, epochs=1)
    code, out, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./p.json")
    msg = one_line_error(code, err, "p.json: neural_network.data.target_path",
                         f"maps/diffusivity_{bad_index}.npy'",
                         "the diffusivity ν must be finite and > 0 everywhere")
    assert ("non-finite" in msg) == (not np.isfinite(value))
    if bad_index < 4:           # the first samples are checked before the first batch
        assert "Train Epoch" not in out


def test_pde_generator_errors(tmp_path, monkeypatch, capsys):
    net = burgers_net(tmp_path / "net.json", 16, 8)
    doc_path = tmp_path / "b.json"
    burgers_cfg(doc_path, layers=net)
    doc = json.loads(doc_path.read_text())
    del doc["neural_network"]["data"]["domain_size"]
    doc_path.write_text(json.dumps(doc))
    code, _, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./b.json")
    one_line_error(code, err, "b.json: neural_network.data", "domain_size")
    # a network whose output x axis is not domain_size
    burgers_cfg(doc_path, layers=burgers_net(tmp_path / "net20.json", 20, 8, d_out=16), d=20)
    code, _, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./b.json")
    one_line_error(code, err, "b.json: net20.json: the network output has shape [1, 8, 16] "
                   "but neural_network.data.domain_size is 20")
    # Burgers on numpy data, Poisson on generated data
    maps(tmp_path / "maps", 2, 16)
    poisson_cfg(doc_path, test=None, out=None)
    doc = json.loads(doc_path.read_text())
    doc["neural_network"]["loss"] = {"function": "Burgers_PDE"}
    doc_path.write_text(json.dumps(doc))
    code, _, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./b.json")
    one_line_error(code, err, "b.json: neural_network.data.type",
                   "Burgers_PDE trains on generated conditions")
    burgers_cfg(doc_path, layers=net, loss={"function": "Poisson2D_PDE"})
    code, _, err = cli(tmp_path, monkeypatch, capsys, "--app=pde", "--config=./b.json")
    one_line_error(code, err, "b.json: neural_network.data.type", "reads diffusivity maps")


# ------------------------------------------------------------------------------------------------
# slow: the tutorial's configs (SPEC §11.10) with the 3D U-Net at 64³; np=2 under mpirun


# SPEC §11.10, verbatim (lines as long as the specification's)
TUTORIAL_TRAIN = """\
{"neural_network": {"outfile": "out_dnn_poisson3d.txt", "num_epochs": 20, "layers": "./unet3d_poisson.json",
  "checkpoints": {"save": "./model_poisson3d/", "interval": 5},
  "data": {"type": "numpy", "input_path": "./diffusivity_maps/", "target_path": "./diffusivity_maps/",
           "batch_size": 128, "preload": true},
  "optimizer": {"type": "Adam", "learning_rate": 1e-4}, "loss": {"function": "Poisson3D_PDE"}}}
"""
TUTORIAL_INFERENCE = """\
{"neural_network": {"layers": "./unet3d_poisson.json",
  "checkpoints": {"load": "./model_poisson3d/model_checkpoint_20.pt"},
  "data": {"type": "numpy", "test_input_path": "./data/nu.npy", "test_target_path": "./data/nu.npy",
           "test_output_path": "./prediction/"},
  "loss": {"function": "Poisson3D_PDE"}}}
"""


@pytest.mark.slow
def test_tutorial_poisson3d_configs(tmp_path):
    """``config_poisson3d_pde.json`` then ``config_poisson3d_pde_inference.json`` exactly as the
    tutorial writes them, with 1 map, 5 epochs and batch size 1."""
    maps(tmp_path / "diffusivity_maps", 1, 64, dims=3)
    (tmp_path / "data").mkdir()
    nu = dv.diffusivity_map(dv.sample_coefficients(99, 0, 4, 3.0), 64, 3)
    np.save(tmp_path / "data" / "nu.npy", nu)
    shutil.copy(REPO / "networks" / "unet3d_poisson.json", tmp_path / "unet3d_poisson.json")
    (tmp_path / "config_poisson3d_pde.json").write_text(TUTORIAL_TRAIN.replace(
        '"num_epochs": 20', '"num_epochs": 5').replace('"batch_size": 128', '"batch_size": 1'))
    (tmp_path / "config_poisson3d_pde_inference.json").write_text(
        TUTORIAL_INFERENCE.replace("model_checkpoint_20.pt", "model_checkpoint_5.pt"))
    proc = run_rmldnn(["--app=pde", "--config=", "./config_poisson3d_pde.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = strip_ts(proc.stdout)
    assert "RocketML : pde" in lines
    assert "   Model name          : Unet3D depth-5 (Poisson)" in lines
    assert "Saving model checkpoint to file: ./model_poisson3d/model_checkpoint_5.pt" in lines
    assert len(log_rows(tmp_path / "out_dnn_poisson3d_train.txt")) == 5
    proc = run_rmldnn(["--app=pde", "--config=", "./config_poisson3d_pde_inference.json"],
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = strip_ts(proc.stdout)
    evals = [line for line in lines if line.startswith("Eval  Epoch [  1/  1]")]
    assert len(evals) == 1
    with h5py.File(tmp_path / "prediction" / "output_1.h5") as f:
        assert list(f) == ["nu.npy"]
        u = f["nu.npy"][()]
    assert u.shape == (1, 64, 64, 64)
    u = u.squeeze()
    assert u.shape == (64, 64, 64)
    assert np.all(u[0] == 1.0) and np.all(u[-1] == 0.0)
    energy = float(evals[0].split("(Loss: ")[1].rstrip(")"))
    assert energy == pytest.approx(R.centre_energy(u, nu[0]), rel=1e-3, abs=1e-4)


@pytest.mark.slow
@needs_mpi
def test_mpirun_np2_gives_np1_losses(tmp_path):
    maps(tmp_path / "maps", 16, 32, seed=0, normalize=True)
    maps(tmp_path / "test_maps", 4, 32, seed=1)
    cfg = poisson_cfg(tmp_path / "cfg.json", epochs=3, batch=8, out=None)
    env = rmldnn_env(1)
    results = {}
    for np_ in (1, 2):
        run_dir = tmp_path / f"np{np_}"
        run_dir.mkdir()
        for item in ("maps", "test_maps", cfg):
            src = tmp_path / item
            (run_dir / item).symlink_to(src, target_is_directory=src.is_dir())
        cmd = mpirun_cmd(np_, ["--app=pde", f"--config=./{cfg}"])
        proc = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        train = [float(r[4]) for r in log_rows(run_dir / "out_train.txt")]
        test = [float(r[3]) for r in log_rows(run_dir / "out_test.txt")]
        results[np_] = (train, test)
    (t1, e1), (t2, e2) = results[1], results[2]
    assert len(t1) == len(t2) == 6 and len(e1) == len(e2) == 3
    rel = max(abs(a - b) / abs(a) for a, b in zip(t1 + e1, t2 + e2))
    print(f"np=2 vs np=1: largest relative difference of the 6 training and 3 test losses: "
          f"{rel:.2e}")
    np.testing.assert_allclose(t2, t1, rtol=1e-4)
    np.testing.assert_allclose(e2, e1, rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# acceptance: physics against the classical solvers (minutes; benchmarks/ print the numbers)


def _benchmark(name):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


@pytest.mark.acceptance
def test_poisson2d_agrees_with_fem(tmp_path):
    result = _benchmark("pde_poisson2d").run(tmp_path)
    errors, trivial = np.array(result["errors"]), np.array(result["trivial"])
    assert len(errors) >= 5
    assert np.median(errors) <= 0.05, result
    assert np.all(errors * 2 <= trivial), result


@pytest.mark.acceptance
def test_burgers_agrees_with_implicit_solver(tmp_path):
    result = _benchmark("pde_burgers").run(tmp_path)
    assert result["error"] <= 0.05, result
    assert result["first_loss"] >= 10 * result["last_loss"], result
