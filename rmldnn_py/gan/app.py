"""``--app=gan``: Wasserstein GAN with gradient penalty from two Keras networks (SPEC §8.3).

Configuration (``neural_network.*``):

* ``layers`` — the generator; its ``InputLayer`` gives the latent shape (``[null, 64]`` → latent
  vectors ``(64,)``); its output must have the shape of one real sample.
* ``discriminator: {"layers": ..., "optimizer": {...}, "checkpoint": ...}`` — the critic (one
  score per sample, :mod:`rmldnn_py.gan.critic`); required to train.
* ``data.input_path`` — the real samples, through any ``dnn`` loader and its transforms (no
  targets); ``data.batch_size`` real samples per batch.
* ``loss: {"function": "Wasserstein", "gradient_penalty": λ, "critic_iterations": n}``
  (:mod:`rmldnn_py.gan.losses`; defaults 10 and 5; the loss section may be omitted).
* ``data.num_test_examples`` + ``data.test_output_path`` — at every evaluation (after every
  epoch; once for a run without training), the generator (in inference mode) turns the same
  ``num_test_examples`` latent vectors (:class:`~rmldnn_py.gan.data.LatentSplit`) into samples
  written to ``output_<epoch>.h5`` (datasets ``sample_00000`` …, channel-first ``(C, *spatial)``,
  in ``test_batch_size`` batches) and ``output_<epoch>.png`` (:mod:`rmldnn_py.gan.grid`).

Training. One batch of the training loop = one critic step on that batch of real samples (with
``N`` fresh latent vectors and interpolation weights); after every ``critic_iterations``-th
critic step, counted over the whole run (across epochs; the count is part of the checkpoint),
one generator step follows on ``N`` fresh latent vectors with the critic frozen. This is
Algorithm 1 of Gulrajani et al. with the epoch loop over the real data as the outer loop: each
critic iteration takes a new real batch, so an epoch of ``B`` batches makes ``B`` critic steps
and about ``B / critic_iterations`` generator steps. The batch line and ``_train.txt`` show::

    Train Epoch [  1/ 20] : Batch [    3/   23] (Loss D = -1.2345; Loss G = 0.6789) [...]
    <epoch> <batch> <frac_epoch> <seconds> <loss_d> <loss_g>

``Loss D`` = the critic loss minimised in that batch's critic step (penalty included);
``Loss G`` = ``−mean D(G(z))``: for a batch with a generator step, the loss of that step; for
the other batches, of the batch's generated samples under the critic before its update (no
generator update). Per-rank values are averaged over the ranks. The generator's learning-rate
scheduler steps like ``dnn``'s (per epoch, or per batch of the loop for per-batch schedulers);
the critic's rate follows the same factor.

Checkpoints: ``model_checkpoint_<e>.pt`` is the engine's full-state checkpoint of the generator
(``model``, SPEC §7.4), whose ``extra`` holds the critic, its optimizer (and scaler), the noise
stream and the step counts, so ``checkpoints.resume`` restores both networks;
``discriminator_checkpoint_<e>.pt`` next to it holds the critic alone
(``{"format", "model", "optimizer", "epoch", "config"}``, loadable as
``discriminator.checkpoint``). Generator weights for ``checkpoints.load``: ``model_checkpoint``.

Distribution: both networks DistributedDataParallel under ``mpirun``/``torchrun``; every random
draw is made for the global batch and sliced per rank (:class:`~rmldnn_py.gan.data.NoiseSource`),
so ``np = w`` reproduces ``np = 1`` with the same global batch (up to floating-point summation
order; BatchNormalization in the generator sees per-rank batches). Mixed precision and
``channels_last`` as for ``dnn``; ``compile`` compiles the generator only (the critic's double
backward is not supported by ``torch.compile``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Optional

import torch

from .. import distributed
from ..engine.app import APPS, Application, Column, Evaluator
from ..errors import CheckpointError, ConfigError, NetworkError
from ..network.layers.base import fmt_shape
from .critic import Critic, build_critic
from .data import LatentSplit, NoiseSource
from .grid import GRID_MAX, is_image, write_grid
from .losses import generator_loss

if TYPE_CHECKING:  # pragma: no cover
    from ..config.types import Config
    from ..engine.run import Context

__all__ = ["GanApp", "GanEvaluator", "GanState", "discriminator_checkpoint_path"]


def discriminator_checkpoint_path(directory: str, epoch: int) -> str:
    """``<directory>/discriminator_checkpoint_<epoch>.pt``."""
    return os.path.join(directory, f"discriminator_checkpoint_{epoch}.pt")


@dataclass
class GanState:
    """What the application keeps in ``ctx.extras["gan"]``.

    Attributes:
        latent_shape: the generator's input shape without batch.
        critic: the :class:`~rmldnn_py.gan.critic.Critic` (None when the run does not train).
        noise: the training noise stream (None when the run does not train).
        critic_iterations / gradient_penalty: from the loss section.
        critic_steps / generator_steps: steps taken so far in the run (resumed from checkpoints).
        base_lr: the generator's configured learning rate (for the critic's schedule factor).
        value_range: pixel values shown black / white in the PNG grid.
    """

    latent_shape: tuple
    critic: Optional[Critic] = None
    noise: Optional[NoiseSource] = None
    critic_iterations: int = 5
    gradient_penalty: float = 10.0
    critic_steps: int = 0
    generator_steps: int = 0
    base_lr: Optional[float] = None
    value_range: tuple = (0.0, 1.0)


def _state(ctx: "Context") -> GanState:
    return ctx.extras["gan"]


class GanEvaluator(Evaluator):
    """Generates the samples of the fixed latent vectors (see the module docstring): returns them
    as predictions (``output_<epoch>.h5``) and, at the end, writes the PNG grid of the first
    :data:`~rmldnn_py.gan.grid.GRID_MAX` on rank 0. No loss, no accuracy."""

    has_loss = False

    def __init__(self, ctx: "Context", split: LatentSplit, epoch: int) -> None:
        self.ctx, self.split, self.epoch = ctx, split, epoch
        self.write = bool(ctx.cfg.data.test_output_path)
        self.kept: list[tuple[int, torch.Tensor]] = []

    def step(self, x, y, idx):
        if not int(x.shape[0]):
            return ()
        ctx = self.ctx
        z, _ = ctx.to_device(x, None)
        with ctx.autocast():
            out = ctx.net(z)
        out = out.float().cpu().contiguous()
        for j, i in enumerate(idx.tolist()):
            if i < GRID_MAX:
                self.kept.append((i, out[j].clone()))
        if not self.write:
            return ()
        arr = out.numpy()
        return [(self.split.sample_name(i), arr[j]) for j, i in enumerate(idx.tolist())]

    def finish(self) -> list[str]:
        if not self.write:
            return []
        ctx = self.ctx
        parts = distributed.gather_object(self.kept) if ctx.world > 1 else [self.kept]
        self.kept = []
        if ctx.rank != 0 or not parts:
            return []
        rows = sorted((r for part in parts for r in part), key=lambda r: r[0])
        if not rows or not is_image(rows[0][1].shape):
            return []
        path = os.path.join(ctx.cfg.data.test_output_path, f"output_{self.epoch}.png")
        write_grid(path, torch.stack([r[1] for r in rows]), _state(ctx).value_range)
        return [f"Writing generated samples grid to file: {path}"]


class GanApp(Application):
    """The ``gan`` application (see the module docstring)."""

    name = "gan"
    losses = ("Wasserstein",)
    train_columns = (Column("loss_d", "Loss D"), Column("loss_g", "Loss G"))

    # ----- configuration and construction -------------------------------------------------------
    def check_config(self, cfg: "Config") -> None:
        """Raises ConfigError (one line) for: another loss than Wasserstein; training without
        ``discriminator``; a scheduler of the critic; test data or targets (the GAN reads real
        samples only); ``num_test_examples`` without ``test_output_path`` or vice versa."""
        super().check_config(cfg)
        d, nn = cfg.data, f"{cfg.path}: neural_network"
        if d.test_input_path:
            raise ConfigError(f"{nn}.data.test_input_path: --app=gan reads no test data: its "
                              "evaluation generates data.num_test_examples samples from fixed "
                              "latent vectors into data.test_output_path")
        for key in ("target_path", "test_target_path"):
            if getattr(d, key):
                raise ConfigError(f"{nn}.data.{key}: --app=gan trains on real samples without "
                                  "targets; remove this key")
        if (d.target_type or "").lower() == "labels":
            raise ConfigError(f"{nn}.data.target_type: --app=gan trains on real samples without "
                              "targets; remove 'labels'")
        if d.test_output_path and not d.num_test_examples:
            raise ConfigError(f"{nn}.data.num_test_examples: --app=gan needs the number of "
                              "samples to generate into data.test_output_path")
        if d.num_test_examples and not d.test_output_path:
            raise ConfigError(f"{nn}.data.test_output_path: --app=gan writes the "
                              "data.num_test_examples generated samples there; set it")
        if d.input_path and cfg.optimizer is not None and cfg.discriminator is None:
            raise ConfigError(f"{nn}.discriminator: missing: --app=gan trains a critic next to "
                              "the generator (layers); add \"discriminator\": {\"layers\": ...}")
        disc = cfg.discriminator
        if disc is not None and disc.optimizer is not None and disc.optimizer.lr_scheduler:
            raise ConfigError(f"{nn}.discriminator.optimizer.lr_scheduler: not supported: the "
                              "critic's learning rate follows the generator's schedule "
                              "(neural_network.optimizer.lr_scheduler)")

    def build_data(self, ctx: "Context"):
        """The real samples (``input_path``, dnn loaders) and the latent test split."""
        bundle = super().build_data(ctx)
        d = ctx.cfg.data
        if d.num_test_examples:
            bundle.test = LatentSplit(d.num_test_examples, d.test_batch_size, ctx.rank,
                                      ctx.world, ctx.cfg.seed)
        return bundle

    def network_input_shape(self, ctx: "Context") -> Optional[tuple]:
        """None: the generator's input is its latent vector (declared by its InputLayer), not a
        data sample."""
        return None

    def build_loss(self, cfg: "Config"):
        """The configured Wasserstein loss; its defaults when a training run has no loss
        section."""
        if cfg.loss is None and cfg.optimizer is not None and cfg.data.input_path:
            from ..config.types import LossConfig
            from ..engine.losses import build_loss

            return build_loss(LossConfig("Wasserstein", {}),
                              where=f"{cfg.path}: neural_network.loss", app=self.name)
        return super().build_loss(cfg)

    def setup(self, ctx: "Context") -> None:
        """Check the generator against the real samples, bind the latent split, build the critic
        and the noise stream.

        Raises:
            NetworkError: a latent shape with free dimensions, a generator output shape other
                than the real samples' shape, or a critic that does not fit (one line).
        """
        net = ctx.net
        latent = tuple(net.input_shape)
        if any(s is None for s in latent):
            raise NetworkError(f"{net.source}: layer '{net.input_name}': the generator input (the "
                               f"latent vector) needs a fixed shape, declared {fmt_shape(latent)}")
        state = GanState(latent_shape=latent)
        ctx.extras["gan"] = state
        train = ctx.bundle.train
        real = None
        if train is not None:
            real = tuple(int(s) for s in train.sample_shape)
            if tuple(net.output_shape) != real:
                raise NetworkError(
                    f"{net.source}: layer '{net.output_name}': the generator outputs samples of "
                    f"shape {fmt_shape(tuple(net.output_shape))} but the real samples "
                    f"(neural_network.data.input_path) have shape {fmt_shape(real)} "
                    "(channel-first)")
            state.value_range = _value_range(train)
        if isinstance(ctx.bundle.test, LatentSplit):
            ctx.bundle.test.bind(latent)
        if train is None or ctx.optimizer is None:
            return
        loss = ctx.loss
        state.critic_iterations = int(getattr(loss, "critic_iterations", 5))
        state.gradient_penalty = float(getattr(loss, "gradient_penalty", 10.0))
        state.critic = build_critic(ctx, real)
        state.noise = NoiseSource(ctx.cfg.seed, ctx.rank, ctx.world)
        lr = ctx.optimizer.values.get("learning_rate")
        state.base_lr = float(lr) if lr else None

    # ----- training -------------------------------------------------------------------------------
    def train_step(self, ctx: "Context", x: torch.Tensor,
                   y: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
        """One critic step on ``x`` (real samples ``(N, C, *spatial)`` on the device) and, after
        every ``critic_iterations``-th critic step, one generator step. Returns
        ``{"loss_d", "loss_g"}`` (0-dim tensors, see the module docstring)."""
        st = _state(ctx)
        critic = st.critic
        n = int(x.shape[0])
        if ctx.scheduler is not None and st.base_lr:
            critic.set_lr_factor(ctx.current_lr() / st.base_lr)
        z = st.noise.latent(n, st.latent_shape).to(ctx.device, non_blocking=True)
        eps = st.noise.uniform(n).to(ctx.device, non_blocking=True)
        with torch.no_grad(), ctx.autocast():
            fake = ctx.net(z)
        loss_d, loss_g = critic.step(x, fake.float(), eps, st.gradient_penalty, ctx.autocast)
        st.critic_steps += 1
        if st.critic_steps % st.critic_iterations == 0:
            loss_g = self._generator_step(ctx, st, n)
            st.generator_steps += 1
        return {"loss_d": loss_d, "loss_g": loss_g}

    @staticmethod
    def _generator_step(ctx: "Context", st: GanState, n: int) -> torch.Tensor:
        """``−mean D(G(z))`` on ``n`` fresh latent vectors, critic frozen; one optimizer step of
        the generator (GradScaler with fp16, ``clip_grad_norm``). Returns the detached loss."""
        opt = ctx.optimizer.optimizer
        scaler = ctx.scaler
        opt.zero_grad(set_to_none=True)
        z = st.noise.latent(n, st.latent_shape).to(ctx.device, non_blocking=True)
        with st.critic.frozen():
            with ctx.autocast():
                fake = ctx.model(z)
                scores = st.critic.net(fake)
            loss = generator_loss(scores.float())
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
        ctx.clip_and_norm()
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        return loss.detach()

    # ----- evaluation -----------------------------------------------------------------------------
    def evaluator(self, ctx: "Context", epoch: int) -> Evaluator:
        return GanEvaluator(ctx, ctx.bundle.test, epoch)

    # ----- checkpoints ----------------------------------------------------------------------------
    def state_dict(self, ctx: "Context") -> dict[str, Any]:
        """The critic, its optimizer and scaler, the noise stream and the step counts."""
        st = ctx.extras.get("gan")
        if st is None or st.critic is None:
            return {}
        c = st.critic
        return {
            "critic": {k: v.detach().cpu() for k, v in c.net.state_dict().items()},
            "critic_optimizer": c.optimizer.optimizer.state_dict(),
            "critic_scaler": c.scaler.state_dict() if c.scaler is not None else None,
            "noise": st.noise.state_dict(),
            "critic_steps": int(st.critic_steps),
            "generator_steps": int(st.generator_steps),
        }

    def load_state_dict(self, ctx: "Context", state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (resume).

        Raises:
            CheckpointError: the checkpoint has no critic, or one that does not fit.
        """
        st = ctx.extras.get("gan")
        if st is None or st.critic is None:
            return
        c = st.critic
        if not isinstance(state.get("critic"), dict):
            raise CheckpointError(f"{ctx.cfg.path}: neural_network.checkpoints.resume: the "
                                  "checkpoint holds no critic state (not written by --app=gan)")
        try:
            c.net.load_state_dict(state["critic"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{ctx.cfg.path}: neural_network.checkpoints.resume: the "
                                  "checkpoint's critic does not fit neural_network.discriminator."
                                  f"layers: {_first_line(exc)}") from None
        try:
            c.optimizer.optimizer.load_state_dict(state["critic_optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{ctx.cfg.path}: neural_network.checkpoints.resume: cannot "
                                  f"restore the critic's optimizer: {_first_line(exc)}") from None
        if c.scaler is not None and state.get("critic_scaler"):
            c.scaler.load_state_dict(state["critic_scaler"])
        if state.get("noise"):
            st.noise.load_state_dict(state["noise"])
        st.critic_steps = int(state.get("critic_steps", 0))
        st.generator_steps = int(state.get("generator_steps", 0))

    def save_extra(self, ctx: "Context", epoch: int, directory: str) -> Iterable[str]:
        """``discriminator_checkpoint_<epoch>.pt`` (rank 0)."""
        st = ctx.extras.get("gan")
        if st is None or st.critic is None:
            return ()
        from ..engine import state as engine_state

        c = st.critic
        path = discriminator_checkpoint_path(directory, epoch)
        engine_state.write(path, {
            "format": engine_state.FORMAT,
            "model": {k: v.detach().cpu() for k, v in c.net.state_dict().items()},
            "optimizer": c.optimizer.optimizer.state_dict(),
            "epoch": int(epoch),
            "config": ctx.config_text,
        })
        return [f"Saving discriminator checkpoint to file: {path}"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def _value_range(split) -> tuple[float, float]:
    """Range of the real samples for the PNG grid: [0, 1] widened to the first real sample's
    minimum and maximum (e.g. [-1, 1] after a normalising transform)."""
    try:
        with torch.random.fork_rng(devices=[]):
            x, _ = split.reader.sample(0)
    except Exception:     # a grid-only nicety: never fail the run for it
        return (0.0, 1.0)
    return (min(0.0, float(x.min())), max(1.0, float(x.max())))


APPS.register("gan", GanApp)
