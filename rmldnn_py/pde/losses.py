"""The PDE losses of ``--app=pde`` (SPEC §8.2): ``Poisson2D_PDE``, ``Poisson3D_PDE``,
``Burgers_PDE``. Importing this module registers them in
:data:`rmldnn_py.engine.losses.LOSSES`.

Tensors are channel-first. The formulas (SPEC §8.2, proposals [P] of the specification, since the
original documents only the equations and boundary conditions):

**Poisson** −∇·(ν∇u) = 0 on the unit square / cube, u = 1 on the face x = 0 and u = 0 on the face
x = 1 (x = the first spatial axis, dim 2 of the batch), zero normal flux elsewhere. The network
output u ``(N, 1, n_1, …, n_D)`` gets the Dirichlet values by overwriting its first plane along x
with 1 and its last with 0 (:func:`impose_dirichlet`); ν ``(N, 1, n_1, …, n_D)`` is the target.
On the nodal grid with spacing h_a = 1/(n_a − 1) every cell (2^D corners) contributes
ν̄·|∇u|²·Π h_a, where ν̄ is the mean of ν over the cell's corners and ∂u/∂x_a the mean of the
forward differences (u[.., j_a + 1, ..] − u[.., j_a, ..])/h_a over the cell's 2^(D−1) edges
parallel to axis a. The loss is the mean over the samples of the energy Σ_cells (no ½ factor,
T-POISSON: L = (1/N) Σ ∫ ν|∇u|²). This energy is exactly the one of bilinear / trilinear (Q1)
finite elements evaluated with one-point (cell-centre) quadrature, ν interpolated from the nodes.

**Burgers** u_t + u·u_x = ν·u_xx on x, t ∈ [0, 1], u(x, 0) = b(x), u(0, t) = 0. Network input b
``(N, 1, d)``, output u ``(N, 1, T, d)`` (row k = time step k), Δx = 1/(d − 1), Δt = 1/(T − 1).
Residual at k ≥ 1, 0 < i < d − 1 (backward Euler in time, central differences in space):
R = (u[k,i] − u[k−1,i])/Δt + u[k,i]·(u[k,i+1] − u[k,i−1])/(2Δx) − ν·(u[k,i+1] − 2u[k,i] +
u[k,i−1])/Δx²; loss = mean(R²) + β·[mean_i (u[0,i] − b_i)² + mean_k u[k,0]²], every mean over the
batch too (ν = ``diffusion_coeff``, β = ``boundary_factor``). The target of a ``pde`` generator
batch is the condition b itself.
"""

from __future__ import annotations

import math

import torch

from ..engine.losses import LOSSES, BuiltLoss
from ..errors import DataError
from ..log import fmt_g

__all__ = ["PoissonLoss", "BurgersLoss", "impose_dirichlet", "poisson_energy",
           "burgers_residual", "burgers_terms"]


# ---------------------------------------------------------------------------------------------
# Poisson


def impose_dirichlet(u: torch.Tensor) -> torch.Tensor:
    """``u`` ``(N, 1, n_1, …)`` with its first plane along dim 2 set to 1 and its last to 0 (a
    new tensor; differentiable with respect to the interior values)."""
    n = u.shape[2]
    first = torch.ones_like(u.narrow(2, 0, 1))
    last = torch.zeros_like(u.narrow(2, 0, 1))
    return torch.cat([first, u.narrow(2, 1, n - 2), last], dim=2)


def _pair_mean(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of neighbours along ``dim``: ``(t[.., :-1, ..] + t[.., 1:, ..]) / 2``."""
    n = t.shape[dim]
    return 0.5 * (t.narrow(dim, 0, n - 1) + t.narrow(dim, 1, n - 1))


def poisson_energy(u: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """Per-sample discrete energy Σ_cells ν̄·|∇u|²·Π h_a (module docstring).

    Args:
        u: ``(N, 1, n_1, …, n_D)`` field (Dirichlet values already imposed, if wanted).
        nu: ``(N, 1, n_1, …, n_D)`` diffusivity at the grid nodes.

    Returns:
        ``(N,)`` energies, dtype of ``u``.
    """
    dims = list(range(2, u.dim()))
    h = [1.0 / (u.shape[d] - 1) for d in dims]
    nubar = nu
    for d in dims:
        nubar = _pair_mean(nubar, d)                 # (N, 1, n_1 − 1, …): mean of 2^D corners
    g2 = None
    for a, d in enumerate(dims):
        g = torch.diff(u, dim=d) / h[a]             # forward differences on the edges ∥ axis a
        for e in dims:
            if e != d:
                g = _pair_mean(g, e)                 # mean over the cell's 2^(D−1) parallel edges
        g2 = g * g if g2 is None else g2 + g * g
    return (nubar * g2).sum(dim=[1] + dims) * math.prod(h)


class PoissonLoss(BuiltLoss):
    """``Poisson2D_PDE`` / ``Poisson3D_PDE``: mean over the batch of :func:`poisson_energy` of the
    Dirichlet-imposed output, ν read from the target (module docstring). No accuracy."""

    has_accuracy = False

    def __init__(self, where: str, dims: int, **kw) -> None:
        super().__init__(where, **kw)
        self.dims = dims
        self.name = f"Poisson{dims}D_PDE"
        self.function_label = f"Poisson{dims}D PDE"

    def check_shapes(self, output_shape: tuple, nu_shape: tuple) -> None:
        """Check a batch's output ``(N, 1, *S)`` against ν ``(N, 1, *S)`` (``None`` entries of
        an unknown size are skipped). Raises DataError naming the loss."""
        want = 2 + self.dims
        what = f"{self.where}.function: {self.name}"
        if len(output_shape) != want:
            raise DataError(f"{what}: the network output has shape {_shape(output_shape)} but a "
                            f"{self.dims}D solution field is (N, 1{', n' * self.dims})"
                            + _hint(len(output_shape) - 2, self.dims))
        if output_shape[1] not in (None, 1):
            raise DataError(f"{what}: the network output has {output_shape[1]} channels; the "
                            f"solution field u has 1 (output shape {_shape(output_shape)})")
        if len(nu_shape) != want or nu_shape[1] not in (None, 1):
            raise DataError(f"{what}: the diffusivity ν (the targets) has shape "
                            f"{_shape(nu_shape)}, expected (N, 1{', n' * self.dims})"
                            + _hint(len(nu_shape) - 2, self.dims))
        for a, (o, v) in enumerate(zip(output_shape[2:], nu_shape[2:])):
            if o is not None and v is not None and o != v:
                raise DataError(f"{what}: the network output {_shape(output_shape)} and the "
                                f"diffusivity ν {_shape(nu_shape)} differ in spatial shape")
            if o is not None and o < 2:
                raise DataError(f"{what}: spatial axis {a} of the output has {o} point(s); "
                                "at least 2 are needed")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.check_shapes(tuple(output.shape), tuple(target.shape))
        u = impose_dirichlet(output)
        return poisson_energy(u, target.to(output.dtype)).mean()


def _shape(s: tuple) -> str:
    return "(" + ", ".join("N" if i == 0 else ("?" if v is None else str(v))
                           for i, v in enumerate(s)) + ")"


def _hint(data_dims: int, loss_dims: int) -> str:
    if data_dims in (2, 3) and data_dims != loss_dims:
        return f": {data_dims}D data needs Poisson{data_dims}D_PDE"
    return ""


# ---------------------------------------------------------------------------------------------
# Burgers


def burgers_residual(u: torch.Tensor, nu: float) -> torch.Tensor:
    """The discrete residual R (module docstring) of ``u`` ``(N, T, d)`` at the interior points:
    ``(N, T − 1, d − 2)``, entry ``[n, k − 1, i − 1]`` = R at time step k, point i."""
    T, d = u.shape[-2], u.shape[-1]
    dx, dt = 1.0 / (d - 1), 1.0 / (T - 1)
    uk = u[:, 1:, 1:-1]
    right, left = u[:, 1:, 2:], u[:, 1:, :-2]
    ut = (uk - u[:, :-1, 1:-1]) / dt
    ux = (right - left) / (2.0 * dx)
    uxx = (right - 2.0 * uk + left) / (dx * dx)
    return ut + uk * ux - nu * uxx


def burgers_terms(u: torch.Tensor, b: torch.Tensor, nu: float) -> tuple[torch.Tensor, ...]:
    """``(mean R², mean_i (u[0,i] − b_i)², mean_k u[k,0]²)`` for u ``(N, T, d)``, b ``(N, d)``
    (means over the batch too)."""
    r = burgers_residual(u, nu)
    return (r * r).mean(), ((u[:, 0, :] - b) ** 2).mean(), (u[:, :, 0] ** 2).mean()


class BurgersLoss(BuiltLoss):
    """``Burgers_PDE`` (module docstring): output ``(N, 1, T, d)``, target = the initial
    condition b ``(N, 1, d)``. No accuracy."""

    name = "Burgers_PDE"
    function_label = "Burgers PDE"
    has_accuracy = False

    def __init__(self, where: str, *, diffusion_coeff: float = 0.0, boundary_factor: float = 1.0,
                 **kw) -> None:
        super().__init__(where, **kw)
        self.diffusion_coeff = diffusion_coeff
        self.boundary_factor = boundary_factor

    def extra_rows(self):
        return [("Diffusion coeff", fmt_g(self.diffusion_coeff)),
                ("Boundary factor", fmt_g(self.boundary_factor))]

    def check_shapes(self, output_shape: tuple, b_shape: tuple) -> None:
        """Output ``(N, 1, T, d)`` with T ≥ 2, d ≥ 3, against b ``(N, 1, d)``; DataError."""
        what = f"{self.where}.function: Burgers_PDE"
        if len(output_shape) != 4 or output_shape[1] not in (None, 1):
            raise DataError(f"{what}: the network output has shape {_shape(output_shape)}, "
                            "expected (N, 1, T, d): one channel, T time steps of the d points")
        if len(b_shape) != 3 or b_shape[1] != 1:
            raise DataError(f"{what}: the initial conditions have shape {_shape(b_shape)}, "
                            "expected (N, 1, d) (data type 'pde')")
        T, d = output_shape[2], output_shape[3]
        if d is not None and d != b_shape[2]:
            raise DataError(f"{what}: the network output has {d} points in x "
                            f"{_shape(output_shape)} but domain_size is {b_shape[2]}")
        if (T is not None and T < 2) or (d is not None and d < 3):
            raise DataError(f"{what}: the network output {_shape(output_shape)} needs at least "
                            "2 time steps and 3 points in x")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.check_shapes(tuple(output.shape), tuple(target.shape))
        res, init, left = burgers_terms(output[:, 0], target[:, 0].to(output.dtype),
                                        self.diffusion_coeff)
        return res + self.boundary_factor * (init + left)


# ---------------------------------------------------------------------------------------------
# registration


def _poisson(dims: int):
    def build(reader, where: str, app):
        return PoissonLoss(where, dims)
    return build


def _burgers(reader, where: str, app):
    return BurgersLoss(where, diffusion_coeff=reader.number("diffusion_coeff", 0.0, lo=0.0),
                       boundary_factor=reader.number("boundary_factor", 1.0, lo=0.0))


for _name, _builder in (("Poisson2D_PDE", _poisson(2)), ("Poisson3D_PDE", _poisson(3)),
                        ("Burgers_PDE", _burgers)):
    if _name.lower() not in {n.lower() for n in LOSSES.names()}:
        LOSSES.register(_name, _builder)
