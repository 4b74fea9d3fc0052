"""Layer builders, one module per Keras family, registered in :data:`LAYERS` by exact Keras
``class_name`` (SPEC §4.4). Importing this package registers every family."""

from .base import DEFAULT_CTX, LAYERS, Ctx, KerasLayer, LayerEntry, register  # noqa: F401
from . import core, convolutional, pooling, regularization, reshaping  # noqa: F401  (registration)
from . import normalization, merging, activation_layers, preprocessing  # noqa: F401  (registration)

__all__ = ["LAYERS", "Ctx", "DEFAULT_CTX", "KerasLayer", "LayerEntry", "register"]
