"""The ``YOLOv3`` loss (SPEC §3.8, §8.4; Redmon & Farhadi 2018, "YOLOv3: An Incremental
Improvement", and the Darknet ``yolo_layer`` it describes).

Inputs (channel-first, see :mod:`rmldnn_py.obj.layout`):

* ``output`` ``(N, F, K)`` raw network values, ``F = 3·(5 + C)``, read as
  ``(N, 3, 5 + C, K)``: per anchor ``tx, ty, tw, th, to`` and C class logits (no activation in
  the network: sigmoids and exponentials are applied here);
* ``target`` ``(N, M, 5)`` rows ``class, cx, cy, w, h`` normalised to the network input, padding
  rows with class −1 (:mod:`rmldnn_py.obj.boxes`).

**Assignment.** Each object goes to one anchor: the one (of all 3 per head × heads) whose
``(w, h)`` has the highest IoU with the object's ``(w, h)``, both centred at the origin
("assigns one bounding box prior for each ground truth object"); to the cell
``(i, j) = (⌊cy·S_h⌋, ⌊cx·S_w⌋)`` of that anchor's head (clamped to the grid). Two objects on the
same anchor of the same cell: the later label row wins.

**Targets** of an assigned prediction: ``t̂x = cx·S_w − j``, ``t̂y = cy·S_h − i`` (offsets in the
cell), ``t̂w = log(w_px / anchor_w)``, ``t̂h = log(h_px / anchor_h)`` (sizes in input pixels).

**Loss** (sums over predictions, divided by the batch size N):

* box: ``Σ_obj s·[(σ(tx) − t̂x)² + (σ(ty) − t̂y)² + (tw − t̂w)² + (th − t̂h)²]`` — the paper's
  sum of squared errors, on ``σ(t)`` for the centre as in Darknet, weighted by
  ``s = 2 − w·h`` (w, h normalised; Darknet's ``scale``, larger for small boxes);
* objectness: ``Σ_obj BCE(to, 1) + Σ_noobj BCE(to, 0)`` with logistic regression (BCE on
  logits); a prediction without an object whose decoded box overlaps some object of its image
  with IoU > ``ignore_thresh`` is left out of the no-object sum (Darknet ``ignore_thresh``;
  IoU by :func:`torchvision.ops.box_iou`);
* classes: ``Σ_obj Σ_c BCE(t_c, [c = class])`` — independent logistic classifiers, no softmax.

Decoding (also used by :mod:`rmldnn_py.obj.postprocess`): ``bx = (σ(tx) + j) / S_w``,
``by = (σ(ty) + i) / S_h`` (normalised), ``bw = anchor_w·exp(tw)``, ``bh = anchor_h·exp(th)``
(pixels).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as Fn
from torchvision.ops import box_iou

from ..engine.losses import LOSSES, BuiltLoss
from ..errors import DataError
from ..log import fmt_g
from .layout import ANCHORS_PER_HEAD, HeadLayout

__all__ = ["YOLOv3Loss", "Assignment", "decode_boxes"]

_MAX_EXP = 10.0      # exp(10)·anchor: far beyond any image; keeps decoded sizes finite


class Assignment(dict):
    """The predictions responsible for objects (one entry per kept object), all ``(G,)``:
    ``n`` image, ``a`` anchor of the head, ``k`` position in the output's K axis, ``head``,
    ``i``/``j`` cell row/column, ``tx ty tw th`` targets, ``scale`` (2 − w·h), ``cls``."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def decode_boxes(p: torch.Tensor, layout: HeadLayout) -> torch.Tensor:
    """Boxes of every prediction, normalised x1, y1, x2, y2.

    Args:
        p: ``(N, 3, 5 + C, K)`` raw values.

    Returns:
        ``(N, 3, K, 4)`` in [0, 1] units of the network input (may exceed the image).
    """
    tab = layout.tables(p.device, p.dtype)
    H, W = layout.input_size
    bx = (torch.sigmoid(p[:, :, 0]) + tab["cx"]) / tab["gw"]
    by = (torch.sigmoid(p[:, :, 1]) + tab["cy"]) / tab["gh"]
    bw = torch.exp(p[:, :, 2].clamp(max=_MAX_EXP)) * tab["aw"] / W
    bh = torch.exp(p[:, :, 3].clamp(max=_MAX_EXP)) * tab["ah"] / H
    return torch.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], dim=-1)


class YOLOv3Loss(BuiltLoss):
    """The configured YOLOv3 loss (see the module docstring).

    The head geometry comes from the network: :meth:`bind` is called with the
    :class:`~rmldnn_py.obj.layout.HeadLayout` once the network exists (``ObjApp.setup``).

    Attributes:
        num_classes: C (``num_classes``, default 80).
        anchors: the configured ``[w, h]`` pairs in pixels, or None (defaults by head count).
        ignore_thresh: IoU above which a no-object prediction is not penalised (0.5).
        score_thresh, nms_iou, max_detections: detection settings
            (:mod:`rmldnn_py.obj.postprocess`).
        layout: the bound head layout (None before :meth:`bind`).
    """

    name = "YOLOv3"
    function_label = "YOLOv3"
    label_width = 14

    def __init__(self, where: str, *, num_classes: int = 80,
                 anchors: Optional[Sequence[Sequence[float]]] = None, ignore_thresh: float = 0.5,
                 score_thresh: float = 0.001, nms_iou: float = 0.45,
                 max_detections: int = 100) -> None:
        super().__init__(where)
        self.num_classes = int(num_classes)
        self.anchors = None if anchors is None else [(float(a[0]), float(a[1])) for a in anchors]
        self.ignore_thresh = float(ignore_thresh)
        self.score_thresh = float(score_thresh)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)
        self.layout: Optional[HeadLayout] = None

    def bind(self, layout: HeadLayout) -> None:
        """Attach the network's heads (grids, strides, anchors)."""
        self.layout = layout

    def extra_rows(self):
        anchors = ("default" if self.anchors is None
                   else "[" + ", ".join(f"[{fmt_g(w)}, {fmt_g(h)}]" for w, h in self.anchors) + "]")
        return [("Num classes", str(self.num_classes)), ("Anchors", anchors),
                ("Ignore thresh", fmt_g(self.ignore_thresh)),
                ("Score thresh", fmt_g(self.score_thresh)), ("NMS IoU", fmt_g(self.nms_iou)),
                ("Max detections", str(self.max_detections))]

    def make_metric(self, task=None, num_classes=None):
        """None: the accuracy of a detection run (its mAP@0.5) is computed by the obj
        application's evaluator (:class:`rmldnn_py.obj.app.ObjEvaluator`), not by a loss metric;
        :meth:`rmldnn_py.obj.app.ObjApp.has_accuracy` tells the engine that it exists."""
        return None

    # ---------------------------------------------------------------- the loss
    def _view(self, output: torch.Tensor) -> torch.Tensor:
        """``(N, F, K)`` or ``(N, F, S_h, S_w)`` → ``(N, 3, 5 + C, K)``, checked."""
        L = self.layout
        if L is None:
            raise RuntimeError("YOLOv3 loss: bind() the network's head layout first")
        out = output.reshape(output.shape[0], output.shape[1], -1)
        if out.shape[1] != L.width or out.shape[2] != L.positions:
            raise DataError(f"{self.where}: network output {tuple(output.shape)} does not match "
                            f"the detection heads (expected (N, {L.width}, {L.positions}) for "
                            f"{L.input_size[0]}x{L.input_size[1]} inputs: are all images "
                            f"resized to the size the network was checked with?)")
        return out.view(out.shape[0], ANCHORS_PER_HEAD, 5 + L.num_classes, out.shape[2])

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = self.terms(output, target)
        return sum(terms.values()) / output.shape[0]

    def assign(self, target: torch.Tensor, device=None, dtype=torch.float32) -> Assignment:
        """The responsible prediction of every object of ``target`` ``(N, M, 5)`` (see the
        module docstring); entries on ``device`` (target's by default)."""
        L = self.layout
        device = target.device if device is None else device
        t = target.to(device, dtype)
        valid = t[..., 0] >= 0
        n, m = valid.nonzero(as_tuple=True)
        g = t[n, m]                                                  # (G, 5)
        H_in, W_in = L.input_size
        cls = g[:, 0].round().long()
        cx, cy, w, h = g[:, 1], g[:, 2], g[:, 3], g[:, 4]
        wp, hp = w * W_in, h * H_in
        anchors = torch.tensor(L.anchors, device=device, dtype=dtype)  # (3·heads, 2)
        aw, ah = anchors[:, 0], anchors[:, 1]
        inter = torch.minimum(wp[:, None], aw) * torch.minimum(hp[:, None], ah)
        iou = inter / (wp[:, None] * hp[:, None] + aw * ah - inter)
        best = iou.argmax(dim=1) if g.shape[0] else torch.zeros(0, dtype=torch.long, device=device)
        head = best // ANCHORS_PER_HEAD
        a = best % ANCHORS_PER_HEAD
        grids = torch.tensor([h_.grid for h_ in L.heads], device=device)   # (heads, 2)
        offsets = torch.tensor([h_.offset for h_ in L.heads], device=device)
        S_h, S_w = grids[head, 0], grids[head, 1]
        gx, gy = cx * S_w, cy * S_h
        j = torch.minimum(gx.floor().long(), S_w - 1).clamp(min=0)
        i = torch.minimum(gy.floor().long(), S_h - 1).clamp(min=0)
        k = offsets[head] + i * S_w + j
        # one object per (image, anchor, position): the later label row wins
        lin = (n * ANCHORS_PER_HEAD + a) * L.positions + k
        if lin.numel():
            uniq, inv = torch.unique(lin, return_inverse=True)
            order = torch.arange(lin.numel(), device=device)
            last = torch.full((uniq.numel(),), -1, dtype=torch.long, device=device)
            last = last.scatter_reduce(0, inv, order, reduce="amax")
            keep = torch.sort(last).values
        else:
            keep = torch.zeros(0, dtype=torch.long, device=device)
        return Assignment(
            n=n[keep], a=a[keep], k=k[keep], head=head[keep], i=i[keep], j=j[keep],
            tx=(gx - j)[keep], ty=(gy - i)[keep], tw=torch.log(wp / aw[best])[keep],
            th=torch.log(hp / ah[best])[keep], scale=(2.0 - w * h)[keep], cls=cls[keep])

    def ignore_mask(self, p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(N, 3, K)`` bool: the decoded box of a prediction overlaps an object of its image
        with IoU > ``ignore_thresh``. ``p`` ``(N, 3, 5 + C, K)`` (detached)."""
        N, A, _, K = p.shape
        boxes = decode_boxes(p, self.layout)                         # (N, 3, K, 4)
        out = torch.zeros((N, A, K), dtype=torch.bool, device=p.device)
        t = target.to(p.device, p.dtype)
        for n in range(N):
            g = t[n][t[n, :, 0] >= 0]
            if g.shape[0] == 0:
                continue
            gt = torch.cat([g[:, 1:3] - g[:, 3:5] / 2, g[:, 1:3] + g[:, 3:5] / 2], dim=1)
            best = box_iou(boxes[n].reshape(-1, 4), gt).amax(dim=1)
            out[n] = (best > self.ignore_thresh).view(A, K)
        return out

    def terms(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms summed over the batch (not yet divided by N), 0-dim tensors:
        ``box_xy``, ``box_wh``, ``obj`` (object cells), ``noobj`` (other cells, ignored ones
        left out), ``cls``.

        Raises:
            DataError: output shape not that of the bound heads; class index ≥ C.
        """
        p = self._view(output)
        asg = self.assign(target, p.device, p.dtype)
        C = self.layout.num_classes
        if asg.cls.numel() and int(asg.cls.max()) >= C:
            raise DataError(f"{self.where}: target class {int(asg.cls.max())} outside "
                            f"[0, {C - 1}] (num_classes = {C})")
        P = p[asg.n, asg.a, :, asg.k]                                # (G, 5 + C)
        s = asg.scale
        xy = torch.sigmoid(P[:, 0:2])
        box_xy = (s * ((xy - torch.stack([asg.tx, asg.ty], 1)) ** 2).sum(1)).sum()
        box_wh = (s * ((P[:, 2:4] - torch.stack([asg.tw, asg.th], 1)) ** 2).sum(1)).sum()
        obj = Fn.binary_cross_entropy_with_logits(P[:, 4], torch.ones_like(P[:, 4]),
                                                  reduction="sum")
        onehot = Fn.one_hot(asg.cls, C).to(P.dtype)
        cls = Fn.binary_cross_entropy_with_logits(P[:, 5:], onehot, reduction="sum")
        with torch.no_grad():
            noobj_sel = ~self.ignore_mask(p.detach(), target)
            noobj_sel[asg.n, asg.a, asg.k] = False
        to = p[:, :, 4, :]
        noobj = Fn.binary_cross_entropy_with_logits(to[noobj_sel], torch.zeros_like(to[noobj_sel]),
                                                    reduction="sum")
        return {"box_xy": box_xy, "box_wh": box_wh, "obj": obj, "noobj": noobj, "cls": cls}


def _anchors(r) -> Optional[list[tuple[float, float]]]:
    """``anchors``: a list of ``[w, h]`` pairs of positive numbers (pixels), or None."""
    r.accept("anchors")
    v = r.options.get("anchors")
    if v is None:
        return None
    ok = (isinstance(v, (list, tuple)) and len(v) > 0
          and all(isinstance(a, (list, tuple)) and len(a) == 2
                  and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                          and math.isfinite(float(x)) and x > 0 for x in a) for a in v))
    if not ok:
        r.error("anchors", f"must be a list of [w, h] pairs of positive numbers (pixels), "
                           f"3 per detection head (got {v!r})")
        return None
    return [(float(a[0]), float(a[1])) for a in v]


@LOSSES.register("YOLOv3")
def _yolov3(r, where: str, app: Optional[str]) -> BuiltLoss:
    return YOLOv3Loss(where, num_classes=r.integer("num_classes", 80, lo=1), anchors=_anchors(r),
                      ignore_thresh=r.number("ignore_thresh", 0.5, lo=0.0, hi=1.0),
                      score_thresh=r.number("score_thresh", 0.001, lo=0.0, hi=1.0),
                      nms_iou=r.number("nms_iou", 0.45, lo=0.0, hi=1.0),
                      max_detections=r.integer("max_detections", 100, lo=1))
