"""One small registry class used for layers, activations, optimizers, schedulers, losses,
transforms and loaders.

Adding an entry is one decorated function or class::

    OPTIMIZERS = Registry("optimizer")

    @OPTIMIZERS.register("Adam")
    class AdamEntry: ...

Lookups are case-insensitive when ``case_insensitive=True`` (rmldnn config words: ``adam`` and
``Adam`` are the same) and exact otherwise (Keras ``class_name``). Registering a name twice is an
error; an unknown name raises ``error_cls`` with the valid names and the closest match.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterator

from .errors import ConfigError, RmldnnError


def closest(name: str, candidates: list[str]) -> str | None:
    """The candidate closest to ``name`` (difflib ratio >= 0.6, case-insensitive), or None."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


class Registry:
    """Maps names to objects.

    Args:
        kind: what the entries are, used in error messages (``"optimizer"``, ``"layer type"``).
        case_insensitive: look names up ignoring case.
        error_cls: the :class:`RmldnnError` subclass raised for unknown names.
    """

    def __init__(self, kind: str, case_insensitive: bool = True,
                 error_cls: type[RmldnnError] = ConfigError) -> None:
        self.kind = kind
        self.case_insensitive = case_insensitive
        self.error_cls = error_cls
        self._entries: dict[str, tuple[str, Any]] = {}

    def _key(self, name: str) -> str:
        return name.lower() if self.case_insensitive else name

    def register(self, name: str, obj: Any = None, aliases: tuple[str, ...] = ()) -> Any:
        """Register ``obj`` under ``name`` (and ``aliases``); usable as a decorator when ``obj`` is None.

        Raises:
            ValueError: the name (or an alias) is already registered (a programming error).
        """

        def add(o: Any) -> Any:
            for n in (name, *aliases):
                key = self._key(n)
                if key in self._entries:
                    raise ValueError(f"{self.kind} '{n}' is registered twice")
                self._entries[key] = (name, o)
            return o

        if obj is None:
            return add
        return add(obj)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._entries

    def canonical(self, name: str, where: str = "") -> str:
        """The registered spelling of ``name`` (``adam`` → ``Adam``). Raises like :meth:`get`."""
        return self._lookup(name, where)[0]

    def get(self, name: str, where: str = "") -> Any:
        """The object registered under ``name``.

        Args:
            where: prefix for the error message, e.g. ``"config.json: neural_network.optimizer.type"``.

        Raises:
            error_cls: unknown name; the message lists the valid names and the closest match.
        """
        return self._lookup(name, where)[1]

    def _lookup(self, name: str, where: str) -> tuple[str, Any]:
        try:
            return self._entries[self._key(name)]
        except (KeyError, AttributeError):
            pass
        names = self.names()
        hint = closest(str(name), names)
        msg = f"unknown {self.kind} '{name}' (expected one of: {', '.join(names)})"
        if hint:
            msg += f". Did you mean '{hint}'?"
        raise self.error_cls(f"{where}: {msg}" if where else msg)

    def names(self) -> list[str]:
        """Registered canonical names (aliases excluded), in registration order."""
        seen: dict[str, None] = {}
        for canonical_name, _ in self._entries.values():
            seen.setdefault(canonical_name, None)
        return list(seen)

    def items(self) -> Iterator[tuple[str, Any]]:
        """(canonical name, object) pairs, aliases excluded."""
        done = set()
        for canonical_name, obj in self._entries.values():
            if canonical_name not in done:
                done.add(canonical_name)
                yield canonical_name, obj

    def __len__(self) -> int:
        return len(self.names())


Factory = Callable[..., Any]
