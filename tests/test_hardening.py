"""Hardening against faults and bad input (issue 11): full disks, stale temporary files, file
modes, lazy and resumable logs, symbolic link loops, absurd layer arguments, bad arrays, non-UTF-8
file names, codec noise on stderr, decompression bombs, output-path checks, deep JSON, absurd
learning rates, and test batches over slice sets of different shapes.

Disk-full cases run without root: a write budget is imposed either by replacing ``os.pwrite``
with one that fails with ``ENOSPC`` past N bytes (in-process, deterministic) or by
``RLIMIT_FSIZE`` in a subprocess (the kernel then fails writes with ``EFBIG``); where ``mount``
works (root), a real 64 KiB tmpfs is used as well.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, make_image_tree, run_rmldnn, strip_ts

from rmldnn_py.config.types import CheckpointConfig, Config, DataConfig, SlicerConfig
from rmldnn_py.errors import CheckpointError, ConfigError, DataError, NetworkError, RmldnnError


def _py(code: str, cwd, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run a Python snippet in a fresh interpreter (for rlimits, umask and crash isolation)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path("/tmp") / f"rmldnn_mount_probe_{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], capture_output=True)
        return ok
    finally:
        probe.rmdir()


CAN_MOUNT = _can_mount()


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs with 40000 bytes already used (the audit's reproduction)."""
    if not CAN_MOUNT:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "full"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], check=True)
    (d / "filler").write_bytes(b"\0" * 40000)
    yield d
    subprocess.run(["umount", str(d)], check=False)


def _enospc_after(monkeypatch, budget: int) -> None:
    """Make every ``os.pwrite`` of rmldnn_py.io.atomic fail with ENOSPC once ``budget`` bytes
    have been written (a disk that fills up)."""
    import rmldnn_py.io.atomic as atomic

    real = os.pwrite
    used = [0]

    def pwrite(fd, data, offset):
        n = len(memoryview(data).cast("B"))
        if used[0] + n > budget:
            k = max(0, budget - used[0])
            if k == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            used[0] += k
            return real(fd, memoryview(data).cast("B")[:k], offset)
        used[0] += n
        return real(fd, data, offset)

    monkeypatch.setattr(atomic.os, "pwrite", pwrite)


def _no_temps(directory: Path) -> bool:
    return not [p for p in directory.rglob("*") if p.name.endswith(".tmp")]


# ============================================================================ item 1: disk full
def test_prediction_writer_disk_full_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from rmldnn_py.io.predictions import PredictionWriter

    _enospc_after(monkeypatch, 30000)
    out = tmp_path / "preds" / "output_1.h5"
    with pytest.raises(RmldnnError) as info:
        with PredictionWriter(str(out)) as w:
            for i in range(359):
                w.add(f"digit_{i}.png", np.random.rand(10).astype(np.float32))
    msg = str(info.value)
    assert msg == f"{out}: cannot write predictions: no space left on device"
    assert "\n" not in msg
    assert not out.exists() and _no_temps(tmp_path)


def test_prediction_writer_keeps_old_file_when_disk_fills(tmp_path, monkeypatch):
    from rmldnn_py.io.predictions import PredictionWriter

    out = tmp_path / "output_1.h5"
    with PredictionWriter(str(out)) as w:
        w.add("old", np.ones(3))
    before = out.read_bytes()
    _enospc_after(monkeypatch, 5000)
    with pytest.raises(RmldnnError, match="no space left on device"):
        with PredictionWriter(str(out)) as w:
            for i in range(50):
                w.add(f"s{i}", np.random.rand(3, 16, 16))     # 3 KiB per sample
    assert out.read_bytes() == before and _no_temps(tmp_path)


def test_prediction_writer_file_size_limit_in_subprocess(tmp_path):
    """The kernel refuses writes past RLIMIT_FSIZE (EFBIG; Python ignores SIGXFSZ): the process
    must neither crash nor print HDF5 tracebacks."""
    proc = _py(f"""
        import resource, numpy as np
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        from rmldnn_py.io.predictions import PredictionWriter
        from rmldnn_py.errors import RmldnnError
        try:
            with PredictionWriter({str(tmp_path / 'p' / 'output_1.h5')!r}) as w:
                for i in range(359):
                    w.add(f"digit_{{i}}.png", np.random.rand(10).astype(np.float32))
        except RmldnnError as e:
            print("ERROR:", e)
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip() == (f"ERROR: {tmp_path / 'p' / 'output_1.h5'}: cannot write "
                                   f"predictions: file size limit exceeded (ulimit -f)")
    assert _no_temps(tmp_path)


def test_prediction_writer_real_full_tmpfs(tiny_tmpfs):
    proc = _py(f"""
        import numpy as np
        from rmldnn_py.io.predictions import PredictionWriter
        from rmldnn_py.errors import RmldnnError
        try:
            with PredictionWriter({str(tiny_tmpfs / 'preds' / 'output_1.h5')!r}) as w:
                for i in range(359):
                    w.add(f"digit_{{i}}.png", np.random.rand(10).astype(np.float32))
        except RmldnnError as e:
            print("ERROR:", e)
        """, tiny_tmpfs.parent)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.strip().endswith("output_1.h5: cannot write predictions: no space left "
                                        "on device")
    assert _no_temps(tiny_tmpfs)


def test_prediction_writer_unwritable_directory_is_one_line(tmp_path):
    from rmldnn_py.io.predictions import PredictionWriter

    (tmp_path / "afile").write_text("x")
    with pytest.raises(RmldnnError) as info:
        PredictionWriter(str(tmp_path / "afile" / "output_1.h5"))
    assert str(info.value).startswith(f"{tmp_path / 'afile' / 'output_1.h5'}: cannot write "
                                      f"predictions: ")


def test_atomic_torch_save_disk_full_keeps_old_checkpoint(tmp_path, monkeypatch):
    from rmldnn_py.io.atomic import atomic_torch_save

    path = tmp_path / "model_checkpoint_1.pt"
    atomic_torch_save({"w": torch.zeros(3)}, str(path))
    before = path.read_bytes()
    _enospc_after(monkeypatch, 10000)
    with pytest.raises(CheckpointError) as info:
        atomic_torch_save({"w": torch.randn(100, 100)}, str(path), error_cls=CheckpointError)
    assert str(info.value) == f"{path}: cannot write checkpoint: no space left on device"
    assert path.read_bytes() == before and _no_temps(tmp_path)


def test_atomic_torch_save_file_size_limit(tmp_path):
    proc = _py("""
        import resource, torch
        resource.setrlimit(resource.RLIMIT_FSIZE, (200 * 1024, 200 * 1024))
        from rmldnn_py.io.atomic import atomic_torch_save
        from rmldnn_py.errors import CheckpointError
        try:
            atomic_torch_save({"w": torch.randn(1000, 1000)}, "ck/model_checkpoint_1.pt",
                              error_cls=CheckpointError)
        except CheckpointError as e:
            print("ERROR:", e)
        """, tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.strip() == ("ERROR: ck/model_checkpoint_1.pt: cannot write checkpoint: "
                                   "file size limit exceeded (ulimit -f)")
    assert os.listdir(tmp_path / "ck") == []


def test_write_error_reasons():
    from rmldnn_py.io.atomic import is_write_error, write_error

    torch_msg = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 "
                             "vs 598")
    assert is_write_error(torch_msg) and not is_write_error(RuntimeError("shape mismatch"))
    assert str(write_error("a.pt", OSError(errno.ENOSPC, "No space left on device"))) == \
        "a.pt: cannot write file: no space left on device"
    assert str(write_error("a.pt", torch_msg, "checkpoint",
                           cause=OSError(errno.EFBIG, "File too large"))) == \
        "a.pt: cannot write checkpoint: file size limit exceeded (ulimit -f)"
    hdf5 = RuntimeError("Can't decrement id ref count (file write failed: time = x, errno = 28, "
                        "error message = 'No space left on device')")
    assert str(write_error("p.h5", hdf5, "predictions")).endswith(": no space left on device")
    e = write_error("x", OSError(errno.EROFS, "Read-only file system"), "log file",
                    CheckpointError)
    assert isinstance(e, CheckpointError) and str(e) == "x: cannot write log file: read-only " \
                                                        "file system"


def test_log_files_write_error_is_one_line(tmp_path):
    proc = _py("""
        import resource
        from rmldnn_py.engine.logfiles import LogFiles
        from rmldnn_py.errors import RmldnnError
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
        logs = LogFiles("out.txt")
        try:
            for b in range(1, 100):
                logs.train_line(1, b, 99, 0.5, 0.25, 0.125)
        except RmldnnError as e:
            print("ERROR:", e)
        logs.close()
        """, tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.strip() == ("ERROR: out_train.txt: cannot write log file: file size "
                                   "limit exceeded (ulimit -f)")


# ================================================================ item 3 / 9: temp files, modes
def test_atomic_files_honour_the_umask(tmp_path):
    proc = _py("""
        import os, numpy as np, torch
        from rmldnn_py.io.atomic import atomic_torch_save
        from rmldnn_py.io.predictions import PredictionWriter
        for mask in (0o022, 0o077, 0o002):
            os.umask(mask)
            atomic_torch_save({"w": torch.zeros(2)}, f"c_{mask:o}.pt")
            with PredictionWriter(f"p_{mask:o}.h5") as w:
                w.add("a", np.zeros(2))
            with open(f"ref_{mask:o}.txt", "w"):
                pass
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for mask in ("22", "77", "2"):
        ref = stat.S_IMODE(os.stat(tmp_path / f"ref_{mask}.txt").st_mode)   # what open() gives
        assert ref == 0o666 & ~int(mask, 8)
        for name in (f"c_{mask}.pt", f"p_{mask}.h5"):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == ref, name


def test_temp_names_carry_the_pid_and_stale_ones_are_cleaned(tmp_path):
    from rmldnn_py.io import atomic

    # a temporary file of a process that is gone: spawn one, let it exit
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = atomic._HOST
    stale = tmp_path / f".model_checkpoint_3.pt.{host}-{dead}.abcdefgh.tmp"
    stale.write_bytes(b"x" * 100)
    live = tmp_path / f".output_1.h5.{host}-1.abcdefgh.tmp"          # pid 1 is alive
    live.write_bytes(b"x")
    other_host = tmp_path / f".output_2.h5.00000000-{dead}.abcdefgh.tmp"
    other_host.write_bytes(b"x")
    unrelated = tmp_path / ".model_checkpoint_3.pt.notours.tmp"
    unrelated.write_bytes(b"x")
    user_file = tmp_path / "model_checkpoint_3.pt"
    user_file.write_bytes(b"x")
    with atomic.atomic_path(str(tmp_path / "model_checkpoint_4.pt")) as mine:
        name = os.path.basename(mine)
        assert name.startswith(f".model_checkpoint_4.pt.{host}-{os.getpid()}.")
        assert name.endswith(".tmp")
        assert atomic.in_flight() == [mine]
        removed = atomic.clean_stale_temps(str(tmp_path))
        assert removed == [str(stale)]
        assert os.path.exists(mine)                     # our own file being written is kept
    for p in (live, other_host, unrelated, user_file):
        assert p.exists()
    assert atomic.in_flight() == []


def test_legacy_temp_files_removed_only_when_old(tmp_path):
    from rmldnn_py.io import atomic

    old = tmp_path / ".model_checkpoint_7.pt.k2j4l5m6.tmp"          # mkstemp-style, no pid
    new = tmp_path / ".output_7.h5.a1b2c3d4.tmp"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    t = os.path.getmtime(old) - 2 * atomic.LEGACY_AGE_S
    os.utime(old, (t, t))
    assert atomic.clean_stale_temps(str(tmp_path)) == [str(old)]
    assert new.exists()
    assert atomic.clean_stale_temps(str(tmp_path / "missing")) == []


def test_remove_in_flight_from_a_sigterm_handler(tmp_path):
    """A SIGTERM while a checkpoint is written: the handler removes the temporary file."""
    proc = _py("""
        import os, signal, sys
        from rmldnn_py.io.atomic import atomic_path, remove_in_flight

        def on_term(signum, frame):
            remove_in_flight()
            sys.exit(143)

        signal.signal(signal.SIGTERM, on_term)
        with atomic_path("ck/model_checkpoint_1.pt") as tmp:
            with open(tmp, "wb") as f:
                f.write(b"x" * 1000)
            print(os.listdir("ck"), flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
        """, tmp_path)
    assert proc.returncode == 143, proc.stderr
    assert ".tmp" in proc.stdout                      # it existed while writing
    assert os.listdir(tmp_path / "ck") == []


# ===================================================================== item 2: lazy logs, resume
def test_logs_are_opened_by_their_first_line(tmp_path):
    from rmldnn_py.engine.logfiles import LogFiles

    (tmp_path / "out_train.txt").write_text("1 1 0.5 0.1 0.7 0.3\n")
    (tmp_path / "out_test.txt").write_text("Epoch: 1 Loss: 0.7 Accuracy: 0.500\n")
    logs = LogFiles(str(tmp_path / "out.txt"))
    logs.close()                                         # a run that failed before its first line
    assert (tmp_path / "out_train.txt").read_text() == "1 1 0.5 0.1 0.7 0.3\n"
    assert (tmp_path / "out_test.txt").read_text() == "Epoch: 1 Loss: 0.7 Accuracy: 0.500\n"
    logs = LogFiles(str(tmp_path / "out.txt"))
    logs.train_line(1, 1, 2, 0.25, 0.5, 0.125)
    logs.close()                                         # a run without test data
    assert (tmp_path / "out_train.txt").read_text() == "1 1 0.500000 0.250 0.5 0.125\n"
    assert not (tmp_path / "out_test.txt").exists()      # no stale, no empty test log


def test_logs_without_test_data_create_no_test_file(tmp_path):
    from rmldnn_py.engine.logfiles import LogFiles

    logs = LogFiles(str(tmp_path / "sub" / "out.txt"))
    for b in (1, 2):
        logs.train_line(1, b, 2, 0.1 * b, 0.5, 0.25)
    logs.close()
    assert sorted(os.listdir(tmp_path / "sub")) == ["out_train.txt"]


def test_logs_resume_cuts_at_the_checkpoint_and_appends(tmp_path):
    from rmldnn_py.engine.logfiles import LogFiles

    train = "".join(f"{e} {b} {e - 1 + b / 3:.6f} 0.1 0.5 0.2\n" for e in (1, 2, 3) for b in (1, 2, 3))
    (tmp_path / "out_train.txt").write_text(train + "3 4 2.9")       # + a killed, partial line
    (tmp_path / "out_test.txt").write_text("".join(f"Epoch: {e} Loss: 0.5 Accuracy: 0.250\n"
                                                   for e in (1, 2, 3)))
    logs = LogFiles(str(tmp_path / "out.txt"), resume_from=(2, 2))
    assert (tmp_path / "out_train.txt").read_text().endswith("3 4 2.9")   # untouched so far
    logs.train_line(2, 3, 3, 9.0, 0.4, 0.1)
    logs.test_line(2, 0.4, 0.75)
    logs.close()
    lines = (tmp_path / "out_train.txt").read_text().splitlines()
    assert [tuple(map(int, ln.split()[:2])) for ln in lines] == \
        [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert lines[-1] == "2 3 2.000000 9.000 0.4 0.1"
    assert (tmp_path / "out_test.txt").read_text().splitlines() == [
        "Epoch: 1 Loss: 0.5 Accuracy: 0.250", "Epoch: 2 Loss: 0.5 Accuracy: 0.250",
        "Epoch: 2 Loss: 0.4 Accuracy: 0.750"]


def test_logs_resume_whole_epoch_and_directory_in_the_way(tmp_path):
    from rmldnn_py.engine.logfiles import LogFiles

    (tmp_path / "out_train.txt").write_text("1 1 0.5 0 1 1\n1 2 1.0 0 1 1\n2 1 1.5 0 1 1\n")
    logs = LogFiles(str(tmp_path / "out.txt"), resume_from=(1, None))
    logs.train_line(2, 1, 2, 1.0, 0.5, 0.5)
    logs.close()
    assert [ln.split()[:2] for ln in (tmp_path / "out_train.txt").read_text().splitlines()] == \
        [["1", "1"], ["1", "2"], ["2", "1"]]
    (tmp_path / "d_train.txt").mkdir()
    logs = LogFiles(str(tmp_path / "d.txt"))
    with pytest.raises(RmldnnError) as info:
        logs.train_line(1, 1, 1, 0.0, 0.0, 0.0)
    assert str(info.value).startswith(f"{tmp_path / 'd_train.txt'}: cannot write log file: ")
    logs.train_line(1, 2, 2, 0.0, 0.0, 0.0)           # later lines: no second error
    logs.close()


# ============================================================================ item 4: symlinks
def test_symlink_loop_is_followed_once(tmp_path):
    from rmldnn_py.data.images import ImageSource

    root = tmp_path / "training"
    make_image_tree(root, ["0", "1"], 10)
    os.symlink(".", root / "0" / "loop")                # training/0/loop -> training/0
    os.symlink("..", root / "1" / "up")                 # training/1/up -> training
    src = ImageSource(str(root), "cfg.json: neural_network.data.input_path")
    assert len(src) == 20
    assert {src.name(i).split("/")[0] for i in range(len(src))} == {"0", "1"}
    assert len(src.warnings) == 1
    assert src.warnings[0].startswith("cfg.json: neural_network.data.input_path: '")
    assert "symbolic link loop" in src.warnings[0] and "(and 1 more)" in src.warnings[0]


def test_symlink_to_outside_directory_is_followed(tmp_path):
    from rmldnn_py.data.sources import walk_files

    make_image_tree(tmp_path / "elsewhere", ["a"], 3)
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "elsewhere" / "a", tmp_path / "root" / "a")
    warn: list[str] = []
    found = walk_files(str(tmp_path / "root"), (".jpg",), warn)
    assert [r for r, _ in found] == ["a/image_0.jpg", "a/image_1.jpg", "a/image_2.jpg"]
    assert warn == []


def test_symlink_loop_through_the_cli(smoke_dir):
    cfg = json.loads((smoke_dir / "config_rmldnn_test.json").read_text())
    cfg["neural_network"]["num_epochs"] = 1
    (smoke_dir / "config_rmldnn_test.json").write_text(json.dumps(cfg))
    train = smoke_dir / "data/mnist_jpg/training"
    for cls in ("0", "1"):                               # 10 + 10 images
        for p in sorted((train / cls).iterdir())[10:]:
            p.unlink()
    os.symlink(".", train / "0" / "loop")
    proc = run_rmldnn(["--config=", "./config_rmldnn_test.json"], cwd=smoke_dir)
    assert proc.returncode == 0, proc.stderr
    out = strip_ts(proc.stdout)
    assert "   Num images  (total)      : 20" in out
    assert out.count("Number of class labels: 2") == 2
    warn = [ln for ln in out if ln.startswith("WARNING:") and "loop" in ln]
    assert len(warn) == 1 and "training/0/loop" in warn[0]


# ======================================================================= item 5: layer arguments
def _net(changes=None):
    layers = [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [None, 8, 8, 1]}},
        {"class_name": "Conv2D", "config": {"name": "conv", "filters": 2, "kernel_size": 3}},
        {"class_name": "MaxPooling2D", "config": {"name": "pool", "pool_size": 2}},
        {"class_name": "Flatten", "config": {"name": "flat"}},
        {"class_name": "Dense", "config": {"name": "fc", "units": 3}},
    ]
    for (layer, key), value in (changes or {}).items():
        layers[[ly["config"]["name"] for ly in layers].index(layer)]["config"][key] = value
    return layers


BAD_LAYER_ARGS = [
    ({("fc", "units"): -5}, "layer 'fc': 'units' must be a positive integer, received -5"),
    ({("fc", "units"): 0}, "layer 'fc': 'units' must be a positive integer, received 0"),
    ({("fc", "units"): 2.5}, "layer 'fc': 'units' must be a positive integer, received 2.5"),
    ({("fc", "units"): "3"}, "layer 'fc': 'units' must be a positive integer, received \"3\""),
    ({("fc", "units"): True}, "layer 'fc': 'units' must be a positive integer, received true"),
    ({("fc", "units"): 2 ** 40}, "layer 'fc': a tensor of shape [1099511627776, 18] needs 72.0 "
                                 "TiB"),
    ({("conv", "filters"): -1}, "layer 'conv': 'filters' must be a positive integer, received -1"),
    ({("conv", "filters"): 2 ** 40}, "layer 'conv': a tensor of shape [1099511627776, 1, 3, 3]"),
    ({("conv", "kernel_size"): 0}, "layer 'conv': 'kernel_size' must be a positive integer, "
                                   "received 0"),
    ({("conv", "kernel_size"): [3, "x"]}, "layer 'conv': 'kernel_size' must hold 2 values, each "
                                          "a positive integer, received [3, \"x\"]"),
    ({("conv", "strides"): 0}, "layer 'conv': 'strides' must be a positive integer, received 0"),
    ({("conv", "dilation_rate"): -2}, "layer 'conv': 'dilation_rate' must be a positive integer"),
    ({("conv", "padding"): [-1, 1]}, "layer 'conv': 'padding' must hold 2 values, each a "
                                     "non-negative integer, received [-1, 1]"),
    ({("pool", "pool_size"): 0}, "layer 'pool': 'pool_size' must be a positive integer, "
                                 "received 0"),
    ({("pool", "strides"): [1, 0]}, "layer 'pool': 'strides' must hold 2 values"),
    ({("in", "batch_input_shape"): [None, "a", 8, 1]},
     "layer 'in': 'batch_input_shape' must hold positive integers or null, received "
     "[null, \"a\", 8, 1]"),
    ({("in", "batch_input_shape"): [None, -8, 8, 1]},
     "layer 'in': 'batch_input_shape' must hold positive integers or null, received "
     "[null, -8, 8, 1]"),
    ({("in", "batch_input_shape"): [None, 8, 8, 2 ** 40]}, "layer 'in': one sample's output of "
                                                          "shape (1099511627776, 8, 8) needs"),
]


@pytest.mark.parametrize("changes,expected", BAD_LAYER_ARGS,
                         ids=[e[:40] for _, e in BAD_LAYER_ARGS])
def test_bad_layer_arguments(changes, expected):
    from rmldnn_py.network import build_network

    with pytest.raises(NetworkError) as info:
        build_network(_net(changes), config_path="cfg.json")
    msg = str(info.value)
    assert msg.startswith("cfg.json: " + expected), msg
    assert "\n" not in msg


@pytest.mark.parametrize("layer,cfg,expected", [
    ("Dropout", {"rate": 1.0}, "'rate' must be a number in [0, 1), received 1.0"),
    ("SpatialDropout2D", {"rate": -0.5}, "'rate' must be a number in [0, 1), received -0.5"),
    ("GaussianNoise", {"stddev": -1}, "'stddev' must be a number in [0, inf), received -1"),
    ("BatchNormalization", {"epsilon": 0}, "'epsilon' must be a number in (0, inf), received 0"),
    ("BatchNormalization", {"momentum": 2}, "'momentum' must be a number in [0, 1], received 2"),
    ("UpSampling2D", {"size": [2, 0]}, "'size' must hold 2 values, each a positive integer"),
    ("ZeroPadding2D", {"padding": [[1, -1], [0, 0]]}, "'padding' must hold non-negative integers"),
    ("Cropping2D", {"cropping": -1}, "'cropping' must hold non-negative integers, received -1"),
    ("Reshape", {"target_shape": [-5, 2]}, "'target_shape' must hold positive integers (or one "
                                           "-1/null for the inferred size), received [-5, 2]"),
    ("GroupNormalization", {"groups": 0}, "'groups' must be a positive integer or -1, received 0"),
    ("Conv2DTranspose", {"filters": 0, "kernel_size": 2}, "'filters' must be a positive integer"),
    ("SeparableConv2D", {"filters": 2, "kernel_size": 3, "depth_multiplier": 0},
     "'depth_multiplier' must be a positive integer, received 0"),
])
def test_bad_arguments_of_other_layers(layer, cfg, expected):
    from rmldnn_py.network import build_network

    layers = [{"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [None, 8, 8, 4]}},
              {"class_name": layer, "config": dict(cfg, name="x")}]
    with pytest.raises(NetworkError) as info:
        build_network(layers, config_path="cfg.json")
    assert str(info.value).startswith("cfg.json: layer 'x': " + expected), str(info.value)


def test_valid_layer_arguments_still_build():
    """The checks accept what Keras accepts: ints, integral floats, explicit zero padding."""
    from rmldnn_py.network import build_network

    net = build_network(_net({("fc", "units"): 4.0, ("conv", "padding"): [0, 1]}),
                        config_path="cfg.json")
    assert net.output_shape == (4,)
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 4)


# =========================================================================== item 5: deep JSON
def test_config_nested_100k_deep(tmp_path):
    from rmldnn_py.config.load import load_config

    p = tmp_path / "deep.json"
    d = 100_000
    p.write_text('{"neural_network": ' + "[" * d + "]" * d + "}")
    with pytest.raises(ConfigError) as info:
        load_config(str(p))
    assert str(info.value) == (f"{p}: invalid JSON at line 1, column 119: nested more than 100 "
                               f"levels deep")


def test_config_nested_900_deep_is_refused_before_any_recursion(tmp_path):
    from rmldnn_py.config.load import load_config

    p = tmp_path / "deep.json"
    p.write_text('{"neural_network": {"data": {"x": ' + "[" * 900 + "]" * 900 + "}}}")
    with pytest.raises(ConfigError, match="nested more than 100 levels deep"):
        load_config(str(p))
    # brackets inside strings do not count
    from rmldnn_py.config.load import check_json_depth

    check_json_depth('{"a": "' + "[" * 500 + '"}', "x.json")


def test_network_file_nested_deep(tmp_path):
    from rmldnn_py.network import build_network

    p = tmp_path / "net.json"
    p.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(NetworkError, match=r"net\.json: invalid JSON at line 1, column 101: "
                                           r"nested more than 100 levels deep"):
        build_network(str(p), config_path="cfg.json")


# ======================================================================= item 5: learning rate
def test_absurd_learning_rate():
    from rmldnn_py.config.types import OptimizerConfig
    from rmldnn_py.engine.optim import build_optimizer

    with pytest.raises(ConfigError) as info:
        build_optimizer(OptimizerConfig("SGD", {"learning_rate": 1e300}),
                        [torch.nn.Parameter(torch.zeros(2))], "c.json: neural_network.optimizer")
    assert str(info.value).startswith("c.json: neural_network.optimizer.learning_rate: must be "
                                      "<= 1e+06 (got 1e+300)")
    # what the audit saw mid-training: torch cannot even apply such a rate to float32 weights
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="overflow"):
        torch.optim.SGD([p], lr=1e300).step()
    build_optimizer(OptimizerConfig("LARS", {"learning_rate": 32.0}),
                    [torch.nn.Parameter(torch.zeros(2))])


# ============================================================== item 5 / 6: bad arrays and files
def test_complex_npy_is_an_error(tmp_path):
    from rmldnn_py.data.arrays import NumpySource

    np.save(tmp_path / "a.npy", np.ones((2, 3), np.float32))
    np.save(tmp_path / "b.npy", np.ones((2, 3)) * (1 + 2j))
    src = NumpySource(str(tmp_path), "cfg.json: neural_network.data.input_path")
    src.load(0)
    with pytest.raises(DataError) as info:
        src.load(1)
    assert str(info.value) == (f"cfg.json: neural_network.data.input_path: NumPy sample "
                               f"'{tmp_path / 'b.npy'}' holds complex numbers (complex128), "
                               f"expected real numbers (integer or floating point)")


@pytest.mark.parametrize("data,what", [
    (np.array([b"abc", b"de"]), "byte strings (|S3)"),
    (np.array(["x", "yz"], dtype=h5py.string_dtype()), "strings (object)"),
    (np.ones(3, np.complex64), "complex numbers (complex64)"),
])
def test_bad_hdf5_datasets_are_refused_at_discovery(tmp_path, data, what):
    from rmldnn_py.data.arrays import HDF5Source

    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["good"] = np.ones(3, np.float32)
        f["grp/bad"] = data
    with pytest.raises(DataError) as info:
        HDF5Source(str(tmp_path), "cfg.json: neural_network.data.input_path")
    assert str(info.value) == (f"cfg.json: neural_network.data.input_path: dataset 'grp/bad' of "
                               f"HDF5 file '{tmp_path / 'd.h5'}' holds {what}, expected real "
                               f"numbers (integer or floating point)")


def test_complex_array_for_slicers(tmp_path):
    from rmldnn_py.data.slicers import sliced_source

    np.save(tmp_path / "v.npy", np.ones((8, 8), np.complex64))
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "v.npy"),
                     slicers=(SlicerConfig("s", (4, 4)),))
    with pytest.raises(DataError, match=r"NumPy file '.*v\.npy' holds complex numbers"):
        sliced_source("numpy", str(tmp_path / "v.npy"), "cfg.json: x", cfg=cfg,
                      config_path="cfg.json")


# ======================================================== item 7: non-UTF-8 names, item 11: attrs
def test_dataset_names_of_non_utf8_file_names(tmp_path):
    from rmldnn_py.io.predictions import PredictionWriter, dataset_name

    raw = os.fsdecode(b"digit_\xff\xfe.png")
    assert dataset_name(raw) == "digit_\\xff\\xfe.png"
    assert dataset_name("chiffre_é.png") == "chiffre_é.png"          # valid UTF-8 unchanged
    path = tmp_path / "o.h5"
    with PredictionWriter(str(path), attrs={"class_names": ["0", os.fsdecode(b"c\xff")],
                                            "epoch": 3}) as w:
        w.add(raw, np.arange(3))
        w.add("sub/ok.png", np.ones(2))
    with h5py.File(path) as f:
        assert sorted(f) == ["digit_\\xff\\xfe.png", "sub"]
        np.testing.assert_array_equal(f["digit_\\xff\\xfe.png"][()], np.arange(3))
        assert [v.decode() if isinstance(v, bytes) else v for v in f.attrs["class_names"]] == \
            ["0", "c\\xff"]
        assert int(f.attrs["epoch"]) == 3


def test_non_utf8_file_name_through_the_cli(smoke_dir):
    cfg = json.loads((smoke_dir / "config_rmldnn_test.json").read_text())
    cfg["neural_network"]["num_epochs"] = 1
    cfg["neural_network"]["data"]["test_output_path"] = "./pred/"
    (smoke_dir / "config_rmldnn_test.json").write_text(json.dumps(cfg))
    d = os.fsencode(smoke_dir / "data/mnist_jpg/testing/1")
    os.rename(os.path.join(d, b"image_0.jpg"), os.path.join(d, b"image_\xff\xfe.jpg"))
    proc = run_rmldnn(["--config=", "./config_rmldnn_test.json"], cwd=smoke_dir)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(smoke_dir / "pred/output_1.h5") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert len(names) == 20
    assert "1/image_\\xff\\xfe.jpg" in names


# ============================================================= item 8: stderr, item 10: bombs
def _bad_png(path: Path) -> None:
    im = Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8))
    im.save(path)
    data = bytearray(path.read_bytes())
    i = data.index(b"IDAT")
    data[i:i + 4] = b"IDA["                        # libpng: "IDA[: bad header (invalid type)"
    path.write_bytes(bytes(data))


def test_codec_messages_do_not_reach_stderr(tmp_path):
    _bad_png(tmp_path / "bad.png")
    proc = _py(f"""
        import sys, torch, warnings
        from rmldnn_py.data.images import decode
        try:
            decode({str(tmp_path / 'bad.png')!r})
        except ValueError as e:
            print("ERROR:", e)
        print("after", file=sys.stderr, flush=True)
        # the same bytes through torchvision alone print libpng's line (the reason of the fix)
        warnings.simplefilter("ignore")
        from torchvision.io import decode_image
        data = open({str(tmp_path / 'bad.png')!r}, "rb").read()
        try:
            decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        except RuntimeError:
            pass
        """, tmp_path)
    assert proc.stdout.startswith("ERROR: ")
    before, after = proc.stderr.split("after\n", 1)
    assert before == ""                           # nothing from libpng, fd 2 restored after
    assert "libpng" in after


def test_corrupt_png_through_the_cli_is_one_stderr_line(smoke_dir):
    cfg = json.loads((smoke_dir / "config_rmldnn_test.json").read_text())
    cfg["neural_network"]["num_epochs"] = 1
    (smoke_dir / "config_rmldnn_test.json").write_text(json.dumps(cfg))
    _bad_png(smoke_dir / "data/mnist_jpg/training/1/image_7.png")
    proc = run_rmldnn(["--config=", "./config_rmldnn_test.json"], cwd=smoke_dir)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmldnn: error: ") and "image_7.png" in lines[0]


def test_raw_pickle_checkpoint_gives_no_torch_warnings(tmp_path):
    from rmldnn_py.engine.checkpoint import read_pt_state

    p = tmp_path / "raw.pt"
    p.write_bytes(pickle.dumps({"model": {"w": [1, 2]}}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as info:
            read_pt_state(str(p))
    assert caught == []
    assert str(info.value) == (f"{p}: not a readable rmldnn_py checkpoint: it is not a torch "
                               f"archive of tensors (a raw Python pickle or another format); "
                               f"only tensors are read from checkpoints, nothing in them is "
                               f"executed")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match=r"pickled Python object "
                                              r"\(torch\.nn\.modules\.linear\.Linear\)"):
        read_pt_state(str(tmp_path / "module.pt"))


def _png_header_bomb(path: Path, width: int, height: int) -> None:
    """A valid 1-bit grayscale PNG of ``width`` x ``height`` zeros, compressed as it is written
    (50 MB of pixels in ~50 KB; building it with Pillow would need the pixels in memory)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))


def test_decompression_bomb_refused_from_the_header(tmp_path, monkeypatch):
    import rmldnn_py.data.images as images

    bomb = tmp_path / "bomb.png"
    _png_header_bomb(bomb, 20000, 20000)
    assert bomb.stat().st_size < 200_000
    with Image.open(bomb) as im:                       # the reference reader agrees on the size
        assert im.size == (20000, 20000)
    called = []
    monkeypatch.setattr(images, "decode_image", lambda *a, **k: called.append(1))
    with pytest.raises(ValueError) as info:
        images.decode(str(bomb), max_pixels=178956970)
    assert str(info.value).startswith("the image has 20000 x 20000 = 400000000 pixels, more than "
                                      "neural_network.data.max_image_pixels = 178956970")
    assert called == []                                # refused before any decoding
    jpg = tmp_path / "x.jpg"
    Image.new("RGB", (40, 30)).save(jpg)
    with pytest.raises(ValueError, match="40 x 30 = 1200 pixels"):
        images.decode(str(jpg), max_pixels=1000)
    gif = tmp_path / "x.gif"                           # a Pillow-only format
    Image.new("L", (40, 30)).save(gif)
    with pytest.raises(ValueError, match="40 x 30 = 1200 pixels"):
        images.decode(str(gif), max_pixels=1000)
    assert images.header_size(jpg.read_bytes()) == (40, 30)


def test_max_image_pixels_through_the_cli(smoke_dir):
    cfg = json.loads((smoke_dir / "config_rmldnn_test.json").read_text())
    cfg["neural_network"]["num_epochs"] = 1
    cfg["neural_network"]["data"]["max_image_pixels"] = 700       # 28 x 28 = 784
    (smoke_dir / "config_rmldnn_test.json").write_text(json.dumps(cfg))
    proc = run_rmldnn(["--config=", "./config_rmldnn_test.json"], cwd=smoke_dir)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "28 x 28 = 784 pixels, more than neural_network.data.max_image_pixels = 700" in lines[0]
    assert "mnist_jpg/training/0/image_0.jpg" in lines[0]


# ========================================================================= item 5: output paths
def _cfg(tmp_path, **data) -> Config:
    ck = data.pop("save", None)
    outfile = data.pop("outfile", None)
    return Config(path="cfg.json", layers=[], data=DataConfig(**data), outfile=outfile,
                  checkpoints=CheckpointConfig(save=ck))


def test_output_path_checks(tmp_path, monkeypatch):
    from rmldnn_py.io.outputs import check_output_paths

    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("x")
    Path("adir").mkdir()
    Path("logs_train.txt").mkdir()
    cases = [
        (dict(test_output_path="afile"), "cfg.json: neural_network.data.test_output_path: "
                                         "'afile' is an existing file (expected a directory)"),
        (dict(save="afile"), "cfg.json: neural_network.checkpoints.save: 'afile' is an existing "
                             "file (expected a directory)"),
        (dict(hdf5_outfile="adir"), "cfg.json: neural_network.data.hdf5_outfile: 'adir' is an "
                                    "existing directory (expected a file)"),
        (dict(outfile="logs.txt"), "cfg.json: neural_network.outfile: log file 'logs_train.txt' "
                                   "is an existing directory (expected a file)"),
        (dict(test_output_path="afile/sub/"), "cfg.json: neural_network.data.test_output_path: "
                                              "'afile/sub/' cannot be created: "
                                              f"'{tmp_path / 'afile'}' is a file, not a directory"),
    ]
    for data, expected in cases:
        with pytest.raises(ConfigError) as info:
            check_output_paths(_cfg(tmp_path, **data))
        assert str(info.value) == expected
    before = sorted(os.listdir("."))
    check_output_paths(_cfg(tmp_path, test_output_path="new/deep/", save="adir",
                            hdf5_outfile="x/y.h5", outfile="out/o.txt"))
    assert sorted(os.listdir(".")) == before            # nothing created


def test_output_paths_on_a_read_only_file_system(tmp_path):
    from rmldnn_py.io.outputs import check_output_paths

    ro = tmp_path / "ro"
    ro.mkdir()
    if CAN_MOUNT:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(ro)], check=True)
    elif os.geteuid() != 0:
        ro.chmod(0o555)
    else:
        pytest.skip("root without mount: no read-only directory")
    try:
        with pytest.raises(ConfigError) as info:
            check_output_paths(_cfg(tmp_path, test_output_path=f"{ro / 'preds'}/"))
        assert str(info.value) == (f"cfg.json: neural_network.data.test_output_path: "
                                   f"'{ro / 'preds'}/' cannot be created: directory '{ro}' is "
                                   f"not writable (read-only file system or no write permission)")
        with pytest.raises(ConfigError, match=r"neural_network.data.hdf5_outfile: '.*ro/a/b\.h5' "
                                              r"cannot be created: directory '.*ro' is not "
                                              r"writable"):
            check_output_paths(_cfg(tmp_path, hdf5_outfile=str(ro / "a" / "b.h5")))
        with pytest.raises(ConfigError, match=r"neural_network.checkpoints.save: directory '.*ro' "
                                              r"is not writable"):
            check_output_paths(_cfg(tmp_path, save=str(ro)))
    finally:
        if CAN_MOUNT:
            subprocess.run(["umount", str(ro)], check=False)
        else:
            ro.chmod(0o755)


# ===================================================== item 12: slice sets of different shapes
def test_test_batches_never_mix_slice_sets():
    from rmldnn_py.data.split import _grouped_test_batches

    groups = [(0, 9), (9, 15)]                           # 9 tiles, 6 strips
    assert _grouped_test_batches(list(range(15)), groups, 4) == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8], [9, 10, 11, 12], [13, 14]]
    # np = 2: blocks 0..7 and 8..14
    assert _grouped_test_batches(list(range(8)), groups, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert _grouped_test_batches(list(range(8, 15)), groups, 4) == [[8], [9, 10, 11, 12],
                                                                   [13, 14]]
    assert _grouped_test_batches([], groups, 4) == []


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sliced_test_split_batches_per_set_on_every_rank(tmp_path, world):
    from rmldnn_py.data import build_datasets

    np.save(tmp_path / "v.npy", np.random.default_rng(0).random((2, 16, 16)).astype(np.float32))
    cfg = DataConfig(type="numpy", test_input_path=str(tmp_path / "v.npy"), test_batch_size=4 * world,
                     slicers=(SlicerConfig("tiles", (8, 8), strides=(5, 5)),
                              SlicerConfig("strips", (16, 3), strides=(16, 3))))
    splits = [build_datasets(cfg, config_path="cfg.json", logger=None, rank=r,
                             world_size=world).test for r in range(world)]
    sets = splits[0].slicing.sets
    assert [s.num_samples for s in sets] == [9, 6]
    nb = {s.num_batches for s in splits}
    assert len(nb) == 1                                   # identical on every rank
    seen = []
    for s in splits:
        batches = list(s.batches(1))
        assert len(batches) == s.num_batches
        for b in batches:
            idx = b.indices.tolist()
            seen += idx
            assert len({0 if i < 9 else 1 for i in idx}) <= 1    # one slice set per batch
            assert len(idx) <= 4
            if idx:
                assert tuple(b.inputs.shape[2:]) == ((8, 8) if idx[0] < 9 else (16, 3))
    assert sorted(seen) == list(range(15))


@pytest.mark.slow
def test_several_slicers_with_test_batch_size_4_through_the_cli(tmp_path):
    """Two slice sets of different shapes, test_batch_size 4: the run is accepted, the Dataset
    block's batch count is what runs, and the predictions and the assembled arrays equal those of
    the test_batch_size 1 run (same seed, same weights)."""
    vol = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    np.save(tmp_path / "vol.npy", vol)
    net = [{"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [None, None, None, 2]}},
           {"class_name": "Conv2D", "config": {"name": "c1", "filters": 3, "kernel_size": 3,
                                               "padding": "same", "activation": "relu"}},
           {"class_name": "Conv2D", "config": {"name": "c2", "filters": 2, "kernel_size": 1}}]
    outs = {}
    for b in (1, 4):
        cfg = {"neural_network": {"layers": net, "seed": 3, "data": {
            "type": "numpy", "test_input_path": "./vol.npy", "test_batch_size": b,
            "test_output_path": f"./pred{b}/", "hdf5_outfile": f"./asm{b}.h5",
            "slicers": [{"name": "tiles", "sizes": [8, 8], "strides": [5, 5]},
                        {"name": "strips", "sizes": [16, 3], "strides": [16, 3]}]}}}
        (tmp_path / f"cfg{b}.json").write_text(json.dumps(cfg))
        proc = run_rmldnn(["--config=", f"./cfg{b}.json"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        out = strip_ts(proc.stdout)
        nb = int([ln for ln in out if "Num batches (per process)" in ln][0].split(":")[1])
        runs = [ln for ln in out if ln.startswith("Eval  Epoch") and "Batch [" in ln]
        assert runs and runs[-1].endswith(f"Batch [{nb:5d}/{nb:5d}]")
        outs[b] = nb
        assert proc.stderr == ""
    assert outs == {1: 15, 4: 5}                          # 9 -> 4+4+1, 6 -> 4+2
    with h5py.File(tmp_path / "pred1/output_1.h5") as f1, \
            h5py.File(tmp_path / "pred4/output_1.h5") as f4:
        for grp in ("tiles", "strips"):
            assert sorted(f1[grp]) == sorted(f4[grp]) and len(f1[grp]) == (9 if grp == "tiles" else 6)
            for k in f1[grp]:
                np.testing.assert_allclose(f4[grp][k][()], f1[grp][k][()], rtol=1e-5, atol=1e-6)
    with h5py.File(tmp_path / "asm1.h5") as a1, h5py.File(tmp_path / "asm4.h5") as a4:
        assert sorted(a1) == sorted(a4) == ["strips", "tiles"]
        for k in a1:
            assert a1[k].shape == a4[k].shape == (16, 16, 2)
            np.testing.assert_allclose(a4[k][()], a1[k][()], rtol=1e-5, atol=1e-6)


# =================================================== item 2: validated before training starts
def test_mixed_image_sizes_refused_at_preload(tmp_path):
    """Pre-loaded samples of different shapes that a batch would hold together are reported by
    build_datasets (before training and before any log line), naming both samples."""
    from rmldnn_py.config.types import TransformSpec
    from rmldnn_py.data import build_datasets

    make_image_tree(tmp_path / "train", ["0", "1"], 3)
    Image.new("L", (40, 30)).save(tmp_path / "train" / "1" / "big.jpg")
    base = dict(input_type="images", target_type="labels", input_path=str(tmp_path / "train"),
                batch_size=2, preload=True)
    with pytest.raises(DataError) as info:
        build_datasets(DataConfig(**base), config_path="cfg.json", logger=None)
    msg = str(info.value)
    assert msg.startswith("cfg.json: neural_network.data.input_path: training input samples of "
                          "different shapes would share a batch: ")
    assert "'1/big.jpg' [3, 30, 40]" in msg and "[3, 28, 28]" in msg
    # a resize makes them equal; a batch of 1 never mixes them
    ok = build_datasets(DataConfig(**dict(base, transforms=(TransformSpec("resize", [28, 28]),))),
                        config_path="cfg.json", logger=None)
    assert ok.train.sample_shape == (3, 28, 28)
    build_datasets(DataConfig(**dict(base, batch_size=1)), config_path="cfg.json", logger=None)


def test_test_batches_checked_only_where_they_mix(tmp_path):
    from rmldnn_py.data import build_datasets

    d = tmp_path / "test"
    d.mkdir()
    for k in range(4):                                    # a0..a3: two 28x28, then two 20x20
        size = 28 if k < 2 else 20
        np.save(d / f"a{k}.npy", np.ones((1, size, size), np.float32))
    cfg = DataConfig(type="numpy", test_input_path=str(d), test_batch_size=2, preload=True)
    split = build_datasets(cfg, config_path="cfg.json", logger=None).test   # [a0 a1] [a2 a3]
    assert [b.inputs.shape[-1] for b in split.batches(1)] == [28, 20]
    with pytest.raises(DataError, match=r"test input samples of different shapes would share a "
                                        r"batch: 'a0\.npy' \[1, 28, 28\], 'a2\.npy' \[1, 20, 20\]"):
        build_datasets(DataConfig(type="numpy", test_input_path=str(d), test_batch_size=4,
                                  preload=True), config_path="cfg.json", logger=None)
