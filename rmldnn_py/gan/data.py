"""Random inputs of ``--app=gan``: the fixed latent "test split" and the training noise.

* :class:`LatentSplit` stands in for the test split: ``num_test_examples`` latent vectors drawn
  once from a generator seeded ``seed + 3`` (the same vectors at every evaluation, on every rank
  and in every run with that seed), batched and partitioned across ranks like a test split
  (contiguous blocks, SPEC §5.7). Evaluating it writes ``G(z)`` for each vector as dataset
  ``sample_<i>`` of ``output_<epoch>.h5`` (:mod:`rmldnn_py.gan.app`).
* :class:`NoiseSource` draws the training noise (latent vectors ``z ~ N(0, I)`` and interpolation
  weights ``ε ~ U[0, 1]``) from its own generator seeded ``seed + 2``. Every draw is made for the
  global batch (``world × per-rank rows``) and each rank keeps its own slice, so an ``np = w`` run
  uses exactly the noise of an ``np = 1`` run with the same global batch (rank ``r`` holds the
  ``r``-th slice of every global batch, :mod:`rmldnn_py.data.partition`). Its state is part of
  the full-state checkpoint (resume continues the same stream).

Latent tensors are ``(N, *latent_shape)`` float32, ``latent_shape`` the generator's channel-first
input shape without batch (``(64,)`` for an ``InputLayer`` of batch shape ``[null, 64]``).
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch

from ..data import partition
from ..data.split import Batch
from ..log import kv_row

__all__ = ["LatentSplit", "NoiseSource", "sample_name", "CRITIC_SEED_OFFSET", "NOISE_SEED_OFFSET",
           "LATENT_SEED_OFFSET"]

#: seed offsets (added to ``neural_network.seed``) of the random streams of the application
CRITIC_SEED_OFFSET = 1
NOISE_SEED_OFFSET = 2
LATENT_SEED_OFFSET = 3


def sample_name(index: int, total: int) -> str:
    """HDF5 dataset name of generated sample ``index`` of ``total``: ``sample_00042`` (at least 5
    digits, more when ``total`` needs them, so that name order is index order)."""
    width = max(5, len(str(max(total - 1, 0))))
    return f"sample_{index:0{width}d}"


class LatentSplit:
    """The evaluation "split" of ``--app=gan``: ``num_total`` fixed latent vectors.

    Provides what the engine uses of a :class:`rmldnn_py.data.split.Split` (``batches``,
    ``num_batches``, ``num_total``, ``has_targets``, ``target_kind``, ``sample_name``,
    ``output_array``, ``dataset_lines``, ``sample_shape``, ``slicing``, ``close``). The latent
    shape is known once the generator is built: :meth:`bind` is called before any batch is made.

    Args:
        num_total: ``num_test_examples``.
        batch_size: ``test_batch_size`` (global; per process ``max(1, batch // world)``).
        rank / world_size: this process and the number of processes.
        seed: ``neural_network.seed`` (the vectors are drawn from ``seed + 3``).
    """

    role = "test"
    kind = "latent"
    unit = "samples"
    has_targets = False
    target_kind = None
    slicing = None
    transforms = ()
    reader = None

    def __init__(self, num_total: int, batch_size: int, rank: int, world_size: int,
                 seed: int) -> None:
        self.num_total = int(num_total)
        self.batch_requested = int(batch_size)
        self.batch_local = partition.per_process_batch(batch_size, world_size)
        self.num_batches = partition.num_batches(self.num_total, world_size, self.batch_local)
        self._share = partition.test_block(self.num_total, rank, world_size)
        self.num_local = len(self._share)
        self.seed = int(seed)
        self.latent_shape: Optional[tuple[int, ...]] = None
        self._z: Optional[torch.Tensor] = None
        self.input_path = None

    def bind(self, latent_shape: tuple[int, ...]) -> None:
        """Draw the ``(num_total, *latent_shape)`` vectors (same on every rank)."""
        self.latent_shape = tuple(int(d) for d in latent_shape)
        g = torch.Generator().manual_seed(self.seed + LATENT_SEED_OFFSET)
        self._z = torch.randn((self.num_total, *self.latent_shape), generator=g,
                              dtype=torch.float32)

    @property
    def latent(self) -> torch.Tensor:
        """All ``(num_total, *latent_shape)`` vectors."""
        if self._z is None:
            raise RuntimeError("LatentSplit.bind() was not called")
        return self._z

    @property
    def sample_shape(self) -> Optional[tuple[int, ...]]:
        return self.latent_shape

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Exactly ``num_batches`` batches ``(z, None, global indices)`` of this rank's block
        (trailing batches of short ranks are empty)."""
        z = self.latent
        for idx in partition.chunk(list(self._share), self.batch_local, self.num_batches)[start:]:
            rows = torch.tensor(idx, dtype=torch.int64)
            yield Batch(z.index_select(0, rows), None, rows)

    def sample_name(self, index: int) -> str:
        return sample_name(index, self.num_total)

    def output_array(self, index: int, prediction):
        return prediction

    def dataset_rows(self) -> list[tuple[str, str]]:
        return [("Type", "latent vectors (generated samples)"),
                ("Num samples (total)", str(self.num_total)),
                ("Num samples (per process)", str(self.num_local)),
                ("Batch size  (requested)", str(self.batch_requested)),
                ("Batch size  (per process)", str(self.batch_local)),
                ("Num batches (per process)", str(self.num_batches))]

    def dataset_lines(self) -> list[str]:
        return [kv_row(label, value, 25) for label, value in self.dataset_rows()]

    def close(self) -> None:
        """Nothing to release."""


class NoiseSource:
    """The training noise stream (see the module docstring).

    Args:
        seed: ``neural_network.seed`` (the generator is seeded ``seed + 2``).
        rank / world_size: this process's slice of every global draw.
    """

    def __init__(self, seed: int, rank: int, world_size: int) -> None:
        self.gen = torch.Generator().manual_seed(int(seed) + NOISE_SEED_OFFSET)
        self.rank, self.world = int(rank), int(world_size)

    def _slice(self, t: torch.Tensor, n: int) -> torch.Tensor:
        return t[self.rank * n:(self.rank + 1) * n]

    def latent(self, n: int, shape: tuple[int, ...]) -> torch.Tensor:
        """This rank's ``(n, *shape)`` rows of a ``(world·n, *shape)`` standard normal draw."""
        return self._slice(torch.randn((self.world * n, *shape), generator=self.gen), n)

    def uniform(self, n: int) -> torch.Tensor:
        """This rank's ``(n,)`` values of a ``(world·n,)`` U[0, 1) draw."""
        return self._slice(torch.rand((self.world * n,), generator=self.gen), n)

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"].to(torch.uint8).cpu())
