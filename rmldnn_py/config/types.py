"""Typed, frozen configuration sections (SPEC §3).

After :func:`rmldnn_py.config.load.load_config` has validated the JSON and applied defaults, the
rest of the program reads only these objects, never raw dicts. Field names are the config keys
exactly as users write them. Paths are kept as the user wrote them (relative paths are resolved
against the current working directory when used, SPEC §3.1).

Sections whose keys depend on a ``type`` (optimizer, scheduler, loss) keep the canonical type name
and a mapping of the user's remaining keys (``options``); the registry entry of that type owns the
defaults and the per-type checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class TransformSpec:
    """One entry of ``transforms`` / ``input_transforms`` / ``target_transforms``.

    Attributes:
        name: transform name in lower case (``"resize"``).
        value: its parameter as written (``[28, 28]``, ``0.5``, ``{"mean": 0, "std": 1}``).
        where: JSON path for error messages (``"neural_network.data.transforms[0]"``).
    """

    name: str
    value: Any
    where: str = ""


@dataclass(frozen=True)
class SlicerConfig:
    """One entry of ``data.slicers`` (SPEC §3.5). Lists have one int per geometric dimension."""

    name: str
    sizes: tuple[int, ...]
    padding: Optional[tuple[int, ...]] = None
    padded_sizes: Optional[tuple[int, ...]] = None
    strides: Optional[tuple[int, ...]] = None
    discard_remainders: bool = False
    transpose: bool = False


@dataclass(frozen=True)
class DataConfig:
    """``neural_network.data`` (SPEC §3.3). ``input_type``/``target_type`` are resolved from
    ``type`` and lower-cased (``images``, ``labels``, ``numpy``, ``hdf5``, ``mnist``, ``pde``);
    ``input_grayscale``/``target_grayscale`` are resolved from ``grayscale``; ``test_tag`` also
    receives the alias ``testing_tag``."""

    type: Optional[str] = None
    input_type: Optional[str] = None
    target_type: Optional[str] = None
    input_path: Optional[str] = None
    target_path: Optional[str] = None
    test_input_path: Optional[str] = None
    test_target_path: Optional[str] = None
    test_output_path: Optional[str] = None
    batch_size: int = 64
    test_batch_size: int = 64
    preload: bool = False
    target_is_mask: bool = False
    transforms: tuple[TransformSpec, ...] = ()
    input_transforms: tuple[TransformSpec, ...] = ()
    target_transforms: tuple[TransformSpec, ...] = ()
    slicers: tuple[SlicerConfig, ...] = ()
    hdf5_outfile: Optional[str] = None
    hdf5_precision: str = "single"          # "single" | "half"
    grayscale: bool = False
    input_grayscale: bool = False
    target_grayscale: bool = False
    training_tag: Optional[str] = None
    test_tag: Optional[str] = None
    # pde generator (SPEC §3.3.3)
    domain_size: Optional[int] = None
    num_examples: Optional[int] = None
    num_test_examples: Optional[int] = None
    bc_frequency: Optional[tuple[float, float]] = None
    bc_type: str = "random_uniform"
    bc_num_terms: int = 1                   # rmldnn_py extension (SPEC §5.8): raised-cosine terms
    # streaming (rmldnn_py extension): DataLoader worker processes per rank; None = automatic
    num_workers: Optional[int] = None
    # rmldnn_py extensions: prediction file format(s), decompression-bomb limit
    test_output_format: str = "h5"          # "h5" | "csv" | "both"
    max_image_pixels: int = 178956970
    # --app=obj
    letterbox: bool = False
    class_names: Optional[str] = None


@dataclass(frozen=True)
class SchedulerConfig:
    """``neural_network.optimizer.lr_scheduler`` (SPEC §3.7). ``type`` is canonical
    (``Step``, ``MultiStep``, ``Exponential``, ``Warmup``); ``options`` holds the other keys
    except ``verbose``."""

    type: str
    verbose: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizerConfig:
    """``neural_network.optimizer`` (SPEC §3.6). ``type`` is canonical (``SGD``, ``Adam``, ...);
    ``options`` holds the user's other keys (``learning_rate``, ``beta1``, ...) except
    ``lr_scheduler``."""

    type: str
    options: Mapping[str, Any] = field(default_factory=dict)
    lr_scheduler: Optional[SchedulerConfig] = None
    clip_grad_norm: Optional[float] = None  # rmldnn_py extension: global L2 norm clipping


@dataclass(frozen=True)
class LossConfig:
    """``neural_network.loss`` (SPEC §3.8). ``function`` is canonical (``NLL``, ``BCE``, ...);
    ``options`` holds the other keys (``weight``, ``ignore_index``, ``source``, ``eps``, ...)."""

    function: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointConfig:
    """``neural_network.checkpoints`` (SPEC §3.9)."""

    save: Optional[str] = None
    interval: int = 1
    load: Optional[str] = None
    resume: Any = False                     # False | True (newest in ``save``) | path string
    best: Optional[str] = None              # None | "loss" | "accuracy"


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """``neural_network.early_stopping`` (rmldnn_py extension): stop when ``monitor``
    (``"loss"``: lower is better, ``"accuracy"``: higher is better) has not improved by more
    than ``min_delta`` for ``patience`` evaluations."""

    monitor: str = "loss"
    patience: int = 5
    min_delta: float = 0.0


@dataclass(frozen=True)
class DiscriminatorConfig:
    """``neural_network.discriminator`` (``--app=gan``): the critic network (same forms as
    ``layers``), its optimizer (None = the generator's optimizer settings) and optional initial
    weights."""

    layers: Any
    optimizer: Optional[OptimizerConfig] = None
    checkpoint: Optional[str] = None


@dataclass(frozen=True)
class Config:
    """The whole run (``neural_network.*``, SPEC §3.2).

    Attributes:
        path: the config file as given on the command line (used in error messages).
        layers: a path string to a Keras JSON, an inline list of layer objects, or an inline
            Keras model object.
        mixed_precision / channels_last / compile: rmldnn_py performance options
            (``"none" | "bf16" | "fp16"``, bool, bool).
        seed: random seed shared by all ranks (data shuffling, weight initialisation).
    """

    path: str
    layers: Any
    data: DataConfig
    outfile: Optional[str] = None
    num_epochs: int = 1
    optimizer: Optional[OptimizerConfig] = None
    loss: Optional[LossConfig] = None
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    debug: bool = False
    debug_interval: int = 1
    mixed_precision: str = "none"
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    early_stopping: Optional[EarlyStoppingConfig] = None
    progress: bool = True
    tensorboard: Optional[str] = None
    discriminator: Optional[DiscriminatorConfig] = None
