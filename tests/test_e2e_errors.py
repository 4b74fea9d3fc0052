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


def test_unknown_key_warns_and_continues(smoke_dir):
    cfg = _one_epoch(smoke_dir)
    cfg["neural_network"]["data"]["bath_size"] = 8
    _write(smoke_dir, cfg)
    proc = run_rmldnn(["--config=", f"./{CFG}"], cwd=smoke_dir)
    assert proc.returncode == 0, proc.stderr
    warn = [line for line in proc.stdout.splitlines() if "WARNING" in line]
    assert warn and "bath_size" in warn[0] and "batch_size" in warn[0]


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
