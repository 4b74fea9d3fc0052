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

_MPI_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE")


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
    control: Any = None             # Gloo process group for control flags (None: the default)


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


def _timeout() -> float:
    """Collective timeout in seconds (``RMLDNN_DIST_TIMEOUT``, default 1800): the last resort
    against a peer that vanished without closing its connections."""
    try:
        return max(10.0, float(os.environ.get("RMLDNN_DIST_TIMEOUT", "1800")))
    except ValueError:
        return 1800.0


def local_size() -> int:
    """Processes of this job on this node, from the launcher's environment (1 if unknown)."""
    n = _env_int("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                 "PMI_LOCAL_SIZE")
    if n is None and "SLURM_TASKS_PER_NODE" in os.environ:
        first = os.environ["SLURM_TASKS_PER_NODE"].split(",")[0].split("(")[0]
        n = int(first) if first.isdigit() else None
    return max(1, n or 1)


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
        MPI = None
        if state.launcher == "mpi" or "MASTER_ADDR" not in os.environ:
            # srun with an explicit MASTER_ADDR needs no MPI at all (docs/DISTRIBUTED.md)
            try:
                from mpi4py import MPI
            except ImportError as exc:
                raise RmldnnError("launched with several processes but mpi4py is not installed "
                                  f"({exc}); pip install mpi4py, or use torchrun") from None
        if MPI is not None:
            comm = MPI.COMM_WORLD
            if comm.Get_size() != state.world_size:
                raise RmldnnError(
                    f"the launcher reports {state.world_size} processes but MPI sees "
                    f"{comm.Get_size()} (mpi4py built against another MPI than the launcher's? "
                    "see docs/DISTRIBUTED.md; under srun without MPI set MASTER_ADDR and "
                    "MASTER_PORT)")
            state.comm = comm
            _STATE = state          # from here on, an error on this rank can MPI_Abort the job
            state.rank, state.world_size = comm.Get_rank(), comm.Get_size()
            state.local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
            addr = port = None
            if state.rank == 0:
                addr = os.environ.get("MASTER_ADDR") or _host_address()
                port = os.environ.get("MASTER_PORT") or str(_free_port())
            addr, port = comm.bcast((addr, port), root=0)
            os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = addr, str(port)
        else:
            os.environ.setdefault("MASTER_PORT", "29500")
        os.environ["RANK"], os.environ["WORLD_SIZE"] = str(state.rank), str(state.world_size)
        os.environ["LOCAL_RANK"] = str(state.local_rank)
    state.backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        import torch

        torch.cuda.set_device(state.local_rank % torch.cuda.device_count())
    try:
        from datetime import timedelta

        dist.init_process_group(backend=state.backend, init_method="env://",
                                rank=state.rank, world_size=state.world_size,
                                timeout=timedelta(seconds=_timeout()))
    except Exception as exc:  # pragma: no cover - depends on the network
        raise RmldnnError(f"cannot initialise the {state.backend} process group "
                          f"(MASTER_ADDR={os.environ.get('MASTER_ADDR')}, "
                          f"MASTER_PORT={os.environ.get('MASTER_PORT')}): {exc}") from None
    state.initialized = True
    # a CPU (Gloo) group for small control messages (the preemption flag): agreeing on it never
    # touches the GPU, so it costs no device synchronisation under NCCL
    state.control = dist.new_group(backend="gloo") if state.backend != "gloo" else None
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
    """In-place sum of ``tensor`` over all ranks (no-op for one process); returns it.
    CPU tensors travel over the Gloo control group (NCCL reduces device tensors only)."""
    if _STATE.initialized:
        import torch.distributed as dist

        group = _STATE.control if tensor.device.type == "cpu" else None
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def gather_object(obj: Any) -> Optional[list[Any]]:
    """``[obj of rank 0, obj of rank 1, …]`` on rank 0, ``None`` elsewhere (``[obj]`` for one
    process). Only rank 0 receives the data (predictions are written by rank 0 only)."""
    if not _STATE.initialized:
        return [obj]
    import torch.distributed as dist

    out: Optional[list[Any]] = [None] * _STATE.world_size if _STATE.rank == 0 else None
    dist.gather_object(obj, out, dst=0, group=_STATE.control)   # over Gloo: host memory
    return out


def broadcast_module(module) -> None:
    """Copy rank 0's parameters and buffers to every rank (start-up consistency, SPEC §9)."""
    if not _STATE.initialized:
        return
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def wrap_ddp(net, device):
    """``net`` wrapped in ``DistributedDataParallel`` for training on ``device``.

    DDP copies rank 0's parameters and buffers to every rank at construction (start-up
    consistency, SPEC §9) and averages gradients bucket by bucket during backward, overlapping
    communication with computation. Buffers (BatchNorm statistics) stay per rank after that
    (SPEC §9): ``forward_sync_buffers=False`` (``broadcast_buffers=False`` on torch releases
    without it; its deprecation warning is not shown to users).
    """
    import inspect
    import warnings

    from torch.nn.parallel import DistributedDataParallel as DDP

    kw = ({"forward_sync_buffers": False}
          if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
          else {"broadcast_buffers": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return DDP(net, device_ids=[device.index] if device.type == "cuda" else None, **kw)


def all_reduce_mean(tensor):
    """In-place mean of ``tensor`` over all ranks (no-op for one process); returns it."""
    if _STATE.initialized:
        all_reduce_sum(tensor)
        tensor /= _STATE.world_size
    return tensor


class CommTimer:
    """A DistributedDataParallel communication hook that averages each gradient bucket with one
    all-reduce (what DDP's default hook does) and records when communication was in flight.

    ``span()`` is the wall time from the first bucket's launch to the last bucket's completion in
    the current step, in seconds: with DDP, communication overlaps the backward pass, so this is the
    part of the step during which gradients were being exchanged (SPEC §12 Q33), not extra time.
    """

    def __init__(self) -> None:
        self.first: Optional[float] = None
        self.last: Optional[float] = None

    def reset(self) -> None:
        self.first = self.last = None

    def span(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return max(0.0, self.last - self.first)

    def attach(self, ddp_model) -> None:
        """Register :func:`timed_allreduce_hook` on a DistributedDataParallel model."""
        ddp_model.register_comm_hook(self, timed_allreduce_hook)


def timed_allreduce_hook(timer: CommTimer, bucket):
    """DDP communication hook: average the bucket over the ranks (as DDP's default hook does) and
    record the launch and completion times in ``timer``."""
    import time

    import torch.distributed as dist

    now = time.perf_counter()
    if timer.first is None:
        timer.first = now
    buffer = bucket.buffer()
    buffer.div_(_STATE.world_size)
    future = dist.all_reduce(buffer, async_op=True).get_future()

    def done(fut):
        timer.last = time.perf_counter()
        return fut.value()[0]

    return future.then(done)


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (``[obj]`` for one process)."""
    if not _STATE.initialized:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * _STATE.world_size
    dist.all_gather_object(out, obj, group=_STATE.control)
    return out


def any_rank(*flags: int) -> tuple[int, ...]:
    """The element-wise maximum of the integers ``flags`` over all ranks (``flags`` themselves for
    one process), in one all-reduce: lets every rank agree on decisions that only some ranks saw
    (a signal, a non-finite loss). CPU only (the Gloo control group)."""
    if not _STATE.initialized:
        return tuple(int(f) for f in flags)
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(f) for f in flags], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_STATE.control)
    return tuple(int(v) for v in t.tolist())


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself for one process)."""
    if not _STATE.initialized:
        return obj
    import torch.distributed as dist

    box = [obj if _STATE.rank == 0 else None]
    dist.broadcast_object_list(box, src=0, group=_STATE.control)
    return box[0]


def barrier() -> None:
    if _STATE.initialized:
        import torch.distributed as dist

        dist.barrier()


def shutdown() -> None:
    """Destroy the process group at the end of a successful run."""
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


def on_error(code: int = 1) -> None:
    """After a fatal error on this rank: end the whole job so no other rank waits forever.

    Under MPI this is ``MPI_Abort`` (mpirun then kills every rank); otherwise (torchrun, srun with
    an explicit rendezvous) this process exits at once with ``code`` without running the
    interpreter's shutdown, which could block on pending collectives, DataLoader workers or the
    process group's destructor: torchrun then ends the other ranks, and ranks blocked in a
    collective with this one see the closed connection and fail in turn. Returns only for a
    single process, or when the process group was never created (every rank fails alike).
    """
    s = _STATE
    if s.world_size <= 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    if s.comm is not None:
        s.comm.Abort(code or 1)
    if s.initialized:
        os._exit(code or 1)
