"""``rmldnn --app=obj`` end to end (SPEC §8.4): a tiny training run writes one ``(K, 6)``
detection dataset per test image in original pixels; a constant network gives detections that
are computed by hand through the letterbox inverse; bad input gives one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_rmldnn, strip_ts, write_json
from obj_helpers import SHAPES_ANCHORS, make_shapes_dataset, read_predictions
from rmldnn_py.cli import main

TEST_SIZES = [(96, 128), (128, 80), (100, 100), (60, 150)]     # non-square originals


def _config(tmp_path, **over):
    nn = {"outfile": "out.txt", "num_epochs": 1,
          "layers": str(REPO / "networks/yolo_small_shapes.json"),
          "data": {"type": "images", "input_path": "train/images", "target_path": "train/labels",
                   "test_input_path": "test/images", "test_target_path": "test/labels",
                   "test_output_path": "pred", "class_names": "classes.txt", "batch_size": 4,
                   "test_batch_size": 3, "preload": True,
                   "transforms": [{"resize": [128, 128]}, {"random_horizontal_flip": 0.5}]},
          "optimizer": {"type": "Adam", "learning_rate": 0.001},
          "loss": {"function": "YOLOv3", "num_classes": 3, "anchors": SHAPES_ANCHORS,
                   "score_thresh": 0.2}}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(nn.get(k), dict):
            nn[k].update(v)
        else:
            nn[k] = v
    write_json(tmp_path / "cfg.json", {"neural_network": nn})
    return "cfg.json"


@pytest.fixture
def shapes(tmp_path):
    make_shapes_dataset(tmp_path / "train", 8, 0)
    info = make_shapes_dataset(tmp_path / "test", 4, 1, sizes=TEST_SIZES)
    (tmp_path / "classes.txt").write_text("rectangle\nellipse\ntriangle\n")
    return info


def test_training_run_writes_detections_per_image_in_original_pixels(tmp_path, shapes):
    cfg = _config(tmp_path, debug=True)
    proc = run_rmldnn(["--app=obj", f"--config={cfg}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = strip_ts(proc.stdout)
    assert "RocketML : obj" in lines and lines[-1] == "All done (return value = 0)."
    assert "   Function      : YOLOv3" in lines
    assert ("   head16: 8x8 cells, stride 16x16, positions 0-63, anchors [22, 22] [28, 30] "
            "[36, 36]") in lines
    evals = [ln for ln in lines if ln.startswith("Eval  Epoch")]
    assert "(Loss: " in evals[0] and "| Accuracy: " in evals[-1]
    assert any(ln.startswith("Detection mAP@0.5: ") and "(4 images, " in ln for ln in lines)
    test_txt = (tmp_path / "out_test.txt").read_text().split()
    assert test_txt[0:2] == ["Epoch:", "1"] and test_txt[-2] == "Accuracy:"
    preds = read_predictions(tmp_path / "pred/output_1.h5")
    assert sorted(preds) == [name for name, *_ in shapes]         # once per image, by name
    with h5py.File(tmp_path / "pred/output_1.h5") as f:
        assert list(f.attrs["class_names"]) == ["rectangle", "ellipse", "triangle"]
    for name, h, w, _ in shapes:
        det = preds[name]
        assert det.ndim == 2 and det.shape[1] == 6 and det.dtype == np.float32
        if len(det):
            assert np.all(det[:, [0, 2]] >= 0) and np.all(det[:, [0, 2]] <= w)
            assert np.all(det[:, [1, 3]] >= 0) and np.all(det[:, [1, 3]] <= h)
            assert np.all(det[:, 2] > det[:, 0]) and np.all(det[:, 3] > det[:, 1])
            assert np.all((det[:, 4] > 0.2) & (det[:, 4] <= 1))
            assert set(np.unique(det[:, 5])) <= {0.0, 1.0, 2.0}
            assert np.all(np.diff(det[:, 4]) <= 0)                   # by decreasing score
        with Image.open(tmp_path / "pred/detections_1" / name) as im:  # debug image, original size
            assert im.size == (w, h)


# ------------------------------------------------------------------------------------------
# exact detections from a constant network

ANCHORS1 = [[8, 8], [16, 16], [30, 30]]


def _constant_net(path: Path, num_classes: int = 2) -> str:
    """64x64x3 input → 1x1 conv of stride 32 with zero kernel and bias → Reshape([-1, F]): every
    value is 0 whatever the image, so every cell predicts σ(0) = 0.5 offsets, anchor sizes and
    scores 0.5 · 0.5 = 0.25 for every class."""
    F = 3 * (5 + num_classes)
    zeros = {"class_name": "Zeros", "config": {}}
    net = {"class_name": "Functional", "config": {"name": "constant", "layers": [
        {"class_name": "InputLayer", "name": "image",
         "config": {"name": "image", "batch_input_shape": [None, 64, 64, 3]}, "inbound_nodes": []},
        {"class_name": "Conv2D", "name": "head",
         "config": {"name": "head", "filters": F, "kernel_size": [1, 1], "strides": [32, 32],
                    "padding": "valid", "use_bias": True, "activation": "linear",
                    "kernel_initializer": zeros, "bias_initializer": zeros},
         "inbound_nodes": [[["image", 0, 0, {}]]]},
        {"class_name": "Reshape", "name": "out", "config": {"name": "out", "target_shape": [-1, F]},
         "inbound_nodes": [[["head", 0, 0, {}]]]}],
        "input_layers": [["image", 0, 0]], "output_layers": [["out", 0, 0]]}}
    write_json(path, net)
    return str(path)


def _expected(h, w, letterbox):
    """Every (cell, anchor, class) box, mapped back by hand: letterbox 64x64 → scale s =
    min(64/h, 64/w), content of round(h·s) x round(w·s) centred; plain resize: x·w/64, y·h/64."""
    rows = []
    for i in range(2):
        for j in range(2):
            for aw, ah in ANCHORS1:
                cx, cy = (j + 0.5) * 32, (i + 0.5) * 32
                box = np.array([cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2])
                if letterbox:
                    s = min(64 / h, 64 / w)
                    nh, nw = round(h * s), round(w * s)
                    top, left = (64 - nh) // 2, (64 - nw) // 2
                    box = (box - [left, top, left, top]) * [w / nw, h / nh, w / nw, h / nh]
                else:
                    box = box * [w / 64, h / 64, w / 64, h / 64]
                box = np.clip(box, 0, [w, h, w, h])
                if box[2] > box[0] and box[3] > box[1]:
                    for c in range(2):
                        rows.append(list(box) + [0.25, c])
    return np.array(sorted(map(tuple, rows)))


@pytest.mark.parametrize("letterbox", [True, False])
def test_constant_network_detections_by_hand(tmp_path, letterbox):
    sizes = [(48, 96), (96, 48), (40, 80)]
    (tmp_path / "img").mkdir()
    for k, (h, w) in enumerate(sizes):
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (h, w, 3), np.uint8)).save(
            tmp_path / f"img/{k}.png")
    net = _constant_net(tmp_path / "net.json")
    nn = {"layers": net, "data": {"type": "images", "test_input_path": "img",
                                  "test_output_path": "pred", "letterbox": letterbox,
                                  "transforms": [{"resize": [64, 64]}], "test_batch_size": 2},
          "loss": {"function": "YOLOv3", "num_classes": 2, "anchors": ANCHORS1,
                   "score_thresh": 0.1, "nms_iou": 0.45}}
    write_json(tmp_path / "cfg.json", {"neural_network": nn})
    proc = run_rmldnn(["--app=obj", "--config=cfg.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    preds = read_predictions(tmp_path / "pred/output_1.h5")
    assert sorted(preds) == ["0.png", "1.png", "2.png"]
    for k, (h, w) in enumerate(sizes):
        got = np.array(sorted(map(tuple, preds[f"{k}.png"].astype(np.float64))))
        exp = _expected(h, w, letterbox)
        assert got.shape == exp.shape == (24, 6), (got.shape, exp.shape)
        np.testing.assert_allclose(got, exp, atol=1e-3)


# ------------------------------------------------------------------------------------------
# bad input: one line naming the file and the line or the layer


def _err(capsys, args) -> str:
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("line,msg", [
    ("1 0.5 0.5 0.2", r"line 2: expected 5 fields \(class cx cy w h\), received 4"),
    ("1 0.5 0.5 0.2 0.2 0.9", r"line 2: expected 5 fields \(class cx cy w h\), received 6"),
    ("3 0.5 0.5 0.2 0.2",
     r"line 2: class 3 outside \[0, 2\] \(neural_network\.loss\.num_classes = 3\)"),
    ("1 0.5 1.5 0.2 0.2", r"line 2: coordinate cy = 1\.5 outside \[0, 1\]"),
])
def test_bad_label_lines_are_one_line_errors(tmp_path, shapes, capsys, monkeypatch, line, msg):
    monkeypatch.chdir(tmp_path)
    lab = tmp_path / "train/labels/img_0003.txt"
    lab.write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    err = _err(capsys, ["--app=obj", f"--config={_config(tmp_path)}"])
    assert "neural_network.data.target_path: 'train/labels/img_0003.txt' " in err
    assert re.search(msg, err), err


def test_output_width_error_names_the_layer(tmp_path, shapes, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, loss={"num_classes": 4, "anchors": SHAPES_ANCHORS})
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\n")
    err = _err(capsys, ["--app=obj", f"--config={cfg}"])
    assert ("yolo_small_shapes.json: layer 'detections': output width 24 != "
            "3*(5+num_classes) = 27 (num_classes = 4;") in err


def test_config_errors(tmp_path, shapes, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, loss={"anchors": SHAPES_ANCHORS[:3]})
    err = _err(capsys, ["--app=obj", f"--config={cfg}"])
    assert "neural_network.loss.anchors: expected 6 [w, h] pairs (3 per detection head; the " \
           "network has 2 heads: 8x8, 16x16), received 3" in err
    err = _err(capsys, ["--app=obj", f"--config={_config(tmp_path, loss={'function': 'NLL'})}"])
    assert "loss function 'NLL' cannot be used with --app=obj (expected one of: YOLOv3)" in err
    (tmp_path / "classes.txt").write_text("a\nb\n")
    err = _err(capsys, ["--app=obj", f"--config={_config(tmp_path)}"])
    assert "neural_network.data.class_names: 2 names in 'classes.txt' but " \
           "neural_network.loss.num_classes is 3" in err
