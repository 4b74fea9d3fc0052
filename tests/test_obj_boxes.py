"""Box-aware transforms of ``--app=obj`` on non-square images: boxes against torchvision's
functional box ops with the same parameters, images identical to the dnn pipeline's, boxes
against the drawn pixels, clipping/dropping, and the way back to original pixels."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from rmldnn_py.config.types import TransformSpec
from rmldnn_py.data import transforms as T
from rmldnn_py.errors import ConfigError
from rmldnn_py.obj.boxes import BoxPipeline, normalized_to_xyxy, xyxy_to_normalized

H, W = 60, 90                                    # non-square original
BOXES = torch.tensor([[20.0, 12.0, 50.0, 40.0], [60.0, 30.0, 84.0, 52.0]])   # x1 y1 x2 y2 px
CLASSES = torch.tensor([1.0, 0.0])


def spec(name, value, i=0):
    return TransformSpec(name, value, f"neural_network.data.transforms[{i}]")


def pipe(specs, train=True, letterbox=False, rows=4, **kw):
    return BoxPipeline(specs, kw.get("input_only", []), kw.get("target_only", []), train=train,
                       letterbox=letterbox, max_objects=rows, config_path="cfg.json")


def image_with_rectangles():
    """Black 3x60x90 image, white where the boxes are (pixel-exact)."""
    x = torch.zeros((3, H, W))
    for x1, y1, x2, y2 in BOXES.int().tolist():
        x[:, y1:y2, x1:x2] = 1.0
    return x


def target():
    return torch.cat([CLASSES[:, None], xyxy_to_normalized(BOXES, (H, W))], dim=1)


def reference(boxes_fn, out_hw, min_size=1.0):
    """torchvision's functional op on BoundingBoxes, then clip, drop, normalise."""
    bb = tv_tensors.BoundingBoxes(BOXES.clone(), format="XYXY", canvas_size=(H, W),
                                  clamping_mode=None)
    b = boxes_fn(bb).as_subclass(torch.Tensor)
    h, w = out_hw
    b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w),
                     b[:, 3].clamp(0, h)], 1)
    keep = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    return torch.cat([CLASSES[keep, None], xyxy_to_normalized(b[keep], (h, w))], 1)


def _params(cls, *args):
    """The random parameters the registry transform draws (same seed as the pipeline run)."""
    img = tv_tensors.Image(torch.zeros((3, H, W)))
    return cls(*args).make_params([img])


CASES = {
    "resize": ([("resize", [40, 50])], lambda b: F.resize(b, [40, 50])),
    "center_crop": ([("center_crop", [40, 50])],
                    lambda b: F.crop(b, top=10, left=20, height=40, width=50)),
    "hflip": ([("random_horizontal_flip", 1.0)], F.horizontal_flip),
    "vflip": ([("random_vertical_flip", 1.0)], F.vertical_flip),
    "rotate": ([("rotate", 30)], lambda b: F.rotate(b, angle=-30)),       # clockwise
    "jitter_crop": ([("jitter_crop", 0.5)],
                    lambda b: F.crop(b, **_params(T.JitterCrop, 0.5))),
    "random_zoom": ([("random_zoom", 0.4)],
                    lambda b: F.resized_crop(b, **_params(T.RandomZoom, 0.4))),
    "random_rotate": ([("random_rotate", 25)],
                      lambda b: F.rotate(b, angle=-_params(T.RandomRotate, 25)["angle"])),
    "resize+crop+flip": ([("resize", [80, 120]), ("center_crop", [64, 96]),
                          ("random_horizontal_flip", 1.0)],
                         lambda b: F.horizontal_flip(F.crop(F.resize(b, [80, 120]), top=8,
                                                            left=12, height=64, width=96))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_boxes_match_torchvision_and_images_match_the_dnn_pipeline(case):
    steps, ref_fn = CASES[case]
    specs = [spec(n, v, i) for i, (n, v) in enumerate(steps)]
    x = image_with_rectangles()
    torch.manual_seed(3)
    x2, objs = pipe(specs).transform(x, target())
    torch.manual_seed(3)
    ref = reference(ref_fn, tuple(x2.shape[-2:]))
    assert objs.shape == ref.shape and torch.allclose(objs, ref, atol=1e-5), (objs, ref)
    # the image is exactly what the dnn application's pipeline makes of it (same draw)
    torch.manual_seed(3)
    dnn_x, _ = T.Pipeline(specs, [], [], train=True, target_is_mask=False,
                          config_path="cfg.json")(x, None)
    assert torch.equal(x2, dnn_x)


@pytest.mark.parametrize("case", ["resize", "center_crop", "hflip", "vflip", "jitter_crop",
                                  "random_zoom", "resize+crop+flip", "rotate"])
def test_boxes_follow_the_drawn_pixels(case):
    """Independent of torchvision's box kernels: the box of the first rectangle's pixels after
    the transform matches the transformed box (±1.5 px; rotation: the enclosing box ±2 px)."""
    steps, _ = CASES[case]
    specs = [spec(n, v, i) for i, (n, v) in enumerate(steps)]
    x = torch.zeros((3, H, W))
    x1, y1, x2_, y2 = BOXES[0].int().tolist()
    x[:, y1:y2, x1:x2_] = 1.0
    torch.manual_seed(5)
    out, objs = pipe(specs).transform(x, target()[:1])
    h, w = out.shape[-2:]
    ys, xs = torch.nonzero(out[0] > 0.5, as_tuple=True)
    pix = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    box = normalized_to_xyxy(objs[:, 1:], (h, w))[0]
    tol = 2.0 if case == "rotate" else 1.5
    assert torch.allclose(box, pix, atol=tol), (box, pix)


def test_letterbox_keeps_the_aspect_ratio():
    # 60x90 into 64x64: s = min(64/60, 64/90) = 0.7111 → 43x64, top = (64-43)//2 = 10, left 0
    p = pipe([spec("resize", [64, 64])], letterbox=True)
    x, objs = p.transform(image_with_rectangles(), target())
    assert x.shape == (3, 64, 64)
    assert torch.all(x[:, :10] == 0.5) and torch.all(x[:, 53:] == 0.5)   # grey borders
    ref = reference(lambda b: F.pad(F.resize(b, [43, 64]), [0, 10, 0, 11]), (64, 64))
    assert torch.allclose(objs, ref, atol=1e-5)
    box = normalized_to_xyxy(objs[:1, 1:], (64, 64))[0]
    assert box.tolist() == pytest.approx([20 * 64 / 90, 10 + 12 * 43 / 60, 50 * 64 / 90,
                                          10 + 40 * 43 / 60], abs=1e-4)


def test_boxes_leaving_the_image_are_clipped_or_dropped_and_targets_padded():
    boxes = torch.tensor([[20.0, 12.0, 50.0, 40.0],     # partly outside the crop: clipped
                          [0.0, 0.0, 10.0, 10.0],       # entirely outside: dropped
                          [60.0, 40.0, 70.0, 50.0]])    # partly outside: clipped
    y = torch.cat([torch.tensor([[0.0], [1.0], [2.0]]), xyxy_to_normalized(boxes, (H, W))], 1)
    # center_crop [30, 40]: rows 15..45, columns 25..65
    x, t = pipe([spec("center_crop", [30, 40])], rows=5)(torch.rand(3, H, W), y)
    assert t.shape == (5, 5) and t[2:, 0].tolist() == [-1, -1, -1]
    px = normalized_to_xyxy(t[:2, 1:], (30, 40))
    assert t[:2, 0].tolist() == [0, 2]
    assert px.tolist() == [pytest.approx([0, 0, 25, 25]), pytest.approx([35, 25, 40, 30])]


def test_evaluation_pipeline_drops_random_transforms():
    specs = [spec("resize", [40, 50], 0), spec("random_horizontal_flip", 1.0, 1)]
    p = pipe(specs, train=False)
    assert [s.name for s in p.steps] == ["resize"] and p.deterministic
    assert not pipe(specs).deterministic


def test_photometric_transforms_leave_boxes_alone():
    specs = [spec("normalize", {"mean": 0.5, "std": 0.25}, 0), spec("convert_color", "BGR2RGB", 1)]
    x = torch.rand(3, H, W)
    x2, objs = pipe(specs).transform(x, target())
    assert torch.allclose(objs, target()) and torch.allclose(x2, ((x - 0.5) / 0.25).flip(0))


@pytest.mark.parametrize("steps,letterbox,box,expected", [
    # resize 60x90 → 64x64: x·90/64, y·60/64
    ([("resize", [64, 64])], False, [10, 20, 30, 40], [10 * 90 / 64, 20 * 60 / 64, 30 * 90 / 64,
                                                        40 * 60 / 64]),
    # letterbox: 43x64 at top 10: x·90/64, (y − 10)·60/43
    ([("resize", [64, 64])], True, [10, 20, 30, 40], [10 * 90 / 64, 10 * 60 / 43, 30 * 90 / 64,
                                                       30 * 60 / 43]),
    # center_crop [40, 50] at top 10, left 20: shifted back
    ([("center_crop", [40, 50])], False, [1, 2, 30, 35], [21, 12, 50, 45]),
    # clipped to the original image at the end
    ([("resize", [64, 64])], True, [-5, 0, 70, 64], [0, 0, 90, 60]),
])
def test_to_original_by_hand(steps, letterbox, box, expected):
    specs = [spec(n, v, i) for i, (n, v) in enumerate(steps)]
    p = pipe(specs, train=False, letterbox=letterbox)
    out = p.to_original(torch.tensor([box], dtype=torch.float32), (H, W))
    assert out[0].tolist() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("steps,letterbox", [
    ([("resize", [80, 120]), ("center_crop", [64, 96])], False),
    ([("resize", [64, 64])], True),
    ([("rotate", 90), ("resize", [50, 70])], False),
])
def test_to_original_inverts_the_forward_boxes(steps, letterbox):
    specs = [spec(n, v, i) for i, (n, v) in enumerate(steps)]
    p = pipe(specs, train=False, letterbox=letterbox)
    inner = torch.tensor([[40.0, 22.0, 52.0, 38.0]])      # stays inside after every chain
    y = torch.cat([torch.zeros(1, 1), xyxy_to_normalized(inner, (H, W))], 1)
    x, objs = p.transform(torch.rand(3, H, W), y)
    net_box = normalized_to_xyxy(objs[:, 1:], tuple(x.shape[-2:]))
    back = p.to_original(net_box, (H, W))
    assert torch.allclose(back, inner, atol=1e-3), (back, inner)


@pytest.mark.parametrize("kw,msg", [
    ({"specs": [spec("random_patches", {"number": 2, "size": 4})]},
     r"transforms\[0\]: random_patches cannot be used with --app=obj"),
    ({"specs": [], "input_only": [spec("random_horizontal_flip", 0.5)]},
     r"random_horizontal_flip in input_transforms would move the image but not its boxes"),
    ({"specs": [], "target_only": [spec("resize", [8, 8])]},
     r"target_transforms do not apply to object boxes"),
    ({"specs": [spec("center_crop", [8, 8])], "letterbox": True},
     r"neural_network\.data\.letterbox: needs a 'resize' transform"),
    ({"specs": [spec("resize", [8])]}, r"resize expects \[height, width\]"),
])
def test_configuration_errors(kw, msg):
    specs = kw.pop("specs")
    with pytest.raises(ConfigError, match=msg):
        pipe(specs, **kw)
