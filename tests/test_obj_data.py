"""``--app=obj`` data: YOLO label files (errors naming file and line), class names, and the
splits' batches (images + padded box targets)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rmldnn_py.config.types import Config, DataConfig, LossConfig, TransformSpec
from rmldnn_py.errors import ConfigError, DataError
from rmldnn_py.obj.labels import LabelSource, parse_label_text, read_class_names

WHERE = "cfg.json: neural_network.data.target_path"


@pytest.mark.parametrize("text,msg", [
    ("0 0.5 0.5 0.2\n", r"'a\.txt' line 1: expected 5 fields \(class cx cy w h\), received 4"),
    ("0 0.5 0.5 0.2 0.2\n\n1 0.1 0.2 0.3 0.4 0.9\n",
     r"'a\.txt' line 3: expected 5 fields \(class cx cy w h\), received 6"),
    ("0 0.5 1.2 0.2 0.2\n", r"line 1: coordinate cy = 1\.2 outside \[0, 1\]"),
    ("0 -0.1 0.5 0.2 0.2\n", r"line 1: coordinate cx = -0\.1 outside \[0, 1\]"),
    ("0 0.5 0.5 0 0.2\n", r"line 1: box width and height must be > 0"),
    ("1.5 0.5 0.5 0.2 0.2\n", r"line 1: class must be a non-negative integer, received '1\.5'"),
    ("-1 0.5 0.5 0.2 0.2\n", r"line 1: class must be a non-negative integer"),
    ("0 0.5 x 0.2 0.2\n", r"line 1: expected numbers"),
])
def test_bad_label_lines(text, msg):
    with pytest.raises(DataError, match=rf"^{WHERE}: .*{msg}"):
        parse_label_text(text, "a.txt", WHERE)


def test_label_text_values_and_blank_lines():
    boxes, lines = parse_label_text("\n2 0.5 0.25 0.1 0.2\n  \n0 1 0 1 1\n", "a.txt", WHERE)
    assert boxes.tolist() == [pytest.approx([2, 0.5, 0.25, 0.1, 0.2]), [0, 1, 0, 1, 1]]
    assert lines.tolist() == [2, 4]
    assert parse_label_text("", "a.txt", WHERE)[0].shape == (0, 5)


def test_label_source(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n")
    (tmp_path / "sub/b.txt").write_text("2 0.5 0.5 0.2 0.2\n")
    src = LabelSource(str(tmp_path), WHERE, ["a.jpg", "sub/b.png", "c.jpg"])
    assert (src.num_files, src.num_objects, src.max_objects) == (2, 3, 2)
    assert src.load(0).shape == (2, 5) and src.load(2).shape == (0, 5)   # c: no file, no objects
    assert src.file(2) is None and src.file(1).endswith("sub/b.txt")
    src.check_classes(3, "neural_network.loss.num_classes = 3")
    with pytest.raises(DataError, match=r"'.*sub/b\.txt' line 1: class 2 outside \[0, 1\] "
                                        r"\(neural_network\.loss\.num_classes = 2\)"):
        src.check_classes(2, "neural_network.loss.num_classes = 2")


def test_label_source_errors(tmp_path):
    with pytest.raises(DataError, match=r"directory '.*nope' does not exist"):
        LabelSource(str(tmp_path / "nope"), WHERE, ["a.jpg"])
    with pytest.raises(DataError, match=r"no label file in '.*' for any of the 1 images "
                                        r"\(expected <image stem>\.txt, e\.g\. 'a\.txt'\)"):
        LabelSource(str(tmp_path), WHERE, ["a.jpg"])


def test_class_names(tmp_path):
    p = tmp_path / "names.txt"
    p.write_text("cat\ndog\n\n")
    assert read_class_names(str(p), "w") == ["cat", "dog"]
    p.write_text("cat\n\ndog\n")
    with pytest.raises(ConfigError, match=r"line 2: blank class name"):
        read_class_names(str(p), "w")
    with pytest.raises(ConfigError, match=r"cannot read class-name file"):
        read_class_names(str(tmp_path / "none.txt"), "w")


# ------------------------------------------------------------------------------------------
# splits and batches


class _Ctx:
    """The parts of the engine's Context that build_obj_data reads."""

    def __init__(self, cfg):
        from rmldnn_py.log import Logger

        self.cfg, self.rank, self.world = cfg, 0, 1
        self.device = torch.device("cpu")
        self.lines = []
        log = Logger(enabled=True)
        log.line = self.lines.append
        self.data_log = log


def _images(tmp_path: Path, sizes, labels):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for k, ((h, w), lab) in enumerate(zip(sizes, labels)):
        Image.fromarray(np.full((h, w, 3), 40 * k, np.uint8)).save(tmp_path / f"img/{k}.png")
        if lab is not None:
            (tmp_path / f"lab/{k}.txt").write_text(lab)


def _cfg(tmp_path, **data):
    d = DataConfig(type="images", input_path=str(tmp_path / "img"),
                   target_path=str(tmp_path / "lab"), batch_size=2, preload=True,
                   transforms=(TransformSpec("resize", [32, 48],
                                             "neural_network.data.transforms[0]"),))
    return Config(path="cfg.json", layers=[], data=replace(d, **data),
                  loss=LossConfig("YOLOv3", {"num_classes": 3}))


def test_batches_carry_padded_box_targets(tmp_path):
    from rmldnn_py.obj.data import build_obj_data

    _images(tmp_path, [(40, 60), (30, 30), (50, 20)],
            ["0 0.5 0.5 0.5 0.5\n2 0.2 0.3 0.1 0.2\n1 0.9 0.9 0.1 0.1\n", None, "1 0.5 0.5 1 1\n"])
    ctx = _Ctx(_cfg(tmp_path))
    bundle = build_obj_data(ctx)
    split = bundle.train
    assert bundle.test is None and split.target_kind == "boxes" and split.has_targets
    assert "Number of objects: 4 in 2 label files (1 images without a label file)" in ctx.lines
    xs, ys = [], []
    for x, y, idx in split.batches(1):
        assert x.shape[1:] == (3, 32, 48) and y.shape[1:] == (3, 5)
        xs.append(idx)
        ys.append(y)
    y = torch.cat(ys)[torch.argsort(torch.cat(xs))]
    assert y[0, :, 0].tolist() == [0, 2, 1] and y[1, :, 0].tolist() == [-1, -1, -1]
    assert y[2, 0].tolist() == pytest.approx([1, 0.5, 0.5, 1, 1]) and y[2, 1, 0] == -1
    # resize keeps normalised coordinates (no letterbox)
    assert y[0, 1, 1:].tolist() == pytest.approx([0.2, 0.3, 0.1, 0.2], abs=1e-6)
    assert split.original_size(0) == (40, 60) and split.original_size(2) == (50, 20)
    gt = split.objects_pixels(0)
    assert gt[1].tolist() == pytest.approx([0.15 * 60, 0.2 * 40, 0.25 * 60, 0.4 * 40, 2])
    assert dict(split.dataset_rows())["Num objects (total)"] == "4"


def test_class_check_and_data_errors(tmp_path):
    from rmldnn_py.obj.data import build_obj_data

    _images(tmp_path, [(40, 60)], ["0 0.5 0.5 0.5 0.5\n5 0.2 0.3 0.1 0.2\n"])
    with pytest.raises(DataError, match=r"target_path: '.*0\.txt' line 2: class 5 outside "
                                        r"\[0, 2\] \(neural_network\.loss\.num_classes = 3\)"):
        build_obj_data(_Ctx(_cfg(tmp_path)))
    with pytest.raises(ConfigError, match=r"--app=obj reads images"):
        build_obj_data(_Ctx(_cfg(tmp_path, type="numpy")))
