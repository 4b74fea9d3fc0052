"""Bad input through the ``rmldnn`` command: one line on stderr naming the culprit, a non-zero exit,
no traceback, and existing outputs left intact (SPEC §2.4, issue acceptance list)."""

import json
import shutil

import pytest
import torch

from conftest import REPO, run_rmldnn

CFG = "config_rmldnn_test.json"


def _cfg(d):
    return json.loads((d / CFG).read_text())


def _write(d, cfg):
    (d / CFG).write_text(json.dumps(cfg))


def _one_epoch(d):
    cfg = _cfg(d)
    cfg["neural_network"]["num_epochs"] = 1
    _write(d, cfg)
    return cfg


def _assert_one_line_error(proc, *fragments, code=1):
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    err = proc.stderr.strip().splitlines()
    assert len([e for e in err if e.startswith("rmldnn: error: ")]) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for frag in fragments:
        assert frag in err[0], (frag, err[0])


def test_missing_config_file(tmp_path):
    proc = run_rmldnn(["--config=", "./nope.json"], cwd=tmp_path)
    _assert_one_line_error(proc, "nope.json", code=2)


def test_malformed_json(smoke_dir):
    (smoke_dir / CFG).write_text('{"neural_network": {\n  "num_epochs": 1,,\n}}')
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    _assert_one_line_error(proc, CFG, "line 2", "column")


def test_wrong_type(smoke_dir):
    cfg = _one_epoch(smoke_dir)
    cfg["neural_network"]["optimizer"]["learning_rate"] = "fast"
    _write(smoke_dir, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    _assert_one_line_error(proc, CFG, "neural_network.optimizer.learning_rate", '"fast"')


def test_misspelt_key_is_an_error_other_unknown_keys_warn(smoke_dir):
    cfg = _one_epoch(smoke_dir)
    cfg["neural_network"]["data"]["bath_size"] = 8
    _write(smoke_dir, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    _assert_one_line_error(proc, CFG, "neural_network.data.bath_size", "did you mean 'batch_size'")
    del cfg["neural_network"]["data"]["bath_size"]
    cfg["neural_network"]["data"]["my_note"] = "x"
    _write(smoke_dir, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    assert proc.returncode == 0, proc.stderr
    warn = [line for line in proc.stdout.splitlines() if "WARNING" in line]
    assert warn and "unknown key 'neural_network.data.my_note' ignored" in warn[0]


def test_missing_data_directory(smoke_dir):
    shutil.rmtree(smoke_dir / "data/mnist_jpg/training")
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    _assert_one_line_error(proc, "input_path", "mnist_jpg/training")


def test_folder_without_images(smoke_dir):
    shutil.rmtree(smoke_dir / "data/mnist_jpg/testing")
    (smoke_dir / "data/mnist_jpg/testing/0").mkdir(parents=True)
    (smoke_dir / "data/mnist_jpg/testing/0/readme.txt").write_text("no images here")
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    _assert_one_line_error(proc, "mnist_jpg/testing")


@pytest.mark.parametrize("preload", [True, False])
def test_corrupt_image(smoke_dir, preload):
    cfg = _one_epoch(smoke_dir)
    cfg["neural_network"]["data"]["preload"] = preload
    _write(smoke_dir, cfg)
    bad = smoke_dir / "data/mnist_jpg/training/1/image_7.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    _assert_one_line_error(proc, "image_7.jpg")


def test_missing_layers_file(smoke_dir):
    cfg = _one_epoch(smoke_dir)
    cfg["neural_network"]["layers"] = "./no_such_net.json"
    _write(smoke_dir, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    _assert_one_line_error(proc, "no_such_net.json")


def test_unsupported_layer(smoke_dir):
    cfg = _one_epoch(smoke_dir)
    cfg["neural_network"]["layers"].insert(
        1, {"class_name": "Lambda", "config": {"name": "sneaky", "function": "print('pwned')"}})
    _write(smoke_dir, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    _assert_one_line_error(proc, "sneaky", "Lambda")
    assert "pwned" not in proc.stdout


@pytest.fixture
def trained(smoke_dir):
    """A smoke dir after one successful epoch with a checkpoint and predictions."""
    cfg = _one_epoch(smoke_dir)
    cfg["neural_network"]["checkpoints"] = {"save": "./ckpt/"}
    cfg["neural_network"]["data"]["test_output_path"] = "./pred/"
    _write(smoke_dir, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    assert proc.returncode == 0, proc.stderr
    snapshot = {p: p.read_bytes() for p in [smoke_dir / "ckpt/model_checkpoint_1.pt",
                                            smoke_dir / "pred/output_1.h5"]}
    return smoke_dir, cfg, snapshot


def _intact(snapshot):
    for p, data in snapshot.items():
        assert p.read_bytes() == data, f"{p} was modified"
        assert not [q for q in p.parent.iterdir() if q.name.endswith(".tmp")]


def test_checkpoint_that_is_not_a_checkpoint(trained):
    d, cfg, snapshot = trained
    (d / "junk.pt").write_text("hello")
    cfg["neural_network"]["checkpoints"]["load"] = "./junk.pt"
    _write(d, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=d)
    _assert_one_line_error(proc, "junk.pt", "not a readable rmldnn_py checkpoint")
    _intact(snapshot)


def test_checkpoint_with_wrong_shapes(trained):
    d, cfg, snapshot = trained
    state = torch.load(d / "ckpt/model_checkpoint_1.pt", weights_only=True)
    state["model"]["fc1.weight"] = torch.zeros(7, 3)
    torch.save(state, d / "wrong.pt")
    cfg["neural_network"]["checkpoints"]["load"] = "./wrong.pt"
    _write(d, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=d)
    _assert_one_line_error(proc, "wrong.pt", "fc1", "[7, 3]", "[50, 320]")
    assert proc.stdout.strip().splitlines()[-1].endswith("All done (return value = 1).")
    _intact(snapshot)


def test_checkpoint_partial_load_skips_layers(trained):
    d, cfg, _ = trained
    cfg["neural_network"]["checkpoints"]["load"] = "./ckpt/model_checkpoint_1.pt"
    cfg["neural_network"]["layers"][-2]["config"]["name"] = "fc_new"
    cfg["neural_network"]["checkpoints"].pop("save")
    _write(d, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=d)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "   Skipping layer fc_new: not found in model" in out
    assert "   Skipping parameter fc_new.weight: not found in model" in out
    assert "   Skipping parameter fc_new.bias: not found in model" in out
    assert "Skipping layer conv1" not in out and "fc2" not in out.split("Skipping")[-1]


# ============================================================================================
# Bad-input table (issue 11): each case mutates a directory that holds a previous successful
# run (logs, checkpoint, predictions) and must end with exit code 1, exactly one stderr line
# ``rmldnn: error: ...`` naming the culprit, no traceback, and the previous outputs unchanged.
# ============================================================================================

import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import make_image_tree  # noqa: E402


@pytest.fixture(scope="module")
def previous_run(tmp_path_factory):
    """A directory after one successful epoch: logs, checkpoint and predictions exist."""
    d = tmp_path_factory.mktemp("previous_run")
    make_image_tree(d / "data/mnist_jpg/training", ["0", "1"], 20, seed=0)
    make_image_tree(d / "data/mnist_jpg/testing", ["0", "1"], 5, seed=1)
    cfg = json.loads((REPO / "configs" / CFG).read_text())
    nn = cfg["neural_network"]
    nn["num_epochs"] = 1
    nn["checkpoints"] = {"save": "./ckpt/"}
    nn["data"]["test_output_path"] = "./pred/"
    (d / CFG).write_text(json.dumps(cfg))
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=d)
    assert proc.returncode == 0, proc.stderr
    return d


OUTPUTS = ("out_dnn_mnist_sgd_train.txt", "out_dnn_mnist_sgd_test.txt",
           "ckpt/model_checkpoint_1.pt", "pred/output_1.h5")


def _layer(nn, name):
    return next(ly for ly in nn["layers"] if ly["config"].get("name") == name)["config"]


def _png_bomb(path: Path, side: int) -> None:
    """A valid 1-bit PNG of side x side zeros (~50 KB for 20000), compressed while written."""
    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))


def _corrupt_png(path: Path) -> None:
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    i = data.index(b"IDAT")
    data[i:i + 4] = b"IDA["
    path.write_bytes(bytes(data))


def _numpy_data(d: Path, bad) -> dict:
    (d / "npx").mkdir()
    (d / "npy").mkdir()
    for k in range(4):
        np.save(d / "npx" / f"s{k}.npy", np.ones((1, 28, 28), np.float32))
        np.save(d / "npy" / f"s{k}.npy", np.ones((1, 28, 28), np.float32))
    np.save(d / "npx" / "s2.npy", bad)
    return {"type": "numpy", "input_path": "./npx/", "target_path": "./npy/", "batch_size": 2,
            "preload": True}


def _fcn(nn) -> None:
    nn["layers"] = [{"class_name": "Conv2D", "config": {
        "name": "c", "batch_input_shape": [None, 28, 28, 1], "filters": 1, "kernel_size": 3,
        "padding": "same"}}]
    nn["loss"] = {"function": "MSE"}
    nn["data"].pop("test_output_path", None)
    nn["data"].pop("test_input_path", None)


def _case_h5_strings(d, nn):
    with h5py.File(d / "strings.h5", "w") as f:
        f["images/a"] = np.ones((28, 28), np.float32)
        f["names"] = np.array([b"abc", b"de"])
    nn["data"] = {"type": "hdf5", "input_path": "./strings.h5", "target_path": "./strings.h5",
                  "batch_size": 2}
    nn["loss"] = {"function": "MSE"}


def _case_complex_npy(d, nn):
    _fcn(nn)
    nn["data"] = _numpy_data(d, np.ones((1, 28, 28), np.complex64))


def _case_bomb(d, nn):
    # preload: found before training (without it, when its batch is read, after the first
    # training lines of this run replaced the old log: the run had started)
    nn["data"]["preload"] = True
    _png_bomb(d / "data/mnist_jpg/training/1/image_3.png", 20000)


def _case_corrupt_png(d, nn):
    nn["data"]["preload"] = True     # decoded by the pre-loading thread pool
    _corrupt_png(d / "data/mnist_jpg/training/0/image_5.png")


def _case_deep_config(d, nn):
    (d / CFG).write_text('{"neural_network": ' + "[" * 100000 + "]" * 100000 + "}")
    return False                       # the config is written already


def _case_raw_pickle(d, nn):
    import pickle

    (d / "raw.pt").write_bytes(pickle.dumps({"model": {"w": [1, 2]}}, protocol=4))
    nn["checkpoints"]["load"] = "./raw.pt"


def _case_truncated_checkpoint(d, nn):
    data = (d / "ckpt/model_checkpoint_1.pt").read_bytes()
    (d / "half.pt").write_bytes(data[: len(data) // 2])
    nn["checkpoints"]["load"] = "./half.pt"


def _case_output_is_file(d, nn):
    (d / "predfile").write_text("not a directory")
    nn["data"]["test_output_path"] = "./predfile"


def _case_save_is_file(d, nn):
    (d / "ckfile").write_text("not a directory")
    nn["checkpoints"]["save"] = "./ckfile"


def _case_train_log_is_dir(d, nn):
    nn["outfile"] = "logs.txt"
    (d / "logs_train.txt").mkdir()


def _case_output_under_file(d, nn):
    nn["data"]["test_output_path"] = "./out_dnn_mnist_sgd_train.txt/preds/"


def _set(*path_value):
    *path, value = path_value

    def apply(d, nn):
        node = nn
        for k in path[:-1]:
            node = _layer(nn, k[6:]) if isinstance(k, str) and k.startswith("layer:") else node[k]
        node[path[-1]] = value
    return apply


# id -> (mutation, fragments expected on the error line)
BAD_INPUTS = {
    "dense_units_negative": (_set("layer:fc1", "units", -5),
                             ["layer 'fc1'", "'units' must be a positive integer, received -5"]),
    "dense_units_2_pow_40": (_set("layer:fc1", "units", 2 ** 40),
                             ["layer 'fc1'", "more than this machine's memory"]),
    "batch_input_shape_string": (_set("layer:conv1", "batch_input_shape", [None, "a", 28, 1]),
                                 ["layer 'conv1'", "'batch_input_shape' must hold positive "
                                                   "integers or null"]),
    "batch_input_shape_negative": (_set("layer:conv1", "batch_input_shape", [None, -28, 28, 1]),
                                   ["layer 'conv1'", "[null, -28, 28, 1]"]),
    "conv_filters_zero": (_set("layer:conv2", "filters", 0), ["layer 'conv2'", "'filters'"]),
    "conv_kernel_negative": (_set("layer:conv1", "kernel_size", [-5, 5]),
                             ["layer 'conv1'", "'kernel_size'"]),
    "pool_strides_zero": (_set("layer:max_pool_1", "strides", 0),
                          ["layer 'max_pool_1'", "'strides' must be a positive integer"]),
    "dropout_rate_one": (_set("layer:dropout", "rate", 1), ["layer 'dropout'", "'rate'"]),
    "learning_rate_1e300": (_set("optimizer", "learning_rate", 1e300),
                            ["neural_network.optimizer.learning_rate", "1e+300"]),
    "config_nested_100k": (_case_deep_config, ["nested more than 100 levels deep"]),
    "hdf5_dataset_of_strings": (_case_h5_strings, ["strings.h5", "'names'", "byte strings"]),
    "complex_npy": (_case_complex_npy, ["s2.npy", "complex numbers"]),
    "png_bomb_20000x20000": (_case_bomb, ["image_3.png", "20000 x 20000", "max_image_pixels"]),
    "png_bad_header": (_case_corrupt_png, ["image_5.png"]),
    "max_image_pixels_small": (_set("data", "max_image_pixels", 100),
                               ["image_0.jpg", "max_image_pixels = 100"]),
    "checkpoint_raw_pickle": (_case_raw_pickle, ["raw.pt", "not a readable rmldnn_py checkpoint"]),
    "checkpoint_truncated": (_case_truncated_checkpoint, ["half.pt", "truncated or corrupt"]),
    "test_output_path_is_file": (_case_output_is_file,
                                 ["neural_network.data.test_output_path", "'./predfile' is an "
                                  "existing file (expected a directory)"]),
    "checkpoints_save_is_file": (_case_save_is_file,
                                 ["neural_network.checkpoints.save", "'./ckfile'"]),
    "train_log_is_directory": (_case_train_log_is_dir, ["neural_network.outfile",
                                                        "logs_train.txt"]),
    "output_under_a_file": (_case_output_under_file, ["neural_network.data.test_output_path",
                                                      "is a file, not a directory"]),
}


@pytest.mark.slow               # ~21 runs of the command: minutes on 2 cores
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_table(previous_run, tmp_path, case):
    d = tmp_path / "run"
    shutil.copytree(previous_run, d, symlinks=True)
    snapshot = {name: (d / name).read_bytes() for name in OUTPUTS}
    cfg = _cfg(d)
    mutate, fragments = BAD_INPUTS[case]
    if mutate(d, cfg["neural_network"]) is not False:
        _write(d, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=d)
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-1500:], proc.stderr)
    err = proc.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith("rmldnn: error: "), proc.stderr
    assert "Traceback" not in proc.stdout and "internal error" not in err[0]
    for frag in fragments:
        assert frag in err[0], (frag, err[0])
    for name, data in snapshot.items():
        assert (d / name).read_bytes() == data, f"{name} was modified"
    assert not [p for p in d.rglob("*.tmp")], "temporary file left behind"
