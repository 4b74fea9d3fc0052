"""Full-state checkpoints and resume (rmldnn_py extension of SPEC §7.4).

Every checkpoint the run writes (``model_checkpoint_<e>.pt`` every ``interval`` epochs,
``model_checkpoint_<e>_<b>.pt`` on preemption, ``model_checkpoint_best.pt``) is one ``torch.save``
dict readable with ``torch.load(weights_only=True)``::

    format        "rmldnn_py-checkpoint-1"
    model         state_dict, keys "<keras layer>.<tensor>" (SPEC §4.10)   <- checkpoints.load
    optimizer     optimizer.state_dict()
    lr_scheduler  scheduler state
    epoch         the epoch of the position (1-based)
    position      {"epoch": e, "batch": b, "num_batches": nb, "complete": bool,
                  "evaluating": bool}: b training batches of epoch e are done; evaluating = its
                  scheduler step too (stopped during the evaluation); complete = everything of
                  epoch e is done
    scaler        GradScaler state (fp16) or None
    rng           one entry per rank: {"torch", "cuda", "numpy", "python"} generator states
    monitors      best-checkpoint / early-stopping state
    elapsed       seconds of training so far (the _train.txt time column continues from it)
    app, extra    the application and its extra state (GAN critic)
    class_names   label names of the training data (for predictions of inference runs)
    world_size    number of ranks that wrote it
    config        the config file path and text

Resuming (``checkpoints.resume``) restores all of it, so the run continues with the same batch
sequence, dropout masks and random transforms as an uninterrupted run. Rank 0 reads the file and
broadcasts its content; each rank takes its own generator states.
"""

from __future__ import annotations

import glob
import os
import random
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from .. import distributed
from ..errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from .run import Context

FORMAT = "rmldnn_py-checkpoint-1"
_NAME = re.compile(r"^model_checkpoint_(\d+)(?:_(\d+))?\.pt$")


@dataclass(frozen=True)
class Position:
    """Where a run stands: ``batch`` training batches of ``epoch`` are done; ``evaluating``
    when its scheduler step is done too and its evaluation was interrupted; ``complete`` when
    everything of ``epoch`` (scheduler step, evaluation, checkpoint) is done."""

    epoch: int = 1
    batch: int = 0
    complete: bool = False
    evaluating: bool = False

    def next_start(self) -> tuple[int, int]:
        """``(epoch, batches to skip)`` where the resumed run starts."""
        return (self.epoch + 1, 0) if self.complete else (self.epoch, self.batch)


# ------------------------------------------------------------------------------------------------
# random generators


def rng_state() -> dict[str, Any]:
    """This process's generator states (torch CPU and CUDA, NumPy's global, Python's
    ``random``) in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": _py_state_to_lists(random.getstate()),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    n = state.get("numpy")
    if n:
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), int(n["pos"]),
                             int(n["has_gauss"]), float(n["gauss"])))
    if state.get("python") is not None:
        random.setstate(_py_state_from_lists(state["python"]))
    if state.get("cuda") and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def _py_state_to_lists(st):
    version, internal, gauss = st
    return [int(version), torch.tensor(internal, dtype=torch.int64), gauss]


def _py_state_from_lists(st):
    version, internal, gauss = st
    return (int(version), tuple(int(v) for v in internal.tolist()), gauss)


# ------------------------------------------------------------------------------------------------
# writing


def preempt_path(directory: str, position: Position) -> str:
    """``<directory>/model_checkpoint_<epoch>_<batch>.pt``."""
    return os.path.join(directory, f"model_checkpoint_{position.epoch}_{position.batch}.pt")


def full_state(ctx: "Context", position: Position) -> Optional[dict[str, Any]]:
    """The checkpoint dict of the run at ``position`` on rank 0 (None on other ranks).
    Collective: every rank contributes its generator states."""
    rngs = distributed.all_gather_object(rng_state())
    if ctx.rank != 0:
        return None
    sched = ctx.scheduler
    return {
        "format": FORMAT,
        "epoch": int(position.epoch),
        "position": {"epoch": int(position.epoch), "batch": int(position.batch),
                     "num_batches": int(ctx.num_train_batches), "complete": bool(position.complete),
                     "evaluating": bool(position.evaluating)},
        "model": {k: v.detach().cpu() for k, v in ctx.net.state_dict().items()},
        "optimizer": ctx.optimizer.optimizer.state_dict() if ctx.optimizer is not None else None,
        "lr_scheduler": sched.state_dict() if sched is not None else None,
        "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
        "rng": rngs,
        "monitors": {name: m.state_dict() for name, m in ctx.monitors.items()},
        "elapsed": float(ctx.elapsed()),
        "app": ctx.app.name,
        "extra": ctx.app.state_dict(ctx),
        "class_names": list(ctx.bundle.class_names) if ctx.bundle.class_names else None,
        "world_size": int(ctx.world),
        "config": ctx.config_text,
    }


def write(path: str, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file + rename), with the umask's
    permissions.

    Raises:
        CheckpointError: the file cannot be written (disk full, permissions); one line naming the
            path; the temporary file is removed and an existing file is left unchanged.
    """
    from ..io.atomic import atomic_torch_save

    atomic_torch_save(state, path, what="checkpoint", error_cls=CheckpointError)


def remove_older_preempt(directory: str, position: Position) -> None:
    """Delete ``model_checkpoint_<e>_<b>.pt`` files at or before ``position`` (superseded by a
    newer checkpoint of this run)."""
    for path in glob.glob(os.path.join(glob.escape(directory), "model_checkpoint_*_*.pt")):
        m = _NAME.match(os.path.basename(path))
        if m and m.group(2) is not None:
            e, b = int(m.group(1)), int(m.group(2))
            if (e, b) <= (position.epoch, position.batch) or e < position.epoch:
                try:
                    os.remove(path)
                except OSError:
                    pass


# ------------------------------------------------------------------------------------------------
# resuming


def _sort_key(name: str) -> Optional[tuple[int, int, int]]:
    m = _NAME.match(name)
    if not m:
        return None
    e = int(m.group(1))
    return (e, 0, int(m.group(2))) if m.group(2) is not None else (e, 1, 0)


def candidates(directory: str) -> list[str]:
    """Checkpoints of ``directory`` (``model_checkpoint_<e>.pt`` and ``..._<e>_<b>.pt``, not
    ``..._best.pt``), newest position first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), "model_checkpoint_*.pt")):
        key = _sort_key(os.path.basename(path))
        if key is not None:
            found.append((key, path))
    return [p for _, p in sorted(found, reverse=True)]


def read(path: str) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``.

    Raises:
        CheckpointError: missing, unreadable or not an rmldnn_py checkpoint.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found (neural_network.checkpoints.resume)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from .checkpoint import _load_failure

        raise CheckpointError(f"{path}: not a readable rmldnn_py checkpoint "
                              f"(torch.load with weights_only=True failed: {_load_failure(exc)})") \
            from None
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise CheckpointError(f"{path}: cannot resume from this file: it is not an rmldnn_py "
                              "checkpoint with a 'model' state (checkpoints.load loads bare weights)")
    return obj


def find_resume(ctx: "Context") -> tuple[Optional[str], Optional[dict[str, Any]], list[str]]:
    """On rank 0: the checkpoint to resume from, its content, and warnings (unreadable newer
    files skipped). ``(None, None, [])`` for a fresh start."""
    ck = ctx.cfg.checkpoints
    where = f"{ctx.cfg.path}: neural_network.checkpoints.resume"
    if isinstance(ck.resume, str):
        return ck.resume, read(ck.resume), []
    if ck.resume is not True:
        return None, None, []
    if not ck.save:
        raise CheckpointError(f"{where}: 'resume': true needs 'save' (the directory to resume from)")
    skipped = []
    for path in candidates(ck.save):
        try:
            return path, read(path), skipped
        except CheckpointError as exc:
            skipped.append(f"cannot resume from {path}, trying an older checkpoint ({exc})")
    return None, None, skipped


def position_of(state: dict[str, Any]) -> Position:
    """The position stored in a checkpoint (old files: the end of ``epoch``)."""
    p = state.get("position")
    if isinstance(p, dict):
        return Position(int(p["epoch"]), int(p["batch"]), bool(p["complete"]),
                        bool(p.get("evaluating", False)))
    return Position(int(state.get("epoch", 0)), 0, True)


def restore(ctx: "Context", path: str, state: dict[str, Any]) -> tuple[Position, list[str]]:
    """Load ``state`` into the run (model, optimizer, scheduler, scaler, monitors, app extra
    state, this rank's generators). Returns the position and warnings.

    Raises:
        CheckpointError: the model or optimizer does not fit (names the tensor).
    """
    notes: list[str] = []
    model = state["model"]
    own = ctx.net.state_dict()
    missing = [k for k in own if k not in model and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{path}: cannot resume: the network has tensors that the checkpoint "
                              f"lacks ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); "
                              "use checkpoints.load to start a new training from its weights")
    for k, v in model.items():
        if k in own and tuple(own[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: cannot resume: tensor '{k}' has shape {list(v.shape)} "
                                  f"in the checkpoint but {list(own[k].shape)} in the network")
    with torch.no_grad():
        for k, v in model.items():
            if k in own:
                own[k].copy_(v.to(dtype=own[k].dtype))
    if ctx.optimizer is not None:
        if state.get("optimizer"):
            try:
                ctx.optimizer.optimizer.load_state_dict(state["optimizer"])
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(f"{path}: cannot resume the optimizer state (another "
                                      f"optimizer or network?): {str(exc).splitlines()[0]}") from None
        else:
            notes.append(f"{path}: no optimizer state in the checkpoint; the optimizer starts afresh")
    if ctx.scheduler is not None and state.get("lr_scheduler"):
        try:
            ctx.scheduler.load_state_dict(state["lr_scheduler"])
        except (ValueError, KeyError, TypeError) as exc:
            notes.append(f"{path}: learning-rate scheduler state not restored ({exc})")
    if ctx.scaler is not None and state.get("scaler"):
        ctx.scaler.load_state_dict(state["scaler"])
    for name, m in ctx.monitors.items():
        if name in (state.get("monitors") or {}):
            m.load_state_dict(state["monitors"][name])
    ctx.app.load_state_dict(ctx, state.get("extra") or {})
    ctx.elapsed_offset = float(state.get("elapsed", 0.0))
    rngs = state.get("rng") or []
    if ctx.rank < len(rngs):
        set_rng_state(rngs[ctx.rank])
        if len(rngs) != ctx.world:
            notes.append(f"{path}: written by {len(rngs)} process(es), resumed by {ctx.world}: "
                         "random streams of the new ranks differ from an uninterrupted run")
    elif rngs:
        set_rng_state(rngs[0])
    else:
        notes.append(f"{path}: no random-generator state in the checkpoint: the batch order is "
                     "kept, dropout and random transforms differ from an uninterrupted run")
    return position_of(state), notes
