"""Optimizer registry (SPEC §3.6, §6.1, §7.2.3) and the gradient norm |g|."""

from __future__ import annotations

import math

import pytest
import torch

from rmldnn_py.config.types import OptimizerConfig
from rmldnn_py.engine.optim import OPTIMIZERS, build_optimizer, grad_norm
from rmldnn_py.errors import ConfigError


# ------------------------------------------------------------------------------------------
# A 2-parameter-tensor problem: loss(w1, w2) = sum((A w1 - b)^2) + sum(w2^4) + w1·w2
# ------------------------------------------------------------------------------------------
A = torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 0.25]], dtype=torch.float64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def problem_loss(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return ((A @ w1 - B) ** 2).sum() + (w2 ** 4).sum() + (w1 * w2).sum()


def init_params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.tensor([0.3, -0.7], dtype=torch.float64)),
            torch.nn.Parameter(torch.tensor([1.1, 0.4], dtype=torch.float64))]


def run_steps(opt: torch.optim.Optimizer, params, steps: int) -> list[torch.Tensor]:
    for _ in range(steps):
        opt.zero_grad()
        problem_loss(*params).backward()
        opt.step()
    return [p.detach().clone() for p in params]


def grads_at(params) -> list[torch.Tensor]:
    ps = [p.detach().clone().requires_grad_(True) for p in params]
    problem_loss(*ps).backward()
    return [p.grad.detach() for p in ps]


# ------------------------------------------------------------------------------------------
# Reference updates written out from SPEC §6.1
# ------------------------------------------------------------------------------------------

def lars_reference(params, steps, lr, momentum, dampening, wd, nesterov, eta):
    ws = [p.detach().clone() for p in params]
    bufs = [None] * len(ws)
    for _ in range(steps):
        gs = grads_at(ws)
        for i, (w, g) in enumerate(zip(ws, gs)):
            wn, gn = w.norm().item(), g.norm().item()
            tau = eta * wn / (gn + wd * wn) if wn > 0 and gn > 0 else 1.0
            d = lr * tau * (g + wd * w)
            if momentum:
                bufs[i] = d.clone() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * d
                d = d + momentum * bufs[i] if nesterov else bufs[i]
            ws[i] = w - d
    return ws


def lamb_reference(params, steps, lr, b1, b2, eps, wd, amsgrad):
    ws = [p.detach().clone() for p in params]
    ms = [torch.zeros_like(w) for w in ws]
    vs = [torch.zeros_like(w) for w in ws]
    vmax = [torch.zeros_like(w) for w in ws]
    for t in range(1, steps + 1):
        gs = grads_at(ws)
        for i, (w, g) in enumerate(zip(ws, gs)):
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            vmax[i] = torch.maximum(vmax[i], vs[i])
            v = vmax[i] if amsgrad else vs[i]
            m_hat = ms[i] / (1 - b1 ** t)
            v_hat = v / (1 - b2 ** t)
            r = m_hat / (v_hat.sqrt() + eps) + wd * w
            wn, rn = w.norm().item(), r.norm().item()
            tau = wn / rn if wn > 0 and rn > 0 else 1.0
            ws[i] = w - lr * tau * r
    return ws


# For every registered optimizer: (config options, reference(params, steps) -> final params)
CASES = {
    "SGD": [
        ({}, lambda p, n: run_steps(torch.optim.SGD(p, lr=0.01), p, n)),
        ({"learning_rate": 0.02, "momentum": 0.9, "weight_decay": 0.01, "dampening": 0.1},
         lambda p, n: run_steps(torch.optim.SGD(p, lr=0.02, momentum=0.9, weight_decay=0.01,
                                                dampening=0.1), p, n)),
        ({"learning_rate": 0.02, "momentum": 0.5, "nesterov": True},
         lambda p, n: run_steps(torch.optim.SGD(p, lr=0.02, momentum=0.5, nesterov=True), p, n)),
    ],
    "Adagrad": [
        ({}, lambda p, n: run_steps(torch.optim.Adagrad(p, lr=0.01), p, n)),
        ({"learning_rate": 0.1, "lr_decay": 0.5, "weight_decay": 0.1},
         lambda p, n: run_steps(torch.optim.Adagrad(p, lr=0.1, lr_decay=0.5, weight_decay=0.1),
                                p, n)),
    ],
    "Adam": [
        ({}, lambda p, n: run_steps(torch.optim.Adam(p, lr=0.01), p, n)),
        ({"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1,
          "amsgrad": True},
         lambda p, n: run_steps(torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6,
                                                 weight_decay=0.1, amsgrad=True), p, n)),
    ],
    "AdamW": [
        # weight_decay default 0 (not torch's 0.01)
        ({}, lambda p, n: run_steps(torch.optim.AdamW(p, lr=0.01, weight_decay=0.0), p, n)),
        ({"learning_rate": 0.05, "beta1": 0.8, "weight_decay": 0.1},
         lambda p, n: run_steps(torch.optim.AdamW(p, lr=0.05, betas=(0.8, 0.999),
                                                  weight_decay=0.1), p, n)),
    ],
    "RMSprop": [
        ({}, lambda p, n: run_steps(torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8), p, n)),
        ({"learning_rate": 0.005, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.01,
          "momentum": 0.5, "centered": True},
         lambda p, n: run_steps(torch.optim.RMSprop(p, lr=0.005, alpha=0.9, eps=1e-6,
                                                    weight_decay=0.01, momentum=0.5,
                                                    centered=True), p, n)),
    ],
    "LARS": [
        ({}, lambda p, n: lars_reference(p, n, 0.01, 0.0, 0.0, 0.0, False, 1e-3)),
        ({"learning_rate": 0.5, "momentum": 0.9, "weight_decay": 0.01, "dampening": 0.1,
          "eta": 0.02},
         lambda p, n: lars_reference(p, n, 0.5, 0.9, 0.1, 0.01, False, 0.02)),
        ({"learning_rate": 0.5, "momentum": 0.9, "nesterov": True, "eta": 0.02},
         lambda p, n: lars_reference(p, n, 0.5, 0.9, 0.0, 0.0, True, 0.02)),
    ],
    "LAMB": [
        ({}, lambda p, n: lamb_reference(p, n, 0.01, 0.9, 0.999, 1e-8, 0.0, False)),
        ({"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1,
          "amsgrad": True},
         lambda p, n: lamb_reference(p, n, 0.05, 0.8, 0.99, 1e-6, 0.1, True)),
    ],
}

# Hessian (L-BFGS) is closure based and tested separately below.
CLOSURE_BASED = {"Hessian"}


def test_every_optimizer_has_a_reference():
    assert set(OPTIMIZERS.names()) == set(CASES) | CLOSURE_BASED


@pytest.mark.parametrize("name,idx", [(n, i) for n in OPTIMIZERS.names() if n in CASES
                                      for i in range(len(CASES[n]))])
def test_steps_match_reference(name, idx):
    options, reference = CASES[name][idx]
    params = init_params()
    built = build_optimizer(OptimizerConfig(name, dict(options)), params)
    assert not built.is_closure_based
    assert built.warnings == []
    got = run_steps(built.optimizer, params, 6)
    want = reference(init_params(), 6)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    # the parameters actually moved
    assert any(not torch.equal(g, p0) for g, p0 in zip(got, init_params()))


def test_lars_lamb_zero_norm_trust_ratio_is_one():
    # w = 0 → τ = 1: plain (momentum-free) SGD step of lr·g
    for name in ("LARS", "LAMB"):
        p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        built = build_optimizer(OptimizerConfig(name, {"learning_rate": 0.1}), [p])
        p.grad = torch.tensor([1.0, -2.0], dtype=torch.float64)
        built.optimizer.step()
        assert torch.isfinite(p).all()
        if name == "LARS":
            torch.testing.assert_close(p.detach(), torch.tensor([-0.1, 0.2], dtype=torch.float64))
        else:  # r = m̂/(√v̂+eps) = sign(g) (up to eps), τ = 1
            torch.testing.assert_close(p.detach(), torch.tensor([-0.1, 0.1], dtype=torch.float64),
                                       rtol=1e-6, atol=1e-7)


def test_hessian_is_lbfgs_with_closure():
    params = init_params()
    options = {"max_iterations": 20, "max_func_eval": 40, "absolute_tolerance": 1e-9,
               "relative_tolerance": 1e-10}
    built = build_optimizer(OptimizerConfig("hessian", options), params)
    assert built.is_closure_based
    opt = built.optimizer
    assert isinstance(opt, torch.optim.LBFGS)
    group = opt.param_groups[0]
    assert (group["max_iter"], group["max_eval"]) == (20, 40)
    assert (group["tolerance_grad"], group["tolerance_change"]) == (1e-9, 1e-10)
    assert group["line_search_fn"] == "strong_wolfe"

    ref_params = init_params()
    ref = torch.optim.LBFGS(ref_params, lr=1.0, max_iter=20, max_eval=40, tolerance_grad=1e-9,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure_for(o, ps):
        def closure():
            o.zero_grad()
            loss = problem_loss(*ps)
            loss.backward()
            return loss
        return closure

    for _ in range(2):
        opt.step(closure_for(opt, params))
        ref.step(closure_for(ref, ref_params))
    for g, w in zip(params, ref_params):
        torch.testing.assert_close(g.detach(), w.detach(), rtol=1e-12, atol=1e-12)
    assert problem_loss(*params).item() < problem_loss(*init_params()).item()


def test_hessian_defaults():
    built = build_optimizer(OptimizerConfig("Hessian", {}), init_params())
    g = built.optimizer.param_groups[0]
    assert (g["max_iter"], g["max_eval"], g["tolerance_grad"], g["tolerance_change"]) == \
        (2000, 4000, 1e-8, 1e-8)


EXPECTED_ROWS = {
    "SGD": ["Type", "Learning rate", "Momentum", "Dampening", "Weight decay", "Nesterov"],
    "Adam": ["Type", "Learning rate", "Beta1", "Beta2", "Weight decay", "Eps", "AMSGrad"],
    "AdamW": ["Type", "Learning rate", "Beta1", "Beta2", "Weight decay", "Eps", "AMSGrad"],
    "RMSprop": ["Type", "Learning rate", "Alpha", "Eps", "Weight decay", "Momentum", "Centered"],
    "Adagrad": ["Type", "Learning rate", "LR decay", "Weight decay"],
    "LARS": ["Type", "Learning rate", "Momentum", "Dampening", "Weight decay", "Nesterov", "Eta"],
    "LAMB": ["Type", "Learning rate", "Beta1", "Beta2", "Weight decay", "Eps", "AMSGrad"],
    "Hessian": ["Type", "Max iterations", "Max func eval", "Abs tolerance", "Rel tolerance"],
}


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_rows_labels(name):
    built = build_optimizer(OptimizerConfig(name.upper(), {}), init_params())
    assert [label for label, _ in built.rows] == EXPECTED_ROWS[name]
    assert built.label_width == 13
    assert built.type == name


def test_adam_rows_values_as_printed():
    built = build_optimizer(OptimizerConfig("adam", {"learning_rate": 1e-4}), init_params())
    assert built.rows == [("Type", "Adam"), ("Learning rate", "0.0001"), ("Beta1", "0.9"),
                          ("Beta2", "0.999"), ("Weight decay", "0"), ("Eps", "1e-08"),
                          ("AMSGrad", "0")]


def test_rmsprop_printed_type_and_bool_rows():
    built = build_optimizer(OptimizerConfig("rmsprop", {"centered": True}), init_params())
    assert built.rows[0] == ("Type", "RMSProp")
    assert ("Centered", "1") in built.rows
    assert built.type == "RMSprop"


def test_adamw_default_weight_decay_zero():
    built = build_optimizer(OptimizerConfig("AdamW", {}), init_params())
    assert built.optimizer.param_groups[0]["weight_decay"] == 0.0


def test_only_trainable_parameters():
    a = torch.nn.Parameter(torch.ones(2))
    b = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    built = build_optimizer(OptimizerConfig("SGD", {}), [a, b])
    assert built.optimizer.param_groups[0]["params"] == [a]
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(OptimizerConfig("SGD", {}), [b])


@pytest.mark.parametrize("options,key", [
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"beta1": 1.0}, "beta1"),
    ({"beta2": -0.5}, "beta2"),
    ({"eps": -1e-8}, "eps"),
    ({"amsgrad": "yes"}, "amsgrad"),
])
def test_invalid_values_name_the_key(options, key):
    with pytest.raises(ConfigError) as info:
        build_optimizer(OptimizerConfig("Adam", options), init_params())
    msg = str(info.value)
    assert f"neural_network.optimizer.{key}:" in msg
    assert "\n" not in msg


def test_invalid_values_with_file_prefix_and_all_reported():
    with pytest.raises(ConfigError) as info:
        build_optimizer(OptimizerConfig("SGD", {"learning_rate": -1, "momentum": -0.5}),
                        init_params(), "cfg.json: neural_network.optimizer")
    msg = str(info.value)
    assert msg.startswith("cfg.json: neural_network.optimizer.learning_rate: must be >= 0")
    assert "neural_network.optimizer.momentum" in msg and "\n" not in msg


def test_nesterov_needs_momentum():
    with pytest.raises(ConfigError, match=r"neural_network\.optimizer\.nesterov"):
        build_optimizer(OptimizerConfig("SGD", {"nesterov": True}), init_params())


def test_hessian_integer_options():
    with pytest.raises(ConfigError, match=r"neural_network\.optimizer\.max_iterations"):
        build_optimizer(OptimizerConfig("Hessian", {"max_iterations": 0}), init_params())
    built = build_optimizer(OptimizerConfig("Hessian", {"max_iterations": 50.0}), init_params())
    assert built.optimizer.param_groups[0]["max_iter"] == 50


def test_unknown_type_did_you_mean():
    with pytest.raises(ConfigError) as info:
        build_optimizer(OptimizerConfig("Adma", {}), init_params())
    msg = str(info.value)
    assert msg.startswith("neural_network.optimizer.type: unknown optimizer 'Adma'")
    assert "Did you mean 'Adam'?" in msg and "\n" not in msg


def test_case_insensitive_lookup():
    for spelling in ("adam", "ADAM", "Adam", "sgd", "lars", "Lamb", "adamw", "RMSPROP"):
        build_optimizer(OptimizerConfig(spelling, {}), init_params())


def test_unknown_keys_are_warnings():
    built = build_optimizer(OptimizerConfig("Adam", {"beta3": 0.1, "learning_rate": 0.1}),
                            init_params())
    assert len(built.warnings) == 1
    w = built.warnings[0]
    assert w.startswith("neural_network.optimizer.beta3: unknown key")
    assert "Did you mean 'beta" in w
    # a key of another optimizer type is unknown for this one
    built = build_optimizer(OptimizerConfig("SGD", {"beta1": 0.9}), init_params())
    assert built.warnings and "beta1" in built.warnings[0]


def test_grad_norm():
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(2, 2))
    c = torch.nn.Parameter(torch.zeros(1))  # no grad
    a.grad = torch.tensor([3.0, 0.0, 4.0])
    b.grad = torch.tensor([[1.0, 2.0], [2.0, 0.0]])
    got = grad_norm([a, b, c])
    assert isinstance(got, torch.Tensor) and got.dim() == 0
    assert got.item() == pytest.approx(math.sqrt(9 + 16 + 1 + 4 + 4))
    assert grad_norm([c]).item() == 0.0
    assert grad_norm(iter([a])).item() == pytest.approx(5.0)
