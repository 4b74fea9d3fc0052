"""The WGAN-GP losses of ``--app=gan`` against hand computations (issue 15, Gulrajani et al. 2017).

A tiny critic ``D(x) = v·tanh(W·flat(x) + b) + c`` (Keras ``Flatten → Dense(3, tanh) →
Dense(1)`` on 2×2 images) has the closed-form input gradient
``∇ₓD = Wᵀ (v ⊙ (1 − tanh²(W·x + b)))``; the penalty, both losses and one full critic update
(double backward through the penalty) are checked against NumPy evaluations of these formulas,
the parameter gradient by central finite differences.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from rmldnn_py.config.types import LossConfig, OptimizerConfig
from rmldnn_py.engine.losses import build_loss
from rmldnn_py.engine.optim import build_optimizer
from rmldnn_py.errors import ConfigError
from rmldnn_py.gan.critic import Critic
from rmldnn_py.gan.losses import (WassersteinLoss, critic_loss, generator_loss, gradient_penalty,
                                  interpolate)
from rmldnn_py.network import build_network

CRITIC = [
    {"class_name": "InputLayer", "config": {"name": "x", "batch_input_shape": [None, 2, 2, 1]}},
    {"class_name": "Flatten", "config": {"name": "flat"}},
    {"class_name": "Dense", "config": {"name": "hidden", "units": 3, "activation": "tanh"}},
    {"class_name": "Dense", "config": {"name": "score", "units": 1}},
]

W = np.array([[0.5, -0.3, 0.8, 0.1], [-0.6, 0.2, 0.4, -0.7], [0.3, 0.9, -0.2, 0.5]])
B = np.array([0.1, -0.2, 0.05])
V = np.array([[0.7, -1.1, 0.4]])
C = np.array([0.3])


def tiny_critic() -> torch.nn.Module:
    net = build_network(CRITIC, config_path="test.json").double()
    with torch.no_grad():
        for name, value in (("hidden.weight", W), ("hidden.bias", B), ("score.weight", V),
                            ("score.bias", C)):
            net.state_dict()[name].copy_(torch.from_numpy(value))
    return net


def d_np(x, w=W, b=B, v=V, c=C):
    """D for a batch x (N, 4) → (N,)."""
    return (np.tanh(x @ w.T + b) @ v.T + c)[:, 0]


def grad_np(x, w=W, b=B, v=V):
    """∇ₓD (N, 4)."""
    h = np.tanh(x @ w.T + b)
    return (v[0] * (1 - h ** 2)) @ w


def critic_loss_np(real, fake, eps, lam, w=W, b=B, v=V, c=C):
    x_hat = eps[:, None] * real + (1 - eps[:, None]) * fake
    norms = np.linalg.norm(grad_np(x_hat, w, b, v), axis=1)
    return d_np(fake, w, b, v, c).mean() - d_np(real, w, b, v, c).mean() + \
        lam * ((norms - 1) ** 2).mean()


def batch(seed):
    g = np.random.default_rng(seed)
    real = g.uniform(0, 1, (5, 4))
    fake = g.uniform(0, 1, (5, 4))
    eps = g.uniform(0, 1, 5)
    return real, fake, eps


def as_images(a):
    return torch.from_numpy(a).reshape(-1, 1, 2, 2)


def test_interpolate_per_sample():
    real, fake, eps = batch(0)
    got = interpolate(as_images(real), as_images(fake), torch.from_numpy(eps))
    want = eps[:, None] * real + (1 - eps[:, None]) * fake
    np.testing.assert_allclose(got.reshape(5, 4).numpy(), want, rtol=0, atol=1e-15)


def test_penalty_and_losses_by_hand():
    net = tiny_critic()
    real, fake, eps = batch(1)
    x_hat = interpolate(as_images(real), as_images(fake), torch.from_numpy(eps))
    x_hat.requires_grad_(True)
    pen = gradient_penalty(net(x_hat), x_hat)
    xh = x_hat.detach().reshape(5, 4).numpy()
    want_pen = ((np.linalg.norm(grad_np(xh), axis=1) - 1) ** 2).mean()
    assert pen.item() == pytest.approx(want_pen, rel=1e-12)
    d_real, d_fake = net(as_images(real)), net(as_images(fake))
    np.testing.assert_allclose(d_real.reshape(-1).detach().numpy(), d_np(real), rtol=1e-12)
    lam = 10.0
    got = critic_loss(d_real, d_fake, pen, lam).item()
    assert got == pytest.approx(d_np(fake).mean() - d_np(real).mean() + lam * want_pen, rel=1e-12)
    assert got == pytest.approx(critic_loss_np(real, fake, eps, lam), rel=1e-12)
    assert generator_loss(d_fake).item() == pytest.approx(-d_np(fake).mean(), rel=1e-12)


def test_penalty_of_a_linear_critic_is_the_weight_norm():
    # D(x) = w·x: ∇D = w everywhere, so the penalty is (‖w‖ − 1)² whatever the samples
    lin = [{"class_name": "InputLayer",
            "config": {"name": "x", "batch_input_shape": [None, 2, 2, 1]}},
           {"class_name": "Flatten", "config": {"name": "flat"}},
           {"class_name": "Dense", "config": {"name": "score", "units": 1, "use_bias": False}}]
    net = build_network(lin, config_path="t.json").double()
    w = torch.tensor([[3.0, 0.0, 4.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        net.state_dict()["score.weight"].copy_(w)
    x = torch.rand(7, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    assert gradient_penalty(net(x), x).item() == pytest.approx((5.0 - 1.0) ** 2)


def test_scaled_penalty_equals_unscaled():
    """The fp16 GradScaler recipe (scale the scores, unscale the input gradient) gives the same
    penalty; checked with a constant scale factor."""
    net = tiny_critic()
    real, fake, eps = batch(2)
    x_hat = interpolate(as_images(real), as_images(fake), torch.from_numpy(eps))
    x_hat.requires_grad_(True)
    plain = gradient_penalty(net(x_hat), x_hat)
    s = 1024.0
    scaled = gradient_penalty(net(x_hat), x_hat, scale=lambda t: t * s, unscale=lambda g: g / s)
    assert scaled.item() == pytest.approx(plain.item(), rel=1e-12)


def _numeric_param_grad(real, fake, eps, lam):
    """Central finite differences of the NumPy critic loss w.r.t. W, B, V, C."""
    params = {"hidden.weight": W, "hidden.bias": B, "score.weight": V, "score.bias": C}
    grads = {}
    h = 1e-6
    for name, p in params.items():
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            vals = []
            for sign in (1, -1):
                q = {k: v.copy() for k, v in params.items()}
                q[name][idx] += sign * h
                vals.append(critic_loss_np(real, fake, eps, lam, q["hidden.weight"],
                                           q["hidden.bias"], q["score.weight"], q["score.bias"]))
            g[idx] = (vals[0] - vals[1]) / (2 * h)
        grads[name] = g
    return grads


@pytest.mark.parametrize("lam", [0.0, 10.0])
def test_one_critic_step_is_sgd_on_the_hand_loss(lam):
    """Critic.step with SGD(lr): every parameter moves by −lr·∂L_D/∂p, ∂L_D/∂p by finite
    differences of the hand-written loss (this checks the double backward of the penalty)."""
    net = tiny_critic()
    params = [p for p in net.parameters()]
    lr = 0.1
    opt = build_optimizer(OptimizerConfig("SGD", {"learning_rate": lr}), params)
    critic = Critic(net=net, model=net, optimizer=opt, params=params)
    real, fake, eps = batch(3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss, g_loss = critic.step(as_images(real), as_images(fake), torch.from_numpy(eps), lam,
                               contextlib.nullcontext)
    # the step reads the scores back in float32 (as after an autocast forward)
    assert loss.item() == pytest.approx(critic_loss_np(real, fake, eps, lam), rel=1e-6, abs=1e-7)
    assert g_loss.item() == pytest.approx(-d_np(fake).mean(), rel=1e-6)
    num = _numeric_param_grad(real, fake, eps, lam)
    after = net.state_dict()
    for name, g in num.items():
        moved = (before[name] - after[name]).numpy() / lr
        np.testing.assert_allclose(moved, g, rtol=1e-5, atol=1e-7, err_msg=name)


def test_loss_options_rows_and_app_check():
    loss = build_loss(LossConfig("wasserstein", {"gradient_penalty": 2.5, "critic_iterations": 3}),
                      app="gan")
    assert isinstance(loss, WassersteinLoss)
    assert (loss.gradient_penalty, loss.critic_iterations) == (2.5, 3)
    assert loss.rows == [("Function", "Wasserstein (WGAN-GP)"), ("Gradient penalty", "2.5"),
                         ("Critic iterations", "3")]
    assert loss.make_metric("dense") is None
    default = build_loss(LossConfig("Wasserstein", {}), app="gan")
    assert (default.gradient_penalty, default.critic_iterations) == (10.0, 5)
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.critic_iterations: must be >= 1"):
        build_loss(LossConfig("Wasserstein", {"critic_iterations": 0}), app="gan")
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.gradient_penalty: must be >= 0"):
        build_loss(LossConfig("Wasserstein", {"gradient_penalty": -1}), app="gan")
    with pytest.raises(ConfigError, match=r"loss function 'Wasserstein' requires --app=gan"):
        build_loss(LossConfig("Wasserstein", {}), app="dnn")
