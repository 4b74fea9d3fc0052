"""Classification and segmentation reports from a global confusion matrix (issue 13).

:class:`ConfusionReport` accumulates a K×K confusion matrix (rows: true class, columns: predicted
class, as scikit-learn's ``confusion_matrix``) and, for classification, the top-k correct counts,
in one float64 tensor. Like the metrics of :mod:`rmldnn_py.engine.metrics`, a multi-process run
sums the states of all ranks (all-reduce SUM) and loads the sum back::

    report = ConfusionReport(num_classes=10, task="classification")
    for out, tgt in batches:
        report.update(out, tgt)                      # out (N, C), tgt (N,) int64
    t = report.state(); all_reduce_sum(t); report.load_state(t)
    if rank == 0:
        report.write("out_report.json", "out_report.txt", class_names)

Predictions: argmax over channels when C ≥ 2; ``output >= threshold`` when C = 1, which gives
the classes {0: background, 1: foreground} (K = 2). Targets: class indices ``(N,)`` /
``(N, d…)`` / ``(N, 1, d…)``, or one-hot/soft maps shaped like the output (see
:func:`rmldnn_py.engine.metrics.target_classes`). Targets equal to ``ignore_index`` or outside
``[0, K)`` are left out.

Figures (all from the summed matrix M, M[t, p] = samples of true class t predicted p):

* classification (scikit-learn ``classification_report`` definitions with ``zero_division=0``):
  precision_c = M[c,c] / Σ_t M[t,c]; recall_c = M[c,c] / Σ_p M[c,p]; F1_c = 2·P·R / (P + R);
  support_c = Σ_p M[c,p]; accuracy = trace(M) / ΣM; macro avg = unweighted mean over the K
  classes; weighted avg = mean weighted by support; top-k accuracy = fraction of samples whose
  target is among the k highest outputs, for k in ``topk`` with k < C.
* segmentation (per pixel/voxel): IoU_c = M[c,c] / (Σ_p M[c,p] + Σ_t M[t,c] − M[c,c]) (Jaccard),
  Dice_c = 2·M[c,c] / (Σ_p M[c,p] + Σ_t M[t,c]); classes absent from predictions and targets
  get ``null`` and are left out of the means (as :class:`~rmldnn_py.engine.metrics.DiceMetric`,
  whose value therefore equals the report's mean Dice); pixel accuracy = trace(M) / ΣM.
"""

from __future__ import annotations

import json
import math
from typing import Optional, Sequence

import torch

from ..errors import DataError
from ..io.atomic import atomic_path
from .metrics import predicted_classes, target_classes

__all__ = ["ConfusionReport", "report_paths"]

_TXT_MATRIX_MAX = 30  # the text report prints the matrix up to this many classes (JSON: always)


def report_paths(outfile: str) -> tuple[str, str]:
    """``out_mnist.txt`` → (``out_mnist_report.json``, ``out_mnist_report.txt``)."""
    import os

    base = os.path.splitext(outfile)[0]
    return base + "_report.json", base + "_report.txt"


class ConfusionReport:
    """Accumulates a confusion matrix (and top-k hits) and writes the report files.

    Args:
        num_classes: output channels C of the network (K = max(C, 2) classes).
        task: ``"classification"`` (outputs ``(N, C)``) or ``"segmentation"`` (``(N, C, d…)``).
        threshold: decision threshold when C = 1 (0.5 for probabilities, 0 for logits).
        ignore_index: target value left out (e.g. the loss' ``ignore_index``).
        topk: the k of the top-k accuracies (classification; only k < C are computed).

    State layout (float64): ``[M (K·K, row-major), hits_k for each computed k]``.
    """

    def __init__(self, num_classes: int, task: str = "classification", threshold: float = 0.5,
                 ignore_index: Optional[int] = None, topk: Sequence[int] = (1, 5)) -> None:
        if task not in ("classification", "segmentation"):
            raise ValueError(f"task must be 'classification' or 'segmentation', not {task!r}")
        self.channels = int(num_classes)
        self.k = max(self.channels, 2)
        self.task = task
        self.threshold = threshold
        self.ignore_index = ignore_index
        self.topk = tuple(k for k in topk if k < self.channels) if task == "classification" else ()
        self._sums = torch.zeros(self.k * self.k + len(self.topk), dtype=torch.float64)

    # ------------------------------------------------------------------ accumulation
    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``output`` ``(N, C)`` / ``(N, C, d…)`` scores, probabilities or
        log-probabilities (only their order matters, and the threshold when C = 1); ``target``
        class indices (see the module text). No device synchronisation.

        Raises:
            DataError: output channels other than ``num_classes``, or shapes that do not match.
        """
        output = output.detach()
        c = int(output.shape[1]) if output.dim() >= 2 else 1
        if c != self.channels:
            raise DataError(f"classification report: output has {c} channels, expected "
                            f"{self.channels}")
        if self.task == "classification" and output.dim() != 2:
            raise DataError(f"classification report: expected outputs (N, C), received "
                            f"{tuple(output.shape)}")
        if self._sums.device != output.device:
            self._sums = self._sums.to(output.device)
        pred = predicted_classes(output, self.threshold)
        tgt = target_classes(output, target).to(pred.device)
        valid = (tgt >= 0) & (tgt < self.k)
        if self.ignore_index is not None:
            valid &= tgt != self.ignore_index
        kk = self.k * self.k
        # invalid elements go to an extra bin kk (scatter_add: no host synchronisation)
        idx = torch.where(valid, tgt.clamp(0, self.k - 1) * self.k + pred, torch.full_like(tgt, kk))
        counts = torch.zeros(kk + 1, dtype=torch.float64, device=output.device)
        counts.scatter_add_(0, idx.reshape(-1),
                            torch.ones(idx.numel(), dtype=torch.float64, device=output.device))
        self._sums[:kk] += counts[:kk]
        if self.topk:
            top = output.topk(max(self.topk), dim=1).indices          # (N, kmax), best first
            hit = top == tgt.unsqueeze(1)
            for j, k in enumerate(self.topk):
                self._sums[kk + j] += (hit[:, :k].any(dim=1) & valid).sum().to(torch.float64)

    def state(self) -> torch.Tensor:
        """The accumulated sums (float64, on the outputs' device): all-reduce them with SUM."""
        return self._sums

    def load_state(self, t: torch.Tensor) -> None:
        """Replace the sums (e.g. by their all-reduced values).

        Raises:
            ValueError: a state of another size.
        """
        t = t.detach().to(torch.float64)
        if t.numel() != self._sums.numel():
            raise ValueError(f"classification report: state of size {t.numel()}, expected "
                             f"{self._sums.numel()}")
        self._sums = t.reshape(-1).clone()

    def reset(self) -> None:
        self._sums.zero_()

    @property
    def matrix(self) -> torch.Tensor:
        """The K×K confusion matrix (int64, CPU), rows true class, columns predicted class."""
        return self._sums[:self.k * self.k].reshape(self.k, self.k).cpu().round().long()

    # ------------------------------------------------------------------ figures
    def class_labels(self, class_names: Optional[Sequence[str]] = None) -> list[str]:
        """Display names of the K classes: ``class_names`` where given (extra names are
        ignored, missing ones are the class index), ``background``/``foreground`` for a
        single-channel output, else the indices."""
        if class_names is None and self.channels == 1:
            class_names = ("background", "foreground")
        names = list(class_names or [])
        return [str(names[i]) if i < len(names) else str(i) for i in range(self.k)]

    def summary(self, class_names: Optional[Sequence[str]] = None) -> dict:
        """The report as a dict (the JSON file's content; keys follow scikit-learn's
        ``classification_report(output_dict=True)``: ``precision``, ``recall``, ``f1-score``,
        ``support``, ``accuracy``, ``macro avg``, ``weighted avg``)."""
        m = self._sums[:self.k * self.k].reshape(self.k, self.k).cpu()
        names = self.class_labels(class_names)
        diag = m.diagonal()
        true_n = m.sum(dim=1)         # support
        pred_n = m.sum(dim=0)
        total = float(m.sum())
        per_class: dict[str, dict] = {}

        def ratio(a: float, b: float) -> float:
            return a / b if b > 0 else 0.0

        out: dict = {"task": self.task, "num_classes": self.k, "classes": names,
                     "num_samples" if self.task == "classification" else "num_pixels": int(total)}
        if self.task == "classification":
            for c, name in enumerate(names):
                p = ratio(float(diag[c]), float(pred_n[c]))
                r = ratio(float(diag[c]), float(true_n[c]))
                per_class[name] = {"precision": p, "recall": r, "f1-score": ratio(2 * p * r, p + r),
                                   "support": int(true_n[c])}
            out["per_class"] = per_class
            out["accuracy"] = ratio(float(diag.sum()), total)
            for avg, weights in (("macro avg", [1.0] * self.k),
                                 ("weighted avg", [float(x) for x in true_n])):
                wsum = sum(weights)
                out[avg] = {key: (ratio(sum(w * per_class[n][key] for w, n in zip(weights, names)),
                                        wsum) if wsum > 0 else 0.0)
                            for key in ("precision", "recall", "f1-score")}
                out[avg]["support"] = int(total)
            kk = self.k * self.k
            out["top_k_accuracy"] = {str(k): ratio(float(self._sums[kk + j]), total)
                                     for j, k in enumerate(self.topk)}
        else:
            ious, dices = [], []
            for c, name in enumerate(names):
                union = float(true_n[c] + pred_n[c] - diag[c])
                denom = float(true_n[c] + pred_n[c])
                iou = float(diag[c]) / union if union > 0 else None
                dice = 2 * float(diag[c]) / denom if denom > 0 else None
                per_class[name] = {"iou": iou, "dice": dice,
                                   "precision": ratio(float(diag[c]), float(pred_n[c])),
                                   "recall": ratio(float(diag[c]), float(true_n[c])),
                                   "support": int(true_n[c])}
                if iou is not None:
                    ious.append(iou)
                    dices.append(dice)
            out["per_class"] = per_class
            out["mean_iou"] = sum(ious) / len(ious) if ious else 0.0
            out["mean_dice"] = sum(dices) / len(dices) if dices else 0.0
            out["pixel_accuracy"] = ratio(float(diag.sum()), total)
        out["confusion_matrix"] = [[int(round(float(v))) for v in row] for row in m]
        return out

    # ------------------------------------------------------------------ files
    def text(self, class_names: Optional[Sequence[str]] = None, epoch: Optional[int] = None) -> str:
        """The readable report (scikit-learn ``classification_report`` layout, 4 decimals, then
        the top-k accuracies and the confusion matrix up to 30 classes)."""
        s = self.summary(class_names)
        names = s["classes"]
        width = max([len(n) for n in names] + [len("weighted avg"), 12])
        lines = []
        if epoch is not None:
            lines.append(f"Epoch: {epoch}")
        if self.task == "classification":
            heads = ("precision", "recall", "f1-score", "support")
            lines.append(" " * width + "".join(f"{h:>11}" for h in heads))
            lines.append("")
            for n in names:
                r = s["per_class"][n]
                lines.append(f"{n:>{width}}" + "".join(f"{r[h]:>11.4f}" for h in heads[:3])
                             + f"{r['support']:>11d}")
            lines.append("")
            lines.append(f"{'accuracy':>{width}}" + " " * 22 + f"{s['accuracy']:>11.4f}"
                         + f"{s['num_samples']:>11d}")
            for avg in ("macro avg", "weighted avg"):
                r = s[avg]
                lines.append(f"{avg:>{width}}" + "".join(f"{r[h]:>11.4f}" for h in heads[:3])
                             + f"{r['support']:>11d}")
            if s["top_k_accuracy"]:
                lines.append("")
                for k, v in s["top_k_accuracy"].items():
                    lines.append(f"top-{k} accuracy: {v:.4f}")
        else:
            heads = ("iou", "dice", "precision", "recall")
            lines.append(" " * width + "".join(f"{h:>11}" for h in heads) + f"{'support':>13}")
            lines.append("")
            for n in names:
                r = s["per_class"][n]
                vals = "".join(f"{'n/a':>11}" if r[h] is None else f"{r[h]:>11.4f}" for h in heads)
                lines.append(f"{n:>{width}}" + vals + f"{r['support']:>13d}")
            lines.append("")
            lines.append(f"{'mean IoU':>{width}}{s['mean_iou']:>11.4f}")
            lines.append(f"{'mean Dice':>{width}}{'':>11}{s['mean_dice']:>11.4f}")
            lines.append(f"{'pixel acc.':>{width}}{'':>33}{s['pixel_accuracy']:>11.4f}"
                         f"{s['num_pixels']:>13d}")
        lines.append("")
        if self.k <= _TXT_MATRIX_MAX:
            lines.append("Confusion matrix (rows: true class, columns: predicted class):")
            cm = s["confusion_matrix"]
            cell = max(max(len(str(v)) for row in cm for v in row), *(len(n) for n in names)) + 2
            lines.append(" " * width + "".join(f"{n:>{cell}}" for n in names))
            for n, row in zip(names, cm):
                lines.append(f"{n:>{width}}" + "".join(f"{v:>{cell}d}" for v in row))
        else:
            lines.append(f"Confusion matrix: {self.k}x{self.k}, see the JSON report "
                         "(key 'confusion_matrix', rows: true class, columns: predicted class).")
        return "\n".join(lines) + "\n"

    def write(self, json_path: Optional[str], txt_path: Optional[str],
              class_names: Optional[Sequence[str]] = None, epoch: Optional[int] = None) -> None:
        """Write the JSON report and/or the text report (each atomically; a path of None is
        skipped). Floats that are not finite are written as ``null``.

        Raises:
            DataError: a file cannot be written (names it).
        """
        if json_path:
            data = self.summary(class_names)
            if epoch is not None:
                data = {"epoch": int(epoch), **data}
            self._write(json_path, json.dumps(_finite(data), indent=1) + "\n")
        if txt_path:
            self._write(txt_path, self.text(class_names, epoch))

    @staticmethod
    def _write(path: str, text: str) -> None:
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
        except OSError as exc:
            raise DataError(f"{path}: cannot write the report: {exc.strerror or exc}") from None


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
