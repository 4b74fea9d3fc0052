"""Classical reference solvers for the ``--app=pde`` tests (independent of rmldnn_py).

* :func:`solve_poisson` — bilinear / trilinear (Q1) finite elements with ``scipy.sparse`` for
  −∇·(ν∇u) = 0 on the unit square / cube, u = 1 on x = 0, u = 0 on x = 1 (x = first array axis),
  zero flux elsewhere (the natural boundary condition of the weak form). ν is given at the grid
  nodes and interpolated with the element's shape functions. ``quadrature="full"``: 2^D Gauss
  points per element (the classical scheme, exact for the bilinear ν·|∇u|² integrand up to the
  interpolation of ν); ``"reduced"``: one point at the element centre (the discrete energy that
  ``Poisson2D_PDE``/``Poisson3D_PDE`` evaluate, so its solution is the exact minimiser of that
  loss). The element matrices come from shape-function gradients (Hughes, *The Finite Element
  Method*, §3.2), not from the loss's difference formulas.
* :func:`fem_energy` — u^T K u = Σ_elements ∫ ν|∇u|² with the same quadrature.
* :func:`solve_burgers` — the discrete Burgers equations of ``Burgers_PDE`` (backward Euler in time,
  central differences in space) solved step by step with Newton's method (sparse tridiagonal
  Jacobian, ``scipy.sparse.linalg.spsolve``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


# ------------------------------------------------------------------------------------------------
# Poisson: Q1 finite elements


def _element_matrices(h: tuple[float, ...], quadrature: str):
    """``(N, M)``: shape-function values at the quadrature points ``(2^D, Q)`` and the weighted
    gradient products ``(Q, 2^D, 2^D)`` (∫ over the element of ∇N_c·∇N_c' at each point)."""
    D = len(h)
    corners = list(itertools.product((0, 1), repeat=D))        # local node c = (c_1, …, c_D)
    if quadrature == "full":
        g = (0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0))
        points = list(itertools.product(g, repeat=D))
        weights = [1.0 / 2 ** D] * len(points)
    elif quadrature == "reduced":
        points, weights = [(0.5,) * D], [1.0]
    else:
        raise ValueError(quadrature)
    vol = math.prod(h)
    Q, C = len(points), len(corners)
    N = np.zeros((C, Q))
    M = np.zeros((Q, C, C))
    for q, xi in enumerate(points):
        grad = np.zeros((C, D))
        for ci, c in enumerate(corners):
            f = [xi[a] if c[a] else 1.0 - xi[a] for a in range(D)]
            N[ci, q] = math.prod(f)
            for a in range(D):
                others = math.prod(f[b] for b in range(D) if b != a)
                grad[ci, a] = (1.0 if c[a] else -1.0) / h[a] * others
        M[q] = weights[q] * vol * grad @ grad.T
    return corners, N, M


def stiffness(nu: np.ndarray, quadrature: str = "full") -> sp.csr_matrix:
    """Global matrix K with u^T K u = ∫ ν|∇u|² for the nodal field ``nu`` ``(n_1, …, n_D)``."""
    nu = np.asarray(nu, dtype=np.float64)
    shape = nu.shape
    D = nu.ndim
    h = tuple(1.0 / (n - 1) for n in shape)
    corners, N, M = _element_matrices(h, quadrature)
    ids = np.arange(nu.size).reshape(shape)
    corner_ids = np.stack([ids[tuple(slice(c[a], shape[a] - 1 + c[a]) for a in range(D))].ravel()
                           for c in corners], axis=1)            # (cells, 2^D)
    nu_corner = nu.ravel()[corner_ids]                            # (cells, 2^D)
    nu_q = nu_corner @ N                                          # (cells, Q)
    Ke = np.einsum("eq,qij->eij", nu_q, M)                        # (cells, 2^D, 2^D)
    C = len(corners)
    rows = np.repeat(corner_ids, C, axis=1).ravel()
    cols = np.tile(corner_ids, (1, C)).ravel()
    return sp.coo_matrix((Ke.ravel(), (rows, cols)), shape=(nu.size, nu.size)).tocsr()


def solve_poisson(nu: np.ndarray, quadrature: str = "full") -> np.ndarray:
    """The FE solution u ``(n_1, …, n_D)`` (float64) for ν ``(n_1, …, n_D)`` or ``(1, …)``."""
    nu = np.asarray(nu, dtype=np.float64)
    if nu.ndim in (3, 4) and nu.shape[0] == 1:
        nu = nu[0]
    K = stiffness(nu, quadrature)
    u = np.zeros(nu.shape)
    u[0] = 1.0
    fixed = np.zeros(nu.shape, dtype=bool)
    fixed[0] = fixed[-1] = True
    fixed, free = fixed.ravel(), ~fixed.ravel()
    K_ff = K[free][:, free].tocsc()
    rhs = -K[free][:, fixed] @ u.ravel()[fixed]
    sol = u.ravel().copy()
    sol[free] = spla.spsolve(K_ff, rhs)
    return sol.reshape(nu.shape)


def fem_energy(u: np.ndarray, nu: np.ndarray, quadrature: str = "full") -> float:
    """u^T K u = Σ_elements ∫ ν|∇u|² (no ½)."""
    u = np.asarray(u, dtype=np.float64).ravel()
    return float(u @ (stiffness(np.asarray(nu, dtype=np.float64), quadrature) @ u))


def centre_energy(u: np.ndarray, nu: np.ndarray) -> float:
    """Σ_cells ν(centre)·|∇u_h(centre)|²·vol for the multilinear interpolants u_h, ν_h of the nodal
    fields ``u``, ``nu`` ``(n_1, …, n_D)``: the element integral with one-point quadrature,
    vectorised over the cells with the shape-function gradients at the centre
    (∂N_c/∂x_a = (2c_a − 1) / (h_a·2^(D−1)), N_c = 2^−D)."""
    u = np.asarray(u, dtype=np.float64)
    nu = np.asarray(nu, dtype=np.float64)
    shape, D = u.shape, u.ndim
    h = [1.0 / (n - 1) for n in shape]
    grads = [0.0] * D
    nu_c = 0.0
    for c in itertools.product((0, 1), repeat=D):
        sl = tuple(slice(c[a], shape[a] - 1 + c[a]) for a in range(D))
        nu_c = nu_c + nu[sl] / 2 ** D
        for a in range(D):
            grads[a] = grads[a] + u[sl] * (2 * c[a] - 1) / (h[a] * 2 ** (D - 1))
    return float(np.sum(nu_c * sum(g * g for g in grads)) * math.prod(h))


def linear_field(shape: tuple[int, ...]) -> np.ndarray:
    """The trivial field u = 1 − x (x along the first axis) on the nodal grid."""
    x = np.linspace(0.0, 1.0, shape[0])
    return np.broadcast_to((1.0 - x).reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()


def relative_l2(u: np.ndarray, ref: np.ndarray) -> float:
    """‖u − ref‖₂ / ‖ref‖₂ over all grid nodes."""
    return float(np.linalg.norm(np.ravel(u) - np.ravel(ref)) / np.linalg.norm(np.ravel(ref)))


# ------------------------------------------------------------------------------------------------
# Burgers: implicit time stepping with Newton


def solve_burgers(b: np.ndarray, T: int, nu: float, closure: str = "extrapolate",
                  right: np.ndarray | None = None, tol: float = 1e-12,
                  max_iter: int = 50) -> np.ndarray:
    """u ``(T, d)`` with u[0] = b, u[k, 0] = 0 and, for k ≥ 1, 0 < i < d − 1,
    (u[k,i] − u[k−1,i])/Δt + u[k,i]·(u[k,i+1] − u[k,i−1])/(2Δx) − ν(u[k,i+1] − 2u[k,i] +
    u[k,i−1])/Δx² = 0 (Δx = 1/(d − 1), Δt = 1/(T − 1)).

    Those equations leave u[k, d − 1] free (the problem has a boundary condition at x = 0 only);
    ``closure`` adds the outflow equation: ``"extrapolate"`` u[k,d−1] − 2u[k,d−2] + u[k,d−3] = 0,
    or ``"neumann"`` u[k,d−1] − u[k,d−2] = 0, or ``"dirichlet"`` u[k,d−1] = ``right[k]`` (given
    values, e.g. the ones a network chose).
    """
    b = np.asarray(b, dtype=np.float64).ravel()
    d = b.size
    dx, dt = 1.0 / (d - 1), 1.0 / (T - 1)
    u = np.zeros((T, d))
    u[0] = b
    m = d - 1                                       # unknowns u[k, 1 … d−1]
    for k in range(1, T):
        prev = u[k - 1]
        v = prev[1:].copy()                         # initial guess: the previous step
        for _ in range(max_iter):
            full = np.concatenate([[0.0], v])
            c, r, l_ = full[1:-1], full[2:], full[:-2]
            R = (c - prev[1:-1]) / dt + c * (r - l_) / (2 * dx) - nu * (r - 2 * c + l_) / dx ** 2
            if closure == "extrapolate":
                close = full[-1] - 2 * full[-2] + full[-3]
            elif closure == "neumann":
                close = full[-1] - full[-2]
            elif closure == "dirichlet":
                close = full[-1] - float(right[k])
            else:
                raise ValueError(closure)
            F = np.concatenate([R, [close]])
            # Jacobian w.r.t. v (v[j] = u[j + 1]): rows i = 1 … d−2 depend on u[i−1], u[i], u[i+1]
            diag = 1 / dt + (r - l_) / (2 * dx) + 2 * nu / dx ** 2
            upper = c / (2 * dx) - nu / dx ** 2
            lower = -c / (2 * dx) - nu / dx ** 2
            J = sp.lil_matrix((m, m))
            for row in range(d - 2):                # equation at point i = row + 1
                J[row, row] = diag[row]
                J[row, row + 1] = upper[row]
                if row >= 1:
                    J[row, row - 1] = lower[row]
            if closure == "extrapolate":
                J[m - 1, m - 1], J[m - 1, m - 2], J[m - 1, m - 3] = 1.0, -2.0, 1.0
            elif closure == "dirichlet":
                J[m - 1, m - 1] = 1.0
            else:
                J[m - 1, m - 1], J[m - 1, m - 2] = 1.0, -1.0
            step = spla.spsolve(J.tocsc(), -F)
            v += step
            if np.max(np.abs(step)) < tol:
                break
        else:
            raise RuntimeError(f"Newton did not converge at time step {k}")
        u[k, 1:] = v
    return u


def burgers_residual_numpy(u: np.ndarray, nu: float) -> np.ndarray:
    """The residual of :func:`solve_burgers`'s equations at k ≥ 1, 0 < i < d − 1: ``(T−1, d−2)``."""
    T, d = u.shape
    dx, dt = 1.0 / (d - 1), 1.0 / (T - 1)
    out = np.zeros((T - 1, d - 2))
    for k in range(1, T):
        for i in range(1, d - 1):
            out[k - 1, i - 1] = ((u[k, i] - u[k - 1, i]) / dt
                                 + u[k, i] * (u[k, i + 1] - u[k, i - 1]) / (2 * dx)
                                 - nu * (u[k, i + 1] - 2 * u[k, i] + u[k, i - 1]) / dx ** 2)
    return out


def raised_cosine(c: float, d: int) -> np.ndarray:
    """b(x_i) = ½(1 − cos(2π·c·i/d)), i = 0 … d − 1 (SPEC §5.8)."""
    i = np.arange(d, dtype=np.float64)
    return 0.5 * (1.0 - np.cos(2.0 * np.pi * c * i / d))
