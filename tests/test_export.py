"""``rmldnn export`` (issue 13): ONNX export checked in ONNX Runtime.

The references are independent of the exporter's own printout: the test opens the written file
with ``onnx`` and ``onnxruntime`` itself and compares it on fresh random batches of several sizes
(dynamic batch axis) with torch running the same network with the same weights (demo network,
weights from a checkpoint) and with Keras itself (ResNet50 from Keras JSON + Keras weights,
``slow``): ``max |ort − ref| ≤ 1e-4 · max |ref|``. Bad input: one-line errors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rmldnn_py.cli import main
from rmldnn_py.engine.checkpoint import save_checkpoint
from rmldnn_py.network import build_network

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]
MNIST_NET = str(REPO / "networks" / "mnist_keras_net.json")


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tmp_path, layers, load=None) -> str:
    nn = {"layers": layers, "data": {"type": "images", "test_input_path": str(tmp_path / "none")}}
    if load:
        nn["checkpoints"] = {"load": load}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"neural_network": nn}))
    return str(path)


def _export(argv, capsys):
    code = main(["export"] + argv)
    out, err = capsys.readouterr()
    return code, out, err


def _ort_rel_err(path, ref_fn, shape, batches=(4, 1, 7), seed=11):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    dims = sess.get_inputs()[0].shape
    assert isinstance(dims[0], str) and list(dims[1:]) == list(shape)       # dynamic batch axis
    rng = np.random.default_rng(seed)
    worst = 0.0
    for b in batches:
        x = rng.normal(size=(b,) + tuple(shape)).astype(np.float32)
        got = sess.run(None, {"input": x})[0]
        ref = ref_fn(x)
        assert got.shape == ref.shape
        worst = max(worst, float(np.abs(got - ref).max() / np.abs(ref).max()))
    return worst


def test_export_demo_network_with_checkpoint(tmp_path, capsys):
    net = build_network(MNIST_NET, config_path="c.json")
    with torch.no_grad():                      # weights clearly not the initial ones
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ckpt = str(tmp_path / "model_checkpoint_3.pt")
    save_checkpoint(ckpt, net, 3)
    out_path = str(tmp_path / "sub" / "mnist.onnx")
    code, out, err = _export([f"--config={_config(tmp_path, MNIST_NET, ckpt)}", "--output", out_path,
                              "--batch=3"], capsys)
    assert code == 0, err
    assert f"Loading model checkpoint from file: {ckpt}" in out
    assert "WARNING" not in out
    assert "onnx.checker  : passed" in out and "All done (return value = 0)." in out
    m = re.search(r"max abs diff (\S+), max rel diff (\S+) vs torch \(random batches of 3 and 1\)", out)
    assert m and float(m.group(2)) <= 1e-4
    onnx.checker.check_model(out_path, full_check=True)
    net.eval()

    def torch_ref(x):
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()
    assert _ort_rel_err(out_path, torch_ref, (1, 28, 28)) <= 1e-4
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["mnist.onnx"]   # no temp, no .data


def test_export_without_checkpoint_warns_random_weights(tmp_path, capsys):
    code, out, err = _export(["--config", _config(tmp_path, MNIST_NET), "--output=" +
                              str(tmp_path / "m.onnx")], capsys)
    assert code == 0, err
    warn = [line for line in out.splitlines() if "WARNING" in line]
    assert len(warn) == 1 and "checkpoints.load is not set: the exported weights are the random " \
                               "initial weights" in warn[0]
    assert (tmp_path / "m.onnx").stat().st_size > 100_000


def test_export_unwritable_output_is_one_line_error(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    target = str(tmp_path / "afile" / "m.onnx")
    code, out, err = _export([f"--config={_config(tmp_path, MNIST_NET)}", f"--output={target}"], capsys)
    assert code == 1
    assert err.strip().splitlines() == [f"rmldnn: error: {target}: cannot write the ONNX file: "
                                        f"'{tmp_path / 'afile'}' is not a directory"]
    code, _, err = _export([f"--config={_config(tmp_path, MNIST_NET)}", f"--output={tmp_path}"], capsys)
    assert code == 1 and "cannot write the ONNX file: Is a directory" in err


@pytest.mark.parametrize("argv,message", [
    (["--output=x.onnx"], "export: missing --config"),
    (["--config=c.json"], "export: missing --output"),
    (["--config=c.json", "--output=x.onnx", "--batch=0"], "--batch: expected a positive integer"),
    (["--config=c.json", "--output=x.onnx", "--input-shape=3,a"], "--input-shape: expected positive"),
    (["--config=c.json", "--output=x.onnx", "extra"], "export: unexpected argument 'extra'"),
])
def test_export_usage_errors(argv, message, capsys):
    code, _, err = _export(argv, capsys)
    assert code == 2 and message in err.splitlines()[0]


def test_export_input_shape_option(tmp_path, capsys):
    """A network without a declared input shape needs --input-shape (and a bad one is named)."""
    layers = [{"class_name": "Conv2D", "config": {"name": "c", "filters": 4, "kernel_size": [3, 3],
                                                    "activation": "relu"}},
              {"class_name": "GlobalAveragePooling2D", "config": {"name": "g"}},
              {"class_name": "Dense", "config": {"name": "d", "units": 3, "activation": "softmax"}}]
    cfg = _config(tmp_path, layers)
    code, _, err = _export([f"--config={cfg}", f"--output={tmp_path / 'a.onnx'}"], capsys)
    assert code == 1 and "declares no input shape" in err
    code, out, err = _export([f"--config={cfg}", f"--output={tmp_path / 'a.onnx'}",
                              "--input-shape=2,12,10"], capsys)
    assert code == 0, err
    sess = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[1:] == [2, 12, 10]


def _unsupported_op():
    """A custom operator without an ONNX translation (what an inexpressible layer looks like)."""
    name = "rmldnn_test::no_onnx"
    try:
        return torch.ops.rmldnn_test.no_onnx
    except (AttributeError, RuntimeError):
        pass

    @torch.library.custom_op(name, mutates_args=())
    def no_onnx(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @no_onnx.register_fake
    def _(x):
        return torch.empty_like(x)

    return torch.ops.rmldnn_test.no_onnx


def test_layer_onnx_cannot_express_is_named(tmp_path, capsys, monkeypatch):
    from rmldnn_py.network.layers import pooling

    op = _unsupported_op()
    forward = pooling.Pool.forward
    monkeypatch.setattr(pooling.Pool, "forward", lambda self, x: op(forward(self, x)))
    out_path = tmp_path / "bad.onnx"
    code, out, err = _export([f"--config={_config(tmp_path, MNIST_NET)}", f"--output={out_path}"], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(r"rmldnn: error: .*mnist_keras_net\.json: layer 'max_pooling2d' \(MaxPooling2D\) "
                    r"cannot be exported to ONNX: .*no_onnx", lines[0]), lines[0]
    assert not out_path.exists() and list(tmp_path.glob(".bad.onnx*")) == []


def test_culprit_search_by_layer(monkeypatch):
    """The fallback search (each layer exported alone) finds the same layer."""
    from rmldnn_py.network.layers import core
    from rmldnn_py.tools.export import _find_culprit

    op = _unsupported_op()
    forward = core.Dense.forward
    monkeypatch.setattr(core.Dense, "forward", lambda self, x: op(forward(self, x)))
    net = build_network([{"class_name": "Flatten", "config": {"name": "f", "batch_input_shape": [None, 3, 2]}},
                         {"class_name": "Dense", "config": {"name": "d1", "units": 4}},
                         {"class_name": "Dense", "config": {"name": "d2", "units": 2}}],
                        config_path="c.json").eval()
    name, reason = _find_culprit(net, torch.randn(2, 2, 3), None)
    assert name == "d1" and "no_onnx" in reason


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_resnet50_from_keras_json_matches_keras(tmp_path, capsys):
    keras = pytest.importorskip("keras")
    from keras_helpers import randomize_for_inference, save_keras3_weights

    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=7,
                                        classifier_activation=None)
    randomize_for_inference(model, np.random.default_rng(0))
    (tmp_path / "resnet50.json").write_text(model.to_json())
    weights = save_keras3_weights(model, str(tmp_path / "w.weights.h5"))
    out_path = str(tmp_path / "resnet50.onnx")
    code, out, err = _export([f"--config={_config(tmp_path, str(tmp_path / 'resnet50.json'), weights)}",
                              f"--output={out_path}"], capsys)
    assert code == 0, err
    assert "Loading model checkpoint from HDF5 file:" in out and "Skipping" not in out

    def keras_ref(x):          # NCHW in, logits out
        return np.asarray(keras.ops.convert_to_numpy(model(np.moveaxis(x, 1, -1), training=False)))
    assert _ort_rel_err(out_path, keras_ref, (3, 64, 64), batches=(2, 1, 3)) <= 1e-4
