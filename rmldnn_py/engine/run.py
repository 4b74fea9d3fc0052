"""The run (SPEC §7.1), as one explicit loop that reads top to bottom:

distributed init → header → data → network (+ weights) → optimizer / scheduler / loss → Dataset
block → for each epoch: train → scheduler step → evaluate (+ predictions) → checkpoint →
``All done (return value = 0).``

Tensors are channel-first throughout: batches ``(N, C, H, W)``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .. import __version__, distributed
from ..config.types import Config
from ..errors import ConfigError, RmldnnError
from ..log import Logger, fmt_g, kv_row
from .logfiles import LogFiles


class BufferLogger(Logger):
    """Keeps messages to print later, in order, through another logger (stamped when printed)."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled)
        self.messages: list[str] = []

    def line(self, message: str = "") -> None:
        if self.enabled:
            self.messages.append(message)

    def replay(self, log: Logger) -> None:
        for message in self.messages:
            log.line(message)
        self.messages.clear()


def printed(batch: int, num_batches: int) -> bool:
    """Print cadence of SPEC §7.2.4: batch b of nb is printed iff ⌊100b/nb⌋ > ⌊100(b−1)/nb⌋."""
    return (100 * batch) // num_batches > (100 * (batch - 1)) // num_batches


# --------------------------------------------------------------------------------------------
# devices and header


def choose_device() -> torch.device:
    """``cuda:<local_rank mod visible devices>`` when CUDA is available (``CUDA_VISIBLE_DEVICES``
    honoured; empty forces the CPU), else the CPU with ``OMP_NUM_THREADS`` threads (unset in a
    multi-process run: the node's cores divided among its ranks, so they do not oversubscribe)."""
    launch = distributed.discover()
    if torch.cuda.is_available():
        return torch.device("cuda", launch.local_rank % torch.cuda.device_count())
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
    elif launch.world_size > 1:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        per_rank = (os.cpu_count() or 1) // distributed.local_size()
        torch.set_num_threads(max(1, min(cores, per_rank)))
    return torch.device("cpu")


def _device_lines(device: torch.device, world: int) -> list[str]:
    """``CPU`` / ``CUDA`` for one rank; ``CPU`` / ``CUDA:<i>`` per rank, duplicates collapsed."""
    if world == 1:
        return ["CPU" if device.type == "cpu" else "CUDA"]
    name = "CPU" if device.type == "cpu" else f"CUDA:{device.index}"
    lines: list[str] = []
    for n in distributed.all_gather_object(name):
        if n not in lines:
            lines.append(n)
    return lines


def print_header(log: Logger, app: str, device: torch.device, world: int) -> None:
    """Banner, ``RocketML : <app>``, version line, process count, Device(s) and reducer blocks."""
    devices = _device_lines(device, world)  # collective: every rank calls it
    log.line(f"rmldnn_py {__version__} -- code-free deep learning on PyTorch")
    log.line(f"RocketML : {app}")
    log.line(f"rmldnn_py {__version__} ({platform.system()}-{platform.release()}) "
             f"(torch {torch.__version__}) (python {platform.python_version()})")
    log.line(f"RocketML : {world} MPI process{'es' if world > 1 else ''}")
    log.header("Device(s)")
    for d in devices:
        log.line(f"   {d}")
    log.separator()
    if world > 1:
        log.header("Gradient reducer")
        log.line("   Type: oneshot")
        log.separator()


def _width(rows: list[tuple[str, str]]) -> int:
    return max((len(label) for label, _ in rows), default=0)


def print_dataset_block(log: Logger, bundle, cfg: Config) -> None:
    log.header("Dataset")
    for title, split in (("Training dataset:", bundle.train), ("Test dataset:", bundle.test)):
        if split is None:
            continue
        log.line(title)
        for line in split.dataset_lines():
            log.line(line)
        if split is bundle.test and cfg.data.test_output_path:
            precision = ("half (16-bit)" if cfg.data.hdf5_precision == "half"
                         else "single (32-bit)")
            log.line("   Inference output:")
            log.line(kv_row("Location", cfg.data.test_output_path, 22, indent=6))
            log.line(kv_row("Floating-point format", precision, 22, indent=6))
    log.separator()


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class Context:
    """Everything the epoch functions need (built once in :func:`run`)."""

    cfg: Config
    log: Logger
    device: torch.device
    world: int
    model: torch.nn.Module                  # the network, possibly compiled
    net: torch.nn.Module                    # the plain KerasNetwork (for saving)
    bundle: Any
    loss: Any = None
    optimizer: Any = None                   # BuiltOptimizer
    scheduler: Any = None                   # BuiltScheduler
    logfiles: LogFiles = field(default_factory=lambda: LogFiles(None))
    autocast: Any = None
    scaler: Any = None
    comm_timer: Any = None                  # distributed.CommTimer when training on several ranks
    train_start: float = 0.0


def _autocast(cfg: Config, device: torch.device):
    """Autocast context factory for ``mixed_precision`` (bf16 on CPU/CUDA, fp16 on CUDA)."""
    mode = (cfg.mixed_precision or "none").lower()
    if mode == "none":
        return contextlib.nullcontext
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError(f"{cfg.path}: neural_network.mixed_precision: fp16 needs a CUDA device; "
                          "use bf16 on the CPU")
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _config_text(cfg: Config) -> str:
    try:
        with open(cfg.path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def run(cfg: Config, app: str = "dnn", warnings: Optional[list[str]] = None) -> int:
    """Execute the run described by ``cfg``; returns the exit code (0).

    Raises:
        RmldnnError: any user-facing failure (after printing ``All done (return value = 1).``
            when the header was already printed).
    """
    device = choose_device()
    dist = distributed.init(use_cuda=device.type == "cuda")
    if device.type == "cuda" and dist.world_size > 1:  # MPI's node-local rank (shared-memory split)
        device = torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    log = Logger(enabled=dist.rank == 0)
    started = False
    ctx: Optional[Context] = None
    try:
        print_header(log, app, device, dist.world_size)
        started = True
        for w in warnings or []:
            log.warning(w)
        ctx = _build(cfg, log, device, dist.world_size)
        _loop(ctx)
        log.line("All done (return value = 0).")
        return 0
    except RmldnnError:
        if started:
            log.line("All done (return value = 1).")
        raise
    finally:
        if ctx is not None:
            ctx.logfiles.close()
        if dist.world_size > 1 and sys.exc_info()[0] is None:
            distributed.shutdown()


def _build(cfg: Config, log: Logger, device: torch.device, world: int) -> Context:
    from ..data import build_datasets
    from ..network import build_network
    from .checkpoint import load_weights

    torch.manual_seed(cfg.seed)
    training = cfg.data.input_path is not None
    # (optimizer and loss are required for training: checked when the config is loaded)
    if cfg.data.input_path is None and cfg.data.test_input_path is None:
        raise ConfigError(f"{cfg.path}: neural_network.data: neither input_path nor "
                          "test_input_path is set: nothing to train or evaluate")

    # Data is discovered first (messages buffered and printed in SPEC order below) because a
    # network without a declared input shape takes it from the first sample (SPEC §4.2).
    data_log = BufferLogger(log.enabled)
    bundle = build_datasets(cfg.data, config_path=cfg.path, logger=data_log,
                            rank=distributed.rank(), world_size=world, seed=cfg.seed,
                            device_is_cuda=device.type == "cuda")
    first = bundle.train if bundle.train is not None else bundle.test
    sample_shape = tuple(first.sample_shape) if getattr(first, "sample_shape", None) else None

    net = build_network(cfg.layers, config_path=cfg.path, input_shape=sample_shape)
    if sample_shape is not None:
        net.check_input(sample_shape)
    log.header("Neural Network")
    rows = [("Model name", net.model_name),
            ("Total parameters", str(net.num_parameters())),
            ("Trainable parameters", str(net.num_parameters(trainable_only=True))),
            ("Num of operations", str(net.num_operations))]
    log.rows(rows, 20)
    log.separator()
    if cfg.checkpoints.load:
        load_weights(net, cfg.checkpoints.load, log)
    if cfg.debug and log.enabled:
        _write_dot(cfg, net, log)

    net.to(device)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)

    optimizer = scheduler = loss = None
    if training:
        from .optim import build_optimizer

        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = build_optimizer(cfg.optimizer, params, where=f"{cfg.path}: neural_network.optimizer")
        for w in optimizer.warnings:
            log.warning(w)
        log.header("Optimizer")
        log.rows(optimizer.rows, _width(optimizer.rows))
        if cfg.optimizer.lr_scheduler is not None:
            from .schedulers import build_scheduler

            scheduler = build_scheduler(cfg.optimizer.lr_scheduler, optimizer.optimizer,
                                        where=f"{cfg.path}: neural_network.optimizer.lr_scheduler")
            for w in scheduler.warnings:
                log.warning(w)
            log.header("Learning rate scheduler")
            log.rows(scheduler.rows, _width(scheduler.rows))
    if cfg.loss is not None:
        from .losses import build_loss

        loss = build_loss(cfg.loss, where=f"{cfg.path}: neural_network.loss")
        for w in loss.warnings:
            log.warning(w)
        log.header("Loss")
        log.rows(loss.rows, _width(loss.rows))
    if optimizer is not None or loss is not None:
        log.separator()
    data_log.replay(log)
    print_dataset_block(log, bundle, cfg)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        log.line("*** CUDA available! Will train on GPU ***")
        log.separator()

    model: torch.nn.Module = net
    comm_timer = None
    if world > 1 and training:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # DDP copies rank 0's parameters and buffers to every rank at construction (start-up
        # consistency, SPEC §9) and averages gradients bucket by bucket during backward, overlapping
        # communication with computation (the "oneshot" reducer); CommTimer times the exchange.
        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None,
                    broadcast_buffers=False)
        comm_timer = distributed.CommTimer()
        comm_timer.attach(model)
    elif world > 1:
        distributed.broadcast_module(net)  # inference: every rank uses rank 0's weights
    if cfg.compile:
        model = torch.compile(model)
    scaler = None
    if (cfg.mixed_precision or "").lower() == "fp16" and device.type == "cuda":
        scaler = torch.amp.GradScaler("cuda")
    return Context(cfg=cfg, log=log, device=device, world=world, model=model, net=net,
                   bundle=bundle, loss=loss, optimizer=optimizer, scheduler=scheduler,
                   logfiles=LogFiles(cfg.outfile if log.enabled else None),
                   autocast=_autocast(cfg, device), scaler=scaler, comm_timer=comm_timer)


def _write_dot(cfg: Config, net, log: Logger) -> None:
    path = (os.path.splitext(cfg.outfile)[0] + "_network.dot") if cfg.outfile else "network.dot"
    with open(path, "w", encoding="utf-8") as f:
        f.write(net.to_dot())
    log.line(f"Writing network graph to file: {path}")


def _loop(ctx: Context) -> None:
    cfg = ctx.cfg
    training = ctx.bundle.train is not None and ctx.optimizer is not None
    epochs = cfg.num_epochs if training else 1
    ctx.train_start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        if training:
            train_one_epoch(ctx, epoch, epochs)
            if ctx.scheduler is not None:
                lr = ctx.scheduler.step()
                if ctx.scheduler.verbose:
                    ctx.log.line(f"Learning rate adjusted to {fmt_g(float(lr))}")
        if ctx.bundle.test is not None:
            evaluate(ctx, epoch, epochs)
        save_dir = cfg.checkpoints.save
        if training and save_dir and epoch % cfg.checkpoints.interval == 0:
            if ctx.log.enabled:
                from .checkpoint import checkpoint_path, save_checkpoint

                path = checkpoint_path(save_dir, epoch)
                save_checkpoint(path, ctx.net, epoch, ctx.optimizer.optimizer,
                                ctx.scheduler, _config_text(cfg))
                ctx.log.line(f"Saving model checkpoint to file: {path}")
            distributed.barrier()


def _to_device(ctx: Context, x: torch.Tensor, y: Optional[torch.Tensor]):
    x = x.to(ctx.device, non_blocking=True)
    if ctx.cfg.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    if y is not None:
        y = y.to(ctx.device, non_blocking=True)
    return x, y


def train_one_epoch(ctx: Context, epoch: int, epochs: int) -> None:
    """One pass over this rank's training batches; prints the SPEC §7.2.4 lines and writes
    every batch to ``_train.txt``. Loss and |g| are read back to the host only at printed
    batches (and at the end of the epoch), for all pending batches at once.

    Several processes: DistributedDataParallel averages the gradients during backward (every rank
    holds equally many samples of the global batch, so this is the gradient of the global-batch
    mean loss) and |g| is therefore global; the printed and logged losses are averaged over the
    ranks in one all-reduce per printed line. ``Grad/Comm`` is the share of the step during which
    gradient all-reduces were in flight (overlapped with backward)."""
    split, model, loss_fn = ctx.bundle.train, ctx.model, ctx.loss
    opt = ctx.optimizer.optimizer
    params = [p for p in ctx.net.parameters() if p.requires_grad]
    from .optim import grad_norm

    model.train()
    nb = split.num_batches
    pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
    t_prev = time.perf_counter()
    multi = ctx.world > 1
    closure_based = ctx.optimizer.is_closure_based
    for b, (x, y, _idx) in enumerate(split.batches(epoch), 1):
        x, y = _to_device(ctx, x, y)
        t_ready = time.perf_counter()
        if ctx.comm_timer is not None:
            ctx.comm_timer.reset()

        def forward_backward():
            opt.zero_grad(set_to_none=True)
            with ctx.autocast():
                out = model(x)
            value = loss_fn(out.float(), y)
            if ctx.scaler is not None:
                ctx.scaler.scale(value).backward()
            else:
                value.backward()
            if closure_based and multi:
                # the line search must see the same (global) loss on every rank, or the ranks
                # would take different numbers of steps and wait on each other forever
                value = distributed.all_reduce_mean(value.detach().clone())
            return value

        if closure_based:
            loss = opt.step(forward_backward)
            gnorm = grad_norm(params)
        else:
            loss = forward_backward()
            if ctx.scaler is not None:
                ctx.scaler.unscale_(opt)
            gnorm = grad_norm(params)
            if ctx.scaler is not None:
                ctx.scaler.step(opt)
                ctx.scaler.update()
            else:
                opt.step()
        t_done = time.perf_counter()
        comm = ctx.comm_timer.span() if ctx.comm_timer is not None else 0.0
        pending.append((b, t_done - ctx.train_start, loss.detach().float().reshape(()),
                        gnorm.detach().float().reshape(())))
        if printed(b, nb) or b == nb:
            losses = torch.stack([p[2] for p in pending])
            if multi and not closure_based:
                distributed.all_reduce_mean(losses)
            values = losses.tolist()
            gvalues = torch.stack([p[3] for p in pending]).tolist()
            for (bb, secs, _, _), lv, gv in zip(pending, values, gvalues):
                ctx.logfiles.train_line(epoch, bb, nb, secs, lv, gv)
            pending.clear()
            if printed(b, nb):
                total = max(time.perf_counter() - t_prev, 1e-12)
                data_pct = int(100 * (t_ready - t_prev) / total)
                comp_pct = int(100 * (t_done - t_ready) / total)
                line = (f"Train Epoch [{epoch:3d}/{epochs:3d}] : Batch [{b:5d}/{nb:5d}] "
                        f"(Loss = {values[-1]:.4f}; |g| = {gvalues[-1]:.4f}) "
                        f"[Data: {data_pct}%; Compute: {comp_pct}%")
                if multi:
                    line += f"; Grad/Comm: {int(100 * comm / total)}%"
                ctx.log.line(line + "]")
        t_prev = time.perf_counter()
    ctx.log.separator()


def _task(split, output_shape: tuple) -> Optional[str]:
    """``classification`` for label targets, ``dense`` for outputs with spatial axes, else None."""
    if getattr(split, "target_kind", None) == "labels":
        return "classification"
    return "dense" if len(output_shape) > 1 else None


@torch.no_grad()
def evaluate(ctx: Context, epoch: int, epochs: int) -> None:
    """One evaluation pass over this rank's test block: running global loss/accuracy lines,
    the ``_test.txt`` line, and ``output_<epoch>.h5`` when ``test_output_path`` is set."""
    split, model, loss_fn, cfg = ctx.bundle.test, ctx.net, ctx.loss, ctx.cfg
    model.eval()
    nb = split.num_batches
    with_loss = loss_fn is not None and split.has_targets
    stats = torch.zeros(2, dtype=torch.float64)       # loss·samples, samples
    metric = None
    if with_loss:  # sized from the network output so every rank's state has the same length
        metric = loss_fn.make_metric(_task(split, ctx.net.output_shape),
                                     num_classes=ctx.net.output_shape[0])
    outputs: list[tuple[int, Any]] = []
    writer = None
    write_here = bool(cfg.data.test_output_path) and ctx.log.enabled
    assembler = None
    if getattr(split, "slicing", None) is not None and cfg.data.hdf5_outfile:  # SPEC §5.11
        from ..io.assembly import Assembler

        assembler = Assembler(split.slicing, cfg.data.hdf5_outfile, cfg.data.hdf5_precision)
    try:
        for b, (x, y, idx) in enumerate(split.batches(epoch), 1):
            if write_here and writer is None:
                # started only now: DataLoader workers are forked by the first batch, and a fork
                # must not happen while the writer thread runs
                from ..io.predictions import PredictionWriter, output_path

                writer = PredictionWriter(output_path(cfg.data.test_output_path, epoch),
                                          cfg.data.hdf5_precision)
            n = int(x.shape[0])
            if n:
                x, y = _to_device(ctx, x, y)
                with ctx.autocast():
                    out = model(x)
                out = out.float()
                if with_loss:
                    value = loss_fn(out, y)
                    stats[0] += float(value) * n
                    stats[1] += n
                    if metric is not None:
                        metric.update(out, y)
                if assembler is not None:
                    assembler.add(idx, out)        # host copy; accumulation on its own thread
                if cfg.data.test_output_path:
                    cpu = out.cpu().numpy()
                    for j, i in enumerate(idx.tolist()):
                        arr = split.output_array(i, cpu[j])   # slices: transpose/padding undone
                        if writer is not None:
                            writer.add(split.sample_name(i), arr)
                        else:
                            outputs.append((i, arr))
            if printed(b, nb) or b == nb:
                loss_val, acc = _global_eval(ctx, stats, metric, with_loss)
                if printed(b, nb):
                    line = f"Eval  Epoch [{epoch:3d}/{epochs:3d}] : Batch [{b:5d}/{nb:5d}]"
                    if with_loss:
                        line += f" (Loss: {loss_val:.4f})"
                        if acc is not None:
                            line += f" | Accuracy: {acc:.3f}"
                    ctx.log.line(line)
        ctx.log.separator()
        if ctx.world > 1 and cfg.data.test_output_path:
            gathered = distributed.gather_object(outputs)   # to rank 0 only
            if writer is not None and gathered is not None:
                for part in gathered[1:]:
                    for i, arr in part:
                        writer.add(split.sample_name(i), arr)
        if writer is not None:
            writer.close()
            ctx.log.line(f"Writing inference output to file: {writer.path}")
            writer = None
        if assembler is not None:
            written = assembler.close()    # collective: sums reduced to rank 0, which writes
            assembler = None
            if written:
                ctx.log.line(f"Writing inference output to file: {written}")
        if with_loss:
            ctx.logfiles.test_line(epoch, loss_val, acc)
    finally:
        if writer is not None:
            writer.abort()
        if assembler is not None:
            assembler.abort()


def _global_eval(ctx: Context, stats: torch.Tensor, metric, with_loss: bool):
    """Running (loss, accuracy) over all ranks so far. Every rank calls this at the same batches."""
    if not with_loss:
        return None, None
    if ctx.world > 1:
        parts = [stats] + ([metric.state().to(torch.float64).cpu()] if metric is not None else [])
        flat = distributed.all_reduce_sum(torch.cat(parts))
        if metric is not None:  # a copy holds the global sums; the local ones keep accumulating
            metric = copy.deepcopy(metric)
            metric.load_state(flat[2:])
        loss_sum, count = float(flat[0]), float(flat[1])
    else:
        loss_sum, count = float(stats[0]), float(stats[1])
    loss_val = loss_sum / count if count else float("nan")
    acc = metric.value() if metric is not None else None
    return loss_val, acc
