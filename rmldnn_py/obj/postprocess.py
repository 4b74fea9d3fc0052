"""From YOLOv3 outputs to detections (SPEC §7.5, §8.4).

Per image:

1. decode every prediction (:func:`rmldnn_py.obj.loss.decode_boxes`) to a box in network-input
   pixels;
2. score of class c = ``σ(objectness) · σ(class logit c)`` (YOLOv3's independent logistic
   classes: one box may give candidates of several classes);
3. keep the candidates with score > ``score_thresh``; at most ``pre_nms`` of the highest
   scores go on (default ``max(1000, 10·max_detections)``, as torchvision's detectors bound NMS
   work);
4. class-wise non-maximum suppression (:func:`torchvision.ops.batched_nms`, IoU > ``nms_iou``
   suppresses), then the ``max_detections`` highest scores.

Result per image: float32 ``(K, 6)`` rows ``x1, y1, x2, y2, score, class``, by decreasing score,
in network-input pixels (the evaluator maps them back to the original image).
"""

from __future__ import annotations

from typing import Optional

import torch
from torchvision.ops import batched_nms

from .layout import ANCHORS_PER_HEAD, HeadLayout
from .loss import decode_boxes


def detect(output: torch.Tensor, layout: HeadLayout, *, score_thresh: float = 0.001,
           nms_iou: float = 0.45, max_detections: int = 100,
           pre_nms: Optional[int] = None) -> list[torch.Tensor]:
    """Detections of a batch.

    Args:
        output: ``(N, 3·(5 + C), K)`` raw network output (or ``(N, F, S_h, S_w)``).
        layout: the network's heads.
        score_thresh / nms_iou / max_detections / pre_nms: see the module docstring.

    Returns:
        N tensors ``(K_n, 6)`` float32: x1, y1, x2, y2 (input pixels), score, class.
    """
    N = output.shape[0]
    C = layout.num_classes
    p = output.detach().float().reshape(N, ANCHORS_PER_HEAD, 5 + C, -1)
    H, W = layout.input_size
    boxes = decode_boxes(p, layout) * torch.tensor([W, H, W, H], dtype=p.dtype,
                                                   device=p.device)    # (N, 3, K, 4)
    pre = pre_nms if pre_nms is not None else max(1000, 10 * max_detections)
    out = []
    for n in range(N):
        scores = torch.sigmoid(p[n, :, 4]).unsqueeze(1) * torch.sigmoid(p[n, :, 5:])  # (3, C, K)
        mask = scores > score_thresh
        a, c, k = mask.nonzero(as_tuple=True)
        s = scores[a, c, k]
        if s.numel() > pre:
            top = s.topk(pre).indices
            a, c, k, s = a[top], c[top], k[top], s[top]
        b = boxes[n, a, k]
        keep = batched_nms(b, s, c, nms_iou)[:max_detections]
        det = torch.cat([b[keep], s[keep, None], c[keep, None].to(b.dtype)], dim=1)
        out.append(det.cpu().to(torch.float32))
    return out
