"""Command line: ``rmldnn [--app=<dnn|pde|gan|obj>] --config=<path>`` (SPEC §2).

Accepted spellings (SPEC §2.3): ``--config=PATH``, ``--config= PATH`` (an argument that is exactly
``--config=`` takes the next argument), ``--config PATH``; likewise for ``--app``; any order.

Exit codes (SPEC §2.4): 0 success, 1 configuration/network/data/runtime error, 2 usage error,
130 interrupted. Errors are one line on stderr, ``rmldnn: error: <what>``; a traceback is shown
only with ``RMLDNN_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback

from . import __version__
from .errors import RmldnnError, UsageError

APPS = ("dnn", "pde", "gan", "obj")
SUBCOMMANDS = ("plot", "export")  # rmldnn_py.tools

USAGE = "usage: rmldnn [--app=<dnn|pde|gan|obj>] --config=<path-to-json>"
HELP = f"""{USAGE}

rmldnn_py {__version__}: code-free, config-driven deep learning on PyTorch.

options:
  --config=PATH   the run configuration (JSON). Also accepted: '--config= PATH', '--config PATH'.
  --app=APP       application: dnn (default), pde (neural PDE solvers), obj (YOLOv3 object
                  detection), gan (Wasserstein GAN)
  -h, --help      show this help and exit
  --version       print the version and exit

sub-commands (each has --help):
  rmldnn plot <outfile> [<outfile> ...] [--output=DIR] [--data=FILE.json]
                  PNG figures of the training/test logs of one or several runs
  rmldnn export --config=PATH --output=MODEL.onnx [--opset=N] [--batch=N]
                  export the network (with checkpoints.load weights) to ONNX, checked in
                  ONNX Runtime

Launch with 'mpirun -np N rmldnn --config=...' for data-parallel training on N processes.
Set RMLDNN_DEBUG=1 to see Python tracebacks on errors.
"""


def parse_args(argv: list[str]) -> dict[str, str]:
    """Parse argv (without the program name) into ``{"config": ..., "app": ...}``.

    Returns ``{"help": ""}`` or ``{"version": ""}`` for those flags.

    Raises:
        UsageError: unknown option, stray positional argument, missing or repeated value.
    """
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return {"help": ""}
        if arg == "--version":
            return {"version": ""}
        name = None
        for key in ("config", "app"):
            flag = f"--{key}"
            if arg == flag or arg == flag + "=":
                if i + 1 >= len(argv) or argv[i + 1] == "" or argv[i + 1].startswith("--"):
                    raise UsageError(f"option {flag} needs a value")
                name, value = key, argv[i + 1]
                i += 1
                break
            if arg.startswith(flag + "="):
                name, value = key, arg[len(flag) + 1:]
                break
        if name is None:
            if arg.startswith("-"):
                raise UsageError(f"unknown option '{arg}'")
            raise UsageError(f"unexpected argument '{arg}'")
        if name in opts:
            raise UsageError(f"option --{name} given twice")
        opts[name] = value
        i += 1
    return opts


def _run(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:  # rmldnn plot ... / rmldnn export ...
        from .tools import dispatch

        return dispatch(argv)
    opts = parse_args(argv)
    if "help" in opts:
        sys.stdout.write(HELP)
        return 0
    if "version" in opts:
        sys.stdout.write(f"rmldnn_py {__version__}\n")
        return 0
    app = opts.get("app", "dnn").lower()
    if app not in APPS:
        raise UsageError(f"invalid --app '{opts['app']}' (expected one of: {', '.join(APPS)})")
    if "config" not in opts:
        raise UsageError("missing --config=<path-to-json>")
    from .engine.app import get_application  # imported late: --help/--version stay instant

    get_application(app)          # an application without implementation fails before the config
    from .config import load_config

    config, warnings = load_config(opts["config"])
    from .engine.run import run  # torch is imported here

    return run(config, app=app, warnings=warnings)


def _exit_on_signal(signum, frame) -> None:
    """SIGINT (exit 130), SIGTERM / SIGUSR1 (128 + signal) outside the training loop (start-up,
    evaluation-only runs, the end of the run): remove the temporary file being written, if any,
    print one line and end the process. (The training loop installs its own handler for SIGTERM
    and SIGUSR1: stop at the next batch and checkpoint.)

    The process ends with ``os._exit``, not an exception: the signal may arrive while native code
    (torch's import, a kernel) runs, where an exception raised by the handler would abort the
    process. Log lines are already on disk (line-buffered); partial HDF5/checkpoint files exist
    only under temporary names, removed here."""
    import signal as _signal

    try:
        from .io.atomic import remove_in_flight

        remove_in_flight()
    except Exception:
        pass
    interrupt = signum == _signal.SIGINT
    try:
        sys.stdout.flush()
        if interrupt:
            sys.stderr.write("rmldnn: interrupted\n")
        else:
            sys.stderr.write(f"rmldnn: stopped by {_signal.Signals(signum).name} "
                             f"(exit code {128 + signum})\n")
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(130 if interrupt else 128 + signum)


def _install_signal_handlers() -> None:
    """The console command's handlers (not installed when :func:`main` is called in-process)."""
    import signal as _signal

    for sig in (_signal.SIGTERM, _signal.SIGUSR1, _signal.SIGINT):
        try:
            _signal.signal(sig, _exit_on_signal)
        except (ValueError, OSError):     # not the main thread (embedded use)
            pass


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    debug = os.environ.get("RMLDNN_DEBUG", "") not in ("", "0")
    try:
        return _run(argv)
    except KeyboardInterrupt:
        sys.stderr.write("rmldnn: interrupted\n")
        from . import distributed

        distributed.on_error(130)
        return 130
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"rmldnn: error: {exc}\n{USAGE}\n")
        return exc.exit_code
    except RmldnnError as exc:
        if debug:
            traceback.print_exc()
            for warning in getattr(exc, "warnings", None) or []:
                sys.stderr.write(f"rmldnn: warning: {warning}\n")
        _report_failure(str(exc), exc.exit_code)
        return exc.exit_code
    except Exception as exc:  # a bug or an unexpected runtime failure: still one line
        if debug:
            traceback.print_exc()
        _report_failure(f"internal error: {type(exc).__name__}: {exc} "
                        "(set RMLDNN_DEBUG=1 for a traceback)")
        return 1


def console_main() -> None:
    """The ``rmldnn`` console script and ``python -m rmldnn_py``: :func:`main`, then end the
    process at once with its exit code.

    Everything the run writes is closed by then (logs, checkpoints, predictions, TensorBoard,
    DataLoader workers; MPI is finalised here), so the interpreter's teardown — seconds of
    garbage collection of torch's objects on a busy machine — is skipped: the exit follows "All
    done" (or a preemption checkpoint) immediately, and a signal arriving during that teardown
    can no longer kill the finished process (exit code −2/−15 instead of its own).
    """
    _install_signal_handlers()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None:
        try:
            if mpi.Is_initialized() and not mpi.Is_finalized():
                mpi.Finalize()
        except Exception:
            pass
    os._exit(int(code) & 0xFF)


def _report_failure(message: str, code: int = 1) -> None:
    """Print the one-line error; in a multi-process run, end every rank (no rank may hang):
    ``distributed.on_error`` does not return there (MPI_Abort, or an immediate exit)."""
    from . import distributed

    prefix = distributed.error_prefix()
    sys.stderr.write(f"rmldnn: error: {prefix}{message}\n")
    sys.stderr.flush()
    distributed.on_error(code)


if __name__ == "__main__":
    sys.exit(main())
