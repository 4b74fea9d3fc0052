"""End-to-end training through the ``rmldnn`` command (SPEC §3.6, §3.7, §6.1, §6.2, §7.3, §11.3):

* every registered optimizer lowers the training loss on a 3-class subset of the embedded demo
  digits (first vs last epoch mean of ``<outfile>_train.txt``);
* every registered learning-rate scheduler prints ``Learning rate adjusted to <lr>`` after each
  epoch with the values of its formula;
* the self-supervised inpainting feature-extraction config of SPEC §11.3, as written (only the
  network and data paths changed, 5 epochs), runs on a small real photo set and its BCE loss falls.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from conftest import REPO, make_image_tree, run_rmldnn, strip_ts, write_json
from rmldnn_py.engine.optim import OPTIMIZERS
from rmldnn_py.engine.schedulers import SCHEDULERS

DEMO = REPO / "demo/mnist/training"
CLASSES = ["0", "1", "2"]
PER_CLASS = 30

#: a small 28×28×1 convnet with 3 log-probability outputs (inline Keras layer list)
DIGIT_NET = [
    {"class_name": "Conv2D", "config": {"name": "conv1", "batch_input_shape": [None, 28, 28, 1],
                                        "filters": 8, "kernel_size": [3, 3], "activation": "relu"}},
    {"class_name": "MaxPooling2D", "config": {"name": "pool1", "pool_size": [2, 2]}},
    {"class_name": "Conv2D", "config": {"name": "conv2", "filters": 16, "kernel_size": [3, 3],
                                        "activation": "relu"}},
    {"class_name": "MaxPooling2D", "config": {"name": "pool2", "pool_size": [2, 2]}},
    {"class_name": "Flatten", "config": {"name": "flatten"}},
    {"class_name": "Dense", "config": {"name": "fc", "units": 3, "activation": "log_softmax"}},
]

#: per optimizer: hyper-parameters, global batch size and number of epochs that make the loss fall
#: clearly within a few seconds. A newly registered optimizer must be given an entry here.
OPTIMIZER_SETUPS = {
    "SGD": ({"learning_rate": 0.05, "momentum": 0.9}, 16, 4),
    "Adagrad": ({"learning_rate": 0.05}, 16, 4),
    "Adam": ({"learning_rate": 0.003}, 16, 4),
    "AdamW": ({"learning_rate": 0.003, "weight_decay": 0.01}, 16, 4),
    "RMSprop": ({"learning_rate": 0.002}, 16, 4),
    # LARS scales every step by eta·‖w‖/‖g‖ (eta = 1e-3): it needs a large nominal rate
    "LARS": ({"learning_rate": 8.0, "momentum": 0.9}, 16, 4),
    "LAMB": ({"learning_rate": 0.02}, 16, 4),
    # L-BFGS: full batch (one step per epoch), a few inner iterations per step
    "Hessian": ({"max_iterations": 8, "max_func_eval": 16}, 96, 3),
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """``training/<0|1|2>/*.png``: the first 30 demo digits of three classes (90 images)."""
    root = tmp_path_factory.mktemp("digits") / "training"
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for f in sorted((DEMO / c).iterdir())[:PER_CLASS]:
            shutil.copy(f, root / c / f.name)
    return root


def epoch_means(train_log: Path) -> dict[int, float]:
    """Mean training loss per epoch from ``<outfile>_train.txt`` (SPEC §7.3 columns)."""
    per: dict[int, list[float]] = {}
    for line in train_log.read_text().splitlines():
        cols = line.split()
        assert len(cols) == 6, line
        per.setdefault(int(cols[0]), []).append(float(cols[4]))
    return {e: sum(v) / len(v) for e, v in sorted(per.items())}


def digits_config(data: Path, optimizer: dict, batch: int, epochs: int) -> dict:
    return {"neural_network": {
        "outfile": "out_opt.txt", "num_epochs": epochs, "layers": DIGIT_NET,
        "data": {"input_type": "images", "target_type": "labels", "input_path": str(data),
                 "batch_size": batch, "grayscale": True, "preload": True},
        "optimizer": optimizer, "loss": {"function": "NLL"}}}


def test_every_optimizer_has_a_setup():
    missing = [n for n in OPTIMIZERS.names() if n not in OPTIMIZER_SETUPS]
    assert not missing, f"add a learning-rate setup for {missing} to OPTIMIZER_SETUPS"


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_lowers_training_loss(name, digits, tmp_path):
    if name not in OPTIMIZER_SETUPS:
        pytest.fail(f"no setup for optimizer {name!r}: add one to OPTIMIZER_SETUPS")
    hyper, batch, epochs = OPTIMIZER_SETUPS[name]
    # the type is case-insensitive: use the lower-case spelling
    write_json(tmp_path / "config.json",
               digits_config(digits, {"type": name.lower(), **hyper}, batch, epochs))
    proc = run_rmldnn(["--config=./config.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    lines = strip_ts(proc.stdout)
    assert lines[-1] == "All done (return value = 0)."
    opt_block = lines[lines.index("----------------- Optimizer -----------------") + 1]
    assert re.fullmatch(r"   Type +: \S+", opt_block), opt_block
    nb = -(-len(CLASSES) * PER_CLASS // batch)
    log = (tmp_path / "out_opt_train.txt").read_text().splitlines()
    assert len(log) == epochs * nb
    means = epoch_means(tmp_path / "out_opt_train.txt")
    assert sorted(means) == list(range(1, epochs + 1))
    first, last = means[1], means[epochs]
    assert all(np.isfinite(v) for v in means.values()), means
    assert last < 0.75 * first, f"{name}: epoch losses {means}"
    # the gradient norm column is a finite non-negative number on every line
    assert all(float(r.split()[5]) >= 0 for r in log)


# --------------------------------------------------------------------------------------------
# learning-rate schedulers
# --------------------------------------------------------------------------------------------

LR0 = 0.1
SCHED_EPOCHS = 6

#: per scheduler type: its config keys and lr during epoch e+1 (SPEC §6.2) as a function of e
SCHEDULER_SETUPS = {
    "Step": ({"step_size": 2, "gamma": 0.5}, lambda e: LR0 * 0.5 ** (e // 2)),
    "MultiStep": ({"milestones": [2, 5], "gamma": 0.1},
                  lambda e: LR0 * 0.1 ** sum(1 for m in (2, 5) if m <= e)),
    "Exponential": ({"gamma": 0.9}, lambda e: LR0 * 0.9 ** e),
    "Warmup": ({"num_epochs": 4, "start_factor": 0.2},
               lambda e: LR0 * (0.2 + 0.8 * min(e, 4) / 4)),
    # SGDR closed form (Loshchilov & Hutter 2017) after 2 linear warm-up epochs from 0.5·lr0
    "Cosine": ({"warmup_epochs": 2, "start_factor": 0.5, "min_lr": 0.01},
               lambda e: LR0 * (0.5 + 0.5 * e / 2) if e < 2 else
               0.01 + (LR0 - 0.01) * (1 + math.cos(math.pi * (e - 2) / (SCHED_EPOCHS - 2))) / 2),
    # torch's own OneCycleLR after e epochs of 3 batches (printed at each epoch end)
    "OneCycle": ({"max_lr": 0.5, "pct_start": 0.4}, lambda e: _onecycle_lr(3 * e)),
}
#: stepped on the evaluation loss, tested in test_plateau_follows_the_evaluation_loss
EVAL_DRIVEN = ("ReduceLROnPlateau",)


def _onecycle_lr(steps: int) -> float:
    """torch's OneCycleLR after ``steps`` optimizer steps (stepping past ``total_steps`` raises
    in torch; the engine then holds the last rate, as here)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR0)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=SCHED_EPOCHS * 3,
                                              pct_start=0.4, cycle_momentum=False)
    for _ in range(steps):
        opt.step()
        try:
            ref.step()
        except ValueError:
            break
    return opt.param_groups[0]["lr"]


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "training"
    make_image_tree(root, ["a", "b"], 6, seed=3)
    return root


def sched_config(data: Path, sched: dict) -> dict:
    return {"neural_network": {
        "num_epochs": SCHED_EPOCHS, "layers": DIGIT_NET,
        "data": {"input_type": "images", "target_type": "labels", "input_path": str(data),
                 "batch_size": 4, "grayscale": True},
        "optimizer": {"type": "SGD", "learning_rate": LR0, "lr_scheduler": sched},
        "loss": {"function": "NLL"}}}


def test_every_scheduler_has_a_setup():
    missing = [n for n in SCHEDULERS.names() if n not in SCHEDULER_SETUPS and n not in EVAL_DRIVEN]
    assert not missing, f"add a setup for {missing} to SCHEDULER_SETUPS"


def test_plateau_follows_the_evaluation_loss(tiny_tree, tmp_path):
    """ReduceLROnPlateau: the printed rates equal torch's scheduler fed the _test.txt losses."""
    lr0 = 1e-6            # the evaluation loss hardly moves: the rate is reduced on schedule
    cfg = sched_config(tiny_tree, {"type": "ReduceLROnPlateau", "patience": 1, "factor": 0.1})
    nn = cfg["neural_network"]
    nn["optimizer"]["learning_rate"] = lr0
    nn["outfile"] = "out.txt"
    nn["data"]["test_input_path"] = str(tiny_tree)
    write_json(tmp_path / "config.json", cfg)
    proc = run_rmldnn(["--config=./config.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    losses = [float(ln.split()[3]) for ln in (tmp_path / "out_test.txt").read_text().splitlines()]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.1)
    want = []
    for loss in losses:
        before = opt.param_groups[0]["lr"]
        ref.step(loss)
        if opt.param_groups[0]["lr"] != before:
            want.append(opt.param_groups[0]["lr"])
    got = [float(ln.split()[-1]) for ln in strip_ts(proc.stdout)
           if ln.startswith("Learning rate adjusted")]
    assert len(want) >= 2 and got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("name", [n for n in SCHEDULERS.names() if n not in EVAL_DRIVEN])
def test_scheduler_verbose_prints_formula_values(name, tiny_tree, tmp_path):
    if name not in SCHEDULER_SETUPS:
        pytest.fail(f"no setup for scheduler {name!r}: add one to SCHEDULER_SETUPS")
    keys, lr_of = SCHEDULER_SETUPS[name]
    write_json(tmp_path / "config.json",
               sched_config(tiny_tree, {"type": name, "verbose": True, **keys}))
    proc = run_rmldnn(["--config=./config.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    lines = strip_ts(proc.stdout)
    head = lines.index("---------- Learning rate scheduler ----------")
    # label width 7 (SPEC §7.2.1) widened to the longest label of the block ("Step size")
    assert re.fullmatch(rf"   Type +: {name}", lines[head + 1]), lines[head + 1]
    assert [ln for ln in lines[head + 1:head + 10] if re.fullmatch(r"   Verbose *: True", ln)]
    adjusted = [(i, ln) for i, ln in enumerate(lines) if ln.startswith("Learning rate adjusted")]
    assert len(adjusted) == SCHED_EPOCHS, adjusted
    pat = re.compile(r"^Learning rate adjusted to (\S+)$")
    for e, (i, line) in enumerate(adjusted, start=1):
        m = pat.match(line)
        assert m, line
        text = m.group(1)
        assert text == "%g" % float(text), f"not printed with %g: {line!r}"
        assert float(text) == pytest.approx(lr_of(e), rel=1e-5), (name, e, line)
        # printed after epoch e's training pass (its closing separator)
        prev = [ln for ln in lines[:i] if ln.startswith("Train Epoch")][-1]
        assert prev.startswith(f"Train Epoch [{e:3d}/{SCHED_EPOCHS:3d}]"), prev


def test_scheduler_not_verbose_prints_nothing(tiny_tree, tmp_path):
    write_json(tmp_path / "config.json",
               sched_config(tiny_tree, {"type": "Exponential", "gamma": 0.5, "verbose": False}))
    proc = run_rmldnn(["--config=./config.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = strip_ts(proc.stdout)
    assert "   Verbose: False" in lines
    assert not [ln for ln in lines if ln.startswith("Learning rate adjusted")]


def test_scheduler_verbose_defaults_to_true(tiny_tree, tmp_path):
    cfg = sched_config(tiny_tree, {"type": "Step", "step_size": 3})
    cfg["neural_network"]["num_epochs"] = 4
    write_json(tmp_path / "config.json", cfg)
    proc = run_rmldnn(["--config=./config.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = strip_ts(proc.stdout)
    assert [ln for ln in lines if re.fullmatch(r"   Verbose *: True", ln)]
    assert [ln for ln in lines if re.fullmatch(r"   Gamma *: 0.1", ln)]
    got = [ln.split()[-1] for ln in lines if ln.startswith("Learning rate adjusted")]
    assert got == ["0.1", "0.1", "0.01", "0.01"]


# --------------------------------------------------------------------------------------------
# Issue 4 (a): the inpainting feature-extraction config of SPEC §11.3
# --------------------------------------------------------------------------------------------

def _conv(name, filters, **kw):
    cfg = {"name": name, "filters": filters, "kernel_size": [3, 3], "padding": "same",
           "activation": "relu"}
    cfg.update(kw)
    return {"class_name": "Conv2D", "config": cfg}


#: a small convolutional autoencoder, Keras Sequential JSON, input 128×128×3, sigmoid output
AUTOENCODER = {"class_name": "Sequential", "config": {"name": "inpaint_autoencoder", "layers": [
    {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 128, 128, 3],
                                            "dtype": "float32", "name": "input_1"}},
    _conv("encoder_conv_1", 32),
    {"class_name": "MaxPooling2D", "config": {"name": "encoder_pool_1", "pool_size": [2, 2]}},
    _conv("encoder_conv_2", 64),
    {"class_name": "MaxPooling2D", "config": {"name": "encoder_pool_2", "pool_size": [2, 2]}},
    {"class_name": "Conv2DTranspose", "config": {
        "name": "decoder_layer_1", "filters": 64, "kernel_size": [4, 4], "strides": [2, 2],
        "padding": "same", "activation": "relu"}},
    {"class_name": "Conv2DTranspose", "config": {
        "name": "decoder_layer_2", "filters": 3, "kernel_size": [4, 4], "strides": [2, 2],
        "padding": "same", "activation": "sigmoid"}},
]}, "keras_version": "2.3.1", "backend": "tensorflow"}

#: the config of SPEC §11.3 step 1, verbatim except the network/data paths and num_epochs
INPAINT_CONFIG = """\
{"neural_network": {"num_epochs": 5, "outfile": "out_inpaint_feature_extraction.txt",
  "layers": "./network_inpaint_autoencoder.json",
  "checkpoints": {"save": "./model_checkpoints/", "interval": 10},
  "data": {"type": "images", "input_path": "./natural_images/training/", "target_path": "./natural_images/training/",
           "batch_size": 128, "preload": true,
           "transforms": [{"resize": [128, 128]}, {"random_patches": {"number": 16, "size": 16}}]},
  "optimizer": {"type": "Adam", "learning_rate": 0.001}, "loss": {"function": "BCE"}}}
"""

PHOTOS = {"person": "astronaut", "cat": "chelsea", "cup": "coffee", "rocket": "rocket"}


def make_photo_tree(root: Path) -> int:
    """``root/<class>/<name>_<k>.jpg``: 4 crops (of different sizes, some mirrored) of 4 real
    photos shipped with scikit-image; returns the number of images."""
    data = pytest.importorskip("skimage.data")
    n = 0
    for cls, fn in PHOTOS.items():
        img = np.asarray(getattr(data, fn)())[..., :3]
        h, w = img.shape[:2]
        d = root / cls
        d.mkdir(parents=True)
        for k in range(4):
            s = int(min(h, w) * (1.0 - 0.15 * k))
            y, x = (h - s) * (k % 2), (w - s) // (1 + k % 3)
            crop = Image.fromarray(img[y:y + s, x:x + s])
            if k >= 2:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.resize((160 + 8 * k, 144 + 8 * k), Image.Resampling.BILINEAR).save(
                d / f"{fn}_{k}.jpg", quality=90)
            n += 1
    return n


@pytest.mark.slow
def test_inpainting_feature_extraction_config_runs_and_bce_falls(tmp_path):
    n = make_photo_tree(tmp_path / "natural_images/training")
    assert n == 16
    write_json(tmp_path / "network_inpaint_autoencoder.json", AUTOENCODER)
    (tmp_path / "config_inpaint_feature_extraction.json").write_text(INPAINT_CONFIG)
    json.loads(INPAINT_CONFIG)   # the config is plain strict JSON
    proc = run_rmldnn(["--config=", "./config_inpaint_feature_extraction.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    lines = strip_ts(proc.stdout)
    assert lines[-1] == "All done (return value = 0)."
    # images are discovered recursively below the class folders, for inputs and targets alike
    for msg in ("Discovering training input images...", "Pre-loading training input images...",
                "Discovering training target images..."):
        assert msg in lines, msg
    assert "   Function: BCE (Binary Cross-Entropy)" in lines
    assert "   Num images  (total)      : 16" in lines
    assert "   Num batches (per process): 1" in lines
    listing = [ln.strip() for ln in lines if ln.startswith("      ")]
    assert listing[0] == "resize                : [128, 128]"
    assert listing[1].startswith("random_patches        : ")
    # no evaluation (no test path): no Eval lines, no _test.txt
    assert not [ln for ln in lines if ln.startswith("Eval")]
    test_log = tmp_path / "out_inpaint_feature_extraction_test.txt"
    assert not test_log.exists() or test_log.read_text() == ""
    # interval 10 > 5 epochs: no checkpoint written yet
    assert not list(tmp_path.glob("model_checkpoints/*.pt"))
    means = epoch_means(tmp_path / "out_inpaint_feature_extraction_train.txt")
    assert sorted(means) == [1, 2, 3, 4, 5]
    losses = [means[e] for e in range(1, 6)]
    # the target is image·M (zero outside the 16 patches): BCE starts near ln 2 and falls
    assert 0.3 < losses[0] < 1.0, losses
    assert losses[-1] < 0.95 * losses[0], losses
    assert losses[4] < losses[2] < losses[0], losses
