"""The data of ``--app=obj`` (SPEC §8.4): images + YOLO labels, batched for the engine.

Keys read from ``neural_network.data``: ``input_path`` / ``test_input_path`` (images, the
``images`` loader of SPEC §5.2: discovery, decoding, ``grayscale``, ``preload``,
``max_image_pixels``), ``target_path`` / ``test_target_path`` (directories of ``<stem>.txt``
label files, :mod:`rmldnn_py.obj.labels`; without ``test_target_path`` evaluation is pure
inference), ``transforms`` / ``input_transforms`` (:mod:`rmldnn_py.obj.boxes`), ``letterbox``,
``class_names``, ``batch_size`` / ``test_batch_size``, ``num_workers``.

A split is a :class:`rmldnn_py.data.split.Split` (same batching, partitioning across ranks,
shuffling, pre-loading and DataLoader workers as every other application) whose targets are the
padded boxes: a batch is ``(inputs (B, C, H, W), targets (B, K_max, 5), indices (B,))`` with
target rows ``class, cx, cy, w, h`` normalised to the transformed image and class −1 for
padding. :class:`ObjSplit` adds what the evaluator needs per image: the original size, the
objects in original pixels, the original pixels (debug images).

Messages: ``Discovering <role> input images...``, ``Pre-loading <role> input images...`` (with
``preload``), ``Discovering <role> object labels...``, ``Number of objects: <n> in <f> label
files (<m> images without a label file)``, ``Number of classes: C`` (with ``class_names``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..data.images import ImageSource
from ..data.split import DataBundle, SampleReader, Split
from ..errors import ConfigError
from .boxes import BoxPipeline, normalized_to_xyxy
from .labels import LabelSource, read_class_names

_KEYS = {"training": ("input_path", "target_path", "batch_size"),
         "test": ("test_input_path", "test_target_path", "test_batch_size")}


class ObjSplit(Split):
    """A :class:`~rmldnn_py.data.split.Split` of images with box targets.

    Attributes:
        labels: the :class:`~rmldnn_py.obj.labels.LabelSource` or None (no targets).
        pipeline: the :class:`~rmldnn_py.obj.boxes.BoxPipeline`.
    """

    @property
    def labels(self) -> Optional[LabelSource]:
        return self.reader.targets

    @property
    def pipeline(self) -> BoxPipeline:
        return self.reader.pipeline

    def original_image(self, index: int) -> torch.Tensor:
        """The image file's compact pixels ``(C, H, W)`` (RGB order, ``uint8``/``uint16``)."""
        return self.reader.raw_input(index)

    def original_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of image ``index`` as decoded (EXIF orientation applied)."""
        cache = self.__dict__.setdefault("_sizes", {})
        hw = cache.get(index)
        if hw is None:
            shape = self.original_image(index).shape
            hw = cache[index] = (int(shape[-2]), int(shape[-1]))
        return hw

    def objects_pixels(self, index: int) -> np.ndarray:
        """The objects of image ``index`` from its label file: float32 ``(G, 5)`` rows x1, y1,
        x2, y2 (original pixels, clipped to the image), class."""
        if self.labels is None:
            return np.zeros((0, 5), np.float32)
        raw = self.labels.load(index)
        H, W = self.original_size(index)
        b = normalized_to_xyxy(raw[:, 1:5], (H, W))
        b = torch.stack([b[:, 0].clamp(0, W), b[:, 1].clamp(0, H), b[:, 2].clamp(0, W),
                         b[:, 3].clamp(0, H)], dim=1)
        return torch.cat([b, raw[:, :1]], dim=1).numpy().astype(np.float32)

    def dataset_rows(self) -> list[tuple[str, str]]:
        rows = super().dataset_rows()
        if self.labels is not None:
            rows.append(("Num objects (total)", str(self.labels.num_objects)))
        return rows


def configured_num_classes(cfg) -> Optional[int]:
    """``neural_network.loss.num_classes`` of a YOLOv3 loss section (80 when absent), or None
    without a loss or when the value is invalid (the loss reports it)."""
    if cfg.loss is None:
        return None
    v = cfg.loss.options.get("num_classes", 80)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 1 or v != int(v):
        return None
    return int(v)


def build_obj_data(ctx) -> DataBundle:
    """The training and test splits of this rank (see the module docstring).

    Raises:
        ConfigError: a non-image loader, slicers, transforms that cannot move boxes,
            ``letterbox`` without ``resize``, an unreadable ``class_names`` file.
        DataError: missing/empty paths, bad label lines (file and line named), classes
            ``>= num_classes``.
    """
    cfg = ctx.cfg
    d = cfg.data
    cp = cfg.path
    log = ctx.data_log

    def where(key: str) -> str:
        return f"{cp}: neural_network.data.{key}"

    in_type = (d.input_type or d.type or "images").lower()
    if in_type != "images":
        raise ConfigError(f"{where('input_type' if d.input_type else 'type')}: --app=obj reads "
                          f"images (type 'images'), received '{in_type}'")
    if d.slicers:
        raise ConfigError(f"{where('slicers')}: slicers cannot be used with --app=obj")
    class_names = read_class_names(d.class_names, where("class_names")) if d.class_names else None
    num_classes = configured_num_classes(cfg)

    def split(role: str) -> ObjSplit:
        in_key, tgt_key, batch_key = _KEYS[role]
        if log is not None:
            log.line(f"Discovering {role} input images...")
        inputs = ImageSource(getattr(d, in_key), where(in_key), grayscale=bool(d.input_grayscale),
                             max_pixels=d.max_image_pixels)
        if log is not None:
            for w in inputs.warnings:
                log.warning(w)
        labels = None
        tpath = getattr(d, tgt_key)
        if tpath:
            if log is not None:
                log.line(f"Discovering {role} object labels...")
            names = [inputs.name(i) for i in range(len(inputs))]
            labels = LabelSource(tpath, where(tgt_key), names)
            if log is not None:
                log.line(f"Number of objects: {labels.num_objects} in {labels.num_files} label "
                         f"files ({len(inputs) - labels.num_files} images without a label file)")
            if num_classes is not None:
                labels.check_classes(num_classes, f"neural_network.loss.num_classes = "
                                                  f"{num_classes}")
        pipeline = BoxPipeline(d.transforms, d.input_transforms, d.target_transforms,
                               train=role == "training", letterbox=d.letterbox,
                               max_objects=labels.max_objects if labels is not None else 1,
                               config_path=cp)
        reader = SampleReader(inputs, labels, None, pipeline)
        s = ObjSplit(role, reader, target_kind="boxes" if labels is not None else None,
                     batch_size=getattr(d, batch_key), rank=ctx.rank, world_size=ctx.world,
                     seed=cfg.seed, preload=d.preload, num_workers=d.num_workers,
                     device_is_cuda=ctx.device.type == "cuda")
        s.preload_inputs(log, f"Pre-loading {role} input images...")
        s.preload_targets()       # (the labels are in memory already: no message)
        return s

    train = split("training") if d.input_path else None
    test = split("test") if d.test_input_path else None
    if class_names is not None and log is not None:
        log.line(f"Number of classes: {len(class_names)}")
    return DataBundle(train=train, test=test, class_names=class_names)
