"""Process rank discovery, process-group bootstrap and small collective helpers (SPEC §9).

Discovery order: torchrun variables (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``) →
MPI launchers (Open MPI ``OMPI_COMM_WORLD_*``, MPICH/Intel ``PMI_*``, Slurm ``SLURM_PROCID``…),
bootstrapped with mpi4py: rank 0 picks its host address and a free TCP port and broadcasts them,
so multi-node jobs need no extra environment → otherwise a single process, which never imports
mpi4py nor creates a process group.

Backend: NCCL when the ranks use CUDA, Gloo on CPU. Modelled on detectron2's ``utils/comm.py``.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, Optional

_MPI_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


@dataclass
class DistState:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "none"          # none | torchrun | mpi | slurm
    initialized: bool = False       # torch.distributed process group created
    backend: Optional[str] = None
    comm: Any = None                # mpi4py COMM_WORLD when launched by MPI


_STATE = DistState()


def _env_int(*names: str) -> Optional[int]:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                pass
    return None


def discover() -> DistState:
    """Rank, world size and local rank from the launcher's environment (no side effects)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
        return DistState(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                         local_rank=_env_int("LOCAL_RANK") or 0, launcher="torchrun")
    size = _env_int(*_MPI_SIZE_VARS)
    if size is not None:
        rank = _env_int("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK") or 0
        local = _env_int("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK")
        return DistState(rank=rank, world_size=size, local_rank=local or 0, launcher="mpi")
    size = _env_int("SLURM_NTASKS")
    if size is not None and "SLURM_PROCID" in os.environ and size > 1:
        return DistState(rank=_env_int("SLURM_PROCID") or 0, world_size=size,
                         local_rank=_env_int("SLURM_LOCALID") or 0, launcher="slurm")
    return DistState()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _host_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def init(use_cuda: bool) -> DistState:
    """Discover the launch, and for more than one process create the torch.distributed group.

    Args:
        use_cuda: the ranks train on CUDA devices (→ NCCL), else Gloo.

    Raises:
        RmldnnError: a multi-process launch whose rendezvous cannot be set up.
    """
    global _STATE
    from .errors import RmldnnError

    state = discover()
    if state.world_size <= 1:
        _STATE = state
        return state
    import torch.distributed as dist

    if state.launcher in ("mpi", "slurm"):
        try:
            from mpi4py import MPI
        except ImportError as exc:
            if state.launcher == "slurm" and "MASTER_ADDR" in os.environ:
                MPI = None  # srun with an explicit rendezvous
            else:
                raise RmldnnError("launched with several processes but mpi4py is not installed "
                                  f"({exc}); pip install mpi4py") from None
        if MPI is not None:
            comm = MPI.COMM_WORLD
            state.comm = comm
            state.rank, state.world_size = comm.Get_rank(), comm.Get_size()
            state.local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
            addr = port = None
            if state.rank == 0:
                addr = os.environ.get("MASTER_ADDR") or _host_address()
                port = os.environ.get("MASTER_PORT") or str(_free_port())
            addr, port = comm.bcast((addr, port), root=0)
            os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = addr, str(port)
        os.environ["RANK"], os.environ["WORLD_SIZE"] = str(state.rank), str(state.world_size)
        os.environ["LOCAL_RANK"] = str(state.local_rank)
    state.backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        import torch

        torch.cuda.set_device(state.local_rank % torch.cuda.device_count())
    try:
        dist.init_process_group(backend=state.backend, init_method="env://",
                                rank=state.rank, world_size=state.world_size)
    except Exception as exc:  # pragma: no cover - depends on the network
        raise RmldnnError(f"cannot initialise the {state.backend} process group "
                          f"(MASTER_ADDR={os.environ.get('MASTER_ADDR')}, "
                          f"MASTER_PORT={os.environ.get('MASTER_PORT')}): {exc}") from None
    state.initialized = True
    _STATE = state
    return state


def state() -> DistState:
    return _STATE


def rank() -> int:
    return _STATE.rank


def world_size() -> int:
    return _STATE.world_size


def is_main() -> bool:
    return _STATE.rank == 0


def all_reduce_sum(tensor):
    """In-place sum of ``tensor`` over all ranks (no-op for one process); returns it."""
    if _STATE.initialized:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (``[obj]`` for one process)."""
    if not _STATE.initialized:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * _STATE.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _STATE.initialized:
        import torch.distributed as dist

        dist.barrier()


def shutdown() -> None:
    """Destroy the process group at the end of a successful run."""
    global _STATE
    if _STATE.initialized:
        import torch.distributed as dist

        try:
            dist.destroy_process_group()
        except Exception:
            pass
        _STATE.initialized = False


def error_prefix() -> str:
    """``"rank 3: "`` for errors raised on a non-zero rank of a multi-process run, else ``""``."""
    s = _STATE if _STATE.world_size > 1 else discover()
    return f"rank {s.rank}: " if s.world_size > 1 else ""


def on_error() -> None:
    """After a fatal error on this rank: end the whole job so no other rank waits forever.

    Under MPI this is ``MPI_Abort``; under torchrun the launcher ends the other ranks when this
    process exits non-zero.
    """
    s = _STATE
    if s.world_size <= 1:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    if s.comm is not None:
        s.comm.Abort(1)
