"""Helpers of the ``--app=obj`` tests and benchmarks: a generated detection data set and the
Keras 3 networks (small YOLOv3-style, full YOLOv3 of SPEC §8.4).

Imported as ``obj_helpers`` (``tests/`` is on ``sys.path`` under pytest; the benchmark adds it).
Nothing here is committed data: images are drawn on demand.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

os.environ.setdefault("KERAS_BACKEND", "torch")

SHAPE_CLASSES = ("rectangle", "ellipse", "triangle")
#: anchors for 8–40 px objects on the 128×128 shapes set (stride 8 head: the first three)
SHAPES_ANCHORS = [[10, 10], [16, 14], [14, 18], [22, 22], [28, 30], [36, 36]]


# ------------------------------------------------------------------------------------------
# the generated set: coloured shapes on textured noise


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textured noise: low-frequency colour blotches + pixel noise, float RGB in [0, 1]."""
    coarse = rng.uniform(0.2, 0.8, size=(max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    low = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize(
        (w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    gray = low.mean(axis=2, keepdims=True)
    low = 0.6 * gray + 0.4 * low                       # desaturated blotches
    return np.clip(low + rng.normal(0, 0.08, size=(h, w, 3)), 0, 1)


#: hue range of each class: rectangles red-orange, ellipses green, triangles blue
CLASS_HUES = ((-0.06, 0.08), (0.25, 0.42), (0.55, 0.70))


def _colour(rng: np.random.Generator, cls: int) -> tuple[int, int, int]:
    lo, hi = CLASS_HUES[cls]
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(lo, hi) % 1.0, rng.uniform(0.7, 1.0),
                                  rng.uniform(0.75, 1.0))
    return int(255 * r), int(255 * g), int(255 * b)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def draw_shapes_image(rng: np.random.Generator, h: int = 128, w: int = 128,
                      min_objects: int = 1, max_objects: int = 4, min_size: int = 8,
                      max_size: int = 40) -> tuple[np.ndarray, list[tuple]]:
    """One image ``(h, w, 3)`` uint8 RGB and its objects ``(class, x1, y1, x2, y2)`` in pixels
    (the tight box of the drawn pixels, x2/y2 exclusive). Classes: 0 rectangle (red-orange),
    1 ellipse (green), 2 triangle (blue), saturated colours on desaturated textured noise;
    sizes ``min_size..max_size``; objects do not overlap."""
    bg = _background(rng, h, w)
    canvas = Image.fromarray((bg * 255).astype(np.uint8))
    objects = []
    boxes: list[tuple] = []
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        for _attempt in range(50):
            s = rng.uniform(min_size, max_size)
            r = rng.uniform(0.75, 1.33)
            bw = int(np.clip(round(s * np.sqrt(r)), min_size, max_size))
            bh = int(np.clip(round(s / np.sqrt(r)), min_size, max_size))
            x0 = int(rng.integers(0, w - bw + 1))
            y0 = int(rng.integers(0, h - bh + 1))
            box = (x0, y0, x0 + bw, y0 + bh)
            if all(_iou(box, b) == 0.0 for b in boxes):
                break
        else:
            continue
        cls = int(rng.integers(0, 3))
        mask = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(mask)
        x1, y1 = x0 + bw - 1, y0 + bh - 1
        if cls == 0:
            d.rectangle([x0, y0, x1, y1], fill=255)
        elif cls == 1:
            d.ellipse([x0, y0, x1, y1], fill=255)
        else:
            d.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=255)
        canvas.paste(Image.new("RGB", (w, h), _colour(rng, cls)), (0, 0), mask)
        m = np.asarray(mask) > 0
        ys, xs = np.nonzero(m)
        tight = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        boxes.append(box)
        objects.append((cls,) + tight)
    return np.asarray(canvas), objects


def write_yolo_labels(path: Path, objects, h: int, w: int) -> None:
    """``class cx cy w h`` lines normalised by the image size."""
    lines = []
    for cls, x1, y1, x2, y2 in objects:
        lines.append(f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                     f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


def make_shapes_dataset(root: Path, n: int, seed: int, size: int | tuple[int, int] = 128,
                        sizes: Optional[Sequence[tuple[int, int]]] = None,
                        **kw) -> list[tuple[str, int, int, list]]:
    """``root/images/img_<k>.png`` + ``root/labels/img_<k>.txt`` for ``n`` generated images.

    Args:
        size: ``(h, w)`` (or one int) of every image; ``sizes`` cycles through several.

    Returns:
        ``(file name, h, w, objects)`` per image (objects in pixels, see
        :func:`draw_shapes_image`).
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        if sizes:
            h, w = sizes[k % len(sizes)]
        else:
            h, w = (size, size) if isinstance(size, int) else size
        img, objs = draw_shapes_image(rng, h, w, **kw)
        name = f"img_{k:04d}.png"
        Image.fromarray(img).save(root / "images" / name)
        write_yolo_labels(root / "labels" / f"img_{k:04d}.txt", objs, h, w)
        out.append((name, h, w, objs))
    return out


# ------------------------------------------------------------------------------------------
# Keras 3 networks


def _conv_bn_leaky(x, filters: int, k: int, stride: int = 1, name: str = ""):
    from keras import layers

    if stride == 2:   # Darknet downsampling: pad top/left, valid 3x3/2 (as keras-yolo3)
        x = layers.ZeroPadding2D(((1, 0), (1, 0)), name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, k, strides=stride, padding="valid" if stride == 2 else "same",
                      use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=0.1, name=f"{name}_leaky")(x)


def _residual(x, filters: int, name: str):
    from keras import layers

    y = _conv_bn_leaky(x, filters // 2, 1, name=f"{name}_a")
    y = _conv_bn_leaky(y, filters, 3, name=f"{name}_b")
    return layers.Add(name=f"{name}_add")([x, y])


def small_yolo_model(input_hw=(128, 128), num_classes: int = 3, width: int = 16):
    """A small YOLOv3-style Keras model: Darknet-like body to stride 16, two heads (stride 16
    and, after upsampling + concatenation with the stride-8 features, stride 8), each a linear
    1x1 convolution of 3·(5 + C) channels reshaped to ``[-1, 3·(5 + C)]``, concatenated on
    axis 1 (SPEC §8.4 layout, two scales)."""
    import keras
    from keras import layers

    F = 3 * (5 + num_classes)
    w = width
    inp = keras.Input((input_hw[0], input_hw[1], 3), name="image")
    x = _conv_bn_leaky(inp, w, 3, 2, name="c1")            # /2
    x = _conv_bn_leaky(x, 2 * w, 3, 2, name="c2")          # /4
    x = _residual(x, 2 * w, "r2")
    x = _conv_bn_leaky(x, 4 * w, 3, 2, name="c3")          # /8
    route8 = _residual(x, 4 * w, "r3")
    x = _conv_bn_leaky(route8, 8 * w, 3, 2, name="c4")     # /16
    x = _residual(x, 8 * w, "r4")
    a = _conv_bn_leaky(x, 4 * w, 1, name="h16_a")
    b = _conv_bn_leaky(a, 8 * w, 3, name="h16_b")
    out16 = layers.Conv2D(F, 1, name="head16")(b)
    r16 = layers.Reshape((-1, F), name="reshape16")(out16)
    u = _conv_bn_leaky(a, 2 * w, 1, name="up_a")
    u = layers.UpSampling2D(2, name="up")(u)
    u = layers.Concatenate(name="route")([u, route8])
    u = _conv_bn_leaky(u, 2 * w, 1, name="h8_a")
    u = _conv_bn_leaky(u, 4 * w, 3, name="h8_b")
    out8 = layers.Conv2D(F, 1, name="head8")(u)
    r8 = layers.Reshape((-1, F), name="reshape8")(out8)
    out = layers.Concatenate(axis=1, name="detections")([r16, r8])
    return keras.Model(inp, out, name="yolo_small_shapes")


def _darknet_block(x, filters: int, blocks: int, name: str):
    x = _conv_bn_leaky(x, filters, 3, 2, name=f"{name}_down")
    for i in range(blocks):
        x = _residual(x, filters, f"{name}_{i}")
    return x


def _yolo_tail(x, filters: int, F: int, name: str):
    from keras import layers

    for i, (f, k) in enumerate([(filters, 1), (2 * filters, 3), (filters, 1), (2 * filters, 3),
                                (filters, 1)]):
        x = _conv_bn_leaky(x, f, k, name=f"{name}_{i}")
    y = _conv_bn_leaky(x, 2 * filters, 3, name=f"{name}_5")
    y = layers.Conv2D(F, 1, name=f"{name}_out")(y)
    return x, y


def yolov3_model(input_hw=(416, 416), num_classes: int = 80):
    """The full YOLOv3 of SPEC §8.4 (Redmon & Farhadi 2018 / keras-yolo3): Darknet-53 body
    (BatchNormalization, LeakyReLU(0.1)), heads at strides 32, 16, 8 with 3·(5 + C) channels,
    each ``Reshape([-1, 3·(5 + C)])``, concatenated on axis 1 → ``(N, 3549, 255)`` at 416²
    (13² + 26² + 52² cells, 3 boxes each: 10647 boxes)."""
    import keras
    from keras import layers

    F = 3 * (5 + num_classes)
    inp = keras.Input((input_hw[0], input_hw[1], 3), name="input_1")
    x = _conv_bn_leaky(inp, 32, 3, name="d0")
    x = _darknet_block(x, 64, 1, "d1")
    x = _darknet_block(x, 128, 2, "d2")
    x = _darknet_block(x, 256, 8, "d3")
    route8 = x
    x = _darknet_block(x, 512, 8, "d4")
    route16 = x
    x = _darknet_block(x, 1024, 4, "d5")
    x, y32 = _yolo_tail(x, 512, F, "t32")
    x = _conv_bn_leaky(x, 256, 1, name="u32")
    x = layers.UpSampling2D(2, name="up32")(x)
    x = layers.Concatenate(name="cat16")([x, route16])
    x, y16 = _yolo_tail(x, 256, F, "t16")
    x = _conv_bn_leaky(x, 128, 1, name="u16")
    x = layers.UpSampling2D(2, name="up16")(x)
    x = layers.Concatenate(name="cat8")([x, route8])
    _, y8 = _yolo_tail(x, 128, F, "t8")
    outs = [layers.Reshape((-1, F), name=f"reshape_{s}")(y) for s, y in
            ((32, y32), (16, y16), (8, y8))]
    out = layers.Concatenate(axis=1, name="concatenate_out")(outs)
    return keras.Model(inp, out, name="yolov3")


# ------------------------------------------------------------------------------------------
# independent mAP: pycocotools on the written prediction file and the label files


def pycocotools_map(items, max_dets: int = 100) -> dict:
    """COCO mAP with pycocotools itself (the reference).

    Args:
        items: per image ``(det, gt, (h, w))``: ``det`` ``(K, 6)`` x1, y1, x2, y2, score, class;
            ``gt`` ``(G, 5)`` x1, y1, x2, y2, class (pixels).

    Returns:
        ``{"map": stats[0], "map50": stats[1]}`` of ``COCOeval.summarize``.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    classes = set()
    for img_id, (det, gt, (h, w)) in enumerate(items, 1):
        images.append({"id": img_id, "width": int(w), "height": int(h)})
        for x1, y1, x2, y2, c in np.asarray(gt, dtype=np.float64).reshape(-1, 5):
            classes.add(int(c))
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(c) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": 0})
        for x1, y1, x2, y2, s, c in np.asarray(det, dtype=np.float64).reshape(-1, 6):
            classes.add(int(round(c)))
            dets.append({"image_id": img_id, "category_id": int(round(c)) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    gt_coco = COCO()
    gt_coco.dataset = {"images": images, "annotations": anns,
                       "categories": [{"id": c + 1} for c in sorted(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt_coco.createIndex()
        dt = gt_coco.loadRes(dets) if dets else COCO()
        if not dets:
            dt.dataset = {"images": images, "annotations": [],
                          "categories": gt_coco.dataset["categories"]}
            dt.createIndex()
        ev = COCOeval(gt_coco, dt, "bbox")
        ev.params.maxDets = [1, 10, max(100, max_dets)]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": float(ev.stats[0]), "map50": float(ev.stats[1])}


def read_predictions(h5_path) -> dict:
    """``{dataset name: (K, 6) array}`` of an ``output_<epoch>.h5``."""
    import h5py

    out = {}
    with h5py.File(h5_path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()])
                     if isinstance(o, h5py.Dataset) else None)
    return out


def label_objects_pixels(label_file: Path, h: int, w: int) -> np.ndarray:
    """Objects of a YOLO label file in pixels: ``(G, 5)`` x1, y1, x2, y2, class."""
    rows = []
    if label_file.exists():
        for line in label_file.read_text().splitlines():
            if line.split():
                c, cx, cy, bw, bh = (float(v) for v in line.split())
                rows.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w,
                             (cy + bh / 2) * h, c])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def map_from_files(h5_path, images_dir: Path, labels_dir: Path) -> dict:
    """pycocotools mAP of a written prediction file against the label files (image sizes read
    from the image files with Pillow). Every image must have exactly one dataset."""
    preds = read_predictions(h5_path)
    names = sorted(p.name for p in Path(images_dir).iterdir() if p.suffix.lower() == ".png")
    assert sorted(preds) == names, (sorted(preds)[:5], names[:5])
    items = []
    for name in names:
        with Image.open(Path(images_dir) / name) as im:
            w, h = im.size
        gt = label_objects_pixels(Path(labels_dir) / (Path(name).stem + ".txt"), h, w)
        items.append((preds[name], gt, (h, w)))
    res = pycocotools_map(items)
    res["images"] = len(items)
    res["objects"] = int(sum(it[1].shape[0] for it in items))
    res["detections"] = int(sum(np.asarray(it[0]).shape[0] for it in items))
    return res
