"""The images loader, labels and build_datasets messages/errors (SPEC §5.2, §5.3)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from rmldnn_py.config.types import DataConfig, TransformSpec
from rmldnn_py.data import build_datasets
from rmldnn_py.data.images import ImageSource, decode
from rmldnn_py.errors import ConfigError, DataError
from rmldnn_py.log import Logger


def save(path, arr, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(path)


def build(cfg, **kw):
    out = io.StringIO()
    bundle = build_datasets(cfg, config_path="config.json", logger=Logger(stream=out), **kw)
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    return bundle, lines


@pytest.fixture
def classes_tree(tmp_path, monkeypatch):
    """training/{0,1,10,2}/img_k.png (2 each), testing/{1,2}/ (1 each); cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for split, n, classes in (("training", 2, ("2", "10", "1", "0")), ("testing", 1, ("1", "2"))):
        for c in classes:
            for k in range(n):
                save(f"data/{split}/{c}/img_{k}.png", rng.integers(0, 255, (6, 5), dtype=np.uint8))
    return tmp_path


def test_discovery_sorted_recursive_case_insensitive(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    for rel in ("b/z.PNG", "a/y.jpg", "a/x.JPEG", "c.bmp", "a/sub/w.tif", "notes.txt", "b/q.gif"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt"):
            p.write_text("x")
        else:
            fmt = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "tif": "TIFF",
                   "gif": "GIF"}[rel.rsplit(".", 1)[1].lower()]
            Image.fromarray(img).save(p, format=fmt)
    src = ImageSource(str(tmp_path), "w")
    assert [src.name(i) for i in range(len(src))] == [
        "a/sub/w.tif", "a/x.JPEG", "a/y.jpg", "b/z.PNG", "c.bmp"]


def test_class_mapping_plain_string_order(classes_tree):
    cfg = DataConfig(input_type="images", target_type="labels", input_path="./data/training/",
                     test_input_path="./data/testing", batch_size=100)
    bundle, lines = build(cfg)
    assert bundle.class_names == ["0", "1", "10", "2"]
    batch = next(bundle.train.batches(0))
    names = [bundle.train.sample_name(int(i)) for i in batch.indices]
    for name, label in zip(names, batch.targets.tolist()):
        assert bundle.class_names[label] == name.split("/")[0]
    tb = next(bundle.test.batches(0))
    assert tb.targets.tolist() == [1, 3]            # training mapping: '1' → 1, '2' → 3
    assert bundle.test.sample_name(1) == "2/img_0.png"
    assert lines == ["Discovering training input images...", "Discovering training labels...",
                     "Number of class labels: 4", "Discovering test input images...",
                     "Discovering test labels...", "Number of class labels: 4"]


def test_eval_only_classes_from_test_folders(classes_tree):
    cfg = DataConfig(input_type="images", target_type="labels", test_input_path="./data/testing")
    bundle, lines = build(cfg)
    assert bundle.train is None and bundle.class_names == ["1", "2"]
    assert next(bundle.test.batches(0)).targets.tolist() == [0, 1]


def test_unknown_test_class_is_error(classes_tree):
    save("data/testing/7/img_0.png", np.zeros((6, 5), np.uint8))
    cfg = DataConfig(input_type="images", target_type="labels", input_path="./data/training/",
                     test_input_path="./data/testing")
    with pytest.raises(DataError) as e:
        build(cfg)
    assert str(e.value) == (
        "config.json: neural_network.data.test_input_path: class '7' of "
        "'./data/testing/7/img_0.png' does not occur in the training data "
        "(training classes: 0, 1, 10, 2)")


def test_training_tag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save("d/training/a/x/1.png", np.zeros((3, 3), np.uint8))
    save("d/training/b/2.png", np.zeros((3, 3), np.uint8))
    cfg = DataConfig(input_type="images", target_type="labels", input_path="./d/training/",
                     training_tag="training")
    bundle, _ = build(cfg)
    assert bundle.class_names == ["a", "b"]
    cfg = DataConfig(input_type="images", target_type="labels", input_path="./d/training/",
                     training_tag="train")
    with pytest.raises(DataError) as e:
        build(cfg)
    assert str(e.value) == ("config.json: neural_network.data.training_tag: 'train' is not a "
                            "directory in the path './d/training/a/x/1.png'")


def test_bgr_order_on_pure_red_png(tmp_path):
    a = np.zeros((2, 3, 3), np.uint8)
    a[..., 0] = 255
    save(str(tmp_path / "red.png"), a)
    src = ImageSource(str(tmp_path), "w")
    x = src.to_float(src.load(0))
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    assert torch.equal(x[2], torch.ones(2, 3)) and x[:2].abs().sum() == 0   # R is channel 2


def test_alpha_dropped_and_gray_file_becomes_three_channels(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[..., 1] = 255
    a[..., 3] = 7
    save(str(tmp_path / "a.png"), a, "RGBA")
    save(str(tmp_path / "b.png"), np.full((2, 2), 51, np.uint8))
    src = ImageSource(str(tmp_path), "w")
    x = src.to_float(src.load(0))
    assert x.shape == (3, 2, 2) and torch.equal(x[1], torch.ones(2, 2))
    g = src.to_float(src.load(1))
    assert g.shape == (3, 2, 2) and torch.allclose(g, torch.full((3, 2, 2), 0.2))


def test_grayscale_luma(tmp_path):
    a = np.array([[[200, 100, 50], [0, 255, 0]]], np.uint8)        # (1, 2, 3) RGB
    save(str(tmp_path / "c.png"), a)
    src = ImageSource(str(tmp_path), "w", grayscale=True)
    x = src.to_float(src.load(0))
    expect = torch.tensor([[[0.299 * 200 + 0.587 * 100 + 0.114 * 50, 0.587 * 255]]]) / 255
    assert x.shape == (1, 1, 2) and torch.allclose(x, expect, atol=1e-6)


def test_16bit_png_scaling(tmp_path):
    save(str(tmp_path / "d.png"), np.array([[0, 40000, 65535]], np.uint16))
    src = ImageSource(str(tmp_path), "w", grayscale=True)
    raw = src.load(0)
    assert raw.dtype == torch.uint16
    assert torch.allclose(src.to_float(raw), torch.tensor([[[0, 40000 / 65535, 1.0]]]))


def test_palette_png_is_expanded(tmp_path):
    a = np.zeros((2, 2, 3), np.uint8)
    a[0, 0] = (255, 0, 0)
    Image.fromarray(a).convert("P").save(tmp_path / "p.png")
    t = decode(str(tmp_path / "p.png"))
    assert t.shape == (3, 2, 2) and t[:, 0, 0].tolist() == [255, 0, 0]


def test_preload_keeps_uint8(classes_tree):
    cfg = DataConfig(input_type="images", target_type="labels", input_path="./data/training/",
                     preload=True, grayscale=True, input_grayscale=True,
                     batch_size=3)
    bundle, lines = build(cfg)
    assert lines[:2] == ["Discovering training input images...",
                         "Pre-loading training input images..."]
    split = bundle.train
    assert split.num_workers == 0
    cache = split.reader.cache_in
    assert len(cache) == 8 and all(t.dtype == torch.uint8 for t in cache.values())
    b = next(split.batches(0))
    assert b.inputs.dtype == torch.float32 and b.inputs.shape == (3, 1, 6, 5)
    assert split._stacked_in is not None and split._stacked_in.dtype == torch.uint8
    # same values as the streaming path
    for x, i in zip(b.inputs, b.indices.tolist()):
        assert torch.equal(x, split.reader.inputs.to_float(split.reader.inputs.load(i)))


def test_dataset_lines_and_messages(classes_tree):
    cfg = DataConfig(input_type="images", target_type="labels", input_path="./data/training/",
                     batch_size=3, transforms=(
                         TransformSpec("resize", [4, 4], "neural_network.data.transforms[0]"),
                         TransformSpec("normalize", {"mean": 0.0, "std": 0.003921568},
                                       "neural_network.data.transforms[1]"),
                         TransformSpec("random_horizontal_flip", 0.5,
                                       "neural_network.data.transforms[2]")))
    bundle, _ = build(cfg, world_size=2)
    assert bundle.train.dataset_lines() == [
        "   Type                     : images",
        "   Num images  (total)      : 8",
        "   Num images  (per process): 4",
        "   Batch size  (requested)  : 3",
        "   Batch size  (per process): 1",
        "   Num batches (per process): 4",
        "   Transforms:",
        "      resize                : [4, 4]",
        "      normalize             : mean: 0, std: 0.00392157",
        "      random_horizontal_flip: 0.5"]


def test_missing_directory_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(input_type="images", target_type="labels", input_path="./mnist/training/")
    with pytest.raises(DataError) as e:
        build(cfg)
    assert str(e.value) == ("config.json: neural_network.data.input_path: directory "
                            "'./mnist/training/' does not exist")


def test_no_images_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    cfg = DataConfig(input_type="images", test_input_path="./empty")
    with pytest.raises(DataError) as e:
        build(cfg)
    assert str(e.value) == ("config.json: neural_network.data.test_input_path: no images found "
                            "in './empty' (extensions: .jpg .jpeg .png .bmp .tif .tiff .ppm .pgm)")


@pytest.mark.parametrize("preload", [True, False])
def test_corrupt_image_error(tmp_path, monkeypatch, preload):
    monkeypatch.chdir(tmp_path)
    save("imgs/a.png", np.zeros((3, 3), np.uint8))
    (tmp_path / "imgs" / "b.jpg").write_bytes(b"not a jpeg at all")
    cfg = DataConfig(input_type="images", test_input_path="./imgs", preload=preload,
                     num_workers=0)
    expected = "config.json: neural_network.data.test_input_path: cannot decode image './imgs/b.jpg'"
    with pytest.raises(DataError) as e:
        bundle, _ = build(cfg)
        list(bundle.test.batches(0))
    assert str(e.value).startswith(expected) and "\n" not in str(e.value)


def test_corrupt_image_error_from_worker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save("imgs/a.png", np.zeros((3, 3), np.uint8))
    (tmp_path / "imgs" / "b.png").write_bytes(b"\x89PNG broken")
    cfg = DataConfig(input_type="images", test_input_path="./imgs", num_workers=1)
    bundle, _ = build(cfg)
    with pytest.raises(DataError) as e:
        list(bundle.test.batches(0))
    assert str(e.value).startswith("config.json: neural_network.data.test_input_path: cannot "
                                   "decode image './imgs/b.png'")
    assert "\n" not in str(e.value)


def test_target_images_pairing_and_count_mismatch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for k in range(3):
        save(f"in/s{k}.jpg", np.full((4, 6, 3), 10 * k, np.uint8))
        save(f"masks/s{k}.png", np.full((4, 6), k, np.uint8))
    cfg = DataConfig(type="images", input_path="./in", target_path="./masks", preload=True,
                     target_grayscale=True, target_is_mask=True, batch_size=3)
    bundle, lines = build(cfg)
    assert lines == ["Discovering training input images...", "Pre-loading training input images...",
                     "Discovering training target images...",
                     "Pre-loading training target images..."]
    b = next(bundle.train.batches(0))
    assert b.targets.shape == (3, 1, 4, 6) and b.targets.dtype == torch.float32
    assert torch.allclose(b.targets[:, 0, 0, 0] * 255, b.indices.float())
    assert bundle.train.target_kind == "images"
    os.remove("masks/s2.png")
    with pytest.raises(DataError) as e:
        build(cfg)
    assert str(e.value) == (
        "config.json: neural_network.data.target_path: 2 target images in './masks' but 3 input "
        "images in './in' (inputs and targets are paired in sorted order, the counts must match)")


def test_unknown_transform_is_config_error(classes_tree):
    cfg = DataConfig(input_type="images", test_input_path="./data/testing", transforms=(
        TransformSpec("random_crop", 0.5, "neural_network.data.transforms[2]"),))
    with pytest.raises(ConfigError) as e:
        build(cfg)
    assert str(e.value).startswith("config.json: neural_network.data.transforms[2]: unknown "
                                   "transform 'random_crop'")


@pytest.mark.parametrize("preload,workers", [(True, 0), (False, 1)])
def test_segmentation_like_pets(tmp_path, monkeypatch, preload, workers):
    """Different image sizes, resize + normalize(std=1/255): masks come back as exact classes."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    for k, (h, w) in enumerate(((9, 12), (8, 8), (11, 7))):
        save(f"tr/inputs/pet_{k}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        save(f"tr/masks/pet_{k}.png", rng.integers(0, 3, (h, w), dtype=np.uint8))
    cfg = DataConfig(type="images", input_path="./tr/inputs/", target_path="./tr/masks/",
                     batch_size=2, preload=preload, num_workers=workers, target_grayscale=True,
                     target_is_mask=True, transforms=(
                         TransformSpec("resize", [5, 7], "neural_network.data.transforms[0]"),
                         TransformSpec("normalize", {"mean": 0.0, "std": 0.003921568},
                                       "neural_network.data.transforms[1]"),
                         TransformSpec("random_vertical_flip", 0.5,
                                       "neural_network.data.transforms[2]")))
    bundle, _ = build(cfg)
    batches = list(bundle.train.batches(0))
    assert [len(b.indices) for b in batches] == [2, 1]
    for b in batches:
        assert b.inputs.shape[1:] == (3, 5, 7) and b.targets.shape[1:] == (1, 5, 7)
        assert torch.allclose(b.targets, b.targets.round(), atol=1e-3)
        assert set(b.targets.round().unique().tolist()) <= {0.0, 1.0, 2.0}


def test_preloaded_batches_transformed_as_a_whole_match_per_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(2)
    for k in range(5):
        save(f"a/in/{k}.png", rng.integers(0, 255, (10, 13, 3), dtype=np.uint8))
        save(f"a/m/{k}.png", rng.integers(0, 3, (10, 13), dtype=np.uint8))
    specs = [("resize", [9, 12]), ("center_crop", [7, 10]), ("rotate", 15),
             ("convert_color", "BGR2RGB"),
             ("normalize", {"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.25, 1.0]})]
    cfg = DataConfig(type="images", test_input_path="./a/in", test_target_path="./a/m",
                     preload=True, test_batch_size=5, target_grayscale=True, target_is_mask=True,
                     transforms=tuple(TransformSpec(n, v, f"neural_network.data.transforms[{i}]")
                                      for i, (n, v) in enumerate(specs[:3])),
                     input_transforms=tuple(TransformSpec(n, v, "x") for n, v in specs[3:]))
    bundle, _ = build(cfg)
    s = bundle.test
    b = next(s.batches(0))
    assert s._stacked_in is not None and s._stacked_tgt is not None     # batch path taken
    assert b.inputs.shape == (5, 3, 7, 10) and b.targets.shape == (5, 1, 7, 10)
    for j, i in enumerate(b.indices.tolist()):
        x, y = s.reader.sample(i)
        assert torch.allclose(b.inputs[j], x, atol=1e-6) and torch.equal(b.targets[j], y)


def test_process_with_open_worker_loaders_exits(tmp_path):
    """A process that leaves a split's persistent DataLoader workers running (here: after a
    worker's decode error, the state a failing test or library user leaves) still exits: the
    workers ignore SIGTERM (preemption), so multiprocessing's own exit handler, which terminates
    and joins them, would wait forever; the split's exit hook kills them first."""
    import subprocess
    import sys

    save(str(tmp_path / "imgs/a.png"), np.zeros((3, 3), np.uint8))
    save(str(tmp_path / "imgs/c.png"), np.zeros((3, 3), np.uint8))
    (tmp_path / "imgs" / "b.png").write_bytes(b"\x89PNG broken")
    script = (
        "from rmldnn_py.config.types import DataConfig\n"
        "from rmldnn_py.data import build_datasets\n"
        "from rmldnn_py.errors import DataError\n"
        "from rmldnn_py.log import Logger\n"
        "cfg = DataConfig(input_type='images', test_input_path='./imgs', num_workers=2)\n"
        "import io\n"
        "bundle = build_datasets(cfg, config_path='config.json', logger=Logger(stream=io.StringIO()))\n"
        "try:\n"
        "    list(bundle.test.batches(0))\n"
        "except DataError as exc:\n"
        "    kept = exc                      # keeps the loader iterator (and its workers) alive\n"
        "    print('error seen', flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "error seen" in proc.stdout
