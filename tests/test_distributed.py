"""Rank discovery, collective helpers, single-process runs without mpi4py, container recipes
(SPEC §2.5, §2.6, §9, §10). The multi-process runs themselves are in test_e2e_mpi.py."""

from __future__ import annotations

import copy

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

from conftest import REPO, make_image_tree, strip_ts
from rmldnn_py import distributed

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
               "LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
               "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE",
               "PMIX_RANK", "PMIX_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "PMI_LOCAL_RANK",
               "PMI_LOCAL_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
               "SLURM_TASKS_PER_NODE")


@pytest.fixture
def clean_env(monkeypatch):
    for v in LAUNCH_VARS:
        monkeypatch.delenv(v, raising=False)
    return monkeypatch


def test_discover_single_process(clean_env):
    s = distributed.discover()
    assert (s.rank, s.world_size, s.local_rank, s.launcher) == (0, 1, 0, "none")
    assert distributed.local_size() == 1


def test_discover_torchrun(clean_env):
    for k, v in dict(RANK="3", WORLD_SIZE="4", LOCAL_RANK="1", MASTER_ADDR="h",
                     LOCAL_WORLD_SIZE="2").items():
        clean_env.setenv(k, v)
    clean_env.setenv("OMPI_COMM_WORLD_SIZE", "8")           # torchrun variables win
    s = distributed.discover()
    assert (s.rank, s.world_size, s.local_rank, s.launcher) == (3, 4, 1, "torchrun")
    assert distributed.local_size() == 2


@pytest.mark.parametrize("env,expected", [
    (dict(OMPI_COMM_WORLD_RANK="5", OMPI_COMM_WORLD_SIZE="8", OMPI_COMM_WORLD_LOCAL_RANK="1",
          OMPI_COMM_WORLD_LOCAL_SIZE="4"), (5, 8, 1, "mpi", 4)),
    (dict(PMI_RANK="2", PMI_SIZE="3", MPI_LOCALRANKID="2", MPI_LOCALNRANKS="3"),
     (2, 3, 2, "mpi", 3)),
    (dict(SLURM_PROCID="6", SLURM_NTASKS="8", SLURM_LOCALID="2", SLURM_TASKS_PER_NODE="4(x2)"),
     (6, 8, 2, "slurm", 4)),
    (dict(SLURM_PROCID="0", SLURM_NTASKS="1"), (0, 1, 0, "none", 1)),
    (dict(OMPI_COMM_WORLD_RANK="0", OMPI_COMM_WORLD_SIZE="1"), (0, 1, 0, "mpi", 1)),
])
def test_discover_mpi_and_slurm(clean_env, env, expected):
    for k, v in env.items():
        clean_env.setenv(k, v)
    s = distributed.discover()
    assert (s.rank, s.world_size, s.local_rank, s.launcher, distributed.local_size()) == expected


def test_single_process_helpers_are_no_ops(clean_env):
    assert distributed.init(use_cuda=False).world_size == 1
    assert not distributed.state().initialized
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    assert distributed.gather_object(7) == [7]
    t = torch.tensor([2.0])
    assert distributed.all_reduce_sum(t) is t and t.item() == 2.0
    m = torch.tensor([3.0])
    assert distributed.all_reduce_mean(m) is m and m.item() == 3.0
    distributed.broadcast_module(torch.nn.Linear(2, 2))
    distributed.barrier()
    assert distributed.error_prefix() == ""
    distributed.on_error(1)          # returns: nothing to abort in a single process


def test_error_prefix_names_the_rank(clean_env):
    clean_env.setenv("OMPI_COMM_WORLD_RANK", "1")
    clean_env.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert distributed.error_prefix() == "rank 1: "


def test_comm_timer_hook_averages_like_ddp(clean_env):
    """The CommTimer DDP hook gives the same gradients as plain backward in a one-rank group
    (average over one rank = identity) and records a communication span."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    with tempfile.TemporaryDirectory() as d:
        dist.init_process_group("gloo", init_method=f"file://{d}/store", rank=0, world_size=1)
        old = distributed._STATE
        distributed._STATE = distributed.DistState(world_size=1, initialized=True)
        try:
            torch.manual_seed(0)
            net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
            ref = copy.deepcopy(net)
            ddp = DDP(net)
            timer = distributed.CommTimer()
            timer.attach(ddp)
            x = torch.randn(5, 3)
            ddp(x).square().sum().backward()
            ref(x).square().sum().backward()
            for p, q in zip(net.parameters(), ref.parameters()):
                torch.testing.assert_close(p.grad, q.grad)
            assert timer.span() >= 0.0 and timer.first is not None and timer.last is not None
            timer.reset()
            assert timer.span() == 0.0
            assert distributed.gather_object("x") == ["x"]
            distributed.broadcast_module(torch.nn.Linear(2, 2))
        finally:
            distributed._STATE = old
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------
# a plain single process never needs mpi4py

BLOCKER = r"""
import sys, importlib.abc
class _NoMPI(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mpi4py" or name.startswith("mpi4py."):
            raise ModuleNotFoundError("No module named 'mpi4py' (hidden by the test)", name=name)
        return None
sys.meta_path.insert(0, _NoMPI())
for m in [m for m in sys.modules if m.startswith("mpi4py")]:
    del sys.modules[m]
from rmldnn_py.cli import main
code = main(sys.argv[1:])
assert not any(m.startswith("mpi4py") for m in sys.modules), "mpi4py was imported"
assert not __import__("torch").distributed.is_initialized(), "a process group was created"
sys.exit(code)
"""


def _run_without_mpi4py(tmp_path, extra_env):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "2"
    env.pop("RMLDNN_DEBUG", None)
    env.update(extra_env)
    return subprocess.run([sys.executable, "-c", BLOCKER, "--config=cfg.json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture
def tiny_run(tmp_path):
    make_image_tree(tmp_path / "data/train", ["0", "1"], 8, seed=0)
    make_image_tree(tmp_path / "data/test", ["0", "1"], 2, seed=1)
    cfg = json.loads((REPO / "configs/config_rmldnn_test.json").read_text())
    nn = cfg["neural_network"]
    nn["num_epochs"] = 1
    nn["data"].update(input_path="./data/train/", test_input_path="./data/test/", batch_size=4)
    for key in ("training_tag", "test_tag"):
        nn["data"].pop(key, None)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    return tmp_path


@pytest.mark.parametrize("launch", ["plain", "mpirun-np-1"])
def test_single_process_without_mpi4py(tiny_run, launch):
    extra = {} if launch == "plain" else {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1",
                                          "OMPI_COMM_WORLD_LOCAL_RANK": "0"}
    proc = _run_without_mpi4py(tiny_run, extra)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = strip_ts(proc.stdout)
    assert "RocketML : 1 MPI process" in lines
    assert "-------------- Gradient reducer -------------" not in lines
    assert lines[-1] == "All done (return value = 0)."


def test_several_mpi_ranks_without_mpi4py_fail_cleanly(tiny_run):
    proc = _run_without_mpi4py(tiny_run, {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"})
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("rmldnn: error: rank 1: ") and "mpi4py" in err[-1], proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------
# container recipes (static checks: no container engine in CI)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)               # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_recipe():
    ins = _dockerfile_instructions()
    words = [w for w, _ in ins]
    args = {r.split("=", 1)[0]: r.split("=", 1)[1] for w, r in ins if w == "ARG" and "=" in r}
    assert words.count("FROM") == 1
    base = next(r for w, r in ins if w == "FROM")
    base = args.get(base.strip("${}"), base)
    assert re.match(r"(pytorch/pytorch:.*-cuda\d.*-runtime|nvidia/cuda:\d.*cudnn.*runtime)", base)
    runs = " ".join(r for w, r in ins if w == "RUN")
    assert "openmpi-bin" in runs and "mpi4py" in runs              # mpirun + mpi4py
    assert re.search(r"pip install[^&]* \.", runs)                 # the package itself
    assert "rmldnn --version" in runs                              # console script on PATH
    copied = " ".join(r for w, r in ins if w == "COPY")
    assert "rmldnn_py" in copied and "pyproject.toml" in copied
    env = " ".join(r for w, r in ins if w == "ENV")
    assert "HOME=/tmp" in env
    assert "ENTRYPOINT" not in words and "CMD" not in words
    assert "USER" not in words            # runs as root or as any `-u uid:gid`
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore


def test_singularity_recipe():
    text = (REPO / "Singularity.def").read_text()
    header = dict(re.findall(r"^(Bootstrap|From):\s*(\S+)", text, re.M))
    assert header == {"Bootstrap": "docker-daemon", "From": "rmldnn_py:latest"}
    sections = re.findall(r"^%(\w+)", text, re.M)
    assert {"environment", "runscript", "test"} <= set(sections)
    env = text.split("%environment", 1)[1].split("\n%", 1)[0]
    assert "HOME=/tmp" in env
    assert "rmldnn --version" in text


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed")
def test_dockerfile_lints_clean():
    proc = subprocess.run(["hadolint", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_distributed_docs_cover_the_launch_modes():
    doc = (REPO / "docs/DISTRIBUTED.md").read_text()
    for needle in ("mpirun -np", "torchrun --nproc_per_node", "docker run", "--gpus",
                   "singularity exec", "--nv", "#SBATCH", "srun", "--no-binary", "MPICC",
                   "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES"):
        assert needle in doc, needle
