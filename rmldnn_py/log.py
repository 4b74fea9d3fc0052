"""Standard-output formatting of SPEC §7.2: timestamped lines, block headers, key/value rows.

Every line is ``[YYYY-Mon-DD HH:MM:SS.ffffff] <message>`` in local time, flushed at once. Only
rank 0 prints (``Logger(enabled=False)`` on other ranks). Numbers in blocks use C++ stream default
formatting, i.e. ``%g`` (:func:`fmt_g`).
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from typing import Any, Iterable, TextIO

SEPARATOR = "-" * 45
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def timestamp(now: _dt.datetime | None = None) -> str:
    """``[2022-Mar-24 21:44:12.182169]`` for ``now`` (default: the current local time)."""
    t = now or _dt.datetime.now()
    return (f"[{t.year:04d}-{_MONTHS[t.month - 1]}-{t.day:02d} "
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}]")


def block_header(title: str) -> str:
    """Title padded with dashes to 45 characters, left dashes = ceil((43 - len)/2)
    (``----------------- Device(s) -----------------``)."""
    room = 43 - len(title)
    left = max(0, math.ceil(room / 2))
    right = max(0, room - left)
    return f"{'-' * left} {title} {'-' * right}"


def fmt_g(value: Any) -> str:
    """C++-stream-like formatting of a config value: numbers ``%g`` (``1e-08``, ``0.00392157``),
    ``None`` → ``None``, lists → ``[a, b]``, bools → ``0``/``1``; strings unchanged."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "%g" % value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_g(v) for v in value) + "]"
    return str(value)


def kv_row(label: str, value: str, width: int, indent: int = 3) -> str:
    """``   Learning rate: 0.01`` — label left-justified to ``width``, then ``: `` and the value."""
    return f"{' ' * indent}{label.ljust(width)}: {value}"


class Logger:
    """Writes timestamped lines to ``stream`` (stdout) when ``enabled`` (rank 0 only)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream

    def line(self, message: str = "") -> None:
        if not self.enabled:
            return
        out = self.stream or sys.stdout
        out.write(f"{timestamp()} {message}\n")
        out.flush()

    def separator(self) -> None:
        self.line(SEPARATOR)

    def header(self, title: str) -> None:
        self.line(block_header(title))

    def rows(self, rows: Iterable[tuple[str, str]], width: int, indent: int = 3) -> None:
        for label, value in rows:
            self.line(kv_row(label, value, width, indent))

    def block(self, title: str, rows: Iterable[tuple[str, str]], width: int,
              close: bool = True) -> None:
        """A header, its key/value rows, and (if ``close``) a closing separator."""
        self.header(title)
        self.rows(rows, width)
        if close:
            self.separator()

    def warning(self, message: str) -> None:
        self.line(f"WARNING: {message}")
