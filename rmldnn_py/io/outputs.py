"""Checking the output paths of a run before anything is written (issue 11 item 5).

:func:`check_output_paths` looks at every path the run will write and raises one
:class:`~rmldnn_py.errors.ConfigError` line for the first that cannot work, without creating,
opening or modifying anything:

* directories (``data.test_output_path``, ``checkpoints.save``, ``tensorboard``): the path must
  not be an existing file;
* files (``data.hdf5_outfile``, the ``outfile`` logs ``<base>_train.txt`` / ``<base>_test.txt``):
  the path must not be an existing directory;
* for both: the nearest existing ancestor of a missing path must be a directory that this process
  may write into (``os.access(W_OK | X_OK)``: a read-only file system or directory fails), so
  that the missing directories can be created; an existing output directory must be writable.

Message format: ``<config>: neural_network.<key>: '<path>' <what is wrong>``, e.g.
``config.json: neural_network.data.test_output_path: 'preds' is an existing file (expected a
directory)``.
"""

from __future__ import annotations

import os
from typing import Optional

from ..errors import ConfigError


def _nearest_existing(path: str) -> str:
    """``path`` or its nearest existing ancestor (``.`` for a relative path with none)."""
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def _check_parent(where: str, shown: str, path: str) -> None:
    """The directories above ``path`` exist or can be created, and the last one is writable."""
    parent = os.path.dirname(os.path.abspath(path))
    anc = _nearest_existing(parent)
    if not os.path.isdir(anc):
        raise ConfigError(f"{where}: '{shown}' cannot be created: '{anc}' is a file, not a "
                          f"directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: '{shown}' cannot be created: directory '{anc}' is not "
                          f"writable (read-only file system or no write permission)")


def check_directory_output(where: str, path: str) -> None:
    """Checks for an output directory (see the module docstring).

    Raises:
        ConfigError: ``<where>: '<path>' is an existing file (expected a directory)``, or a parent
            that is a file or is not writable.
    """
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: directory '{path}' is not writable (read-only file "
                              f"system or no write permission)")
        return
    if os.path.lexists(path):
        what = "an existing file" if os.path.isfile(path) else "not a directory"
        raise ConfigError(f"{where}: '{path}' is {what} (expected a directory)")
    _check_parent(where, path, os.path.join(path, "x"))


def check_file_output(where: str, path: str) -> None:
    """Checks for an output file (see the module docstring).

    Raises:
        ConfigError: ``<where>: '<path>' is an existing directory (expected a file)``, or a
            parent that is a file or is not writable.
    """
    if os.path.isdir(path):
        raise ConfigError(f"{where}: '{path}' is an existing directory (expected a file)")
    _check_parent(where, path, path)


def check_output_paths(cfg) -> None:
    """Check every output path of a run before anything is opened (see the module docstring).

    Args:
        cfg: the :class:`rmldnn_py.config.types.Config` of the run.

    Raises:
        ConfigError: one line naming the config file, the key and the path.
    """
    from ..engine.logfiles import log_paths

    def where(key: str) -> str:
        return f"{cfg.path}: neural_network.{key}"

    data = cfg.data
    dirs: list[tuple[str, Optional[str]]] = [
        ("data.test_output_path", data.test_output_path),
        ("checkpoints.save", cfg.checkpoints.save if cfg.checkpoints else None),
        ("tensorboard", getattr(cfg, "tensorboard", None)),
    ]
    for key, p in dirs:
        if p:
            check_directory_output(where(key), p)
    if data.hdf5_outfile:
        check_file_output(where("data.hdf5_outfile"), data.hdf5_outfile)
    if cfg.outfile:
        for p in log_paths(cfg.outfile):
            if os.path.isdir(p):
                raise ConfigError(f"{where('outfile')}: log file '{p}' is an existing directory "
                                  f"(expected a file)")
            check_file_output(where("outfile"), p)
