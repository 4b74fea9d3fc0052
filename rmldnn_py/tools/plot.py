"""``rmldnn plot <outfile> [<outfile> ...] [--output=DIR] [--data=FILE.json] [--columns=A,B]``:
PNG figures from the log files of one or several runs (issue 13).

``<outfile>`` is the run's ``outfile`` (``out_mnist.txt``), its stem (``out_mnist``) or one of the
log files themselves (``out_mnist_train.txt``/``out_mnist_test.txt``); the logs are
``<stem>_train.txt`` and ``<stem>_test.txt`` (SPEC §7.3; the original rmldnn writes the same
files). Figures (matplotlib, Agg), written to ``--output`` (default: the directory of the first
run's logs), one curve per run with the run's name (the outfile stem) in the legend:

* ``training_loss.png``: training loss against the fractional epoch
  (``(epoch − 1) + batch/num_batches``), every batch as a thin line and a smoothed curve on top;
* ``training_grad_norm.png``: the same for |g| (and ``training_<name>.png`` for every further
  value column);
* ``test_loss.png``, ``test_accuracy.png``: the evaluation loss and accuracy per epoch, with
  markers (``test_<name>.png`` for any other ``Name: value`` pair on the ``_test.txt`` lines).

Smoothing: a debiased exponential moving average (TensorBoard's smoothing),
``s_t = β·s_{t−1} + (1 − β)·y_t``, shown as ``s_t / (1 − β^t)``, with ``β = 1 − 2/(span + 1)``
and ``span = max(1, round(n/25))`` batches for a run of ``n`` batches (about 4 % of the run);
non-finite values are skipped.

Value columns of ``_train.txt`` (``epoch batch frac_epoch seconds v1 v2 …``, no header): two
values are ``loss`` and ``grad_norm`` (the dnn app); otherwise ``value_1 … value_n``;
``--columns=loss_d,loss_g`` names them. Every column whose name starts with ``loss`` goes into
``training_loss.png`` (the first column when none does); each other column gets its own figure.

``--data=FILE.json`` writes the plotted series, read back from the figures' lines:
``{"figures": {"training_loss.png": [{"run", "column", "kind": "raw"|"smoothed"|"test",
"x": [...], "y": [...]}, ...], ...}}`` (non-finite numbers as ``null``).

Errors (one line, exit 1): a missing log, an empty log, a malformed line (file and line number).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import DataError, UsageError
from . import parse_options

__all__ = ["USAGE", "RunLog", "read_run", "read_train_log", "read_test_log", "ema", "plot_runs",
           "main"]

USAGE = ("usage: rmldnn plot <outfile> [<outfile> ...] [--output=DIR] [--data=FILE.json] "
         "[--columns=NAME,NAME,...]")
HELP = f"""{USAGE}

Draw PNG figures from the <outfile>_train.txt / <outfile>_test.txt logs of one or several runs
(several runs are overlaid, one legend entry per run):
  training_loss.png       training loss against fractional epoch (raw and smoothed)
  training_grad_norm.png  |g| against fractional epoch (raw and smoothed)
  test_loss.png           evaluation loss per epoch
  test_accuracy.png       evaluation accuracy per epoch

options:
  --output=DIR       where the figures go (default: the directory of the first run's logs)
  --data=FILE.json   also write the plotted series as JSON
  --columns=A,B,...  names of the value columns of _train.txt (default: loss,grad_norm)
"""

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_PAIR = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\s*[:=]\s*(" + _NUMBER + r")(?![\w.])", re.IGNORECASE)
_INT = re.compile(r"[-+]?\d+")


@dataclass
class RunLog:
    """The logs of one run.

    Attributes:
        label: legend name (the outfile stem's base name).
        train_path / test_path: the log files (may not exist).
        train: ``(n, 4 + k)`` float64 rows ``epoch batch frac_epoch seconds v1..vk`` (n may be 0).
        columns: the k value-column names.
        test: metric name (``Loss``, ``Accuracy``, …) → ``[(epoch, value), ...]``.
    """

    label: str
    train_path: str
    test_path: str
    train: np.ndarray
    columns: list[str]
    test: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def log_files(outfile: str) -> tuple[str, str, str]:
    """``(stem, train log, test log)`` of an ``<outfile>`` argument (see the module text)."""
    for suffix in ("_train.txt", "_test.txt"):
        if outfile.endswith(suffix):
            stem = outfile[:-len(suffix)]
            return stem, stem + "_train.txt", stem + "_test.txt"
    stem = os.path.splitext(outfile)[0]
    return stem, stem + "_train.txt", stem + "_test.txt"


def _float(tok: str) -> Optional[float]:
    try:
        return float(tok)
    except ValueError:
        return None


def read_train_log(path: str) -> np.ndarray:
    """Rows ``epoch batch frac_epoch seconds v1 .. vk`` (k ≥ 1, the same k on every line; blank
    lines skipped) as a float64 array ``(n, 4 + k)``.

    Raises:
        DataError: unreadable file, or a malformed line (``<path>: line <i>: ...``).
    """
    rows: list[list[float]] = []
    width = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                toks = line.split()
                if not toks:
                    continue
                vals = [_float(t) for t in toks]
                where = f"{path}: line {i}"
                if len(toks) < 5 or any(v is None for v in vals):
                    raise DataError(f"{where}: expected 'epoch batch frac_epoch seconds loss "
                                    f"[grad_norm ...]' (at least 5 numbers), received "
                                    f"'{line.strip()[:80]}'")
                if not (_INT.fullmatch(toks[0]) and _INT.fullmatch(toks[1])):
                    raise DataError(f"{where}: epoch and batch must be integers, received "
                                    f"'{toks[0]} {toks[1]}'")
                if width is None:
                    width = len(vals)
                elif len(vals) != width:
                    raise DataError(f"{where}: {len(vals)} columns, but the first line has {width}")
                rows.append(vals)  # type: ignore[arg-type]
    except OSError as exc:
        raise DataError(f"{path}: cannot read log: {exc.strerror or exc}") from None
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), width or 5)


def read_test_log(path: str) -> dict[str, list[tuple[int, float]]]:
    """``Epoch: <e> Loss: <l> [Accuracy: <a>]`` lines → ``{"Loss": [(e, l), ...], "Accuracy":
    [...]}``. Lenient like the tutorials' parsers: the epoch is the ``Epoch`` value (or the
    first integer of the line), every other ``Name: number`` / ``Name = number`` pair is a metric.

    Raises:
        DataError: unreadable file, or a line without an epoch or without a value.
    """
    out: dict[str, list[tuple[int, float]]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                pairs = _PAIR.findall(line)
                epoch = None
                metrics = []
                bad = False
                for key, value in pairs:
                    if key.lower() == "epoch" and epoch is None:
                        bad = not _INT.fullmatch(value)
                        epoch = None if bad else int(value)
                    else:
                        metrics.append((key, float(value)))
                if epoch is None and not bad:
                    m = _INT.search(line)
                    epoch = int(m.group()) if m else None
                if epoch is None or not metrics:
                    raise DataError(f"{path}: line {i}: expected 'Epoch: <e> Loss: <loss> "
                                    f"[Accuracy: <acc>]', received '{line.strip()[:80]}'")
                for key, value in metrics:
                    out.setdefault(key, []).append((int(epoch), value))
    except OSError as exc:
        raise DataError(f"{path}: cannot read log: {exc.strerror or exc}") from None
    return out


def _column_names(k: int, given: Optional[list[str]], path: str) -> list[str]:
    if given is not None:
        if len(given) != k:
            raise DataError(f"{path}: {k} value column{'s' if k != 1 else ''}, but --columns "
                            f"names {len(given)}")
        return list(given)
    if k == 2:
        return ["loss", "grad_norm"]
    if k == 1:
        return ["loss"]
    return [f"value_{i}" for i in range(1, k + 1)]


def read_run(outfile: str, columns: Optional[list[str]] = None) -> RunLog:
    """Read the logs of one run.

    Raises:
        DataError: no log file, no data line in any of them, a malformed line.
    """
    stem, train_path, test_path = log_files(outfile)
    given = outfile if outfile.endswith(("_train.txt", "_test.txt")) else None
    if given and not os.path.isfile(given):
        raise DataError(f"{given}: log file not found")
    has_train, has_test = os.path.isfile(train_path), os.path.isfile(test_path)
    if not (has_train or has_test):
        raise DataError(f"{train_path}: log file not found (nor {os.path.basename(test_path)}; "
                        f"expected from '{outfile}')")
    train = read_train_log(train_path) if has_train else np.zeros((0, 6))
    test = read_test_log(test_path) if has_test else {}
    if train.shape[0] == 0 and not test:
        raise DataError(f"{train_path if has_train else test_path}: empty log (no data lines)")
    names = _column_names(train.shape[1] - 4, columns, train_path) if train.shape[0] else []
    return RunLog(label=os.path.basename(stem) or stem, train_path=train_path,
                  test_path=test_path, train=train, columns=names, test=test)


def ema(y: np.ndarray, span: Optional[int] = None) -> np.ndarray:
    """Debiased exponential moving average of ``y`` (see the module text); ``span`` defaults to
    ``max(1, round(len(y)/25))``. Non-finite inputs are skipped (their output is NaN)."""
    y = np.asarray(y, dtype=np.float64)
    if span is None:
        span = max(1, round(len(y) / 25))
    beta = 1.0 - 2.0 / (span + 1.0)
    out = np.full_like(y, np.nan)
    s, w = 0.0, 0.0
    for i, v in enumerate(y):
        if not math.isfinite(v):
            continue
        s = beta * s + (1.0 - beta) * v
        w = beta * w + (1.0 - beta)      # = 1 − β^t over the finite values seen
        out[i] = s / w
    return out


# ------------------------------------------------------------------------------------------
# figures


def _unique_labels(runs: list[RunLog]) -> list[str]:
    labels = [r.label for r in runs]
    if len(set(labels)) == len(labels):
        return labels
    return [os.path.splitext(r.train_path)[0][:-len("_train")] for r in runs]


def _new_figure(title: str, xlabel: str, ylabel: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


_PRETTY = {"loss": "loss", "grad_norm": "|g| (gradient L2 norm)"}


def plot_runs(runs: list[RunLog], outdir: str,
              emit: Optional[Callable[[str], None]] = None) -> dict[str, list[dict]]:
    """Draw and save the figures of the module text into ``outdir``; ``emit(path)`` is called
    after each file is written.

    Returns:
        figure file name → the series plotted in it, read back from the figure's lines
        (``run``, ``column``, ``kind``, ``x``, ``y``), in drawing order.

    Raises:
        DataError: ``outdir`` cannot be created or a figure cannot be written.
    """
    labels = _unique_labels(runs)
    figures: dict[str, tuple] = {}
    colors = [f"C{i % 10}" for i in range(len(runs))]

    # training figures: one per group of columns
    for run, label, color in zip(runs, labels, colors):
        if run.train.shape[0] == 0:
            continue
        loss_cols = [c for c in run.columns if c.lower().startswith("loss")] or run.columns[:1]
        groups = [("training_loss.png", loss_cols)] + [
            (f"training_{_safe(c)}.png", [c]) for c in run.columns if c not in loss_cols]
        x = run.train[:, 2]
        for fname, cols in groups:
            if fname not in figures:
                ylabel = _PRETTY.get(cols[0], cols[0]) if fname != "training_loss.png" else "loss"
                figures[fname] = _new_figure(
                    f"Training {ylabel}", "epoch (fractional)", ylabel)
            _, ax = figures[fname]
            for j, col in enumerate(cols):
                y = run.train[:, 4 + run.columns.index(col)]
                name = label if len(cols) == 1 else f"{label} {col}"
                c = color if len(cols) == 1 else f"C{(colors.index(color) + j) % 10}"
                raw, = ax.plot(x, y, color=c, linewidth=0.6, alpha=0.35)
                raw.set_gid(json.dumps({"run": label, "column": col, "kind": "raw"}))
                sm, = ax.plot(x, ema(y), color=c, linewidth=1.8, label=name)
                sm.set_gid(json.dumps({"run": label, "column": col, "kind": "smoothed"}))

    # evaluation figures: one per metric
    for run, label, color in zip(runs, labels, colors):
        for metric, points in run.test.items():
            fname = f"test_{_safe(metric.lower())}.png"
            if fname not in figures:
                shown = metric.lower() if metric.lower() in ("loss", "accuracy") else metric
                figures[fname] = _new_figure(f"Test {shown}", "epoch", shown)
                figures[fname][1].xaxis.get_major_locator().set_params(integer=True)
            _, ax = figures[fname]
            ep = [p[0] for p in points]
            val = [p[1] for p in points]
            ln, = ax.plot(ep, val, marker="o", markersize=4, color=color, linewidth=1.2, label=label)
            ln.set_gid(json.dumps({"run": label, "column": metric, "kind": "test"}))

    try:
        os.makedirs(outdir or ".", exist_ok=True)
    except OSError as exc:
        raise DataError(f"{outdir}: cannot create the output directory: {exc.strerror or exc}") from None
    from ..io.atomic import atomic_path

    data: dict[str, list[dict]] = {}
    for fname, (fig, ax) in figures.items():
        if len(ax.get_legend_handles_labels()[0]) > 0:
            ax.legend(loc="best", fontsize="small")
        path = os.path.join(outdir, fname)
        try:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png")
        except OSError as exc:
            raise DataError(f"{path}: cannot write figure: {exc.strerror or exc}") from None
        if emit is not None:
            emit(path)
        data[fname] = [dict(json.loads(line.get_gid()),
                            x=np.asarray(line.get_xdata(), dtype=np.float64).tolist(),
                            y=np.asarray(line.get_ydata(), dtype=np.float64).tolist())
                       for line in ax.get_lines() if line.get_gid()]
    return data


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "value"


def _nulls(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nulls(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nulls(v) for v in obj]
    return obj


def main(argv: list[str]) -> int:
    """``rmldnn plot`` entry point (see the module text); returns the exit code.

    Raises:
        UsageError: bad arguments. DataError: bad logs or unwritable outputs.
    """
    opts, args = parse_options(argv, {"output": True, "data": True, "columns": True}, "plot",
                               positional=True)
    if "help" in opts:
        sys.stdout.write(HELP)
        return 0
    if not args:
        raise UsageError(f"plot: no <outfile> given ({USAGE})")
    columns = None
    if opts.get("columns"):
        columns = [c.strip() for c in opts["columns"].split(",")]
        if not all(columns):
            raise UsageError(f"plot: --columns: empty name in '{opts['columns']}'")
    runs = [read_run(a, columns) for a in args]
    outdir = opts.get("output") or os.path.dirname(runs[0].train_path) or "."
    from ..log import Logger

    log = Logger()
    data = plot_runs(runs, outdir, emit=lambda p: log.line(f"Writing figure to file: {p}"))
    if opts.get("data"):
        from ..io.atomic import atomic_path

        try:
            with atomic_path(opts["data"]) as tmp:
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(_nulls({"figures": data}), f)
        except OSError as exc:
            raise DataError(f"{opts['data']}: cannot write: {exc.strerror or exc}") from None
        log.line(f"Writing plotted data to file: {opts['data']}")
    return 0
