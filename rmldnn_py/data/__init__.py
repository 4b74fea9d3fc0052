"""Datasets, transforms, batching and partitioning (SPEC §5). See ``docs/ARCHITECTURE.md``.

Public interface: :func:`build_datasets` → :class:`DataBundle` of :class:`Split` objects whose
``batches(epoch)`` yield :class:`Batch` tuples; the registries ``TRANSFORMS`` and ``LOADERS``.
"""

from .build import LOADERS, LoaderInfo, build_datasets
from .split import Batch, DataBundle, Split
from .transforms import TRANSFORMS, Pipeline, TransformInfo

__all__ = ["build_datasets", "DataBundle", "Split", "Batch", "TRANSFORMS", "TransformInfo",
           "Pipeline", "LOADERS", "LoaderInfo"]
