"""Watching the evaluation result: best checkpoint and early stopping (rmldnn_py extensions).

``loss`` is better when lower, ``accuracy`` when higher. An evaluation *improves* on the best
value so far when it is better by more than ``min_delta`` (the first evaluation always improves).
Early stopping ends training after ``patience`` consecutive evaluations without improvement
(Keras ``EarlyStopping`` semantics with ``baseline=None``).
"""

from __future__ import annotations

import math
from typing import Any, Optional


class Monitor:
    """Best value of one evaluation quantity.

    Args:
        quantity: ``"loss"`` or ``"accuracy"``.
        min_delta: smallest change counted as an improvement (≥ 0).
    """

    def __init__(self, quantity: str, min_delta: float = 0.0) -> None:
        if quantity not in ("loss", "accuracy"):
            raise ValueError(f"unknown monitored quantity {quantity!r}")
        self.quantity = quantity
        self.min_delta = float(min_delta)
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.waited = 0      # evaluations since the last improvement

    def update(self, epoch: int, loss: Optional[float], accuracy: Optional[float]) -> bool:
        """Record the evaluation of ``epoch``; returns True when it improves on the best.
        A missing or non-finite value never improves."""
        value = loss if self.quantity == "loss" else accuracy
        if value is None or not math.isfinite(value):
            self.waited += 1
            return False
        if self.best is None:
            better = True
        elif self.quantity == "loss":
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self.waited = float(value), int(epoch), 0
        else:
            self.waited += 1
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "best": self.best, "best_epoch": self.best_epoch,
                "waited": self.waited}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("quantity") != self.quantity:
            return     # the config now watches something else: start afresh
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.waited = int(state.get("waited", 0))
