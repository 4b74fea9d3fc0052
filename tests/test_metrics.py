"""Evaluation accuracy metrics (SPEC §6.3, §12 Q12)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rmldnn_py.config.types import LossConfig
from rmldnn_py.engine.losses import LOSSES, build_loss
from rmldnn_py.engine.metrics import AccuracyMetric, DiceMetric
from rmldnn_py.errors import DataError

ACCURACY_LOSSES = ["NLL", "BCE", "Dice", "Jaccard", "Focal", "Lovasz"]
NO_ACCURACY = ["MSE"]


def make(function: str, **options):
    return build_loss(LossConfig(function, options))


def test_registry_split_covers_supported_losses():
    supported = {n for n in LOSSES.names()
                 if n not in ("Wasserstein", "YOLOv3", "Burgers_PDE", "Poisson2D_PDE",
                              "Poisson3D_PDE")}
    assert supported == set(ACCURACY_LOSSES) | set(NO_ACCURACY)


@pytest.mark.parametrize("name", ACCURACY_LOSSES)
def test_make_metric_kinds(name):
    loss = make(name)
    assert isinstance(loss.make_metric("classification"), AccuracyMetric)
    assert isinstance(loss.make_metric("dense"), DiceMetric)
    assert loss.make_metric(None) is None
    with pytest.raises(ValueError):
        loss.make_metric("segmentation")


@pytest.mark.parametrize("name", NO_ACCURACY)
def test_no_metric(name):
    assert make(name).make_metric("classification") is None
    assert make(name).make_metric("dense") is None


def test_classification_accuracy_by_hand():
    m = make("NLL").make_metric("classification")
    out = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.0, 0.1, 0.9]]).log()
    m.update(out, torch.tensor([1, 0, 1, 2]))            # 3 of 4
    m.update(out[:2], torch.tensor([[1.0], [2.0]]))      # (N, 1) float labels: 1 of 2
    assert m.value() == pytest.approx(4 / 6)
    s = m.state()
    assert s.dtype == torch.float64 and s.tolist() == [4.0, 6.0]


def test_classification_accuracy_binary_and_one_hot():
    m = make("BCE").make_metric("classification")       # one sigmoid output: p >= 0.5
    m.update(torch.tensor([[0.9], [0.4], [0.5]]), torch.tensor([1.0, 1.0, 0.0]))
    assert m.value() == pytest.approx(1 / 3)
    m = make("BCE", source="logits").make_metric("classification")   # logit >= 0
    m.update(torch.tensor([[2.0], [-1.0]]), torch.tensor([[1.0], [0.0]]))
    assert m.value() == 1.0
    m = make("Dice").make_metric("classification")
    m.update(torch.tensor([[0.2, 0.8], [0.6, 0.4]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert m.value() == 0.5


def test_dense_dice_by_hand():
    # 2 classes, prediction = argmax
    pred = torch.tensor([[[0, 1, 1], [1, 0, 0]]])        # (1, 2, 3)
    tgt = torch.tensor([[[0, 1, 0], [1, 1, 0]]])
    out = F.one_hot(pred, 2).movedim(-1, 1).float() * 0.8 + 0.1
    m = make("Dice").make_metric("dense")
    m.update(out, tgt)
    # class 0: I = 2, P = 3, T = 3 → 4/6; class 1: I = 2, P = 3, T = 3 → 4/6
    assert m.value() == pytest.approx(2 / 3)
    assert m.per_class() == pytest.approx([2 / 3, 2 / 3])


def test_dense_dice_sums_accumulate_over_batches_not_averaged():
    m = make("Dice").make_metric("dense")
    # batch 1: class 1 perfect on 2 pixels; batch 2: class 1 predicted on 4 pixels, target on 1
    m.update(torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]), torch.tensor([[1, 1]]))
    m.update(torch.tensor([[[0.0] * 4, [1.0] * 4]]), torch.tensor([[1, 0, 0, 0]]))
    # class 0: I = 0, P = 0, T = 3 → 0; class 1: I = 3, P = 6, T = 3 → 6/9
    # (averaging per batch would give (1 + 0.4)/2 = 0.7 for class 1)
    assert m.per_class() == pytest.approx([0.0, 2 / 3])
    assert m.value() == pytest.approx(1 / 3)


def test_dense_dice_skips_absent_classes():
    m = make("Dice").make_metric("dense")
    out = F.one_hot(torch.tensor([[0, 0, 2, 2]]), 4).movedim(-1, 1).float()
    m.update(out, torch.tensor([[0, 0, 2, 0]]))
    # class 0: I=2, P=2, T=3 → 0.8; class 2: I=1, P=2, T=1 → 2/3; classes 1, 3 absent
    assert m.per_class()[1] is None and m.per_class()[3] is None
    assert m.value() == pytest.approx((0.8 + 2 / 3) / 2)


def test_binary_sigmoid_counts_background():
    m = make("Dice", source="sigmoid").make_metric("dense")
    out = torch.tensor([[[[0.9, 0.2], [0.7, 0.4]]]])     # (1, 1, 2, 2) → pred [[1, 0], [1, 0]]
    tgt = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    m.update(out, tgt)
    # background: I=2, P=2, T=3 → 0.8; foreground: I=1, P=2, T=1 → 2/3
    assert m.value() == pytest.approx((0.8 + 2 / 3) / 2)
    m2 = make("Dice", source="logits").make_metric("dense")
    m2.update(torch.logit(out), tgt[:, 0])
    assert m2.value() == pytest.approx(m.value())


def test_one_hot_targets_and_3d():
    g = torch.Generator().manual_seed(0)
    out = torch.rand(2, 3, 2, 3, 4, generator=g)
    y = torch.randint(0, 3, (2, 2, 3, 4), generator=g)
    a = make("Dice").make_metric("dense")
    a.update(out, y)
    b = make("Dice").make_metric("dense")
    b.update(out, F.one_hot(y, 3).movedim(-1, 1).float())
    assert a.value() == pytest.approx(b.value())
    # brute force
    pred = out.argmax(1)
    ds = []
    for c in range(3):
        i = ((pred == c) & (y == c)).sum().item()
        s = (pred == c).sum().item() + (y == c).sum().item()
        if s:
            ds.append(2 * i / s)
    assert a.value() == pytest.approx(sum(ds) / len(ds))


def test_ignore_index_excluded():
    m = make("NLL", ignore_index=255).make_metric("dense")
    out = F.one_hot(torch.tensor([[0, 1, 1]]), 2).movedim(-1, 1).float().log()
    m.update(out, torch.tensor([[0, 255, 1]]))
    assert m.value() == 1.0
    acc = make("NLL", ignore_index=255).make_metric("classification")
    acc.update(out[0].T, torch.tensor([0, 255, 0]))
    assert acc.state().tolist() == [1.0, 2.0]


@pytest.mark.parametrize("task", ["classification", "dense"])
def test_state_all_reduce_equivalent(task):
    g = torch.Generator().manual_seed(1)
    out = torch.rand(6, 3, 4, generator=g)
    y = torch.randint(0, 3, (6, 4), generator=g)
    if task == "classification":
        out, y = out[:, :, 0], y[:, 0]
    whole = make("Dice").make_metric(task, num_classes=3)
    whole.update(out, y)
    r0 = make("Dice").make_metric(task, num_classes=3)
    r1 = make("Dice").make_metric(task, num_classes=3)
    r0.update(out[:4], y[:4])
    r1.update(out[4:], y[4:])
    r1.update(out[:0], y[:0])                            # an empty batch on the short rank
    total = r0.state() + r1.state()                      # all_reduce(SUM)
    r0.load_state(total.clone())
    r1.load_state(total.clone())
    assert r0.value() == pytest.approx(whole.value())
    assert r1.value() == pytest.approx(whole.value())
    assert r0.state().dtype == torch.float64


def test_state_preallocated_with_num_classes():
    m = make("Dice").make_metric("dense", num_classes=4)
    assert m.state().tolist() == [0.0] * 12
    assert m.value() == 0.0
    with pytest.raises(DataError):
        m.update(torch.rand(1, 3, 2), torch.zeros(1, 2, dtype=torch.long))
    assert make("BCE").make_metric("dense", num_classes=1).state().numel() == 6


def test_state_before_update_without_size_raises():
    with pytest.raises(RuntimeError):
        make("Dice").make_metric("dense").state()


def test_target_shape_mismatch():
    m = make("Dice").make_metric("dense")
    with pytest.raises(DataError):
        m.update(torch.rand(2, 3, 4), torch.zeros(2, 5, dtype=torch.long))


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 16), c=st.integers(1, 4), cut=st.integers(0, 5))
def test_split_batches_same_value(seed, c, cut):
    g = torch.Generator().manual_seed(seed)
    out = torch.rand(5, c, 3, generator=g)
    y = torch.randint(0, max(c, 2), (5, 3), generator=g)
    loss = make("Dice", source="sigmoid" if c == 1 else "softmax")
    whole = loss.make_metric("dense")
    whole.update(out, y)
    parts = loss.make_metric("dense")
    parts.update(out[:cut], y[:cut])
    parts.update(out[cut:], y[cut:])
    assert parts.value() == pytest.approx(whole.value())
    assert 0.0 <= whole.value() <= 1.0
