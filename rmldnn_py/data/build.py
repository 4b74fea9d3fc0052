"""``build_datasets``: the data section of a run (SPEC §5), and the loader registry.

Messages (SPEC §5.2), per split, in this order: ``Discovering <role> input <noun>...``,
``Pre-loading ...`` (if ``preload``), then the targets: ``Discovering <role> labels...`` +
``Number of class labels: N``, or ``Discovering <role> target <noun>...`` + ``Pre-loading ...``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

from ..config.types import DataConfig
from ..errors import DataError
from ..registry import Registry
from . import labels as labels_mod
from .images import ImageSource
from .sources import Source
from .split import DataBundle, SampleReader, Split
from .transforms import Pipeline


@dataclass(frozen=True)
class LoaderInfo:
    """Registry entry of an input/target loader.

    Attributes:
        make: ``(path, where, *, which, role, cfg, input_rank) -> Source`` (discovery only).
        noun: discovery wording (``Discovering training input <noun>...``).
        preload_message: ``(role, which) -> text`` of the pre-loading message.
        labels: the loader also provides class labels (``mnist``).
    """

    make: Callable[..., Source]
    noun: str
    preload_message: Callable[[str, str], str]
    labels: bool = False


LOADERS = Registry("data type", case_insensitive=True, error_cls=DataError)


def _make_images(path: str, where: str, *, which: str, role: str, cfg: DataConfig,
                 input_rank: Optional[int]) -> Source:
    # the config loader resolves input_/target_grayscale from grayscale (types.DataConfig)
    gray = cfg.input_grayscale if which == "input" else cfg.target_grayscale
    return ImageSource(path, where, grayscale=bool(gray), max_pixels=cfg.max_image_pixels)


LOADERS.register("images", LoaderInfo(
    _make_images, "images", lambda role, which: f"Pre-loading {role} {which} images..."))


def _register_array_loaders() -> None:
    from . import arrays  # noqa: F401  (registers numpy, hdf5, mnist)


_KEYS = {  # role → (input key, target key, tag key)
    "training": ("input_path", "target_path", "training_tag"),
    "test": ("test_input_path", "test_target_path", "test_tag"),
}


def _resolve_types(cfg: DataConfig) -> tuple[str, Optional[str]]:
    in_type = (cfg.input_type or cfg.type or "images").lower()
    tt = cfg.target_type or cfg.type
    if tt is None and (cfg.target_path or cfg.test_target_path):
        tt = in_type
    return in_type, (tt.lower() if tt else None)


class _Builder:
    def __init__(self, cfg: DataConfig, config_path: str, logger, rank: int, world_size: int,
                 seed: int, device_is_cuda: bool, input_rank: Optional[int]) -> None:
        self.cfg = cfg
        self.cp = config_path
        self.logger = logger
        self.rank = rank
        self.world = world_size
        self.seed = seed
        self.cuda = device_is_cuda
        self.input_rank = input_rank
        self.in_type, self.target_type = _resolve_types(cfg)
        self.classes: Optional[list[str]] = None

    def where(self, key: str) -> str:
        return f"{self.cp}: neural_network.data.{key}"

    def log(self, msg: str) -> None:
        if self.logger is not None:
            self.logger.line(msg)

    def split(self, role: str) -> Split:
        cfg = self.cfg
        in_key, tgt_key, tag_key = _KEYS[role]
        in_path = getattr(cfg, in_key)
        loader: LoaderInfo = LOADERS.get(self.in_type, self.where(
            "input_type" if cfg.input_type else "type"))
        train = role == "training"
        pipeline = Pipeline(cfg.transforms, cfg.input_transforms, cfg.target_transforms,
                            train=train, target_is_mask=cfg.target_is_mask, config_path=self.cp)

        self.log(f"Discovering {role} input {loader.noun}...")
        if cfg.slicers:   # SPEC §5.11: the slices of one array are the samples
            from .slicers import sliced_source

            inputs = sliced_source(self.in_type, in_path, self.where(in_key), cfg=cfg,
                                   config_path=self.cp, logger=self.logger, which="input")
        else:
            inputs = loader.make(in_path, self.where(in_key), which="input", role=role, cfg=cfg,
                                 input_rank=self.input_rank)
        self._warn(inputs)
        reader = SampleReader(inputs, None, None, pipeline)
        batch = cfg.batch_size if train else cfg.test_batch_size
        split = Split(role, reader, target_kind=None, batch_size=batch, rank=self.rank,
                      world_size=self.world, seed=self.seed, preload=cfg.preload,
                      num_workers=cfg.num_workers, device_is_cuda=self.cuda)
        if cfg.slicers:
            self._check_slice_shapes(split, batch)
        split.preload_inputs(self.logger, loader.preload_message(role, "input"))

        tt = self.target_type
        if loader.labels:
            self.log(f"Discovering {role} labels...")
            lab, names = inputs.labels, inputs.class_names
            if self.classes is None:
                self.classes = list(names)
            self.log(f"Number of class labels: {len(self.classes)}")
            split.set_targets("labels", labels=lab)
        elif tt == "labels" and cfg.slicers:
            raise DataError(f"{self.where('target_type')}: 'labels' targets cannot be used with "
                            f"slicers (slice targets come from a 'numpy' or 'hdf5' array)")
        elif tt == "labels":
            self.log(f"Discovering {role} labels...")
            files = [inputs.file(i) for i in range(len(inputs))]
            tag = getattr(cfg, tag_key)
            names = labels_mod.class_names_of(files, tag, self.where(tag_key))
            if self.classes is None:
                self.classes = labels_mod.make_mapping(names)
            lab = labels_mod.encode(names, files, self.classes, self.where(in_key))
            self.log(f"Number of class labels: {len(self.classes)}")
            split.set_targets("labels", labels=lab)
        elif tt is not None and getattr(cfg, tgt_key):
            tpath = getattr(cfg, tgt_key)
            tloader: LoaderInfo = LOADERS.get(tt, self.where(
                "target_type" if cfg.target_type else "type"))
            self.log(f"Discovering {role} target {tloader.noun}...")
            if cfg.slicers:
                from .slicers import sliced_source

                targets = sliced_source(tt, tpath, self.where(tgt_key), cfg=cfg,
                                        config_path=self.cp, logger=self.logger, which="target",
                                        slicing=inputs.slicing)
            else:
                targets = tloader.make(tpath, self.where(tgt_key), which="target", role=role,
                                       cfg=cfg, input_rank=self.input_rank)
                self._warn(targets)
            if len(targets) != len(inputs):
                raise DataError(
                    f"{self.where(tgt_key)}: {len(targets)} target {targets.unit} in '{tpath}' "
                    f"but {len(inputs)} input {inputs.unit} in '{in_path}' (inputs and targets "
                    f"are paired in sorted order, the counts must match)")
            self._warn_stems(inputs, targets)
            split.set_targets(tt, source=targets)
            split.preload_targets(self.logger, tloader.preload_message(role, "target"))
        elif pipeline.makes_targets:
            split.set_targets("images")
        return split

    def _check_slice_shapes(self, split: Split, batch: int) -> None:
        """Slice sets of different sample shapes: the test split batches within one slice set
        (:class:`Split`); training batches are random draws over all slices, so there the
        per-process batch size must be 1."""
        sets = split.slicing.sets
        if split.role == "training" and split.batch_local > 1 and \
                len({s.sample_shape for s in sets}) > 1:
            shown = ", ".join(f"'{s.name}' {list(s.sample_shape)}" for s in sets)
            raise DataError(f"{self.where('batch_size')}: the slice sets give samples of "
                            f"different shapes ({shown}); a training batch draws from every "
                            f"slice set but holds samples of one shape (test batches hold one "
                            f"slice set each), so the per-process training batch size must be "
                            f"1 (received {batch})")

    def _warn(self, source: Source) -> None:
        """Print the discovery warnings of a source (a symbolic link loop)."""
        if self.logger is not None:
            for w in getattr(source, "warnings", ()):
                self.logger.warning(w)

    def _warn_stems(self, inputs: Source, targets: Source) -> None:
        if self.logger is None or inputs.kind != "images" or targets.kind != "images":
            return
        for i in range(len(inputs)):
            a, b = inputs.name(i), targets.name(i)
            if os.path.splitext(a)[0] != os.path.splitext(b)[0]:
                self.logger.warning(f"input '{a}' is paired with target '{b}' (pairing is by "
                                    f"sorted order)")
                return


def build_datasets(cfg: DataConfig, *, config_path: str, logger, rank: int = 0,
                   world_size: int = 1, seed: int = 0, device_is_cuda: bool = False,
                   input_rank: Optional[int] = None) -> DataBundle:
    """Discover (and pre-load) the training and test data of ``cfg`` for this rank.

    Args:
        cfg: the data section.
        config_path: config file name, prefix of error messages.
        logger: :class:`rmldnn_py.log.Logger` for the discovery messages (None = silent).
        rank / world_size: this process and the number of processes.
        seed: shuffling seed shared by all ranks.
        device_is_cuda: pin batch memory.
        input_rank: rank of the network's channel-first input sample (3 for ``(C, H, W)``), used
            by the ``numpy``/``hdf5`` loaders to add a missing channel axis (SPEC §5.4); None =
            guess from the array shape.

    Raises:
        DataError: missing paths, no samples, count mismatches, unknown test classes, ...
        ConfigError: invalid transform parameters.
    """
    in_type, _ = _resolve_types(cfg)
    if in_type == "pde":
        raise DataError(f"{config_path}: neural_network.data.type: 'pde' data is generated by "
                        f"the pde application, not by the data loaders")
    b = _Builder(cfg, config_path, logger, rank, world_size, seed, device_is_cuda, input_rank)
    train = b.split("training") if cfg.input_path else None
    test = b.split("test") if cfg.test_input_path else None
    return DataBundle(train=train, test=test, class_names=b.classes)


_register_array_loaders()
