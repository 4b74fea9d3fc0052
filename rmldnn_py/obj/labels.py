"""YOLO label files and class names (SPEC §8.4, ``--app=obj``).

Every image ``<dir>/<stem>.<ext>`` under ``input_path`` has its objects in
``<target_path>/<dir>/<stem>.txt`` (the same relative path, extension ``.txt``); an image without
a label file has no objects. One object per line::

    class cx cy w h

``class`` an integer in ``[0, num_classes)``; ``cx cy`` the box centre and ``w h`` its size,
normalised by the image width and height (all in ``[0, 1]``; ``w, h > 0``). Blank lines are
skipped. Every file is read and checked at discovery, so a bad line stops the run before
training with one line naming the file and the line:

``cfg.json: neural_network.data.target_path: 'labels/a.txt' line 3: expected 5 fields
(class cx cy w h), received 4``.

A box may reach past the image border (``cx - w/2 < 0``); it is clipped to the image when the
sample is read (:mod:`rmldnn_py.obj.boxes`).
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import numpy as np
import torch

from ..data.sources import Source
from ..errors import ConfigError, DataError

LABEL_EXT = ".txt"


def parse_label_text(text: str, shown: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse the content of one label file.

    Args:
        text: the file content.
        shown: the file as named in errors.
        where: error prefix (``"cfg.json: neural_network.data.target_path"``).

    Returns:
        ``(boxes, lines)``: float32 ``(K, 5)`` rows ``class, cx, cy, w, h`` and int32 ``(K,)`` the
        1-based line number of each row.

    Raises:
        DataError: a line without exactly 5 fields, a class that is not a non-negative integer,
            a value that is not a number, coordinates outside [0, 1], a zero width or height.
    """
    rows: list[list[float]] = []
    numbers: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue

        def bad(msg: str) -> DataError:
            return DataError(f"{where}: '{shown}' line {n}: {msg}")

        if len(fields) != 5:
            raise bad(f"expected 5 fields (class cx cy w h), received {len(fields)}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise bad(f"expected numbers (class cx cy w h), received {line.strip()!r}") from None
        cls = values[0]
        if not math.isfinite(cls) or cls < 0 or not cls.is_integer():
            raise bad(f"class must be a non-negative integer, received {fields[0]!r}")
        for k, name in enumerate(("cx", "cy", "w", "h"), 1):
            v = values[k]
            if not math.isfinite(v) or v < 0.0 or v > 1.0:
                raise bad(f"coordinate {name} = {fields[k]} outside [0, 1] (YOLO labels are "
                          "normalised by the image size)")
        if values[3] <= 0.0 or values[4] <= 0.0:
            raise bad(f"box width and height must be > 0, received w = {fields[3]}, "
                      f"h = {fields[4]}")
        rows.append(values)
        numbers.append(n)
    boxes = np.asarray(rows, dtype=np.float32).reshape(-1, 5)
    return boxes, np.asarray(numbers, dtype=np.int32)


def label_name(image_name: str) -> str:
    """Relative label-file name of a relative image name (``a/b.jpg`` → ``a/b.txt``)."""
    return os.path.splitext(image_name)[0] + LABEL_EXT


class LabelSource(Source):
    """The box targets of an image source: sample ``i`` = the objects of image ``i``.

    ``load(i)`` → float32 ``(K, 5)`` rows ``class, cx, cy, w, h`` (normalised, as in the file;
    ``K = 0`` for an image without objects). Every file is parsed at construction.

    Args:
        root: ``target_path`` (a directory).
        where: error prefix (``"cfg.json: neural_network.data.target_path"``).
        image_names: relative names of the images (the input source's sample names), in order.

    Attributes:
        num_files: images that have a label file.
        num_objects: objects over all files.
        max_objects: the most objects of one image.

    Raises:
        DataError: ``target_path`` missing or not a directory, no label file at all for these
            images, or a bad line (see :func:`parse_label_text`).
    """

    kind = "labels"
    unit = "images"
    noun = "labels"

    def __init__(self, root: str, where: str, image_names: Sequence[str]) -> None:
        super().__init__(root, where)
        if not os.path.exists(root):
            raise DataError(f"{where}: directory '{root}' does not exist")
        if not os.path.isdir(root):
            raise DataError(f"{where}: '{root}' is not a directory (YOLO labels are one "
                            f"<image stem>.txt file per image in a directory)")
        self._names = list(image_names)
        self._files: list[Optional[str]] = []
        self._boxes: list[np.ndarray] = []
        self._lines: list[np.ndarray] = []
        for name in self._names:
            path = os.path.join(root, label_name(name))
            if not os.path.isfile(path):
                self._files.append(None)
                self._boxes.append(np.zeros((0, 5), np.float32))
                self._lines.append(np.zeros((0,), np.int32))
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise DataError(f"{where}: cannot read label file '{path}': "
                                f"{type(e).__name__}: {e}") from None
            boxes, lines = parse_label_text(text, path, where)
            self._files.append(path)
            self._boxes.append(boxes)
            self._lines.append(lines)
        self.num_files = sum(f is not None for f in self._files)
        if self._names and self.num_files == 0:
            raise DataError(f"{where}: no label file in '{root}' for any of the "
                            f"{len(self._names)} images (expected <image stem>.txt, e.g. "
                            f"'{label_name(self._names[0])}')")
        self.num_objects = int(sum(b.shape[0] for b in self._boxes))
        self.max_objects = int(max((b.shape[0] for b in self._boxes), default=0))

    def __len__(self) -> int:
        return len(self._names)

    def name(self, index: int) -> str:
        return self._names[index]

    def file(self, index: int) -> Optional[str]:   # type: ignore[override]
        """The label file of image ``index`` (None when the image has none)."""
        return self._files[index]

    def load(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self._boxes[index].copy())

    def to_float(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.to(torch.float32)

    def check_classes(self, num_classes: int, what: str) -> None:
        """Every class index must be below ``num_classes``.

        Args:
            what: where ``num_classes`` comes from, for the message
                (``"neural_network.loss.num_classes = 3"``).

        Raises:
            DataError: naming the first file and line with a class ``>= num_classes``.
        """
        for path, boxes, lines in zip(self._files, self._boxes, self._lines):
            if boxes.shape[0] == 0:
                continue
            bad = np.nonzero(boxes[:, 0] >= num_classes)[0]
            if bad.size:
                k = int(bad[0])
                raise DataError(f"{self.where}: '{path}' line {int(lines[k])}: class "
                                f"{int(boxes[k, 0])} outside [0, {num_classes - 1}] ({what})")


def read_class_names(path: str, where: str) -> list[str]:
    """Class names from a text file, one per line (class index = line number, 0-based; trailing
    blank lines ignored).

    Raises:
        ConfigError: the file is missing or unreadable, empty, or has a blank line among names.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f.read().splitlines()]
    except OSError as e:
        raise ConfigError(f"{where}: cannot read class-name file '{path}': "
                          f"{e.strerror or type(e).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: class-name file '{path}' is not UTF-8 text") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ConfigError(f"{where}: class-name file '{path}' is empty")
    if "" in lines:
        raise ConfigError(f"{where}: '{path}' line {lines.index('') + 1}: blank class name")
    return lines
