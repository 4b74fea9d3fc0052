"""The run (SPEC §7.1), as one explicit loop that reads top to bottom:

distributed init → header → data → network (+ weights) → optimizer / scheduler / loss → Dataset
block → checks (targets, outputs) → resume → for each epoch: train → scheduler step → evaluate
(+ predictions) → best checkpoint / early stopping → checkpoint → ``All done (return value = 0).``

What differs between ``--app=dnn|pde|obj|gan`` comes from the application object
(:mod:`rmldnn_py.engine.app`); the loops are :func:`~rmldnn_py.engine.train.train_one_epoch` and
:func:`~rmldnn_py.engine.evaluate.evaluate`. Every check that can be made is made before the first
output file is opened, so a failing run leaves the previous run's outputs untouched.

Tensors are channel-first throughout: batches ``(N, C, H, W)``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
import warnings as _warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .. import __version__, distributed
from ..config.types import Config
from ..errors import CheckpointError, ConfigError, RmldnnError
from ..log import Logger, fmt_g, kv_row
from .app import Application, get_application
from .evaluate import evaluate, printed  # noqa: F401  (printed: public helper kept here too)
from .logfiles import LogFiles
from .observers import Observers
from .preempt import Preempted, Preemption
from .state import Position
from .train import train_one_epoch


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
# the run's state


@dataclass
class Context:
    """Everything the loops and the application need (built once in :func:`run`).

    Attributes:
        model: the network as trained (DDP-wrapped with several ranks, possibly compiled).
        net: the plain :class:`~rmldnn_py.network.graph.KerasNetwork` (saved, evaluated).
        data_log: buffers the data-discovery messages (printed in SPEC order later).
        monitors: ``"best"`` / ``"early_stopping"`` → :class:`~rmldnn_py.engine.monitor.Monitor`.
        extras: application-owned objects (GAN critic, its optimizer, ...).
    """

    cfg: Config
    app: Application
    log: Logger
    device: torch.device
    world: int = 1
    rank: int = 0
    data_log: Any = None
    bundle: Any = None
    net: Any = None
    model: Any = None
    loss: Any = None
    optimizer: Any = None                   # BuiltOptimizer
    scheduler: Any = None                   # BuiltScheduler
    logfiles: LogFiles = field(default_factory=lambda: LogFiles(None))
    observers: Observers = field(default_factory=lambda: Observers([]))
    autocast: Any = contextlib.nullcontext
    scaler: Any = None
    comm_timer: Any = None                  # distributed.CommTimer when training on several ranks
    preemption: Optional[Preemption] = None
    target_check: Any = None                # checks.TargetCheck
    monitors: dict = field(default_factory=dict)
    params: list = field(default_factory=list)
    class_names: Optional[list] = None
    config_text: str = ""
    train_start: float = 0.0
    elapsed_offset: float = 0.0
    num_train_batches: int = 0
    last_checkpoint: Optional[str] = None
    start: Position = field(default_factory=Position)
    extras: dict = field(default_factory=dict)

    # ----- helpers used by the loops and the applications ----------------------------------------
    def to_device(self, x: torch.Tensor, y: Optional[torch.Tensor]):
        """Move a batch to the run's device (channels-last memory format when configured)."""
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if y is not None:
            y = y.to(self.device, non_blocking=True)
        return x, y

    def elapsed(self) -> float:
        """Seconds of training so far (continued across a resume)."""
        return time.perf_counter() - self.train_start + self.elapsed_offset

    def stop_requested(self, diverged: bool = False) -> tuple[Optional[int], bool]:
        """Collective, once per batch of the loops: ``(the preemption signal when one arrived on
        any rank else None, whether any rank passed diverged=True)``."""
        if self.preemption is None:
            return None, bool(distributed.any_rank(int(diverged))[0])
        return self.preemption.requested(diverged)

    def current_lr(self) -> float:
        if self.optimizer is None:
            return 0.0
        return float(self.optimizer.optimizer.param_groups[0]["lr"])

    def grad_norm(self) -> torch.Tensor:
        """Global L2 norm of the gradients of the trainable parameters (|g|)."""
        from .optim import grad_norm

        return grad_norm(self.params)

    def clip_and_norm(self) -> torch.Tensor:
        """|g| before clipping; clips to ``optimizer.clip_grad_norm`` when configured. With a
        GradScaler a non-finite |g| means the scaler skips the step: reported as 0."""
        clip = self.cfg.optimizer.clip_grad_norm if self.cfg.optimizer is not None else None
        if clip:
            g = torch.nn.utils.clip_grad_norm_(self.params, clip)
        else:
            g = self.grad_norm()
        if self.scaler is not None:
            g = torch.where(torch.isfinite(g), g, torch.zeros_like(g))
        return g

    def divergence_message(self, epoch: int, batch: int, cols, values) -> str:
        shown = "; ".join(f"{c.label} = {v:.6g}" for c, v in zip(cols, values))
        last = (f"last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint
                else "no checkpoint was written yet")
        return (f"{self.cfg.path}: training diverged at epoch {epoch}, batch {batch} ({shown}); "
                f"{last}; lower neural_network.optimizer.learning_rate or set "
                "neural_network.optimizer.clip_grad_norm")


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


# --------------------------------------------------------------------------------------------
# the run


def run(cfg: Config, app: str = "dnn", warnings: Optional[list[str]] = None) -> int:
    """Execute the run described by ``cfg``; returns the exit code (0, or 128 + signal after a
    preemption).

    Raises:
        RmldnnError: any user-facing failure (after printing ``All done (return value = 1).``
            when the header was already printed).
    """
    application = get_application(app)
    application.check_config(cfg)
    device = choose_device()
    _autocast(cfg, device)                                   # fp16 on a CPU: fail before anything
    dist = distributed.init(use_cuda=device.type == "cuda")
    if device.type == "cuda" and dist.world_size > 1:  # MPI's node-local rank (shared-memory split)
        device = torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    log = Logger(enabled=dist.rank == 0)
    ctx = Context(cfg=cfg, app=application, log=log, device=device, world=dist.world_size,
                  rank=dist.rank, data_log=BufferLogger(dist.rank == 0),
                  config_text=_config_text(cfg))
    started = False
    try:
        print_header(log, application.name, device, dist.world_size)
        started = True
        for w in warnings or []:
            log.warning(w)
        _build(ctx)
        # SIGTERM/SIGUSR1 before this point end the process at once (nothing to save yet)
        ctx.preemption = Preemption()
        _loop(ctx)
        log.line("All done (return value = 0).")
        return 0
    except Preempted as stop:
        return _preempted(ctx, stop)
    except RmldnnError:
        if started:
            log.line("All done (return value = 1).")
        raise
    finally:
        if ctx.preemption is not None:
            ctx.preemption.close()
        ctx.observers.close()
        ctx.logfiles.close()
        for split in (getattr(ctx.bundle, "train", None), getattr(ctx.bundle, "test", None)):
            close = getattr(split, "close", None)
            if close is not None:
                close()             # DataLoader workers end now, not at interpreter exit
        if dist.world_size > 1 and sys.exc_info()[0] is None:
            distributed.shutdown()


def _build(ctx: Context) -> None:
    """Data, network, weights, optimizer, scheduler, loss, header blocks, every check, resume,
    then the outputs (logs, observers). Nothing is written before the checks have passed."""
    from ..network import build_network
    from .checkpoint import load_weights

    cfg, log, app = ctx.cfg, ctx.log, ctx.app
    torch.manual_seed(cfg.seed)
    if cfg.data.input_path is None and cfg.data.test_input_path is None and \
            cfg.data.num_examples is None and cfg.data.num_test_examples is None:
        raise ConfigError(f"{cfg.path}: neural_network.data: neither input_path nor "
                          "test_input_path is set: nothing to train or evaluate")

    # Data is discovered first (messages buffered and printed in SPEC order below) because a
    # network without a declared input shape takes it from the first sample (SPEC §4.2).
    ctx.bundle = bundle = app.build_data(ctx)
    sample_shape = app.network_input_shape(ctx)

    net = build_network(cfg.layers, config_path=cfg.path, input_shape=sample_shape)
    if sample_shape is not None:
        net.check_input(sample_shape)
    log.header("Neural Network")
    log.rows([("Model name", net.model_name),
              ("Total parameters", str(net.num_parameters())),
              ("Trainable parameters", str(net.num_parameters(trainable_only=True))),
              ("Num of operations", str(net.num_operations))], 20)
    log.separator()
    if cfg.checkpoints.load:
        load_weights(net, cfg.checkpoints.load, log)
    ctx.net = net
    net.to(ctx.device)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)

    training = bundle.train is not None and cfg.optimizer is not None
    ctx.num_train_batches = bundle.train.num_batches if bundle.train is not None else 0
    if training:
        from .optim import build_optimizer

        ctx.params = [p for p in net.parameters() if p.requires_grad]
        ctx.optimizer = build_optimizer(cfg.optimizer, ctx.params,
                                        where=f"{cfg.path}: neural_network.optimizer")
        for w in ctx.optimizer.warnings:
            log.warning(w)
        log.header("Optimizer")
        log.rows(ctx.optimizer.rows, _width(ctx.optimizer.rows))
        if cfg.optimizer.lr_scheduler is not None:
            from .schedulers import build_scheduler

            ctx.scheduler = build_scheduler(
                cfg.optimizer.lr_scheduler, ctx.optimizer.optimizer,
                where=f"{cfg.path}: neural_network.optimizer.lr_scheduler",
                num_epochs=cfg.num_epochs, steps_per_epoch=ctx.num_train_batches)
            for w in ctx.scheduler.warnings:
                log.warning(w)
            log.header("Learning rate scheduler")
            log.rows(ctx.scheduler.rows, _width(ctx.scheduler.rows))
    ctx.loss = app.build_loss(cfg)
    if ctx.loss is not None:
        for w in ctx.loss.warnings:
            log.warning(w)
        log.header("Loss")
        log.rows(ctx.loss.rows, _width(ctx.loss.rows))
    if ctx.optimizer is not None or ctx.loss is not None:
        log.separator()
    ctx.data_log.replay(log)
    print_dataset_block(log, bundle, cfg)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        log.line("*** CUDA available! Will train on GPU ***")
        log.separator()

    ctx.autocast = _autocast(cfg, ctx.device)
    if training and (cfg.mixed_precision or "").lower() == "fp16" and ctx.device.type == "cuda":
        ctx.scaler = torch.amp.GradScaler("cuda")
    ctx.class_names = bundle.class_names or _checkpoint_class_names(cfg)

    # ---- checks: everything that can fail does so before any output is opened ----
    _check_targets(ctx)
    app.setup(ctx)
    _check_run_options(ctx, training)
    _check_outputs(ctx)

    # ---- resume (rank 0 reads, every rank restores) ----
    start = Position()
    if training and cfg.checkpoints.resume:
        start = _resume(ctx)
    elif cfg.checkpoints.resume and not training:
        log.warning(f"{cfg.path}: neural_network.checkpoints.resume ignored: this run does not train")

    # ---- distribution ----
    model: torch.nn.Module = net
    if ctx.world > 1 and training:
        # gradients averaged bucket by bucket during backward (the "oneshot" reducer);
        # CommTimer times it.
        model = distributed.wrap_ddp(net, ctx.device)
        ctx.comm_timer = distributed.CommTimer()
        ctx.comm_timer.attach(model)
    elif ctx.world > 1:
        distributed.broadcast_module(net)  # inference: every rank uses rank 0's weights
    if cfg.compile:
        model = torch.compile(model)
    ctx.model = model
    ctx.start = start

    # ---- outputs ----
    if log.enabled:
        resume_from = (start.epoch, start.batch) if start != Position() else None
        ctx.logfiles = _logfiles(cfg.outfile, resume_from)
        ctx.observers = _observers(ctx)
        if cfg.debug:
            _write_dot(cfg, net, log)


def _checkpoint_class_names(cfg: Config) -> Optional[list]:
    """Class names stored in a ``checkpoints.load`` ``.pt`` file (inference runs on unlabelled
    folders name their predicted classes with them)."""
    path = cfg.checkpoints.load
    if not path or path.lower().endswith((".h5", ".hdf5")) or not os.path.isfile(path):
        return None
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    names = obj.get("class_names") if isinstance(obj, dict) else None
    return list(names) if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def _check_targets(ctx: Context) -> None:
    """Class-index targets must be classes of the network (SPEC §5.10 pitfall): labels at once,
    the first samples of each split now, every batch of the first epoch in the loop."""
    from .checks import TargetCheck

    cfg, bundle = ctx.cfg, ctx.bundle
    loss_name = ctx.loss.name if ctx.loss is not None else None
    splits = {"training": bundle.train, "test": bundle.test}
    if not any(TargetCheck.applies(loss_name, s) for s in splits.values()):
        return
    d = cfg.data
    where = {"training": f"{cfg.path}: neural_network.data.target_path",
             "test": f"{cfg.path}: neural_network.data.test_target_path"}
    paths = {"training": d.target_path, "test": d.test_target_path}
    if any(s is not None and s.target_kind == "labels" for s in splits.values()):
        where = {"training": f"{cfg.path}: neural_network.data.input_path",
                 "test": f"{cfg.path}: neural_network.data.test_input_path"}
        paths = {"training": d.input_path, "test": d.test_input_path}
    check = TargetCheck(loss_name or "", tuple(ctx.net.output_shape), where, paths,
                        getattr(ctx.loss, "ignore_index", None), ctx.log.warning)
    for role, split in splits.items():
        if not TargetCheck.applies(loss_name, split):
            check.active[role] = False
            continue
        labels = getattr(split.reader, "labels", None)
        if labels is not None:
            check.check_labels(labels, bundle.class_names, role)
            check.active[role] = False
            continue
        with torch.random.fork_rng(devices=[]):     # random transforms must not shift the run
            for i in range(min(4, split.num_total)):
                _x, y = split.reader.sample(i)
                if y is not None:
                    check.check_batch(y.unsqueeze(0), role)
    ctx.target_check = check


def _check_run_options(ctx: Context, training: bool) -> None:
    """Best checkpoint, early stopping, ReduceLROnPlateau: what they need must exist."""
    from .monitor import Monitor

    cfg = ctx.cfg
    test = ctx.bundle.test
    evaluates = test is not None and ctx.loss is not None and test.has_targets
    acc = evaluates and ctx.app.has_accuracy(ctx)
    wants = []
    if cfg.checkpoints.best:
        if not cfg.checkpoints.save:
            raise ConfigError(f"{cfg.path}: neural_network.checkpoints.best needs "
                              "neural_network.checkpoints.save (the directory of "
                              "model_checkpoint_best.pt)")
        wants.append(("neural_network.checkpoints.best", cfg.checkpoints.best))
        ctx.monitors["best"] = Monitor(cfg.checkpoints.best)
    if cfg.early_stopping is not None:
        es = cfg.early_stopping
        wants.append(("neural_network.early_stopping.monitor", es.monitor))
        ctx.monitors["early_stopping"] = Monitor(es.monitor, es.min_delta)
    if ctx.scheduler is not None and ctx.scheduler.on_eval:
        wants.append(("neural_network.optimizer.lr_scheduler.type", "loss"))
    for key, quantity in wants:
        if not training:
            continue
        if not evaluates:
            raise ConfigError(f"{cfg.path}: {key}: watches the evaluation {quantity}, which "
                              "needs test data with targets (test_input_path, test_target_path "
                              "or labels) and a loss")
        if quantity == "accuracy" and not acc:
            raise ConfigError(f"{cfg.path}: {key}: 'accuracy' is not computed for loss "
                              f"'{ctx.loss.name}' on this data; watch 'loss' instead")


def _check_outputs(ctx: Context) -> None:
    """Output paths usable (before training); stale temporary files of killed runs removed."""
    cfg = ctx.cfg
    try:
        from ..io.outputs import check_output_paths
    except ImportError:       # pragma: no cover - older tree
        check_output_paths = None
    if check_output_paths is not None:
        check_output_paths(cfg)
    if ctx.rank != 0:
        return
    try:
        from ..io.atomic import clean_stale_temps
    except ImportError:       # pragma: no cover
        return
    for d in (cfg.checkpoints.save, cfg.data.test_output_path,
              os.path.dirname(cfg.data.hdf5_outfile or "") or None):
        if d and os.path.isdir(d):
            clean_stale_temps(d)


def _logfiles(outfile: Optional[str], resume_from: Optional[tuple[int, int]]) -> LogFiles:
    if resume_from is None:
        return LogFiles(outfile)
    try:
        return LogFiles(outfile, resume_from=resume_from)
    except TypeError:          # pragma: no cover - LogFiles without resume support
        return LogFiles(outfile)


def _observers(ctx: Context) -> Observers:
    """Progress bar (interactive terminals) and TensorBoard, rank 0 only."""
    cfg = ctx.cfg
    obs = []
    if cfg.progress and ctx.bundle.train is not None and ctx.optimizer is not None \
            and _isatty(sys.stderr):
        from .progress import ProgressObserver

        obs.append(ProgressObserver(enabled=True))
    if cfg.tensorboard:
        from .tensorboard import TensorBoardObserver

        obs.append(TensorBoardObserver(cfg.tensorboard,
                                       where=f"{cfg.path}: neural_network.tensorboard"))
    return Observers(obs)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _resume(ctx: Context) -> Position:
    """Find (rank 0), broadcast and restore the checkpoint to resume from."""
    from . import state as st

    path = data = err = None
    notes: list[str] = []
    if ctx.rank == 0:
        try:
            path, data, notes = st.find_resume(ctx)
        except RmldnnError as exc:
            err = str(exc)
    path, data, notes, err = distributed.broadcast_object((path, data, notes, err))
    if err is not None:
        raise CheckpointError(err)
    for n in notes:
        ctx.log.warning(n)
    if path is None:
        ctx.log.line(f"No checkpoint to resume from in {ctx.cfg.checkpoints.save}: starting "
                     "from epoch 1")
        return Position()
    position, more = st.restore(ctx, path, data)
    for n in more:
        ctx.log.warning(n)
    ctx.last_checkpoint = path
    epoch, skip = position.next_start()
    then = (f"all {ctx.cfg.num_epochs} epochs are already done" if epoch > ctx.cfg.num_epochs
            else f"continuing with epoch {epoch}, batch {skip + 1}")
    ctx.log.line(f"Resuming from {path} (epoch {position.epoch}, batch {position.batch}): {then}")
    return position


def _write_dot(cfg: Config, net, log: Logger) -> None:
    from ..io.atomic import atomic_path

    path = (os.path.splitext(cfg.outfile)[0] + "_network.dot") if cfg.outfile else "network.dot"
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(net.to_dot())
    log.line(f"Writing network graph to file: {path}")


# --------------------------------------------------------------------------------------------
# the loop


def _loop(ctx: Context) -> None:
    cfg = ctx.cfg
    training = ctx.bundle.train is not None and ctx.optimizer is not None
    epochs = cfg.num_epochs if training else 1
    first, skip = ctx.start.next_start() if training else (1, 0)
    ctx.train_start = time.perf_counter()
    if training and first <= epochs:
        ctx.observers.on_train_start(num_epochs=epochs, start_epoch=first,
                                     num_batches=ctx.num_train_batches,
                                     batch_size=ctx.bundle.train.batch_local * ctx.world)
    for epoch in range(first, epochs + 1):
        if training and not (epoch == first and ctx.start.evaluating):
            train_one_epoch(ctx, epoch, epochs, skip if epoch == first else 0)
            if ctx.scheduler is not None and not ctx.scheduler.on_eval:
                lr = ctx.scheduler.step()
                if ctx.scheduler.verbose:
                    ctx.log.line(f"Learning rate adjusted to {fmt_g(float(lr))}")
        loss = acc = None
        if ctx.bundle.test is not None:
            loss, acc = evaluate(ctx, epoch, epochs)
        if not training:
            continue
        if ctx.scheduler is not None and ctx.scheduler.on_eval:
            ctx.scheduler.step()
            if ctx.scheduler.step_eval(loss if loss is not None else float("nan")) and \
                    ctx.scheduler.verbose:
                ctx.log.line(f"Learning rate adjusted to {fmt_g(ctx.current_lr())}")
        stop = _watch(ctx, epoch, loss, acc)
        if cfg.checkpoints.save and epoch % cfg.checkpoints.interval == 0:
            _save(ctx, Position(epoch, ctx.num_train_batches, True))
        if stop:
            break


def _watch(ctx: Context, epoch: int, loss, acc) -> bool:
    """Best checkpoint and early stopping after the evaluation of ``epoch``; True = stop."""
    best = ctx.monitors.get("best")
    if best is not None and best.update(epoch, loss, acc):
        from . import state as st

        path = os.path.join(ctx.cfg.checkpoints.save, "model_checkpoint_best.pt")
        state = st.full_state(ctx, Position(epoch, ctx.num_train_batches, True))
        if ctx.rank == 0:
            st.write(path, state)
            ctx.log.line(f"Best evaluation {best.quantity} so far: {best.best:.6g} (epoch "
                         f"{epoch}): saving model checkpoint to file: {path}")
        distributed.barrier()
    es = ctx.monitors.get("early_stopping")
    if es is not None:
        es.update(epoch, loss, acc)
        if es.waited >= ctx.cfg.early_stopping.patience:
            best_txt = (f"best {es.best:.6g} at epoch {es.best_epoch}" if es.best is not None
                        else "no finite value")
            ctx.log.line(f"Early stopping at epoch {epoch}: the evaluation {es.quantity} has not "
                         f"improved by more than {fmt_g(es.min_delta)} for {es.waited} "
                         f"evaluation{'s' if es.waited != 1 else ''} ({best_txt})")
            return True
    return False


def _save(ctx: Context, position: Position) -> None:
    """Full-state checkpoint ``model_checkpoint_<epoch>.pt`` (collective; rank 0 writes)."""
    from . import state as st
    from .checkpoint import checkpoint_path

    directory = ctx.cfg.checkpoints.save
    state = st.full_state(ctx, position)
    path = checkpoint_path(directory, position.epoch)
    if ctx.rank == 0:
        st.write(path, state)
        ctx.log.line(f"Saving model checkpoint to file: {path}")
        for m in ctx.app.save_extra(ctx, position.epoch, directory):
            ctx.log.line(m)
        st.remove_older_preempt(directory, position)
    ctx.last_checkpoint = path
    distributed.barrier()


def _preempted(ctx: Context, stop: Preempted) -> int:
    """Write the full-state checkpoint of the position reached (training runs with
    ``checkpoints.save``), print one line, return ``128 + signal`` (every rank)."""
    import signal as _signal

    from . import state as st

    name = _signal.Signals(stop.signum).name
    training = ctx.optimizer is not None and ctx.bundle is not None and ctx.bundle.train is not None
    save = ctx.cfg.checkpoints.save
    if training and save and ctx.net is not None:
        position = Position(stop.epoch, stop.batch, False, stop.evaluating)
        state = st.full_state(ctx, position)
        path = st.preempt_path(save, position)
        if ctx.rank == 0:
            st.write(path, state)
        distributed.barrier()
        ctx.log.line(f"Preempted by {name} at epoch {stop.epoch}, batch {stop.batch}: "
                     f"full-state checkpoint written to {path} (resume with \"resume\": true); "
                     f"exiting with code {stop.exit_code}")
    else:
        why = "this run does not train" if not training else "no checkpoints.save is configured"
        ctx.log.line(f"Preempted by {name}: nothing saved ({why}); exiting with code "
                     f"{stop.exit_code}")
    return stop.exit_code
