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

Usage::

    sched = build_scheduler(cfg.optimizer.lr_scheduler, built.optimizer,
                            "neural_network.optimizer.lr_scheduler")
    ...                         # epoch 1 runs with sched.current_lr()
    lr = sched.step()           # end of epoch
    if sched.verbose:
        logger.line(sched.message(lr))      # "Learning rate adjusted to 0.005"
"""

from __future__ import annotations

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


def build_scheduler(cfg: SchedulerConfig, optimizer: torch.optim.Optimizer,
                    where: str = "neural_network.optimizer.lr_scheduler") -> BuiltScheduler:
    """Bind the schedule of ``cfg`` to ``optimizer`` and set the epoch-1 learning rate.

    Raises:
        ConfigError: unknown type (with the closest name), missing required key or invalid value
            (``<where>.<key>: ...``, all on one line).
    """
    read = SCHEDULERS.get(cfg.type, where=f"{where}.type")
    name = SCHEDULERS.canonical(cfg.type)
    reader = OptionReader(cfg.options, where, f"lr_scheduler '{name}'")
    reader.accept("type", "verbose")
    factor, rows = read(reader)
    warnings = reader.finish()
    verbose = bool(cfg.verbose)
    rows = [("Type", name)] + rows + [("Verbose", "True" if verbose else "False")]
    return BuiltScheduler(optimizer=optimizer, type=name, factor=factor, rows=rows,
                          verbose=verbose, warnings=warnings)
