"""No silent wrong results: targets that cannot mean what the loss reads them as.

Class-index targets (``labels``, or dense masks with NLL, Focal, Dice, Jaccard, Lovasz) must hold
integers in ``[0, C)`` after the transforms, C being the number of classes of the network output
(its channel count; 2 for a 1-channel sigmoid output). The classic failure (SPEC §5.10): 8-bit
masks holding 0/1 are scaled by 1/255 when decoded and would be rounded to class 0 everywhere; the
pets tutorial's ``normalize`` with ``std = 1/255`` brings them back.

:class:`TargetCheck` checks (a) the label tensor at once, (b) the first samples of each split
before the first training step, and (c) every batch of the first training epoch and of every
evaluation pass (cheap host-side reductions). It also warns when every training target falls in
one class.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..errors import DataError
from ..log import fmt_g

#: losses that read (dense) targets as class indices (SPEC §6.3)
CLASS_INDEX_LOSSES = ("NLL", "Focal", "Dice", "Jaccard", "Lovasz")
_NORMALIZE_HINT = ('add {"normalize": {"mean": 0, "std": 0.00392157}} to "transforms" (or '
                   '"target_transforms") so that the 8-bit class values, scaled by 1/255 when '
                   'the files are read, become integers again (SPEC §5.10, pets tutorial)')


def _show(values: torch.Tensor, limit: int = 8) -> str:
    vals = [fmt_g(float(v)) for v in values[:limit].tolist()]
    return ", ".join(vals) + (", ..." if values.numel() > limit else "")


class TargetCheck:
    """Validates the targets of a run whose loss reads class indices.

    Args:
        loss_name: canonical loss name.
        output_shape: the network output shape without the batch axis, channel-first.
        where: ``{"training": "<config>: neural_network.data.target_path", "test": ...}``
            prefixes for messages, and the folder names in ``paths``.
        ignore_index: a target value that is allowed anyway (NLL).
        warn: prints a warning line.
    """

    def __init__(self, loss_name: str, output_shape: tuple, where: dict[str, str],
                 paths: dict[str, Optional[str]], ignore_index: Optional[int],
                 warn: Callable[[str], None]) -> None:
        self.loss_name = loss_name
        self.output_shape = tuple(output_shape)
        c = int(output_shape[0]) if len(output_shape) >= 1 else 1
        self.channels = c
        self.num_classes = max(c, 2)
        self.where = where
        self.paths = paths
        self.ignore_index = ignore_index
        self.warn = warn
        self.seen = torch.zeros(self.num_classes, dtype=torch.int64)
        self.active = {"training": True, "test": True}

    @staticmethod
    def applies(loss_name: Optional[str], split) -> bool:
        """Whether the loss reads this split's targets as class indices."""
        if split is None or not split.has_targets or loss_name is None:
            return False
        if split.target_kind == "labels":
            return True
        return loss_name in CLASS_INDEX_LOSSES

    def _is_class_map(self, y: torch.Tensor) -> bool:
        """False for targets shaped like the output (one-hot / soft labels, C ≥ 2)."""
        if self.channels >= 2 and tuple(y.shape[1:]) == self.output_shape:
            return False
        return True

    def check_batch(self, y: torch.Tensor, role: str) -> None:
        """Check one batch of targets (host tensor) of ``role`` ("training"/"test").

        Raises:
            DataError: values that are not class indices of the network (names the folder, the
                values seen and the fix).
        """
        if not self.active.get(role) or y is None or y.numel() == 0 or y.is_cuda:
            return
        if not self._is_class_map(y):
            return
        v = y.detach()
        if v.is_floating_point():
            if not torch.isfinite(v).all():
                raise DataError(f"{self.where[role]}: the targets hold non-finite values "
                                f"(NaN or inf) in '{self.paths[role]}'")
            frac = v != v.round()
        else:
            frac = None
        valid = (v >= 0) & (v < self.num_classes)
        if self.ignore_index is not None:
            valid |= v == self.ignore_index
        if frac is not None:
            bad = frac | ~valid
        else:
            bad = ~valid
        if bool(bad.any()):
            self._fail(role, v)
        if role == "training":
            t = v.long()
            t = t[(t >= 0) & (t < self.num_classes)]
            self.seen += torch.bincount(t.reshape(-1), minlength=self.num_classes)[:self.num_classes]

    def _fail(self, role: str, v: torch.Tensor) -> None:
        uniq = torch.unique(v.float().reshape(-1))
        shown = _show(uniq)
        what = (f"the network output has {self.channels} channel"
                f"{'s' if self.channels != 1 else ''} (classes 0..{self.num_classes - 1})")
        path = self.paths.get(role)
        prefix = f"{self.where[role]}: the targets of loss '{self.loss_name}' must be class indices"
        scaled = uniq[(uniq > 0)]
        if v.is_floating_point() and scaled.numel() and bool((scaled <= 1.0).all()) and \
                bool(((scaled * 255 - (scaled * 255).round()).abs() < 1e-3).all()) and \
                bool((uniq != uniq.round()).any()):
            raise DataError(f"{prefix}, but '{path}' holds the values {shown} after the transforms: "
                            f"{_NORMALIZE_HINT}")
        if v.is_floating_point() and bool((uniq != uniq.round()).any()):
            raise DataError(f"{prefix} ({what}), but '{path}' holds the non-integer values "
                            f"{shown} after the transforms (check 'normalize' and the loss)")
        too_big = uniq[uniq >= self.num_classes]
        if too_big.numel():
            raise DataError(f"{prefix} 0..{self.num_classes - 1} ({what}), but '{path}' holds "
                            f"class {fmt_g(float(too_big.max()))} (values seen: {shown}); "
                            "the network's last layer must have one output per class")
        raise DataError(f"{prefix} 0..{self.num_classes - 1} ({what}), but '{path}' holds the "
                        f"values {shown}")

    def check_labels(self, labels: torch.Tensor, class_names: Optional[list[str]],
                     role: str) -> None:
        """Label targets: every label must be an output of the network.

        Raises:
            DataError: ``the network has 1 output ... but the data has 2 classes``.
        """
        if labels is None or labels.numel() == 0:
            return
        n = int(labels.max()) + 1
        if self.channels == 1 and self.loss_name != "NLL":
            k = 2
        else:
            k = self.channels
        n_classes = len(class_names) if class_names else n
        if n > k or n_classes > k:
            names = f" ({', '.join(repr(c) for c in class_names[:6])}{', ...' if len(class_names) > 6 else ''})" \
                if class_names else ""
            raise DataError(f"{self.where[role]}: the network has {self.channels} output"
                            f"{'s' if self.channels != 1 else ''} (output shape "
                            f"{list(self.output_shape)}) but the data has {n_classes} classes"
                            f"{names}: the last layer needs one output per class")
        if role == "training":
            counts = torch.bincount(labels, minlength=n)
            if int((counts > 0).sum()) == 1:
                only = class_names[int(labels[0])] if class_names else str(int(labels[0]))
                self.warn(f"all {labels.numel()} training samples belong to one class ('{only}'): "
                          "the network cannot learn to tell classes apart")
            self.active["training"] = False     # labels are fully checked here

    def end_of_first_epoch(self) -> None:
        """After the first training epoch: warn when every target pixel fell in one class;
        stop checking training batches (they were all seen)."""
        if self.active["training"]:
            present = int((self.seen > 0).sum())
            if present == 1:
                only = int(torch.nonzero(self.seen)[0])
                self.warn(f"every training target value is class {only}: the network cannot "
                          f"learn to tell classes apart (check '{self.paths.get('training')}')")
        self.active["training"] = False
