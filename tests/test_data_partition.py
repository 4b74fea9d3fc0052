"""Batching and partitioning across processes (SPEC §5.7) for world sizes 1–4."""

from __future__ import annotations

import math
from collections import Counter

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rmldnn_py.data import partition
from rmldnn_py.data.sources import Source
from rmldnn_py.data.split import SampleReader, Split
from rmldnn_py.data.transforms import Pipeline


class FakeSource(Source):
    """N samples of shape (1, 2, 2) whose value is their index."""

    kind = "images"
    unit = "images"

    def __init__(self, n: int) -> None:
        super().__init__("./fake", "w")
        self.n = n

    def __len__(self):
        return self.n

    def name(self, i):
        return f"s{i:03d}.png"

    def file(self, i):
        return f"./fake/{i % 3}/s{i:03d}.png"

    def load(self, i):
        return torch.full((1, 2, 2), i, dtype=torch.uint8)


def make_split(role, n, batch, rank, world, seed=7, preload=True):
    reader = SampleReader(FakeSource(n), None, torch.arange(n) % 5,
                          Pipeline([], [], [], train=role == "training", target_is_mask=False,
                                   config_path="c.json"))
    s = Split(role, reader, target_kind="labels", batch_size=batch, rank=rank, world_size=world,
              seed=seed, preload=preload, num_workers=0, device_is_cuda=False)
    s.preload_inputs()
    return s


def test_examples_from_the_spec():
    assert partition.per_process_batch(128, 2) == 64
    assert partition.per_process_batch(3, 4) == 1
    assert partition.num_batches(200, 1, 16) == 13
    assert partition.num_batches(60000, 2, 64) == 469
    assert partition.share_size(6848, 8) == 856
    s = make_split("test", 20, 64, 0, 1)
    assert (s.batch_local, s.num_batches, s.num_local) == (64, 1, 20)   # not clamped


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), world=st.integers(1, 4), batch=st.integers(1, 12),
       seed=st.integers(0, 1000))
def test_training_partition(n, world, batch, seed):
    splits = [make_split("training", n, batch, r, world, seed) for r in range(world)]
    share = math.ceil(n / world)
    assert {s.num_local for s in splits} == {share}
    assert {s.num_batches for s in splits} == {math.ceil(share / max(1, batch // world))}
    for epoch in (0, 1):
        seen = Counter()
        per_rank = []
        for s in splits:
            batches = list(s.batches(epoch))
            assert len(batches) == s.num_batches
            assert all(len(b.indices) > 0 for b in batches)
            idx = torch.cat([b.indices for b in batches]).tolist()
            assert len(idx) == share                          # ceil(N / world) per rank
            for b in batches:                                 # inputs/targets match the indices
                assert torch.equal(b.inputs[:, 0, 0, 0], b.indices.float())
                assert torch.equal(b.targets, b.indices % 5)
            seen.update(idx)
            per_rank.append([b.indices.tolist() for b in batches])
        assert set(seen) == set(range(n))                    # every sample every epoch
        assert sum(seen.values()) == world * share            # only padding repeats samples
        # global batch k (the ranks' batches k, rank order) = batch k of one process with the
        # global batch world * b: the same global batches whatever the world size
        b_loc = max(1, batch // world)
        single = make_split("training", n, b_loc * world, 0, 1, seed)
        perm = partition.epoch_permutation(n, seed, epoch)
        padded = [perm[i % n] for i in range(world * share)]
        glob = [sum((per_rank[r][k] for r in range(world)), []) for k in range(len(per_rank[0]))]
        assert sum(glob, []) == padded
        assert all(len({len(per_rank[r][k]) for r in range(world)}) == 1
                   for k in range(len(glob)))                # equal rank shares in every step
        if world * share == n:
            assert glob == [b.indices.tolist() for b in single.batches(epoch)]


def test_training_order_changes_between_epochs():
    s = make_split("training", 50, 10, 0, 1)
    e0 = torch.cat([b.indices for b in s.batches(0)]).tolist()
    e1 = torch.cat([b.indices for b in s.batches(1)]).tolist()
    assert e0 != e1 and sorted(e0) == sorted(e1) == list(range(50))
    assert e0 == torch.cat([b.indices for b in make_split("training", 50, 10, 0, 1)
                            .batches(0)]).tolist()                   # reproducible


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), world=st.integers(1, 4), batch=st.integers(1, 12),
       preload=st.booleans())
def test_test_partition(n, world, batch, preload):
    splits = [make_split("test", n, batch, r, world, preload=preload) for r in range(world)]
    nb = {s.num_batches for s in splits}
    assert len(nb) == 1
    all_idx = []
    for s in splits:
        batches = list(s.batches(3))
        assert len(batches) == s.num_batches
        idx = torch.cat([b.indices for b in batches]).tolist()
        assert idx == sorted(idx) and len(idx) == s.num_local     # contiguous, unshuffled
        sizes = [len(b.indices) for b in batches]
        assert sizes == sorted(sizes, reverse=True)                # empty batches at the end
        for b in batches:
            assert b.inputs.shape[1:] == (1, 2, 2) and b.inputs.shape[0] == len(b.indices)
            assert b.targets.dtype == torch.int64 and b.targets.shape == b.indices.shape
        all_idx += idx
    assert all_idx == list(range(n))                               # disjoint, each sample once


def test_rank_without_test_samples_gets_empty_batches():
    s = make_split("test", 2, 1, 3, 4)
    batches = list(s.batches(0))
    assert s.num_local == 0 and len(batches) == 1
    assert batches[0].inputs.shape == (0, 1, 2, 2) and batches[0].targets.shape == (0,)
    assert s.sample_shape == (1, 2, 2)
