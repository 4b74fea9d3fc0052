"""Configuration: JSON Schema validation (``schema.json``), loading (``load.py``) and the typed,
frozen sections the rest of the code consumes (``types.py``)."""

from .types import (CheckpointConfig, Config, DataConfig, LossConfig, OptimizerConfig,
                    SchedulerConfig, SlicerConfig, TransformSpec)

__all__ = ["Config", "DataConfig", "OptimizerConfig", "SchedulerConfig", "LossConfig",
           "CheckpointConfig", "SlicerConfig", "TransformSpec", "load_config"]


def load_config(path):  # re-exported lazily so importing types never pulls in jsonschema
    from .load import load_config as _load

    return _load(path)
