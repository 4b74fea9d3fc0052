"""End-to-end: the MNIST tutorial (seed 001, SPEC §11.2) with its configs exactly as printed in the
tutorial (only the data is miniature), and the embedded demo's accuracy."""

import re
import shutil

import h5py
import numpy as np
import pytest

from conftest import REPO, make_flat_images, make_image_tree, run_rmldnn, strip_ts

# the two configs, word for word from the tutorial
TRAINING = """{
    "neural_network": {
        "outfile": "out_mnist.txt",
        "num_epochs": 20,
        "layers": "./mnist_keras_net.json",
        "checkpoints": {
            "save": "./mnist_model/",
            "interval": 20
        },
        "data": {
            "input_type": "images",
            "target_type": "labels",
            "input_path":      "./mnist/training/",
            "test_input_path": "./mnist/testing/",
            "batch_size": 128,
            "grayscale": true,
            "preload": true
        },
        "optimizer": {
            "type": "Adam",
            "learning_rate": 1e-4
        },
        "loss": {
            "function": "NLL"
        }
    }
}"""

TEST = """{
    "neural_network": {
        "layers": "./mnist_keras_net.json",
        "checkpoints": {
            "load": "./mnist_model/model_checkpoint_20.pt"
        },
        "data": {
            "input_type": "images",
            "test_input_path": "./mnist_digits/",
            "test_output_path": "./mnist_predictions/",
            "grayscale": true
        }
    }
}"""

DIGITS = [3, 5, 1, 9, 4, 7, 2, 0, 6, 8]


@pytest.fixture
def tutorial_dir(tmp_path):
    classes = [str(d) for d in range(10)]
    make_image_tree(tmp_path / "mnist/training", classes, 30, seed=0, prefix="")
    make_image_tree(tmp_path / "mnist/testing", classes, 5, seed=1, prefix="")
    make_flat_images(tmp_path / "mnist_digits", DIGITS)
    shutil.copy(REPO / "networks/mnist_keras_net.json", tmp_path / "mnist_keras_net.json")
    (tmp_path / "config_mnist_training.json").write_text(TRAINING)
    (tmp_path / "config_mnist_test.json").write_text(TEST)
    return tmp_path


def test_tutorial_training_then_inference(tutorial_dir):
    d = tutorial_dir
    proc = run_rmldnn(["--config=", "./config_mnist_training.json"], cwd=d)
    assert proc.returncode == 0, proc.stderr
    lines = strip_ts(proc.stdout)
    assert "   Model name          : sequential" in lines
    assert "   Total parameters    : 34826" in lines
    assert "   Num of operations   : 11" in lines
    assert "Pre-loading training input images..." in lines
    assert lines.count("Number of class labels: 10") == 2
    assert "   Num images  (total)      : 300" in lines
    assert "   Num batches (per process): 3" in lines
    assert lines[-1] == "All done (return value = 0)."
    assert "Saving model checkpoint to file: ./mnist_model/model_checkpoint_20.pt" in lines
    # only the epoch-20 checkpoint (interval 20)
    assert sorted(p.name for p in (d / "mnist_model").iterdir()) == ["model_checkpoint_20.pt"]
    test_lines = (d / "out_mnist_test.txt").read_text().splitlines()
    assert [int(re.findall(r"\d+", t)[0]) for t in test_lines] == list(range(1, 21))
    assert len((d / "out_mnist_train.txt").read_text().splitlines()) == 20 * 3

    proc = run_rmldnn(["--config=", "./config_mnist_test.json"], cwd=d)
    assert proc.returncode == 0, proc.stderr
    lines = strip_ts(proc.stdout)
    assert "Loading model checkpoint from file: ./mnist_model/model_checkpoint_20.pt" in lines
    assert not any("Optimizer" in t or "-- Loss --" in t for t in lines)
    assert "   Num images  (total)      : 10" in lines
    assert "   Inference output:" in lines
    assert "      Location              : ./mnist_predictions/" in lines
    assert "      Floating-point format : single (32-bit)" in lines
    assert "Eval  Epoch [  1/  1] : Batch [    1/    1]" in lines
    with h5py.File(d / "mnist_predictions/output_1.h5") as f:
        names = list(f)
        assert names == [f"digit_{i}.jpg" for i in range(10)]
        assert all(f[n].shape == (10,) and f[n].dtype == np.float32 for n in names)
        # the tutorial's user script
        pred = [int(np.argmax(f[n][()])) for n in f]
    # log-probabilities: exp sums to 1
    with h5py.File(d / "mnist_predictions/output_1.h5") as f:
        assert abs(np.exp(f["digit_0.jpg"][()]).sum() - 1) < 1e-4
    assert len(pred) == 10


@pytest.mark.slow
def test_embedded_demo_accuracy(tmp_path):
    """The README's main job on the real embedded digits: ≥ 97 % test accuracy in 20 epochs and
    ≥ 9 of 10 held-out digits right."""
    for name in ("demo", "networks", "configs"):
        shutil.copytree(REPO / name, tmp_path / name)
    proc = run_rmldnn(["--config=", "./configs/config_mnist_training.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    last = (tmp_path / "demo_output/out_mnist_test.txt").read_text().splitlines()[-1]
    accuracy = float(last.split("Accuracy: ")[1])
    assert accuracy >= 0.97, last
    proc = run_rmldnn(["--config=", "./configs/config_mnist_test.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    truth = [int(t) for t in (tmp_path / "demo/mnist_digits_labels.txt").read_text().split()]
    with h5py.File(tmp_path / "demo_output/mnist_predictions/output_1.h5") as f:
        pred = [int(np.argmax(f[n][()])) for n in f]
    assert sum(p == t for p, t in zip(pred, truth)) >= 9
