"""The application seam: what ``--app=dnn|pde|obj|gan`` supplies to the one engine loop.

The engine (:mod:`rmldnn_py.engine.run`, :mod:`.train`, :mod:`.evaluate`) owns what every
application shares: distributed start-up, the header, the network and its weights, optimizer and
scheduler, the epoch loop, batch lines and logs, divergence checks, preemption, full-state
checkpoints and resume, best checkpoint and early stopping, streaming predictions to rank 0 and
writing ``output_<epoch>.h5``, the ``_test.txt`` line. An :class:`Application` supplies only what
differs, through these methods (every one has the ``dnn`` behaviour as its default):

=========================  =========================================================================
``losses``                 the loss functions the application accepts (``None`` = the dnn losses)
``check_config(cfg)``      cross-key checks before anything runs (raises ConfigError)
``build_data(ctx)``        the training / test splits, a :class:`~rmldnn_py.data.split.DataBundle`
``network_input_shape``    the sample shape the network is built with / checked against
``build_loss(cfg)``        the configured loss (a :class:`~rmldnn_py.engine.losses.BuiltLoss`)
``setup(ctx)``             checks that need the network / data / loss; extra models (GAN critic)
``has_accuracy(ctx)``      whether evaluations report an accuracy (for ``best`` / early stopping)
``train_columns``          the values of a training batch: ``(Loss = ..; |g| = ..)`` and the
                           ``_train.txt`` columns after ``epoch batch frac seconds``
``train_step(ctx, x, y)``  one optimisation step on one batch → ``{column key: 0-dim tensor}``
``evaluator(ctx, epoch)``  one evaluation pass (:class:`Evaluator`): predictions per batch,
                           running global loss / accuracy, extra outputs at the end
``state_dict(ctx)``        extra state of a full-state checkpoint (GAN: critic + its optimizer),
``load_state_dict(ctx, s)``  and restoring it on resume
``save_extra(ctx, e, d)``  extra files next to ``model_checkpoint_<e>.pt`` (GAN critic)
=========================  =========================================================================

Applications are registered in :data:`APPS` (``dnn`` here; ``pde``, ``obj`` and ``gan`` by their
packages ``rmldnn_py.<app>.app``, imported on demand by :func:`get_application`).

Tensors are channel-first: batches ``(N, C, *spatial)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from ..config.types import Config
    from .run import Context

__all__ = ["APPS", "Application", "Column", "Evaluator", "SupervisedEvaluator",
           "get_application", "app_names"]

#: application name (``--app``) → :class:`Application` subclass
APPS = Registry("application", case_insensitive=True)
_APP_NAMES = ("dnn", "pde", "gan", "obj")


def app_names() -> tuple[str, ...]:
    """Every ``--app`` value (SPEC §2.2)."""
    return _APP_NAMES


def get_application(name: str) -> "Application":
    """A new :class:`Application` for ``--app=<name>`` (case-insensitive); the packages of
    ``pde``/``obj``/``gan`` are imported here, on demand.

    Raises:
        ConfigError: an application without an implementation.
    """
    key = name.lower()
    if key != "dnn" and key in _APP_NAMES and key not in {n.lower() for n in APPS.names()}:
        try:
            importlib.import_module(f"rmldnn_py.{key}.app")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"rmldnn_py.{key}"):
                raise ConfigError(f"--app={key}: application '{key}' is not supported yet by "
                                  "rmldnn_py") from None
            raise
    return APPS.get(key, where="--app")()


@dataclass(frozen=True)
class Column:
    """One value of a training batch.

    Attributes:
        key: name in the dict returned by :meth:`Application.train_step` (``"loss"``).
        label: label in the batch line (``"Loss"`` → ``Loss = 0.1234``; ``"|g|"``).
        rank_mean: average the value over the ranks before printing (per-rank losses); False
            for values that are already global (|g| of the all-reduced gradient).
    """

    key: str
    label: str
    rank_mean: bool = True


# ------------------------------------------------------------------------------------------------
# evaluation


class Evaluator:
    """One evaluation pass of an application over this rank's test batches.

    The engine calls :meth:`step` for every batch (empty batches of short ranks included: ``x``
    has 0 rows), :meth:`running` at every printed batch and :meth:`finish` once at the end. The
    last two are collective: every rank calls them at the same points.

    Attributes:
        has_loss: a loss is computed: the batch line shows ``(Loss: ..)`` and ``_test.txt`` gets a
            line.
        metric_name: what the accuracy is (``accuracy``, ``dice``, ``mAP50``) for observers.
    """

    has_loss: bool = False
    metric_name: str = "accuracy"

    def step(self, x: torch.Tensor, y: Optional[torch.Tensor],
             idx: torch.Tensor) -> Sequence[tuple[str, np.ndarray]]:
        """Process one batch; return the predictions to write as ``(dataset name, array)``
        (empty when nothing is written)."""
        return ()

    def running(self, final: bool = False) -> tuple[Optional[float], Optional[float]]:
        """Global ``(loss, accuracy)`` over every batch so far (None where not computed);
        ``final`` at the pass's last batch (an expensive accuracy, such as a detection mAP, may
        be computed then only)."""
        return None, None

    def finish(self) -> list[str]:
        """After the last batch: write extra outputs; return message lines to print."""
        return []

    def abort(self) -> None:
        """An error happened: drop partial outputs (temporary files)."""


class SupervisedEvaluator(Evaluator):
    """``dnn`` evaluation: forward pass, the loss and accuracy metric against the targets (when
    both exist), raw network outputs as predictions (slices: transpose and padding undone), the
    slice assembly into ``hdf5_outfile`` (SPEC §5.11).

    Subclasses change :meth:`prediction` (what is written for a sample) or the metric.
    """

    def __init__(self, ctx: "Context", split, epoch: int) -> None:
        from .. import distributed
        from .evaluate import global_sums

        self.ctx, self.split, self.epoch = ctx, split, epoch
        self._global_sums = global_sums
        self._dist = distributed
        loss = ctx.loss
        self.has_loss = loss is not None and split.has_targets
        self.stats = torch.zeros(2, dtype=torch.float64)        # loss·samples, samples
        self.metric = None
        if self.has_loss:   # sized from the network output: every rank's state has one length
            self.metric = loss.make_metric(task_of(split, ctx.net.output_shape),
                                           num_classes=ctx.net.output_shape[0])
            self.metric_name = "dice" if task_of(split, ctx.net.output_shape) == "dense" \
                else "accuracy"
        self.report = None
        task = task_of(split, ctx.net.output_shape)
        if self.metric is not None and ctx.cfg.outfile and task in ("classification", "dense"):
            from .report import ConfusionReport    # <outfile>_report.json / .txt (global)

            self.report = ConfusionReport(
                ctx.net.output_shape[0],
                task="classification" if task == "classification" else "segmentation",
                threshold=self.metric.threshold, ignore_index=self.metric.ignore_index)
        self.write = bool(ctx.cfg.data.test_output_path)
        self.assembler = None
        if getattr(split, "slicing", None) is not None and ctx.cfg.data.hdf5_outfile:
            from ..io.assembly import Assembler

            self.assembler = Assembler(split.slicing, ctx.cfg.data.hdf5_outfile,
                                       ctx.cfg.data.hdf5_precision)
        self.targets_checked = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network output for ``x`` in float32, ``(N, C, *spatial)`` or ``(N, F)``."""
        with self.ctx.autocast():
            out = self.ctx.net(x)
        return out.float()

    def prediction(self, out: torch.Tensor, x: torch.Tensor,
                   y: Optional[torch.Tensor]) -> torch.Tensor:
        """What is written for the batch (default: the raw output)."""
        return out

    def step(self, x, y, idx):
        n = int(x.shape[0])
        if not n:
            return ()
        ctx = self.ctx
        if y is not None and ctx.target_check is not None:
            ctx.target_check.check_batch(y, "test")
        x, y = ctx.to_device(x, y)
        out = self.forward(x)
        if self.has_loss:
            value = ctx.loss(out, y)
            self.stats[0] += float(value) * n
            self.stats[1] += n
            if self.metric is not None:
                self.metric.update(out, y)
            if self.report is not None:
                self.report.update(out, y)
        if not self.write and self.assembler is None:
            return ()
        pred_t = self.prediction(out, x, y)
        if self.assembler is not None:
            self.assembler.add(idx, pred_t)     # host copy; accumulation on its own thread
        if not self.write:
            return ()
        pred = pred_t.cpu().numpy()
        return [(self.split.sample_name(i), self.split.output_array(i, pred[j]))
                for j, i in enumerate(idx.tolist())]

    def running(self, final: bool = False):
        if not self.has_loss:
            return None, None
        parts = [self.stats] + ([self.metric.state().to(torch.float64).cpu()]
                                if self.metric is not None else [])
        flat = self._global_sums(torch.cat(parts))
        loss_sum, count = float(flat[0]), float(flat[1])
        acc = None
        if self.metric is not None:    # a copy holds the global sums; the local ones accumulate
            import copy

            m = copy.deepcopy(self.metric)
            m.load_state(flat[2:])
            acc = m.value()
        return (loss_sum / count if count else float("nan")), acc

    def finish(self):
        msgs = []
        if self.report is not None:     # collective: the confusion matrix summed over the ranks
            total = self._global_sums(self.report.state())
            if self.ctx.rank == 0:
                from .report import report_paths

                self.report.load_state(total)
                js, txt = report_paths(self.ctx.cfg.outfile)
                # written silently: stdout keeps rmldnn's lines exactly (issue 13)
                self.report.write(js, txt, self.ctx.class_names, epoch=self.epoch)
        if self.assembler is not None:
            written = self.assembler.close()    # collective: sums reduced to rank 0, which writes
            self.assembler = None
            if written:
                msgs.append(f"Writing inference output to file: {written}")
        return msgs

    def abort(self):
        if self.assembler is not None:
            self.assembler.abort()
            self.assembler = None


def task_of(split, output_shape: tuple) -> Optional[str]:
    """``classification`` for label targets, ``dense`` for outputs with spatial axes, else None."""
    if getattr(split, "target_kind", None) == "labels":
        return "classification"
    return "dense" if len(output_shape) > 1 else None


# ------------------------------------------------------------------------------------------------
# the application


class Application:
    """The ``dnn`` application (SPEC §8.1) and the base of every other one.

    Attributes:
        name: the ``--app`` value printed as ``RocketML : <name>``.
        losses: canonical loss names this application accepts; None = every loss that belongs to
            no other application (:data:`rmldnn_py.engine.losses.LOSS_APPS`).
        train_columns: the training values (batch line and ``_train.txt`` columns).
    """

    name = "dnn"
    losses: Optional[tuple[str, ...]] = None
    train_columns: tuple[Column, ...] = (Column("loss", "Loss"), Column("grad_norm", "|g|", False))

    # ----- configuration and construction -------------------------------------------------------
    def check_config(self, cfg: "Config") -> None:
        """Cross-key checks that need to know the application (before anything runs).

        Raises:
            ConfigError: e.g. a loss that belongs to another application.
        """
        from .losses import check_loss_app

        if cfg.loss is not None:
            check_loss_app(cfg.loss.function, self.name, self.losses,
                           where=f"{cfg.path}: neural_network.loss.function")

    def build_data(self, ctx: "Context"):
        """The training and test splits of this rank (SPEC §5), discovery messages through
        ``ctx.data_log``."""
        from ..data import build_datasets

        cfg = ctx.cfg
        return build_datasets(cfg.data, config_path=cfg.path, logger=ctx.data_log,
                              rank=ctx.rank, world_size=ctx.world, seed=cfg.seed,
                              device_is_cuda=ctx.device.type == "cuda")

    def network_input_shape(self, ctx: "Context") -> Optional[tuple]:
        """Channel-first sample shape the network is checked against (and built with when it
        declares no input shape): the first sample of the training (else test) split; None = no
        check (GAN: the generator's input is its latent vector, not a data sample)."""
        b = ctx.bundle
        first = b.train if b.train is not None else b.test
        shape = getattr(first, "sample_shape", None) if first is not None else None
        return tuple(shape) if shape else None

    def build_loss(self, cfg: "Config"):
        """The configured loss, or None (inference without loss)."""
        if cfg.loss is None:
            return None
        from .losses import build_loss

        return build_loss(cfg.loss, where=f"{cfg.path}: neural_network.loss", app=self.name)

    def setup(self, ctx: "Context") -> None:
        """Called once the network, data, loss and optimizer exist and before any output is
        opened: application checks (network output vs data) and extra models."""

    def has_accuracy(self, ctx: "Context") -> bool:
        """Whether evaluations report an accuracy (``checkpoints.best`` / ``early_stopping`` may
        watch it): the dnn rule is the loss's metric for the test targets (SPEC §6.3)."""
        test, loss = ctx.bundle.test, ctx.loss
        if test is None or loss is None or not test.has_targets:
            return False
        return loss.make_metric(task_of(test, ctx.net.output_shape),
                                num_classes=ctx.net.output_shape[0]) is not None

    # ----- training -------------------------------------------------------------------------------
    def train_step(self, ctx: "Context", x: torch.Tensor,
                   y: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch already on the device: forward (autocast), loss,
        backward (GradScaler with fp16), unscale, |g| (global L2 norm of the all-reduced gradient,
        before clipping), ``clip_grad_norm``, optimizer step. Returns ``{"loss", "grad_norm"}``
        as 0-dim tensors (no host synchronisation)."""
        opt = ctx.optimizer.optimizer
        model, loss_fn, scaler = ctx.model, ctx.loss, ctx.scaler

        def forward_backward():
            opt.zero_grad(set_to_none=True)
            with ctx.autocast():
                out = model(x)
            value = loss_fn(out.float(), y)
            if scaler is not None:
                scaler.scale(value).backward()
            else:
                value.backward()
            if ctx.optimizer.is_closure_based and ctx.world > 1:
                # the line search must see the same (global) loss on every rank, or the ranks
                # would take different numbers of steps and wait on each other forever
                from .. import distributed

                value = distributed.all_reduce_mean(value.detach().clone())
            return value

        if ctx.optimizer.is_closure_based:
            loss = opt.step(forward_backward)
            gnorm = ctx.grad_norm()
        else:
            loss = forward_backward()
            if scaler is not None:
                scaler.unscale_(opt)
            gnorm = ctx.clip_and_norm()
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
        return {"loss": loss.detach(), "grad_norm": gnorm.detach()}

    # ----- evaluation -----------------------------------------------------------------------------
    def evaluator(self, ctx: "Context", epoch: int) -> Evaluator:
        """The evaluation pass of ``epoch`` over ``ctx.bundle.test``."""
        return SupervisedEvaluator(ctx, ctx.bundle.test, epoch)

    # ----- checkpoints ----------------------------------------------------------------------------
    def state_dict(self, ctx: "Context") -> dict[str, Any]:
        """Extra state stored in full-state checkpoints (tensors, numbers, strings only)."""
        return {}

    def load_state_dict(self, ctx: "Context", state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` on resume."""

    def save_extra(self, ctx: "Context", epoch: int, directory: str) -> Iterable[str]:
        """Write extra files next to ``model_checkpoint_<epoch>.pt`` (rank 0); return messages."""
        return ()


APPS.register("dnn", Application)
