"""PDE losses (SPEC §8.2): ``Poisson2D_PDE``, ``Poisson3D_PDE``, ``Burgers_PDE``, and the
diffusivity-map generator (SPEC §11.10).

References: closed forms (u = 1 − x), an explicit cell-by-cell NumPy loop, the Q1 finite-element
stiffness matrix of ``tests/pde_reference.py`` (assembled from shape-function gradients), a hand
computation of the Burgers residual, ``torch.autograd.gradcheck``, and the Fredholm eigen equation
of the exponential kernel evaluated with ``scipy.integrate.quad``.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import pde_reference as R
from conftest import REPO
from rmldnn_py.config.types import LossConfig
from rmldnn_py.engine.losses import LOSSES, build_loss
from rmldnn_py.errors import ConfigError, DataError
from rmldnn_py.pde import diffusivity as dv
from rmldnn_py.pde.losses import (BurgersLoss, PoissonLoss, burgers_residual, impose_dirichlet,
                                  poisson_energy)


def make(function: str, **options):
    return build_loss(LossConfig(function, options), where="cfg.json: neural_network.loss",
                      app="pde")


def linear(shape, dtype=torch.float64):
    """u = 1 − x along the first spatial axis, as (1, 1, *shape)."""
    x = torch.linspace(0.0, 1.0, shape[0], dtype=dtype)
    return (1.0 - x).reshape((1, 1, -1) + (1,) * (len(shape) - 1)).expand((1, 1) + tuple(shape))


# ------------------------------------------------------------------------------------------------
# Poisson: closed forms


@pytest.mark.parametrize("shape", [(5, 5), (9, 4), (2, 3), (4, 4, 4), (6, 3, 5)])
@pytest.mark.parametrize("nu", [1.0, 0.37, 12.5])
def test_linear_field_energy_equals_nu(shape, nu):
    """∫ ν|∇(1 − x)|² over the unit square/cube = ν, exactly for the discrete energy too."""
    u = linear(shape)
    nus = torch.full_like(u, nu)
    assert poisson_energy(u, nus).item() == pytest.approx(nu, rel=1e-13)
    loss = make(f"Poisson{len(shape)}D_PDE")
    # the loss imposes the planes itself: any values on them give the same energy
    scrambled = u.clone()
    scrambled[:, :, 0] = -3.0
    scrambled[:, :, -1] = 7.0
    assert loss(scrambled, nus).item() == pytest.approx(nu, rel=1e-13)
    # float32 as the network produces it
    assert loss(scrambled.float(), nus.float()).item() == pytest.approx(nu, rel=1e-6)


def test_constant_fields_have_zero_energy_and_batch_mean():
    u = torch.full((3, 1, 4, 5), 0.4, dtype=torch.float64)
    assert torch.all(poisson_energy(u, torch.rand_like(u) + 0.5) == 0)
    # loss = mean over the batch of the per-sample energies
    nu = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64).view(3, 1, 1, 1).expand(3, 1, 4, 5)
    lin = linear((4, 5)).expand(3, 1, 4, 5)
    assert make("Poisson2D_PDE")(lin, nu).item() == pytest.approx((1 + 2 + 4) / 3, rel=1e-13)


def test_impose_dirichlet():
    u = torch.rand(2, 1, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    v = impose_dirichlet(u)
    assert torch.all(v[:, :, 0] == 1) and torch.all(v[:, :, -1] == 0)
    assert torch.equal(v[:, :, 1:-1], u[:, :, 1:-1])
    v.sum().backward()
    assert torch.all(u.grad[:, :, 0] == 0) and torch.all(u.grad[:, :, -1] == 0)
    assert torch.all(u.grad[:, :, 1:-1] == 1)


# ------------------------------------------------------------------------------------------------
# Poisson: independent implementations


def energy_loops(u: np.ndarray, nu: np.ndarray) -> float:
    """SPEC §8.2 energy by explicit loops over cells, corners and edges (one sample, no batch)."""
    shape = u.shape
    D = len(shape)
    h = [1.0 / (n - 1) for n in shape]
    total = 0.0
    for cell in itertools.product(*[range(n - 1) for n in shape]):
        corners = [tuple(c + o for c, o in zip(cell, off))
                   for off in itertools.product((0, 1), repeat=D)]
        nubar = sum(nu[c] for c in corners) / len(corners)
        grad2 = 0.0
        for a in range(D):
            diffs = []
            for off in itertools.product((0, 1), repeat=D - 1):   # the edges parallel to axis a
                lo = list(cell)
                k = 0
                for b in range(D):
                    if b != a:
                        lo[b] += off[k]
                        k += 1
                hi = list(lo)
                hi[a] += 1
                diffs.append((u[tuple(hi)] - u[tuple(lo)]) / h[a])
            grad2 += (sum(diffs) / len(diffs)) ** 2
        total += nubar * grad2 * math.prod(h)
    return total


@pytest.mark.parametrize("shape", [(5, 4), (3, 7), (4, 3, 5), (3, 3, 3)])
def test_energy_matches_numpy_loops_and_fem(shape):
    rng = np.random.default_rng(sum(shape))
    u = rng.normal(size=(2, 1) + shape)
    nu = np.exp(rng.normal(size=(2, 1) + shape))
    got = poisson_energy(torch.tensor(u), torch.tensor(nu)).numpy()
    for s in range(2):
        assert got[s] == pytest.approx(energy_loops(u[s, 0], nu[s, 0]), rel=1e-12)
        # Q1 finite elements with one-point quadrature (tests/pde_reference.py): u^T K u
        assert got[s] == pytest.approx(R.fem_energy(u[s, 0], nu[s, 0], "reduced"), rel=1e-10)
    loss = make(f"Poisson{len(shape)}D_PDE")
    imposed = u.copy()
    imposed[:, :, 0], imposed[:, :, -1] = 1.0, 0.0
    want = np.mean([energy_loops(imposed[s, 0], nu[s, 0]) for s in range(2)])
    assert loss(torch.tensor(u), torch.tensor(nu)).item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("shape", [(9, 7), (5, 4, 6)])
def test_fem_minimiser_is_stationary_point_of_the_loss(shape):
    """The FE solution with the loss's quadrature minimises the loss: zero gradient in the
    interior, lower energy than perturbed fields."""
    rng = np.random.default_rng(3)
    nu = np.exp(rng.normal(size=shape))
    u = R.solve_poisson(nu, "reduced")
    ut = torch.tensor(u)[None, None].requires_grad_(True)
    nut = torch.tensor(nu)[None, None]
    loss = make(f"Poisson{len(shape)}D_PDE")
    value = loss(ut, nut)
    value.backward()
    g = ut.grad[0, 0, 1:-1]
    assert g.abs().max().item() < 1e-10 * max(1.0, value.item())
    for _ in range(3):
        bump = torch.tensor(rng.normal(size=shape) * 1e-2)[None, None]
        assert loss(ut.detach() + bump, nut).item() > value.item()


def test_poisson_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    for dims, shape in ((2, (2, 1, 5, 4)), (3, (2, 1, 4, 3, 3))):
        loss = make(f"Poisson{dims}D_PDE")
        u = torch.rand(shape, generator=g, dtype=torch.float64, requires_grad=True)
        nu = (torch.rand(shape, generator=g, dtype=torch.float64) + 0.1).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, b: loss(a, b), (u, nu))


# ------------------------------------------------------------------------------------------------
# Poisson: shape errors


@pytest.mark.parametrize("dims,out,nu,match", [
    (2, (2, 1, 4, 4, 4), (2, 1, 4, 4, 4), r"Poisson3D_PDE"),          # 2D loss on 3D data
    (3, (2, 1, 4, 4), (2, 1, 4, 4), r"Poisson2D_PDE"),                # 3D loss on 2D data
    (2, (2, 3, 4, 4), (2, 1, 4, 4), r"3 channels"),                   # several output channels
    (2, (2, 1, 4, 4), (2, 1, 5, 4), r"differ in spatial shape"),
    (2, (2, 1, 4, 4), (2, 2, 4, 4), r"the diffusivity"),
])
def test_poisson_shape_errors(dims, out, nu, match):
    loss = make(f"Poisson{dims}D_PDE")
    with pytest.raises(DataError, match=match) as e:
        loss(torch.rand(out), torch.rand(nu) + 1)
    assert "cfg.json: neural_network.loss.function" in str(e.value)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------
# Burgers


def test_burgers_residual_by_hand():
    """A 3×4 grid (T = 3 time steps, d = 4 points): Δx = 1/3, Δt = 1/2, ν = 0.1."""
    u = torch.tensor([[0.0, 0.5, 1.0, 0.5],
                      [0.0, 0.4, 0.8, 0.6],
                      [0.1, 0.3, 0.7, 0.6]], dtype=torch.float64)
    # R[k,i] = (u[k,i] − u[k−1,i])/Δt + u[k,i](u[k,i+1] − u[k,i−1])/(2Δx)
    #          − ν(u[k,i+1] − 2u[k,i] + u[k,i−1])/Δx²,  1/Δt = 2, 1/(2Δx) = 1.5, ν/Δx² = 0.9
    r11 = (0.4 - 0.5) * 2 + 0.4 * (0.8 - 0.0) * 1.5 - 0.9 * (0.8 - 0.8 + 0.0)     # 0.28
    r12 = (0.8 - 1.0) * 2 + 0.8 * (0.6 - 0.4) * 1.5 - 0.9 * (0.6 - 1.6 + 0.4)     # 0.38
    r21 = (0.3 - 0.4) * 2 + 0.3 * (0.7 - 0.1) * 1.5 - 0.9 * (0.7 - 0.6 + 0.1)     # -0.11
    r22 = (0.7 - 0.8) * 2 + 0.7 * (0.6 - 0.3) * 1.5 - 0.9 * (0.6 - 1.4 + 0.3)     # 0.565
    assert [r11, r12, r21, r22] == pytest.approx([0.28, 0.38, -0.11, 0.565], abs=1e-12)
    got = burgers_residual(u[None], 0.1)[0]
    assert got.shape == (2, 2)
    assert got.flatten().tolist() == pytest.approx([r11, r12, r21, r22], abs=1e-12)
    np.testing.assert_allclose(got.numpy(), R.burgers_residual_numpy(u.numpy(), 0.1), atol=1e-12)
    # loss = mean R² + β·(mean_i (u[0,i] − b_i)² + mean_k u[k,0]²)
    b = torch.tensor([0.0, 0.6, 1.0, 0.2], dtype=torch.float64)
    init = ((0.0) ** 2 + 0.1 ** 2 + 0.0 ** 2 + 0.3 ** 2) / 4
    left = (0.0 ** 2 + 0.0 ** 2 + 0.1 ** 2) / 3
    mse_r = (r11 ** 2 + r12 ** 2 + r21 ** 2 + r22 ** 2) / 4
    loss = make("Burgers_PDE", diffusion_coeff=0.1, boundary_factor=64)
    got_loss = loss(u.view(1, 1, 3, 4), b.view(1, 1, 4)).item()
    assert got_loss == pytest.approx(mse_r + 64 * (init + left), rel=1e-12)
    # the batch mean: a second, different sample
    u2 = torch.zeros(1, 1, 3, 4, dtype=torch.float64)
    both = loss(torch.cat([u.view(1, 1, 3, 4), u2]), torch.cat([b.view(1, 1, 4),
                                                                 torch.zeros(1, 1, 4).double()]))
    assert both.item() == pytest.approx(got_loss / 2, rel=1e-12)


def test_burgers_exact_solution_of_discrete_equations_has_zero_residual():
    b = R.raised_cosine(1.0, 16)
    u = R.solve_burgers(b, 9, 0.05)
    loss = make("Burgers_PDE", diffusion_coeff=0.05, boundary_factor=10)
    value = loss(torch.tensor(u)[None, None], torch.tensor(b)[None, None]).item()
    assert value < 1e-20


def test_burgers_gradcheck_float64():
    loss = make("Burgers_PDE", diffusion_coeff=0.02, boundary_factor=3)
    g = torch.Generator().manual_seed(1)
    u = torch.rand(2, 1, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.rand(2, 1, 6, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: loss(a, b), (u,))


def test_burgers_rows_options_and_errors():
    loss = make("burgers_pde", diffusion_coeff=0.01, boundary_factor=64)
    assert isinstance(loss, BurgersLoss) and loss.name == "Burgers_PDE"
    assert loss.rows == [("Function", "Burgers PDE"), ("Diffusion coeff", "0.01"),
                         ("Boundary factor", "64")]
    assert loss.make_metric("dense") is None
    default = make("Burgers_PDE")
    assert (default.diffusion_coeff, default.boundary_factor) == (0.0, 1.0)
    with pytest.raises(ConfigError, match=r"neural_network\.loss\.diffusion_coeff: must be >= 0"):
        make("Burgers_PDE", diffusion_coeff=-1)
    with pytest.raises(DataError, match=r"domain_size is 8"):
        loss(torch.rand(2, 1, 5, 6), torch.rand(2, 1, 8))
    with pytest.raises(DataError, match=r"expected \(N, 1, T, d\)"):
        loss(torch.rand(2, 2, 5, 8), torch.rand(2, 1, 8))


def test_registry_rows_and_app_checks():
    for name in ("Poisson2D_PDE", "Poisson3D_PDE", "Burgers_PDE"):
        assert LOSSES.canonical(name.lower()) == name
        with pytest.raises(ConfigError, match=r"requires --app=pde"):
            build_loss(LossConfig(name, {}), app="dnn")
    p = make("poisson3d_pde")
    assert isinstance(p, PoissonLoss) and p.rows == [("Function", "Poisson3D PDE")]
    assert p.make_metric("dense") is None


# ------------------------------------------------------------------------------------------------
# diffusivity maps (Karhunen–Loève family)


@pytest.mark.parametrize("length", [0.5, 0.2, 1.0])
def test_kl_eigenpairs_solve_the_fredholm_equation(length):
    """∫_0^1 exp(−|s − t|/ℓ) φ_i(t) dt = λ_i φ_i(s) and the φ_i are orthogonal."""
    from scipy.integrate import quad

    w, lam = dv.kl_eigenpairs(5, length)
    for i in range(5):
        assert (i) * math.pi < w[i] < (i + 1) * math.pi
        for s in (0.0, 0.23, 0.61, 1.0):
            lhs = (quad(lambda t: math.exp(-(s - t) / length) * dv.eigenfunction(w[i], t, length),
                        0, s)[0] if s > 0 else 0.0)
            lhs += quad(lambda t: math.exp(-(t - s) / length) * dv.eigenfunction(w[i], t, length),
                        s, 1)[0]
            assert lhs == pytest.approx(lam[i] * dv.eigenfunction(w[i], s, length),
                                        rel=1e-7, abs=1e-9)
    for i in range(5):
        for j in range(i + 1, 5):
            dot = quad(lambda t: dv.eigenfunction(w[i], t, length) *
                       dv.eigenfunction(w[j], t, length), 0, 1)[0]
            assert abs(dot) < 1e-8


def test_diffusivity_map_formula():
    om = np.array([1.5, -2.0, 0.5, 3.0])
    nu = dv.diffusivity_map(om, 9, 3)
    assert nu.shape == (1, 9, 9, 9) and nu.dtype == np.float32
    w, lam = dv.kl_eigenpairs(4, 0.5)
    for (i, j, k) in ((0, 0, 0), (8, 3, 1), (2, 7, 5)):
        x, y, z = i / 8, j / 8, k / 8
        log_nu = sum(om[m] * lam[m] ** 1.5 * (0.5 * w[m] * math.cos(w[m] * x) + math.sin(w[m] * x))
                     * (0.5 * w[m] * math.cos(w[m] * y) + math.sin(w[m] * y))
                     * (0.5 * w[m] * math.cos(w[m] * z) + math.sin(w[m] * z)) for m in range(4))
        assert nu[0, i, j, k] == pytest.approx(math.exp(log_nu), rel=1e-6)
    assert dv.diffusivity_map(om, 7, 2).shape == (1, 7, 7)


def test_diffusivity_cli(tmp_path):
    """Files, shapes, determinism (independent of the worker count), coefficient range."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "rmldnn_py.pde.diffusivity", "--num-samples", "6",
                          "--size", "8", "--dims", "3", "--dir", str(tmp_path / "a"), "--seed",
                          "5", "--workers", "2"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "Wrote 6 diffusivity maps of shape (1, 8, 8, 8)" in out.stdout
    assert "6/6" in out.stderr                                   # the tqdm progress bar
    dv.main(["--num_samples", "6", "--output_size", "8", "--dims", "3", "--dir",
             str(tmp_path / "b"), "--seed", "5", "--cores", "1", "--no-progress"])
    for k in range(6):
        a = np.load(tmp_path / "a" / f"diffusivity_{k}.npy")
        assert a.shape == (1, 8, 8, 8) and a.dtype == np.float32 and np.all(a > 0)
        np.testing.assert_array_equal(a, np.load(tmp_path / "b" / f"diffusivity_{k}.npy"))
        om = dv.sample_coefficients(5, k, 4, 3.0)
        assert np.all(np.abs(om) <= 3.0)
        np.testing.assert_array_equal(a, dv.diffusivity_map(om, 8, 3))
    a0 = np.load(tmp_path / "a" / "diffusivity_0.npy")
    assert not np.array_equal(a0, np.load(tmp_path / "a" / "diffusivity_1.npy"))
    # an existing file is not overwritten silently; bad arguments exit 2 with one message
    again = subprocess.run([sys.executable, "-m", "rmldnn_py.pde.diffusivity", "--num-samples",
                            "2", "--size", "8", "--dir", str(tmp_path / "a")],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 2 and "diffusivity_0.npy exists" in again.stderr
    with pytest.raises(SystemExit) as e:
        dv.main(["--num-samples", "0", "--dir", str(tmp_path / "c")])
    assert e.value.code == 2
