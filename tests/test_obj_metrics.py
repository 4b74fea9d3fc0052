"""Detection mAP (``--app=obj``) against pycocotools run directly, and a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from obj_helpers import pycocotools_map
from rmldnn_py.obj.metrics import DetectionMAP, mean_average_precision


def test_hand_computed_average_precision():
    # two objects; detections by score: TP (0.9), FP (0.8), TP (0.7) at every IoU threshold
    # → precision 1 up to recall 0.5, 2/3 up to recall 1: 101-point AP = (51·1 + 50·2/3)/101
    gt = np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 0]])
    det = np.array([[0, 0, 10, 10, 0.9, 0], [50, 50, 60, 60, 0.8, 0], [20, 20, 30, 30, 0.7, 0]])
    expected = (51 + 50 * 2 / 3) / 101
    r = mean_average_precision([(det, gt)])
    assert r["map50"] == pytest.approx(expected) and r["map"] == pytest.approx(expected)
    assert (r["images"], r["objects"]) == (1, 2)
    # a box with IoU 0.58 counts at thresholds 0.5 and 0.55 only (2 of 10)
    det2 = np.array([[0, 0, 10, 5.8, 0.9, 0]])         # IoU 58/100
    r2 = mean_average_precision([(det2, gt[:1])])
    assert r2["map50"] == pytest.approx(1.0) and r2["map"] == pytest.approx(0.2)


def _random_set(seed, n_images=12, classes=3):
    rng = np.random.default_rng(seed)
    items = []
    for k in range(n_images):
        h, w = int(rng.integers(60, 200)), int(rng.integers(60, 200))
        n_gt = int(rng.integers(0, 5)) if k % 4 else 0          # some images without objects
        xy = rng.uniform(0, [w - 20, h - 20], size=(n_gt, 2))
        wh = rng.uniform(8, 40, size=(n_gt, 2))
        gt = np.concatenate([xy, np.minimum(xy + wh, [w, h]),
                             rng.integers(0, classes, (n_gt, 1))], 1)
        det = []
        for g in gt:                                           # jittered true positives
            if rng.uniform() < 0.8:
                j = rng.normal(0, 0.06, 4) * np.tile(g[2:4] - g[:2], 2)
                c = g[4] if rng.uniform() < 0.85 else (g[4] + 1) % classes
                b = np.clip(g[:4] + j, 0, [w, h, w, h])
                b[2:] = np.maximum(b[2:], b[:2] + 1)            # a valid box
                det.append(list(b) + [rng.uniform(0.3, 1), c])
        for _ in range(int(rng.integers(0, 4))):                 # false positives
            x, y = rng.uniform(0, w - 10), rng.uniform(0, h - 10)
            det.append([x, y, x + rng.uniform(5, 30), y + rng.uniform(5, 30),
                        rng.uniform(0, 0.8), rng.integers(0, classes)])
        det = np.asarray(det, dtype=np.float64).reshape(-1, 6)
        items.append((det, gt, (h, w)))
    return items


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_equals_pycocotools(seed, backend):
    items = _random_set(seed)
    ref = pycocotools_map(items)
    ours = mean_average_precision([(d, g) for d, g, _ in items], backend=backend)
    assert ours["map50"] == pytest.approx(ref["map50"], abs=1e-6)
    assert ours["map"] == pytest.approx(ref["map"], abs=1e-6)
    assert 0.2 < ours["map50"] < 1.0            # a non-trivial value


def test_accumulator_and_empty_sets():
    items = _random_set(5, n_images=6)
    acc = DetectionMAP()
    for det, gt, _ in items:
        acc.add(det, gt[:, :4], gt[:, 4])
    assert acc.compute() == mean_average_precision([(d, g) for d, g, _ in items])
    assert acc.compute_global() == acc.compute()            # one process: the same
    r = mean_average_precision([(np.zeros((0, 6)), np.zeros((0, 5)))])
    assert np.isnan(r["map50"]) and r["objects"] == 0
