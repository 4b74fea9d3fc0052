"""The ``pde`` data generator (SPEC §3.3.3, §5.8): raised-cosine initial conditions for
``Burgers_PDE``, served as :class:`ConditionSplit` objects that behave like
:class:`rmldnn_py.data.split.Split` (same batching and partitioning,
:mod:`rmldnn_py.data.partition`).

For example j of a split with M examples and K = ``bc_num_terms`` terms, on the grid x_i = i,
i = 0 … d − 1 (d = ``domain_size``)::

    b_j(x) = (1/K) · Σ_{k=0..K−1} ½·(1 − cos(2π·c_{j,k}·x / d))

* ``random_uniform``: c_{j,k} ~ U(c_min, c_max), independent, drawn from
  ``numpy.random.default_rng([seed, role])`` (role 0 = training, 1 = test), so a run's conditions
  depend only on its seed, never on the number of processes;
* ``fixed_uniform``: the grid g_m = c_min + m·(c_max − c_min)/(M − 1), m = 0 … M − 1 (g_0 = c_min
  when M = 1), and c_{j,k} = g_{(j + k·⌊M/K⌋) mod M} (with K = 1: c_j = g_j, SPEC §5.8).

A sample is the tensor b_j ``(1, d)`` float32; its target is the same tensor (the Burgers loss
reads the initial condition from it). Sample names (``output_<epoch>.h5`` datasets) are
``condition_<j>`` with j zero-padded to the width of M − 1.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

import numpy as np
import torch

from ..config.types import DataConfig
from ..data import partition
from ..data.split import Batch, DataBundle
from ..errors import ConfigError
from ..log import fmt_g, kv_row

__all__ = ["frequencies", "raised_cosines", "ConditionSplit", "build_generator_bundle"]

_ROLE_ID = {"training": 0, "test": 1}


def frequencies(num: int, c_range: tuple[float, float], bc_type: str, terms: int, seed: int,
                role: str) -> np.ndarray:
    """The frequencies c ``(num, terms)`` float64 of one split (module docstring)."""
    c_min, c_max = float(c_range[0]), float(c_range[1])
    if bc_type == "fixed_uniform":
        grid = (np.full(num, c_min) if num == 1
                else c_min + np.arange(num) * (c_max - c_min) / (num - 1))
        step = max(1, num // terms)
        j = np.arange(num)[:, None] + step * np.arange(terms)[None, :]
        return grid[j % num]
    rng = np.random.default_rng([int(seed), _ROLE_ID[role]])
    return rng.uniform(c_min, c_max, size=(num, terms))


def raised_cosines(c: np.ndarray, d: int) -> np.ndarray:
    """b ``(num, d)`` float64: the mean over the terms of ½(1 − cos(2π·c·x/d)), x = 0 … d − 1,
    for frequencies ``c`` ``(num, terms)``."""
    x = np.arange(d, dtype=np.float64)
    waves = 0.5 * (1.0 - np.cos(2.0 * np.pi * c[:, :, None] * x[None, None, :] / d))
    return waves.mean(axis=1)


class ConditionSplit:
    """One role (``"training"`` / ``"test"``) of generated conditions, with the interface of
    :class:`rmldnn_py.data.split.Split` the engine uses (see ``docs/ARCHITECTURE.md``).

    Args:
        role: ``"training"`` or ``"test"``.
        conditions: float32 ``(M, 1, d)``.
        c: the frequencies ``(M, K)`` (kept for reference).
        batch_size: the global batch size of the role.
    """

    kind = "pde"
    unit = "samples"
    transforms: tuple = ()
    has_targets = True
    target_kind = "pde"
    slicing = None
    input_path = None

    def __init__(self, role: str, conditions: torch.Tensor, c: np.ndarray, *, batch_size: int,
                 rank: int, world_size: int, seed: int, cfg: DataConfig) -> None:
        self.role = role
        self.conditions = conditions
        self.c = c
        self.cfg = cfg
        self.num_total = int(conditions.shape[0])
        self.batch_requested = batch_size
        self.batch_local = partition.per_process_batch(batch_size, world_size)
        self.num_batches = partition.num_batches(self.num_total, world_size, self.batch_local)
        self._train = role == "training"
        self._rank, self._world, self.seed = rank, world_size, seed
        if self._train:
            self.num_local = partition.share_size(self.num_total, world_size)
            self._share = list(range(self.num_total))
        else:
            self._share = partition.test_block(self.num_total, rank, world_size)
            self.num_local = len(self._share)
        self._width = len(str(max(0, self.num_total - 1)))

    # ---------------------------------------------------------------- batching
    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Exactly ``num_batches`` batches ``(b (B, 1, d), b, indices)`` for ``epoch`` (training:
        shuffled with ``seed + epoch``, this rank's slice; test: this rank's contiguous block,
        empty batches at the end of short ranks); the first ``start`` are skipped."""
        if self._train:
            plan = partition.train_batches(self.num_total, self._rank, self._world,
                                           self.batch_local, self.seed, epoch)
        else:
            plan = partition.chunk(list(self._share), self.batch_local, self.num_batches)
        for idx in plan[start:]:
            index = torch.tensor(idx, dtype=torch.int64)
            x = self.conditions.index_select(0, index)
            yield Batch(x, x, index)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(1, d)``."""
        return tuple(self.conditions.shape[1:])

    def sample_name(self, index: int) -> str:
        return f"condition_{index:0{self._width}d}"

    def output_array(self, index: int, prediction):
        return prediction

    # ---------------------------------------------------------------- information
    def dataset_rows(self) -> list[tuple[str, str]]:
        """The six rows of the Dataset block (SPEC §7.2.3) and the generator's settings."""
        cfg = self.cfg
        rows = [("Type", self.kind),
                ("Num samples (total)", str(self.num_total)),
                ("Num samples (per process)", str(self.num_local)),
                ("Batch size  (requested)", str(self.batch_requested)),
                ("Batch size  (per process)", str(self.batch_local)),
                ("Num batches (per process)", str(self.num_batches)),
                ("Domain size", str(cfg.domain_size)),
                ("BC type", cfg.bc_type),
                ("BC frequency", fmt_g(list(cfg.bc_frequency)))]
        if cfg.bc_num_terms != 1:
            rows.append(("BC terms", str(cfg.bc_num_terms)))
        return rows

    def dataset_lines(self) -> list[str]:
        return [kv_row(label, value, 25) for label, value in self.dataset_rows()]

    def close(self) -> None:
        """Nothing to release (kept for the Split interface)."""


def build_generator_bundle(cfg: DataConfig, *, config_path: str, logger, rank: int = 0,
                           world_size: int = 1, seed: int = 0) -> DataBundle:
    """The training (``num_examples``) and test (``num_test_examples``) splits of a ``pde`` data
    section; prints ``Generating <role> conditions...`` through ``logger``.

    Raises:
        ConfigError: ``domain_size`` or ``bc_frequency`` missing, d < 3, invalid ``bc_type``.
    """
    where = f"{config_path}: neural_network.data"
    if cfg.domain_size is None:
        raise ConfigError(f"{where}.domain_size: required for data type 'pde' (the number of "
                          "grid points in x)")
    if cfg.domain_size < 3:
        raise ConfigError(f"{where}.domain_size: must be >= 3 for Burgers_PDE (got "
                          f"{cfg.domain_size})")
    if cfg.bc_frequency is None:
        raise ConfigError(f"{where}.bc_frequency: required for data type 'pde' ([c_min, c_max])")
    bc_type = (cfg.bc_type or "random_uniform").lower()
    if bc_type not in ("random_uniform", "fixed_uniform"):
        raise ConfigError(f"{where}.bc_type: expected 'random_uniform' or 'fixed_uniform', "
                          f"received '{cfg.bc_type}'")
    if not all(math.isfinite(float(v)) for v in cfg.bc_frequency):
        raise ConfigError(f"{where}.bc_frequency: values must be finite, received "
                          f"{fmt_g(list(cfg.bc_frequency))}")
    splits: dict[str, Optional[ConditionSplit]] = {"training": None, "test": None}
    for role, num, batch in (("training", cfg.num_examples, cfg.batch_size),
                             ("test", cfg.num_test_examples, cfg.test_batch_size)):
        if not num:
            continue
        if logger is not None:
            logger.line(f"Generating {role} conditions...")
        c = frequencies(int(num), tuple(cfg.bc_frequency), bc_type, int(cfg.bc_num_terms),
                        seed, role)
        b = torch.from_numpy(raised_cosines(c, int(cfg.domain_size)).astype(np.float32))
        splits[role] = ConditionSplit(role, b.unsqueeze(1).contiguous(), c, batch_size=batch,
                                      rank=rank, world_size=world_size, seed=seed, cfg=cfg)
    return DataBundle(train=splits["training"], test=splits["test"], class_names=None)
