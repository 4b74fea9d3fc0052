"""Loss functions (SPEC §3.8, §6.3).

Usage::

    loss = build_loss(cfg.loss, "neural_network.loss")
    value = loss(output, target)             # scalar tensor, mean over the batch
    loss.rows                                # Loss block rows, label width loss.label_width
    metric = loss.make_metric("dense")       # or "classification"; None when no accuracy

Outputs are channel-first: ``(N, C)`` (classification) or ``(N, C, d…)`` (dense). ``source``
says what the network's last activation produced:

* ``softmax`` — class probabilities (C ≥ 2); ``log_softmax`` — their logarithms;
* ``sigmoid`` — independent per-channel probabilities;
* ``logits`` (alias ``none``) — raw scores: softmax over channels is applied when C ≥ 2, a
  sigmoid when C = 1.

With C = 1 the output is read as the foreground probability of a binary problem whatever the
source. Targets of the Dice family (Dice, Jaccard, Focal, Lovasz) are class-index maps
``(N, d…)`` / ``(N, 1, d…)`` (one-hot encoded to C channels; binary 0/1 maps when C = 1) or a
tensor shaped like the output (one-hot or soft labels).

Losses are computed in float32 or float64 with autocast disabled (so half-precision outputs and
``binary_cross_entropy`` work under mixed precision). An empty batch gives 0.

Adding a loss: a :class:`BuiltLoss` subclass and a builder registered in :data:`LOSSES`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..config.types import LossConfig
from ..errors import ConfigError, DataError
from ..log import fmt_g
from ..registry import Registry
from .metrics import AccuracyMetric, DiceMetric, Metric
from .optim import OptionReader

__all__ = ["LOSSES", "BuiltLoss", "build_loss", "lovasz_grad", "SOURCES", "PDE_LOSSES",
           "LOSS_APPS", "check_loss_app", "NLLLoss", "BCELoss", "MSELoss", "DiceLoss", "JaccardLoss", "FocalLoss",
           "LovaszLoss"]

#: accepted ``source`` spellings (lower case) → canonical value
SOURCES = {"softmax": "softmax", "log_softmax": "log_softmax", "logsoftmax": "log_softmax",
           "sigmoid": "sigmoid", "logits": "logits", "none": "logits", "linear": "logits"}
PDE_LOSSES = ("Burgers_PDE", "Poisson2D_PDE", "Poisson3D_PDE")
_TINY = 1e-12


def _channel_rows(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, d…)`` → ``(C, N·Πd)``: one row per channel, all pixels of the batch pooled."""
    return x.movedim(1, 0).reshape(x.shape[1], -1)


def _spatial_dims(t: torch.Tensor) -> list[int]:
    """All dims but the channel dim 1."""
    return [0] + list(range(2, t.dim()))


class BuiltLoss:
    """A configured loss: ``loss(output, target) -> scalar tensor``.

    Attributes:
        name: canonical function name (``NLL``, ``Dice``, ...).
        rows: Loss block rows (SPEC §7.2.3); ``label_width``: 12 for NLL, 8 otherwise.
        source: canonical ``source`` (None where it does not apply).
        weight: per-class weights or None.
        warnings: unknown option keys (one line each).
        where: JSON path of the section.
    """

    name = ""
    function_label = ""
    label_width = 8
    has_accuracy = True

    def __init__(self, where: str, *, source: str | None = None,
                 weight: Sequence[float] | None = None, ignore_index: int | None = None,
                 warnings: list[str] | None = None) -> None:
        self.where = where
        self.source = source
        self.weight = None if weight is None else [float(w) for w in weight]
        self.ignore_index = ignore_index
        self.warnings = list(warnings or [])

    # ----- interface -------------------------------------------------------------------------
    @property
    def rows(self) -> list[tuple[str, str]]:
        return [("Function", self.function_label)] + self.extra_rows()

    def extra_rows(self) -> list[tuple[str, str]]:
        return []

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.dtype in (torch.float16, torch.bfloat16):
            output = output.float()
        if target.is_floating_point() and target.dtype in (torch.float16, torch.bfloat16):
            target = target.float()
        if target.device != output.device:
            target = target.to(output.device)
        if output.shape[0] == 0:
            return output.sum() * 0.0
        with torch.autocast(device_type=output.device.type, enabled=False):
            return self.forward(output, target)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def make_metric(self, task: str | None, num_classes: int | None = None) -> Metric | None:
        """The evaluation accuracy for ``task``: ``"classification"`` (labels targets: fraction
        of argmax == label), ``"dense"`` (Dice coefficient averaged over classes) or None.
        Returns None for losses without accuracy (MSE). ``num_classes`` (output channels) lets
        the metric allocate its state before the first update."""
        if task is None or not self.has_accuracy:
            return None
        threshold = self.threshold()
        if task == "classification":
            return AccuracyMetric(threshold, self.ignore_index)
        if task == "dense":
            return DiceMetric(threshold, num_classes, self.ignore_index)
        raise ValueError(f"unknown metric task {task!r} (expected 'classification', 'dense' "
                         "or None)")

    # ----- helpers ---------------------------------------------------------------------------
    def threshold(self) -> float:
        """Decision threshold for 1-channel outputs: 0 for logits, 0.5 for probabilities."""
        if self.source == "logits":
            return 0.0
        if self.source == "log_softmax":
            return math.log(0.5)
        return 0.5

    def _weight(self, output: torch.Tensor) -> torch.Tensor | None:
        """The class weights as a tensor, checked against the output channel count."""
        if self.weight is None:
            return None
        c = int(output.shape[1]) if output.dim() >= 2 else 1
        if len(self.weight) != c:
            raise ConfigError(f"{self.where}.weight: has {len(self.weight)} values but the "
                              f"network output has {c} channels (classes)")
        return torch.tensor(self.weight, dtype=output.dtype, device=output.device)

    def _check_dense(self, output: torch.Tensor) -> None:
        if output.dim() < 2:
            raise DataError(f"{self.name} loss: output of shape {tuple(output.shape)} has no "
                            "channel dimension (expected (N, C) or (N, C, d...))")

    def _binary(self, output: torch.Tensor) -> bool:
        return self.source == "sigmoid" or output.shape[1] == 1

    def _probs(self, output: torch.Tensor) -> torch.Tensor:
        """Per-channel probabilities according to ``source``."""
        if self.source == "log_softmax":
            return output.exp()
        if self.source == "logits":
            return torch.sigmoid(output) if output.shape[1] == 1 else output.softmax(dim=1)
        return output

    def _dense_target(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The target as a float tensor shaped like ``output`` (one-hot for class maps)."""
        if tuple(target.shape) == tuple(output.shape):
            return target.to(output.dtype)
        t = target
        if t.dim() == output.dim() and t.shape[1] == 1:
            t = t[:, 0]
        want = tuple(output.shape[:1]) + tuple(output.shape[2:])
        if tuple(t.shape) != want:
            raise DataError(f"{self.name} loss: target shape {tuple(target.shape)} does not match "
                            f"output shape {tuple(output.shape)} (expected {tuple(output.shape)} "
                            f"or class indices of shape {want})")
        c = int(output.shape[1])
        if c == 1:
            return t.to(output.dtype).unsqueeze(1)
        idx = t.round().long() if t.is_floating_point() else t.long()
        if idx.device.type == "cpu" and idx.numel():  # (no device sync on accelerators)
            bad = idx[(idx < 0) | (idx >= c)]
            if bad.numel():
                raise DataError(f"{self.name} loss: target class index {int(bad[0])} outside "
                                f"[0, {c - 1}] for an output with {c} channels")
        return torch.zeros_like(output).scatter_(1, idx.unsqueeze(1), 1.0)


# ---------------------------------------------------------------------------------------------
class NLLLoss(BuiltLoss):
    """torch ``nll_loss`` on log-probabilities; targets are class indices (a size-1 channel
    axis is squeezed, floats are rounded)."""

    name = "NLL"
    function_label = "NLL (Negative Log-Likelihood)"
    label_width = 12

    def extra_rows(self):
        return [("Weight", fmt_g(self.weight)), ("Ignore index", fmt_g(self.ignore_index))]

    def threshold(self) -> float:
        return math.log(0.5)

    def forward(self, output, target):
        self._check_dense(output)
        t = target
        if t.dim() == output.dim() and t.shape[1] == 1:
            t = t[:, 0]
        want = tuple(output.shape[:1]) + tuple(output.shape[2:])
        if tuple(t.shape) != want:
            raise DataError(f"NLL loss: target shape {tuple(target.shape)} does not match output "
                            f"shape {tuple(output.shape)} (expected class indices of shape {want})")
        t = t.round().long() if t.is_floating_point() else t.long()
        ii = -100 if self.ignore_index is None else self.ignore_index
        return F.nll_loss(output, t, weight=self._weight(output), ignore_index=ii)


class BCELoss(BuiltLoss):
    """Mean binary cross-entropy; probabilities (``sigmoid``/``softmax``), ``log_softmax``
    (exponentiated) or ``logits`` (``binary_cross_entropy_with_logits``)."""

    name = "BCE"
    function_label = "BCE (Binary Cross-Entropy)"

    def extra_rows(self):
        return [] if self.source == "sigmoid" else [("Source", self.source)]

    def forward(self, output, target):
        if target.numel() != output.numel():
            raise DataError(f"BCE loss: target shape {tuple(target.shape)} does not match output "
                            f"shape {tuple(output.shape)}")
        t = target.reshape(output.shape).to(output.dtype)
        if self.source == "logits":
            return F.binary_cross_entropy_with_logits(output, t)
        p = output.exp() if self.source == "log_softmax" else output
        # a diverged network outputs NaN/inf: torch's kernel would fail ("all elements of input
        # should be between 0 and 1"; a device assert on CUDA); give a NaN loss instead, which
        # the training loop reports as divergence (0·Σp is NaN exactly when p is not finite)
        finite = torch.isfinite(p)
        return F.binary_cross_entropy(torch.where(finite, p, 0.5), t) + 0.0 * p.sum()


class MSELoss(BuiltLoss):
    """Mean squared error over all elements."""

    name = "MSE"
    function_label = "MSE (Mean Squared Error)"
    has_accuracy = False

    def forward(self, output, target):
        if target.numel() != output.numel():
            raise DataError(f"MSE loss: target shape {tuple(target.shape)} does not match output "
                            f"shape {tuple(output.shape)}")
        return F.mse_loss(output, target.reshape(output.shape).to(output.dtype))


class _OverlapLoss(BuiltLoss):
    """Dice / Jaccard: per-class scores over batch and pixels, loss = 1 − weighted mean."""

    def __init__(self, where, *, eps: float = 1e-7, **kw) -> None:
        super().__init__(where, **kw)
        self.eps = eps

    def extra_rows(self):
        return [("Source", self.source), ("Eps", fmt_g(self.eps)), ("Weight", fmt_g(self.weight))]

    def score(self, inter, psum, tsum):
        raise NotImplementedError

    def forward(self, output, target):
        self._check_dense(output)
        w = self._weight(output)
        p = self._probs(output)
        t = self._dense_target(output, target)
        dims = _spatial_dims(p)
        inter = (p * t).sum(dims)
        s = self.score(inter, p.sum(dims), t.sum(dims))
        if w is None:
            return 1.0 - s.mean()
        return 1.0 - (w * s).sum() / w.sum()


class DiceLoss(_OverlapLoss):
    """D_c = (2·Σp·t + eps)/(Σp + Σt + eps); loss = 1 − Σ w_c·D_c / Σ w_c."""

    name = "Dice"
    function_label = "Dice score"

    def score(self, inter, psum, tsum):
        return (2.0 * inter + self.eps) / (psum + tsum + self.eps)


class JaccardLoss(_OverlapLoss):
    """J_c = (Σp·t + eps)/(Σp + Σt − Σp·t + eps); loss = 1 − Σ w_c·J_c / Σ w_c."""

    name = "Jaccard"
    function_label = "Jaccard score"

    def score(self, inter, psum, tsum):
        return (inter + self.eps) / (psum + tsum - inter + self.eps)


class FocalLoss(BuiltLoss):
    """Focal loss (Lin et al. 2017).

    Categorical (C ≥ 2, source softmax / log_softmax / logits):
    loss = −Σ w_c·t_c·(1 − p_c)^γ·log p_c / Σ w_c·t_c (sums over batch, pixels and channels;
    with one-hot targets: the mean over pixels of −w_y·(1 − p_y)^γ·log p_y, normalised like a
    weighted ``nll_loss``; γ = 0 gives ``nll_loss``). ``alpha`` scales it.

    Binary (source sigmoid, or C = 1), per element:
    l = −[α·t·(1 − p)^γ·log p + (1 − α)·(1 − t)·p^γ·log(1 − p)] (α-terms omitted when alpha is
    unset); loss = Σ w_c·l / Σ w_c over all elements (the plain mean without weights) —
    torchvision's ``sigmoid_focal_loss`` with reduction "mean".
    """

    name = "Focal"
    function_label = "Focal loss"

    def __init__(self, where, *, gamma: float = 2.0, alpha: float | None = None, **kw) -> None:
        super().__init__(where, **kw)
        self.gamma = gamma
        self.alpha = alpha

    def extra_rows(self):
        rows = [("Source", self.source), ("Gamma", fmt_g(self.gamma))]
        if self.alpha is not None:
            rows.append(("Alpha", fmt_g(self.alpha)))
        return rows + [("Weight", fmt_g(self.weight))]

    def forward(self, output, target):
        self._check_dense(output)
        w = self._weight(output)
        t = self._dense_target(output, target)
        shape = [1, -1] + [1] * (output.dim() - 2)
        g = self.gamma
        if self._binary(output):
            if self.source == "logits":
                logp, log1mp = F.logsigmoid(output), F.logsigmoid(-output)
                p = torch.sigmoid(output)
            else:
                p = self._probs(output)
                logp = p.clamp_min(_TINY).log()
                log1mp = (1.0 - p).clamp_min(_TINY).log()
            pos = t * (1.0 - p).pow(g) * logp
            neg = (1.0 - t) * p.pow(g) * log1mp
            if self.alpha is not None:
                pos, neg = self.alpha * pos, (1.0 - self.alpha) * neg
            el = -(pos + neg)
            if w is None:
                return el.mean()
            wb = w.view(shape).expand_as(el)
            return (wb * el).sum() / wb.sum()
        if self.source == "log_softmax":
            logp, p = output, output.exp()
        elif self.source == "logits":
            logp = output.log_softmax(dim=1)
            p = logp.exp()
        else:
            p, logp = output, output.clamp_min(_TINY).log()
        wt = t if w is None else t * w.view(shape)
        loss = -(wt * (1.0 - p).pow(g) * logp).sum() / wt.sum().clamp_min(_TINY)
        return loss if self.alpha is None else self.alpha * loss


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors
    (Berman et al. 2018, Alg. 1), along the last dimension: with g = ground truth sorted by
    decreasing error, J_i = 1 − (Σg − cumsum(g)_i)/(Σg + cumsum(1 − g)_i), grad_i = J_i − J_{i−1}
    (grad_1 = J_1)."""
    gts = gt_sorted.sum(-1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(-1)
    union = gts + (1.0 - gt_sorted).cumsum(-1)
    jaccard = 1.0 - intersection / union
    if gt_sorted.shape[-1] > 1:
        jaccard = torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)
    return jaccard


class LovaszLoss(BuiltLoss):
    """Lovász losses (Berman, Rannen Triki, Blaschko, CVPR 2018), computed over the whole batch
    (pixels of all images pooled, the paper's "per-batch" variant).

    * Multi-class (C ≥ 2, source softmax / log_softmax / logits): Lovász-softmax — for each class
      c present in the target, errors e_i = |fg_i − p_i(c)| sorted decreasingly, loss_c =
      ⟨e_sorted, lovasz_grad(fg_sorted)⟩; loss = mean over present classes (0 if none).
    * Binary (source sigmoid, or C = 1): Lovász hinge on the logits s = log(p/(1 − p)) (the raw
      output for source logits): labels y ∈ {0, 1} (target ≥ 0.5), errors 1 − s·(2y − 1) sorted
      decreasingly, loss = ⟨relu(e_sorted), lovasz_grad(y_sorted)⟩; averaged over channels.
    """

    name = "Lovasz"
    function_label = "Lovasz loss"

    def extra_rows(self):
        return [("Source", self.source)]

    def forward(self, output, target):
        self._check_dense(output)
        t = self._dense_target(output, target)
        if self._binary(output):
            if self.source == "logits":
                s = output
            else:
                p = self._probs(output).clamp(_TINY, 1.0 - 1e-7)
                s = p.log() - (-p).log1p()
            labels = (_channel_rows(t) >= 0.5).to(s.dtype)
            errors = 1.0 - _channel_rows(s) * (2.0 * labels - 1.0)
            errors_sorted, perm = torch.sort(errors, dim=1, descending=True)
            grad = lovasz_grad(labels.gather(1, perm))
            return (F.relu(errors_sorted) * grad).sum(1).mean()
        fg = _channel_rows(t)
        errors = (fg - _channel_rows(self._probs(output))).abs()
        errors_sorted, perm = torch.sort(errors, dim=1, descending=True)
        grad = lovasz_grad(fg.gather(1, perm))
        per_class = (errors_sorted * grad).sum(1)
        present = (fg.sum(1) > 0).to(per_class.dtype)      # classes='present' of the paper
        return (per_class * present).sum() / present.sum().clamp_min(1.0)


# ---------------------------------------------------------------------------------------------
# Registry and builders
# ---------------------------------------------------------------------------------------------

#: name → ``builder(reader: OptionReader, where: str, app: str | None) -> BuiltLoss``
LOSSES = Registry("loss function")


def _weight(r: OptionReader) -> list[float] | None:
    w = r.number_list("weight", lo=0.0)
    if w is not None and sum(w) <= 0:
        r.error("weight", f"at least one weight must be > 0 (got {fmt_g(w)})")
        return None
    return w


def _source(r: OptionReader, default: str) -> str:
    return r.choice("source", default, SOURCES)


@LOSSES.register("NLL")
def _nll(r: OptionReader, where: str, app: str | None) -> BuiltLoss:
    return NLLLoss(where, weight=_weight(r), ignore_index=r.integer_or_none("ignore_index"))


@LOSSES.register("BCE")
def _bce(r, where, app):
    return BCELoss(where, source=_source(r, "sigmoid"))


@LOSSES.register("MSE")
def _mse(r, where, app):
    return MSELoss(where)


def _overlap(cls: type[_OverlapLoss]) -> Callable[..., BuiltLoss]:
    def build(r, where, app):
        return cls(where, source=_source(r, "softmax"), eps=r.number("eps", 1e-7, lo=0.0),
                   weight=_weight(r))
    return build


LOSSES.register("Dice", _overlap(DiceLoss))
LOSSES.register("Jaccard", _overlap(JaccardLoss))


@LOSSES.register("Focal")
def _focal(r, where, app):
    return FocalLoss(where, source=_source(r, "softmax"), gamma=r.number("gamma", 2.0, lo=0.0),
                     alpha=r.number("alpha", None, lo=0.0, hi=1.0), weight=_weight(r))


@LOSSES.register("Lovasz")
def _lovasz(r, where, app):
    return LovaszLoss(where, source=_source(r, "softmax"))


#: losses that belong to an application other than ``dnn`` (SPEC §3.8, §8): their builders are
#: registered in :data:`LOSSES` by the application's package (``rmldnn_py.<app>``).
LOSS_APPS = {"Wasserstein": "gan", "YOLOv3": "obj",
             **{name: "pde" for name in PDE_LOSSES}}


def check_loss_app(function: str, app: str, accepted: Sequence[str] | None,
                   where: str = "neural_network.loss.function") -> None:
    """Check that loss ``function`` (canonical name) may be used with ``--app=<app>``.

    Args:
        accepted: the application's losses (None: every loss that belongs to no other app).

    Raises:
        ConfigError: ``loss function 'Poisson2D_PDE' requires --app=pde`` or ``loss function
            'NLL' cannot be used with --app=pde (expected one of: ...)``.
    """
    owner = LOSS_APPS.get(function, "dnn")
    if accepted is not None:
        if function not in accepted:
            needs = f"; it requires --app={owner}" if owner not in ("dnn", app) else ""
            raise ConfigError(f"{where}: loss function '{function}' cannot be used with "
                              f"--app={app} (expected one of: {', '.join(accepted)}){needs}")
    elif owner != app:
        raise ConfigError(f"{where}: loss function '{function}' requires --app={owner}")


def build_loss(cfg: LossConfig, where: str = "neural_network.loss",
               app: str | None = None) -> BuiltLoss:
    """Create the loss of ``cfg`` (``function`` looked up case-insensitively).

    Args:
        cfg: the loss section.
        where: JSON path of the section, optionally prefixed by the config file.
        app: the ``--app`` value when known (a loss of another application is refused; the
            application's own check is :meth:`rmldnn_py.engine.app.Application.check_config`).

    Raises:
        ConfigError: unknown function (valid names and the closest one), invalid option values
            (``<where>.<key>: ...``), or a function that needs another ``--app``.
    """
    if app is not None and cfg.function in LOSS_APPS and LOSS_APPS[cfg.function] != app:
        check_loss_app(cfg.function, app, None, where=f"{where}.function")
    builder = LOSSES.get(cfg.function, where=f"{where}.function")
    name = LOSSES.canonical(cfg.function)
    reader = OptionReader(cfg.options, where, f"loss function '{name}'")
    reader.accept("function")
    loss = builder(reader, where, app)
    loss.warnings = reader.finish()
    return loss
