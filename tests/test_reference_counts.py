"""SPEC §4.7: the Total / Trainable parameters and the operations printed in the "Neural Network"
block for the reference networks of the table, with the networks rebuilt in Keras 3 (the tutorial
files are not part of the repository). Each architecture is checked twice: Keras' own counts
(:func:`keras_helpers.keras_counts`: no running statistics, always-affine BatchNormalization) must
give the table's numbers, so the reconstruction is the reference network; and rmldnn_py's counts
from the Keras 3 JSON and from its tf.keras-2 rewrite must print them.

Not reconstructed (their exact architectures are not derivable from the SPEC): brain/HPO
``layers_resunet.json`` (model_1, 32,513,559 / 231), seismic ``unet3d_seismic.json`` (Unet-3D,
13,616,580 / 50), Poisson ``unet3d_poisson.json`` (4,163,425 / 39).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from keras_helpers import keras_counts, to_keras2_json
from rmldnn_py.network import build_network

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]


def _printed(net) -> tuple[str, int, int, int]:
    """The values of the "Neural Network" block (engine/run.py prints exactly these)."""
    return (net.model_name, net.num_parameters(), net.num_parameters(trainable_only=True),
            net.num_operations)


# ------------------------------------------------------------------------------ without Keras

def test_smoke_inline_layers():
    cfg = json.loads((REPO / "configs" / "config_rmldnn_test.json").read_text())
    net = build_network(cfg["neural_network"]["layers"], config_path="config_rmldnn_test.json")
    assert _printed(net) == ("Unknown", 21_432, 21_432, 14)


def test_mnist_keras_net_file():
    net = build_network(str(REPO / "networks" / "mnist_keras_net.json"), config_path="c.json")
    assert _printed(net) == ("sequential", 34_826, 34_826, 11)


# ------------------------------------------------------------------------------ Keras rebuilds

@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def _check(keras_model, expected: tuple[str, int, int, int], *, k2_activation: dict | None = None):
    name, total, trainable, ops = expected
    assert keras_model.name == name
    assert keras_counts(keras_model) == (total, trainable), "the Keras rebuild is not the reference"
    k3 = json.loads(keras_model.to_json())
    k2 = to_keras2_json(k3, "Functional")
    if k2_activation:  # how tf.keras >= 2.9 serialises some activations (log_softmax_v2)
        text = json.dumps(k2)
        for old, new in k2_activation.items():
            text = text.replace(f'"activation": "{old}"', f'"activation": "{new}"')
        k2 = json.loads(text)
    for form, spec in (("keras3", k3), ("tf.keras2", k2)):
        net = build_network(spec, config_path=f"{name}.json")
        assert _printed(net) == expected, form


@pytest.mark.keras
def test_smoke_network_rebuilt_in_keras(keras):
    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(10, 5), L.MaxPooling2D(2), L.Activation("relu"),
        L.Conv2D(20, 5), L.SpatialDropout2D(0.0), L.MaxPooling2D(2), L.Activation("relu"), L.Flatten(),
        L.Dense(50), L.Activation("relu"), L.Dropout(0.0), L.Dense(2), L.Activation("log_softmax")],
        name="sequential")
    # a Sequential with an InputLayer counts the input like the inline form's implicit input
    _check(model, ("sequential", 21_432, 21_432, 14))


@pytest.mark.keras
def test_mnist_rebuilt_in_keras(keras):
    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
        L.Dense(10, activation="log_softmax")], name="sequential")
    _check(model, ("sequential", 34_826, 34_826, 11))


@pytest.mark.keras
def test_birds_resnet50_transfer(keras):
    """T-BIRDS ``layers.json``: ResNet50(include_top=False, pooling='avg'), every layer frozen, +
    ``dense`` Dense 400 log_softmax (trainable)."""
    base = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                       input_shape=(224, 224, 3))
    for layer in base.layers:
        layer.trainable = False
    out = keras.layers.Dense(400, activation="log_softmax", name="dense")(base.output)
    model = keras.Model(base.input, out, name="model")
    _check(model, ("model", 24_354_192, 819_600, 178))


@pytest.mark.keras
def test_satellite_resnet50(keras):
    """T-SAT ``network.json``: ResNet50 on 64×64×3 with Conv2D without bias and frozen,
    BatchNormalization center/scale false (trainable; always affine in rmldnn_py), average
    pooling, Dense 10 without bias and ``log_softmax_v2``."""
    base = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                       input_shape=(64, 64, 3))
    spec = json.loads(base.to_json())
    for entry in spec["config"]["layers"]:
        cfg = entry["config"]
        if entry["class_name"] == "Conv2D":
            cfg["use_bias"], cfg["trainable"] = False, False
        elif entry["class_name"] == "BatchNormalization":
            cfg["center"], cfg["scale"] = False, False
    base = keras.models.model_from_json(json.dumps(spec))
    out = keras.layers.Dense(10, use_bias=False, activation="log_softmax", name="dense")(base.output)
    model = keras.Model(base.input, out, name="model")
    _check(model, ("model", 23_528_512, 73_600, 178), k2_activation={"log_softmax": "log_softmax_v2"})


def _resnet50_encoder(keras, size: int):
    """The inpainting encoder: ResNet50 (include_top=False) up to the last BatchNormalization
    (``bn5c_branch2c`` in keras_applications naming, ``conv5_block3_3_bn`` in Keras 3)."""
    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(size, size, 3))
    return base.input, base.get_layer("conv5_block3_3_bn").output


@pytest.mark.keras
def test_inpainting_feature_extractor(keras):
    """T-INPAINT step 1 ``network_resnet50_feature_extract.json``: encoder on 128×128×3 + five
    Conv2DTranspose 4×4 stride 2 ``same`` (512, 256, 128, 64 relu; 3 sigmoid)."""
    inp, x = _resnet50_encoder(keras, 128)
    for i, filters in enumerate((512, 256, 128, 64, 3), start=1):
        x = keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same",
                                         activation="sigmoid" if filters == 3 else "relu",
                                         name=f"decoder_layer_{i}")(x)
    model = keras.Model(inp, x, name="model_1")
    assert model.output_shape == (None, 128, 128, 3)
    _check(model, ("model_1", 43_068_355, 43_068_355, 183))


@pytest.mark.keras
def test_inpainting_classifier(keras):
    """T-INPAINT step 2 ``network_resnet50_classifier.json``: the same encoder with its
    BatchNormalization layers frozen (the committed file, SPEC §12 Q16), Flatten, ``dense_1``
    Dense 8 log_softmax."""
    inp, x = _resnet50_encoder(keras, 128)
    x = keras.layers.Flatten(name="flatten_1")(x)
    x = keras.layers.Dense(8, activation="log_softmax", name="dense_1")(x)
    model = keras.Model(inp, x, name="model_2")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    _check(model, ("model_2", 23_796_744, 23_743_624, 176))


@pytest.mark.keras
def test_pets_xception_unet(keras):
    """T-PETS ``network_xception2D.json``: the keras.io "Image segmentation with a U-Net-like
    architecture" model (Xception-style encoder, Conv2DTranspose/UpSampling2D decoder with
    residual Adds), 160×160×3 → 3 classes softmax."""
    L = keras.layers
    inputs = keras.Input((160, 160, 3))
    x = L.Conv2D(32, 3, strides=2, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    previous = x
    for filters in (64, 128, 256):
        x = L.Activation("relu")(x)
        x = L.SeparableConv2D(filters, 3, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
        x = L.SeparableConv2D(filters, 3, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = L.Conv2D(filters, 1, strides=2, padding="same")(previous)
        x = L.Add()([x, residual])
        previous = x
    for filters in (256, 128, 64, 32):
        x = L.Activation("relu")(x)
        x = L.Conv2DTranspose(filters, 3, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
        x = L.Conv2DTranspose(filters, 3, padding="same")(x)
        x = L.BatchNormalization()(x)
        x = L.UpSampling2D(2)(x)
        residual = L.UpSampling2D(2)(previous)
        residual = L.Conv2D(filters, 1, padding="same")(residual)
        x = L.Add()([x, residual])
        previous = x
    outputs = L.Conv2D(3, 3, activation="softmax", padding="same")(x)
    model = keras.Model(inputs, outputs, name="Xception_Unet2d")
    _check(model, ("Xception_Unet2d", 2_055_203, 2_055_203, 73))
