"""Batching and partitioning of a split across processes (SPEC §5.7).

Pure index arithmetic, no tensors of data:

* per-process batch ``b = max(1, batch // world)``;
* training: every rank owns a fixed share of ``ceil(N / world)`` samples, cut from one random
  permutation of all samples (drawn with ``seed``, identical on every rank) and padded by repeating
  samples; each epoch the share is reshuffled with a generator seeded ``seed + epoch`` on every
  rank. A fixed share lets each rank pre-load only its own samples (SPEC §9 "each rank loads and
  pre-loads only its own samples"); the global batch is still a fresh random mix every epoch;
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


def train_share(num_total: int, rank: int, world_size: int, seed: int) -> list[int]:
    """Global indices owned by ``rank`` for training: its block of a seeded permutation of
    ``range(num_total)``, padded cyclically to ``world * ceil(N / world)`` entries."""
    n_local = share_size(num_total, world_size)
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(num_total, generator=g).tolist()
    padded = [perm[i % num_total] for i in range(n_local * world_size)]
    return padded[rank * n_local:(rank + 1) * n_local]


def epoch_order(share: list[int], seed: int, epoch: int) -> list[int]:
    """``share`` reshuffled for ``epoch`` (generator seeded ``seed + epoch``, same on all ranks)."""
    g = torch.Generator().manual_seed(int(seed) + int(epoch))
    return [share[i] for i in torch.randperm(len(share), generator=g).tolist()]


def test_block(num_total: int, rank: int, world_size: int) -> list[int]:
    """Contiguous block of global indices evaluated by ``rank`` (possibly empty)."""
    n_blk = share_size(num_total, world_size)
    return list(range(min(num_total, rank * n_blk), min(num_total, (rank + 1) * n_blk)))


def chunk(indices: list[int], batch_local: int, count: int) -> list[list[int]]:
    """``indices`` cut into ``count`` batches of ``batch_local`` (trailing batches may be empty)."""
    return [indices[k * batch_local:(k + 1) * batch_local] for k in range(count)]
