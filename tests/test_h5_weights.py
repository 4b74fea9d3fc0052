"""Keras ``.h5`` weights import (``rmldnn_py/network/h5_weights.py``; SPEC §4.10, §7.4.2, §12 Q30).

Keras 3 (torch backend) is the reference: a small multi-input model is saved in the three layouts
(Keras 3 ``.weights.h5``, legacy ``save_weights`` and legacy full-model ``.h5``); the reader must
return exactly ``layer.get_weights()``, and every converted tensor must reproduce the Keras layer's
output when loaded into the corresponding ``torch.nn`` module (NHWC ↔ NCHW done in the test).
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rmldnn_py.errors import CheckpointError
from rmldnn_py.network.h5_weights import (
    keras3_weight_names,
    keras_name,
    keras_to_torch,
    read_keras_weights,
    supported_classes,
    tensor_names,
)

# Keras 3.15 (torch backend) converts its variables with np.array(x, copy=False) internally.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

_SEPARABLE = {
    "depthwise_weight": "depthwise_kernel",
    "pointwise_weight": "pointwise_kernel",
    "bias": "bias",
}

# --------------------------------------------------------------------------------------------
# Keras reference model, saved in every layout
# --------------------------------------------------------------------------------------------


def _build_model(keras):
    L = keras.layers
    img = keras.Input((9, 9, 3), name="img")
    seq = keras.Input((10, 3), name="seq")
    vol = keras.Input((5, 5, 5, 2), name="vol")
    y = L.Conv2D(4, 3, name="c2d")(img)  # (7, 7, 4)
    y = L.Conv2D(4, 1, use_bias=False, name="c2d_nobias")(y)
    y = L.BatchNormalization(name="bn")(y)
    y = L.BatchNormalization(center=False, name="bn_nocenter")(y)
    y = L.BatchNormalization(scale=False, name="bn_noscale")(y)
    y = L.BatchNormalization(center=False, scale=False, name="bn_none")(y)
    y = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(y)  # (5, 5, 8)
    y = L.SeparableConv2D(6, 3, depth_multiplier=2, name="sep")(y)  # (3, 3, 6)
    y = L.Conv2DTranspose(5, 3, strides=2, padding="valid", name="tconv")(y)  # (7, 7, 5)
    y = L.PReLU(shared_axes=[1, 2], name="prelu_shared")(y)
    y = L.PReLU(name="prelu")(y)
    y = L.LayerNormalization(name="ln")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    out_img = L.Dense(3, name="fc")(y)
    out_seq = L.Flatten(name="flat1")(L.Conv1D(4, 3, name="c1d")(seq))
    out_vol = L.Flatten(name="flat3")(L.Conv3D(3, 2, name="c3d")(vol))
    model = keras.Model([img, seq, vol], [out_img, out_seq, out_vol], name="reference")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # random values everywhere (biases, BN statistics included)
        layer.set_weights(
            [rng.uniform(0.5, 1.5, w.shape).astype("float32") if "variance" in v.name
             else rng.normal(0, 0.5, w.shape).astype("float32")
             for v, w in zip(layer.weights, layer.get_weights())]
        )
    return model


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from keras.src.legacy.saving import legacy_h5_format

    model = _build_model(keras)
    d = tmp_path_factory.mktemp("keras_weights")
    files = {
        "keras3": str(d / "ref.weights.h5"),
        "legacy": str(d / "ref_weights.h5"),
        "full_model": str(d / "ref_model.h5"),
    }
    model.save_weights(files["keras3"])
    with h5py.File(files["legacy"], "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    legacy_h5_format.save_model_to_hdf5(model, files["full_model"])
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    info = {n: (type(layer).__name__, layer.get_config()) for n, layer in layers.items()}
    return keras, layers, info, files


def _expected(layer):
    """``{short name: value}`` from ``layer.get_weights()`` (Keras 3 variable names)."""
    return {v.name: w for v, w in zip(layer.weights, layer.get_weights())}


def _keras_out(keras, layer, x):
    return keras.ops.convert_to_numpy(layer(x, training=False))


def _nchw(x):  # (N, *spatial, C) → (N, C, *spatial)
    return torch.from_numpy(np.moveaxis(x, -1, 1).copy())


def _nhwc(t):  # (N, C, *spatial) → (N, *spatial, C)
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _load(module, converted, strict=True):
    state = {t: torch.from_numpy(a) for t, (_, a) in converted.items()}
    module.load_state_dict(state, strict=strict)
    return module.eval()


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@pytest.mark.keras
@pytest.mark.parametrize("layout", ["keras3", "legacy", "full_model"])
def test_read_returns_get_weights(ref, layout):
    _, layers, info, files = ref
    weights = read_keras_weights(files[layout], layer_info=info.get)
    assert set(weights) == set(layers)
    for name, layer in layers.items():
        expected = _expected(layer)
        assert set(weights[name]) == set(expected), name
        for w, value in expected.items():
            np.testing.assert_array_equal(weights[name][w], value, err_msg=f"{name}/{w}")
            assert weights[name][w].dtype == value.dtype


@pytest.mark.keras
def test_keras3_without_layer_info_numbers_weights_in_keras_order(ref):
    _, layers, _, files = ref
    weights = read_keras_weights(files["keras3"])
    assert set(weights) == set(layers)  # layer names come from the 'name' attribute of 'vars'
    for name, layer in layers.items():
        values = layer.get_weights()
        assert list(weights[name]) == [str(i) for i in range(len(values))]
        for i, value in enumerate(values):
            np.testing.assert_array_equal(weights[name][str(i)], value)


@pytest.mark.keras
def test_keras3_bn_without_center_or_scale_named_from_config(ref):
    _, _, info, files = ref
    weights = read_keras_weights(files["keras3"], layer_info=info.get)
    assert list(weights["bn"]) == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert list(weights["bn_nocenter"]) == ["gamma", "moving_mean", "moving_variance"]
    assert list(weights["bn_noscale"]) == ["beta", "moving_mean", "moving_variance"]
    assert list(weights["bn_none"]) == ["moving_mean", "moving_variance"]
    assert list(weights["c2d_nobias"]) == ["kernel"]


@pytest.mark.keras
def test_keras3_weight_count_mismatch_names_file_and_layer(ref):
    _, _, info, files = ref
    wrong = dict(info, bn_none=("BatchNormalization", {}))  # expects 4, file has 2
    with pytest.raises(CheckpointError, match=r"ref\.weights\.h5: layer 'bn_none' has 2 weights"):
        read_keras_weights(files["keras3"], layer_info=wrong.get)


@pytest.mark.keras
def test_nested_models(ref, tmp_path):
    keras, *_ = ref
    from keras.src.legacy.saving import legacy_h5_format

    L = keras.layers
    inner = keras.Sequential(
        [keras.Input((6, 6, 2)), L.Conv2D(3, 3, name="inner_conv"),
         L.BatchNormalization(name="inner_bn")],
        name="inner",
    )
    backbone = keras.Sequential(  # two levels of nesting
        [keras.Input((6, 6, 2)), inner, L.Conv2D(2, 1, name="mid_conv")], name="backbone"
    )
    x = keras.Input((6, 6, 2))
    y = L.Dense(2, name="head")(L.Flatten()(backbone(x)))
    model = keras.Model(x, y)
    layers = {
        "inner_conv": inner.layers[0],
        "inner_bn": inner.layers[1],
        "mid_conv": backbone.layers[1],
        "head": model.layers[-1],
    }
    info = {n: (type(layer).__name__, {}) for n, layer in layers.items()}
    model.save_weights(tmp_path / "nested.weights.h5")
    with h5py.File(tmp_path / "nested.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    for fn in ("nested.weights.h5", "nested.h5"):
        weights = read_keras_weights(str(tmp_path / fn), layer_info=info.get)
        assert set(weights) == set(layers), fn
        for name, layer in layers.items():
            for w, value in _expected(layer).items():
                np.testing.assert_array_equal(weights[name][w], value)


def _write_attr(group, name, values, chunks=1):
    data = np.array([v.encode("utf8") for v in values])
    if chunks == 1:
        group.attrs[name] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{i}"] = part


def _write_tf2_file(path, chunks, under=None):
    """A tf.keras 2 ``save_weights`` file written by hand: names with ``:0``, a DenseNet-style
    layer name with ``/``, a nested model (``backbone``), a renamed layer (``fc1``) and a layer
    without weights."""
    rng = np.random.default_rng(1)
    layers = {
        "input_1": {},
        "conv1/conv": {"conv1/conv/kernel:0": (3, 3, 3, 8), "conv1/conv/bias:0": (8,)},
        "bn_data": {"bn_data/beta:0": (8,), "bn_data/moving_mean:0": (8,),
                    "bn_data/moving_variance:0": (8,)},
        "backbone": {"c_in/kernel:0": (1, 1, 8, 4), "bn_in/gamma:0": (4,), "bn_in/beta:0": (4,)},
        "fc1": {"dense_3/kernel:0": (4, 2), "dense_3/bias:0": (2,)},
    }
    values = {}
    with h5py.File(path, "w") as f:
        root = f.create_group(under) if under else f
        if under:
            f.attrs["model_config"] = b'{"class_name": "Functional"}'
        _write_attr(root, "layer_names", list(layers), chunks)
        for layer, weights in layers.items():
            g = root.create_group(layer)
            _write_attr(g, "weight_names", list(weights), chunks if len(weights) > 1 else 1)
            for w, shape in weights.items():
                values[(layer, w)] = rng.normal(size=shape).astype("float32")
                g.create_dataset(w, data=values[(layer, w)])
    return values


@pytest.mark.parametrize("chunks, under", [(1, None), (2, None), (2, "model_weights")])
def test_tf2_layout_written_by_hand(tmp_path, chunks, under):
    path = str(tmp_path / "tf2.h5")
    values = _write_tf2_file(path, chunks, under)
    weights = read_keras_weights(path)
    assert set(weights) == {"conv1/conv", "bn_data", "c_in", "bn_in", "fc1"}
    assert list(weights["bn_data"]) == ["beta", "moving_mean", "moving_variance"]
    assert list(weights["bn_in"]) == ["gamma", "beta"]
    np.testing.assert_array_equal(
        weights["conv1/conv"]["kernel"], values[("conv1/conv", "conv1/conv/kernel:0")]
    )
    np.testing.assert_array_equal(weights["c_in"]["kernel"], values[("backbone", "c_in/kernel:0")])
    np.testing.assert_array_equal(weights["fc1"]["bias"], values[("fc1", "dense_3/bias:0")])
    with h5py.File(path) as f:  # the chunked attributes really are chunked
        root = f[under] if under else f
        assert ("layer_names0" in root.attrs) == (chunks > 1)


def test_keras3_layout_written_by_hand(tmp_path):
    """Keras 3 files without the ``name`` attribute on ``vars`` (older Keras 3) are keyed by the
    path name; tf.keras 2.13 used ``_layer_checkpoint_dependencies``; the optimizer and the
    model's own ``vars`` are ignored; a shallower entry wins over a nested one of the same name."""
    path = tmp_path / "old.weights.h5"
    k = np.arange(24, dtype="float32").reshape(2, 3, 4)
    with h5py.File(path, "w") as f:
        f.create_group("vars")
        f.create_dataset("optimizer/vars/0", data=np.int64(3))
        f.create_dataset("_layer_checkpoint_dependencies/conv1d/vars/0", data=k)
        f.create_dataset("_layer_checkpoint_dependencies/conv1d/vars/1", data=np.ones(4))
        for i in range(11):  # vars/10 sorts after vars/9
            f.create_dataset(f"layers/big/vars/{i}", data=np.full(2, i))
        f.create_dataset("layers/functional/layers/conv1d/vars/0", data=np.zeros((1, 1, 1)))
        f.create_dataset("layers/functional/layers/inner/vars/0", data=np.ones(1))
        f["layers/functional/layers/inner/vars"].attrs["name"] = "renamed"
    weights = read_keras_weights(str(path))
    assert set(weights) == {"conv1d", "big", "renamed"}
    np.testing.assert_array_equal(weights["conv1d"]["0"], k)
    assert [int(v[0]) for v in weights["big"].values()] == list(range(11))
    assert list(weights["big"]) == [str(i) for i in range(11)]
    info = {"conv1d": ("Conv1D", {"use_bias": True}), "big": ("Embedding", {})}
    named = read_keras_weights(str(path), layer_info=info.get)
    assert list(named["conv1d"]) == ["kernel", "bias"] and list(named["big"])[0] == "0"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_not_hdf5_names_the_file(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_text("this is not HDF5\n")
    with pytest.raises(CheckpointError, match=r"weights\.h5: not an HDF5 file") as err:
        read_keras_weights(str(path))
    assert "\n" not in str(err.value)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"absent\.h5: Keras weights file not found"):
        read_keras_weights(str(tmp_path / "absent.h5"))


def test_hdf5_without_weights(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"data\.h5: no Keras weights found"):
        read_keras_weights(str(path))
    with h5py.File(path, "w") as f:  # the layout without any weighted layer
        _write_attr(f, "layer_names", ["input_1"])
        _write_attr(f.create_group("input_1"), "weight_names", [])
    with pytest.raises(CheckpointError, match=r"data\.h5: no Keras weights found"):
        read_keras_weights(str(path))


def test_listed_layer_without_group(tmp_path):
    path = tmp_path / "broken.h5"
    with h5py.File(path, "w") as f:
        _write_attr(f, "layer_names", ["conv1"])
    with pytest.raises(CheckpointError, match=r"broken\.h5: layer 'conv1' is listed"):
        read_keras_weights(str(path))


def test_conversion_errors_name_the_layer():
    msg = r"layer 'lam': cannot import Keras weights of layer type 'Lambda'"
    with pytest.raises(CheckpointError, match=msg):
        keras_to_torch("Lambda", {"w": np.zeros(1)}, layer="lam")
    msg = r"f\.h5: layer 'fc': unexpected Keras weight 'gamma' for Dense"
    with pytest.raises(CheckpointError, match=msg):
        keras_to_torch("Dense", {"gamma": np.zeros(1)}, layer="fc", source="f.h5")
    msg = (r"layer 'c': Keras weight 'kernel' of Conv2D must have rank 4,"
           r" received shape \[3, 3, 2\]$")
    with pytest.raises(CheckpointError, match=msg):
        keras_to_torch("Conv2D", {"kernel": np.zeros((3, 3, 2))}, layer="c")
    with pytest.raises(CheckpointError, match=r"layer 'x'"):
        tensor_names("Lambda", layer="x")
    with pytest.raises(CheckpointError, match=r"layer 'x'"):
        keras3_weight_names("Lambda", {}, layer="x")


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def test_keras_name():
    assert keras_name("bn_data", "gamma") == "bn_data/gamma:0"
    assert keras_name("conv1/conv", "kernel") == "conv1/conv/kernel:0"


def test_tensor_names():
    assert tensor_names("BatchNormalization", layer="bn") == {
        "weight": "gamma",
        "bias": "beta",
        "running_mean": "moving_mean",
        "running_var": "moving_variance",
    }
    assert tensor_names("SeparableConv2D", layer="s") == _SEPARABLE
    assert tensor_names("DepthwiseConv2D", layer="d")["weight"] == "depthwise_kernel"
    instance_norm = tensor_names("Addons>InstanceNormalization", layer="i")
    assert instance_norm["running_var"] == "moving_variance"
    assert tensor_names("PReLU", layer="p") == {"weight": "alpha"}


@pytest.mark.parametrize("class_name", supported_classes())
def test_every_supported_class_has_names(class_name):
    names = tensor_names(class_name, layer="x")
    # "kernel": Keras 3's DepthwiseConv kernel; "count": Normalization's adapt() counter (ignored)
    assert set(keras3_weight_names(class_name, {})) <= set(names.values()) | {"kernel", "count"}


def test_keras3_weight_names_follow_config():
    assert keras3_weight_names("Conv2D", {"use_bias": False}) == ["kernel"]
    assert keras3_weight_names("DepthwiseConv2D") == ["kernel", "bias"]
    assert keras3_weight_names("SeparableConv1D") == [
        "depthwise_kernel", "pointwise_kernel", "bias"]
    assert keras3_weight_names("BatchNormalization", {"scale": False}) == [
        "beta", "moving_mean", "moving_variance"]
    assert keras3_weight_names("LayerNormalization", {"rms_scaling": True}) == ["gamma"]


# --------------------------------------------------------------------------------------------
# Conversion, checked numerically against Keras
# --------------------------------------------------------------------------------------------


def _input(rng, shape):
    return rng.normal(size=shape).astype("float32")


def _convert(ref, name):
    _, layers, info, files = ref
    weights = read_keras_weights(files["legacy"])[name]
    return layers[name], keras_to_torch(info[name][0], weights, layer=name)


@pytest.mark.keras
@pytest.mark.parametrize(
    "name, module, in_shape",
    [
        ("c1d", lambda: torch.nn.Conv1d(3, 4, 3), (2, 10, 3)),
        ("c2d", lambda: torch.nn.Conv2d(3, 4, 3), (2, 9, 9, 3)),
        ("c2d_nobias", lambda: torch.nn.Conv2d(4, 4, 1, bias=False), (2, 7, 7, 4)),
        ("c3d", lambda: torch.nn.Conv3d(2, 3, 2), (2, 5, 5, 5, 2)),
        ("tconv", lambda: torch.nn.ConvTranspose2d(6, 5, 3, stride=2), (2, 3, 3, 6)),
        ("dw", lambda: torch.nn.Conv2d(4, 8, 3, groups=4), (2, 7, 7, 4)),
    ],
)
def test_conv_matches_keras(ref, name, module, in_shape):
    keras = ref[0]
    layer, converted = _convert(ref, name)
    torch_layer = _load(module(), converted)
    x = _input(np.random.default_rng(2), in_shape)
    with torch.no_grad():
        got = _nhwc(torch_layer(_nchw(x)))
    np.testing.assert_allclose(got, _keras_out(keras, layer, x), rtol=1e-4, atol=1e-4)


@pytest.mark.keras
def test_separable_conv_matches_keras(ref):
    keras = ref[0]
    layer, converted = _convert(ref, "sep")
    assert {t: n for t, (n, _) in converted.items()} == _SEPARABLE
    depthwise = torch.from_numpy(converted["depthwise_weight"][1])
    pointwise = torch.from_numpy(converted["pointwise_weight"][1])
    bias = torch.from_numpy(converted["bias"][1])
    assert depthwise.shape == (16, 1, 3, 3) and pointwise.shape == (6, 16, 1, 1)
    x = _input(np.random.default_rng(3), (2, 5, 5, 8))
    got = F.conv2d(F.conv2d(_nchw(x), depthwise, groups=8), pointwise, bias)
    np.testing.assert_allclose(_nhwc(got), _keras_out(keras, layer, x), rtol=1e-4, atol=1e-4)


@pytest.mark.keras
def test_dense_matches_keras(ref):
    keras = ref[0]
    layer, converted = _convert(ref, "fc")
    torch_layer = _load(torch.nn.Linear(5, 3), converted)
    x = _input(np.random.default_rng(4), (4, 5))
    with torch.no_grad():
        got = torch_layer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _keras_out(keras, layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.keras
@pytest.mark.parametrize("name", ["bn", "bn_nocenter", "bn_noscale", "bn_none"])
def test_batch_norm_matches_keras(ref, name):
    keras = ref[0]
    layer, converted = _convert(ref, name)
    expected_tensors = {"running_mean", "running_var"}
    expected_tensors |= {"weight"} if layer.scale else set()
    expected_tensors |= {"bias"} if layer.center else set()
    assert set(converted) == expected_tensors  # absent Keras weights are simply omitted
    torch_layer = torch.nn.BatchNorm2d(4, eps=layer.epsilon)
    _load(torch_layer, converted, strict=False)  # missing gamma/beta keep torch's 1 / 0
    x = _input(np.random.default_rng(5), (2, 7, 7, 4))
    with torch.no_grad():
        got = _nhwc(torch_layer(_nchw(x)))
    np.testing.assert_allclose(got, _keras_out(keras, layer, x), rtol=1e-4, atol=1e-4)


@pytest.mark.keras
def test_layer_norm_matches_keras(ref):
    keras = ref[0]
    layer, converted = _convert(ref, "ln")
    torch_layer = _load(torch.nn.LayerNorm(5, eps=layer.epsilon), converted)
    x = _input(np.random.default_rng(6), (2, 7, 7, 5))
    with torch.no_grad():  # Keras normalises the last (channel) axis: move it last for torch too
        got = torch_layer(_nchw(x).movedim(1, -1)).numpy()
    np.testing.assert_allclose(got, _keras_out(keras, layer, x), rtol=1e-4, atol=1e-4)


@pytest.mark.keras
@pytest.mark.parametrize("name, torch_shape", [("prelu_shared", (5, 1, 1)), ("prelu", (5, 7, 7))])
def test_prelu_matches_keras(ref, name, torch_shape):
    keras = ref[0]
    layer, converted = _convert(ref, name)
    alpha = torch.from_numpy(converted["weight"][1])
    assert tuple(alpha.shape) == torch_shape  # channel-first, broadcast against (N, C, H, W)
    x = _input(np.random.default_rng(7), (2, 7, 7, 5))
    t = _nchw(x)
    got = F.relu(t) - alpha * F.relu(-t)
    np.testing.assert_allclose(_nhwc(got), _keras_out(keras, layer, x), rtol=1e-5, atol=1e-5)


def test_conversion_layouts_without_keras():
    rng = np.random.default_rng(8)
    k = rng.normal(size=(3, 2, 4, 6))  # Conv2D (kh, kw, in, out)
    w = keras_to_torch("Conv2D", {"kernel": k}, layer="c")["weight"][1]
    assert w.shape == (6, 4, 3, 2) and w[5, 3, 2, 1] == k[2, 1, 3, 5]
    # Conv2DTranspose (kh, kw, out, in) → (in, out, kh, kw)
    w = keras_to_torch("Conv2DTranspose", {"kernel": k}, layer="t")["weight"][1]
    assert w.shape == (6, 4, 3, 2) and w[5, 3, 2, 1] == k[2, 1, 3, 5]
    d = rng.normal(size=(3, 3, 4, 2))  # DepthwiseConv2D (kh, kw, in, mult); Keras 3 says "kernel"
    for name in ("depthwise_kernel", "kernel"):
        out = keras_to_torch("DepthwiseConv2D", {name: d}, layer="d")
        assert out["weight"][0] == name
        w = out["weight"][1]
        assert w.shape == (8, 1, 3, 3) and w[3 * 2 + 1, 0, 2, 0] == d[2, 0, 3, 1]  # channel i·m + j
    alpha = rng.normal(size=(4, 5, 3))
    assert keras_to_torch("PReLU", {"alpha": alpha}, layer="p")["weight"][1].shape == (3, 4, 5)
    same = keras_to_torch("PReLU", {"alpha": alpha}, layer="p", channels_last=False)["weight"][1]
    np.testing.assert_array_equal(same, alpha)
    assert keras_to_torch("PReLU", {"alpha": alpha[0, 0]}, layer="p")["weight"][1].shape == (3,)
    renorm = {"gamma": np.ones(2), "moving_mean": np.zeros(2), "moving_variance": np.ones(2),
              "moving_stddev": np.ones(2), "renorm_mean": np.zeros(2), "renorm_stddev": np.ones(2)}
    assert set(keras_to_torch("BatchNormalization", renorm, layer="bn")) == {
        "weight", "running_mean", "running_var"}
    dense = keras_to_torch("Dense", {"kernel": np.zeros((5, 3))}, layer="fc")["weight"][1]
    assert dense.shape == (3, 5) and dense.flags.c_contiguous
