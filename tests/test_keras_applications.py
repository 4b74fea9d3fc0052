"""Whole keras.applications networks against Keras 3 itself (issue 3 acceptance; SPEC §4.10,
§7.4.2, §11.11): ``model.to_json()`` (Keras 3 form and a tf.keras-2 rewrite) → ``build_network``;
Keras weights in the Keras 3 ``.weights.h5`` layout, the tf.keras 2 ``save_weights`` layout (Keras'
legacy writer) and tf.keras 2's ``model.save()`` layout → ``engine.checkpoint.load_weights`` (the
CLI's ``checkpoints.load`` path; no ``Skipping`` line allowed except the SPEC §11.7 ones for
BatchNormalization without gamma/beta); outputs compared in evaluation
mode on a random non-square input: ``max |ours − keras| ≤ 1e-4 · max |keras|``; parameter counts
equal up to SPEC §4.7's always-affine BatchNormalization.

Also end-to-end ``load_weights`` regressions for the h5 importer: multi-axis LayerNormalization
beta, adapted Normalization, ``channels_first`` networks and layer names containing ``.``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from keras_helpers import (ListLog, keras_counts, randomize_for_inference, save_keras3_weights,
                           save_legacy_weights, to_keras2_json, to_tf2_h5)
from rmldnn_py.engine.checkpoint import load_weights
from rmldnn_py.network import build_network

pytestmark = [pytest.mark.keras, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

# (application, Keras input shape (H, W, C)): small, non-square, at least each model's minimum
APPS = [
    ("ResNet50", (64, 80, 3)),
    ("ResNet50V2", (64, 80, 3)),
    ("VGG16", (64, 80, 3)),
    ("DenseNet121", (64, 80, 3)),
    ("MobileNet", (64, 80, 3)),
    ("MobileNetV2", (64, 80, 3)),
    ("InceptionV3", (75, 91, 3)),
    ("Xception", (71, 87, 3)),
]
CLASSES = 7


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Big graphs of small tensors: one intra-op thread is faster than an oversubscribed pool."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def _rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def _run(net, x_keras: np.ndarray) -> np.ndarray:
    """Our network on a channels-last batch; result back in Keras layout."""
    with torch.no_grad():
        y = net(torch.from_numpy(x_keras).movedim(-1, 1))
    return (y.movedim(1, -1) if y.dim() >= 3 else y).numpy()


def _scramble(net, keep: set[str] = frozenset()) -> None:
    """Overwrite every tensor but ``keep``, so that a load that silently did nothing cannot pass."""
    with torch.no_grad():
        for key, t in net.state_dict().items():
            if t.is_floating_point() and key not in keep:
                t.fill_(0.123)


def _absent_affine(model) -> dict[str, str]:
    """Always-affine BatchNormalization tensors (SPEC §4.4) that Keras does not have
    (``scale``/``center`` false): our key → the ``Skipping parameter`` line SPEC §7.4.2 / §11.7
    require (T-BRAIN: ``Skipping parameter bn_data.weight (bn_data/gamma:0): not found in model``);
    the tensors keep their initial 1 / 0, which is Keras' computation."""
    lines = {}
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            for flag, tensor, kname in (("scale", "weight", "gamma"), ("center", "bias", "beta")):
                if not getattr(layer, flag):
                    key = f"{layer.name}.{tensor}"
                    lines[key] = f"   Skipping parameter {key} ({layer.name}/{kname}:0): not found in model"
    return lines


def _check_load(net, path: str, x: np.ndarray, ref: np.ndarray, what: str,
                absent: dict[str, str] | None = None) -> float:
    absent = absent or {}
    _scramble(net, keep=set(absent))
    log = ListLog()
    n = load_weights(net, path, log)
    assert log.lines[0].startswith("Loading model checkpoint from HDF5 file: "), what
    assert log.skipping() == list(absent.values()), f"{what}: {log.skipping()[:5]}"
    assert n > 0, what
    y = _run(net, x)
    assert y.shape == ref.shape, what
    err = _rel_err(y, ref)
    assert err <= 1e-4, f"{what}: max |ours - keras| / max |keras| = {err:.3g}"
    return err


@pytest.mark.parametrize("app,shape", APPS, ids=[a for a, _ in APPS])
def test_keras_application_matches_keras(keras, tmp_path, app, shape):
    model = getattr(keras.applications, app)(weights=None, input_shape=shape, classes=CLASSES,
                                             classifier_activation=None)  # compare logits
    rng = np.random.default_rng(len(app))
    randomize_for_inference(model, rng)
    x = rng.normal(0.0, 1.0, (2,) + shape).astype("float32")
    ref = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
    assert ref.shape == (2, CLASSES)

    keras3_file = save_keras3_weights(model, str(tmp_path / "w.weights.h5"))
    legacy_file = save_legacy_weights(model, str(tmp_path / "w_legacy.h5"))
    tf2_file = to_tf2_h5(legacy_file, str(tmp_path / "w_tf2_model.h5"), full_model=True)
    total, trainable = keras_counts(model)
    absent = _absent_affine(model)  # InceptionV3: BatchNormalization(scale=False)
    assert bool(absent) == (app == "InceptionV3")

    k3 = json.loads(model.to_json())
    for form, spec in (("keras3", k3), ("tf.keras2", to_keras2_json(k3, "Functional"))):
        net = build_network(spec, config_path=f"{app}.json")
        net.eval()
        assert net.model_name == model.name
        assert net.num_parameters() == total, form
        assert net.num_parameters(trainable_only=True) == trainable, form
        assert tuple(net.output_shape) == (CLASSES,), form
        for label, path in (("keras3 .weights.h5", keras3_file), ("legacy save_weights", legacy_file),
                            ("tf.keras2 model.save", tf2_file)):
            _check_load(net, path, x, ref, f"{app} {form} JSON + {label}", absent)


def test_always_affine_batchnorm_without_gamma_beta(keras, tmp_path):
    """InceptionV3-style BatchNormalization(scale=False) / center=False: the file has no gamma /
    beta; rmldnn_py's always-affine BN keeps 1 / 0 and reports them (SPEC §4.4, §11.7)."""
    L = keras.layers
    inp = keras.Input((6, 5, 3), name="inp")
    x = L.Conv2D(4, 3, use_bias=False, name="c")(inp)
    x = L.BatchNormalization(scale=False, name="bn_noscale")(x)
    x = L.BatchNormalization(center=False, scale=False, name="bn_none")(x)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(3)
    randomize_for_inference(model, rng)
    xin = rng.normal(size=(2, 6, 5, 3)).astype("float32")
    ref = np.asarray(keras.ops.convert_to_numpy(model(xin, training=False)))
    net = build_network(json.loads(model.to_json()), config_path="bn.json").eval()
    assert net.num_parameters() == keras_counts(model)[0] == 4 * 27 + 4 * 4
    for path in (save_keras3_weights(model, str(tmp_path / "w.weights.h5")),
                 save_legacy_weights(model, str(tmp_path / "w.h5"))):
        _check_load(net, path, xin, ref, path, _absent_affine(model))
        assert torch.equal(net.state_dict()["bn_none.weight"], torch.ones(4))
        assert torch.equal(net.state_dict()["bn_none.bias"], torch.zeros(4))


def _regression_model(keras):
    """Multi-axis LayerNormalization (input-shaped gamma and beta), an adapted Normalization
    (Keras variables mean/variance/count), PReLU with an input-shaped alpha."""
    L = keras.layers
    inp = keras.Input((5, 4, 3), name="inp")
    norm = L.Normalization(name="norm")
    norm.adapt(np.random.default_rng(0).normal(2.0, 3.0, (16, 5, 4, 3)).astype("float32"))
    x = norm(inp)
    x = L.Conv2D(6, 3, padding="same", name="conv")(x)
    x = L.LayerNormalization(axis=[1, 2, 3], name="ln_all")(x)
    x = L.LayerNormalization(axis=[2, 3], name="ln_wc")(x)
    x = L.PReLU(name="prelu")(x)
    out = L.Dense(2, name="head")(L.Flatten(name="flat")(x))
    return keras.Model(inp, out, name="regress")


def test_h5_import_regressions_through_load_weights(keras, tmp_path):
    model = _regression_model(keras)
    rng = np.random.default_rng(5)
    for layer in model.layers:  # every weight random (LayerNorm beta must not be zero)
        if layer.name != "norm":
            layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    xin = rng.normal(size=(2, 5, 4, 3)).astype("float32")
    ref = np.asarray(keras.ops.convert_to_numpy(model(xin, training=False)))
    k3 = json.loads(model.to_json())
    legacy = save_legacy_weights(model, str(tmp_path / "w.h5"))
    files = (save_keras3_weights(model, str(tmp_path / "w.weights.h5")), legacy,
             to_tf2_h5(legacy, str(tmp_path / "w_tf2.h5")))
    for spec in (k3, to_keras2_json(k3)):
        net = build_network(spec, config_path="r.json").eval()
        for path in files:
            _check_load(net, path, xin, ref, path)
        np.testing.assert_allclose(net.state_dict()["norm.mean"].numpy(),
                                   np.asarray(model.get_layer("norm").mean).reshape(-1), rtol=1e-6)


def test_layer_names_with_dots_are_matched(keras, tmp_path):
    """Keras 2 layer names may contain '.', escaped to '_' in our module names (SPEC §4.10): the
    file's names are mapped to the escaped ones, Skipping messages name the Keras layer."""
    model = _regression_model(keras)
    randomize_for_inference(model, np.random.default_rng(2))
    xin = np.random.default_rng(4).normal(size=(2, 5, 4, 3)).astype("float32")
    ref = np.asarray(keras.ops.convert_to_numpy(model(xin, training=False)))
    legacy = save_legacy_weights(model, str(tmp_path / "w.h5"))
    tf2 = to_tf2_h5(legacy, str(tmp_path / "w_tf2.h5"))
    dotted = str(tmp_path / "dotted.h5")
    import h5py
    renames = {"conv": "block.1.conv", "ln_all": "ln.all"}
    with h5py.File(tf2, "r") as fin, h5py.File(dotted, "w") as fout:
        names = [n.decode() for n in fin.attrs["layer_names"]]
        fout.attrs["layer_names"] = np.array([renames.get(n, n).encode() for n in names])
        fout.attrs["keras_version"] = b"2.9.0"
        for n in names:
            new = renames.get(n, n)
            g = fout.create_group(new)
            wn = [w.decode() for w in fin[n].attrs["weight_names"]]
            nw = [w.replace(f"{n}/", f"{new}/", 1) for w in wn]
            g.attrs["weight_names"] = np.array([w.encode() for w in nw])
            for a, b in zip(wn, nw):
                g.create_dataset(b, data=fin[n][a][()])
    text = json.dumps(to_keras2_json(json.loads(model.to_json())))
    for old, new in renames.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    net = build_network(json.loads(text), config_path="d.json").eval()
    assert "block_1_conv.weight" in net.state_dict()
    _check_load(net, dotted, xin, ref, "dotted names")
    # a layer the file lacks is reported with its Keras name
    partial = str(tmp_path / "partial.h5")
    with h5py.File(dotted, "r") as fin, h5py.File(partial, "w") as fout:
        keep = [n for n in fin.attrs["layer_names"] if n != b"ln.all"]
        fout.attrs["layer_names"] = np.array(keep)
        fout.attrs["keras_version"] = b"2.9.0"
        for n in keep:
            fin.copy(fin[n.decode()], fout, name=n.decode())
    log = ListLog()
    load_weights(net, partial, log)
    assert log.skipping() == ["   Skipping layer ln_all: not found in model",
                              "   Skipping parameter ln_all.weight (ln.all/gamma:0): not found in model",
                              "   Skipping parameter ln_all.bias (ln.all/beta:0): not found in model"]


def test_channels_first_network_input_shaped_weights(keras, tmp_path):
    """A channels_first network: PReLU alpha is already channel-first in Keras and must be kept as
    it is (``keras_to_torch(channels_last=False)``)."""
    L = keras.layers
    cf = {"data_format": "channels_first"}
    inp = keras.Input((3, 6, 5), name="x")
    x = L.Conv2D(4, 3, padding="same", name="conv", **cf)(inp)
    x = L.PReLU(name="prelu")(x)  # alpha (4, 6, 5): Keras' tensor layout is ours
    x = L.BatchNormalization(axis=1, name="bn")(x)
    out = L.Dense(3, name="head")(L.Flatten(name="flat", **cf)(x))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(8)
    for layer in model.layers:
        if layer.weights and layer.name != "bn":
            layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    randomize_for_inference(model, rng)
    xin = rng.normal(size=(2, 3, 6, 5)).astype("float32")
    ref = np.asarray(keras.ops.convert_to_numpy(model(xin, training=False)))
    net = build_network(json.loads(model.to_json()), config_path="cf.json").eval()
    assert net.keras_layout == "channels_first"
    for path in (save_keras3_weights(model, str(tmp_path / "w.weights.h5")),
                 save_legacy_weights(model, str(tmp_path / "w.h5"))):
        _scramble(net)
        log = ListLog()
        load_weights(net, path, log)
        assert not log.skipping()
        with torch.no_grad():
            y = net(torch.from_numpy(xin)).numpy()  # channels_first: no layout change
        assert _rel_err(y, ref) <= 1e-4, path
