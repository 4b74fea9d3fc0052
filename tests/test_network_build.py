"""build_network: accepted forms, counting (SPEC §4.7), graph errors with exact text (SPEC §4.2),
trainable/frozen BN (SPEC §4.6), input checks (SPEC §4.8), state-dict names, Graphviz output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rmldnn_py.errors import NetworkError
from rmldnn_py.network import KerasNetwork, build_network
from rmldnn_py.network.layers import LAYERS

REPO = Path(__file__).resolve().parents[1]

SMOKE_LAYERS = [
    {"class_name": "Conv2D", "config": {"name": "conv1", "batch_input_shape": [None, 28, 28, 1], "filters": 10, "kernel_size": [5, 5], "activation": "linear", "use_bias": True}},
    {"class_name": "MaxPooling2D", "config": {"name": "max_pool_1", "pool_size": [2, 2]}},
    {"class_name": "Activation", "config": {"name": "relu_1", "trainable": True, "activation": "relu"}},
    {"class_name": "Conv2D", "config": {"name": "conv2", "filters": 20, "kernel_size": [5, 5], "activation": "linear"}},
    {"class_name": "SpatialDropout2D", "config": {"name": "spat_drop", "rate": 0}},
    {"class_name": "MaxPooling2D", "config": {"name": "max_pool_2", "pool_size": [2, 2]}},
    {"class_name": "Activation", "config": {"name": "relu_2", "trainable": True, "activation": "relu"}},
    {"class_name": "Flatten", "config": {"name": "flatten_1", "trainable": True, "data_format": "channels_last"}},
    {"class_name": "Dense", "config": {"name": "fc1", "units": 50, "activation": "linear", "use_bias": True}},
    {"class_name": "Activation", "config": {"name": "relu_3", "trainable": True, "activation": "relu"}},
    {"class_name": "Dropout", "config": {"name": "dropout", "rate": 0}},
    {"class_name": "Dense", "config": {"name": "fc2", "units": 2, "activation": "linear", "use_bias": True}},
    {"class_name": "Activation", "config": {"name": "softmax", "trainable": True, "activation": "log_softmax", "axis": 1}},
]
MNIST_JSON = REPO / "networks" / "mnist_keras_net.json"


def k2_layer(cls, name, inbound, **cfg):
    cfg["name"] = name
    return {"class_name": cls, "name": name, "config": cfg,
            "inbound_nodes": [[[src, 0, 0, {}] for src in inbound]] if inbound is not None else []}


def functional(layers, inputs=("in",), outputs=None, cls="Functional"):
    outputs = outputs or (layers[-1]["name"],)
    return {"class_name": cls, "config": {"name": "model", "layers": layers,
                                          "input_layers": [[n, 0, 0] for n in inputs],
                                          "output_layers": [[n, 0, 0] for n in outputs]},
            "keras_version": "2.4.0", "backend": "tensorflow"}


def input_layer(name="in", shape=(8, 8, 3)):
    return {"class_name": "InputLayer", "name": name,
            "config": {"batch_input_shape": [None, *shape], "dtype": "float32", "name": name}, "inbound_nodes": []}


# ------------------------------------------------------------------------------ reference counts

def test_smoke_network_counts():
    net = build_network(SMOKE_LAYERS, config_path="config_rmldnn_test.json")
    assert isinstance(net, KerasNetwork) and isinstance(net, torch.nn.Module)
    assert net.model_name == "Unknown"
    assert net.num_parameters() == 21432
    assert net.num_parameters(trainable_only=True) == 21432
    assert net.num_operations == 14
    assert net.input_shape == (1, 28, 28)
    out = net(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 2)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(3))


def test_mnist_network_counts_and_names():
    net = build_network(str(MNIST_JSON), config_path="config_mnist_training.json")
    assert (net.model_name, net.num_parameters(), net.num_operations) == ("sequential", 34826, 11)
    assert net.input_name == "input_1" and net.input_shape == (1, 28, 28)
    assert list(net.state_dict()) == ["conv2d.weight", "conv2d.bias", "conv2d_1.weight", "conv2d_1.bias",
                                      "dense.weight", "dense.bias"]
    assert net.layer_tensors() == {"conv2d": ["weight", "bias"], "conv2d_1": ["weight", "bias"],
                                   "dense": ["weight", "bias"]}
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert net.output_shape == (10,)


def test_relative_path_is_resolved_from_cwd(monkeypatch):
    monkeypatch.chdir(REPO / "networks")
    assert build_network("./mnist_keras_net.json", config_path="c.json").num_parameters() == 34826


# ------------------------------------------------------------------------------ accepted forms

def test_old_sequential_form_and_unnamed_layers():
    spec = {"class_name": "Sequential", "config": [
        {"class_name": "Dense", "config": {"batch_input_shape": [None, 4], "units": 3}},
        {"class_name": "Dense", "config": {"units": 2}}]}
    net = build_network(spec, config_path="c.json")
    assert net.model_name == "sequential"
    assert list(net.state_dict()) == ["dense_1.weight", "dense_1.bias", "dense_2.weight", "dense_2.bias"]
    assert net.num_operations == 3  # implicit input + 2 layers


def test_implicit_input_uses_given_shape():
    layers = [{"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3}},
              {"class_name": "GlobalAveragePooling2D", "config": {"name": "g"}}]
    with pytest.raises(NetworkError) as e:
        build_network(layers, config_path="cfg.json")
    assert str(e.value).startswith("cfg.json: layer 'input': the network declares no input shape")
    net = build_network(layers, config_path="cfg.json", input_shape=(3, 9, 9))
    assert net.input_shape == (3, 9, 9) and net.output_shape == (2,)


def test_free_spatial_dims_and_check_input():
    layers = [input_layer("in", (None, None, 3)),
              k2_layer("Conv2D", "c", ["in"], filters=4, kernel_size=3, strides=2, padding="same"),
              k2_layer("Conv2D", "d", ["c"], filters=2, kernel_size=1)]
    net = build_network(functional(layers), config_path="cfg.json")
    assert net.input_shape == (3, None, None)
    assert net.layer_shapes["c"] == (4, None, None)
    net.check_input((3, 64, 40))
    assert net(torch.randn(1, 3, 7, 5)).shape == (1, 2, 4, 3)
    with pytest.raises(NetworkError) as e:
        net.check_input((1, 64, 40))
    assert str(e.value) == ("cfg.json: layer 'in': expected input samples of shape (3, None, None) "
                            "(channel-first, None = any size), received (1, 64, 40)")


def test_fully_convolutional_fixed_input_accepts_other_sizes():
    layers = [input_layer("in", (16, 16, 1)), k2_layer("Conv2D", "c", ["in"], filters=2, kernel_size=3)]
    net = build_network(functional(layers), config_path="c.json")
    net.check_input((1, 20, 30))  # only channels are a hard check (SPEC §4.8)


def test_check_input_dense_needs_fixed_size():
    net = build_network(str(MNIST_JSON), config_path="c.json")
    net.check_input((1, 28, 28))
    with pytest.raises(NetworkError) as e:
        net.check_input((1, 32, 32))
    assert str(e.value) == (f"{MNIST_JSON}: layer 'dense': expects 1600 input features on the channel axis, "
                            "received shape (2304,) (network input declared as (1, 28, 28), received "
                            "samples of shape (1, 32, 32))")
    with pytest.raises(NetworkError, match="layer 'input_1': expected input samples of shape"):
        net.check_input((3, 28, 28))


def test_keras3_dict_nodes_and_dtype_policy():
    dtype = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}

    def t(src, shape):
        return {"class_name": "__keras_tensor__", "config": {"shape": shape, "dtype": "float32", "keras_history": [src, 0, 0]}}

    spec = {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": "functional", "trainable": True, "layers": [
                {"module": "keras.layers", "class_name": "InputLayer", "name": "x",
                 "config": {"batch_shape": [None, 6, 6, 2], "dtype": "float32", "name": "x"}, "inbound_nodes": []},
                {"module": "keras.layers", "class_name": "Conv2D", "name": "a", "build_config": {"input_shape": [None, 6, 6, 2]},
                 "config": {"name": "a", "dtype": dtype, "filters": 3, "kernel_size": [1, 1],
                            "activation": {"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": "function"}},
                 "inbound_nodes": [{"args": [t("x", [None, 6, 6, 2])], "kwargs": {}}]},
                {"module": "keras.layers", "class_name": "Concatenate", "name": "cat",
                 "config": {"name": "cat", "dtype": dtype, "axis": -1},
                 "inbound_nodes": [{"args": [[t("a", [None, 6, 6, 3]), t("x", [None, 6, 6, 2])]], "kwargs": {}}]}],
                "input_layers": ["x", 0, 0], "output_layers": ["cat", 0, 0]},
            "build_config": {"input_shape": None}, "compile_config": {}}
    net = build_network(spec, config_path="c.json")
    assert net.model_name == "functional"
    assert net.output_shape == (5, 6, 6)
    assert net.num_operations == 4  # input, conv, relu, concat
    assert net(torch.randn(1, 2, 6, 6)).shape == (1, 5, 6, 6)


def test_layers_out_of_order_are_wired_topologically():
    layers = [k2_layer("Dense", "d2", ["d1"], units=2), input_layer("in", (4,)),
              k2_layer("Dense", "d1", ["in"], units=3)]
    net = build_network(functional(layers, outputs=("d2",)), config_path="c.json")
    assert net.layer_names() == ["in", "d1", "d2"]
    assert net(torch.randn(5, 4)).shape == (5, 2)


def test_model_dict_class_model_and_bare_config():
    layers = [input_layer("in", (4,)), k2_layer("Dense", "d", ["in"], units=3)]
    assert build_network(functional(layers, cls="Model"), config_path="c.json").model_name == "model"
    bare = functional(layers)["config"]
    assert build_network(bare, config_path="c.json").num_parameters() == 15


# ------------------------------------------------------------------------------ errors

def test_unsupported_layer_type_names_file_and_layer(tmp_path):
    spec = json.loads(MNIST_JSON.read_text())
    spec["config"]["layers"].insert(3, {"class_name": "Lambda", "config": {"name": "lambda_1", "function": "evil"}})
    path = tmp_path / "mnist_keras_net.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(NetworkError) as e:
        build_network(str(path), config_path="c.json")
    assert str(e.value) == f"{path}: layer 'lambda_1': unsupported layer type 'Lambda'"


@pytest.mark.parametrize("cls", ["TFOpLambda", "Functional", "Sequential", "MyCustomLayer"])
def test_other_unsupported_classes(cls):
    layers = [{"class_name": "Dense", "config": {"name": "d", "units": 2, "batch_input_shape": [None, 3]}},
              {"class_name": cls, "config": {"name": "x"}}]
    with pytest.raises(NetworkError) as e:
        build_network(layers, config_path="cfg.json")
    assert str(e.value) == f"cfg.json: layer 'x': unsupported layer type '{cls}'"


def test_keras3_operation_nodes_are_rejected():
    layers = [input_layer("in", (4,)),
              {"module": "keras.src.ops.numpy", "class_name": "Add", "config": {"name": "add"}, "name": "add",
               "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {
                   "shape": [None, 4], "keras_history": ["in", 0, 0]}}, 3.0], "kwargs": {}}]}]
    with pytest.raises(NetworkError) as e:
        build_network(functional(layers), config_path="cfg.json")
    assert str(e.value) == ("cfg.json: layer 'add': unsupported layer type 'keras.src.ops.numpy.Add' "
                            "(a Keras operation, not a layer)")


def test_addons_prefix_and_reserved_names():
    layers = [input_layer("in", (4, 4, 2)), k2_layer("Addons>InstanceNormalization", "train", ["in"], center=True)]
    net = build_network(functional(layers), config_path="c.json")
    assert list(net.state_dict()) == ["train.weight", "train.bias"]
    net.train()
    assert net.training and net.layer_classes["train"] == "Addons>InstanceNormalization"
    layers[1]["name"] = layers[1]["config"]["name"] = "layer_shapes"
    with pytest.raises(NetworkError, match="layer 'layer_shapes': this layer name is reserved"):
        build_network(functional(layers), config_path="c.json")


def test_cycle_is_reported_with_layer_names():
    layers = [input_layer("in", (4,)), k2_layer("Dense", "a", ["in"], units=3),
              k2_layer("Add", "b", ["a", "c"]), k2_layer("Dense", "c", ["b"], units=3)]
    with pytest.raises(NetworkError) as e:
        build_network(functional(layers, outputs=("c",)), config_path="cfg.json")
    assert str(e.value) == "cfg.json: cycle or unresolved dependency among layers: b, c"


def test_dangling_input_reference():
    layers = [input_layer("in", (4,)), k2_layer("Dense", "a", ["nowhere"], units=3)]
    with pytest.raises(NetworkError) as e:
        build_network(functional(layers), config_path="cfg.json")
    assert str(e.value) == "cfg.json: layer 'a': input layer 'nowhere' does not exist"


def test_shared_layer_is_rejected():
    layers = [input_layer("in", (4,)), k2_layer("Dense", "a", ["in"], units=4)]
    layers[1]["inbound_nodes"] = [[["in", 0, 0, {}]], [["a", 0, 0, {}]]]
    with pytest.raises(NetworkError) as e:
        build_network(functional(layers), config_path="cfg.json")
    assert str(e.value) == "cfg.json: layer 'a': shared layers are not supported (the layer is called 2 times)"


def test_multi_input_and_multi_output_are_rejected():
    layers = [input_layer("in", (4,)), input_layer("in2", (4,)), k2_layer("Add", "s", ["in", "in2"])]
    with pytest.raises(NetworkError) as e:
        build_network(functional(layers, inputs=("in", "in2")), config_path="cfg.json")
    assert str(e.value) == "cfg.json: networks with several inputs are not supported (input layers: in, in2)"
    layers = [input_layer("in", (4,)), k2_layer("Dense", "a", ["in"], units=2), k2_layer("Dense", "b", ["in"], units=2)]
    with pytest.raises(NetworkError) as e:
        build_network(functional(layers, outputs=("a", "b")), config_path="cfg.json")
    assert str(e.value) == "cfg.json: networks with several outputs are not supported (output layers: a, b)"
    with pytest.raises(NetworkError) as e:
        build_network(functional(layers, outputs=("b",)), config_path="cfg.json")
    assert str(e.value) == ("cfg.json: layers not connected to the output 'b' (several outputs are not "
                            "supported): a")


def test_node_index_other_than_zero_is_rejected():
    layers = [input_layer("in", (4,)), k2_layer("Dense", "a", ["in"], units=4)]
    layers[1]["inbound_nodes"] = [[["in", 1, 0, {}]]]
    with pytest.raises(NetworkError, match=r"layer 'a': input 'in' refers to node 1, tensor 0"):
        build_network(functional(layers), config_path="cfg.json")


def test_bad_layer_config_and_shape_mismatch():
    layers = [input_layer("in", (4, 4, 3)), k2_layer("Conv2D", "c", ["in"], filters=2, kernel_size=5)]
    with pytest.raises(NetworkError) as e:
        build_network(functional(layers), config_path="cfg.json")
    assert str(e.value).startswith("cfg.json: layer 'c': input spatial size (4, 4) is too small for kernel (5, 5)")
    layers = [input_layer("in", (4, 4, 3)), k2_layer("Conv2D", "c", ["in"], kernel_size=3)]
    with pytest.raises(NetworkError, match="cfg.json: layer 'c': 'filters' is required"):
        build_network(functional(layers), config_path="cfg.json")
    layers = [input_layer("in", (4, 4, 3)), k2_layer("Conv2D", "c", ["in"], filters=2, kernel_size=1),
              k2_layer("Add", "s", ["c", "in"])]
    with pytest.raises(NetworkError, match=r"cfg.json: layer 's': incompatible input shapes \(2, 4, 4\), \(3, 4, 4\)"):
        build_network(functional(layers), config_path="cfg.json")
    with pytest.raises(NetworkError, match="cfg.json: layer 'x': unknown activation 'relux'"):
        build_network([{"class_name": "Dense", "config": {"name": "x", "units": 2, "activation": "relux",
                                                          "batch_input_shape": [None, 3]}}], config_path="cfg.json")


def test_file_errors(tmp_path):
    with pytest.raises(NetworkError, match="nope.json: network file not found"):
        build_network(str(tmp_path / "nope.json"), config_path="c.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(NetworkError, match="bad.json: invalid JSON at line 1"):
        build_network(str(bad), config_path="c.json")
    with pytest.raises(NetworkError, match="c.json: unsupported model class 'Foo'"):
        build_network({"class_name": "Foo", "config": {}}, config_path="c.json")


# ------------------------------------------------------------------------------ trainable / BN

def test_trainable_false_and_frozen_batchnorm():
    layers = [input_layer("in", (6, 6, 2)),
              k2_layer("Conv2D", "c", ["in"], filters=3, kernel_size=3, trainable=False),
              k2_layer("BatchNormalization", "bn", ["c"], axis=-1, momentum=0.9, trainable=False),
              k2_layer("BatchNormalization", "bn2", ["bn"], axis=3, momentum=0.9, center=False, scale=False),
              k2_layer("GlobalAveragePooling2D", "g", ["bn2"]), k2_layer("Dense", "d", ["g"], units=2)]
    net = build_network(functional(layers), config_path="c.json")
    assert net.num_parameters() == 2 * 3 * 9 + 3 + 6 + 6 + 8
    assert net.num_parameters(trainable_only=True) == 6 + 8
    assert not net.c.weight.requires_grad and net.d.weight.requires_grad
    assert net.bn2.momentum == pytest.approx(0.1) and net.bn2.eps == pytest.approx(1e-3)
    assert torch.equal(net.bn2.weight, torch.ones(3)) and torch.equal(net.bn2.bias, torch.zeros(3))
    net.train()
    assert not net.bn.training and net.bn2.training and net.training
    before = net.bn.running_mean.clone()
    net(torch.randn(4, 2, 6, 6) + 3)
    assert torch.equal(net.bn.running_mean, before)  # frozen BN keeps its statistics
    assert not torch.equal(net.bn2.running_mean, torch.zeros(3))
    assert net.layer_tensors()["bn"] == ["weight", "bias", "running_mean", "running_var"]
    assert "bn.num_batches_tracked" in net.state_dict()


def test_batchnorm_on_non_channel_axis_is_rejected():
    layers = [input_layer("in", (6, 6, 2)), k2_layer("BatchNormalization", "bn", ["in"], axis=1)]
    with pytest.raises(NetworkError, match="layer 'bn': axis 1 is not the channel axis"):
        build_network(functional(layers), config_path="c.json")


# ------------------------------------------------------------------------------ registry / misc

def test_registry_has_the_spec_layers():
    for nd in (1, 2, 3):
        for base in ("Conv{}D", "DepthwiseConv{}D", "Conv{}DTranspose", "MaxPooling{}D", "AveragePooling{}D",
                     "GlobalMaxPooling{}D", "GlobalAveragePooling{}D", "SpatialDropout{}D", "UpSampling{}D",
                     "ZeroPadding{}D", "Cropping{}D"):
            assert base.format(nd) in LAYERS
    for name in ("InputLayer", "Dense", "Activation", "SeparableConv1D", "SeparableConv2D", "BatchNormalization",
                 "InstanceNormalization", "LayerNormalization", "GroupNormalization", "Dropout", "Reshape",
                 "Flatten", "Permute", "Add", "Subtract", "Multiply", "Average", "Concatenate", "Maximum",
                 "Minimum", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Rescaling", "Normalization"):
        assert name in LAYERS
    assert "lambda" not in LAYERS and "conv2d" not in LAYERS  # exact class names


def test_to_dot_has_one_node_per_operation():
    net = build_network(str(MNIST_JSON), config_path="c.json")
    dot = net.to_dot()
    assert dot.startswith('digraph "sequential" {')
    nodes = [ln for ln in dot.splitlines() if "[label=" in ln]
    edges = [ln for ln in dot.splitlines() if "->" in ln]
    assert len(nodes) == net.num_operations == 11
    assert len(edges) == 10
    assert '"conv2d" [label="conv2d\\nConv2D\\n(None, 32, 26, 26)"];' in dot
    assert '"conv2d" -> "conv2d:relu";' in dot


def test_instance_norm_pytorch_keys():
    layers = [input_layer("in", (4, 4, 4, 2)),
              k2_layer("InstanceNormalization", "inorm", ["in"], affine=False, track_running_stats=False),
              k2_layer("InstanceNormalization", "inorm2", ["inorm"], affine=True, track_running_stats=True)]
    net = build_network(functional(layers), config_path="c.json")
    assert net.num_parameters() == 4
    assert net.layer_tensors() == {"inorm2": ["weight", "bias", "running_mean", "running_var"]}
    x = torch.randn(2, 2, 4, 4, 4) * 3 + 1
    ref = torch.nn.InstanceNorm3d(2)(x)
    torch.testing.assert_close(net.inorm(x), ref)
    net.eval()
    assert net(x).shape == x.shape


def test_initializers_are_honoured():
    torch.manual_seed(0)
    layers = [input_layer("in", (100,)),
              k2_layer("Dense", "d", ["in"], units=200,
                       kernel_initializer={"class_name": "VarianceScaling",
                                           "config": {"scale": 2.0, "mode": "fan_in", "distribution": "uniform"}},
                       bias_initializer={"class_name": "Constant", "config": {"value": 0.5}}),
              k2_layer("Dense", "z", ["d"], units=3, kernel_initializer={"class_name": "Zeros", "config": {}},
                       bias_initializer="ones")]
    net = build_network(functional(layers), config_path="c.json")
    limit = (3 * 2.0 / 100) ** 0.5
    assert net.d.weight.abs().max() <= limit and net.d.weight.abs().max() > 0.9 * limit
    assert torch.all(net.d.bias == 0.5)
    assert torch.all(net.z.weight == 0) and torch.all(net.z.bias == 1)


def test_channels_first_model():
    layers = [input_layer("in", (2, 6, 6)),
              k2_layer("Conv2D", "c", ["in"], filters=3, kernel_size=3, padding="same", data_format="channels_first"),
              k2_layer("MaxPooling2D", "p", ["c"], pool_size=2, data_format="channels_first"),
              k2_layer("Flatten", "f", ["p"], data_format="channels_first"), k2_layer("Dense", "d", ["f"], units=2)]
    net = build_network(functional(layers), config_path="c.json")
    assert net.input_shape == (2, 6, 6) and net.layer_shapes["p"] == (3, 3, 3)
    x = torch.randn(1, 2, 6, 6)
    p = net.p(net.c(x))
    # Keras Flatten(channels_first) moves the channel axis last before flattening
    torch.testing.assert_close(net.f(p), p.movedim(1, -1).flatten(1))


def test_torch_compile_small_net():
    net = build_network(SMOKE_LAYERS, config_path="c.json").eval()
    x = torch.randn(2, 1, 28, 28)
    compiled = torch.compile(net, backend="eager")
    torch.testing.assert_close(compiled(x), net(x))


def test_onnx_export_small_net(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    net = build_network(str(MNIST_JSON), config_path="c.json").eval()
    path = tmp_path / "mnist.onnx"
    torch.onnx.export(net, (torch.randn(1, 1, 28, 28),), str(path), dynamo=True)
    import onnx

    model = onnx.load(str(path))  # weights may live in mnist.onnx.data next to it
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 2 and "MaxPool" in ops and "LogSoftmax" in ops
    from onnx.reference import ReferenceEvaluator

    x = torch.randn(1, 1, 28, 28)
    (y,) = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y), net(x), atol=1e-4, rtol=1e-4)
