"""The critic (discriminator) of ``--app=gan``: construction, checks and its optimisation step.

The critic is the Keras network of ``neural_network.discriminator.layers`` (any form ``layers``
accepts), built for the real samples' channel-first shape ``(C, *spatial)`` and required to give
one score per sample (output shape ``(1,)``, or any shape with one element). Its weights are
initialised from the random stream ``seed + 1`` (independent of the generator's architecture) and
then, when ``discriminator.checkpoint`` is set, loaded from that file like ``checkpoints.load``
(SPEC §7.4.2: ``.pt`` checkpoints, e.g. a ``discriminator_checkpoint_<e>.pt``, or Keras ``.h5``).
Its optimizer is ``discriminator.optimizer``, or the generator's ``optimizer`` settings when
absent; with a learning-rate scheduler on the generator, the critic's rate is multiplied by the
same factor as the generator's at every step (a scheduler of its own is not supported).

With several ranks the critic is wrapped in DistributedDataParallel like the generator (gradients
averaged over the ranks during backward). Its step evaluates real, generated and interpolated
samples in ONE forward pass (``cat([x, x̃, x̂])``): one forward per backward, as DDP requires,
and the input gradient of the penalty (``autograd.grad`` w.r.t. ``x̂`` only) does not trigger
DDP's parameter hooks; the double-backward pass of the critic loss then reduces every parameter
gradient once. Consequently the critic must treat samples independently: no
BatchNormalization (which Gulrajani et al. also advise against: the penalty is per sample);
LayerNormalization is fine.

Mixed precision: forward passes under the run's autocast; scores, penalty and losses in float32.
fp16 (CUDA) uses a GradScaler of the critic's own, with the AMP recipe for gradient penalties
(scores scaled before ``autograd.grad``, the input gradient unscaled after it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from .. import distributed
from ..errors import ConfigError, NetworkError
from ..network.layers.base import fmt_shape
from .data import CRITIC_SEED_OFFSET
from .losses import critic_loss, gradient_penalty, interpolate

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.run import Context

__all__ = ["Critic", "build_critic"]


@dataclass
class Critic:
    """The critic and everything its step needs.

    Attributes:
        net: the plain :class:`~rmldnn_py.network.graph.KerasNetwork` (saved; used, frozen, in
            the generator step).
        model: ``net`` wrapped in DistributedDataParallel with several ranks, else ``net``.
        optimizer: its :class:`~rmldnn_py.engine.optim.BuiltOptimizer`.
        params: its trainable parameters.
        clip: ``clip_grad_norm`` of its optimizer settings (None = no clipping).
        scaler: GradScaler (fp16 on CUDA) or None.
        base_lr: its configured learning rate (the generator's schedule scales it).
    """

    net: Any
    model: Any
    optimizer: Any
    params: list = field(default_factory=list)
    clip: Optional[float] = None
    scaler: Any = None
    base_lr: Optional[float] = None

    @contextlib.contextmanager
    def frozen(self):
        """The critic's parameters do not require gradients inside the block (generator step)."""
        for p in self.params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in self.params:
                p.requires_grad_(True)

    def set_lr_factor(self, factor: float) -> None:
        """Learning rate = ``base_lr · factor`` (follows the generator's schedule)."""
        if self.base_lr is None:
            return
        for group in self.optimizer.optimizer.param_groups:
            group["lr"] = self.base_lr * factor

    def step(self, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, lam: float,
             autocast: Callable[[], Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """One critic update on a batch (Algorithm 1, lines 4–9, of Gulrajani et al.).

        Args:
            real: ``(N, C, *spatial)`` real samples on the device.
            fake: ``(N, C, *spatial)`` generated samples (no graph to the generator).
            eps: ``(N,)`` interpolation weights in [0, 1].
            lam: the penalty weight λ.
            autocast: the run's autocast context factory.

        Returns:
            ``(critic loss, −mean D(x̃))`` as detached 0-dim float32 tensors: the loss that was
            minimised (penalty included) and the generator loss of these generated samples
            under the critic before its update.
        """
        opt = self.optimizer.optimizer
        opt.zero_grad(set_to_none=True)
        self.net.train()
        n = int(real.shape[0])
        fake = fake.to(real.dtype)
        x_hat = interpolate(real, fake, eps).detach().requires_grad_(True)
        with autocast():
            scores = self.model(torch.cat([real, fake, x_hat]))
        scores = scores.float()
        d_real, d_fake, d_hat = scores[:n], scores[n:2 * n], scores[2 * n:]
        scaler = self.scaler
        if scaler is not None:
            pen = gradient_penalty(d_hat, x_hat, scale=scaler.scale,
                                   unscale=lambda g: g * (1.0 / scaler.get_scale()))
        else:
            pen = gradient_penalty(d_hat, x_hat)
        loss = critic_loss(d_real, d_fake, pen, lam)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        return loss.detach(), (-d_fake.reshape(-1).mean()).detach()


def _optimizer_config(ctx: "Context"):
    d = ctx.cfg.discriminator
    if d.optimizer is not None:
        return d.optimizer, f"{ctx.cfg.path}: neural_network.discriminator.optimizer"
    return ctx.cfg.optimizer, f"{ctx.cfg.path}: neural_network.optimizer"


def build_critic(ctx: "Context", real_shape: tuple[int, ...]) -> Critic:
    """Build, check, initialise, place and (several ranks) wrap the critic; print its block.

    Args:
        real_shape: channel-first shape of one real sample, ``(C, *spatial)``.

    Raises:
        NetworkError: the critic cannot take the real samples, or does not output one score
            per sample (one line naming the network and the layer).
        ConfigError: invalid optimizer settings, or a closure-based optimizer (``Hessian``).
        CheckpointError: ``discriminator.checkpoint`` missing or not fitting.
    """
    from ..engine.checkpoint import load_weights
    from ..engine.optim import build_optimizer
    from ..network import build_network

    cfg, log = ctx.cfg, ctx.log
    d = cfg.discriminator
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed) + CRITIC_SEED_OFFSET)
        net = build_network(d.layers, input_shape=real_shape,
                            config_path=f"{cfg.path}: neural_network.discriminator.layers")
    net.check_input(real_shape)
    out = tuple(net.output_shape)
    if any(s is None for s in out) or _numel(out) != 1:
        raise NetworkError(f"{net.source}: layer '{net.output_name}': the critic "
                           "(neural_network.discriminator.layers) must output one score per sample "
                           f"(shape (1,)), its output has shape {fmt_shape(out)}")
    log.header("Discriminator")
    log.rows([("Model name", net.model_name),
              ("Total parameters", str(net.num_parameters())),
              ("Trainable parameters", str(net.num_parameters(trainable_only=True))),
              ("Num of operations", str(net.num_operations))], 20)
    if d.checkpoint:
        load_weights(net, d.checkpoint, log)
    net.to(ctx.device)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    opt_cfg, where = _optimizer_config(ctx)
    built = build_optimizer(opt_cfg, params, where=where)
    for opt, key in ((ctx.optimizer, f"{cfg.path}: neural_network.optimizer"), (built, where)):
        if opt.is_closure_based:
            raise ConfigError(f"{key}.type: '{opt.type}' (a line-search optimizer) cannot train a "
                              "GAN: the critic and the generator take alternating single steps; "
                              "use Adam, RMSprop or SGD")
    for w in built.warnings:
        log.warning(w)
    log.line("   Optimizer:")
    log.rows(built.rows, max(len(label) for label, _ in built.rows), indent=6)
    log.separator()
    scaler = None
    if ctx.scaler is not None:
        scaler = torch.amp.GradScaler("cuda")
    model: torch.nn.Module = net
    if ctx.world > 1:
        model = distributed.wrap_ddp(net, ctx.device)
    lr = built.values.get("learning_rate")
    return Critic(net=net, model=model, optimizer=built, params=params,
                  clip=opt_cfg.clip_grad_norm, scaler=scaler,
                  base_lr=float(lr) if lr is not None else None)


def _numel(shape: tuple) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
