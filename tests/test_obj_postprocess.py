"""Decoding, confidence threshold, class-wise NMS and max_detections (``--app=obj``)."""

from __future__ import annotations

import math

import pytest
import torch

from rmldnn_py.obj.layout import HeadLayout
from rmldnn_py.obj.postprocess import detect

ANCHORS = [[8, 8], [12, 10], [16, 20], [24, 24], [32, 40], [60, 50]]
C = 2
D = 5 + C
LAYOUT = HeadLayout.from_grids((64, 96), [(2, 3), (4, 6)], ANCHORS, C)
NEG = -20.0


def output(cells: dict) -> torch.Tensor:
    """All objectness logits very negative except the given ``(anchor, position) → raw``."""
    out = torch.zeros((1, 3 * D, 30))
    v = out.view(1, 3, D, 30)
    v[:, :, 4] = NEG
    v[:, :, 5:] = NEG
    for (a, k), raw in cells.items():
        v[0, a, :, k] = torch.tensor(raw)
    return out


def sig(v):
    return 1 / (1 + math.exp(-v))


def test_one_prediction_decoded_by_hand():
    # head 1 (stride 16, 4x6 cells), anchor 2 = (16, 20), cell (1, 3) → position 6 + 1*6 + 3
    raw = [0.4, -0.2, math.log(1.5), math.log(0.5), 2.0, NEG, 1.0]
    det = detect(output({(2, 15): raw}), LAYOUT, score_thresh=0.01)[0]
    cx, cy = (sig(0.4) + 3) * 16, (sig(-0.2) + 1) * 16
    w, h = 16 * 1.5, 20 * 0.5
    assert det.shape == (1, 6)
    assert det[0, :4].tolist() == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2],
                                                abs=1e-4)
    assert det[0, 4].item() == pytest.approx(sig(2.0) * sig(1.0), abs=1e-6)
    assert det[0, 5].item() == 1


def test_threshold_multi_label_class_wise_nms_and_max_detections():
    same = [0.0, 0.0, 0.0, 0.0, 3.0, 2.0, 1.0]          # cell (0, 1) of head 0, anchor 0
    shifted = [0.1, 0.0, 0.0, 0.0, 3.0, 1.5, -9.0]      # same cell, anchor 1 (32 x 40): IoU 0.45
    far = [0.0, 0.0, 0.0, 0.0, 1.0, -1.0, -9.0]         # other cell, low score
    cells = {(0, 1): same, (1, 1): shifted, (0, 4): far}
    dets = detect(output(cells), LAYOUT, score_thresh=0.1, nms_iou=0.3)[0]
    s = lambda o, c: sig(o) * sig(c)                     # noqa: E731
    # class 0: 'same' (0.84) suppresses 'shifted' (IoU 24²/(32·40) = 0.45 > 0.3); class 1 of
    # 'same' (0.70) stays (class-wise); 'far' class 0 score 0.73·0.27 = 0.197 > 0.1 stays
    scores = sorted(dets[:, 4].tolist(), reverse=True)
    assert scores == pytest.approx([s(3, 2), s(3, 1), s(1, -1)], abs=1e-6)
    assert dets[:, 4].tolist() == sorted(dets[:, 4].tolist(), reverse=True)
    assert dets[:, 5].tolist() == [0, 1, 0]
    # with a looser NMS 'shifted' survives; the score threshold removes 'far'
    dets2 = detect(output(cells), LAYOUT, score_thresh=0.3, nms_iou=0.5)[0]
    assert len(dets2) == 3 and sorted(dets2[:, 5].tolist()) == [0, 0, 1]
    assert len(detect(output(cells), LAYOUT, score_thresh=0.1, nms_iou=0.5,
                      max_detections=2)[0]) == 2


def test_pre_nms_bound_and_empty_images():
    out = torch.zeros((2, 3 * D, 30))                    # every candidate scores 0.25
    dets = detect(out, LAYOUT, score_thresh=0.001, nms_iou=1.0, max_detections=1000,
                  pre_nms=50)
    assert [d.shape for d in dets] == [(50, 6), (50, 6)]
    assert detect(output({}), LAYOUT)[0].shape == (0, 6)
