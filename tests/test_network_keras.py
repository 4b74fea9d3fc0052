"""Per-layer comparisons against Keras 3 itself (torch backend) — SPEC §4.3, §4.4, §4.10.

Each case builds a tiny Keras model, exports ``model.to_json()``, builds our network from it (and
from a tf.keras-2-style rewrite of the same JSON), copies the Keras weights into our module with
the SPEC §4.10 conversions, and compares outputs in evaluation mode:
``max |ours − keras| ≤ 1e-4 · max |keras|``, with equal parameter counts.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from rmldnn_py.network import build_network

pytestmark = [pytest.mark.keras, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


# ------------------------------------------------------------------------------- Keras 2 JSON

from keras_helpers import to_keras2_json  # noqa: E402  (tests/ is on sys.path)


# ------------------------------------------------------------------------------- weights

def keras_to_torch(layer, ours_module, nd: int | None = None) -> dict[str, torch.Tensor]:
    """Keras layer weights → our tensors (SPEC §4.10 table)."""
    cls = type(layer).__name__
    out = {}
    for w in layer.weights:
        name = w.name.split("/")[-1].split(":")[0]
        v = np.asarray(w.numpy())
        if name == "depthwise_kernel" or (name == "kernel" and cls.startswith("Depthwise")):
            r = v.ndim - 2
            k = v.reshape(v.shape[:r] + (-1,))  # (k..., in*mult)
            k = np.transpose(k, (r,) + tuple(range(r)))[:, None]
            out["weight" if cls.startswith("Depthwise") else "depthwise_weight"] = k
        elif name == "kernel" and cls == "Dense":
            out["weight"] = v.T
        elif name == "kernel" and "Transpose" in cls:
            r = v.ndim - 2
            out["weight"] = np.transpose(v, (r + 1, r) + tuple(range(r)))
        elif name == "kernel":
            r = v.ndim - 2
            out["weight"] = np.transpose(v, (r + 1, r) + tuple(range(r)))
        elif name == "pointwise_kernel":
            r = v.ndim - 2
            out["pointwise_weight"] = np.transpose(v, (r + 1, r) + tuple(range(r)))
        elif name in ("bias", "beta", "gamma", "alpha"):
            # input-shaped weights (PReLU alpha, multi-axis LayerNormalization) are held
            # channel-first: last Keras axis first
            v = np.moveaxis(v, -1, 0) if v.ndim >= 2 else v
            out["bias" if name in ("bias", "beta") else "weight"] = v
        elif name == "moving_mean":
            out["running_mean"] = v
        elif name == "moving_variance":
            out["running_var"] = v
        elif name in ("mean", "variance"):
            out[name] = v.reshape(-1)
        elif name == "count":
            continue
        else:
            raise AssertionError(f"unmapped Keras weight {name} of {cls}")
    return {k: torch.from_numpy(np.ascontiguousarray(v)).float() for k, v in out.items()}


def randomize(model, rng, scale=0.5):
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = []
        for w, var in zip(ws, layer.weights):
            if "variance" in var.name:
                new.append(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
            else:
                new.append(rng.normal(0, scale, w.shape).astype(w.dtype))
        layer.set_weights(new)


def load_into(net, model):
    for layer in model.layers:
        if not layer.weights or layer.__class__.__name__ == "InputLayer":
            continue
        name = layer.name.replace(".", "_")
        module = net._modules[name]
        tensors = keras_to_torch(layer, module)
        with torch.no_grad():
            for tname, value in tensors.items():
                target = getattr(module, tname)
                assert tuple(target.shape) == tuple(value.shape), (layer.name, tname, target.shape, value.shape)
                target.copy_(value)


def keras_param_count(model) -> int:
    """Keras trainable + non-trainable weights, minus BN/Normalization statistics."""
    n = 0
    for layer in model.layers:
        for w in layer.weights:
            short = w.name.split("/")[-1]
            if short in ("moving_mean", "moving_variance", "mean", "variance", "count"):
                continue
            n += int(np.prod(w.shape))
    return n


def compare(keras, model, in_shape, *, forms=("k3", "k2"), seed=0, extra_params=0, scale=0.5,
            channels_last=True):
    """Build ours from model.to_json() (Keras 3 and Keras 2 forms), load weights, compare."""
    rng = np.random.default_rng(seed)
    randomize(model, rng, scale)
    x = rng.normal(0, 1, (2,) + tuple(in_shape)).astype("float32")
    ref = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
    k3 = json.loads(model.to_json())
    for form in forms:
        spec = k3 if form == "k3" else to_keras2_json(k3, "Model" if seed % 2 else "Functional")
        net = build_network(spec, config_path="test.json")
        net.eval()
        load_into(net, model)
        xt = torch.from_numpy(x)
        if xt.dim() >= 3 and channels_last:
            xt = xt.movedim(-1, 1)
        with torch.no_grad():
            y = net(xt)
        if y.dim() >= 3 and channels_last:
            y = y.movedim(1, -1)
        y = y.numpy()
        assert y.shape == ref.shape, (form, y.shape, ref.shape)
        err = np.abs(y - ref).max()
        scale = max(np.abs(ref).max(), 1e-6)
        assert err <= 1e-4 * scale, f"{form}: max error {err} vs max |keras| {scale}"
        assert net.num_parameters() == keras_param_count(model) + extra_params, form
        expected = _torch_shape(ref.shape[1:]) if channels_last else tuple(ref.shape[1:])
        assert tuple(net.output_shape) == expected, form


def _torch_shape(kshape):
    kshape = tuple(kshape)
    return (kshape[-1],) + kshape[:-1] if len(kshape) >= 2 else kshape


def single(keras, layer_fn, in_shape):
    inp = keras.Input(in_shape, name="inp")
    out = layer_fn(inp)
    return keras.Model(inp, out, name="m")


L = None  # keras.layers, set inside tests

# (id, input shape (Keras, no batch), builder(layers) -> callable on a Keras tensor)
SINGLE_CASES = [
    ("conv2d_same_s2_k3", (7, 7, 3), lambda L: L.Conv2D(4, 3, strides=2, padding="same")),
    ("conv2d_same_s2_k4", (8, 7, 2), lambda L: L.Conv2D(3, 4, strides=2, padding="same", activation="tanh")),
    ("conv2d_same_k4_s1", (6, 5, 2), lambda L: L.Conv2D(3, (4, 2), padding="same", use_bias=False)),
    ("conv2d_same_dil2", (9, 8, 2), lambda L: L.Conv2D(3, 3, dilation_rate=2, padding="same", activation="softmax")),
    ("conv2d_valid_s2_groups", (9, 9, 4), lambda L: L.Conv2D(6, 3, strides=(2, 1), groups=2, activation="relu")),
    ("conv1d_same_s2", (9, 3), lambda L: L.Conv1D(4, 4, strides=2, padding="same")),
    ("conv1d_causal", (9, 3), lambda L: L.Conv1D(4, 3, dilation_rate=2, padding="causal")),
    ("conv3d_same_s2", (5, 6, 5, 2), lambda L: L.Conv3D(3, 3, strides=2, padding="same")),
    ("depthwise2d", (7, 6, 3), lambda L: L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same", activation="relu")),
    ("depthwise1d", (8, 3), lambda L: L.DepthwiseConv1D(3, depth_multiplier=2)),
    ("separable2d", (7, 7, 3), lambda L: L.SeparableConv2D(5, 3, strides=2, depth_multiplier=2, padding="same")),
    ("separable1d", (9, 3), lambda L: L.SeparableConv1D(4, 3, dilation_rate=2, padding="same")),
    ("convT2d_same_s2_k3", (4, 5, 3), lambda L: L.Conv2DTranspose(2, 3, strides=2, padding="same")),
    ("convT2d_same_s2_k4", (4, 3, 3), lambda L: L.Conv2DTranspose(2, 4, strides=2, padding="same")),
    ("convT2d_valid_s2_k3", (4, 5, 3), lambda L: L.Conv2DTranspose(2, 3, strides=2, padding="valid")),
    ("convT2d_valid_k2_s3", (3, 4, 2), lambda L: L.Conv2DTranspose(2, 2, strides=3, padding="valid")),
    ("convT2d_same_k2_s3", (3, 4, 2), lambda L: L.Conv2DTranspose(2, 2, strides=3, padding="same")),
    ("convT2d_dil2", (4, 4, 2), lambda L: L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same")),
    ("convT2d_output_padding", (4, 3, 2), lambda L: L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=(1, 0))),
    ("convT2d_valid_output_padding", (4, 3, 2), lambda L: L.Conv2DTranspose(2, 3, strides=3, padding="valid", output_padding=2)),
    ("convT1d", (5, 2), lambda L: L.Conv1DTranspose(3, 3, strides=2, padding="same")),
    ("convT3d", (3, 3, 2, 2), lambda L: L.Conv3DTranspose(2, 2, strides=2, padding="valid")),
    ("convT3d_same_k4_s2", (4, 3, 4, 2), lambda L: L.Conv3DTranspose(3, 4, strides=2, padding="same", activation="relu")),
    ("convT2d_same_k5_s1_dil2", (5, 4, 2), lambda L: L.Conv2DTranspose(2, 5, dilation_rate=2, padding="same")),
    ("maxpool2d_same_3_2", (7, 6, 2), lambda L: L.MaxPooling2D(3, strides=2, padding="same")),
    ("maxpool2d_same_2", (7, 7, 2), lambda L: L.MaxPooling2D(2, padding="same")),
    ("maxpool2d_valid_s1", (5, 5, 2), lambda L: L.MaxPooling2D(2, strides=1)),
    # symmetric 'same' padding only: Keras' torch backend averages asymmetric 'same' windows
    # differently from TensorFlow (checked against a TF-semantics reference in test_network_layers.py)
    ("avgpool2d_same_3_2", (7, 7, 2), lambda L: L.AveragePooling2D(3, strides=2, padding="same")),
    ("avgpool2d_valid", (7, 6, 2), lambda L: L.AveragePooling2D(2)),
    ("maxpool1d_same", (7, 2), lambda L: L.MaxPooling1D(2, padding="same")),
    ("avgpool1d_same", (7, 2), lambda L: L.AveragePooling1D(3, strides=2, padding="same")),
    ("maxpool3d", (4, 5, 4, 2), lambda L: L.MaxPooling3D(2, padding="same")),
    ("avgpool3d", (4, 5, 4, 2), lambda L: L.AveragePooling3D(2, padding="same")),
    ("gmp2d", (4, 5, 3), lambda L: L.GlobalMaxPooling2D()),
    ("gap2d_keep", (4, 5, 3), lambda L: L.GlobalAveragePooling2D(keepdims=True)),
    ("gap1d", (6, 3), lambda L: L.GlobalAveragePooling1D()),
    ("gmp3d_keep", (3, 4, 3, 2), lambda L: L.GlobalMaxPooling3D(keepdims=True)),
    ("bn2d", (4, 4, 3), lambda L: L.BatchNormalization(momentum=0.9, epsilon=1e-2)),
    ("bn_noaffine", (4, 4, 3), lambda L: L.BatchNormalization(center=False, scale=False)),
    ("bn1d_rank3", (5, 3), lambda L: L.BatchNormalization()),
    ("ln_last", (4, 5, 3), lambda L: L.LayerNormalization()),
    ("ln_all", (4, 5, 3), lambda L: L.LayerNormalization(axis=[1, 2, 3])),
    ("ln_spatial", (4, 5, 3), lambda L: L.LayerNormalization(axis=[2, 3], center=False)),
    ("groupnorm", (4, 4, 6), lambda L: L.GroupNormalization(groups=3)),
    ("upsample2d_nearest", (3, 4, 2), lambda L: L.UpSampling2D((2, 3))),
    ("upsample2d_bilinear", (3, 4, 2), lambda L: L.UpSampling2D((2, 3), interpolation="bilinear")),
    ("upsample1d", (4, 2), lambda L: L.UpSampling1D(3)),
    ("upsample3d", (2, 3, 2, 2), lambda L: L.UpSampling3D((2, 1, 2))),
    ("zeropad2d", (3, 4, 2), lambda L: L.ZeroPadding2D(((1, 2), (3, 0)))),
    ("zeropad1d", (4, 2), lambda L: L.ZeroPadding1D((2, 1))),
    ("zeropad3d", (2, 3, 2, 2), lambda L: L.ZeroPadding3D(1)),
    ("crop2d", (6, 7, 2), lambda L: L.Cropping2D(((1, 2), (0, 3)))),
    ("crop1d", (6, 2), lambda L: L.Cropping1D((2, 1))),
    ("crop3d", (4, 5, 4, 2), lambda L: L.Cropping3D(((1, 0), (1, 2), 1))),
    ("relu6", (4, 3), lambda L: L.ReLU(max_value=6.0)),
    ("relu_slope_thr", (4, 3), lambda L: L.ReLU(negative_slope=0.1, threshold=0.5, max_value=1.5)),
    ("leaky_relu", (4, 3), lambda L: L.LeakyReLU(negative_slope=0.25)),
    ("prelu_shared", (4, 5, 3), lambda L: L.PReLU(shared_axes=[1, 2])),
    ("prelu_full", (4, 3), lambda L: L.PReLU()),
    ("elu", (4, 3), lambda L: L.ELU(alpha=0.7)),
    ("softmax_spatial", (4, 5, 3), lambda L: L.Softmax(axis=1)),
    ("softmax_last", (4, 5, 3), lambda L: L.Softmax()),
    ("rescaling", (4, 5, 3), lambda L: L.Rescaling(1 / 255.0, offset=-0.5)),
    ("normalization", (4, 5, 3), lambda L: L.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 4.0, 0.25])),
    ("dense_rank4", (3, 4, 5), lambda L: L.Dense(6, activation="softmax")),
    ("reshape", (4, 6, 3), lambda L: L.Reshape((6, 4, 3))),
    ("reshape_flat", (4, 6, 3), lambda L: L.Reshape((-1,))),
    ("reshape_to3", (4, 6, 3), lambda L: L.Reshape((8, 9))),
    ("permute", (4, 6, 3), lambda L: L.Permute((2, 3, 1))),
    ("flatten_dense", (4, 6, 3), lambda L: (lambda t: L.Dense(5)(L.Flatten()(t)))),
    ("activation_axis", (4, 5, 3), lambda L: L.Activation("log_softmax")),
    ("dropouts", (4, 5, 3), lambda L: (lambda t: L.SpatialDropout2D(0.3)(L.Dropout(0.5)(t)))),
    ("noise_identity", (4, 3), lambda L: (lambda t: L.ActivityRegularization(0.1)(
        L.Identity()(L.GaussianDropout(0.2)(L.GaussianNoise(0.1)(L.SpatialDropout1D(0.2)(t))))))),
]


# BatchNormalization is always affine (SPEC §4.4): gamma/beta exist even without center/scale.
EXTRA_PARAMS = {"bn_noaffine": 6}


@pytest.mark.parametrize("case", SINGLE_CASES, ids=[c[0] for c in SINGLE_CASES])
def test_single_layer_matches_keras(keras, case):
    _, shape, make = case
    layer = make(keras.layers)
    model = single(keras, layer, shape)
    compare(keras, model, shape, seed=len(case[0]), extra_params=EXTRA_PARAMS.get(case[0], 0))


@pytest.mark.parametrize("case", [c for c in SINGLE_CASES if c[0].startswith(
    ("conv", "depthwise", "separable", "bn", "ln_", "groupnorm", "prelu", "dense"))],
    ids=lambda c: c[0])
def test_h5_weight_conversion_agrees_with_our_layout(keras, case):
    """network/h5_weights.keras_to_torch (the .h5 importer) gives the tensors our modules expect."""
    h5w = pytest.importorskip("rmldnn_py.network.h5_weights")
    _, shape, make = case
    model = single(keras, make(keras.layers), shape)
    randomize(model, np.random.default_rng(1))
    for layer in model.layers[1:]:
        if not layer.weights:
            continue
        weights = {w.name.split("/")[-1]: np.asarray(w.numpy()) for w in layer.weights}
        theirs = h5w.keras_to_torch(type(layer).__name__, weights, layer=layer.name)
        ours = keras_to_torch(layer, None)
        assert set(theirs) == set(ours)
        for tensor, (_, value) in theirs.items():
            np.testing.assert_array_equal(value, ours[tensor].numpy(), err_msg=f"{layer.name}.{tensor}")


MERGES = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


@pytest.mark.parametrize("merge", MERGES + ["Concatenate", "Concatenate1"])
def test_merge_layers_match_keras(keras, merge):
    L = keras.layers
    inp = keras.Input((5, 4, 3), name="inp")
    a = L.Conv2D(4, 1, name="a")(inp)
    b = L.Conv2D(4, 3, padding="same", name="b")(inp)
    if merge == "Concatenate":
        out = L.Concatenate(name="merge")([a, b, inp])
    elif merge == "Concatenate1":
        out = L.Concatenate(axis=1, name="merge")([a, b])
    else:
        out = getattr(L, merge)(name="merge")([a, b])
    compare(keras, keras.Model(inp, out), (5, 4, 3), seed=len(merge))


def test_channels_first_model_matches_keras(keras):
    """A network written entirely in channels_first terms: Keras tensors are our tensors."""
    L = keras.layers
    cf = {"data_format": "channels_first"}
    inp = keras.Input((2, 7, 6), name="x")
    x = L.Conv2D(4, 3, strides=2, padding="same", **cf)(inp)
    x = L.BatchNormalization(axis=1)(x)
    x = L.ZeroPadding2D(((1, 0), (0, 1)), **cf)(x)
    x = L.MaxPooling2D(2, padding="same", **cf)(x)
    x = L.UpSampling2D(2, interpolation="bilinear", **cf)(x)
    a = L.Conv2DTranspose(3, 3, strides=2, padding="same", **cf)(x)
    b = L.SeparableConv2D(3, 3, padding="same", strides=2, **cf)(a)
    c = L.Concatenate(axis=1)([b, L.AveragePooling2D(2, **cf)(a)])
    f = L.Flatten(**cf)(c)
    model = keras.Model(inp, L.Dense(3, activation="softmax")(f))
    compare(keras, model, (2, 7, 6), channels_last=False)
    dense = keras.Model(inp, L.Dense(5, activation="softmax")(L.Conv2D(4, 1, **cf)(inp)))  # on the last axis
    compare(keras, dense, (2, 7, 6), channels_last=False)
    gap = keras.Model(inp, L.GlobalAveragePooling2D(keepdims=True, **cf)(L.Conv2D(4, 1, **cf)(inp)))
    compare(keras, gap, (2, 7, 6), channels_last=False)


def test_small_resnet_block_matches_keras(keras):
    """A graph with a skip connection, BN, global pooling and a classifier head; then the same
    JSON with Keras-2 style layer names containing '/' and '.' (SPEC §4.10)."""
    L = keras.layers
    inp = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1_conv")(inp)
    x = L.BatchNormalization(name="conv1_bn")(x)
    x = L.Activation("relu", name="relu")(x)
    y = L.Conv2D(8, 3, padding="same", name="branch")(x)
    x = L.Add(name="add")([x, y])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inp, out, name="tiny_resnet")
    compare(keras, model, (8, 8, 3))
    text = model.to_json()
    net = build_network(json.loads(text), config_path="c.json")
    assert net.model_name == "tiny_resnet"
    assert net.num_operations == 9  # input + 7 layers + fused softmax
    renamed = text.replace('"conv1_conv"', '"conv1/conv"').replace('"conv1_bn"', '"conv1.bn"')
    for form in (json.loads(renamed), to_keras2_json(json.loads(renamed), "Model")):
        net2 = build_network(form, config_path="c.json")
        keys = set(net2.state_dict())
        assert {"conv1/conv.weight", "conv1_bn.running_mean", "conv1_bn.weight"} <= keys
        assert "conv1/conv.bias" not in keys
        sd = {k.replace("conv1_conv", "conv1/conv"): v for k, v in net.state_dict().items()}
        net2.load_state_dict(sd)
        net.eval()
        net2.eval()
        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(net2(x), net(x))


def test_unet2d_with_transposed_convs_and_skips_matches_keras(keras):
    """A 2D UNet: encoder Conv2D+BN+MaxPool, decoder Conv2DTranspose (stride 2, same) with skip
    Concatenate on the channel axis, softmax head; odd input width so `same` padding is asymmetric
    in the encoder (checked in Keras 3 and tf.keras 2 JSON forms)."""
    L = keras.layers
    inp = keras.Input((16, 12, 3), name="img")
    c1 = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    p1 = L.MaxPooling2D(2, name="p1")(c1)
    c2 = L.Conv2D(8, 3, padding="same", name="c2")(p1)
    c2 = L.BatchNormalization(name="bn2")(c2)
    c2 = L.Activation("relu", name="r2")(c2)
    p2 = L.MaxPooling2D(2, name="p2")(c2)
    b = L.Conv2D(16, 3, padding="same", activation="relu", name="bottom")(p2)
    u2 = L.Conv2DTranspose(8, 3, strides=2, padding="same", name="up2")(b)
    m2 = L.Concatenate(name="cat2")([u2, c2])
    d2 = L.Conv2D(8, 3, padding="same", activation="relu", name="d2")(m2)
    u1 = L.Conv2DTranspose(4, 2, strides=2, padding="valid", name="up1")(d2)
    m1 = L.Concatenate(axis=3, name="cat1")([c1, u1])
    out = L.Conv2D(3, 1, activation="softmax", name="seg")(m1)
    compare(keras, keras.Model(inp, out, name="unet2d"), (16, 12, 3))


def test_unet3d_matches_keras(keras):
    """A 3D UNet: Conv3D + BN + MaxPooling3D down, UpSampling3D + Concatenate + Conv3D up,
    ZeroPadding3D before a `valid` conv (the seismic network's pattern), log_softmax head."""
    L = keras.layers
    inp = keras.Input((8, 8, 6, 1), name="vol")
    z = L.ZeroPadding3D(1, name="pad1")(inp)
    c1 = L.Conv3D(4, 3, activation="relu", name="c1")(z)
    c1 = L.BatchNormalization(name="bn1")(c1)
    p1 = L.MaxPooling3D(2, name="p1")(c1)
    c2 = L.Conv3D(8, 3, padding="same", activation="relu", name="c2")(p1)
    u1 = L.UpSampling3D(2, name="up1")(c2)
    m1 = L.Concatenate(name="cat1")([u1, c1])
    d1 = L.Conv3D(4, 3, padding="same", activation="relu", name="d1")(m1)
    out = L.Conv3D(3, 1, activation="log_softmax", name="seg")(d1)
    compare(keras, keras.Model(inp, out, name="unet3d"), (8, 8, 6, 1), seed=1)


def test_sequential_mnist_matches_keras(keras):
    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
        L.Dense(10, activation="log_softmax")], name="sequential")
    compare(keras, model, (28, 28, 1))
    net = build_network(json.loads(model.to_json()), config_path="c.json")
    assert (net.model_name, net.num_parameters(), net.num_operations) == ("sequential", 34826, 11)


@pytest.mark.parametrize("app,kwargs", [("MobileNetV2", {"alpha": 0.35}), ("EfficientNetB0", {})])
def test_keras_applications_match_keras(keras, app, kwargs):
    """Whole Keras application graphs (ZeroPadding, DepthwiseConv, ReLU6, BN, Add, Multiply,
    Rescaling, Normalization, Reshape, swish, GlobalAveragePooling, Dense) on a small input."""
    model = getattr(keras.applications, app)(weights=None, input_shape=(32, 32, 3), classes=5, **kwargs)
    compare(keras, model, (32, 32, 3), forms=("k3", "k2"), scale=0.05)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "selu",
                                  "softplus", "softsign", "swish", "silu", "gelu", "hard_sigmoid",
                                  "relu6", "exponential", "leaky_relu", "linear", "mish",
                                  "hard_silu", "log_sigmoid"])
def test_activation_functions_match_keras(keras, name):
    model = single(keras, keras.layers.Dense(4, activation=name, name="d"), (3, 5))
    compare(keras, model, (3, 5), forms=("k3",))
