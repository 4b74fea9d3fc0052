"""``--app=obj``: YOLOv3 object detection on the shared engine (SPEC §8.4).

What differs from ``dnn`` (everything else — loop, logs, checkpoints, resume, distribution,
prediction files — is the engine's):

* data: images + YOLO label files, boxes moved by the transforms (:mod:`.data`, :mod:`.boxes`);
* loss: ``YOLOv3`` only (:mod:`.loss`), bound to the detection heads read from the network
  (:mod:`.layout`) in :meth:`ObjApp.setup`, which also prints them;
* evaluation (:class:`ObjEvaluator`): the loss, then **accuracy = mAP@0.5** over the whole
  evaluation set (all ranks), shown on the pass's last batch line and in ``_test.txt``; one more
  line at the end gives mAP@0.5 and mAP@0.5:0.95 (:mod:`.metrics`). Intermediate batch lines
  show the running loss only (mAP is a whole-set figure);
* predictions: per image a dataset ``(K, 6)`` = ``x1, y1, x2, y2, score, class`` in the original
  image's pixels after the confidence threshold, class-wise NMS and ``max_detections``
  (:mod:`.postprocess`), named like every prediction (the image path relative to
  ``test_input_path``); ``"debug": true`` also writes the images with their boxes
  (:mod:`.debug`).

mAP needs a loss section and ``test_target_path`` (SPEC §5.1: no loss, no accuracy). The loss
section also carries ``anchors`` and the detection settings, so inference configs keep it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..engine.app import APPS, Application, Evaluator
from ..errors import ConfigError, NetworkError
from ..log import fmt_g
from . import loss as _loss  # noqa: F401  (registers the YOLOv3 loss)
from .data import build_obj_data
from .debug import debug_directory, draw, write_image
from .layout import ANCHORS_PER_HEAD, read_layout
from .metrics import DetectionMAP
from .postprocess import detect

__all__ = ["ObjApp", "ObjEvaluator"]

_DEFAULTS = {"score_thresh": 0.001, "nms_iou": 0.45, "max_detections": 100}


class ObjApp(Application):
    """The ``obj`` application (see the module docstring)."""

    name = "obj"
    losses = ("YOLOv3",)

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if cfg.data.slicers:
            raise ConfigError(f"{cfg.path}: neural_network.data.slicers: slicers cannot be used "
                              "with --app=obj")

    def build_data(self, ctx):
        return build_obj_data(ctx)

    def setup(self, ctx) -> None:
        """Read the detection heads from the network, check the output width and the label
        classes against C, bind the loss, print the heads.

        Raises:
            NetworkError: output width ≠ 3·(5 + C), heads not found.
            ConfigError: anchors not 3 per head; ``class_names`` count ≠ ``num_classes``.
            DataError: a label class ≥ C (file and line named).
        """
        cfg = ctx.cfg
        loss = ctx.loss
        names = ctx.bundle.class_names
        where = f"{cfg.path}: neural_network"
        if loss is not None:
            C = loss.num_classes
            if names is not None and len(names) != C:
                raise ConfigError(f"{where}.data.class_names: {len(names)} names in "
                                  f"'{cfg.data.class_names}' but neural_network.loss.num_classes "
                                  f"is {C}")
        elif names is not None:
            C = len(names)
        else:
            C = self._classes_from_output(ctx.net)
        sample = self.network_input_shape(ctx)
        layout = read_layout(ctx.net, sample, C, loss.anchors if loss is not None else None,
                             anchors_where=f"{where}.loss.anchors")
        if loss is not None:
            loss.bind(layout)
        else:
            for split in (ctx.bundle.train, ctx.bundle.test):
                if split is not None and split.labels is not None:
                    split.labels.check_classes(C, f"{C} classes of the network output")
        ctx.extras["obj_layout"] = layout
        log = ctx.log
        log.header("Detection heads")
        for h in layout.heads:
            anchors = " ".join(f"[{fmt_g(w)}, {fmt_g(hh)}]" for w, hh in h.anchors)
            log.line(f"   {h.layer}: {h.grid[0]}x{h.grid[1]} cells, stride "
                     f"{fmt_g(h.stride[0])}x{fmt_g(h.stride[1])}, positions "
                     f"{h.offset}-{h.offset + h.positions - 1}, anchors {anchors}")
        log.separator()

    @staticmethod
    def _classes_from_output(net) -> int:
        width = net.output_shape[0] if net.output_shape else None
        if width is None or width % ANCHORS_PER_HEAD or width // ANCHORS_PER_HEAD < 6:
            raise NetworkError(f"{net.source}: layer '{net.output_name}': output width {width} "
                               f"is not 3*(5+C) for any number of classes C >= 1")
        return width // ANCHORS_PER_HEAD - 5

    def evaluator(self, ctx, epoch: int) -> Evaluator:
        return ObjEvaluator(ctx, ctx.bundle.test, epoch)

    def has_accuracy(self, ctx) -> bool:
        """The accuracy of a detection evaluation is its mAP@0.5 (needs test labels)."""
        test = ctx.bundle.test
        return test is not None and ctx.loss is not None and test.has_targets


class ObjEvaluator(Evaluator):
    """One evaluation pass of ``--app=obj`` (see the module docstring).

    Attributes:
        result: after the last batch, ``{"map50", "map", "images", "objects"}`` (global).
    """

    metric_name = "mAP50"

    def __init__(self, ctx, split, epoch: int) -> None:
        from ..engine.evaluate import global_sums

        self.ctx, self.split, self.epoch = ctx, split, epoch
        self._global_sums = global_sums
        self.layout = ctx.extras["obj_layout"]
        loss = ctx.loss
        self.has_loss = loss is not None and split.has_targets
        self.settings = {k: getattr(loss, k) if loss is not None else v
                         for k, v in _DEFAULTS.items()}
        self.stats = torch.zeros(2, dtype=torch.float64)     # loss·images, images
        self.map = DetectionMAP(self.settings["max_detections"]) if self.has_loss else None
        self.write = bool(ctx.cfg.data.test_output_path)
        cfg = ctx.cfg
        self.debug_dir: Optional[str] = None
        if cfg.debug and epoch % max(1, cfg.debug_interval) == 0:
            self.debug_dir = debug_directory(cfg, epoch)
        self.result: Optional[dict] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.ctx.autocast():
            out = self.ctx.net(x)
        return out.float()

    def step(self, x, y, idx):
        n = int(x.shape[0])
        if not n:
            return ()
        ctx = self.ctx
        x, y = ctx.to_device(x, y)
        out = self.forward(x)
        if self.has_loss:
            self.stats[0] += float(ctx.loss(out, y)) * n
            self.stats[1] += n
        if not (self.write or self.map is not None or self.debug_dir):
            return ()
        dets = detect(out, self.layout, **self.settings)
        preds = []
        split = self.split
        for j, i in enumerate(idx.tolist()):
            det = self.to_original(dets[j], i)
            if self.map is not None:
                gt = split.objects_pixels(i)
                self.map.add(det, gt[:, :4], gt[:, 4])
            if self.write:
                preds.append((split.sample_name(i), det))
            if self.debug_dir:
                write_image(self.debug_dir, split.sample_name(i),
                            draw(split.original_image(i), det, ctx.class_names))
        return preds

    def to_original(self, det: torch.Tensor, index: int) -> np.ndarray:
        """Detections ``(K, 6)`` in network-input pixels → original pixels of image ``index``
        (boxes that vanish after clipping to the image are dropped)."""
        if det.shape[0] == 0:
            return np.zeros((0, 6), np.float32)
        hw = self.split.original_size(index)
        boxes = self.split.pipeline.to_original(det[:, :4], hw)
        out = torch.cat([boxes, det[:, 4:]], dim=1)
        keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
        return out[keep].numpy().astype(np.float32)

    def running(self, final: bool = False):
        if not self.has_loss:
            return None, None
        flat = self._global_sums(self.stats)
        loss = float(flat[0]) / float(flat[1]) if float(flat[1]) else float("nan")
        if not final:
            return loss, None
        if self.result is None:                 # the pass's last batch: the whole set (collective)
            self.result = self.map.compute_global()
        return loss, self.result["map50"]

    def finish(self):
        msgs = []
        r = self.result
        if r is not None:
            msgs.append(f"Detection mAP@0.5: {r['map50']:.4f}; mAP@0.5:0.95: {r['map']:.4f} "
                        f"({r['images']} images, {r['objects']} objects)")
        if self.debug_dir:
            msgs.append(f"Writing detection images to directory: {self.debug_dir}")
        return msgs


APPS.register("obj", ObjApp)
