"""Tests of the configuration package (SPEC §3): schema, loading, messages and typed values.

Every tutorial config of SPEC §11 is reproduced verbatim and must load without errors or
warnings. Error and warning texts are checked exactly where the SPEC or the brief gives them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from rmldnn_py.config import load_config as lazy_load_config
from rmldnn_py.config.load import load_config, parse_config, schema
from rmldnn_py.config.types import Config, SlicerConfig, TransformSpec
from rmldnn_py.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------
# The tutorial configs (SPEC §11), verbatim
# --------------------------------------------------------------------------------------------

SMOKE = """
{"neural_network": {
  "outfile": "out_dnn_mnist_sgd.txt", "num_epochs": 10,
  "data": {"input_type": "images", "input_path": "./data/mnist_jpg/training/", "test_input_path": "./data/mnist_jpg/testing/",
           "target_type": "labels", "batch_size": 16, "training_tag": "training", "test_tag": "testing",
           "grayscale": true, "transforms": [{"resize": [28, 28]}]},
  "optimizer": {"type": "SGD", "learning_rate": 0.01, "momentum": 0.5},
  "loss": {"function": "NLL"},
  "layers": [
    {"class_name": "Conv2D", "config": {"name": "conv1", "batch_input_shape": [null, 28, 28, 1], "filters": 10, "kernel_size": [5, 5], "activation": "linear", "use_bias": true}},
    {"class_name": "MaxPooling2D", "config": {"name": "max_pool_1", "pool_size": [2, 2]}},
    {"class_name": "Activation", "config": {"name": "relu_1", "trainable": true, "activation": "relu"}},
    {"class_name": "Conv2D", "config": {"name": "conv2", "filters": 20, "kernel_size": [5, 5], "activation": "linear"}},
    {"class_name": "SpatialDropout2D", "config": {"name": "spat_drop", "rate": 0}},
    {"class_name": "MaxPooling2D", "config": {"name": "max_pool_2", "pool_size": [2, 2]}},
    {"class_name": "Activation", "config": {"name": "relu_2", "trainable": true, "activation": "relu"}},
    {"class_name": "Flatten", "config": {"name": "flatten_1", "trainable": true, "data_format": "channels_last"}},
    {"class_name": "Dense", "config": {"name": "fc1", "units": 50, "activation": "linear", "use_bias": true}},
    {"class_name": "Activation", "config": {"name": "relu_3", "trainable": true, "activation": "relu"}},
    {"class_name": "Dropout", "config": {"name": "dropout", "rate": 0}},
    {"class_name": "Dense", "config": {"name": "fc2", "units": 2, "activation": "linear", "use_bias": true}},
    {"class_name": "Activation", "config": {"name": "softmax", "trainable": true, "activation": "log_softmax", "axis": 1}}
  ]}}
"""

MNIST_TRAIN = """
{"neural_network": {"outfile": "out_mnist.txt", "num_epochs": 20, "layers": "./mnist_keras_net.json",
  "checkpoints": {"save": "./mnist_model/", "interval": 20},
  "data": {"input_type": "images", "target_type": "labels", "input_path": "./mnist/training/", "test_input_path": "./mnist/testing/",
           "batch_size": 128, "grayscale": true, "preload": true},
  "optimizer": {"type": "Adam", "learning_rate": 1e-4}, "loss": {"function": "NLL"}}}
"""

MNIST_TEST = """
{"neural_network": {"layers": "./mnist_keras_net.json",
  "checkpoints": {"load": "./mnist_model/model_checkpoint_20.pt"},
  "data": {"input_type": "images", "test_input_path": "./mnist_digits/", "test_output_path": "./mnist_predictions/", "grayscale": true}}}
"""

# the old MNIST inference config (seed 000, legacy .npy output through "debug")
MNIST_TEST_OLD = """
{
    "neural_network": {
        "debug": true,
        "outfile": "./mnist_predictions.txt",
        "layers": "./mnist_keras_net.json",
        "checkpoints": {
            "load": "./mnist_model/model_checkpoint_20.pt"
        },
        "data": {
            "input_type": "images",
            "test_input_path": "./mnist_digits/",
            "grayscale": true
        }
    }
}
"""

INPAINT_FEATURES = """
{"neural_network": {"num_epochs": 100, "outfile": "out_inpaint_feature_extraction.txt",
  "layers": "./network_resnet50_feature_extract.json",
  "checkpoints": {"save": "./model_checkpoints/", "interval": 10},
  "data": {"type": "images", "input_path": "./natural_images/training/", "target_path": "./natural_images/training/",
           "batch_size": 128, "preload": true,
           "transforms": [{"resize": [128, 128]}, {"random_patches": {"number": 16, "size": 16}}]},
  "optimizer": {"type": "Adam", "learning_rate": 0.001}, "loss": {"function": "BCE"}}}
"""

INPAINT_CLASSIFIER = """
{"neural_network": {"num_epochs": 100, "outfile": "out_inpaint_classifier.txt",
  "layers": "./network_resnet50_classifier.json",
  "checkpoints": {"load": "./model_checkpoints/model_checkpoint_100.pt"},
  "data": {"input_type": "images", "target_type": "labels", "input_path": "./natural_images/training/",
           "test_input_path": "./natural_images/testing", "batch_size": 128, "test_batch_size": 1024,
           "preload": true, "transforms": [{"resize": [128, 128]}]},
  "optimizer": {"type": "Adam", "learning_rate": 0.001}, "loss": {"function": "NLL"}}}
"""

BIRDS_TRAIN = """
{"neural_network": {"num_epochs": 6, "outfile": "out_classifier.txt", "layers": "./layers.json",
  "checkpoints": {"load": "./model_resnet50_imagenet.h5", "save": "model_checkpoints_save/", "interval": 2},
  "data": {"input_type": "images", "target_type": "labels", "input_path": "./data/train/", "test_input_path": "./data/valid/",
           "batch_size": 64, "test_batch_size": 128, "preload": true, "transforms": [{"resize": [224, 224]}]},
  "optimizer": {"type": "Adam", "learning_rate": 0.001, "lr_scheduler": {"type": "Exponential", "gamma": 0.5}},
  "loss": {"function": "NLL"}}}
"""

BIRDS_TEST = """
{"neural_network": {"layers": "./layers.json",
  "checkpoints": {"load": "./model_checkpoints_save/model_checkpoint_6.pt"},
  "data": {"input_type": "images", "test_input_path": "./test_samples/", "test_output_path": "./predictions/",
           "transforms": [{"resize": [224, 224]}]}}}
"""

SAT_TRAIN = """
{"neural_network": {"num_epochs": 50, "outfile": "out_satellite_classifier.txt", "layers": "./network.json",
  "checkpoints": {"load": "./model_resnet50_imagenet_10classes.h5", "save": "./model_checkpoints/", "interval": 5},
  "data": {"input_type": "images", "target_type": "labels", "input_path": "./data/train/", "test_input_path": "./data/valid/",
           "batch_size": 64, "test_batch_size": 128, "preload": true, "transforms": [{"resize": [64, 64]}]},
  "optimizer": {"type": "Adam", "learning_rate": 0.05, "lr_scheduler": {"type": "Exponential", "gamma": 0.95}},
  "loss": {"function": "NLL"}}}
"""

SAT_TEST = """
{"neural_network": {"layers": "./network.json",
  "checkpoints": {"load": "./model_checkpoints/model_checkpoint_50.pt"},
  "data": {"input_type": "images", "test_input_path": "./data/test/", "test_output_path": "./predictions/",
           "transforms": [{"resize": [64, 64]}]}}}
"""

PETS_TRAIN = """
{"neural_network": {"outfile": "out_dnn_pets_segmentation.txt", "num_epochs": 30, "layers": "./network_xception2D.json",
  "checkpoints": {"save": "model_pets_segmentation/", "interval": 5},
  "data": {"type": "images", "input_path": "./oxford_pets/training/inputs/", "target_path": "./oxford_pets/training/masks/",
           "test_input_path": "./oxford_pets/testing/inputs/", "test_target_path": "./oxford_pets/testing/masks/",
           "batch_size": 64, "test_batch_size": 128, "preload": true, "target_grayscale": true, "target_is_mask": true,
           "transforms": [{"resize": [160, 160]}, {"normalize": {"mean": 0.0, "std": 0.003921568}}]},
  "optimizer": {"type": "rmsprop", "learning_rate": 1e-3},
  "loss": {"function": "Dice", "source": "softmax"}}}
"""

PETS_TEST = """
{"neural_network": {"layers": "./network_xception2D.json",
  "checkpoints": {"load": "./model_pets_segmentation/model_checkpoint_30.pt"},
  "data": {"type": "images", "test_input_path": "./samples/", "test_output_path": "./predictions/", "test_batch_size": 16,
           "transforms": [{"resize": [160, 160]}, {"normalize": {"std": 0.003921568}}]}}}
"""

BRAIN_TRAIN = """
{"neural_network": {"outfile": "out_segmentation.txt", "num_epochs": 20, "layers": "./layers_resunet.json",
  "checkpoints": {"load": "./model_resunet_imagenet.h5", "save": "model_MRI_segmentation/", "interval": 10},
  "data": {"type": "images", "input_path": "./data/train_image/", "target_path": "./data/train_mask/",
           "test_input_path": "./data/test_image/", "test_target_path": "./data/test_mask/",
           "batch_size": 32, "test_batch_size": 64, "preload": true, "target_grayscale": true, "target_is_mask": true,
           "transforms": [{"resize": [256, 256]}]},
  "optimizer": {"type": "adam", "learning_rate": 0.0001,
                "lr_scheduler": {"type": "Exponential", "gamma": 0.95, "verbose": true}},
  "loss": {"function": "Dice", "source": "sigmoid"}}}
"""

BRAIN_TEST = """
{"neural_network": {"layers": "./layers_resunet.json",
  "checkpoints": {"load": "./model_MRI_segmentation/model_checkpoint_20.pt"},
  "data": {"type": "images", "test_input_path": "./data/sample/", "test_output_path": "./predictions/", "test_batch_size": 16,
           "transforms": [{"resize": [256, 256]}]}}}
"""

# the HPO driver's per-trial template with its placeholders filled in
HPO_TRIAL_TEMPLATE = """
{"neural_network": {"outfile": "out.txt", "num_epochs": 50, "layers": "./layers_resunet.json",
  "checkpoints": {"save": "temp_model/", "interval": 1, "load": "./model_resunet_imagenet.h5"},
  "data": {"type": "images", "input_path": "./data/train/inputs/", "target_path": "./data/train/targets/",
           "test_input_path": "./data/test/inputs/", "test_target_path": "./data/test/targets/",
           "batch_size": 32, "test_batch_size": 64, "preload": true, "target_grayscale": true, "target_is_mask": true,
           "transforms": [{"resize": [256, 256]}]},
  "optimizer": {"type": "%(optimizer)s", "learning_rate": 0.0042,
                "lr_scheduler": {"type": "Exponential", "gamma": 0.99, "verbose": true}},
  "loss": {"function": "%(loss)s", "source": "sigmoid"}}}
"""

HPO_TEST = """
{"neural_network": {"layers": "./layers_resunet.json",
  "checkpoints": {"load": "./best_model/best_model_file.pt"},
  "data": {"type": "images", "test_input_path": "./data/test/inputs/", "test_target_path": "./data/test/targets/",
           "test_output_path": "./predictions/", "test_batch_size": 16, "target_grayscale": true, "target_is_mask": true,
           "transforms": [{"resize": [256, 256]}]},
  "loss": {"function": "BCE", "source": "sigmoid"}}}
"""

SEIS_TRAIN = """
{"neural_network": {"outfile": "out_seismic3d.txt", "checkpoints": {"save": "./model_seismic3d/", "interval": 2},
  "layers": "./unet3d_seismic.json", "num_epochs": 20,
  "data": {"type": "hdf5", "input_path": "./parihaka/input3D_train.h5", "target_path": "./parihaka/target3D_train.h5",
           "test_input_path": "./parihaka/input3D_test.h5", "test_target_path": "./parihaka/target3D_test.h5",
           "batch_size": 16, "test_batch_size": 16, "preload": true,
           "slicers": [{"name": "samples", "sizes": [64, 64, 256], "strides": [64, 64, 17], "discard_remainders": true}]},
  "optimizer": {"type": "Adam", "learning_rate": 1e-4}, "loss": {"function": "NLL"}}}
"""

SEIS_TEST = """
{"neural_network": {"checkpoints": {"load": "./model_seismic3d/model_checkpoint_20.pt"},
  "layers": "./unet3d_seismic.json",
  "data": {"type": "hdf5", "test_input_path": "./parihaka/input3D_test.h5", "test_target_path": "./parihaka/target3D_test.h5",
           "hdf5_outfile": "./prediction.h5", "test_batch_size": 1,
           "slicers": [{"name": "pred", "sizes": [64, 576, 992], "discard_remainders": true}]},
  "loss": {"function": "Dice", "source": "log_softmax"}}}
"""

POISSON_TRAIN = """
{"neural_network": {"outfile": "out_dnn_poisson3d.txt", "num_epochs": 20, "layers": "./unet3d_poisson.json",
  "checkpoints": {"save": "./model_poisson3d/", "interval": 5},
  "data": {"type": "numpy", "input_path": "./diffusivity_maps/", "target_path": "./diffusivity_maps/",
           "batch_size": 128, "preload": true},
  "optimizer": {"type": "Adam", "learning_rate": 1e-4}, "loss": {"function": "Poisson3D_PDE"}}}
"""

POISSON_TEST = """
{"neural_network": {"layers": "./unet3d_poisson.json",
  "checkpoints": {"load": "./model_poisson3d/model_checkpoint_20.pt"},
  "data": {"type": "numpy", "test_input_path": "./data/nu.npy", "test_target_path": "./data/nu.npy",
           "test_output_path": "./prediction/"},
  "loss": {"function": "Poisson3D_PDE"}}}
"""

# Burgers' equation (SPEC §3.3.3, §8.2), written from the key tables
BURGERS = """
{"neural_network": {"outfile": "out_burgers.txt", "num_epochs": 5, "layers": "./burgers_net.json",
  "data": {"type": "pde", "domain_size": 128, "num_examples": 1024, "num_test_examples": 64,
           "batch_size": 32, "test_batch_size": 64, "bc_frequency": [1.0, 4.0], "bc_type": "fixed_uniform"},
  "optimizer": {"type": "Adam", "learning_rate": 1e-3},
  "loss": {"function": "Burgers_pde", "diffusion_coeff": 0.01, "boundary_factor": 64}}}
"""

TUTORIALS = {
    "smoke": SMOKE,
    "mnist_train": MNIST_TRAIN,
    "mnist_test": MNIST_TEST,
    "mnist_test_old": MNIST_TEST_OLD,
    "inpaint_features": INPAINT_FEATURES,
    "inpaint_classifier": INPAINT_CLASSIFIER,
    "birds_train": BIRDS_TRAIN,
    "birds_test": BIRDS_TEST,
    "sat_train": SAT_TRAIN,
    "sat_test": SAT_TEST,
    "pets_train": PETS_TRAIN,
    "pets_test": PETS_TEST,
    "brain_train": BRAIN_TRAIN,
    "brain_test": BRAIN_TEST,
    "hpo_adam_dice": HPO_TRIAL_TEMPLATE % {"optimizer": "adam", "loss": "dice"},
    "hpo_rmsprop_bce": HPO_TRIAL_TEMPLATE % {"optimizer": "rmsprop", "loss": "bce"},
    "hpo_sgd_dice": HPO_TRIAL_TEMPLATE % {"optimizer": "sgd", "loss": "dice"},
    "hpo_test": HPO_TEST,
    "seis_train": SEIS_TRAIN,
    "seis_test": SEIS_TEST,
    "poisson_train": POISSON_TRAIN,
    "poisson_test": POISSON_TEST,
    "burgers": BURGERS,
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

@pytest.fixture
def cfg(tmp_path, monkeypatch):
    """``cfg(text_or_dict) -> (Config, warnings)`` loading ``config.json`` from the CWD, so that
    messages start with ``config.json:`` exactly as users see them."""
    monkeypatch.chdir(tmp_path)

    def load(content, name="config.json"):
        text = content if isinstance(content, str) else json.dumps(content)
        (tmp_path / name).write_text(text, encoding="utf-8")
        return load_config(name)

    return load


@pytest.fixture
def err(cfg):
    """``err(text_or_dict) -> str``: the ConfigError message of an invalid config."""

    def message(content):
        with pytest.raises(ConfigError) as info:
            cfg(content)
        text = str(info.value)
        assert "\n" not in text
        return text

    return message


def base(**nn) -> dict:
    """A minimal valid training config; keyword arguments replace/add ``neural_network`` keys."""
    doc = {"neural_network": {
        "layers": "./net.json",
        "data": {"input_type": "images", "target_type": "labels", "input_path": "./train/"},
        "optimizer": {"type": "Adam", "learning_rate": 1e-3},
        "loss": {"function": "NLL"},
    }}
    doc["neural_network"].update(nn)
    return doc


def with_data(**data) -> dict:
    doc = base()
    doc["neural_network"]["data"].update(data)
    return doc


# --------------------------------------------------------------------------------------------
# the tutorials load cleanly
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TUTORIALS))
def test_tutorial_configs_load_without_errors_or_warnings(cfg, name):
    config, warnings = cfg(TUTORIALS[name])
    assert isinstance(config, Config)
    assert warnings == []
    assert config.path == "config.json"


def test_smoke_typed_values(cfg):
    c, _ = cfg(SMOKE)
    assert c.outfile == "out_dnn_mnist_sgd.txt" and c.num_epochs == 10
    d = c.data
    assert (d.input_type, d.target_type, d.type) == ("images", "labels", None)
    assert d.batch_size == 16 and d.test_batch_size == 64
    assert d.training_tag == "training" and d.test_tag == "testing"
    assert d.grayscale and d.input_grayscale and d.target_grayscale
    assert d.transforms == (TransformSpec("resize", [28, 28], "neural_network.data.transforms[0]"),)
    assert c.optimizer.type == "SGD"
    assert c.optimizer.options == {"learning_rate": 0.01, "momentum": 0.5}
    assert c.optimizer.lr_scheduler is None
    assert c.loss.function == "NLL" and c.loss.options == {}
    assert isinstance(c.layers, list) and len(c.layers) == 13
    assert c.layers[0]["config"]["batch_input_shape"] == [None, 28, 28, 1]
    assert c.checkpoints.save is None and c.checkpoints.interval == 1
    assert (c.mixed_precision, c.channels_last, c.compile, c.seed) == ("none", False, False, 0)


def test_mnist_training_typed_values(cfg):
    c, _ = cfg(MNIST_TRAIN)
    assert c.layers == "./mnist_keras_net.json"
    assert c.num_epochs == 20
    assert c.checkpoints.save == "./mnist_model/" and c.checkpoints.interval == 20
    assert c.data.batch_size == 128 and isinstance(c.data.batch_size, int)
    assert c.data.preload and c.data.grayscale
    assert c.optimizer.type == "Adam"
    assert c.optimizer.options == {"learning_rate": 1e-4}
    assert c.loss.function == "NLL"


def test_inference_only_config_has_no_optimizer_or_loss(cfg):
    c, _ = cfg(MNIST_TEST)
    assert c.optimizer is None and c.loss is None
    assert c.num_epochs == 1
    assert c.data.input_path is None and c.data.target_type is None
    assert c.data.test_output_path == "./mnist_predictions/"
    assert c.checkpoints.load == "./mnist_model/model_checkpoint_20.pt"
    old, _ = cfg(MNIST_TEST_OLD)
    assert old.debug is True and old.outfile == "./mnist_predictions.txt"


def test_type_sets_input_and_target_type(cfg):
    c, _ = cfg(INPAINT_FEATURES)
    assert (c.data.type, c.data.input_type, c.data.target_type) == ("images", "images", "images")
    assert c.data.transforms[1] == TransformSpec("random_patches", {"number": 16, "size": 16},
                                                 "neural_network.data.transforms[1]")
    assert c.loss.function == "BCE"
    c, _ = cfg(INPAINT_CLASSIFIER)
    assert c.data.test_batch_size == 1024 and c.data.test_input_path == "./natural_images/testing"


def test_pets_values(cfg):
    c, _ = cfg(PETS_TRAIN)
    assert c.optimizer.type == "RMSprop"
    assert c.loss.function == "Dice" and c.loss.options == {"source": "softmax"}
    assert c.data.target_grayscale and not c.data.input_grayscale and not c.data.grayscale
    assert c.data.target_is_mask
    assert c.data.transforms[1].name == "normalize"
    assert c.data.transforms[1].value == {"mean": 0.0, "std": 0.003921568}


def test_scheduler_values(cfg):
    c, _ = cfg(BIRDS_TRAIN)
    s = c.optimizer.lr_scheduler
    assert s.type == "Exponential" and s.verbose is True and s.options == {"gamma": 0.5}
    assert c.checkpoints.load == "./model_resnet50_imagenet.h5"
    c, _ = cfg(BRAIN_TRAIN)
    assert c.optimizer.type == "Adam"
    assert c.optimizer.lr_scheduler.options == {"gamma": 0.95}
    assert "lr_scheduler" not in c.optimizer.options


def test_hpo_lowercase_names(cfg):
    c, _ = cfg(TUTORIALS["hpo_rmsprop_bce"])
    assert c.optimizer.type == "RMSprop" and c.loss.function == "BCE"
    assert c.loss.options == {"source": "sigmoid"}
    c, _ = cfg(TUTORIALS["hpo_sgd_dice"])
    assert c.optimizer.type == "SGD" and c.loss.function == "Dice"


def test_seismic_slicers(cfg):
    c, _ = cfg(SEIS_TRAIN)
    assert c.data.input_type == "hdf5" and c.data.target_type == "hdf5"
    assert c.data.slicers == (SlicerConfig(name="samples", sizes=(64, 64, 256),
                                           strides=(64, 64, 17), discard_remainders=True),)
    c, _ = cfg(SEIS_TEST)
    assert c.data.hdf5_outfile == "./prediction.h5" and c.data.hdf5_precision == "single"
    assert c.data.slicers[0].name == "pred" and c.data.slicers[0].padding is None
    assert c.loss.options == {"source": "log_softmax"}


def test_poisson_and_burgers(cfg):
    c, _ = cfg(POISSON_TRAIN)
    assert c.loss.function == "Poisson3D_PDE" and c.data.input_type == "numpy"
    c, _ = cfg(BURGERS)
    d = c.data
    assert (d.type, d.input_type, d.target_type) == ("pde", "pde", "pde")
    assert d.domain_size == 128 and d.num_examples == 1024 and d.num_test_examples == 64
    assert d.bc_frequency == (1.0, 4.0) and d.bc_type == "fixed_uniform" and d.bc_num_terms == 1
    assert c.loss.function == "Burgers_PDE"
    assert c.loss.options == {"diffusion_coeff": 0.01, "boundary_factor": 64.0}


def test_config_is_frozen(cfg):
    c, _ = cfg(MNIST_TRAIN)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.num_epochs = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.data.batch_size = 3


# --------------------------------------------------------------------------------------------
# reading and JSON syntax
# --------------------------------------------------------------------------------------------

def test_missing_file_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as info:
        load_config("nope.json")
    assert str(info.value) == "nope.json: cannot read config file: No such file or directory"
    assert info.value.exit_code == 2


def test_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as info:
        load_config(str(tmp_path))
    assert str(info.value).startswith(f"{tmp_path}: cannot read config file: ")


def test_package_level_load_config_is_the_same(cfg):
    c, w = cfg(MNIST_TRAIN)
    c2, w2 = lazy_load_config("config.json")
    assert c == c2 and w == w2


def test_malformed_json_reports_line_and_column(err):
    text = '{"neural_network": {\n  "layers": "./net.json"\n  "data": {}\n}}\n'
    assert err(text) == ("config.json: invalid JSON at line 3, column 3: "
                         "Expecting ',' delimiter")


def test_empty_file_is_invalid_json(err):
    assert err("") == "config.json: invalid JSON at line 1, column 1: Expecting value"


def test_nan_is_not_json(err):
    text = '{"neural_network": {"layers": "x",\n "data": {"batch_size": NaN}}}'
    assert err(text) == "config.json: invalid JSON at line 2, column 25: 'NaN' is not a JSON number"


def test_duplicate_key_warns_and_last_wins(cfg):
    text = MNIST_TRAIN.replace('"batch_size": 128', '"batch_size": 8, "batch_size": 128')
    c, warnings = cfg(text)
    assert c.data.batch_size == 128
    assert warnings == ["config.json: duplicate key 'batch_size'; the last value is used"]


def test_byte_order_mark_is_accepted(cfg):
    c, _ = cfg("\ufeff" + MNIST_TRAIN)
    assert c.num_epochs == 20


# --------------------------------------------------------------------------------------------
# schema errors
# --------------------------------------------------------------------------------------------

def test_wrong_type_message(err):
    doc = base(optimizer={"type": "Adam", "learning_rate": "fast"})
    assert err(doc) == ('config.json: neural_network.optimizer.learning_rate: '
                        'expected a number, received "fast"')


def test_several_errors_reported_at_once(err):
    doc = base(num_epochs=0, optimizer={"type": "Adam", "learning_rate": "fast"},
               checkpoints={"interval": 2.5})
    doc["neural_network"]["data"]["batch_size"] = -3
    doc["neural_network"]["data"]["preload"] = "yes"
    parts = err(doc).split("; ")
    assert parts == [
        "config.json: neural_network.data.batch_size: must be at least 1, received -3",
        "config.json: neural_network.data.preload: expected true or false, received \"yes\"",
        'config.json: neural_network.optimizer.learning_rate: expected a number, received "fast"',
        "config.json: neural_network.num_epochs: must be at least 1, received 0",
        "config.json: neural_network.checkpoints.interval: expected an integer, received 2.5",
    ]


def test_negative_learning_rate(err):
    doc = base(optimizer={"type": "SGD", "learning_rate": -0.01})
    assert err(doc) == ("config.json: neural_network.optimizer.learning_rate: "
                        "must be greater than 0, received -0.01")


@pytest.mark.parametrize("key", ["neural_network", "layers", "data"])
def test_missing_required_sections(err, key):
    doc = base()
    if key == "neural_network":
        doc = doc["neural_network"]
        msg = err(doc)
        assert msg.startswith("config.json: missing required key 'neural_network'")
    else:
        del doc["neural_network"][key]
        assert err(doc) == f"config.json: neural_network: missing required key '{key}'"


def test_missing_key_mentions_a_misspelled_one(cfg):
    doc = base()
    doc["neural_network"]["layer"] = doc["neural_network"].pop("layers")
    with pytest.raises(ConfigError) as info:
        cfg(doc)
    assert str(info.value) == ("config.json: neural_network: missing required key 'layers' "
                               "(found unknown key 'layer')")
    assert info.value.warnings == []     # the missing-key message already names it


def test_top_level_must_be_an_object(err):
    assert err("[1, 2]") == "config.json: expected an object, received [1, 2]"


def test_layers_type(err):
    assert err(base(layers=3)) == ("config.json: neural_network.layers: "
                                   "expected a string, a list or an object, received 3")


def test_unknown_optimizer_type_suggests(err):
    msg = err(base(optimizer={"type": "adamm", "learning_rate": 0.1}))
    assert msg == ("config.json: neural_network.optimizer.type: unknown optimizer type 'adamm' "
                   "(expected one of: SGD, Adagrad, Adam, AdamW, RMSprop, LARS, LAMB, Hessian). "
                   "Did you mean 'Adam'?")


def test_unknown_loss_function_suggests(err):
    msg = err(base(loss={"function": "dise"}))
    assert msg.startswith("config.json: neural_network.loss.function: unknown loss function 'dise' "
                          "(expected one of: NLL, BCE, MSE, Dice,")
    assert msg.endswith("Did you mean 'Dice'?")


def test_unknown_transform_is_an_error(err):
    doc = with_data(transforms=[{"resize": [28, 28]}, {"normalize": {}}, {"random_crop": [2, 2]}])
    msg = err(doc)
    assert msg.startswith("config.json: neural_network.data.transforms[2]: unknown transform "
                          "'random_crop' (expected one of: resize, center_crop, ")
    assert "Did you mean" in msg


def test_transform_entry_needs_one_key(err):
    doc = with_data(transforms=[{"resize": [28, 28], "rotate": 10}])
    assert err(doc).startswith("config.json: neural_network.data.transforms[0]: "
                               "a transform entry needs exactly one key")


def test_transform_parameters_are_checked(err):
    doc = with_data(transforms=[{"resize": [28]}, {"random_horizontal_flip": 1.5},
                                {"random_patches": {"number": 16}}])
    assert err(doc).split("; ") == [
        "config.json: neural_network.data.transforms[0].resize: expected exactly 2 values, received 1",
        "config.json: neural_network.data.transforms[1].random_horizontal_flip: "
        "must be at most 1, received 1.5",
        "config.json: neural_network.data.transforms[2].random_patches: missing required key 'size'",
    ]


def test_transform_names_are_case_insensitive(cfg):
    c, w = cfg(with_data(transforms=[{"Resize": [32, 16]}, {"NORMALIZE": {"std": [0.5, 0.5, 0.5]}}]))
    assert w == []
    assert [t.name for t in c.data.transforms] == ["resize", "normalize"]
    assert c.data.transforms[0].value == [32, 16]


def test_padding_and_padded_sizes_are_exclusive(err):
    doc = with_data(input_type="numpy", target_type="numpy",
                    slicers=[{"sizes": [8, 8], "padding": [1, 1], "padded_sizes": [10, 10]}])
    assert err(doc) == ("config.json: neural_network.data.slicers[0]: 'padding' and "
                        "'padded_sizes' are mutually exclusive; give only one of them")


def test_slicer_cross_checks(err):
    doc = with_data(input_type="numpy", target_type="numpy",
                    slicers=[{"name": "a", "sizes": [8, 8], "strides": [4]},
                             {"name": "a", "sizes": [8, 8], "padded_sizes": [6, 10]}])
    assert err(doc).split("; ") == [
        "config.json: neural_network.data.slicers[0].strides: expected 2 values "
        "(one per entry of 'sizes'), received 1",
        "config.json: neural_network.data.slicers[1].padded_sizes: each padded size must be "
        "at least the slice size [8, 8], received [6, 10]",
        "config.json: neural_network.data.slicers[1].name: duplicate slice-set name 'a' "
        "(also used by slicers[0])",
    ]


def test_slicers_need_numpy_or_hdf5(err):
    doc = with_data(slicers=[{"sizes": [8, 8]}])
    assert err(doc) == ("config.json: neural_network.data.slicers: slicers need data type "
                        "'numpy' or 'hdf5', not \"images\"")


def test_slicer_default_names(cfg):
    c, _ = cfg(with_data(input_type="hdf5", target_type="hdf5",
                         slicers=[{"sizes": [1, 32, 32], "padding": [0, 2, 2]},
                                  {"sizes": [64, 64, 1], "transpose": False}]))
    assert [s.name for s in c.data.slicers] == ["slice_set_1", "slice_set_2"]
    assert c.data.slicers[0].padding == (0, 2, 2)
    assert c.data.slicers[1].strides is None


def test_scheduler_required_keys(err):
    doc = base(optimizer={"type": "Adam", "learning_rate": 0.1,
                          "lr_scheduler": {"type": "step", "gamma": 0.5}})
    assert err(doc) == ("config.json: neural_network.optimizer.lr_scheduler: missing required "
                        "key 'step_size' (for scheduler type 'Step')")


def test_scheduler_warmup_bounds(err):
    doc = base(optimizer={"type": "Adam", "learning_rate": 0.1,
                          "lr_scheduler": {"type": "warmup", "start_factor": 1.0}})
    assert err(doc) == ("config.json: neural_network.optimizer.lr_scheduler.start_factor: "
                        "must be less than 1, received 1.0")


def test_pde_needs_domain_size_and_frequency(err):
    doc = base(data={"type": "pde", "num_examples": 10}, loss={"function": "burgers_pde"})
    assert err(doc).split("; ") == [
        "config.json: neural_network.data: missing required key 'domain_size' (for data type 'pde')",
        "config.json: neural_network.data: missing required key 'bc_frequency' (for data type 'pde')",
    ]


def test_pde_frequency_order(err):
    doc = base(data={"type": "pde", "domain_size": 64, "bc_frequency": [4, 1]},
               loss={"function": "Burgers_PDE"})
    assert err(doc) == ("config.json: neural_network.data.bc_frequency: expected [c_min, c_max] "
                        "with c_min <= c_max, received [4, 1]")


def test_training_needs_optimizer_and_loss(err):
    doc = base()
    del doc["neural_network"]["optimizer"]
    del doc["neural_network"]["loss"]
    assert err(doc).split("; ") == [
        "config.json: neural_network: missing required key 'optimizer' "
        "(training runs because 'neural_network.data.input_path' is set)",
        "config.json: neural_network: missing required key 'loss' "
        "(training runs because 'neural_network.data.input_path' is set)",
    ]


def test_data_needs_a_loader_type(err):
    doc = base(data={"input_path": "./x/"})
    assert err(doc) == ("config.json: neural_network.data: missing required key 'type' "
                        "(or 'input_type'): which loader reads the inputs")


def test_conflicting_test_tag_alias(err):
    doc = with_data(test_tag="a", testing_tag="b")
    assert "'test_tag' and its alias 'testing_tag' are both given" in err(doc)


def test_extension_keys_checked(err):
    doc = base(mixed_precision="fp32", seed=-1, channels_last=1)
    doc["neural_network"]["data"]["num_workers"] = -2
    assert err(doc).split("; ") == [
        "config.json: neural_network.data.num_workers: must be at least 0, received -2",
        "config.json: neural_network.mixed_precision: unknown mixed_precision 'fp32' "
        "(expected one of: none, bf16, fp16)",
        "config.json: neural_network.seed: must be at least 0, received -1",
        "config.json: neural_network.channels_last: expected true or false, received 1",
    ]


def test_boolean_is_not_a_number(err):
    doc = base(optimizer={"type": "Adam", "learning_rate": True})
    assert err(doc) == ("config.json: neural_network.optimizer.learning_rate: "
                        "expected a number, received true")


# --------------------------------------------------------------------------------------------
# warnings
# --------------------------------------------------------------------------------------------

def test_misspelt_key_is_an_error_naming_both(err):
    """Issue 10: a key close to a valid one would be silently ignored: refuse it."""
    assert err(with_data(input_paht="./x/")) == (
        "config.json: neural_network.data.input_paht: unknown key 'input_paht'; did you mean "
        "'input_path'? (a misspelt key would be ignored)")
    assert "'learning_rate'" in err(base(optimizer={"type": "Adam", "learning_rat": 0.1}))
    assert "did you mean 'num_epochs'?" in err(base(num_epoch=3))


def test_unknown_keys_everywhere(cfg, err):
    doc = base(optimizer={"type": "Adam", "learning_rate": 0.1, "learningrate": 0.2,
                          "lr_scheduler": {"type": "Exponential", "gamma": 0.9, "verbos": False}},
               loss={"function": "NLL", "wieght": [1, 2]},
               checkpoints={"save": "./ck/", "intervall": 2},
               xyzzy=1)
    doc["neural_network"]["data"]["transforms"] = [{"normalize": {"mean": 0, "sdt": 2}}]
    doc["extra"] = {}
    msg = err(doc)            # every misspelling at once, in document order
    assert msg.split("; did you mean")[0] == ("config.json: neural_network.data.transforms[0]."
                                              "normalize.sdt: unknown key 'sdt'")
    for where, key, hint in [("neural_network.optimizer.learningrate", "learningrate",
                              "learning_rate"),
                             ("neural_network.optimizer.lr_scheduler.verbos", "verbos", "verbose"),
                             ("neural_network.loss.wieght", "wieght", "weight"),
                             ("neural_network.checkpoints.intervall", "intervall", "interval")]:
        assert f"{where}: unknown key '{key}'; did you mean '{hint}'?" in msg
    # keys with no close valid key stay warnings and the run goes on
    for key in ("learningrate", "verbos", "wieght", "intervall"):
        doc = json.loads(json.dumps(doc).replace(f'"{key}"', '"q9w8e7"'))
    doc["neural_network"]["data"]["transforms"] = [{"normalize": {"mean": 0}}]
    c, warnings = cfg(doc)
    assert "config.json: unknown key 'neural_network.xyzzy' ignored" in warnings
    assert "config.json: unknown key 'extra' ignored" in warnings
    assert c.optimizer.options == {"learning_rate": 0.1}
    assert c.optimizer.lr_scheduler.verbose is True
    assert c.checkpoints.interval == 1


def test_contradictory_keys_are_errors(err):
    doc = base()
    doc["neural_network"]["data"].update({"type": "numpy", "input_type": "images"})
    assert "neural_network.data.input_type: 'images' contradicts 'type': 'numpy'" in err(doc)
    doc = base()
    doc["neural_network"]["data"].update({"input_type": "images", "target_type": "labels",
                                          "target_path": "./masks/"})
    assert "neural_network.data.target_path: 'target_type': 'labels'" in err(doc)


def test_key_in_the_wrong_section_says_where_it_belongs(cfg):
    _, warnings = cfg(base(batch_size=8))
    assert warnings == ["config.json: unknown key 'neural_network.batch_size' ignored "
                        "(it belongs in 'neural_network.data')"]


def test_key_not_used_by_the_chosen_type_warns(cfg):
    doc = base(optimizer={"type": "sgd", "learning_rate": 0.1, "beta1": 0.8, "nesterov": True},
               loss={"function": "nll", "source": "softmax", "ignore_index": 255})
    c, warnings = cfg(doc)
    assert warnings == [
        "config.json: key 'neural_network.optimizer.beta1' is not used by optimizer 'SGD' "
        "and is ignored",
        "config.json: key 'neural_network.loss.source' is not used by loss 'NLL' and is ignored",
    ]
    assert c.optimizer.options == {"learning_rate": 0.1, "nesterov": True}
    assert c.loss.options == {"ignore_index": 255}


# --------------------------------------------------------------------------------------------
# case-insensitive enums, aliases, defaults
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("written, canonical", [
    ("adam", "Adam"), ("ADAM", "Adam"), ("Adam", "Adam"), ("adamw", "AdamW"),
    ("RMSProp", "RMSprop"), ("sgd", "SGD"), ("lars", "LARS"), ("Lamb", "LAMB"),
    ("adagrad", "Adagrad"), ("HESSIAN", "Hessian"),
])
def test_optimizer_type_case_insensitive(cfg, written, canonical):
    c, w = cfg(base(optimizer={"type": written}))
    assert c.optimizer.type == canonical and w == []


@pytest.mark.parametrize("written, canonical", [
    ("nll", "NLL"), ("Nll", "NLL"), ("bce", "BCE"), ("dice", "Dice"), ("JACCARD", "Jaccard"),
    ("lovasz", "Lovasz"), ("yolov3", "YOLOv3"), ("Poisson3D_pde", "Poisson3D_PDE"),
    ("poisson2d_pde", "Poisson2D_PDE"), ("burgers_PDE", "Burgers_PDE"), ("mse", "MSE"),
])
def test_loss_function_case_insensitive(cfg, written, canonical):
    c, _ = cfg(base(loss={"function": written}))
    assert c.loss.function == canonical


def test_other_enums_case_insensitive(cfg):
    doc = base(mixed_precision="BF16", loss={"function": "dice", "source": "SoftMax"},
               optimizer={"type": "adam", "learning_rate": 0.1,
                          "lr_scheduler": {"type": "multistep", "milestones": [2, 4]}})
    doc["neural_network"]["data"] = {"Type": "x", "TYPE": "x", "type": "HDF5", "hdf5_precision": "HALF",
                                     "input_path": "./a.h5", "target_path": "./b.h5"}
    with pytest.raises(ConfigError, match="unknown key 'Type'; did you mean 'type'"):
        cfg(doc)                            # keys are case-sensitive: 'Type' is a misspelling
    del doc["neural_network"]["data"]["Type"], doc["neural_network"]["data"]["TYPE"]
    c, w = cfg(doc)
    assert w == []
    assert c.mixed_precision == "bf16"
    assert c.loss.options == {"source": "softmax"}
    assert c.optimizer.lr_scheduler.type == "MultiStep"
    assert c.optimizer.lr_scheduler.options == {"milestones": [2, 4]}
    assert (c.data.type, c.data.input_type, c.data.target_type) == ("hdf5", "hdf5", "hdf5")
    assert c.data.hdf5_precision == "half"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["SGD", "Adagrad", "Adam", "AdamW", "RMSprop", "LARS", "LAMB", "Hessian"]),
       st.lists(st.booleans(), min_size=8, max_size=8))
def test_any_capitalisation_of_an_optimizer_is_accepted(name, upper):
    written = "".join(ch.upper() if u else ch.lower() for ch, u in zip(name, upper + [False] * 8))
    doc = base(optimizer={"type": written})
    c, _ = parse_config(doc, "config.json")
    assert c.optimizer.type == name


def test_testing_tag_alias(cfg):
    c, w = cfg(with_data(testing_tag="testing", training_tag="training"))
    assert w == [] and c.data.test_tag == "testing" and c.data.training_tag == "training"


def test_target_type_defaults(cfg):
    c, _ = cfg(with_data(input_type="numpy", target_type=None, target_path="./t/"))
    assert c.data.target_type == "numpy"
    c, _ = cfg(base(data={"input_type": "images", "test_input_path": "./x/",
                          "test_target_path": "./y/"}))
    assert c.data.target_type == "images"
    c, _ = cfg(base(data={"input_type": "mnist", "input_path": "./mnist/"}))
    assert c.data.target_type == "mnist"
    c, _ = cfg(base(data={"type": "numpy", "input_type": "numpy", "input_path": "./x.npy"}))
    assert (c.data.input_type, c.data.target_type) == ("numpy", "numpy")
    with pytest.raises(ConfigError, match="'hdf5' contradicts 'type': 'numpy'"):
        cfg(base(data={"type": "numpy", "input_type": "hdf5", "input_path": "./x.h5"}))


def test_grayscale_defaults(cfg):
    c, _ = cfg(with_data(grayscale=True, target_grayscale=False))
    assert c.data.input_grayscale and not c.data.target_grayscale


def test_null_means_default_and_integral_floats_are_ints(cfg):
    doc = base(num_epochs=3.0, outfile=None)
    doc["neural_network"]["data"].update(batch_size=128.0, test_batch_size=None)
    c, w = cfg(doc)
    assert w == []
    assert c.num_epochs == 3 and isinstance(c.num_epochs, int)
    assert c.data.batch_size == 128 and isinstance(c.data.batch_size, int)
    assert c.data.test_batch_size == 64 and c.outfile is None


def test_option_numbers_are_floats(cfg):
    c, _ = cfg(base(optimizer={"type": "Adam", "learning_rate": 1, "amsgrad": True}))
    assert c.optimizer.options == {"learning_rate": 1.0, "amsgrad": True}
    assert isinstance(c.optimizer.options["learning_rate"], float)


def test_extension_keys(cfg):
    doc = base(mixed_precision="fp16", channels_last=True, compile=True, seed=42)
    doc["neural_network"]["data"]["num_workers"] = 4
    c, w = cfg(doc)
    assert w == []
    assert (c.mixed_precision, c.channels_last, c.compile, c.seed) == ("fp16", True, True, 42)
    assert c.data.num_workers == 4


def test_parse_config_does_not_modify_its_input():
    doc = base(optimizer={"type": "adam", "learning_rate": 0.1}, typo=1)
    before = json.dumps(doc)
    parse_config(doc, "x.json")
    assert json.dumps(doc) == before


# --------------------------------------------------------------------------------------------
# the schema itself
# --------------------------------------------------------------------------------------------

def test_schema_is_valid_draft_2020_12():
    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema()["required"] == ["neural_network"]


def test_schema_type_key_tables_name_known_keys():
    defs = schema()["$defs"]
    for name in ("optimizer", "lr_scheduler", "loss"):
        sub = defs[name]
        type_key = sub["x-type-key"]
        assert set(sub["x-type-keys"]) == set(sub["properties"][type_key]["enum"])
        for keys in sub["x-type-keys"].values():
            assert set(keys) <= set(sub["properties"])


def test_every_spec_data_key_is_in_the_schema():
    keys = set(schema()["$defs"]["data"]["properties"])
    spec = {"type", "input_type", "target_type", "input_path", "target_path", "test_input_path",
            "test_target_path", "test_output_path", "batch_size", "test_batch_size", "preload",
            "target_is_mask", "transforms", "input_transforms", "target_transforms", "slicers",
            "hdf5_outfile", "hdf5_precision", "grayscale", "input_grayscale", "target_grayscale",
            "training_tag", "test_tag", "testing_tag", "domain_size", "num_examples",
            "num_test_examples", "bc_frequency", "bc_type", "num_workers"}
    assert spec <= keys


def test_load_does_not_import_torch():
    code = ("import sys; from rmldnn_py.config.load import load_config; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=str(REPO))


def test_examples_in_the_config_reference_load_cleanly(tmp_path):
    text = (REPO / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```json")[1:]]
    complete = [b for b in blocks if b.lstrip().startswith('{"neural_network"')]
    assert len(complete) >= 3
    for i, block in enumerate(complete):
        path = tmp_path / f"example_{i}.json"
        path.write_text(block, encoding="utf-8")
        _, warnings = load_config(str(path))
        assert warnings == []


def test_keys_read_by_the_engine_are_kept(cfg):
    doc = base(optimizer={"type": "hessian", "learning_rate": 0.5, "max_iterations": 20},
               loss={"function": "focal", "alpha": 0.25, "gamma": 3, "source": "sigmoid"})
    c, warnings = cfg(doc)
    assert warnings == []
    assert c.optimizer.options == {"learning_rate": 0.5, "max_iterations": 20}
    assert c.loss.options == {"alpha": 0.25, "gamma": 3.0, "source": "sigmoid"}
