"""The performance options (docs/CONFIG.md extension keys) run end to end through the CLI on the
CPU and still train: ``mixed_precision: bf16``, ``channels_last: true``, ``compile: true``.

A tiny generated dataset (2 classes of 28×28 glyphs, preloaded), the demo network, Adam; each run
must exit 0, print ``All done (return value = 0).`` and its training loss must fall (mean of the
first epoch's batches above the mean of the last epoch's)."""

from __future__ import annotations

import pytest

from conftest import REPO, make_image_tree, run_rmldnn, write_json


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_paths")
    make_image_tree(root / "train", ["0", "1"], 48, ext="png", seed=0)
    make_image_tree(root / "test", ["0", "1"], 8, ext="png", seed=1)
    return root


def _config(root, tmp_path, extra: dict, epochs: int = 4) -> str:
    nn = {
        "outfile": str(tmp_path / "out.txt"),
        "num_epochs": epochs,
        "layers": str(REPO / "networks/mnist_keras_net.json"),
        "data": {"input_type": "images", "target_type": "labels", "grayscale": True,
                 "preload": True, "input_path": str(root / "train"),
                 "test_input_path": str(root / "test"), "batch_size": 16},
        "optimizer": {"type": "Adam", "learning_rate": 2e-3},
        "loss": {"function": "NLL"},
    }
    nn.update(extra)
    return str(write_json(tmp_path / "config.json", {"neural_network": nn}))


def _check(tmp_path, proc) -> None:
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.rstrip().endswith("All done (return value = 0).")
    rows = [line.split() for line in (tmp_path / "out_train.txt").read_text().splitlines()]
    epochs = sorted({int(r[0]) for r in rows})
    first = [float(r[4]) for r in rows if int(r[0]) == epochs[0]]
    last = [float(r[4]) for r in rows if int(r[0]) == epochs[-1]]
    assert sum(last) / len(last) < sum(first) / len(first), (first, last)
    tests = (tmp_path / "out_test.txt").read_text().splitlines()
    assert len(tests) == len(epochs)


@pytest.mark.parametrize("extra", [{"mixed_precision": "bf16"}, {"channels_last": True},
                                   {"mixed_precision": "bf16", "channels_last": True}],
                         ids=["bf16", "channels_last", "bf16+channels_last"])
def test_fast_path_trains(data_dir, tmp_path, extra):
    proc = run_rmldnn([f"--config={_config(data_dir, tmp_path, extra)}"], cwd=tmp_path, timeout=120)
    _check(tmp_path, proc)


def test_fp16_on_cpu_is_a_config_error(data_dir, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid with a CUDA device")
    cfg = _config(data_dir, tmp_path, {"mixed_precision": "fp16"}, epochs=1)
    proc = run_rmldnn([f"--config={cfg}"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "fp16 needs a CUDA device" in proc.stderr


@pytest.mark.slow
def test_compile_trains(data_dir, tmp_path):
    cfg = _config(data_dir, tmp_path, {"compile": True}, epochs=3)
    proc = run_rmldnn([f"--config={cfg}"], cwd=tmp_path, timeout=300)
    _check(tmp_path, proc)
