"""Slicers (SPEC §3.5, §5.4, §5.5, §5.11): geometry, messages, errors, targets, preload."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest
import torch

from rmldnn_py.config.types import DataConfig, SlicerConfig
from rmldnn_py.data import build_datasets
from rmldnn_py.data.slicers import Slicing
from rmldnn_py.errors import DataError
from rmldnn_py.log import Logger


def build(cfg, **kw):
    out = io.StringIO()
    bundle = build_datasets(cfg, config_path="config.json", logger=Logger(stream=out), **kw)
    return bundle, [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]


def seis(**kw):
    return SlicerConfig(name="samples", sizes=(64, 64, 256), strides=(64, 64, 17),
                        discard_remainders=True, **kw)


# ------------------------------------------------------------------ counts (SS-SEIS, rmltf)
def test_spec_counts():
    assert len(Slicing([seis()], (704, 590, 1006))) == 4455
    assert Slicing([seis()], (704, 590, 1006)).sets[0].counts == (11, 9, 45)
    assert len(Slicing([seis()], (78, 590, 1006))) == 405
    assert len(Slicing([SlicerConfig("a", (1, 32, 32))], (64, 64, 64))) == 256
    assert len(Slicing([SlicerConfig("a", (64, 64, 1))], (64, 64, 64))) == 64
    inf = Slicing([SlicerConfig("pred", (64, 576, 992), discard_remainders=True)],
                  (78, 590, 1006))
    assert len(inf) == 1 and inf.sets[0].extent == (64, 576, 992)
    assert inf.name(0) == "0:64,0:576,0:992"


def test_counts_included_remainders_and_names():
    s = Slicing([SlicerConfig("a", (4, 4), strides=(3, 4))], (10, 4))
    # dim 1: origins 0, 3, 6 (6 + 4 ≥ 10); dim 2: one slice
    assert s.sets[0].counts == (3, 1)
    assert [s.name(i) for i in range(3)] == ["0:4,0:4", "3:7,0:4", "6:10,0:4"]
    s = Slicing([SlicerConfig("a", (4,))], (10,))
    assert [s.name(i) for i in range(len(s))] == ["0:4", "4:8", "8:10"]       # clipped
    s = Slicing([SlicerConfig("a", (8,))], (5,))
    assert [s.name(i) for i in range(len(s))] == ["0:5"]
    # stride > size: no slice starts outside the array
    s = Slicing([SlicerConfig("a", (2,), strides=(5,))], (10,))
    assert [s.name(i) for i in range(len(s))] == ["0:2", "5:7"]
    s = Slicing([SlicerConfig("a", (2,), strides=(5,), discard_remainders=True)], (10,))
    assert len(s) == 2 and s.sets[0].extent == (7,)


def test_c_order_squeeze_and_groups():
    s = Slicing([SlicerConfig("tiles", (1, 4, 4)), SlicerConfig("cols", (8, 8, 1))], (2, 8, 8))
    assert s.sets[0].sample_shape == (4, 4) and s.sets[1].sample_shape == (8, 8)
    assert len(s) == 2 * 2 * 2 + 8
    names = [s.name(i) for i in range(len(s))]
    assert names[:3] == ["tiles/0:1,0:4,0:4", "tiles/0:1,0:4,4:8", "tiles/0:1,4:8,0:4"]
    assert names[8] == "cols/0:2,0:8,0:1" and names[-1] == "cols/0:2,0:8,7:8"   # clipped


def test_padding_and_padded_sizes():
    s = Slicing([SlicerConfig("a", (4, 4), padding=(1, 2))], (8, 8)).sets[0]
    assert (s.before, s.after, s.padded, s.sample_shape) == ((1, 2), (1, 2), (6, 8), (6, 8))
    s = Slicing([SlicerConfig("a", (4, 4), padded_sizes=(7, 4))], (8, 8)).sets[0]
    assert (s.before, s.after, s.padded) == ((1, 0), (2, 0), (7, 4))
    # padded size > 1 keeps a size-1 dimension
    s = Slicing([SlicerConfig("a", (1, 4), padding=(1, 0))], (8, 8)).sets[0]
    assert s.sample_shape == (3, 4)


# ------------------------------------------------------------------ messages
def test_hdf5_messages_block_and_targets(tmp_path):
    a = np.arange(20 * 12 * 40, dtype=np.float32).reshape(20, 12, 40)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["input"] = a
    with h5py.File(tmp_path / "tg.h5", "w") as f:
        f["target"] = (a % 4).astype(np.int8)
    cfg = DataConfig(type="hdf5", input_path=str(tmp_path / "in.h5"),
                     target_path=str(tmp_path / "tg.h5"), preload=True, batch_size=4,
                     slicers=(SlicerConfig("samples", (8, 8, 16), strides=(8, 8, 5),
                                           discard_remainders=True),))
    bundle, lines = build(cfg)
    inp, tgt = tmp_path / "in.h5", tmp_path / "tg.h5"
    assert lines == [
        "Discovering training input HDF5 samples...",
        f"Slicing dataset 'input' from HDF5 file: {inp}",
        "Full size: [20, 12, 40]",
        "   Slicer: samples",
        "      Sizes       : [8, 8, 16]",
        "      Padding     : [(0,0)(0,0)(0,0)]",
        "      Padded sizes: [8, 8, 16]",
        "      Strides     : [8, 8, 5]",
        "      Remainders  : discarded",
        "      Transpose   : false",
        "      Num samples : 10",
        "Pre-loading input HDF5 arrays for training...",
        "Discovering training target HDF5 samples...",
        f"Slicing dataset 'target' from HDF5 file: {tgt}",
        "Full size: [20, 12, 40]",
        "Pre-loading target HDF5 arrays for training...",
    ]
    s = bundle.train
    assert s.num_total == 10 and s.kind == "hdf5" and s.unit == "samples"
    assert s.sample_shape == (1, 8, 8, 16)
    seen = set()
    for x, y, idx in s.batches(1):
        for j, i in enumerate(idx.tolist()):
            seen.add(i)
            (x0, x1), (y0, y1), (z0, z1) = [tuple(map(int, r.split(":")))
                                            for r in s.sample_name(i).split(",")]
            np.testing.assert_array_equal(x[j, 0].numpy(), a[x0:x1, y0:y1, z0:z1])
            np.testing.assert_array_equal(y[j, 0].numpy(), a[x0:x1, y0:y1, z0:z1] % 4)
    assert seen == set(range(10))
    # preload keeps the array, not the slices
    assert s.reader.cache_in == {} and s.reader.cache_tgt == {}


def test_numpy_messages_channel_axis_and_transpose(tmp_path):
    a = np.random.default_rng(0).random((2, 6, 9)).astype(np.float32)     # (C, X1, X2)
    np.save(tmp_path / "x.npy", a)
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "x.npy"), test_batch_size=2,
                     slicers=(SlicerConfig("t", (4, 4), padded_sizes=(5, 6), transpose=True),))
    bundle, lines = build(cfg)
    assert lines[:3] == ["Discovering test input NumPy samples...",
                         f"Loading file: {tmp_path / 'x.npy'}", "Full size: [2, 6, 9]"]
    assert lines[3:] == ["   Slicer: t", "      Sizes       : [4, 4]",
                         "      Padding     : [(0,1)(1,1)]", "      Padded sizes: [5, 6]",
                         "      Strides     : [4, 4]", "      Remainders  : included",
                         "      Transpose   : true", "      Num samples : 6"]
    s = bundle.test
    assert s.sample_shape == (2, 6, 5)
    x = s.reader.sample(5)[0].numpy()                    # region 4:6, 8:9
    assert s.sample_name(5) == "4:6,8:9"
    expect = np.zeros((2, 5, 6), np.float32)
    expect[:, 0:2, 1:2] = a[:, 4:6, 8:9]
    np.testing.assert_array_equal(x, expect.transpose(0, 2, 1))
    # per-slice output: transpose undone, padding and remainder cropped
    out = s.output_array(5, torch.from_numpy(x[:1] * 2))
    np.testing.assert_array_equal(out, 2 * a[:1, 4:6, 8:9])


def test_several_sets_and_streaming_workers(tmp_path):
    a = np.random.default_rng(1).random((4, 8, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", a)
    slicers = (SlicerConfig("tiles", (1, 8, 8)), SlicerConfig("rows", (4, 1, 8),
                                                              strides=(4, 1, 8)))
    with pytest.raises(DataError, match=r"neural_network.data.batch_size: the slice sets give "
                                        r"samples of different shapes \('tiles' \[8, 8\], "
                                        r"'rows' \[4, 8\]\); .* must be 1 \(received 3\)"):
        build(DataConfig(type="numpy", input_path=str(tmp_path), batch_size=3, slicers=slicers))
    cfg = DataConfig(type="numpy", input_path=str(tmp_path), batch_size=1, num_workers=1,
                     slicers=slicers)
    bundle, lines = build(cfg)
    s = bundle.train
    assert s.num_total == 4 + 8
    assert "   Slicer: rows" in lines and lines.count("      Num samples : 4") == 1
    names = {s.sample_name(i) for i in range(s.num_total)}
    assert "tiles/2:3,0:8,0:8" in names and "rows/0:4,5:6,0:8" in names
    got = 0
    for x, _, idx in s.batches(1):                 # DataLoader worker process
        for j, i in enumerate(idx.tolist()):
            name = s.sample_name(i).split("/")[1]
            reg = tuple(slice(*map(int, r.split(":"))) for r in name.split(","))
            np.testing.assert_array_equal(x[j, 0].numpy(), np.squeeze(a[reg]))
            got += 1
    assert got == s.num_local
    s.close()


def test_preload_bounding_box_per_rank(tmp_path):
    a = np.arange(40 * 4, dtype=np.float64).reshape(40, 4)
    np.save(tmp_path / "v.npy", a)
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "v.npy"), preload=True,
                     test_batch_size=2, slicers=(SlicerConfig("a", (4, 4)),))
    b0, _ = build(cfg, rank=0, world_size=2)
    b1, _ = build(cfg, rank=1, world_size=2)
    arr0, arr1 = b0.test.reader.inputs.array, b1.test.reader.inputs.array
    assert arr0._mem.shape == (1, 20, 4) and arr0._mem.dtype == np.float32
    assert arr1._mem_lo == (20, 0) and arr1._mem.shape == (1, 20, 4)
    xs = [x for x, _, _ in b1.test.batches(1)]
    np.testing.assert_array_equal(xs[0][0, 0].numpy(), a[20:24])
    # a sample outside the box is read from the file
    np.testing.assert_array_equal(b1.test.reader.sample(0)[0][0].numpy(), a[0:4])


# ------------------------------------------------------------------ errors
def test_error_several_hdf5_datasets(tmp_path):
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["input"] = np.zeros((8, 8))
        f["grp/other"] = np.zeros((8, 8))
    cfg = DataConfig(type="hdf5", test_input_path=str(tmp_path / "in.h5"),
                     slicers=(SlicerConfig("a", (4, 4)),))
    with pytest.raises(DataError) as e:
        build(cfg)
    assert str(e.value) == (f"config.json: neural_network.data.test_input_path: slicers need "
                            f"exactly one array to slice, found 2 datasets in "
                            f"'{tmp_path / 'in.h5'}': 'grp/other', 'input'")


def test_error_several_numpy_files(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((8, 8)))
    np.save(tmp_path / "b.npy", np.zeros((8, 8)))
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path),
                     slicers=(SlicerConfig("a", (4, 4)),))
    with pytest.raises(DataError, match=r"exactly one array to slice, found 2 arrays .*a\.npy'"
                                        r", '.*b\.npy'"):
        build(cfg)


def test_error_transpose_3d():
    cfg = DataConfig(type="hdf5", test_input_path="missing.h5",
                     slicers=(SlicerConfig("vol", (4, 4, 4), transpose=True),))
    with pytest.raises(DataError) as e:
        build(cfg)
    assert str(e.value) == ("config.json: neural_network.data.slicers[0].transpose: transpose "
                            "needs 2D slices, slice set 'vol' gives 3D slices [4, 4, 4]")
    # 2D tiles from a volume may be transposed
    Slicing([SlicerConfig("t", (1, 4, 4), transpose=True)], (4, 4, 4))


def test_error_size_larger_than_extent_with_discard(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((10, 20), np.float32))
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "v.npy"),
                     slicers=(SlicerConfig("a", (4, 32), discard_remainders=True),))
    with pytest.raises(DataError) as e:
        build(cfg)
    assert str(e.value) == ("config.json: neural_network.data.slicers[0].sizes: slice size 32 is "
                            "larger than the array extent 20 of dimension 2 (array [10, 20]) "
                            "with discard_remainders: true")
    # without discard the slice is zero-filled
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "v.npy"),
                     slicers=(SlicerConfig("a", (4, 32)),))
    assert build(cfg)[0].test.num_total == 3


def test_other_errors(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((10, 20), np.float32))
    np.save(tmp_path / "t.npy", np.zeros((10, 21), np.float32))
    path = str(tmp_path / "v.npy")

    def err(**kw):
        with pytest.raises(DataError) as e:
            build(DataConfig(type="numpy", test_input_path=path, **kw))
        return str(e.value)

    assert "mutually exclusive" in err(slicers=(SlicerConfig("a", (4, 4), padding=(1, 1),
                                                             padded_sizes=(6, 6)),))
    assert "same rank" in err(slicers=(SlicerConfig("a", (4, 4)), SlicerConfig("b", (1, 4))))
    assert "need an array of rank 3 (no channel axis) or 4" in err(
        slicers=(SlicerConfig("a", (4, 4, 4)),))
    assert "does not have the spatial shape of the input array [10, 20]" in err(
        test_target_path=str(tmp_path / "t.npy"), slicers=(SlicerConfig("a", (4, 4)),))
    assert "strides must be at least 1" in err(slicers=(SlicerConfig("a", (4, 4),
                                                                     strides=(0, 1)),))
