"""Loss functions (SPEC §3.8, §6.3, §7.2.3)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rmldnn_py.config.types import LossConfig
import rmldnn_py.pde.losses  # noqa: F401  (registers the PDE losses; tests/test_pde_losses.py)
import rmldnn_py.obj.loss  # noqa: F401  (registers YOLOv3; tests/test_obj_loss.py)
import rmldnn_py.gan.losses  # noqa: F401  (registers Wasserstein; tests/test_gan_losses.py)
from rmldnn_py.engine.losses import LOSSES, PDE_LOSSES, build_loss, check_loss_app, lovasz_grad
from rmldnn_py.errors import ConfigError, DataError

EPS = 1e-7


def make(function: str, **options):
    return build_loss(LossConfig(function, options))


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


# Tiny classification example: 2 samples, 2 classes
P2 = t64([[0.8, 0.2], [0.3, 0.7]])
Y2 = torch.tensor([0, 1])


# ------------------------------------------------------------------------------------------
# Hand computations, one or more per supported loss
# ------------------------------------------------------------------------------------------

def _nll_hand():
    out = t64([[-0.5, -1.2, -2.0], [-1.5, -0.1, -3.0]])
    y = torch.tensor([2, 1])
    assert make("NLL")(out, y).item() == pytest.approx((2.0 + 0.1) / 2)
    w = [0.5, 1.0, 3.0]
    assert make("nll", weight=w)(out, y).item() == pytest.approx((3 * 2.0 + 1 * 0.1) / 4)
    assert make("NLL", ignore_index=1)(out, y).item() == pytest.approx(2.0)
    # float targets are rounded, (N, 1) squeezed
    assert make("NLL")(out, t64([[1.9], [1.1]])).item() == pytest.approx(2.1 / 2)


def _bce_hand():
    p = t64([[0.2], [0.9]])
    y = t64([[0.0], [1.0]])
    want = -(math.log(0.8) + math.log(0.9)) / 2
    assert make("BCE")(p, y).item() == pytest.approx(want)
    logits = torch.log(p / (1 - p))
    assert make("BCE", source="logits")(logits, y).item() == pytest.approx(want)
    # target without the channel axis
    assert make("BCE")(p, t64([0.0, 1.0])).item() == pytest.approx(want)


def _mse_hand():
    out = t64([[1.0, 2.0], [3.0, 4.0]])
    tgt = t64([[0.0, 2.0], [5.0, 4.5]])
    assert make("MSE")(out, tgt).item() == pytest.approx((1 + 0 + 4 + 0.25) / 4)


def _dice_hand():
    d0 = (2 * 0.8 + EPS) / (1.1 + 1 + EPS)
    d1 = (2 * 0.7 + EPS) / (0.9 + 1 + EPS)
    assert make("Dice")(P2, Y2).item() == pytest.approx(1 - (d0 + d1) / 2, rel=1e-12)
    assert make("Dice", weight=[1, 3])(P2, Y2).item() == pytest.approx(1 - (d0 + 3 * d1) / 4,
                                                                       rel=1e-12)
    eps = 0.5
    e0 = (2 * 0.8 + eps) / (2.1 + eps)
    e1 = (2 * 0.7 + eps) / (1.9 + eps)
    assert make("Dice", eps=eps)(P2, Y2).item() == pytest.approx(1 - (e0 + e1) / 2)
    # sigmoid, one channel: only the foreground channel
    p = t64([[[0.9, 0.2]], [[0.6, 0.1]]])          # (N=2, C=1, W=2)
    y = t64([[[1.0, 0.0]], [[1.0, 1.0]]])
    inter, ps, ts = 0.9 + 0.6 + 0.1, 1.8, 3.0
    assert make("Dice", source="sigmoid")(p, y).item() == pytest.approx(
        1 - (2 * inter + EPS) / (ps + ts + EPS))


def _jaccard_hand():
    j0 = (0.8 + EPS) / (1.1 + 1 - 0.8 + EPS)
    j1 = (0.7 + EPS) / (0.9 + 1 - 0.7 + EPS)
    assert make("Jaccard")(P2, Y2).item() == pytest.approx(1 - (j0 + j1) / 2, rel=1e-12)
    assert make("Jaccard", weight=[2, 1])(P2, Y2).item() == pytest.approx(
        1 - (2 * j0 + j1) / 3, rel=1e-12)


def _focal_hand():
    want = -((0.2 ** 2) * math.log(0.8) + (0.3 ** 2) * math.log(0.7)) / 2
    assert make("Focal")(P2, Y2).item() == pytest.approx(want)
    want1 = -((0.2 ** 1.5) * math.log(0.8) + (0.3 ** 1.5) * math.log(0.7)) / 2
    assert make("Focal", gamma=1.5)(P2, Y2).item() == pytest.approx(want1)
    ww = -(1 * (0.2 ** 2) * math.log(0.8) + 3 * (0.3 ** 2) * math.log(0.7)) / 4
    assert make("Focal", weight=[1, 3])(P2, Y2).item() == pytest.approx(ww)
    # gamma = 0 is the (weighted) NLL of log p
    assert make("Focal", gamma=0, weight=[1, 3])(P2, Y2).item() == pytest.approx(
        F.nll_loss(P2.log(), Y2, weight=t64([1, 3])).item())
    # binary: p = 0.9 (t=1), 0.3 (t=0)
    p = t64([[0.9], [0.3]])
    y = t64([[1.0], [0.0]])
    b = -((0.1 ** 2) * math.log(0.9) + (0.3 ** 2) * math.log(0.7)) / 2
    assert make("Focal", source="sigmoid")(p, y).item() == pytest.approx(b)
    ba = -(0.25 * (0.1 ** 2) * math.log(0.9) + 0.75 * (0.3 ** 2) * math.log(0.7)) / 2
    assert make("Focal", source="sigmoid", alpha=0.25)(p, y).item() == pytest.approx(ba)


def _lovasz_hand():
    # Lovász hinge, worked by hand: logits [2, -1, 0.5], labels [1, 0, 0]
    # errors [-1, 0, 1.5] → sorted [1.5, 0, -1] with labels [0, 0, 1] → grad [1/2, 1/6, 1/3]
    out = t64([[[2.0, -1.0, 0.5]]])
    y = t64([[[1.0, 0.0, 0.0]]])
    assert make("Lovasz", source="logits")(out, y).item() == pytest.approx(0.75)
    p = torch.sigmoid(out)
    assert make("Lovasz", source="sigmoid")(p, y).item() == pytest.approx(0.75)
    # Lovász-softmax by hand: p(c=1) = [0.9, 0.4, 0.2], labels [1, 1, 0]
    # class 1: errors [0.1, 0.6, 0.2] → 0.6·1/2 + 0.2·1/6 + 0.1·1/3 = 11/30
    # class 0: errors [0.1, 0.6, 0.2] → 0.6·1/2 + 0.2·1/2 + 0.1·0 = 0.4
    p1 = t64([0.9, 0.4, 0.2])
    probs = torch.stack([1 - p1, p1]).unsqueeze(0)   # (1, 2, 3)
    labels = torch.tensor([[1, 1, 0]])
    assert make("Lovasz")(probs, labels).item() == pytest.approx((11 / 30 + 0.4) / 2)


HAND = {"NLL": _nll_hand, "BCE": _bce_hand, "MSE": _mse_hand, "Dice": _dice_hand,
        "Jaccard": _jaccard_hand, "Focal": _focal_hand, "Lovasz": _lovasz_hand}
UNSUPPORTED = {"Wasserstein": "gan", "YOLOv3": "obj"}
SUPPORTED = [n for n in LOSSES.names() if n not in UNSUPPORTED and n not in PDE_LOSSES]


def test_every_loss_is_covered():
    # the PDE losses (--app=pde) are tested in tests/test_pde_losses.py
    assert set(LOSSES.names()) == set(HAND) | set(UNSUPPORTED) | set(PDE_LOSSES)
    assert set(PDE_LOSSES) <= set(LOSSES.names())


@pytest.mark.parametrize("name", SUPPORTED)
def test_hand_computation(name):
    HAND[name]()


@pytest.mark.parametrize("name", [n for n in LOSSES.names()
                                  if n in UNSUPPORTED and n not in ("Wasserstein", "YOLOv3")])
def test_unsupported_losses(name):
    with pytest.raises(ConfigError, match=rf"requires --app={UNSUPPORTED[name]}"):
        make(name)
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.function"):
        build_loss(LossConfig(name.lower(), {}), app=UNSUPPORTED[name])


def test_yolov3_requires_obj():
    """YOLOv3 is implemented by --app=obj (rmldnn_py.obj, tests/test_obj_loss.py) and refused by
    the other applications."""
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.function: loss function "
                                          r"'YOLOv3' requires --app=obj"):
        build_loss(LossConfig("YOLOv3", {}), app="dnn")
    assert build_loss(LossConfig("YOLOv3", {}), app="obj").name == "YOLOv3"


def test_wasserstein_requires_gan():
    """Wasserstein is implemented by --app=gan (rmldnn_py.gan, tests/test_gan_losses.py) and
    refused by the other applications."""
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.function: loss function "
                                          r"'Wasserstein' requires --app=gan"):
        build_loss(LossConfig("Wasserstein", {}), app="dnn")
    assert build_loss(LossConfig("Wasserstein", {}), app="gan").name == "Wasserstein"


# ------------------------------------------------------------------------------------------
# torch references
# ------------------------------------------------------------------------------------------

def test_nll_matches_torch_dense():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64).log_softmax(1)
    y = torch.randint(0, 4, (2, 3, 5), generator=g)
    w = [0.1, 0.2, 0.3, 0.4]
    want = F.nll_loss(out, y, weight=t64(w), ignore_index=2)
    got = make("NLL", weight=w, ignore_index=2)(out, y.unsqueeze(1).double())
    torch.testing.assert_close(got, want)
    out3 = torch.randn(2, 3, 2, 3, 4, generator=g, dtype=torch.float64).log_softmax(1)
    y3 = torch.randint(0, 3, (2, 2, 3, 4), generator=g)
    torch.testing.assert_close(make("NLL")(out3, y3), F.nll_loss(out3, y3))


def test_bce_mse_match_torch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    y = (torch.rand(3, 1, 4, 4, generator=g) > 0.5).double()
    torch.testing.assert_close(make("BCE")(x.sigmoid(), y), F.binary_cross_entropy(x.sigmoid(), y))
    torch.testing.assert_close(make("bce", source="LOGITS")(x, y),
                               F.binary_cross_entropy_with_logits(x, y))
    torch.testing.assert_close(make("BCE")(x.sigmoid(), y[:, 0]),
                               F.binary_cross_entropy(x.sigmoid(), y))
    torch.testing.assert_close(make("MSE")(x, y), F.mse_loss(x, y))


def test_focal_matches_torchvision():
    ops = pytest.importorskip("torchvision.ops")
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 1, 3, 3, generator=g) > 0.5).double()
    want = ops.sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0, reduction="mean")
    torch.testing.assert_close(make("Focal", source="sigmoid", alpha=0.25)(x.sigmoid(), y), want)
    torch.testing.assert_close(make("Focal", source="logits", alpha=0.25)(x, y), want)
    want = ops.sigmoid_focal_loss(x, y, alpha=-1, gamma=1.0, reduction="mean")
    torch.testing.assert_close(make("Focal", source="logits", gamma=1.0)(x, y), want)


def test_lovasz_grad_matches_paper_definition():
    # grad_i = J(first i errors) - J(first i-1 errors), J = 1 - |gt \ mispred| / |gt ∪ mispred|
    gt = t64([1, 0, 1, 1, 0, 0, 1])
    want = []
    prev = 0.0
    for i in range(1, len(gt) + 1):
        mis = torch.zeros_like(gt)
        mis[:i] = 1
        inter = (gt * (1 - mis)).sum()
        union = (gt + mis - gt * mis).sum()
        j = 1 - inter / union
        want.append(j.item() - prev)
        prev = j.item()
    torch.testing.assert_close(lovasz_grad(gt), t64(want))


def test_lovasz_softmax_equals_jaccard_loss_on_crisp_predictions():
    # On 0/1 probabilities the Lovász extension equals the Jaccard loss 1 - IoU_c.
    pred = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1])
    y = torch.tensor([0, 1, 2, 2, 2, 0, 0, 0])
    probs = F.one_hot(pred, 3).double().T.unsqueeze(0)      # (1, 3, 8)
    ious = []
    for c in range(3):
        inter = ((pred == c) & (y == c)).sum().item()
        union = ((pred == c) | (y == c)).sum().item()
        ious.append(inter / union)
    want = sum(1 - i for i in ious) / 3
    assert make("Lovasz")(probs, y.unsqueeze(0)).item() == pytest.approx(want)


# ------------------------------------------------------------------------------------------
# Sources, target forms, shapes
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Dice", "Jaccard", "Focal", "Lovasz"])
def test_sources_and_target_forms_agree(name):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 2, 3, 4, generator=g, dtype=torch.float64)   # 3D segmentation
    y = torch.randint(0, 3, (2, 2, 3, 4), generator=g)
    ref = make(name)(x.softmax(1), y)
    for src, out in (("log_softmax", x.log_softmax(1)), ("logits", x), ("none", x)):
        torch.testing.assert_close(make(name, source=src)(out, y), ref)
    torch.testing.assert_close(make(name)(x.softmax(1), y.unsqueeze(1)), ref)
    torch.testing.assert_close(make(name)(x.softmax(1), y.unsqueeze(1).float()), ref)
    onehot = F.one_hot(y, 3).movedim(-1, 1).double()
    torch.testing.assert_close(make(name)(x.softmax(1), onehot), ref)


@pytest.mark.parametrize("name", ["Dice", "Jaccard", "Focal", "Lovasz"])
def test_sigmoid_one_channel_class_map_target(name):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 4, 4, generator=g) > 0.5).long()
    a = make(name, source="sigmoid")(x.sigmoid(), y)
    b = make(name, source="sigmoid")(x.sigmoid(), y.unsqueeze(1).double())
    c = make(name, source="logits")(x, y)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_sigmoid_multichannel_dice_is_per_channel():
    p = t64([[[0.9, 0.1], [0.2, 0.7]]])   # (1, C=2, 2)
    y = t64([[[1.0, 0.0], [0.0, 1.0]]])
    d0 = (2 * 0.9 + EPS) / (1.0 + 1 + EPS)
    d1 = (2 * 0.7 + EPS) / (0.9 + 1 + EPS)
    assert make("Dice", source="sigmoid")(p, y).item() == pytest.approx(1 - (d0 + d1) / 2)


@pytest.mark.parametrize("name", SUPPORTED)
def test_empty_batch_and_half_precision(name):
    out = torch.rand(0, 2, 3, 3)
    y = torch.zeros(0, 3, 3, dtype=torch.long) if name not in ("BCE", "MSE") else out.clone()
    loss = make(name)
    assert loss(out, y).item() == 0.0
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 2, 3, 3, generator=g)
    if name == "NLL":
        out = x.log_softmax(1)
    elif name in ("BCE", "MSE"):
        out = x.sigmoid()
    else:
        out = x.softmax(1)
    y = torch.randint(0, 2, (2, 3, 3), generator=g)
    if name in ("BCE", "MSE"):
        y = F.one_hot(y, 2).movedim(-1, 1).float()
    full = loss(out, y)
    half = loss(out.bfloat16(), y)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=0.05, abs=1e-2)


# ------------------------------------------------------------------------------------------
# Gradients (float64 gradcheck)
# ------------------------------------------------------------------------------------------

def _gradcheck_cases():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 3, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 3, 2), generator=g)
    xb = torch.randn(2, 1, 3, 2, generator=g, dtype=torch.float64)
    yb = (torch.rand(2, 1, 3, 2, generator=g) > 0.5).double()
    return {
        "NLL": [({}, x.log_softmax(1), y), ({"weight": [1, 2, 3]}, x.log_softmax(1), y)],
        "BCE": [({}, xb.sigmoid(), yb), ({"source": "logits"}, xb, yb)],
        "MSE": [({}, x, torch.rand(x.shape, generator=g, dtype=torch.float64))],
        "Dice": [({}, x.softmax(1), y), ({"source": "log_softmax", "weight": [1, 2, 1]},
                                         x.log_softmax(1), y),
                 ({"source": "sigmoid"}, xb.sigmoid(), yb)],
        "Jaccard": [({}, x.softmax(1), y), ({"source": "logits"}, x, y)],
        "Focal": [({}, x.softmax(1), y), ({"source": "logits", "weight": [1, 2, 3]}, x, y),
                  ({"source": "sigmoid", "alpha": 0.25}, xb.sigmoid(), yb)],
        "Lovasz": [({}, x.softmax(1), y), ({"source": "logits"}, xb, yb),
                   ({"source": "sigmoid"}, xb.sigmoid(), yb)],
    }


@pytest.mark.parametrize("name", SUPPORTED)
def test_gradcheck(name):
    for options, out, tgt in _gradcheck_cases()[name]:
        loss = make(name, **options)
        inp = out.detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda o: loss(o, tgt), (inp,), eps=1e-6, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Rows, options and errors
# ------------------------------------------------------------------------------------------

def test_rows():
    nll = make("nll")
    assert nll.rows == [("Function", "NLL (Negative Log-Likelihood)"), ("Weight", "None"),
                        ("Ignore index", "None")]
    assert nll.label_width == 12
    assert make("NLL", weight=[0.3, 0.4], ignore_index=255).rows[1:] == [
        ("Weight", "[0.3, 0.4]"), ("Ignore index", "255")]
    dice = make("dice")
    assert dice.rows == [("Function", "Dice score"), ("Source", "softmax"), ("Eps", "1e-07"),
                         ("Weight", "None")]
    assert dice.label_width == 8
    assert make("Dice", source="Sigmoid").rows[1] == ("Source", "sigmoid")
    assert make("BCE").rows == [("Function", "BCE (Binary Cross-Entropy)")]
    assert make("BCE", source="sigmoid").rows == [("Function", "BCE (Binary Cross-Entropy)")]
    assert make("BCE", source="logits").rows[1] == ("Source", "logits")
    assert make("MSE").rows == [("Function", "MSE (Mean Squared Error)")]
    assert make("Jaccard").rows[0] == ("Function", "Jaccard score")
    assert make("Focal").rows == [("Function", "Focal loss"), ("Source", "softmax"),
                                  ("Gamma", "2"), ("Weight", "None")]
    assert make("Lovasz").rows == [("Function", "Lovasz loss"), ("Source", "softmax")]
    assert make("LOVASZ").name == "Lovasz"


@pytest.mark.parametrize("name", ["NLL", "Dice", "Jaccard", "Focal"])
def test_weight_length_mismatch(name):
    loss = make(name, weight=[1.0, 2.0])
    out = torch.rand(2, 3, 4).softmax(1)
    if name == "NLL":
        out = out.log()
    with pytest.raises(ConfigError) as info:
        loss(out, torch.zeros(2, 4, dtype=torch.long))
    msg = str(info.value)
    assert msg.startswith("neural_network.loss.weight: has 2 values but the network output "
                          "has 3 channels")
    assert "\n" not in msg


@pytest.mark.parametrize("options,key", [
    ({"weight": [1, -1]}, "weight"),
    ({"weight": "heavy"}, "weight"),
    ({"weight": [0, 0]}, "weight"),
    ({"eps": -1.0}, "eps"),
    ({"source": "softmx"}, "source"),
])
def test_invalid_options(options, key):
    with pytest.raises(ConfigError) as info:
        make("Dice", **options)
    msg = str(info.value)
    assert msg.startswith(f"neural_network.loss.{key}:") and "\n" not in msg


def test_source_did_you_mean():
    with pytest.raises(ConfigError, match=r"Did you mean 'softmax'\?"):
        make("Dice", source="softmx")


def test_focal_invalid_options():
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.gamma"):
        make("Focal", gamma=-1)
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.alpha"):
        make("Focal", alpha=1.5)
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.ignore_index"):
        make("NLL", ignore_index=0.5)


def test_unknown_function_did_you_mean():
    with pytest.raises(ConfigError) as info:
        make("Dise")
    msg = str(info.value)
    assert msg.startswith("neural_network.loss.function: unknown loss function 'Dise'")
    assert "Did you mean 'Dice'?" in msg


def test_unknown_key_warning():
    loss = make("NLL", wieght=[1, 2])
    assert len(loss.warnings) == 1
    assert loss.warnings[0].startswith("neural_network.loss.wieght: unknown key")
    assert "Did you mean 'weight'?" in loss.warnings[0]


def test_pde_app_accepts_only_pde_losses():
    from rmldnn_py.pde.app import PdeApp

    with pytest.raises(ConfigError, match=r"cannot be used with --app=pde"):
        check_loss_app("NLL", "pde", PdeApp.losses)
    for name in PDE_LOSSES:
        check_loss_app(name, "pde", PdeApp.losses)
        with pytest.raises(ConfigError, match=r"requires --app=pde"):
            build_loss(LossConfig(name, {}), app="dnn")


def test_target_shape_mismatch_is_data_error():
    with pytest.raises(DataError):
        make("Dice")(torch.rand(2, 3, 4, 4), torch.zeros(2, 5, 5, dtype=torch.long))
    with pytest.raises(DataError):
        make("NLL")(torch.rand(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="class index 7"):
        make("Dice")(torch.rand(2, 3), torch.tensor([0, 7]))
    with pytest.raises(DataError):
        make("MSE")(torch.rand(2, 3), torch.rand(2, 4))


# ------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 16), n=st.integers(1, 3), c=st.integers(2, 4),
       name=st.sampled_from(["Dice", "Jaccard", "Lovasz"]))
def test_overlap_losses_bounded_and_zero_at_target(seed, n, c, name):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, c, 3, 3, generator=g, dtype=torch.float64).softmax(1)
    y = torch.randint(0, c, (n, 3, 3), generator=g)
    value = make(name)(p, y).item()
    assert -1e-12 <= value <= 1.0 + 1e-12
    perfect = F.one_hot(y, c).movedim(-1, 1).double()
    assert make(name)(perfect, y).item() == pytest.approx(0.0, abs=1e-6)
