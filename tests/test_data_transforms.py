"""Transforms (SPEC §3.4, §5.9, §5.10) against torchvision's functional reference or a hand
computation, and the shared-draw contract between inputs and targets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as NF
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from rmldnn_py.config.types import TransformSpec
from rmldnn_py.data.transforms import TRANSFORMS, Pipeline
from rmldnn_py.errors import ConfigError, DataError

W = "neural_network.data.transforms[0]"


def pipe(*specs, train=True, mask=False, inp=(), tgt=()):
    return Pipeline([TransformSpec(n, v, W) for n, v in specs],
                    [TransformSpec(n, v, "neural_network.data.input_transforms[0]") for n, v in inp],
                    [TransformSpec(n, v, "neural_network.data.target_transforms[0]") for n, v in tgt],
                    train=train, target_is_mask=mask, config_path="config.json")


def ramp(c=3, h=6, w=8):
    return torch.arange(c * h * w, dtype=torch.float32).reshape(c, h, w) / (c * h * w)


def test_registry_names():
    assert set(TRANSFORMS.names()) == {
        "resize", "center_crop", "jitter_crop", "random_horizontal_flip", "random_vertical_flip",
        "random_zoom", "rotate", "random_rotate", "convert_color", "normalize", "random_patches"}
    assert "RESIZE" in TRANSFORMS


def test_resize_non_square_is_height_width_bilinear_like_opencv():
    x = ramp(3, 6, 8)
    y, _ = pipe(("resize", [3, 5]))(x, None)
    assert y.shape == (3, 3, 5)
    ref = NF.interpolate(x[None], size=(3, 5), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(y, ref, atol=1e-6)
    y, _ = pipe(("resize", [9, 4]))(x, None)
    assert y.shape == (3, 9, 4)


def test_resize_mask_uses_nearest():
    x = ramp(3, 6, 8)
    m = torch.randint(0, 3, (1, 6, 8)).float()
    _, ym = pipe(("resize", [12, 5]), mask=True)(x, m)
    assert ym.shape == (1, 12, 5)
    assert torch.equal(ym, F.resize(m, [12, 5], interpolation=InterpolationMode.NEAREST))
    assert set(ym.unique().tolist()) <= {0.0, 1.0, 2.0}


def test_center_crop_floor_offsets_and_error():
    x = ramp(2, 5, 8)
    y, _ = pipe(("center_crop", [2, 3]))(x, None)
    assert torch.equal(y, x[:, 1:3, 2:5])
    with pytest.raises(DataError) as e:
        pipe(("center_crop", [6, 3]))(x, None, "a.png")
    assert str(e.value).startswith(f"config.json: {W}: center_crop failed on 'a.png': crop window")


def test_jitter_crop_is_a_window_within_bounds():
    x = ramp(1, 10, 20)
    torch.manual_seed(3)
    for _ in range(20):
        y, _ = pipe(("jitter_crop", 0.5))(x, None)
        h, w = y.shape[1:]
        assert 10 - 2 <= h <= 10 and 20 - 5 <= w <= 20     # m_i <= floor(0.5 * S_i / 2)
        top, left = int(round(y[0, 0, 0].item() * 200)) // 20, int(round(y[0, 0, 0].item() * 200)) % 20
        assert torch.equal(y, x[:, top:top + h, left:left + w])
        assert top <= 10 - h and left <= 20 - w


@pytest.mark.parametrize("name,dim", [("random_horizontal_flip", 2), ("random_vertical_flip", 1)])
def test_flips(name, dim):
    x = ramp()
    assert torch.equal(pipe((name, 1.0))(x, None)[0], x.flip(dim))
    assert torch.equal(pipe((name, 0.0))(x, None)[0], x)


def test_random_zoom_reference():
    x = ramp(3, 8, 12)
    torch.manual_seed(5)
    y, _ = pipe(("random_zoom", 0.6))(x, None)
    torch.manual_seed(5)
    c = torch.rand(()).item() * 0.6
    mh, mw = math.floor(c * 8 / 2), math.floor(c * 12 / 2)
    ref = F.resized_crop(x, mh, mw, 8 - 2 * mh, 12 - 2 * mw, [8, 12],
                         interpolation=InterpolationMode.BILINEAR, antialias=False)
    assert y.shape == x.shape and torch.allclose(y, ref)


def test_rotate_is_clockwise():
    x = ramp(2, 5, 5)
    y, _ = pipe(("rotate", 90))(x, None)
    assert torch.allclose(y, torch.rot90(x, k=-1, dims=(1, 2)), atol=1e-5)
    # a non-square image keeps its size; uncovered corners are 0
    z, _ = pipe(("rotate", 90))(ramp(1, 4, 8) + 1, None)
    assert z.shape == (1, 4, 8) and z[0, 0, 0] == 0


def test_random_rotate_reference():
    x = ramp(3, 7, 7)
    torch.manual_seed(11)
    y, _ = pipe(("random_rotate", 30))(x, None)
    torch.manual_seed(11)
    angle = torch.empty(()).uniform_(-30, 30).item()
    ref = F.rotate(x, -angle, interpolation=InterpolationMode.BILINEAR)
    assert torch.allclose(y, ref)
    assert torch.equal(pipe(("random_rotate", 0))(x, None)[0], x)


def test_convert_color():
    bgr = torch.zeros(3, 1, 3)
    bgr[:, 0, 0] = torch.tensor([0.0, 0.0, 1.0])   # red
    bgr[:, 0, 1] = torch.tensor([0.0, 1.0, 0.0])   # green
    bgr[:, 0, 2] = torch.tensor([0.25, 0.5, 0.75])
    assert torch.equal(pipe(("convert_color", "BGR2RGB"))(bgr, None)[0], bgr.flip(0))
    g, _ = pipe(("convert_color", "BGR2GRAY"))(bgr, None)
    assert g.shape == (1, 1, 3)
    assert torch.allclose(g[0, 0], 0.114 * bgr[0, 0] + 0.587 * bgr[1, 0] + 0.299 * bgr[2, 0])
    hsv, _ = pipe(("convert_color", "BGR2HSV"))(bgr, None)
    assert torch.allclose(hsv[:, 0, 0], torch.tensor([0.0, 1.0, 1.0]))
    assert torch.allclose(hsv[:, 0, 1], torch.tensor([120.0, 1.0, 1.0]))
    back, _ = pipe(("convert_color", "BGR2HSV"), ("convert_color", "HSV2BGR"))(bgr, None)
    assert torch.allclose(back, bgr, atol=1e-6)
    back, _ = pipe(("convert_color", "BGR2YCrCb"), ("convert_color", "YCrCb2BGR"))(bgr, None)
    assert torch.allclose(back, bgr, atol=2e-3)
    # a 1-channel mask is left alone; a gray image becomes 3 channels
    m = torch.ones(1, 1, 3)
    x, y = pipe(("convert_color", "BGR2RGB"), mask=True)(bgr, m)
    assert torch.equal(y, m)
    assert pipe(("convert_color", "GRAY2BGR"))(m, None)[0].shape == (3, 1, 3)
    with pytest.raises(ConfigError):
        pipe(("convert_color", "BGR2XYZ"))


def test_normalize_scalar_per_channel_and_masks():
    x = ramp(3, 2, 2)
    y, _ = pipe(("normalize", {"mean": [0.1, 0.2, 0.3], "std": [1.0, 2.0, 4.0]}))(x, None)
    ref = F.normalize(x, [0.1, 0.2, 0.3], [1.0, 2.0, 4.0])
    assert torch.allclose(y, ref)
    m = torch.tensor([[[0.0, 1.0], [2.0, 1.0]]]) / 255
    _, ym = pipe(("resize", [4, 4]), ("normalize", {"std": 0.003921568}), mask=True)(x, m)
    assert torch.allclose(ym, ym.round(), atol=1e-4) and set(ym.round().unique().tolist()) == {0, 1, 2}
    # normalize is allowed on 3D samples, geometric transforms are not
    v = torch.ones(1, 2, 3, 4)
    assert torch.allclose(pipe(("normalize", {"mean": 0.5}))(v, v)[1], v - 0.5)
    with pytest.raises(DataError) as e:
        pipe(("resize", [2, 2]))(v, None, "vol.npy")
    assert str(e.value) == (f"config.json: {W}: resize needs 2D samples (C, H, W); 'vol.npy' has "
                            f"shape [1, 2, 3, 4]")


def test_random_patches():
    x = ramp(3, 8, 8) + 0.1
    torch.manual_seed(0)
    inp, tgt = pipe(("random_patches", {"number": 3, "size": 2}))(x, None)
    assert torch.allclose(inp + tgt, x)
    m = (tgt[0] != 0).float()
    assert torch.equal(m, (tgt[1] != 0).float()) and torch.equal(m, (inp[0] == 0).float())
    assert 4 <= m.sum() <= 12
    # any loaded target is replaced, also from input_transforms
    inp2, tgt2 = pipe(inp=[("random_patches", {"number": 1, "size": 8})])(x, torch.zeros(3, 8, 8))
    assert torch.equal(tgt2, x) and inp2.abs().sum() == 0
    with pytest.raises(DataError):
        pipe(("random_patches", {"number": 1, "size": 9}))(x, None)


def test_evaluation_drops_random_transforms():
    p = pipe(("resize", [4, 4]), ("random_horizontal_flip", 1.0), ("jitter_crop", 0.3),
             ("random_patches", {"number": 1, "size": 2}), ("normalize", {"std": 2}), train=False)
    assert [s.name for s in p.specs] == ["resize", "normalize"] and not p.makes_targets
    x = ramp(1, 8, 8)
    assert torch.allclose(p(x, None)[0], F.resize(x, [4, 4], antialias=False) / 2)


def test_input_and_target_lists_are_separate():
    x = ramp(1, 4, 6)
    y = ramp(1, 4, 6)
    a, b = pipe(inp=[("random_horizontal_flip", 1.0)], tgt=[("normalize", {"std": 0.5})])(x, y)
    assert torch.equal(a, x.flip(2)) and torch.allclose(b, y * 2)


@pytest.mark.parametrize("name,value", [("resize", [0, 3]), ("resize", 28), ("jitter_crop", 1.0),
                                        ("random_horizontal_flip", 2), ("rotate", "x"),
                                        ("normalize", {"std": 0}), ("random_patches", {"n": 1})])
def test_bad_values_are_config_errors(name, value):
    with pytest.raises(ConfigError) as e:
        pipe((name, value))
    assert str(e.value).startswith(f"config.json: {W}: {name} ")


_RANDOM = st.sampled_from([
    ("random_horizontal_flip", 0.5), ("random_vertical_flip", 0.5), ("jitter_crop", 0.4),
    ("random_zoom", 0.5), ("random_rotate", 45), ("resize", [7, 5]), ("center_crop", [4, 4]),
    ("rotate", 30)])
_EXACT = st.sampled_from([  # no interpolation: a nearest-neighbour mask equals the image exactly
    ("random_horizontal_flip", 0.5), ("random_vertical_flip", 0.5), ("jitter_crop", 0.4),
    ("center_crop", [4, 4]), ("rotate", 180)])


@settings(max_examples=40, deadline=None)
@given(specs=st.lists(_RANDOM, min_size=1, max_size=4), seed=st.integers(0, 2 ** 16))
def test_property_same_draw_for_input_and_target(specs, seed):
    x = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    a, b = pipe(*specs)(x, x[:1].clone())
    assert torch.equal(a[:1], b)


@settings(max_examples=40, deadline=None)
@given(specs=st.lists(_EXACT, min_size=1, max_size=4), seed=st.integers(0, 2 ** 16))
def test_property_mask_gets_identical_geometry(specs, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.randint(0, 4, (1, 9, 11), generator=g).float()
    torch.manual_seed(seed)
    a, b = pipe(*specs, mask=True)(m.expand(3, 9, 11).clone(), m)
    assert torch.equal(a[:1], b)
