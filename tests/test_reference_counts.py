"""SPEC §4.7: the Total / Trainable parameters and the operations printed in the "Neural Network"
block for the reference networks of the table, with the networks rebuilt in Keras 3 (the tutorial
files are not part of the repository). Each architecture is checked twice: Keras' own counts
(:func:`keras_helpers.keras_counts`: no running statistics, always-affine BatchNormalization) must
give the table's numbers, so the reconstruction is the reference network; and rmldnn_py's counts
from the Keras 3 JSON and from its tf.keras-2 rewrite must print them.

The Poisson network uses InstanceNormalization with PyTorch-style keys, which is not a Keras layer:
it is written directly as a tf.keras-2.1.5-style JSON and its parameter count is checked by
arithmetic instead of by Keras.
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


@pytest.mark.keras
def test_brain_resunet50(keras):
    """T-BRAIN / T-HPO ``layers_resunet.json``: the segmentation_models ``Unet('resnet50')`` on
    256×256×3 with one sigmoid class. Encoder: the classification_models (qubvel) pre-activation
    ResNet50 (``bn_data`` BatchNormalization with ``scale: false`` on the input, Conv2D without
    bias, bottleneck blocks whose first unit has a 1×1 ``sc`` shortcut on the pre-activated input,
    final ``bn1``/``relu1``); decoder: five UpSampling2D (+ Concatenate with ``stage4_unit1_relu1``,
    ``stage3_unit1_relu1``, ``stage2_unit1_relu1``, ``relu0``) + 2 × (Conv2D 3×3 without bias, BN,
    ReLU) blocks with 256, 128, 64, 32, 16 filters; ``final_conv`` Conv2D 3×3 1 filter +
    Activation ``sigmoid``. rmldnn_py adds the gamma of ``bn_data`` (always affine), hence the
    ``Skipping parameter bn_data.weight`` line of SPEC §11.7."""
    L = keras.layers
    bn = dict(axis=3, momentum=0.99, epsilon=2e-5)
    conv = dict(kernel_initializer="he_uniform", use_bias=False, padding="valid")
    inp = keras.Input((256, 256, 3), name="data")
    x = L.BatchNormalization(name="bn_data", scale=False, **bn)(inp)
    x = L.ZeroPadding2D(3)(x)
    x = L.Conv2D(64, 7, strides=2, name="conv0", **conv)(x)
    x = L.BatchNormalization(name="bn0", **bn)(x)
    x = L.Activation("relu", name="relu0")(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.MaxPooling2D(3, strides=2, name="pooling0")(x)
    for stage, units in enumerate((3, 4, 6, 3)):
        filters = 64 * 2 ** stage
        for unit in range(units):
            name = f"stage{stage + 1}_unit{unit + 1}_"
            strides = 2 if stage > 0 and unit == 0 else 1
            y = L.BatchNormalization(name=name + "bn1", **bn)(x)
            y = L.Activation("relu", name=name + "relu1")(y)
            shortcut = (L.Conv2D(filters * 4, 1, strides=strides, name=name + "sc", **conv)(y)
                        if unit == 0 else x)
            y = L.Conv2D(filters, 1, name=name + "conv1", **conv)(y)
            y = L.BatchNormalization(name=name + "bn2", **bn)(y)
            y = L.Activation("relu", name=name + "relu2")(y)
            y = L.ZeroPadding2D(1)(y)
            y = L.Conv2D(filters, 3, strides=strides, name=name + "conv2", **conv)(y)
            y = L.BatchNormalization(name=name + "bn3", **bn)(y)
            y = L.Activation("relu", name=name + "relu3")(y)
            y = L.Conv2D(filters * 4, 1, name=name + "conv3", **conv)(y)
            x = L.Add()([y, shortcut])
    x = L.BatchNormalization(name="bn1", **bn)(x)
    x = L.Activation("relu", name="relu1")(x)
    encoder = keras.Model(inp, x)
    skips = [encoder.get_layer(n).output
             for n in ("stage4_unit1_relu1", "stage3_unit1_relu1", "stage2_unit1_relu1", "relu0")]
    for i, filters in enumerate((256, 128, 64, 32, 16)):
        x = L.UpSampling2D(2, name=f"decoder_stage{i}_upsampling")(x)
        if i < len(skips):
            x = L.Concatenate(axis=3, name=f"decoder_stage{i}_concat")([x, skips[i]])
        for part in "ab":
            name = f"decoder_stage{i}{part}_"
            x = L.Conv2D(filters, 3, padding="same", use_bias=False,
                         kernel_initializer="he_uniform", name=name + "conv")(x)
            x = L.BatchNormalization(axis=3, name=name + "bn")(x)
            x = L.Activation("relu", name=name + "relu")(x)
    x = L.Conv2D(1, 3, padding="same", name="final_conv")(x)
    x = L.Activation("sigmoid", name="sigmoid")(x)
    model = keras.Model(inp, x, name="model_1")
    assert model.output_shape == (None, 256, 256, 1)
    _check(model, ("model_1", 32_513_559, 32_513_559, 231))


@pytest.mark.keras
def test_seismic_unet3d(keras):
    """T-SEIS ``unet3d_seismic.json`` (Keras 2.3 ``Model`` "Unet-3D", 64×64×256×1): four encoder
    levels ZeroPadding3D(1) + Conv3D 3³ ``valid`` (64, 128, 256, 256; linear) + BatchNormalization +
    Activation relu + MaxPooling3D 2; bottom ZeroPadding3D + Conv3D 512 relu + BN; three decoder
    levels UpSampling3D + Concatenate (with the outputs of the 3rd, 2nd, 1st pooling) +
    ZeroPadding3D + Conv3D (256, 128, 64) relu + BN; UpSampling3D, two Conv3D 64 3³ ``same`` relu,
    Conv3D 4 3³ ``same`` log_softmax."""
    L = keras.layers
    inp = keras.Input((64, 64, 256, 1))
    x, pools = inp, []
    for filters in (64, 128, 256, 256):
        x = L.ZeroPadding3D(1)(x)
        x = L.Conv3D(filters, 3)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
        x = L.MaxPooling3D(2)(x)
        pools.append(x)
    x = L.ZeroPadding3D(1)(x)
    x = L.Conv3D(512, 3, activation="relu")(x)
    x = L.BatchNormalization()(x)
    for filters, skip in zip((256, 128, 64), pools[2::-1]):
        x = L.UpSampling3D(2)(x)
        x = L.Concatenate()([x, skip])
        x = L.ZeroPadding3D(1)(x)
        x = L.Conv3D(filters, 3, activation="relu")(x)
        x = L.BatchNormalization()(x)
    x = L.UpSampling3D(2)(x)
    x = L.Conv3D(64, 3, padding="same", activation="relu")(x)
    x = L.Conv3D(64, 3, padding="same", activation="relu")(x)
    x = L.Conv3D(4, 3, padding="same", activation="log_softmax")(x)
    model = keras.Model(inp, x, name="Unet-3D")
    assert model.output_shape == (None, 64, 64, 256, 4)
    _check(model, ("Unet-3D", 13_616_580, 13_616_580, 50))


def _poisson_unet3d_json() -> dict:
    """T-POISSON ``unet3d_poisson.json`` in the hand-written Keras 2.1.5 form of the tutorial:
    five Conv3D 4³ stride 2 ``same`` without bias (16, 32, 64, 128, 128) + InstanceNormalization
    (PyTorch keys, affine false) + LeakyReLU 0.2, Dropout after the 4th and 5th; four
    Conv3DTranspose 4³ stride 2 without bias (128, 64, 32, 16) + InstanceNormalization + ReLU
    (+ Dropout for the first two) + Concatenate with the matching encoder output; UpSampling3D,
    Conv3D 1 filter 3³ ``same`` with bias, Activation sigmoid."""
    layers: list[dict] = []

    def add(cls: str, name: str, cfg: dict, *inputs: str) -> str:
        layers.append({"class_name": cls, "name": name, "config": {"name": name, **cfg},
                       "inbound_nodes": [[[i, 0, 0, {}] for i in inputs]] if inputs else []})
        return name

    def conv(cls: str, name: str, filters: int, src: str, k: int = 4, stride: int = 2,
             bias: bool = False) -> str:
        return add(cls, name, {"filters": filters, "kernel_size": [k] * 3, "strides": [stride] * 3,
                               "padding": "same", "data_format": "channels_last",
                               "use_bias": bias}, src)

    def norm(name: str, src: str) -> str:
        return add("InstanceNormalization", name, {"affine": False, "track_running_stats": False,
                                                   "momentum": 0.1, "epsilon": 1e-5}, src)

    x = add("InputLayer", "input_1", {"batch_input_shape": [None, 64, 64, 64, 1],
                                      "dtype": "float32", "sparse": False})
    down = {}
    for i, filters in enumerate((16, 32, 64, 128, 128), start=1):
        x = conv("Conv3D", f"conv3d_down_{i}", filters, x)
        x = norm(f"norm_down_{i}", x)
        x = add("LeakyReLU", f"leaky_relu_down_{i}", {"alpha": 0.2}, x)
        if i >= 4:
            x = add("Dropout", f"dropout_down_{i}", {"rate": 0.5}, x)
        down[i] = x
    for i, filters in zip((4, 3, 2, 1), (128, 64, 32, 16)):
        x = conv("Conv3DTranspose", f"conv3d_tran_up_{i}", filters, x)
        x = norm(f"norm_up_{i}", x)
        x = add("ReLU", f"relu_up_{i}", {}, x)
        if i >= 3:
            x = add("Dropout", f"dropout_up_{i}", {"rate": 0.5}, x)
        x = add("Concatenate", f"concatenate_{i}", {"axis": -1}, down[i], x)
    x = add("UpSampling3D", "upsample_1", {"size": [2, 2, 2], "data_format": "channels_last"}, x)
    x = conv("Conv3D", "conv3d_final", 1, x, k=3, stride=1, bias=True)
    x = add("Activation", "sigmoid", {"activation": "sigmoid"}, x)
    return {"class_name": "Model", "keras_version": "2.1.5", "backend": "tensorflow",
            "config": {"name": "Uned3D depth-5 (Poisson)", "layers": layers,
                       "input_layers": [["input_1", 0, 0]], "output_layers": [["sigmoid", 0, 0]]}}


def test_poisson_unet3d_instance_norm():
    """T-POISSON: InstanceNormalization with ``affine: false`` has no parameters; the count is
    64·(1·16 + 16·32 + 32·64 + 64·128 + 128·128) encoder + 64·(128·128 + 256·64 + 128·32 + 64·16)
    decoder + 27·32 + 1 final = 4,163,425."""
    enc = 64 * (1 * 16 + 16 * 32 + 32 * 64 + 64 * 128 + 128 * 128)
    dec = 64 * (128 * 128 + 256 * 64 + 128 * 32 + 64 * 16)
    assert enc + dec + 27 * 32 + 1 == 4_163_425
    spec = _poisson_unet3d_json()
    net = build_network(spec, config_path="unet3d_poisson.json")
    assert _printed(net) == ("Uned3D depth-5 (Poisson)", 4_163_425, 4_163_425, 39)
