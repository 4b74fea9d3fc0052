"""The ``Wasserstein`` loss of ``--app=gan``: WGAN with gradient penalty (WGAN-GP).

Formulas (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1), for a
batch of ``N`` real samples ``x``, generated samples ``x̃ = G(z)`` and the critic ``D`` (one score
per sample):

* interpolates ``x̂ = ε·x + (1 − ε)·x̃`` with one ``ε ~ U[0, 1]`` per sample;
* critic loss ``L_D = mean D(x̃) − mean D(x) + λ · mean (‖∇_x̂ D(x̂)‖₂ − 1)²``, the norm taken over
  all elements of one sample ``(C, *spatial)``;
* generator loss ``L_G = −mean D(G(z))``.

``λ`` is ``loss.gradient_penalty`` (default 10) and ``loss.critic_iterations`` (default 5) is the
number of critic steps per generator step (:mod:`rmldnn_py.gan.app` explains how they map onto
the batches of the training loop).

Tensors are channel-first: samples ``(N, C, *spatial)``, critic scores ``(N, 1)`` or ``(N,)``.
Everything here runs in the dtype of its inputs; the application passes float32 (scores are cast
to float32 after an autocast forward).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..engine.losses import LOSSES, BuiltLoss
from ..errors import DataError
from ..log import fmt_g

__all__ = ["WassersteinLoss", "interpolate", "gradient_penalty", "critic_loss", "generator_loss"]


def _scores(d: torch.Tensor) -> torch.Tensor:
    """Critic output ``(N, 1, …)`` with one element per sample → ``(N,)``."""
    n = int(d.shape[0])
    if d.numel() != n:
        raise DataError(f"Wasserstein loss: the critic output of shape {tuple(d.shape)} does not "
                        "hold one score per sample")
    return d.reshape(n)


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``x̂ = ε·x + (1 − ε)·x̃``.

    Args:
        real, fake: ``(N, C, *spatial)``.
        eps: ``(N,)`` (or any shape with N elements) values in [0, 1], one per sample.

    Returns:
        ``(N, C, *spatial)``, same dtype and memory format as ``real``.
    """
    e = eps.reshape((-1,) + (1,) * (real.dim() - 1)).to(real.dtype)
    return e * real + (1.0 - e) * fake


def gradient_penalty(scores: torch.Tensor, x_hat: torch.Tensor,
                     unscale: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                     scale: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                     ) -> torch.Tensor:
    """``mean_i (‖∇_x̂ D(x̂)_i‖₂ − 1)²`` (without λ), differentiable w.r.t. the critic's parameters
    (``create_graph=True``: the backward pass of the critic loss is a double backward).

    Args:
        scores: ``D(x̂)``, ``(N,)`` or ``(N, 1)``, computed from ``x_hat`` with grad enabled.
        x_hat: ``(N, C, *spatial)`` interpolates that require grad.
        scale / unscale: with a GradScaler (fp16), the scores are scaled before the gradient
            and the gradient unscaled after it (PyTorch AMP recipe "gradient penalty").

    Returns:
        0-dim tensor.
    """
    s = _scores(scores)
    out = s.sum()
    if scale is not None:
        out = scale(out)
    (grad,) = torch.autograd.grad(out, x_hat, create_graph=True)
    if unscale is not None:
        grad = unscale(grad)
    norms = grad.reshape(grad.shape[0], -1).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()


def critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor, penalty: torch.Tensor,
                lam: float) -> torch.Tensor:
    """``mean D(x̃) − mean D(x) + λ·penalty`` (0-dim)."""
    return _scores(d_fake).mean() - _scores(d_real).mean() + lam * penalty


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """``−mean D(G(z))`` (0-dim)."""
    return -_scores(d_fake).mean()


class WassersteinLoss(BuiltLoss):
    """The configured WGAN-GP loss (``neural_network.loss.function: "Wasserstein"``).

    Attributes:
        gradient_penalty: λ (``gradient_penalty``, >= 0, default 10).
        critic_iterations: critic steps per generator step (``critic_iterations``, >= 1,
            default 5).

    Calling it as a loss, ``loss(d_fake, d_real)``, gives the critic's Wasserstein term
    ``mean D(x̃) − mean D(x)`` without the penalty; the application uses the functions of this
    module. No accuracy metric.
    """

    name = "Wasserstein"
    function_label = "Wasserstein (WGAN-GP)"
    label_width = 18
    has_accuracy = False

    def __init__(self, where: str, *, gradient_penalty: float = 10.0,
                 critic_iterations: int = 5) -> None:
        super().__init__(where)
        self.gradient_penalty = float(gradient_penalty)
        self.critic_iterations = int(critic_iterations)

    def extra_rows(self):
        return [("Gradient penalty", fmt_g(self.gradient_penalty)),
                ("Critic iterations", str(self.critic_iterations))]

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _scores(output).mean() - _scores(target).mean()


@LOSSES.register("Wasserstein")
def _wasserstein(r, where: str, app: Optional[str]) -> BuiltLoss:
    return WassersteinLoss(where, gradient_penalty=r.number("gradient_penalty", 10.0, lo=0.0),
                           critic_iterations=r.integer("critic_iterations", 5, lo=1))
