"""End-to-end segmentation through the ``rmldnn`` command (SPEC §3.8, §5.2, §5.10, §6.3, §7.3,
§7.5, §11.6) on a generated shapes dataset (rectangles and discs on a noisy background):

* every registered loss function (except the application-specific ones) trains a small fully
  convolutional network on images + masks (``target_type: images``, ``target_is_mask``,
  ``target_grayscale``) and lowers its loss; evaluation lines report the Dice accuracy;
* a pets-style run (SPEC §11.6) reaches ≥ 95 % pixel accuracy, and its per-sample predictions
  (``test_output_path`` → ``output_<epoch>.h5``) give back the masks by argmax; the reported
  accuracy is the mean Dice of those predictions.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_rmldnn, strip_ts, write_json
from rmldnn_py.engine.losses import LOSSES

h5py = pytest.importorskip("h5py")

SIZE = 32
#: losses that need another application (--app=gan/obj/pde) and other data
APP_SPECIFIC = {"Wasserstein", "YOLOv3", "Burgers_PDE", "Poisson2D_PDE", "Poisson3D_PDE"}

EVAL = re.compile(r"^Eval  Epoch \[ *(\d+)/ *(\d+)\] : Batch \[ *(\d+)/ *(\d+)\] "
                  r"\(Loss: (\d+\.\d{4})\)(?: \| Accuracy: (\d\.\d{3}))?$")


def make_shapes(root: Path, n: int, seed: int, size: int = SIZE) -> None:
    """``root/inputs/shape_<i>.jpg`` (RGB) with ``root/masks/shape_<i>.png`` (class map:
    0 background, 1 bright rectangle, 2 dark disc) and ``root/masks_binary/shape_<i>.png``
    (0 background, 1 any shape)."""
    rng = np.random.default_rng(seed)
    for sub in ("inputs", "masks", "masks_binary"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = 0.5 + rng.normal(0, 0.08, (size, size))
        mask = np.zeros((size, size), np.uint8)
        for _ in range(rng.integers(1, 4)):
            if rng.random() < 0.5:
                h, w = rng.integers(5, 13, 2)
                y, x = rng.integers(0, size - h), rng.integers(0, size - w)
                mask[y:y + h, x:x + w] = 1
            else:
                r = rng.integers(3, 7)
                cy, cx = rng.integers(r, size - r, 2)
                mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 2
        img[mask == 1] += 0.3
        img[mask == 2] -= 0.3
        rgb = np.stack([img, 0.9 * img + 0.05, 1.1 * img - 0.05], -1)
        Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(
            root / "inputs" / f"shape_{i:03d}.jpg", quality=95)
        Image.fromarray(mask).save(root / "masks" / f"shape_{i:03d}.png")
        Image.fromarray((mask > 0).astype(np.uint8)).save(root / "masks_binary" / f"shape_{i:03d}.png")


def fcn(channels: int, activation: str, width: int = 16) -> list[dict]:
    """A small fully convolutional Keras layer list, input 32×32×3, ``channels`` outputs."""
    return [
        {"class_name": "Conv2D", "config": {
            "name": "conv1", "batch_input_shape": [None, SIZE, SIZE, 3], "filters": width,
            "kernel_size": [3, 3], "padding": "same", "activation": "relu"}},
        {"class_name": "Conv2D", "config": {
            "name": "conv2", "filters": width, "kernel_size": [3, 3], "padding": "same",
            "activation": "relu"}},
        {"class_name": "Conv2D", "config": {
            "name": "head", "filters": channels, "kernel_size": [1, 1], "padding": "same",
            "activation": activation}},
    ]


def seg_config(data: Path, layers, loss: dict, *, masks: str = "masks", epochs: int = 4,
               batch: int = 4, lr: float = 0.01, output: str | None = None) -> dict:
    d = {"type": "images",
         "input_path": str(data / "training/inputs"),
         "target_path": str(data / f"training/{masks}"),
         "test_input_path": str(data / "testing/inputs"),
         "test_target_path": str(data / f"testing/{masks}"),
         "batch_size": batch, "test_batch_size": 8, "preload": True,
         "target_grayscale": True, "target_is_mask": True,
         "transforms": [{"resize": [SIZE, SIZE]}],
         # mask pixels 0/1/2 are read as k/255: scale them back to class indices
         "target_transforms": [{"normalize": {"mean": 0.0, "std": 0.003921568}}]}
    if output:
        d["test_output_path"] = output
    return {"neural_network": {"outfile": "out_seg.txt", "num_epochs": epochs, "layers": layers,
                               "data": d, "optimizer": {"type": "Adam", "learning_rate": lr},
                               "loss": loss}}


def epoch_means(train_log: Path) -> dict[int, float]:
    per: dict[int, list[float]] = {}
    for line in train_log.read_text().splitlines():
        cols = line.split()
        per.setdefault(int(cols[0]), []).append(float(cols[4]))
    return {e: sum(v) / len(v) for e, v in sorted(per.items())}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root / "training", 48, seed=0)
    make_shapes(root / "testing", 8, seed=1)
    return root


#: per loss: (output channels, last activation, loss keys, mask folder, loss-fall factor, Adam
#: learning rate, network width). The overlap losses (Dice, Jaccard) start slowly from scratch.
#: A newly registered loss must be given an entry here (or be listed in APP_SPECIFIC).
LOSS_SETUPS = {
    "NLL": (3, "log_softmax", {}, "masks", 0.75, 0.01, 16),
    "BCE": (1, "sigmoid", {"source": "sigmoid"}, "masks_binary", 0.75, 0.01, 16),
    "MSE": (1, "sigmoid", {}, "masks_binary", 0.75, 0.01, 16),
    "Dice": (3, "softmax", {"source": "softmax"}, "masks", 0.85, 0.01, 16),
    "Jaccard": (3, "softmax", {"source": "softmax"}, "masks", 0.92, 0.003, 32),
    "Focal": (3, "softmax", {"source": "softmax", "gamma": 2.0}, "masks", 0.75, 0.01, 16),
    "Lovasz": (3, "log_softmax", {"source": "log_softmax"}, "masks", 0.6, 0.01, 16),
}


def test_every_loss_has_a_setup():
    missing = [n for n in LOSSES.names() if n not in LOSS_SETUPS and n not in APP_SPECIFIC]
    assert not missing, f"add a segmentation setup for {missing} to LOSS_SETUPS"


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if n not in APP_SPECIFIC])
def test_loss_trains_segmentation(name, shapes, tmp_path):
    if name not in LOSS_SETUPS:
        pytest.fail(f"no setup for loss {name!r}: add one to LOSS_SETUPS")
    channels, act, keys, masks, factor, lr, width = LOSS_SETUPS[name]
    epochs = 4
    write_json(tmp_path / "config.json",
               seg_config(shapes, fcn(channels, act, width), {"function": name.lower(), **keys},
                          masks=masks, epochs=epochs, lr=lr))
    proc = run_rmldnn(["--config=./config.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    lines = strip_ts(proc.stdout)
    assert lines[-1] == "All done (return value = 0)."
    assert "Discovering training target images..." in lines
    assert "Pre-loading training target images..." in lines
    assert "      normalize             : mean: 0, std: 0.00392157" in lines
    loss_block = lines[lines.index("-------------------- Loss -------------------") + 1]
    assert re.fullmatch(r"   Function *: .+", loss_block), loss_block
    means = epoch_means(tmp_path / "out_seg_train.txt")
    assert sorted(means) == list(range(1, epochs + 1))
    assert all(np.isfinite(v) for v in means.values()), means
    assert means[epochs] < factor * means[1], f"{name}: epoch losses {means}"
    evals = [EVAL.match(ln) for ln in lines if ln.startswith("Eval")]
    assert len(evals) == epochs and all(evals), [ln for ln in lines if ln.startswith("Eval")]
    test_log = (tmp_path / "out_seg_test.txt").read_text().splitlines()
    assert len(test_log) == epochs
    if name == "MSE":        # no accuracy metric for regression losses (SPEC §6.3)
        assert all(m.group(6) is None for m in evals)
        assert all("Accuracy" not in ln for ln in test_log)
        assert float(test_log[-1].split("Loss: ")[1]) < float(test_log[0].split("Loss: ")[1])
    else:                    # mean Dice over classes
        accs = [float(m.group(6)) for m in evals]
        assert all(0.0 <= a <= 1.0 for a in accs)
        assert max(accs) > 0.25, accs      # at least the background class is segmented
        assert test_log[-1].endswith(f"Accuracy: {accs[-1]:.3f}")


# --------------------------------------------------------------------------------------------
# Issue 4 (b): segmentation accuracy and per-sample predictions
# --------------------------------------------------------------------------------------------

def mean_dice(pred: np.ndarray, true: np.ndarray, classes: int) -> float:
    """SPEC §6.3: per-class Dice over the whole set, classes absent from both skipped."""
    scores = []
    for c in range(classes):
        p, t = pred == c, true == c
        if p.sum() + t.sum() == 0:
            continue
        scores.append(2.0 * (p & t).sum() / (p.sum() + t.sum()))
    return float(np.mean(scores))


@pytest.mark.slow
def test_segmentation_reaches_95_percent_and_writes_predictions(tmp_path):
    data = tmp_path / "shapes"
    make_shapes(data / "training", 128, seed=10)
    make_shapes(data / "testing", 16, seed=11)
    epochs = 8
    cfg = seg_config(data, fcn(3, "log_softmax"), {"function": "NLL"}, epochs=epochs, batch=4,
                     lr=0.01, output="./predictions/")
    cfg["neural_network"]["checkpoints"] = {"save": "model_shapes_segmentation/", "interval": 4}
    write_json(tmp_path / "config_shapes_segmentation.json", cfg)
    proc = run_rmldnn(["--config=", "./config_shapes_segmentation.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    lines = strip_ts(proc.stdout)
    assert "   Inference output:" in lines
    assert "      Location              : ./predictions/" in lines
    assert sorted(p.name for p in (tmp_path / "model_shapes_segmentation").iterdir()) == \
        ["model_checkpoint_4.pt", "model_checkpoint_8.pt"]
    # every evaluation pass wrote its predictions
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == \
        sorted(f"output_{e}.h5" for e in range(1, epochs + 1))
    names = sorted(p.name for p in (data / "testing/inputs").iterdir())
    preds, masks = [], []
    with h5py.File(tmp_path / f"predictions/output_{epochs}.h5", "r") as f:
        assert sorted(f.keys()) == names          # one dataset per sample, named like the file
        for name in names:
            out = f[name][()]
            assert out.shape == (3, SIZE, SIZE) and out.dtype == np.float32
            # log-probabilities: exp sums to 1 over the channels
            np.testing.assert_allclose(np.exp(out).sum(0), 1.0, rtol=1e-4)
            preds.append(out.transpose(1, 2, 0).argmax(2))
            masks.append(np.asarray(Image.open(data / "testing/masks" / name.replace(".jpg", ".png"))))
    preds, masks = np.stack(preds), np.stack(masks)
    pixel_acc = float((preds == masks).mean())
    assert pixel_acc >= 0.95, pixel_acc
    per_image = (preds == masks).reshape(len(names), -1).mean(1)
    assert per_image.min() >= 0.85, per_image
    # every class is found
    assert set(np.unique(preds)) == {0, 1, 2}
    # the reported accuracy is the mean Dice of exactly these predictions
    reported = float((tmp_path / "out_seg_test.txt").read_text().splitlines()[-1]
                     .split("Accuracy: ")[1])
    assert reported == pytest.approx(mean_dice(preds, masks, 3), abs=1.5e-3)
