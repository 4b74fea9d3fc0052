"""Slice assembly (SPEC §5.11, §7.5.3): slicing → identity network → assembly reproduces the
covered region; precision, extent, ranks, errors, atomic writing."""

from __future__ import annotations

import math
import os
import tempfile

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmldnn_py.config.types import DataConfig, SlicerConfig
from rmldnn_py.data import build_datasets
from rmldnn_py.errors import DataError, RmldnnError
from rmldnn_py.io.assembly import Assembler


def origins(N: int, s: int, t: int, discard: bool) -> list[int]:
    """Independent statement of SPEC §5.11 slice origins along one dimension."""
    out = []
    o = 0
    if discard:
        while o + s <= N:
            out.append(o)
            o += t
        return out
    while o < N:
        out.append(o)
        if o + s >= N:
            break
        o += t
    return out


def expected(volume: np.ndarray, cfg: SlicerConfig):
    """(extent, channels-last expected array) of one slice set for the identity network."""
    spatial = volume.shape[1:]
    strides = cfg.strides or cfg.sizes
    per_dim = [origins(N, s, t, cfg.discard_remainders)
               for N, s, t in zip(spatial, cfg.sizes, strides)]
    if cfg.discard_remainders:
        extent = tuple(o[-1] + s for o, s in zip(per_dim, cfg.sizes))
    else:
        extent = spatial
    covered = np.zeros(extent, bool)
    for org in np.ndindex(*[len(o) for o in per_dim]):
        covered[tuple(slice(per_dim[i][k], per_dim[i][k] + cfg.sizes[i])
                      for i, k in enumerate(org))] = True
    region = tuple(slice(0, e) for e in extent)
    vals = np.moveaxis(volume[(slice(None),) + region], 0, -1)
    return extent, np.where(covered[..., None], vals, 0).astype(np.float32), \
        math.prod(len(o) for o in per_dim)


@st.composite
def cases(draw):
    n = draw(st.sampled_from([2, 3]))
    dims = [draw(st.integers(1, 9)) for _ in range(n)]
    channels = draw(st.integers(1, 2))
    channel_axis = channels > 1 or draw(st.booleans())
    nsets = draw(st.integers(1, 2))
    slicers = []
    for k in range(nsets):
        discard = draw(st.booleans())
        sizes = [draw(st.integers(1, d if discard else d + 3)) for d in dims]
        strides = [draw(st.integers(1, s + 2)) for s in sizes]
        mode = draw(st.sampled_from(["none", "padding", "padded_sizes"]))
        padding = padded = None
        if mode == "padding":
            padding = tuple(draw(st.integers(0, 2)) for _ in sizes)
        elif mode == "padded_sizes":
            padded = tuple(s + draw(st.integers(0, 3)) for s in sizes)
        pad_sizes = [s + 2 * p for s, p in zip(sizes, padding)] if padding else \
            (list(padded) if padded else sizes)
        rank = sum(p != 1 for p in pad_sizes)
        slicers.append(dict(name=f"set{k}", sizes=tuple(sizes), strides=tuple(strides),
                            padding=padding, padded_sizes=padded, discard_remainders=discard,
                            rank=rank, transpose=rank == 2 and draw(st.booleans())))
    if len({s["rank"] for s in slicers}) > 1:          # all sets must give the same rank
        slicers = slicers[:1]
    for s in slicers:
        s.pop("rank")
    return dict(dims=dims, channels=channels, channel_axis=channel_axis,
                slicers=[SlicerConfig(**s) for s in slicers],
                fmt=draw(st.sampled_from(["numpy", "hdf5"])), batch=draw(st.integers(1, 4)),
                preload=draw(st.booleans()), half=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


def run_identity(case, directory: str, values: np.ndarray, world: int = 1):
    stored = values if case["channel_axis"] else values[0]
    if case["fmt"] == "numpy":
        path = os.path.join(directory, "vol.npy")
        np.save(path, stored)
    else:
        path = os.path.join(directory, "vol.h5")
        with h5py.File(path, "w") as f:
            f["input"] = stored
    shapes = set()
    out = os.path.join(directory, "pred.h5")
    batch = case["batch"] if len(case["slicers"]) == 1 else 1
    cfg = DataConfig(type=case["fmt"], test_input_path=path, test_target_path=path,
                     test_batch_size=batch * world, preload=case["preload"], num_workers=0,
                     slicers=tuple(case["slicers"]), hdf5_outfile=out,
                     hdf5_precision="half" if case["half"] else "single")
    assemblers = []
    for rank in range(world):
        bundle = build_datasets(cfg, config_path="c.json", logger=None, rank=rank,
                                world_size=world)
        split = bundle.test
        asm = Assembler(split.slicing, out, cfg.hdf5_precision, max_pending=2)
        for x, y, idx in split.batches(1):
            if len(idx):
                torch.testing.assert_close(x, y)       # targets: same geometry
                shapes.add(tuple(x.shape[1:]))
            asm.add(idx, x)                            # identity network
        assemblers.append(asm)
    for other in assemblers[1:]:
        assemblers[0].merge(other)
    assert assemblers[0].close() == out
    with h5py.File(out, "r") as f:
        result = {name: (f[name][()], f[name].dtype) for name in f}
    return result, split


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_identity_network_reproduces_covered_region(case):
    rng = np.random.default_rng(case["seed"])
    # multiples of 1/8: sums of overlapping copies are exact in float32
    values = (rng.integers(-4000, 4000, (case["channels"], *case["dims"])) / 8).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        result, split = run_identity(case, d, values)
    assert sorted(result) == sorted(s.name for s in case["slicers"])
    total = 0
    for cfg in case["slicers"]:
        extent, want, count = expected(values, cfg)
        got, dtype = result[cfg.name]
        total += count
        assert got.shape == (*extent, case["channels"])
        if case["half"]:
            assert dtype == np.float16
            np.testing.assert_allclose(got.astype(np.float32), want, rtol=2 ** -11, atol=0)
        else:
            assert dtype == np.float32
            np.testing.assert_array_equal(got, want)
    assert split.num_total == total


def test_overlap_average_non_dyadic_and_world_merge(tmp_path):
    case = dict(dims=[13, 11], channels=3, channel_axis=True, fmt="hdf5", batch=3,
                preload=True, half=False,
                slicers=[SlicerConfig("pred", (5, 4), strides=(2, 3), padding=(1, 0))])
    values = np.random.default_rng(3).random((3, 13, 11)).astype(np.float32)
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    one, _ = run_identity(case, str(tmp_path / "1"), values)
    two, _ = run_identity(case, str(tmp_path / "2"), values, world=2)     # two ranks, merged
    _, want, _ = expected(values, case["slicers"][0])
    np.testing.assert_allclose(one["pred"][0], want, rtol=1e-6)
    np.testing.assert_allclose(two["pred"][0], one["pred"][0], rtol=1e-6)


def test_averaging_distinct_predictions_and_uncovered_zero(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((10,), np.float32))
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "v.npy"),
                     slicers=(SlicerConfig("a", (4,), strides=(3,)),))
    split = build_datasets(cfg, config_path="c.json", logger=None).test
    assert [split.sample_name(i) for i in range(3)] == ["0:4", "3:7", "6:10"]
    asm = Assembler(split.slicing, str(tmp_path / "o.h5"))
    asm.add([0, 1, 2], torch.tensor([[[1.0] * 4], [[2.0] * 4], [[4.0] * 4]]))
    got = asm.arrays()["a"][:, 0]
    np.testing.assert_array_equal(got, [1, 1, 1, 1.5, 2, 2, 3, 4, 4, 4])
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "v.npy"),
                     slicers=(SlicerConfig("a", (2,), strides=(4,)),))
    split = build_datasets(cfg, config_path="c.json", logger=None).test
    asm = Assembler(split.slicing, str(tmp_path / "o.h5"), channels=1)
    asm.add(torch.arange(3), torch.ones(3, 1, 2))
    np.testing.assert_array_equal(asm.arrays()["a"][:, 0], [1, 1, 0, 0, 1, 1, 0, 0, 1, 1])


def test_errors_and_atomic_file(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((8, 8), np.float32))
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "v.npy"),
                     slicers=(SlicerConfig("a", (4, 4)),))
    split = build_datasets(cfg, config_path="c.json", logger=None).test
    out = tmp_path / "o.h5"
    out.write_bytes(b"old")
    asm = Assembler(split.slicing, str(out))
    asm.add([0], torch.zeros(1, 2, 4, 2))                      # not geometry-preserving
    with pytest.raises(DataError, match=r"network output \[2, 4, 2\] of slice '0:4,0:4' does "
                                        r"not have the slice's spatial shape \[4, 4\]"):
        asm.close()
    asm.abort()
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    asm = Assembler(split.slicing, str(out))
    asm.add([0], torch.zeros(1, 2, 4, 4))
    with pytest.raises(RmldnnError, match="3 channels, earlier ones 2"):
        asm.add([1], torch.zeros(1, 3, 4, 4))
        asm.wait()
    with pytest.raises(RmldnnError, match="2 indices for 1 predictions"):
        Assembler(split.slicing, str(out)).add([0, 1], torch.zeros(1, 2, 4, 4))


def _dist_worker(rank: int, path: str, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        cfg = DataConfig(type="numpy", test_input_path=path, test_batch_size=2, num_workers=0,
                         slicers=(SlicerConfig("p", (4, 4), strides=(2, 3)),),
                         hdf5_outfile=out, hdf5_precision="half")
        split = build_datasets(cfg, config_path="c.json", logger=None, rank=rank,
                               world_size=2).test
        asm = Assembler(split.slicing, out, "half")
        for x, _, idx in split.batches(1):
            asm.add(idx, x * 2)
        written = asm.close()
        assert (written == out) == (rank == 0)
    finally:
        dist.destroy_process_group()


def test_torch_distributed_reduce(tmp_path):
    import torch.multiprocessing as mp

    values = np.random.default_rng(5).random((9, 10)).astype(np.float32)
    np.save(tmp_path / "v.npy", values)
    out = str(tmp_path / "o.h5")
    mp.spawn(_dist_worker, args=(str(tmp_path / "v.npy"), f"file://{tmp_path}/rdv", out),
             nprocs=2, join=True)
    _, want, _ = expected(values[None], SlicerConfig("p", (4, 4), strides=(2, 3)))
    with h5py.File(out, "r") as f:
        got = f["p"][()]
    assert got.dtype == np.float16 and got.shape == (9, 10, 1)
    np.testing.assert_allclose(got.astype(np.float32), 2 * want, rtol=2 ** -10)


def test_per_slice_output_names_and_content(tmp_path):
    """``test_output_path`` without ``hdf5_outfile``: one dataset per slice named by its region
    (grouped by slice set when there are several), transpose undone, padding cropped."""
    from rmldnn_py.io.predictions import PredictionWriter

    values = np.arange(2 * 3 * 6 * 5, dtype=np.float32).reshape(2, 3, 6, 5)
    np.save(tmp_path / "v.npy", values)
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "v.npy"), test_batch_size=1,
                     num_workers=0,
                     slicers=(SlicerConfig("t", (1, 4, 4), padding=(0, 1, 2), transpose=True),
                              SlicerConfig("r", (3, 1, 5))))
    split = build_datasets(cfg, config_path="c.json", logger=None).test
    assert split.slicing.sets[0].sample_shape == (8, 6)
    path = tmp_path / "out" / "output_1.h5"
    with PredictionWriter(str(path)) as w:
        for x, _, idx in split.batches(1):
            for j, i in enumerate(idx.tolist()):
                w.add(split.sample_name(i), split.output_array(i, x[j]))
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["r", "t"]
        assert len(f["t"]) == 12 and len(f["r"]) == 6
        assert "2:3,4:6,4:5" in f["t"]
        np.testing.assert_array_equal(f["t"]["2:3,4:6,4:5"][()], values[:, 2, 4:6, 4:5])
        np.testing.assert_array_equal(f["r"]["0:3,3:4,0:5"][()], values[:, :, 3, :])
