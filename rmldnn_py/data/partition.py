"""Batching and partitioning of a split across processes (SPEC §5.7).

Pure index arithmetic, no tensors of data:

* per-process batch ``b = max(1, batch // world)``;
* training: each epoch, one random permutation of all ``N`` samples (generator seeded
  ``seed + epoch``, identical on every rank and independent of the world size) is padded
  cyclically to ``world * ceil(N / world)`` entries and cut into global batches of
  ``world * b``; rank ``r`` takes the ``r``-th of ``world`` equal contiguous slices of every
  global batch. So global batch ``k`` of an ``np = w`` run is exactly batch ``k`` of the
  ``np = 1`` run (when ``w`` divides the batch size and ``N``), every rank holds the same number
  of samples in every step (the rank-mean of DDP is the global-batch mean), every sample is seen
  once per epoch (plus padding repeats) and no rank ever gets an empty training batch. A rank's
  samples change every epoch, so ``preload`` decodes the whole training set on every rank
  (docs/DISTRIBUTED.md "Partitioning");
* test: contiguous blocks of ``ceil(N / world)`` samples, no duplicates; the last ranks may hold
  fewer (or zero) samples and run empty batches at the end;
* ``num_batches`` is the same on every rank: ``ceil(ceil(N / world) / b)``.
"""

from __future__ import annotations

import math

import torch


def per_process_batch(batch_size: int, world_size: int) -> int:
    """``max(1, batch_size // world_size)``."""
    return max(1, batch_size // world_size)


def share_size(num_total: int, world_size: int) -> int:
    """``ceil(N / world)``: samples per rank (training) or block length (test)."""
    return math.ceil(num_total / world_size)


def num_batches(num_total: int, world_size: int, batch_local: int) -> int:
    """Batches per process, identical on every rank (last batch partial, never dropped)."""
    return math.ceil(share_size(num_total, world_size) / batch_local)


def epoch_permutation(num_total: int, seed: int, epoch: int) -> list[int]:
    """The global training order of ``epoch``: ``randperm(N)`` from a generator seeded
    ``seed + epoch`` (same on every rank, whatever the world size)."""
    g = torch.Generator().manual_seed(int(seed) + int(epoch))
    return torch.randperm(num_total, generator=g).tolist()


def train_batches(num_total: int, rank: int, world_size: int, batch_local: int, seed: int,
                  epoch: int) -> list[list[int]]:
    """The ``num_batches`` training batches of ``rank`` for ``epoch`` (see the module docstring):
    batch ``k`` is the ``rank``-th slice of global batch ``k`` of the padded epoch permutation."""
    if num_total == 0:
        return []
    perm = epoch_permutation(num_total, seed, epoch)
    n_local = share_size(num_total, world_size)
    padded = [perm[i % num_total] for i in range(n_local * world_size)]
    step = batch_local * world_size
    out = []
    for k in range(num_batches(num_total, world_size, batch_local)):
        glob = padded[k * step:(k + 1) * step]        # len is a multiple of world_size
        m = len(glob) // world_size
        out.append(glob[rank * m:(rank + 1) * m])
    return out


def test_block(num_total: int, rank: int, world_size: int) -> list[int]:
    """Contiguous block of global indices evaluated by ``rank`` (possibly empty)."""
    n_blk = share_size(num_total, world_size)
    return list(range(min(num_total, rank * n_blk), min(num_total, (rank + 1) * n_blk)))


def chunk(indices: list[int], batch_local: int, count: int) -> list[list[int]]:
    """``indices`` cut into ``count`` batches of ``batch_local`` (trailing batches may be empty)."""
    return [indices[k * batch_local:(k + 1) * batch_local] for k in range(count)]
