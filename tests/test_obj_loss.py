"""The YOLOv3 loss (``--app=obj``): assignment, each term by hand, ignore, gradcheck, options."""

from __future__ import annotations

import math

import pytest
import torch

from rmldnn_py.config.types import LossConfig
from rmldnn_py.engine.losses import build_loss
from rmldnn_py.errors import ConfigError, DataError
from rmldnn_py.obj.layout import HeadLayout
from rmldnn_py.obj.loss import YOLOv3Loss

# a non-square 64x96 input, heads in output order: stride 32 (2x3 cells), stride 16 (4x6)
ANCHORS = [[8, 8], [12, 10], [16, 20], [24, 24], [32, 40], [60, 50]]
C = 2
D = 5 + C


def layout():
    return HeadLayout.from_grids((64, 96), [(2, 3), (4, 6)], ANCHORS, C)


def make_loss(ignore_thresh=0.5):
    loss = YOLOv3Loss("cfg.json: neural_network.loss", num_classes=C, anchors=ANCHORS,
                      ignore_thresh=ignore_thresh)
    loss.bind(layout())
    return loss


def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def softplus(v):       # BCE with logits: target 1 → softplus(-z); target 0 → softplus(z)
    return math.log1p(math.exp(v))


# one object: class 1, centre (0.55, 0.3), size 0.25 x 0.3 of the 96x64 input → 24 x 19.2 px
OBJ = [1, 0.55, 0.3, 0.25, 0.3]


def target(*objs, rows=3):
    t = torch.zeros((1, rows, 5), dtype=torch.float64)
    t[0, :, 0] = -1
    for r, o in enumerate(objs):
        t[0, r] = torch.tensor(o, dtype=torch.float64)
    return t


def test_anchors_go_to_heads_by_stride():
    L = layout()
    assert L.heads[0].grid == (2, 3) and L.heads[0].stride == (32.0, 32.0)
    assert L.heads[0].anchors == ((24.0, 24.0), (32.0, 40.0), (60.0, 50.0))   # coarse: large
    assert L.heads[1].anchors == ((8.0, 8.0), (12.0, 10.0), (16.0, 20.0))
    assert L.heads[1].offset == 6 and L.positions == 6 + 24 and L.width == 3 * D


def test_assignment_of_one_object_by_hand():
    # shape IoUs (centred): (24,24): 24*19.2/576 = 0.8 (best); (16,20): 307.2/473.6; (32,40): 0.36
    asg = make_loss().assign(target(OBJ))
    assert asg.n.tolist() == [0] and asg.head.tolist() == [0] and asg.a.tolist() == [0]
    # cell: j = floor(0.55*3) = 1, i = floor(0.3*2) = 0 → k = 0*3 + 1
    assert asg.i.tolist() == [0] and asg.j.tolist() == [1] and asg.k.tolist() == [1]
    assert asg.tx.item() == pytest.approx(0.65) and asg.ty.item() == pytest.approx(0.6)
    assert asg.tw.item() == pytest.approx(math.log(24 / 24)) and \
        asg.th.item() == pytest.approx(math.log(19.2 / 24))
    assert asg.scale.item() == pytest.approx(2 - 0.25 * 0.3) and asg.cls.tolist() == [1]


def test_small_object_goes_to_fine_head():
    # 10 x 8 px object at (0.9, 0.1): best anchor (8,8)? IoU 64/80 = 0.8 vs (12,10): 80/120
    asg = make_loss().assign(target([0, 0.9, 0.1, 10 / 96, 8 / 64]))
    assert asg.head.tolist() == [1] and asg.a.tolist() == [0]
    # cell of the 4x6 grid: j = floor(5.4) = 5, i = floor(0.4) = 0 → k = 6 + 0*6 + 5
    assert asg.k.tolist() == [11] and asg.tx.item() == pytest.approx(0.4)


def test_object_on_the_border_stays_in_the_grid():
    asg = make_loss().assign(target([0, 1.0, 1.0, 0.25, 0.3]))
    assert asg.i.tolist() == [1] and asg.j.tolist() == [2] and asg.tx.item() == pytest.approx(1.0)


def test_two_objects_on_one_anchor_and_cell_the_later_row_wins():
    other = [0, 0.6, 0.35, 0.26, 0.31]          # same cell (1, 0), same best anchor
    asg = make_loss().assign(target(OBJ, other))
    assert asg.k.tolist() == [1] and asg.cls.tolist() == [0]
    assert asg.tx.item() == pytest.approx(0.6 * 3 - 1)


def _output_with(values, n=1):
    """Zero output (N, 21, 30) except the given (anchor, position) → 7 raw values."""
    out = torch.zeros((n, 3 * D, 30), dtype=torch.float64)
    v = out.view(n, 3, D, 30)
    for (img, a, k), vals in values.items():
        v[img, a, :, k] = torch.tensor(vals, dtype=torch.float64)
    return out


RAW = [0.2, -0.3, 0.1, -0.2, 1.5, 0.5, -1.0]          # tx ty tw th to c0 c1


def test_each_term_by_hand():
    loss = make_loss(ignore_thresh=1.0)                 # nothing can be ignored (IoU > 1)
    out = _output_with({(0, 0, 1): RAW})
    terms = loss.terms(out, target(OBJ))
    s = 2 - 0.25 * 0.3
    assert terms["box_xy"].item() == pytest.approx(s * ((sig(0.2) - 0.65) ** 2
                                                        + (sig(-0.3) - 0.6) ** 2))
    assert terms["box_wh"].item() == pytest.approx(s * ((0.1 - 0.0) ** 2
                                                        + (-0.2 - math.log(0.8)) ** 2))
    assert terms["obj"].item() == pytest.approx(softplus(-1.5))
    # class 1 is the object's: BCE(c0 = 0.5, 0) + BCE(c1 = -1.0, 1)
    assert terms["cls"].item() == pytest.approx(softplus(0.5) + softplus(1.0))
    # every other prediction (3 anchors x 30 positions - 1) has objectness logit 0: log 2 each
    assert terms["noobj"].item() == pytest.approx(89 * math.log(2))
    assert loss(out, target(OBJ)).item() == pytest.approx(sum(t.item() for t in terms.values()))


def _matching_prediction():
    """Head 1 (stride 16), anchor (16, 20), cell (1, 3) decoding exactly to the object box:
    (σ(tx) + 3)·16 = 52.8, (σ(ty) + 1)·16 = 19.2, 16·e^tw = 24, 20·e^th = 19.2."""
    logit = lambda p: math.log(p / (1 - p))              # noqa: E731
    return (0, 2, 6 + 1 * 6 + 3), [logit(0.3), logit(0.2), math.log(1.5), math.log(0.96),
                                   0.0, 0.0, 0.0]


def test_ignore_thresh_drops_no_object_terms_of_overlapping_predictions():
    key, vals = _matching_prediction()
    out = _output_with({(0, 0, 1): RAW, key: vals})
    # its decoded box equals the object (IoU 1 > 0.5): left out of the no-object sum
    assert make_loss(0.5).terms(out, target(OBJ))["noobj"].item() == \
        pytest.approx(88 * math.log(2))
    assert make_loss(1.0).terms(out, target(OBJ))["noobj"].item() == \
        pytest.approx(89 * math.log(2))
    ign = make_loss(0.5).ignore_mask(out.view(1, 3, D, 30), target(OBJ))
    assert ign[0, 2, key[2]] and ign.sum() >= 1


def test_loss_is_the_mean_over_images():
    loss = make_loss()
    out = torch.randn((2, 3 * D, 30), dtype=torch.float64)
    t = torch.cat([target(OBJ), target([0, 0.2, 0.7, 0.1, 0.1])])
    one = [loss(out[i:i + 1], t[i:i + 1]).item() for i in range(2)]
    assert loss(out, t).item() == pytest.approx(sum(one) / 2)
    # an image without objects: only no-object terms
    empty = target()
    noobj = make_loss(1.0).terms(out[:1], empty)
    assert all(noobj[k].item() == 0 for k in ("box_xy", "box_wh", "obj", "cls"))


def test_gradcheck():
    # a smaller layout (2 heads of 1x2 and 2x2 cells, 2 classes) keeps it quick
    torch.manual_seed(0)
    loss = YOLOv3Loss("x", num_classes=C, ignore_thresh=0.3)
    loss.bind(HeadLayout.from_grids((32, 64), [(1, 2), (2, 2)], ANCHORS, C))
    out = (torch.randn((2, 3 * D, 6), dtype=torch.float64) * 0.5).requires_grad_()
    t = torch.zeros((2, 3, 5), dtype=torch.float64)
    t[..., 0] = -1
    t[0, 0] = torch.tensor(OBJ)
    t[0, 1] = torch.tensor([0, 0.2, 0.7, 0.1, 0.15])
    t[1, 0] = torch.tensor([1, 0.8, 0.4, 0.5, 0.6])
    assert len(loss.assign(t)["n"]) == 3
    assert torch.autograd.gradcheck(lambda o: loss(o, t), (out,))


def test_shape_mismatch_and_bad_class():
    loss = make_loss()
    with pytest.raises(DataError, match=r"network output \(1, 21, 31\) does not match"):
        loss(torch.zeros((1, 21, 31)), target(OBJ).float())
    with pytest.raises(DataError, match=r"target class 2 outside \[0, 1\]"):
        loss(torch.zeros((1, 21, 30)), target([2, 0.5, 0.5, 0.2, 0.2]).float())


def test_options_rows_and_errors():
    loss = build_loss(LossConfig("yolov3", {"num_classes": 3, "anchors": ANCHORS,
                                            "ignore_thresh": 0.7}), app="obj")
    assert isinstance(loss, YOLOv3Loss) and loss.num_classes == 3 and loss.ignore_thresh == 0.7
    assert (loss.score_thresh, loss.nms_iou, loss.max_detections) == (0.001, 0.45, 100)
    rows = dict(loss.rows)
    assert rows["Function"] == "YOLOv3" and rows["Anchors"].startswith("[[8, 8], [12, 10]")
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.anchors: must be a list of "
                                          r"\[w, h\] pairs"):
        build_loss(LossConfig("YOLOv3", {"anchors": [[1, 2, 3]]}), app="obj")
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.ignore_thresh: must be in"):
        build_loss(LossConfig("YOLOv3", {"ignore_thresh": 2}), app="obj")
    with pytest.raises(ConfigError, match=r"requires --app=obj"):
        build_loss(LossConfig("YOLOv3", {}), app="dnn")
