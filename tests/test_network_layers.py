"""Layer semantics that need no Keras: TensorFlow 'same' padding arithmetic, pooling with
asymmetric padding (TF semantics: padded cells never win a max and are excluded from averages),
padding/cropping forms, activation lookup."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rmldnn_py.errors import NetworkError
from rmldnn_py.network.activations import ACTIVATIONS, activation_name, is_linear, make_activation
from rmldnn_py.network.layers import LAYERS
from rmldnn_py.network.layers.base import tf_same_pad


def build(cls, cfg, shape):
    module, out = LAYERS.get(cls).build(cfg, [tuple(shape)])
    return module.eval(), out


def tf_pool_reference(x: np.ndarray, k: tuple, s: tuple, kind: str) -> np.ndarray:
    """Naive TF 'same' pooling of (C, H, W) (reference implementation)."""
    c, h, w = x.shape
    oh, ow = math.ceil(h / s[0]), math.ceil(w / s[1])
    ph = tf_same_pad(h, k[0], s[0])[0]
    pw = tf_same_pad(w, k[1], s[1])[0]
    out = np.zeros((c, oh, ow), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - ph, j * s[1] - pw
            win = x[:, max(r0, 0):min(r0 + k[0], h), max(c0, 0):min(c0 + k[1], w)]
            out[:, i, j] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
    return out


@settings(max_examples=40, deadline=None)
@given(h=st.integers(3, 11), w=st.integers(3, 11), k=st.integers(1, 4), s=st.integers(1, 3),
       kind=st.sampled_from(["max", "avg"]))
def test_same_pooling_matches_tf_semantics(h, w, k, s, kind):
    cls = "MaxPooling2D" if kind == "max" else "AveragePooling2D"
    m, out = build(cls, {"pool_size": k, "strides": s, "padding": "same"}, (2, h, w))
    x = np.random.default_rng(h * w + k).normal(size=(2, h, w)).astype(np.float32)
    y = m(torch.from_numpy(x)[None])[0].numpy()
    ref = tf_pool_reference(x, (k, k), (s, s), kind)
    assert tuple(out) == ref.shape == y.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 4), d=st.integers(1, 3))
def test_tf_same_pad_arithmetic(n, k, s, d):
    before, after = tf_same_pad(n, k, s, d)
    k_eff = (k - 1) * d + 1
    out = math.ceil(n / s)
    assert after - before in (0, 1)  # the extra cell goes at the end
    assert (n + before + after - k_eff) // s + 1 == out or before + after == 0
    m, shape = build("Conv1D", {"filters": 1, "kernel_size": k, "strides": s, "dilation_rate": d, "padding": "same"}, (1, n))
    y = m(torch.randn(1, 1, n))
    assert shape == (1, out) == tuple(y.shape[1:])


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


@pytest.mark.keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(max_examples=15, deadline=None)
@given(h=st.integers(2, 9), w=st.integers(2, 9), k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 2))
def test_same_conv_matches_keras(keras, h, w, k, s, d):
    if s > 1 and d > 1:
        return  # Keras forbids strides > 1 with dilation > 1
    layer = keras.layers.Conv2D(2, k, strides=s, dilation_rate=d, padding="same", use_bias=False)
    x = np.random.default_rng(h + 10 * w).normal(size=(1, h, w, 1)).astype(np.float32)
    ref = np.asarray(keras.ops.convert_to_numpy(layer(x)))
    m, shape = build("Conv2D", {"filters": 2, "kernel_size": k, "strides": s, "dilation_rate": d,
                                "padding": "same", "use_bias": False}, (1, h, w))
    kernel = np.asarray(layer.get_weights()[0])  # (k, k, in, out)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(np.transpose(kernel, (3, 2, 0, 1))))
    y = m(torch.from_numpy(x).movedim(-1, 1)).movedim(1, -1).detach().numpy()
    assert y.shape == ref.shape and shape == (2,) + ref.shape[1:3]
    np.testing.assert_allclose(y, ref, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_explicit_int_padding_is_symmetric():
    m, shape = build("Conv2D", {"filters": 1, "kernel_size": 3, "padding": [1, 2]}, (1, 5, 5))
    assert shape == (1, 5, 7)
    assert m(torch.randn(1, 1, 5, 5)).shape == (1, 1, 5, 7)
    with pytest.raises(NetworkError, match="unsupported padding 'full'"):
        build("Conv2D", {"filters": 1, "kernel_size": 3, "padding": "full"}, (1, 5, 5))


@pytest.mark.parametrize("value,expected", [
    (1, (1, 1, 1, 1)), ([1, 2], (1, 1, 2, 2)), ([[1, 2], [3, 4]], (1, 2, 3, 4))])
def test_zero_padding_forms(value, expected):
    m, shape = build("ZeroPadding2D", {"padding": value}, (2, 4, 5))
    t, b, l, r = expected
    assert shape == (2, 4 + t + b, 5 + l + r)
    y = m(torch.ones(1, 2, 4, 5))
    assert y.shape == (1,) + shape and y.sum() == 2 * 4 * 5
    assert y[0, 0, t, l] == 1 and y[0, 0, t - 1, l] == 0


def test_cropping_forms():
    m, shape = build("Cropping2D", {"cropping": [[1, 0], 2]}, (1, 6, 7))
    x = torch.arange(42.0).reshape(1, 1, 6, 7)
    assert shape == (1, 5, 3)
    torch.testing.assert_close(m(x), x[:, :, 1:, 2:5])
    with pytest.raises(NetworkError, match="removes all of the input"):
        build("Cropping1D", {"cropping": [3, 3]}, (1, 6))


def test_activation_names_case_insensitive_and_objects():
    assert activation_name("ReLU") == "relu"
    assert activation_name({"class_name": "function", "config": "Softmax"}) == "softmax"
    assert activation_name({"class_name": "LeakyReLU", "config": {"negative_slope": 0.2}}) == "leaky_relu"
    assert is_linear(None) and is_linear("linear") and not is_linear("relu")
    act = make_activation("LOG_SOFTMAX_V2", 2)
    torch.testing.assert_close(act(torch.zeros(1, 4)), torch.full((1, 4), -math.log(4)))
    for name in ("swish", "silu", "elu", "selu", "softplus", "softsign", "gelu", "hard_sigmoid", "relu6", "exponential"):
        assert name in ACTIVATIONS
    with pytest.raises(NetworkError, match="unknown activation 'relux'.*Did you mean 'relu'"):
        make_activation("relux", 2)


def test_hard_sigmoid_follows_the_file_keras_version():
    from rmldnn_py.network import build_network

    def net(version):
        spec = {"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "Activation", "config": {"name": "a", "activation": "hard_sigmoid",
                                                    "batch_input_shape": [None, 3]}}]}}
        if version:
            spec["keras_version"] = version
        return build_network(spec, config_path="c.json")

    x = torch.tensor([[-1.0, 0.5, 2.0]])
    torch.testing.assert_close(net("2.4.0")(x), torch.clamp(0.2 * x + 0.5, 0, 1))
    torch.testing.assert_close(net(None)(x), torch.clamp(x / 6 + 0.5, 0, 1))  # Keras 3


def test_reshape_keras_order():
    # Keras (N, 2, 3, 4) -> Reshape((4, 6)): our (N, 4, 2, 3) tensor is viewed channels-last first.
    m, shape = build("Reshape", {"target_shape": [4, 6]}, (4, 2, 3))
    x = torch.randn(2, 4, 2, 3)
    ref = x.movedim(1, -1).reshape(2, 4, 6).movedim(-1, 1)
    assert shape == (6, 4)
    torch.testing.assert_close(m(x), ref)
    with pytest.raises(NetworkError, match=r"cannot reshape input of shape \(4, 2, 3\) \(24 values\) to \(5, 5\)"):
        build("Reshape", {"target_shape": [5, 5]}, (4, 2, 3))


def test_dense_on_rank4_acts_on_channels():
    m, shape = build("Dense", {"units": 5}, (3, 4, 6))
    assert shape == (5, 4, 6)
    x = torch.randn(2, 3, 4, 6)
    torch.testing.assert_close(m(x), torch.einsum("nchw,oc->nohw", x, m.weight) + m.bias.view(1, -1, 1, 1))


# Minimal (config, input shapes) per registered layer type: every registry entry must appear here
# (the registry-driven contract test below fails for a newly registered name without a case).
_CONV = {"filters": 3, "kernel_size": 2, "padding": "same", "strides": 2}
CONTRACT = {
    "InputLayer": ({}, [(2, 5, 5)]),
    "Dense": ({"units": 3, "activation": "relu"}, [(4,)]),
    "Activation": ({"activation": "softmax"}, [(2, 5, 5)]),
    "GaussianNoise": ({"stddev": 0.1}, [(2, 5)]),
    "GaussianDropout": ({"rate": 0.1}, [(2, 5)]),
    "ActivityRegularization": ({}, [(3,)]),
    "Identity": ({}, [(3,)]),
    "Dropout": ({"rate": 0.5}, [(2, 5)]),
    "Flatten": ({}, [(2, 3, 4)]),
    "Reshape": ({"target_shape": [4, -1]}, [(2, 3, 4)]),
    "Permute": ({"dims": [2, 1, 3]}, [(2, 3, 4)]),
    "BatchNormalization": ({}, [(2, 3, 4)]),
    "LayerNormalization": ({"axis": [1, 2]}, [(2, 3, 4)]),
    "GroupNormalization": ({"groups": 2}, [(4, 3, 4)]),
    "InstanceNormalization": ({"affine": True}, [(2, 3, 4)]),
    "Concatenate": ({"axis": 1}, [(2, 3, 4), (2, 5, 4)]),
    "ReLU": ({"max_value": 6}, [(2, 3)]),
    "ThresholdedReLU": ({"theta": 0.5}, [(2, 3)]),
    "LeakyReLU": ({"alpha": 0.1}, [(2, 3)]),
    "ELU": ({}, [(2, 3)]),
    "Softmax": ({"axis": 1}, [(2, 3, 4)]),
    "PReLU": ({"shared_axes": [1]}, [(2, 3, 4)]),
    "Rescaling": ({"scale": 0.5, "offset": 1}, [(2, 3, 4)]),
    "Normalization": ({"mean": [1.0, 2.0], "variance": [4.0, 9.0]}, [(2, 3, 4)]),
}
for _m in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
    CONTRACT[_m] = ({}, [(2, 3, 4), (2, 1, 4)])
for _nd in (1, 2, 3):
    _shape = [(2,) + (5,) * _nd]
    for _c in (f"Conv{_nd}D", f"Convolution{_nd}D", f"Conv{_nd}DTranspose"):
        CONTRACT[_c] = (_CONV, _shape)
    CONTRACT[f"DepthwiseConv{_nd}D"] = ({"kernel_size": 3, "depth_multiplier": 2, "padding": "same"}, _shape)
    if _nd < 3:
        CONTRACT[f"SeparableConv{_nd}D"] = (_CONV, _shape)
    for _p in (f"MaxPooling{_nd}D", f"MaxPool{_nd}D", f"AveragePooling{_nd}D", f"AvgPool{_nd}D"):
        CONTRACT[_p] = ({"pool_size": 2, "padding": "same"}, _shape)
    for _p in (f"GlobalMaxPooling{_nd}D", f"GlobalMaxPool{_nd}D", f"GlobalAveragePooling{_nd}D", f"GlobalAvgPool{_nd}D"):
        CONTRACT[_p] = ({}, _shape)
    CONTRACT[f"SpatialDropout{_nd}D"] = ({"rate": 0.2}, _shape)
    CONTRACT[f"UpSampling{_nd}D"] = ({"size": 2}, _shape)
    CONTRACT[f"ZeroPadding{_nd}D"] = ({"padding": 1}, _shape)
    CONTRACT[f"Cropping{_nd}D"] = ({"cropping": 1}, _shape)


def test_every_registered_layer_has_a_contract_case():
    assert sorted(set(LAYERS.names()) - set(CONTRACT)) == []


@pytest.mark.parametrize("cls", sorted(CONTRACT))
def test_layer_contract(cls):
    """Builder output shape = forward shape = output_shape(); tensors owned directly (one level);
    train and eval both run; trainable tensors get gradients."""
    cfg, shapes = CONTRACT[cls]
    entry = LAYERS.get(cls)
    module, out = entry.build(dict(cfg), list(shapes))
    assert tuple(module.output_shape(list(shapes))) == tuple(out)
    xs = [torch.randn((2,) + s, requires_grad=True) for s in shapes]
    for mode in (True, False):
        module.train(mode)
        y = module(*xs) if entry.merge else module(xs[0])
        assert tuple(y.shape) == (2,) + tuple(out), cls
    assert all("." not in n for n, _ in module.named_parameters())
    assert all("." not in n for n, _ in module.named_buffers())
    y.float().sum().backward()
    for n, p in module.named_parameters():
        assert p.grad is not None, f"{cls}.{n} got no gradient"
