"""Detection accuracy: COCO mAP@0.5 and mAP@0.5:0.95 (SPEC §6.3, §8.4).

Computed by :class:`torchmetrics.detection.MeanAveragePrecision` (``iou_type="bbox"``, boxes
``xyxy``) with the ``faster_coco_eval`` backend (``pycocotools`` when faster-coco-eval is not
installed): the COCO evaluation — 101-point interpolated precision, per class, averaged over
the classes that have objects; mAP@0.5:0.95 averages IoU thresholds 0.50, 0.55, …, 0.95;
at most ``max_detections`` detections per image (the last COCO ``maxDets``).

Detections and objects are kept per image, in the original image's pixels. With several
processes the lists of every rank are gathered to rank 0, which computes the values and
broadcasts them, so the figures are those of the whole evaluation set on every rank.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from .. import distributed


def _backend() -> str:
    try:
        import faster_coco_eval  # noqa: F401
        return "faster_coco_eval"
    except ImportError:          # pragma: no cover - faster-coco-eval is a dependency
        return "pycocotools"


def mean_average_precision(items, max_detections: int = 100,
                           backend: Optional[str] = None) -> dict[str, float]:
    """mAP of a list of images.

    Args:
        items: per image ``(det, gt)``: ``det`` ``(K, 6)`` x1, y1, x2, y2, score, class;
            ``gt`` ``(G, 5)`` x1, y1, x2, y2, class (pixels of the same image).
        max_detections: detections per image counted (COCO ``maxDets``; at least 100).
        backend: ``faster_coco_eval`` or ``pycocotools`` (default: the first installed).

    Returns:
        ``{"map50", "map", "images", "objects"}``; mAP values are NaN when no image has objects.
    """
    from torchmetrics.detection import MeanAveragePrecision

    thresholds = [1, 10, max(100, int(max_detections))]
    # COCOeval's own float64 grids: torchmetrics' defaults come from a float32 linspace, whose
    # 0.2000000030 misses a recall of exactly 1/5 (one of 101 points off at such ties)
    iou_thrs = np.linspace(0.5, 0.95, 10).tolist()
    rec_thrs = np.linspace(0.0, 1.0, 101).tolist()
    # sync_on_compute=False: the lists are already global (DetectionMAP.compute_global gathers
    # them to rank 0, which alone computes); torchmetrics would otherwise all-gather its state
    # with ranks that are not computing and wait for them forever
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox",
                                  backend=backend or _backend(), iou_thresholds=iou_thrs,
                                  rec_thresholds=rec_thrs, max_detection_thresholds=thresholds,
                                  sync_on_compute=False)
    preds, targets = [], []
    objects = 0
    for det, gt in items:
        det = torch.as_tensor(np.asarray(det, dtype=np.float64).reshape(-1, 6))
        gt = torch.as_tensor(np.asarray(gt, dtype=np.float64).reshape(-1, 5))
        preds.append({"boxes": det[:, :4].float(), "scores": det[:, 4].float(),
                      "labels": det[:, 5].round().long()})
        targets.append({"boxes": gt[:, :4].float(), "labels": gt[:, 4].round().long()})
        objects += gt.shape[0]
    if not items or objects == 0:
        return {"map50": math.nan, "map": math.nan, "images": len(items), "objects": objects}
    metric.update(preds, targets)
    res = metric.compute()
    return {"map50": float(res["map_50"]), "map": float(res["map"]), "images": len(items),
            "objects": objects}


class DetectionMAP:
    """Accumulates one evaluation pass's detections and objects (per image, original pixels).

    Args:
        max_detections: see :func:`mean_average_precision`.
    """

    def __init__(self, max_detections: int = 100) -> None:
        self.max_detections = int(max_detections)
        self.items: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, det, gt_boxes, gt_labels) -> None:
        """One image: ``det`` ``(K, 6)``; ``gt_boxes`` ``(G, 4)`` xyxy; ``gt_labels`` ``(G,)``."""
        det = np.asarray(det, dtype=np.float32).reshape(-1, 6)
        gb = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
        gl = np.asarray(gt_labels, dtype=np.float32).reshape(-1, 1)
        self.items.append((det, np.concatenate([gb, gl], axis=1)))

    def compute(self) -> dict[str, float]:
        """mAP of this process's images only."""
        return mean_average_precision(self.items, self.max_detections)

    def compute_global(self) -> dict[str, float]:
        """mAP of every rank's images (collective: every rank calls it)."""
        parts = distributed.gather_object(self.items)
        result = None
        if parts is not None:
            try:
                result = mean_average_precision([it for part in parts for it in part],
                                                self.max_detections)
            except Exception as e:      # every rank must leave the broadcast, then fail
                result = f"{type(e).__name__}: {e}"
        result = distributed.broadcast_object(result)
        if isinstance(result, str):
            raise RuntimeError(f"mAP computation failed on rank 0: {result}")
        return result
