"""Sub-commands that work on a run's files: ``rmldnn plot`` (figures from the log files) and
``rmldnn export`` (ONNX). :func:`dispatch` is called by :mod:`rmldnn_py.cli` when the first
argument names a sub-command."""

from __future__ import annotations

from typing import Optional

from ..errors import UsageError

__all__ = ["SUBCOMMANDS", "dispatch", "parse_options"]

SUBCOMMANDS = ("plot", "export")


def dispatch(argv: list[str]) -> int:
    """Run the sub-command ``argv[0]`` with the remaining arguments; returns the exit code."""
    name, rest = argv[0], argv[1:]
    if name == "plot":
        from .plot import main
    elif name == "export":
        from .export import main
    else:  # pragma: no cover - cli checks the name
        raise UsageError(f"unknown sub-command '{name}'")
    return main(rest)


def parse_options(argv: list[str], options: dict[str, bool], command: str,
                  positional: bool = False) -> tuple[dict[str, Optional[str]], list[str]]:
    """Parse ``--name=value`` / ``--name= value`` / ``--name value`` options (the spellings of
    SPEC §2.3) and flags.

    Args:
        options: option name (without ``--``) → whether it takes a value.
        command: the sub-command, for messages.
        positional: whether positional arguments are allowed.

    Returns:
        ``(options given, positional arguments)``; a flag maps to ``""``; ``-h``/``--help``
        maps ``"help"`` to ``""``.

    Raises:
        UsageError: unknown option, missing or repeated value, unexpected argument.
    """
    opts: dict[str, Optional[str]] = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return {"help": ""}, []
        if not arg.startswith("--") or arg == "--":
            if arg.startswith("-") and arg != "-":
                raise UsageError(f"{command}: unknown option '{arg}'")
            if not positional:
                raise UsageError(f"{command}: unexpected argument '{arg}'")
            args.append(arg)
            i += 1
            continue
        name, eq, value = arg[2:].partition("=")
        if name not in options:
            raise UsageError(f"{command}: unknown option '--{name}'")
        if name in opts:
            raise UsageError(f"{command}: option --{name} given twice")
        if not options[name]:
            if eq:
                raise UsageError(f"{command}: option --{name} takes no value")
            opts[name] = ""
            i += 1
            continue
        if not value:
            if i + 1 >= len(argv) or argv[i + 1] == "" or argv[i + 1].startswith("--"):
                raise UsageError(f"{command}: option --{name} needs a value")
            value = argv[i + 1]
            i += 1
        opts[name] = value
        i += 1
    return opts, args
