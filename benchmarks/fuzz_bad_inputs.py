"""Fuzz the ``rmldnn`` command with bad inputs and faults (issue 11 acceptance).

Usage::

    python benchmarks/fuzz_bad_inputs.py [--quick] [--jobs N] [--only SUBSTRING] [--keep]

A base directory is prepared once: tiny synthetic image data (2 classes, 28x28 JPEGs), the
smoke config (1 epoch), and the outputs of one successful run (``<outfile>_train.txt`` /
``_test.txt``, ``ckpt/model_checkpoint_1.pt``, ``pred/output_1.h5``). Every case copies it, breaks
one thing (config keys, network layers, data files, checkpoints, output paths, a signal at a random
time, a full disk) and runs the command. Each run is classified:

* ``rc``: exit code (negative: killed by a signal); ``hang``: no exit within the time limit;
* ``stderr``: number of non-empty stderr lines; ``tb``: a Python traceback in stdout/stderr;
* ``internal``: an ``internal error:`` line (a bug reached the user);
* ``silent``: exit 0 on an input that must fail;
* ``damaged``: a previous output (log, checkpoint, prediction file) modified or a ``*.tmp`` file
  left behind (for signal cases: a checkpoint that does not load);
* ``payload``: a pickled payload inside a checkpoint ran (it would create a marker file).

Expectations per case: ``error`` (exit 1, or 2 for usage errors, exactly one ``rmldnn: error:``
line (+ the usage line for exit 2), outputs intact), ``runtime`` (the same, for a fault that can
only show while training runs, such as a broken image read by its batch without ``preload``; and
for full disks: this run has started, its logs replace the old ones, the old checkpoint and
prediction files must survive), ``warning`` (exit 0 and a ``WARNING`` line:
the documented behaviour for a symbolic link loop), ``signal`` (exit 0, 130 or
143, at most one stderr line, no temporary file left, every checkpoint loadable). ``--quick`` runs
every 4th case. Cases needing ``mount`` (full disks, read-only file systems) are skipped when it is
not available (not root).

The summary table lists every case; the last lines give the counts the issue asks for
(tracebacks, signals, hangs, internal errors, silent successes, damaged outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import make_image_tree  # noqa: E402

CFG = "config.json"
OUTPUTS = ("out_fuzz_train.txt", "out_fuzz_test.txt", "ckpt/model_checkpoint_1.pt",
           "pred/output_1.h5")
TIMEOUT_S = 300


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    category: str
    mutate: Callable[[Path, dict], Optional[bool]]
    expect: str = "error"                 # error | runtime | warning | signal
    needs_mount: bool = False
    signal_at: Optional[tuple[int, float]] = None     # (signal, seconds after start)
    mounts: list = field(default_factory=list)


CASES: list[Case] = []


def case(name: str, category: str, expect: str = "error", needs_mount: bool = False):
    def deco(fn):
        CASES.append(Case(name, category, fn, expect, needs_mount))
        return fn
    return deco


def add(name: str, category: str, fn, expect: str = "error", needs_mount: bool = False) -> None:
    CASES.append(Case(name, category, fn, expect, needs_mount))


def layer(nn: dict, name: str) -> dict:
    return next(ly for ly in nn["layers"] if ly["config"].get("name") == name)["config"]


def setter(*path_value):
    """``setter("data", "batch_size", 0)``; ``"layer:<name>"`` selects a layer config;
    a value of ``DELETE`` removes the key."""
    *path, value = path_value

    def apply(d: Path, nn: dict):
        node = nn
        for k in path[:-1]:
            node = layer(nn, k[6:]) if isinstance(k, str) and k.startswith("layer:") else node[k]
        if value is DELETE:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return apply


DELETE = object()


def raw_config(text: bytes):
    def apply(d: Path, nn: dict):
        (d / CFG).write_bytes(text)
        return False
    return apply


# ---------------------------------------------------------------- A. configuration
for i, (text, label) in enumerate([
        (b'{"neural_network": {"num_epochs": 1,,}}', "trailing_commas"),
        (b'{"neural_network": {"num_epochs": 1', "unterminated_object"),
        (b'{"neural_network": {"outfile": "abc}}', "unterminated_string"),
        (b'{"neural_network": {"num_epochs": NaN}}', "nan_literal"),
        (b'{"neural_network": {"num_epochs": Infinity}}', "infinity_literal"),
        (b"", "empty_file"),
        (b"\x00\x01\x02\xff\xfe binary", "binary_garbage"),
        (b'{"neural_network": {"outfile": "caf\xe9.txt"}}', "latin1_bytes"),
        (b"[1, 2, 3]", "top_level_array"),
        (b'"just a string"', "top_level_string"),
        (b"{}", "empty_object"),
        (b'{"neural_network": null}', "neural_network_null"),
        (b'{"neural_network": [1]}', "neural_network_list"),
        (b'{"neural_network": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested_100k"),
        (b'{"neural_network": {"data": ' + b"[" * 900 + b"]" * 900 + b"}}", "nested_900"),
        (b'{"nn": {}}', "wrong_top_key"),
]):
    add(f"config_{label}", "config", raw_config(text))


def missing_config(d: Path, nn: dict):
    (d / CFG).unlink()
    return False


add("config_missing_file", "config", missing_config)


def config_is_directory(d: Path, nn: dict):
    (d / CFG).unlink()
    (d / CFG).mkdir()
    return False


add("config_is_directory", "config", config_is_directory)

for key, value in [
        (("num_epochs",), "ten"), (("num_epochs",), -1), (("num_epochs",), 1.5),
        (("num_epochs",), [1]), (("data", "batch_size"), 0), (("data", "batch_size"), -4),
        (("data", "batch_size"), "16"), (("data", "batch_size"), 2.5),
        (("data", "test_batch_size"), 0), (("data", "preload"), "yes"),
        (("data", "grayscale"), 3), (("data", "num_workers"), -2),
        (("data", "input_type"), "imagez"), (("data", "type"), 7),
        (("data", "hdf5_precision"), "double"), (("data", "max_image_pixels"), 0),
        (("data", "max_image_pixels"), "many"), (("data", "transforms"), "resize"),
        (("data", "transforms"), [{"resize": [0, 28]}]),
        (("data", "transforms"), [{"resize": [-5, 28]}]),
        (("data", "transforms"), [{"resize": "big"}]),
        (("data", "transforms"), [{"rezise": [28, 28]}]),
        (("data", "transforms"), [{"normalize": {"mean": 0, "std": 0}}]),
        (("data", "transforms"), [{"random_crop": [100, 100]}]),
        (("optimizer", "learning_rate"), "fast"), (("optimizer", "learning_rate"), -0.1),
        (("optimizer", "learning_rate"), 1e300), (("optimizer", "momentum"), -1),
        (("optimizer", "type"), "Adamm"), (("optimizer", "type"), DELETE),
        (("optimizer",), "SGD"), (("loss", "function"), "NLLL"), (("loss",), 3),
        (("loss", "function"), DELETE), (("checkpoints", "interval"), 0),
        (("checkpoints", "interval"), "x"), (("checkpoints", "load"), "./nope.pt"),
        (("seed",), "abc"), (("debug_interval",), 0), (("mixed_precision",), "fp8"),
        (("outfile",), 12), (("layers",), 5), (("layers",), []), (("layers",), {}),
        (("data", "input_path"), "./nowhere/"), (("data", "test_input_path"), "./nowhere/"),
        (("data", "input_path"), 3),
]:
    shown = "_".join(str(k) for k in key) + "_" + (
        "deleted" if value is DELETE else json.dumps(value)[:24])
    shown = shown.replace("-", "minus").replace("[", "list").replace("{", "dict")
    label = "".join(c if c.isalnum() else "_" for c in shown).strip("_")
    add(f"config_{label}", "config", setter(*key, value))


def scheduler(kind: str, **opts):
    def apply(d: Path, nn: dict):
        nn["optimizer"]["lr_scheduler"] = dict({"type": kind}, **opts)
    return apply


add("config_scheduler_unknown", "config", scheduler("Bogus"))
add("config_scheduler_gamma_negative", "config", scheduler("Exponential", gamma=-0.5))
add("config_scheduler_step_zero", "config", scheduler("Step", step_size=0, gamma=0.5))
add("config_typo_bath_size", "config", setter("data", "bath_size", 8))
add("config_typo_optimiser", "config", setter("optimiser", {"type": "SGD"}))


add("config_fp16_on_cpu", "config", setter("mixed_precision", "fp16"))
add("config_loss_weight_wrong_length", "config", setter("loss", {"function": "NLL",
                                                                "weight": [1.0, 2.0, 3.0]}))
add("config_bce_with_labels", "config", setter("loss", {"function": "BCE"}))


def layer_instead_of_layers(d: Path, nn: dict):
    nn["layer"] = nn.pop("layers")


add("config_layer_for_layers", "config", layer_instead_of_layers)
add("config_slicers_with_images", "config",
    setter("data", "slicers", [{"name": "s", "sizes": [8, 8]}]))
add("config_test_output_format_xml", "config", setter("data", "test_output_format", "xml"))


def resume_without_save(d: Path, nn: dict):
    nn["checkpoints"] = {"resume": True}


add("config_resume_without_save", "config", resume_without_save)

# ---------------------------------------------------------------- B. networks
for target, key, value in [
        ("fc1", "units", -5), ("fc1", "units", 2 ** 40), ("fc1", "units", 0),
        ("fc1", "units", "3"), ("fc1", "units", True), ("fc1", "units", 2.5),
        ("fc1", "units", None), ("conv1", "filters", 0), ("conv1", "filters", -1),
        ("conv1", "filters", 2 ** 40), ("conv1", "kernel_size", 0),
        ("conv1", "kernel_size", [-3, 3]), ("conv1", "kernel_size", [3, "x"]),
        ("conv1", "kernel_size", [50, 50]), ("conv1", "strides", 0),
        ("conv1", "dilation_rate", 0), ("conv1", "padding", "weird"),
        ("conv1", "padding", [-1, -1]), ("conv1", "activation", "sparkle"),
        ("conv1", "batch_input_shape", [None, "a", 28, 1]),
        ("conv1", "batch_input_shape", [None, -28, 28, 1]),
        ("conv1", "batch_input_shape", [None, 0, 28, 1]),
        ("conv1", "batch_input_shape", [None, 28, 28, 2 ** 40]),
        ("conv1", "batch_input_shape", [None, 28, 28, 3]),
        ("max_pool_1", "pool_size", 0), ("max_pool_1", "strides", 0),
        ("max_pool_1", "pool_size", [40, 40]), ("dropout", "rate", 1.0),
        ("dropout", "rate", -0.1), ("spat_drop", "rate", "half"),
        ("softmax", "axis", 7), ("fc2", "units", 1),
]:
    label = f"{target}_{key}_{json.dumps(value)}"
    label = "".join(c if c.isalnum() else "_" for c in label)[:48].strip("_")
    add(f"net_{label}", "network", setter(f"layer:{target}", key, value))


def insert_layer(position: int, entry: dict):
    def apply(d: Path, nn: dict):
        nn["layers"].insert(position, entry)
    return apply


add("net_unknown_layer_class", "network", insert_layer(1, {"class_name": "Frobnicate2D",
                                                           "config": {"name": "fro"}}))
add("net_lambda_layer", "network", insert_layer(1, {"class_name": "Lambda", "config": {
    "name": "sneaky", "function": "__import__('os').system('touch PWNED')"}}))
add("net_layer_without_class", "network", insert_layer(1, {"config": {"name": "nameless"}}))
add("net_layer_not_object", "network", insert_layer(1, "Dense"))
add("net_reshape_negative", "network", insert_layer(8, {"class_name": "Reshape", "config": {
    "name": "rs", "target_shape": [-5, 2]}}))
add("net_reshape_wrong_size", "network", insert_layer(8, {"class_name": "Reshape", "config": {
    "name": "rs", "target_shape": [7, 7]}}))
add("net_bn_epsilon_negative", "network", insert_layer(2, {
    "class_name": "BatchNormalization", "config": {"name": "bn", "epsilon": -1}}))
add("net_upsampling_zero", "network", insert_layer(2, {
    "class_name": "UpSampling2D", "config": {"name": "up", "size": 0}}))
add("net_zeropadding_negative", "network", insert_layer(2, {
    "class_name": "ZeroPadding2D", "config": {"name": "zp", "padding": -3}}))
add("net_cropping_everything", "network", insert_layer(2, {
    "class_name": "Cropping2D", "config": {"name": "cr", "cropping": 20}}))


def duplicate_names(d: Path, nn: dict):
    layer(nn, "conv2")["name"] = "conv1"


add("net_duplicate_names", "network", duplicate_names)


def functional(nodes: list[tuple[str, str, dict, list[str]]], inputs="in", outputs="out"):
    return {"class_name": "Model", "config": {"name": "m", "layers": [
        {"class_name": cls, "name": n, "config": dict(cfg, name=n),
         "inbound_nodes": [[[src, 0, 0, {}] for src in ins]] if ins else []}
        for n, cls, cfg, ins in nodes],
        "input_layers": [[inputs, 0, 0]], "output_layers": [[outputs, 0, 0]]}}


def network_file(obj_or_text):
    def apply(d: Path, nn: dict):
        text = obj_or_text if isinstance(obj_or_text, (str, bytes)) else json.dumps(obj_or_text)
        p = d / "net.json"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        nn["layers"] = "./net.json"
    return apply


_IN = ("in", "InputLayer", {"batch_input_shape": [None, 28, 28, 1]}, [])
add("net_cycle", "network", network_file(functional([
    _IN, ("a", "Conv2D", {"filters": 2, "kernel_size": 3}, ["b"]),
    ("b", "Conv2D", {"filters": 2, "kernel_size": 3}, ["a"]),
    ("out", "Flatten", {}, ["b"])])))
add("net_dangling_input", "network", network_file(functional([
    _IN, ("a", "Conv2D", {"filters": 2, "kernel_size": 3}, ["ghost"]),
    ("out", "Flatten", {}, ["a"])])))
add("net_two_outputs", "network", network_file({"class_name": "Model", "config": {
    "name": "m", "layers": functional([_IN, ("out", "Flatten", {}, ["in"]),
                                       ("o2", "Flatten", {}, ["in"])])["config"]["layers"],
    "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0], ["o2", 0, 0]]}}))
add("net_concat_mismatch", "network", network_file(functional([
    _IN, ("a", "Conv2D", {"filters": 2, "kernel_size": 3}, ["in"]),
    ("b", "Conv2D", {"filters": 2, "kernel_size": 5}, ["in"]),
    ("out", "Concatenate", {}, ["a", "b"])])))
add("net_add_mismatch", "network", network_file(functional([
    _IN, ("a", "Conv2D", {"filters": 2, "kernel_size": 3}, ["in"]),
    ("out", "Add", {}, ["a", "in"])])))
add("net_file_missing", "network", setter("layers", "./no_such_net.json"))
add("net_file_invalid_json", "network", network_file("{\"class_name\": \"Model\", "))
add("net_file_deep", "network", network_file("[" * 50000 + "]" * 50000))
add("net_file_not_utf8", "network", network_file(b"\xff\xfe\x00garbage"))
add("net_model_class_unknown", "network", network_file({"class_name": "Pipeline",
                                                        "config": {"layers": []}}))
add("net_shared_layer", "network", network_file({"class_name": "Model", "config": {
    "name": "m", "layers": [
        {"class_name": "InputLayer", "name": "in", "config": {
            "name": "in", "batch_input_shape": [None, 28, 28, 1]}, "inbound_nodes": []},
        {"class_name": "Flatten", "name": "out", "config": {"name": "out"},
         "inbound_nodes": [[["in", 0, 0, {}]], [["in", 0, 0, {}]]]}],
    "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]}}))


# ---------------------------------------------------------------- C. data
TRAIN = "data/mnist_jpg/training"


def data_file(rel: str, content: bytes, preload: bool = True):
    def apply(d: Path, nn: dict):
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        nn["data"]["preload"] = preload
    return apply


def png_bomb(side: int) -> bytes:
    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def small_png() -> bytes:
    import io

    from PIL import Image

    b = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(
        b, format="PNG")
    return b.getvalue()


def small_jpeg(size=(28, 28)) -> bytes:
    import io

    from PIL import Image

    b = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random(size[::-1]) * 255).astype(np.uint8)).save(
        b, format="JPEG")
    return b.getvalue()


def jpeg_bomb_header() -> bytes:
    """A small JPEG whose SOF marker claims 60000 x 60000 pixels."""
    data = bytearray(small_jpeg())
    i = 2
    while i < len(data):
        m = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if m in (0xC0, 0xC1, 0xC2):
            data[i + 5:i + 7] = (60000).to_bytes(2, "big")
            data[i + 7:i + 9] = (60000).to_bytes(2, "big")
            break
        i += 2 + length
    return bytes(data)


def png_bad_chunk() -> bytes:
    data = bytearray(small_png())
    k = data.index(b"IDAT")
    data[k:k + 4] = b"IDA["
    return bytes(data)


add("data_corrupt_jpeg", "data", data_file(f"{TRAIN}/1/image_7.jpg", b"\xff\xd8\xff\xe0 nope"))
add("data_truncated_jpeg", "data", data_file(f"{TRAIN}/1/image_7.jpg", small_jpeg()[:200]))
add("data_empty_jpeg", "data", data_file(f"{TRAIN}/0/image_3.jpg", b""))
add("data_text_named_jpg", "data", data_file(f"{TRAIN}/0/readme.jpg", b"hello world\n" * 20))
add("data_png_bad_chunk", "data", data_file(f"{TRAIN}/0/image_5.png", png_bad_chunk()))
add("data_png_truncated", "data", data_file(f"{TRAIN}/0/image_6.png", small_png()[:60]))
add("data_png_bomb_20000", "data", data_file(f"{TRAIN}/1/image_3.png", png_bomb(20000)))
add("data_jpeg_bomb_header", "data", data_file(f"{TRAIN}/1/image_4.jpg", jpeg_bomb_header()))
add("data_bmp_garbage", "data", data_file(f"{TRAIN}/1/image_9.bmp", b"BM" + b"\0" * 30))
def mixed_sizes(d: Path, nn: dict):
    data_file(f"{TRAIN}/1/big.jpg", small_jpeg((40, 30)))(d, nn)
    nn["data"].pop("transforms", None)


add("data_mixed_sizes_no_resize", "data", mixed_sizes)
CASES.append(Case("data_corrupt_jpeg_streaming", "data",
                  data_file(f"{TRAIN}/1/image_8.jpg", b"\xff\xd8\xff\xe0 nope", preload=False),
                  expect="runtime"))


def empty_training(d: Path, nn: dict):
    shutil.rmtree(d / TRAIN)
    (d / TRAIN / "0").mkdir(parents=True)


def hidden_only(d: Path, nn: dict):
    shutil.rmtree(d / TRAIN)
    (d / TRAIN / "0").mkdir(parents=True)
    (d / TRAIN / "0" / ".hidden.jpg").write_bytes(small_jpeg())


def unknown_test_class(d: Path, nn: dict):
    (d / "data/mnist_jpg/testing/7").mkdir()
    (d / "data/mnist_jpg/testing/7/x.jpg").write_bytes(small_jpeg())


def symlink_loop(d: Path, nn: dict):
    os.symlink(".", d / TRAIN / "0" / "loop")


def broken_symlink(d: Path, nn: dict):
    os.symlink("/nonexistent/image.jpg", d / TRAIN / "0" / "dangling.jpg")
    nn["data"]["preload"] = True


def directory_named_jpg(d: Path, nn: dict):
    (d / TRAIN / "0" / "folder.jpg").mkdir()
    (d / TRAIN / "0" / "folder.jpg" / "inner.jpg").write_bytes(b"not an image")
    nn["data"]["preload"] = True


add("data_empty_class_folder", "data", empty_training)
add("data_hidden_files_only", "data", hidden_only)
add("data_unknown_test_class", "data", unknown_test_class)
add("data_symlink_loop", "data", symlink_loop, expect="warning")
add("data_broken_symlink", "data", broken_symlink)
add("data_directory_named_jpg", "data", directory_named_jpg)


def numpy_case(arrays: dict, targets: Optional[dict] = None, extra: Optional[dict] = None):
    """Numpy inputs/targets; ``arrays`` maps file name -> array or raw bytes."""
    def apply(d: Path, nn: dict):
        (d / "npx").mkdir()
        (d / "npy").mkdir()
        base = {f"s{k}.npy": np.ones((1, 28, 28), np.float32) for k in range(4)}
        for name, arr in dict(base, **arrays).items():
            p = d / "npx" / name
            if isinstance(arr, bytes):
                p.write_bytes(arr)
            else:
                np.save(p, arr, allow_pickle=True)
        for name, arr in dict(base, **(targets or {})).items():
            np.save(d / "npy" / name, arr, allow_pickle=True)
        nn["layers"] = [{"class_name": "Conv2D", "config": {
            "name": "c", "batch_input_shape": [None, 28, 28, 1], "filters": 1,
            "kernel_size": 3, "padding": "same"}}]
        nn["loss"] = {"function": "MSE"}
        nn["data"] = dict({"type": "numpy", "input_path": "./npx/", "target_path": "./npy/",
                           "batch_size": 2, "preload": True}, **(extra or {}))
    return apply


add("npy_complex", "data", numpy_case({"s2.npy": np.ones((1, 28, 28), np.complex64)}))
add("npy_object_pickle", "data", numpy_case({"s2.npy": np.array([{"a": 1}], dtype=object)}))
add("npy_strings", "data", numpy_case({"s2.npy": np.array(["a", "b"])}))
add("npy_truncated", "data", numpy_case({"s2.npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'"}))
add("npy_not_numpy", "data", numpy_case({"s2.npy": b"plain text"}))
add("npy_wrong_rank", "data", numpy_case({"s2.npy": np.ones((2, 2, 28, 28, 3), np.float32)}))
add("npy_count_mismatch", "data", numpy_case({"s9.npy": np.ones((1, 28, 28), np.float32)}))
add("npy_shape_mismatch_in_batch", "data", numpy_case({"s1.npy": np.ones((1, 20, 20),
                                                                         np.float32)}))
add("npz_corrupt", "data", numpy_case({"z.npz": b"PK\x03\x04 broken zip"}))


def hdf5_case(builder, extra: Optional[dict] = None):
    def apply(d: Path, nn: dict):
        import h5py

        p = d / "in.h5"
        if isinstance(builder, bytes):
            p.write_bytes(builder)
        else:
            with h5py.File(p, "w") as f:
                builder(f)
        nn["layers"] = [{"class_name": "Conv2D", "config": {
            "name": "c", "batch_input_shape": [None, 28, 28, 1], "filters": 1,
            "kernel_size": 3, "padding": "same"}}]
        nn["loss"] = {"function": "MSE"}
        nn["data"] = dict({"type": "hdf5", "input_path": "./in.h5", "target_path": "./in.h5",
                           "batch_size": 2, "preload": True}, **(extra or {}))
    return apply


def _h5_strings(f):
    f["a"] = np.ones((28, 28), np.float32)
    f["names"] = np.array([b"abc", b"de"])


def _h5_vlen_strings(f):
    import h5py

    f["a"] = np.ones((28, 28), np.float32)
    f["names"] = np.array(["x", "yz"], dtype=h5py.string_dtype())


def _h5_complex(f):
    f["a"] = np.ones((28, 28), np.complex64)


def _h5_compound(f):
    f["a"] = np.zeros(3, dtype=[("x", "f4"), ("y", "i4")])


def _h5_empty(f):
    f.create_group("nothing")


add("h5_string_dataset", "data", hdf5_case(_h5_strings))
add("h5_vlen_strings", "data", hdf5_case(_h5_vlen_strings))
add("h5_complex", "data", hdf5_case(_h5_complex))
add("h5_compound", "data", hdf5_case(_h5_compound))
add("h5_no_datasets", "data", hdf5_case(_h5_empty))
add("h5_not_hdf5", "data", hdf5_case(b"this is not an HDF5 file at all"))
add("h5_truncated", "data", hdf5_case(b"\x89HDF\r\n\x1a\n" + b"\0" * 20))


def _h5_big(f):
    f["vol"] = np.ones((8, 8), np.float32)


add("slicer_bigger_than_array", "data", hdf5_case(_h5_big, {
    "slicers": [{"name": "s", "sizes": [16, 16], "discard_remainders": True}],
    "target_path": None}))


def _h5_two(f):
    f["a"] = np.ones((16, 16), np.float32)
    f["b"] = np.ones((16, 16), np.float32)


add("slicer_two_arrays", "data", hdf5_case(_h5_two, {
    "slicers": [{"name": "s", "sizes": [8, 8]}], "target_path": None}))


def mnist_corrupt(d: Path, nn: dict):
    (d / "mnist").mkdir()
    (d / "mnist" / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"\0" * 7)
    (d / "mnist" / "train-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\x05abc")
    nn["data"] = {"type": "mnist", "input_path": "./mnist/", "batch_size": 2}


add("mnist_corrupt_idx", "data", mnist_corrupt)


# ---------------------------------------------------------------- D. checkpoints
class Payload:
    """A pickle that would create PWNED in the working directory if ever unpickled."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def load_file(content, name="bad.pt"):
    def apply(d: Path, nn: dict):
        p = d / name
        if callable(content):
            content(p, d)
        else:
            p.write_bytes(content)
        nn["checkpoints"]["load"] = f"./{name}"
    return apply


def _torch_save(obj):
    def write(p: Path, d: Path):
        import torch

        torch.save(obj() if callable(obj) else obj, p)
    return write


def _truncated(p: Path, d: Path):
    data = (d / "ckpt/model_checkpoint_1.pt").read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _wrong_shapes(p: Path, d: Path):
    import torch

    state = torch.load(d / "ckpt/model_checkpoint_1.pt", weights_only=True)
    state["model"]["fc1.weight"] = torch.zeros(7, 3)
    torch.save(state, p)


def _nan_weights(p: Path, d: Path):
    import torch

    state = torch.load(d / "ckpt/model_checkpoint_1.pt", weights_only=True)
    state["model"]["fc1.weight"] = torch.full_like(state["model"]["fc1.weight"], float("nan"))
    torch.save(state, p)


def _pickled_module():
    import torch

    return torch.nn.Linear(2, 2)


add("ckpt_raw_pickle_payload", "checkpoint", load_file(pickle.dumps({"model": Payload()})))
add("ckpt_torch_payload", "checkpoint", load_file(_torch_save(lambda: {"model": Payload()})))
add("ckpt_pickled_module", "checkpoint", load_file(_torch_save(_pickled_module)))
add("ckpt_truncated", "checkpoint", load_file(_truncated))
add("ckpt_wrong_shapes", "checkpoint", load_file(_wrong_shapes))
add("ckpt_zero_bytes", "checkpoint", load_file(b""))
add("ckpt_text", "checkpoint", load_file(b"hello, I am a checkpoint"))
add("ckpt_npy_renamed", "checkpoint", load_file(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', "
                                                b"'fortran_order': False, 'shape': (2,), }"
                                                + b" " * 40 + b"\n" + b"\0" * 8))
add("ckpt_no_tensors", "checkpoint", load_file(_torch_save({"model": {"w": [1, 2]}})))
add("ckpt_h5_garbage", "checkpoint", load_file(b"not hdf5", name="weights.h5"))


def ckpt_is_directory(d: Path, nn: dict):
    (d / "ckdir.pt").mkdir()
    nn["checkpoints"]["load"] = "./ckdir.pt"


add("ckpt_load_is_directory", "checkpoint", ckpt_is_directory)


def resume_corrupt(d: Path, nn: dict):
    (d / "ckpt" / "model_checkpoint_9.pt").write_bytes(b"garbage")
    nn["checkpoints"]["resume"] = True


add("ckpt_resume_corrupt_newest", "checkpoint", resume_corrupt, expect="warning")


# ---------------------------------------------------------------- E. output paths
def make_file(rel: str):
    def apply(d: Path, nn: dict):
        (d / rel).write_text("in the way")
    return apply


def chain(*fns):
    def apply(d: Path, nn: dict):
        for fn in fns:
            if fn(d, nn) is False:
                return False
    return apply


add("out_test_output_is_file", "output",
    chain(make_file("predfile"), setter("data", "test_output_path", "./predfile")))
add("out_save_is_file", "output",
    chain(make_file("ckfile"), setter("checkpoints", "save", "./ckfile")))
add("out_train_log_is_directory", "output",
    chain(setter("outfile", "logs.txt"), lambda d, nn: (d / "logs_train.txt").mkdir()))
add("out_under_a_file", "output",
    setter("data", "test_output_path", "./out_fuzz_train.txt/preds/"))
add("out_save_under_a_file", "output", setter("checkpoints", "save", "./ckpt/model_checkpoint_1.pt/x/"))
add("out_tensorboard_is_file", "output",
    chain(make_file("tbfile"), setter("tensorboard", "./tbfile")))


def hdf5_outfile_dir(d: Path, nn: dict):
    import h5py

    with h5py.File(d / "vol.h5", "w") as f:
        f["v"] = np.ones((32, 32), np.float32)
    (d / "asm").mkdir()
    nn["layers"] = [{"class_name": "Conv2D", "config": {
        "name": "c", "batch_input_shape": [None, 16, 16, 1], "filters": 1, "kernel_size": 3,
        "padding": "same"}}]
    nn["data"] = {"type": "hdf5", "test_input_path": "./vol.h5", "hdf5_outfile": "./asm",
                  "slicers": [{"name": "s", "sizes": [16, 16]}]}
    nn.pop("loss", None)


add("out_hdf5_outfile_is_directory", "output", hdf5_outfile_dir)


def read_only(setting: Callable[[Path, dict, Path], None]):
    def apply(d: Path, nn: dict):
        ro = d / "ro"
        ro.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(ro)], check=True)
        setting(d, nn, ro)
    return apply


add("out_read_only_test_output", "output",
    read_only(lambda d, nn, ro: nn["data"].__setitem__("test_output_path", "./ro/preds/")),
    needs_mount=True)
add("out_read_only_save", "output",
    read_only(lambda d, nn, ro: nn["checkpoints"].__setitem__("save", "./ro/")), needs_mount=True)
add("out_read_only_outfile", "output",
    read_only(lambda d, nn, ro: nn.__setitem__("outfile", "./ro/logs/out.txt")),
    needs_mount=True)


# ---------------------------------------------------------------- F. full disks
def full_disk(setting: Callable[[Path, dict, Path], None], size: str = "64k", used: int = 40000):
    def apply(d: Path, nn: dict):
        full = d / "full"
        full.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(full)],
                       check=True)
        (full / "filler").write_bytes(b"\0" * used)
        setting(d, nn, full)
    return apply


def _full_preds(d, nn, full):
    nn["data"]["test_output_path"] = "./full/preds/"
    nn["checkpoints"].pop("save", None)


def _full_ckpt(d, nn, full):
    nn["checkpoints"]["save"] = "./full/ck/"
    nn["data"].pop("test_output_path", None)


def _full_logs(d, nn, full):
    nn["outfile"] = "./full/out.txt"


add("disk_full_predictions", "disk", full_disk(_full_preds, used=62000), needs_mount=True)
add("disk_full_checkpoint", "disk", full_disk(_full_ckpt), needs_mount=True)
add("disk_full_logs", "disk", full_disk(_full_logs, used=62000), needs_mount=True)


# ---------------------------------------------------------------- G. signals
def longer_run(d: Path, nn: dict):
    nn["num_epochs"] = 100          # longer than any signal time: every signal lands


rng_signals = random.Random(1234)
for k in range(10):
    sig = signal.SIGTERM if k % 2 == 0 else signal.SIGINT
    c = Case(f"signal_{signal.Signals(sig).name.lower()}_{k}", "signal", longer_run,
             expect="signal", signal_at=(sig, round(rng_signals.uniform(0.2, 5.0), 2)))
    CASES.append(c)


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------

@dataclass
class Result:
    case: Case
    rc: Optional[int] = None
    stderr_lines: int = 0
    traceback: bool = False
    internal: bool = False
    hang: bool = False
    silent: bool = False
    damaged: list = field(default_factory=list)
    payload: bool = False
    skipped: str = ""
    signal_sent: bool = False
    ok: bool = False
    first_error: str = ""
    seconds: float = 0.0


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OMP_NUM_THREADS", "1")
    e.setdefault("KERAS_BACKEND", "torch")
    e.pop("RMLDNN_DEBUG", None)
    return e


def command() -> list[str]:
    exe = shutil.which("rmldnn")
    return [exe] if exe else [sys.executable, "-m", "rmldnn_py"]


def prepare_base(root: Path) -> Path:
    base = root / "base"
    make_image_tree(base / "data/mnist_jpg/training", ["0", "1"], 16, seed=0)
    make_image_tree(base / "data/mnist_jpg/testing", ["0", "1"], 4, seed=1)
    cfg = json.loads((REPO / "configs/config_rmldnn_test.json").read_text())
    nn = cfg["neural_network"]
    nn["num_epochs"] = 1
    nn["outfile"] = "out_fuzz.txt"
    nn["checkpoints"] = {"save": "./ckpt/"}
    nn["data"]["test_output_path"] = "./pred/"
    nn["data"]["batch_size"] = 8
    (base / CFG).write_text(json.dumps(cfg, indent=1))
    proc = subprocess.run(command() + ["--config=" + CFG], cwd=base, env=env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise SystemExit(f"the base run failed:\n{proc.stdout[-2000:]}\n{proc.stderr}")
    for name in OUTPUTS:
        assert (base / name).is_file(), name
    return base


def mounts_under(d: Path) -> list[str]:
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    prefix = str(d.resolve())
    return sorted({ln.split()[1] for ln in lines if ln.split()[1].startswith(prefix)},
                  key=len, reverse=True)


def checkpoint_loads(path: Path) -> bool:
    import torch

    try:
        torch.load(path, weights_only=True, map_location="cpu")
        return True
    except Exception:
        return False


def run_case(c: Case, base: Path, root: Path, can_mount: bool) -> Result:
    r = Result(c)
    if c.needs_mount and not can_mount:
        r.skipped = "needs mount (root)"
        return r
    d = root / c.name
    shutil.copytree(base, d, symlinks=True)
    snapshot = {name: (d / name).read_bytes() for name in OUTPUTS}
    cfg = json.loads((d / CFG).read_text())
    t0 = time.time()
    try:
        if c.mutate(d, cfg["neural_network"]) is not False:
            (d / CFG).write_text(json.dumps(cfg, indent=1))
        proc = subprocess.Popen(command() + ["--config=" + CFG], cwd=d, env=env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        if c.signal_at is not None:
            sig, after = c.signal_at
            try:
                proc.wait(timeout=after)
                r.first_error = f"(finished before the signal at {after} s)"
            except subprocess.TimeoutExpired:
                proc.send_signal(sig)
                r.signal_sent = True
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            r.hang = True
        r.rc = proc.returncode
    finally:
        r.seconds = time.time() - t0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    r.stderr_lines = len(lines)
    if c.signal_at is not None:
        r.first_error = (f"{signal.Signals(c.signal_at[0]).name} at {c.signal_at[1]} s: "
                         + (lines[0][:120] if lines else "")) if r.signal_sent else r.first_error
    else:
        r.first_error = lines[0][:160] if lines else ""
    r.traceback = "Traceback (most recent call last)" in err + out
    r.internal = "internal error:" in err
    r.payload = (d / "PWNED").exists()
    temps = [str(p.relative_to(d)) for p in d.rglob("*.tmp")]
    if c.expect == "signal":
        for p in d.rglob("model_checkpoint_*.pt"):
            if not checkpoint_loads(p):
                r.damaged.append(f"corrupt {p.relative_to(d)}")
        r.damaged += [f"temp {t}" for t in temps]
        r.ok = (not r.hang and r.rc in (0, 130, 143) and r.stderr_lines <= 1
                and not r.traceback and not r.damaged)
    else:
        # a full disk is met after training started: this run's logs legitimately replace the
        # old ones there; the old checkpoint and prediction file must survive in every case
        kept = [n for n in OUTPUTS if c.category != "disk" and c.expect != "runtime"
                or not n.endswith(".txt")]
        for name, data in snapshot.items():
            if name not in kept:
                continue
            p = d / name
            if not p.is_file() or p.read_bytes() != data:
                r.damaged.append(name)
        r.damaged += [f"temp {t}" for t in temps]
        if c.expect == "warning":       # a successful run rewrites the outputs legitimately
            r.damaged = [f"temp {t}" for t in temps]
            r.ok = (r.rc == 0 and "WARNING" in out and not err.strip() and not r.traceback
                    and not r.damaged)
        else:
            r.silent = r.rc == 0                  # error and runtime cases
            one_line = (r.stderr_lines == 1 and lines[0].startswith("rmldnn: error: ")) or (
                r.rc == 2 and r.stderr_lines == 2 and lines[0].startswith("rmldnn: error: ")
                and lines[1].startswith("usage:"))
            r.ok = (r.rc in (1, 2) and one_line and not r.traceback and not r.internal
                    and not r.damaged and not r.hang)
    r.ok = r.ok and not r.payload and (r.rc is None or r.rc >= 0)
    for m in mounts_under(d):
        subprocess.run(["umount", m], capture_output=True)
    return r


def can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    p = Path(tempfile.mkdtemp(prefix="fuzz_mount_"))
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(p)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(p)], capture_output=True)
        return ok
    finally:
        p.rmdir()


def flags(r: Result) -> str:
    f = []
    if r.hang:
        f.append("HANG")
    if r.rc is not None and r.rc < 0:
        f.append(f"SIGNAL({-r.rc})")
    if r.traceback:
        f.append("TRACEBACK")
    if r.internal:
        f.append("INTERNAL")
    if r.silent:
        f.append("SILENT-SUCCESS")
    if r.payload:
        f.append("PAYLOAD-RAN")
    if r.damaged:
        f.append("DAMAGED:" + ",".join(r.damaged)[:60])
    if not r.ok and not f and not r.skipped:
        f.append(f"STDERR-LINES={r.stderr_lines}" if r.stderr_lines != 1 else "UNEXPECTED")
    return " ".join(f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="every 4th case only")
    ap.add_argument("--jobs", type=int, default=2, help="cases run in parallel (default 2)")
    ap.add_argument("--only", default="", help="run the cases whose name contains one of "
                                               "these comma-separated strings")
    ap.add_argument("--keep", action="store_true", help="keep the case directories")
    args = ap.parse_args()

    names = [c.name for c in CASES]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate case names: {dup}"
    wanted = [w for w in args.only.split(",") if w] or [""]
    cases = [c for c in CASES if any(w in c.name for w in wanted)]
    if args.quick:
        cases = cases[::4]
    mount_ok = can_mount()
    root = Path(tempfile.mkdtemp(prefix="rmldnn_fuzz_"))
    print(f"{len(CASES)} distinct cases defined, running {len(cases)} in {root} "
          f"(mount {'available' if mount_ok else 'not available'})", flush=True)
    t0 = time.time()
    base = prepare_base(root)
    results: list[Result] = []
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(run_case, c, base, root, mount_ok) for c in cases]
        for fut in futures:
            r = fut.result()
            results.append(r)
            status = "skip" if r.skipped else ("ok" if r.ok else "FAIL")
            print(f"[{len(results):3d}/{len(cases)}] {status:4s} {r.case.name} "
                  f"({r.seconds:.0f}s) {flags(r)}", flush=True)

    print()
    w = max(len(r.case.name) for r in results)
    print(f"{'case':{w}s}  {'category':10s} {'expect':8s} {'rc':>4s} {'err':>3s}  result  "
          f"first stderr line / flags")
    for r in results:
        rc = "-" if r.rc is None else str(r.rc)
        status = "skip" if r.skipped else ("ok" if r.ok else "FAIL")
        detail = r.skipped or (flags(r) + " " + r.first_error).strip()
        print(f"{r.case.name:{w}s}  {r.case.category:10s} {r.case.expect:8s} {rc:>4s} "
              f"{r.stderr_lines:>3d}  {status:6s}  {detail[:150]}")
    ran = [r for r in results if not r.skipped]
    counts = {
        "cases defined": len(CASES),
        "cases run": len(ran),
        "skipped": len(results) - len(ran),
        "as promised": sum(r.ok for r in ran),
        "not as promised": sum(not r.ok for r in ran),
        "tracebacks": sum(r.traceback for r in ran),
        "signals (negative exit codes)": sum(r.rc is not None and r.rc < 0 for r in ran),
        "hangs": sum(r.hang for r in ran),
        "internal error lines": sum(r.internal for r in ran),
        "silent successes on bad input": sum(r.silent for r in ran),
        "previous outputs damaged / temp files left": sum(bool(r.damaged) for r in ran),
        "payloads executed": sum(r.payload for r in ran),
        "stderr not exactly one line (errors)": sum(
            r.case.expect in ("error", "runtime") and not r.ok and r.stderr_lines != 1
            for r in ran),
    }
    print()
    for k, v in counts.items():
        print(f"{k:45s}: {v}")
    print(f"{'wall time':45s}: {time.time() - t0:.0f} s")
    if not args.keep:
        for m in mounts_under(root):
            subprocess.run(["umount", m], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    return 0 if counts["not as promised"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
