"""Evaluation accuracy metrics (SPEC §6.3, §12 Q12).

A metric accumulates sums in a float64 tensor (kept on the device of the outputs, so updating
never synchronises with the GPU). In a multi-process run every rank calls :meth:`Metric.state`,
all-reduces it with SUM, hands the result back with :meth:`Metric.load_state` and reads
:meth:`Metric.value`::

    metric = loss.make_metric("dense")          # or "classification"; None -> no accuracy
    for out, tgt in batches:
        metric.update(out, tgt)
    t = metric.state(); all_reduce_sum(t); metric.load_state(t)
    accuracy = metric.value()

Predictions: argmax over channels when C ≥ 2; ``output >= threshold`` when C = 1 (threshold 0.5
for probabilities, 0 for logits). Targets: class-index maps ``(N, d…)`` / ``(N, 1, d…)`` (float
values are rounded), one-hot/soft maps shaped like the output (argmax; ``>= 0.5`` when C = 1).
Target values equal to ``ignore_index`` or outside the class range are left out.
"""

from __future__ import annotations

import torch

from ..errors import DataError

__all__ = ["Metric", "AccuracyMetric", "DiceMetric", "predicted_classes", "target_classes"]


def _channels(output: torch.Tensor) -> int:
    return int(output.shape[1]) if output.dim() >= 2 else 1


def predicted_classes(output: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``(N, C, d…)`` → int64 ``(N, d…)``: argmax over C, or ``output >= threshold`` if C = 1."""
    if output.dim() < 2:
        return (output >= threshold).long()
    if output.shape[1] == 1:
        return (output[:, 0] >= threshold).long()
    return output.argmax(dim=1)


def target_classes(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target as an int64 class map shaped like :func:`predicted_classes` of ``output``.

    Raises:
        DataError: shapes that cannot be matched.
    """
    c = _channels(output)
    if output.dim() >= 2 and tuple(target.shape) == tuple(output.shape):
        if c == 1:
            return (target[:, 0] >= 0.5).long()
        return target.argmax(dim=1)
    t = target
    if output.dim() >= 2 and t.dim() == output.dim() and t.shape[1] == 1:
        t = t[:, 0]
    want = tuple(output.shape[:1]) + tuple(output.shape[2:])
    if tuple(t.shape) != want:
        raise DataError(f"target shape {tuple(target.shape)} does not match output shape "
                        f"{tuple(output.shape)} (expected class indices of shape {want})")
    if c == 1:
        return (t >= 0.5).long()
    if t.is_floating_point():
        t = t.round()
    return t.long()


class Metric:
    """Base class: sums in a float64 tensor of fixed size once the number of classes is known."""

    name = "Accuracy"

    def __init__(self, size: int | None, threshold: float = 0.5,
                 ignore_index: int | None = None) -> None:
        self.threshold = threshold
        self.ignore_index = ignore_index
        self._sums: torch.Tensor | None = (
            torch.zeros(size, dtype=torch.float64) if size is not None else None)

    def reset(self) -> None:
        if self._sums is not None:
            self._sums.zero_()

    def _buffer(self, size: int, device: torch.device) -> torch.Tensor:
        if self._sums is None:
            self._sums = torch.zeros(size, dtype=torch.float64, device=device)
        elif self._sums.numel() != size:
            raise DataError(f"{self.name}: the number of output channels changed between "
                            f"batches ({self._sums.numel()} sums vs {size})")
        elif self._sums.device != device:
            self._sums = self._sums.to(device)
        return self._sums

    def _classes(self, output: torch.Tensor, target: torch.Tensor, k: int):
        pred = predicted_classes(output, self.threshold)
        tgt = target_classes(output, target).to(pred.device)
        valid = (tgt >= 0) & (tgt < k)
        if self.ignore_index is not None:
            valid &= tgt != self.ignore_index
        return pred, tgt, valid

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def state(self) -> torch.Tensor:
        """The accumulated sums (float64, on the outputs' device) — all-reduce with SUM."""
        if self._sums is None:
            raise RuntimeError(f"{self.name}: state() before any update; pass num_classes to "
                               "make_metric so every rank has the same state size")
        return self._sums

    def load_state(self, t: torch.Tensor) -> None:
        """Replace the sums (e.g. by their all-reduced values)."""
        t = t.detach().to(torch.float64)
        if self._sums is not None and t.numel() != self._sums.numel():
            raise ValueError(f"{self.name}: state of size {t.numel()}, expected "
                             f"{self._sums.numel()}")
        self._sums = t.clone()

    def value(self) -> float:
        raise NotImplementedError


class AccuracyMetric(Metric):
    """Fraction of samples (elements, for dense outputs) whose predicted class equals the
    target class. State: ``[correct, total]``."""

    def __init__(self, threshold: float = 0.5, ignore_index: int | None = None) -> None:
        super().__init__(2, threshold, ignore_index)

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        output = output.detach()
        k = max(_channels(output), 2)
        pred, tgt, valid = self._classes(output, target, k)
        sums = self._buffer(2, output.device)
        sums[0] += ((pred == tgt) & valid).sum().to(torch.float64)
        sums[1] += valid.sum().to(torch.float64)

    def value(self) -> float:
        correct, total = (float(x) for x in self.state().cpu())
        return correct / total if total > 0 else 0.0


class DiceMetric(Metric):
    """Dice coefficient averaged over classes (SPEC §6.3): K = C classes (K = 2, background and
    foreground, when C = 1); per class, intersection I_c, predicted P_c and target T_c pixel
    counts are summed over every update; D_c = 2·I_c/(P_c + T_c); classes with P_c + T_c = 0
    are skipped; value = unweighted mean of D_c (0 when no class occurred).
    State: ``[I_0..I_{K-1}, P_0.., T_0..]``.
    """

    name = "Dice accuracy"

    def __init__(self, threshold: float = 0.5, num_classes: int | None = None,
                 ignore_index: int | None = None) -> None:
        self.num_classes = None if num_classes is None else max(int(num_classes), 2)
        super().__init__(None if self.num_classes is None else 3 * self.num_classes,
                         threshold, ignore_index)

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        output = output.detach()
        k = max(_channels(output), 2)
        if self.num_classes is not None and k != self.num_classes:
            raise DataError(f"{self.name}: output has {k} classes, expected {self.num_classes}")
        pred, tgt, valid = self._classes(output, target, k)
        sums = self._buffer(3 * k, output.device)
        # invalid pixels go to an extra bin k (scatter_add: no device synchronisation)
        bin_k = torch.full_like(tgt, k)
        counts = torch.zeros(3, k + 1, dtype=torch.float64, device=output.device)
        for row, idx in enumerate((torch.where(valid & (pred == tgt), tgt, bin_k),
                                   torch.where(valid, pred, bin_k),
                                   torch.where(valid, tgt, bin_k))):
            counts[row].scatter_add_(0, idx.reshape(-1),
                                     torch.ones(idx.numel(), dtype=torch.float64,
                                                device=output.device))
        sums += counts[:, :k].reshape(-1)

    def per_class(self) -> list[float | None]:
        """D_c per class (None for classes absent from predictions and targets)."""
        s = self.state().cpu()
        k = s.numel() // 3
        inter, pc, tc = s[:k], s[k:2 * k], s[2 * k:]
        return [None if float(pc[c] + tc[c]) == 0 else float(2 * inter[c] / (pc[c] + tc[c]))
                for c in range(k)]

    def value(self) -> float:
        d = [x for x in self.per_class() if x is not None]
        return sum(d) / len(d) if d else 0.0
