"""Learning-rate schedules (SPEC §3.7, §6.2), stepped once at the end of every training epoch.

The learning rate of every parameter group is set in closed form from its initial value
lr₀ (the optimizer's ``learning_rate``) and the number e of completed epochs, so no rounding
accumulates:

================  ============================================
Step              lr₀ · γ^⌊e / step_size⌋
MultiStep         lr₀ · γ^(number of milestones m with m ≤ e)
Exponential       lr₀ · γ^e
Warmup            lr₀ · (f + (1 − f) · min(e, n)/n)
================  ============================================

rmldnn_py extensions built on ``torch.optim.lr_scheduler`` (torch's classes do the arithmetic):

=================  ==================================================================================
ReduceLROnPlateau  ``ReduceLROnPlateau(mode="min", factor, patience, threshold (relative), cooldown,
                   min_lr)`` on the evaluation loss, stepped after every evaluation
Cosine             ``LinearLR(start_factor, total_iters=warmup_epochs)`` then
                   ``CosineAnnealingLR(T_max=num_epochs - warmup_epochs, eta_min=min_lr)``
                   (``SequentialLR``), stepped per epoch
OneCycle           ``OneCycleLR(max_lr, total_steps=num_epochs·num_batches, pct_start,
                   anneal_strategy, div_factor, final_div_factor, cycle_momentum=False)``,
                   stepped after every training batch
=================  ==================================================================================

Usage::

    sched = build_scheduler(cfg.optimizer.lr_scheduler, built.optimizer,
                            "neural_network.optimizer.lr_scheduler",
                            num_epochs=20, steps_per_epoch=469)
    ...                         # epoch 1 runs with sched.current_lr()
    sched.step_batch()          # after each optimizer step (only when sched.per_batch)
    lr = sched.step()           # end of epoch (no-op for OneCycle / ReduceLROnPlateau)
    sched.step_eval(loss)       # after each evaluation (only when sched.on_eval)
    if sched.verbose:
        logger.line(sched.message(lr))      # "Learning rate adjusted to 0.005"
"""

from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..config.types import SchedulerConfig
from ..log import fmt_g
from ..registry import Registry
from .optim import OptionReader

__all__ = ["SCHEDULERS", "BuiltScheduler", "build_scheduler",
           "SCHEDULER_LABEL_WIDTH"]

SCHEDULER_LABEL_WIDTH = 7


@dataclass
class BuiltScheduler:
    """A schedule bound to an optimizer. Constructing it sets the epoch-1 learning rate."""

    optimizer: torch.optim.Optimizer
    type: str
    factor: Callable[[int], float]
    rows: list[tuple[str, str]]
    verbose: bool = True
    warnings: list[str] = field(default_factory=list)
    label_width: int = SCHEDULER_LABEL_WIDTH
    epoch: int = 0
    base_lrs: list[float] = field(default_factory=list)
    per_batch = False       # stepped after every training batch (OneCycle)
    on_eval = False         # stepped after every evaluation with its loss (ReduceLROnPlateau)

    def __post_init__(self) -> None:
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", float(group["lr"]))
        self.base_lrs = [float(g["initial_lr"]) for g in self.optimizer.param_groups]
        self._apply()

    def _apply(self) -> None:
        f = self.factor(self.epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f

    def step(self) -> float:
        """Advance by one completed epoch; returns the new learning rate (first group)."""
        self.epoch += 1
        self._apply()
        return self.current_lr()

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step_batch(self) -> None:
        """Per-batch step (schedules with ``per_batch``)."""

    def step_eval(self, loss: float) -> bool:
        """Step with the evaluation loss (schedules with ``on_eval``); True if the rate changed."""
        return False

    def message(self, lr: float | None = None) -> str:
        """The verbose line ``Learning rate adjusted to <lr %g>``."""
        return f"Learning rate adjusted to {fmt_g(float(self.current_lr() if lr is None else lr))}"

    def state_dict(self) -> dict[str, Any]:
        return {"type": self.type, "epoch": self.epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.base_lrs = [float(x) for x in state.get("base_lrs", self.base_lrs)]
        self._apply()


#: name -> ``read(reader) -> (factor(e), rows between Type and Verbose)``.
SCHEDULERS = Registry("learning-rate scheduler")


def _gamma(r: OptionReader, default: float | None, required: bool = False) -> float:
    return r.number("gamma", default, required=required, lo=0.0, lo_open=True)


@SCHEDULERS.register("Step")
def _step(r: OptionReader):
    gamma = _gamma(r, 0.1)
    size = r.integer("step_size", None, required=True, lo=1)
    size_ = size or 1
    return (lambda e: gamma ** (e // size_),
            [("Gamma", fmt_g(gamma)), ("Step size", fmt_g(size))])


@SCHEDULERS.register("MultiStep")
def _multistep(r: OptionReader):
    gamma = _gamma(r, 0.1)
    ms = r.number_list("milestones", integers=True, lo=0, required=True)
    if ms is not None and any(b <= a for a, b in zip(ms, ms[1:])):
        r.error("milestones", f"must be strictly increasing (got {fmt_g(ms)})")
    ms_ = ms or []
    return (lambda e: gamma ** sum(1 for m in ms_ if m <= e),
            [("Gamma", fmt_g(gamma)), ("Milestones", fmt_g(ms))])


@SCHEDULERS.register("Exponential")
def _exponential(r: OptionReader):
    gamma = _gamma(r, None, required=True)
    g = gamma if gamma is not None else 1.0
    return (lambda e: g ** e, [("Gamma", fmt_g(gamma))])


@SCHEDULERS.register("Warmup")
def _warmup(r: OptionReader):
    n = r.integer("num_epochs", 5, lo=1)
    f = r.number("start_factor", 0.2, lo=0.0, hi=1.0, hi_open=True)
    n_ = n or 1
    return (lambda e: f + (1.0 - f) * min(e, n_) / n_,
            [("Num epochs", fmt_g(n)), ("Start factor", fmt_g(f))])


class TorchScheduler(BuiltScheduler):
    """A ``torch.optim.lr_scheduler`` scheduler behind the :class:`BuiltScheduler` interface."""

    def __init__(self, optimizer, type: str, make, rows, verbose: bool, warnings: list[str],
                 per_batch: bool = False, on_eval: bool = False) -> None:
        self.optimizer = optimizer
        self.type = type
        self.rows = rows
        self.verbose = verbose
        self.warnings = warnings
        self.label_width = SCHEDULER_LABEL_WIDTH
        self.epoch = 0
        self.per_batch = per_batch
        self.on_eval = on_eval
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", float(group["lr"]))
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", UserWarning)
            self.torch = make(optimizer)

    def _step(self, *args) -> None:
        # torch warns when a schedule steps before any optimizer step (an epoch without
        # batches, e.g. resumed after its last batch): the schedule is right regardless
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", UserWarning)
            self.torch.step(*args)

    def factor(self, e: int) -> float:       # (not closed-form)
        raise NotImplementedError

    def step(self) -> float:
        self.epoch += 1
        if not self.per_batch and not self.on_eval:
            self._step()
        return self.current_lr()

    def step_batch(self) -> None:
        if self.per_batch:
            try:
                self._step()
            except ValueError:     # past total_steps (e.g. more batches after a resize): hold
                pass

    def step_eval(self, loss: float) -> bool:
        if not self.on_eval:
            return False
        before = self.current_lr()
        self._step(loss)
        return self.current_lr() != before

    def state_dict(self) -> dict[str, Any]:
        return {"type": self.type, "epoch": self.epoch, "torch": self.torch.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state.get("epoch", 0))
        if "torch" in state:
            self.torch.load_state_dict(state["torch"])
            # the optimizer's lr was restored with the optimizer state; keep them in step
            last = getattr(self.torch, "_last_lr", None)
            if last:
                for group, lr in zip(self.optimizer.param_groups, last):
                    group["lr"] = float(lr)


def _plateau(r: OptionReader, num_epochs: int, steps: int):
    factor = r.number("factor", 0.1, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    patience = r.integer("patience", 10, lo=0)
    threshold = r.number("threshold", 1e-4, lo=0.0)
    cooldown = r.integer("cooldown", 0, lo=0)
    min_lr = r.number("min_lr", 0.0, lo=0.0)
    rows = [("Factor", fmt_g(factor)), ("Patience", fmt_g(patience)),
            ("Threshold", fmt_g(threshold)), ("Cooldown", fmt_g(cooldown)), ("Min lr", fmt_g(min_lr))]

    def make(opt):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=factor or 0.1, patience=patience or 0,
            threshold=threshold or 0.0, threshold_mode="rel", cooldown=cooldown or 0,
            min_lr=min_lr or 0.0)
    return make, rows, dict(on_eval=True)


def _cosine(r: OptionReader, num_epochs: int, steps: int):
    min_lr = r.number("min_lr", 0.0, lo=0.0)
    warm = r.integer("warmup_epochs", 0, lo=0)
    start = r.number("start_factor", 0.2, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if warm is not None and warm >= num_epochs and num_epochs > 0:
        r.error("warmup_epochs", f"must be smaller than num_epochs ({num_epochs}), got {warm}")
    rows = [("Min lr", fmt_g(min_lr)), ("Warmup epochs", fmt_g(warm))]
    if warm:
        rows.append(("Start factor", fmt_g(start)))

    def make(opt):
        w = warm or 0
        cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, num_epochs - w),
                                                         eta_min=min_lr or 0.0)
        if not w:
            return cos
        lin = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start or 0.2, end_factor=1.0,
                                                total_iters=w)
        return torch.optim.lr_scheduler.SequentialLR(opt, [lin, cos], milestones=[w])
    return make, rows, {}


def _onecycle(r: OptionReader, num_epochs: int, steps: int):
    max_lr = r.number("max_lr", None, lo=0.0, lo_open=True)
    pct = r.number("pct_start", 0.3, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    div = r.number("div_factor", 25.0, lo=0.0, lo_open=True)
    final = r.number("final_div_factor", 1e4, lo=0.0, lo_open=True)
    anneal = r.choice("anneal_strategy", "cos", {"cos": "cos", "linear": "linear"})
    total = max(1, num_epochs * steps)
    rows = [("Max lr", fmt_g(max_lr) if max_lr is not None else "learning_rate"),
            ("Pct start", fmt_g(pct)), ("Div factor", fmt_g(div)),
            ("Final div factor", fmt_g(final)), ("Anneal", anneal), ("Total steps", fmt_g(total))]

    def make(opt):
        peak = max_lr if max_lr is not None else [float(g["initial_lr"]) for g in opt.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=peak, total_steps=total, pct_start=pct or 0.3,
            anneal_strategy=anneal, div_factor=div or 25.0, final_div_factor=final or 1e4,
            cycle_momentum=False)
    return make, rows, dict(per_batch=True)


#: schedules built on torch's classes: name -> read(reader, num_epochs, steps_per_epoch)
TORCH_SCHEDULERS = {"ReduceLROnPlateau": _plateau, "Cosine": _cosine, "OneCycle": _onecycle}
for _name, _read in TORCH_SCHEDULERS.items():
    SCHEDULERS.register(_name, _read)


def build_scheduler(cfg: SchedulerConfig, optimizer: torch.optim.Optimizer,
                    where: str = "neural_network.optimizer.lr_scheduler", *,
                    num_epochs: int = 1, steps_per_epoch: int = 1) -> BuiltScheduler:
    """Bind the schedule of ``cfg`` to ``optimizer`` and set the epoch-1 learning rate.

    ``num_epochs`` and ``steps_per_epoch`` (training batches per epoch) size Cosine and OneCycle.

    Raises:
        ConfigError: unknown type (with the closest name), missing required key or invalid value
            (``<where>.<key>: ...``, all on one line).
    """
    read = SCHEDULERS.get(cfg.type, where=f"{where}.type")
    name = SCHEDULERS.canonical(cfg.type)
    reader = OptionReader(cfg.options, where, f"lr_scheduler '{name}'")
    reader.accept("type", "verbose")
    if name in TORCH_SCHEDULERS:
        make, rows, flags = TORCH_SCHEDULERS[name](reader, int(num_epochs), int(steps_per_epoch))
        warnings = reader.finish()
        verbose = bool(cfg.verbose)
        rows = [("Type", name)] + rows + [("Verbose", "True" if verbose else "False")]
        return TorchScheduler(optimizer, name, make, rows, verbose, warnings, **flags)
    factor, rows = read(reader)
    warnings = reader.finish()
    verbose = bool(cfg.verbose)
    rows = [("Type", name)] + rows + [("Verbose", "True" if verbose else "False")]
    return BuiltScheduler(optimizer=optimizer, type=name, factor=factor, rows=rows,
                          verbose=verbose, warnings=warnings)
