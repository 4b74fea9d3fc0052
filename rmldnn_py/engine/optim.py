"""Optimizers (SPEC §3.6, §6.1), the gradient norm ``|g|`` (SPEC §7.2.4) and the option reader
shared by the optimizer, scheduler and loss registries.

Usage::

    built = build_optimizer(cfg.optimizer, net.parameters(), "neural_network.optimizer")
    built.optimizer          # a torch.optim.Optimizer
    built.rows               # Optimizer block rows (SPEC §7.2.3), label width built.label_width
    built.is_closure_based   # True for Hessian (L-BFGS): call optimizer.step(closure)
    built.warnings           # one line per unknown option key (printed as warnings, not fatal)

Adding an optimizer is one :class:`OptimizerEntry` registered in :data:`OPTIMIZERS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..config.types import OptimizerConfig
from ..errors import ConfigError
from ..log import fmt_g
from ..registry import Registry, closest

__all__ = ["OPTIMIZERS", "OptimizerEntry", "BuiltOptimizer", "build_optimizer", "grad_norm",
           "LARS", "LAMB", "OptionReader", "OPTIMIZER_LABEL_WIDTH"]

OPTIMIZER_LABEL_WIDTH = 13

# Upper bound of ``learning_rate``. Training runs in float32 (largest value ~3.4e38): torch
# refuses a larger rate at the first step ("value cannot be converted to type float without
# overflow"), and rates far above any published schedule (LARS/LAMB large-batch rates are
# ~10-100, L-BFGS uses 1) only turn the weights into inf/NaN after one step. A typo such as
# ``1e300`` is reported before training instead.
MAX_LEARNING_RATE = 1e6


# --------------------------------------------------------------------------------------------
# Option reading (shared with schedulers.py and losses.py)
# --------------------------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class OptionReader:
    """Reads typed values out of a section's ``options`` mapping, collecting every problem.

    Each getter returns the (converted) value, or the default when the value is invalid; the
    problems are raised together by :meth:`finish` as one single-line :class:`ConfigError`
    (``neural_network.optimizer.learning_rate: must be >= 0 (got -0.1)``). Keys never read are
    reported by :meth:`unknown_warnings`.

    Args:
        options: the user's keys of the section.
        where: JSON path of the section (optionally prefixed ``"config.json: "``).
        what: what the section is, for the unknown-key warning (``"optimizer 'Adam'"``).
    """

    def __init__(self, options: Mapping[str, Any], where: str, what: str) -> None:
        self.options = dict(options or {})
        self.where = where
        self.what = what
        self.errors: list[str] = []
        self.known: list[str] = []

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.path(key)}: {message}")

    def _take(self, key: str, default: Any, required: bool) -> tuple[bool, Any]:
        if key not in self.known:
            self.known.append(key)
        if key not in self.options or self.options[key] is None:
            if required:
                self.error(key, "required key is missing")
            return False, default
        return True, self.options[key]

    def number(self, key: str, default: float | None, *, required: bool = False,
               lo: float | None = None, hi: float | None = None, lo_open: bool = False,
               hi_open: bool = False) -> float | None:
        """A float within [lo, hi] (open ends with ``lo_open``/``hi_open``)."""
        present, v = self._take(key, default, required)
        if not present:
            return default
        if not _is_number(v) or not math.isfinite(float(v)):
            self.error(key, f"must be a number (got {v!r})")
            return default
        v = float(v)
        if ((lo is not None and (v < lo or (lo_open and v == lo)))
                or (hi is not None and (v > hi or (hi_open and v == hi)))):
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            lo_s = fmt_g(float(lo)) if lo is not None else "-inf"
            hi_s = fmt_g(float(hi)) if hi is not None else "inf"
            if hi is None:
                rng = f"> {lo_s}" if lo_open else f">= {lo_s}"
            else:
                rng = f"in {left}{lo_s}, {hi_s}{right}"
            self.error(key, f"must be {rng} (got {fmt_g(v)})")
            return default
        return v

    def integer(self, key: str, default: int | None, *, required: bool = False,
                lo: int | None = None) -> int | None:
        """An int >= lo (an integral float such as ``2000.0`` is accepted)."""
        present, v = self._take(key, default, required)
        if not present:
            return default
        if _is_number(v) and float(v).is_integer():
            v = int(v)
        else:
            self.error(key, f"must be an integer (got {v!r})")
            return default
        if lo is not None and v < lo:
            self.error(key, f"must be >= {lo} (got {v})")
            return default
        return v

    def boolean(self, key: str, default: bool) -> bool:
        """A JSON boolean (0/1 are accepted too)."""
        present, v = self._take(key, default, False)
        if not present:
            return default
        if isinstance(v, bool):
            return v
        if _is_number(v) and v in (0, 1):
            return bool(v)
        self.error(key, f"must be true or false (got {v!r})")
        return default

    def number_list(self, key: str, *, lo: float | None = None,
                    integers: bool = False, required: bool = False) -> list | None:
        """A non-empty list of numbers (ints when ``integers``), each >= lo."""
        present, v = self._take(key, None, required)
        if not present:
            return None
        kind = "integers" if integers else "numbers"
        if (not isinstance(v, (list, tuple)) or not v
                or not all(_is_number(x) and math.isfinite(float(x)) for x in v)
                or (integers and not all(float(x).is_integer() for x in v))):
            self.error(key, f"must be a non-empty list of {kind} (got {v!r})")
            return None
        out = [int(x) for x in v] if integers else [float(x) for x in v]
        if lo is not None and any(x < lo for x in out):
            self.error(key, f"all values must be >= {fmt_g(lo)} (got {fmt_g(out)})")
            return None
        return out

    def choice(self, key: str, default: str, choices: Mapping[str, str]) -> str:
        """A case-insensitive word; ``choices`` maps accepted lower-case spellings to the
        canonical value."""
        present, v = self._take(key, default, False)
        if not present:
            return default
        if isinstance(v, str) and v.lower() in choices:
            return choices[v.lower()]
        names = sorted(set(choices.values()))
        msg = f"must be one of: {', '.join(names)} (got {v!r})"
        hint = closest(str(v), list(choices)) if isinstance(v, str) else None
        if hint:
            msg += f". Did you mean '{choices[hint]}'?"
        self.error(key, msg)
        return default

    def integer_or_none(self, key: str) -> int | None:
        present, v = self._take(key, None, False)
        if not present:
            return None
        if _is_number(v) and float(v).is_integer():
            return int(v)
        self.error(key, f"must be an integer (got {v!r})")
        return None

    def accept(self, *keys: str) -> None:
        """Mark keys as known without reading them."""
        for k in keys:
            if k not in self.known:
                self.known.append(k)

    def unknown_warnings(self) -> list[str]:
        """One line per key that no getter read: ``<path>: unknown key for <what> (ignored)``."""
        out = []
        for key in self.options:
            if key in self.known:
                continue
            msg = f"{self.path(key)}: unknown key for {self.what} (ignored)"
            hint = closest(key, self.known)
            if hint:
                msg += f". Did you mean '{hint}'?"
            out.append(msg)
        return out

    def finish(self) -> list[str]:
        """Raise the collected errors (one line, ``; ``-separated); else return the warnings."""
        if self.errors:
            raise ConfigError("; ".join(self.errors))
        return self.unknown_warnings()


# --------------------------------------------------------------------------------------------
# Custom optimizers: LARS and LAMB (SPEC §6.1)
# --------------------------------------------------------------------------------------------

def _trust(num: torch.Tensor, den: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """scale·num/den, or 1 where num or den is 0."""
    ok = (num > 0) & (den > 0)
    return torch.where(ok, scale * num / torch.where(ok, den, torch.ones_like(den)),
                       torch.ones_like(num))


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017), SPEC §6.1.

    Per parameter tensor w with raw gradient g: τ = η·‖w‖/(‖g‖ + wd·‖w‖) (τ = 1 if ‖w‖ or ‖g‖
    is 0); d = lr·τ·(g + wd·w); then the SGD momentum update with learning rate 1:
    buf ← d (first step) or momentum·buf + (1 − dampening)·d; w ← w − (d + momentum·buf) with
    Nesterov, else w ← w − buf (w ← w − d without momentum). The learning rate sits inside the
    momentum buffer, as in the paper (identical to torch's SGD convention for a constant lr).
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, eta: float = 1e-3) -> None:
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, eta=eta)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mom, damp = group["lr"], group["momentum"], group["dampening"]
            wd, nesterov, eta = group["weight_decay"], group["nesterov"], group["eta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                w_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(g)
                tau = _trust(w_norm, g_norm + wd * w_norm, eta)
                d = g.add(p, alpha=wd) if wd != 0 else g.clone()
                d.mul_(tau * lr)
                if mom != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.clone()
                    else:
                        buf.mul_(mom).add_(d, alpha=1 - damp)
                    d = d.add(buf, alpha=mom) if nesterov else buf
                p.sub_(d)
        return loss


class LAMB(torch.optim.Optimizer):
    """Layer-wise Adaptive Moments (You et al. 2019), SPEC §6.1.

    m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; m̂ = m/(1−β1^t); v̂ = v/(1−β2^t) (with AMSGrad
    the running maximum of v is used); r = m̂/(√v̂ + eps) + wd·w; τ = ‖w‖/‖r‖ (1 if either is 0);
    w ← w − lr·τ·r.
    """

    def __init__(self, params, lr: float = 0.01, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            wd, amsgrad = group["weight_decay"], group["amsgrad"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if amsgrad:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                if amsgrad:
                    torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                    v = state["max_exp_avg_sq"]
                m_hat = m / (1 - b1 ** t)
                v_hat = v / (1 - b2 ** t)
                r = m_hat / (v_hat.sqrt() + eps)
                if wd != 0:
                    r.add_(p, alpha=wd)
                tau = _trust(torch.linalg.vector_norm(p), torch.linalg.vector_norm(r))
                p.sub_(r * (tau * lr))
        return loss


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Opt:
    """One hyper-parameter: config key, printed label, default and kind.

    kind: ``"lr"`` (>= 0), ``"nonneg"`` (>= 0), ``"any"`` (finite), ``"beta"`` ([0, 1)),
    ``"unit"`` ([0, 1]), ``"bool"``, ``"count"`` (int >= 1).
    """

    key: str
    label: str
    default: Any
    kind: str = "nonneg"


@dataclass(frozen=True)
class OptimizerEntry:
    """A registered optimizer type.

    Attributes:
        printed: the ``Type`` row value (``RMSProp`` for ``RMSprop``).
        opts: hyper-parameters in Optimizer-block row order.
        factory: ``factory(params, values) -> torch.optim.Optimizer``; ``values`` maps keys to
            checked values.
        closure_based: ``step`` needs a closure (L-BFGS).
        hidden: extra accepted keys, not printed: key → default.
    """

    printed: str
    opts: tuple[Opt, ...]
    factory: Callable[[list, dict], torch.optim.Optimizer]
    closure_based: bool = False
    hidden: tuple[Opt, ...] = ()


@dataclass
class BuiltOptimizer:
    """What :func:`build_optimizer` returns."""

    optimizer: torch.optim.Optimizer
    type: str
    rows: list[tuple[str, str]]
    values: dict[str, Any]
    is_closure_based: bool = False
    warnings: list[str] = field(default_factory=list)
    label_width: int = OPTIMIZER_LABEL_WIDTH


OPTIMIZERS = Registry("optimizer")

_LR = Opt("learning_rate", "Learning rate", 0.01, "lr")
_SGD_OPTS = (_LR, Opt("momentum", "Momentum", 0.0), Opt("dampening", "Dampening", 0.0, "any"),
             Opt("weight_decay", "Weight decay", 0.0), Opt("nesterov", "Nesterov", False, "bool"))
_ADAM_OPTS = (_LR, Opt("beta1", "Beta1", 0.9, "beta"), Opt("beta2", "Beta2", 0.999, "beta"),
              Opt("weight_decay", "Weight decay", 0.0), Opt("eps", "Eps", 1e-8),
              Opt("amsgrad", "AMSGrad", False, "bool"))


def _sgd_kwargs(v: dict) -> dict:
    return dict(lr=v["learning_rate"], momentum=v["momentum"], dampening=v["dampening"],
                weight_decay=v["weight_decay"], nesterov=v["nesterov"])


def _adam_kwargs(v: dict) -> dict:
    return dict(lr=v["learning_rate"], betas=(v["beta1"], v["beta2"]), eps=v["eps"],
                weight_decay=v["weight_decay"], amsgrad=v["amsgrad"])


OPTIMIZERS.register("SGD", OptimizerEntry(
    "SGD", _SGD_OPTS, lambda p, v: torch.optim.SGD(p, **_sgd_kwargs(v))))
OPTIMIZERS.register("Adagrad", OptimizerEntry(
    "Adagrad",
    (_LR, Opt("lr_decay", "LR decay", 0.0), Opt("weight_decay", "Weight decay", 0.0)),
    lambda p, v: torch.optim.Adagrad(p, lr=v["learning_rate"], lr_decay=v["lr_decay"],
                                     weight_decay=v["weight_decay"])))
OPTIMIZERS.register("Adam", OptimizerEntry(
    "Adam", _ADAM_OPTS, lambda p, v: torch.optim.Adam(p, **_adam_kwargs(v))))
OPTIMIZERS.register("AdamW", OptimizerEntry(
    "AdamW", _ADAM_OPTS, lambda p, v: torch.optim.AdamW(p, **_adam_kwargs(v))))
OPTIMIZERS.register("RMSprop", OptimizerEntry(
    "RMSProp",
    (_LR, Opt("alpha", "Alpha", 0.99, "unit"), Opt("eps", "Eps", 1e-8),
     Opt("weight_decay", "Weight decay", 0.0), Opt("momentum", "Momentum", 0.0),
     Opt("centered", "Centered", False, "bool")),
    lambda p, v: torch.optim.RMSprop(p, lr=v["learning_rate"], alpha=v["alpha"], eps=v["eps"],
                                     weight_decay=v["weight_decay"], momentum=v["momentum"],
                                     centered=v["centered"])))
OPTIMIZERS.register("LARS", OptimizerEntry(
    "LARS", _SGD_OPTS + (Opt("eta", "Eta", 1e-3),),
    lambda p, v: LARS(p, eta=v["eta"], **_sgd_kwargs(v))))
OPTIMIZERS.register("LAMB", OptimizerEntry(
    "LAMB", _ADAM_OPTS, lambda p, v: LAMB(p, **_adam_kwargs(v))))
OPTIMIZERS.register("Hessian", OptimizerEntry(
    "Hessian",
    (Opt("max_iterations", "Max iterations", 2000, "count"),
     Opt("max_func_eval", "Max func eval", 4000, "count"),
     Opt("absolute_tolerance", "Abs tolerance", 1e-8),
     Opt("relative_tolerance", "Rel tolerance", 1e-8)),
    lambda p, v: torch.optim.LBFGS(p, lr=v["learning_rate"], max_iter=v["max_iterations"],
                                   max_eval=v["max_func_eval"],
                                   tolerance_grad=v["absolute_tolerance"],
                                   tolerance_change=v["relative_tolerance"],
                                   line_search_fn="strong_wolfe"),
    closure_based=True,
    # L-BFGS step length (torch default 1); accepted so a scheduler has an initial value.
    hidden=(Opt("learning_rate", "Learning rate", 1.0, "lr"),)))


def _read(reader: OptionReader, o: Opt) -> Any:
    if o.kind == "bool":
        return reader.boolean(o.key, o.default)
    if o.kind == "count":
        return reader.integer(o.key, o.default, lo=1)
    if o.kind == "lr":
        v = reader.number(o.key, o.default, lo=0.0)
        if v is not None and v > MAX_LEARNING_RATE:
            reader.error(o.key, f"must be <= {fmt_g(MAX_LEARNING_RATE)} (got {fmt_g(v)}): such "
                                f"a rate overflows or turns the float32 weights into inf/NaN at "
                                f"the first step")
            return o.default
        return v
    if o.kind == "nonneg":
        return reader.number(o.key, o.default, lo=0.0)
    if o.kind == "beta":
        return reader.number(o.key, o.default, lo=0.0, hi=1.0, hi_open=True)
    if o.kind == "unit":
        return reader.number(o.key, o.default, lo=0.0, hi=1.0)
    return reader.number(o.key, o.default)


def build_optimizer(cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter],
                    where: str = "neural_network.optimizer") -> BuiltOptimizer:
    """Create the optimizer of ``cfg`` over the parameters that require gradients.

    Args:
        cfg: the optimizer section (``type`` looked up case-insensitively).
        params: model parameters (those with ``requires_grad=False`` are dropped).
        where: JSON path of the section for messages, optionally prefixed by the config file
            (``"config.json: neural_network.optimizer"``).

    Raises:
        ConfigError: unknown type (valid names and the closest one), invalid values
            (``<where>.<key>: ...``, all problems on one line), or no trainable parameter.
    """
    entry: OptimizerEntry = OPTIMIZERS.get(cfg.type, where=f"{where}.type")
    name = OPTIMIZERS.canonical(cfg.type)
    reader = OptionReader(cfg.options, where, f"optimizer '{name}'")
    reader.accept("type", "lr_scheduler")
    values = {o.key: _read(reader, o) for o in entry.opts + entry.hidden}
    if values.get("nesterov") and (values["momentum"] <= 0 or values["dampening"] != 0):
        reader.error("nesterov", "Nesterov momentum requires momentum > 0 and dampening = 0")
    warnings = reader.finish()
    plist = [p for p in params if p.requires_grad]
    if not plist:
        raise ConfigError(f"{where}: the network has no trainable parameters to optimize")
    try:
        optimizer = entry.factory(plist, values)
    except ValueError as exc:  # a torch-side check we did not anticipate
        raise ConfigError(f"{where}: {exc}") from None
    rows = [("Type", entry.printed)] + [(o.label, fmt_g(values[o.key])) for o in entry.opts]
    return BuiltOptimizer(optimizer=optimizer, type=name, rows=rows, values=values,
                          is_closure_based=entry.closure_based, warnings=warnings)


# --------------------------------------------------------------------------------------------
# Gradient norm
# --------------------------------------------------------------------------------------------

def grad_norm(parameters: Iterable[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Global L2 norm of ``.grad`` over the parameters that have one (``|g|``, SPEC §7.2.4).

    Returns a 0-dim float tensor on the gradients' device (0 when no parameter has a gradient).
    Does not synchronise with the device; call ``.item()`` when the value is printed.
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads: Sequence[torch.Tensor] = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)
    if get_total_norm is not None:
        return get_total_norm(grads, norm_type=2.0)
    norms = torch.stack([torch.linalg.vector_norm(g.detach(), 2.0).float() for g in grads])
    return torch.linalg.vector_norm(norms, 2.0)
