"""The ``labels`` target type (SPEC §5.3): class names from directory names.

Class name of a file = its immediate parent directory; with a tag (``training_tag`` /
``test_tag``) = the path component right after the *last* component equal to the tag. Class
index = position in the sorted list of distinct names (plain string order: ``"10" < "2"``).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from ..errors import DataError


def class_of(path: str, tag: str | None, where: str) -> str:
    """Class name of the file ``path`` (as found under the configured directory)."""
    parts = [p for p in os.path.normpath(path).replace(os.sep, "/").split("/") if p not in ("", ".")]
    dirs = parts[:-1]
    if tag is None:
        if dirs:
            return dirs[-1]
        # a file directly in the CWD: its directory is the CWD
        return os.path.basename(os.path.abspath(os.path.dirname(path) or "."))
    positions = [k for k, p in enumerate(dirs) if p == tag]
    if not positions:
        raise DataError(f"{where}: '{tag}' is not a directory in the path '{path}'")
    if positions[-1] + 1 >= len(dirs):
        raise DataError(f"{where}: '{tag}' is not followed by a class directory in the path "
                        f"'{path}'")
    return dirs[positions[-1] + 1]


def class_names_of(files: Sequence[str], tag: str | None, where: str) -> list[str]:
    """Class name of every file, in order."""
    return [class_of(f, tag, where) for f in files]


def make_mapping(names: Sequence[str]) -> list[str]:
    """Sorted distinct class names (index = class id)."""
    return sorted(set(names))


def encode(names: Sequence[str], files: Sequence[str], classes: Sequence[str],
           where: str) -> torch.Tensor:
    """int64 labels of ``names`` under the mapping ``classes``; an unknown name is an error."""
    index = {c: k for k, c in enumerate(classes)}
    out = torch.empty(len(names), dtype=torch.int64)
    for k, (n, f) in enumerate(zip(names, files)):
        if n not in index:
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise DataError(f"{where}: class '{n}' of '{f}' does not occur in the training data "
                            f"(training classes: {shown})")
        out[k] = index[n]
    return out
