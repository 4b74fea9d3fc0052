"""Random diffusivity maps for the neural Poisson solvers (SPEC §11.10, T-POISSON).

Command line (also ``rmldnn_py.pde.diffusivity.main(argv)``)::

    python -m rmldnn_py.pde.diffusivity --num-samples 16384 --size 64 --dims 3 \\
        --dir ./diffusivity_maps/ [--seed 0] [--workers 4]

writes ``<dir>/diffusivity_<k>.npy``, k = 0 … N−1: float32 arrays of shape ``(1, n, n)`` (2D) or
``(1, n, n, n)`` (3D), channel-first, ready for the ``numpy`` loader (``input_path`` and
``target_path`` of a ``Poisson2D_PDE`` / ``Poisson3D_PDE`` run). The tutorial's spellings
``--num_samples``, ``--output_size`` and ``--cores`` are accepted too.

The family (a Karhunen–Loève expansion of a log-normal field, as the tutorial describes)::

    ν(x) = exp( Σ_{i=1..m} ω_i · Π_{a=1..D} √λ_i · φ_i(x_a) ),     ω_i ~ U[−A, A] (independent)

on the nodal grid x_a = j / (n − 1), j = 0 … n − 1 (array index ``[0, j_1, …, j_D]`` holds
ν(x_{j_1}, …, x_{j_D}); the first spatial axis is x, the axis of the Dirichlet faces). Defaults:
m = 4 terms (``--terms``), A = 3 (``--coef-range``), correlation length ℓ = 0.5 (``--length``).

λ_i and φ_i are the eigenpairs of the one-dimensional exponential covariance kernel
C(s, t) = exp(−|s − t| / ℓ) on [0, 1], i.e. ∫_0^1 C(s, t) φ_i(t) dt = λ_i φ_i(s), solved in
closed form by Ghanem & Spanos, *Stochastic Finite Elements: A Spectral Approach* (Springer 1991,
§2.3.3; also Van Trees, *Detection, Estimation and Modulation Theory I*, 1968):

* w_i = the i-th positive root of (ℓ² w² − 1) · sin w = 2 ℓ w · cos w  (one root in each interval
  ((i − 1)π, iπ); found here with :func:`scipy.optimize.brentq`; for ℓ = 0.5: 1.7207, 4.0575,
  6.8512, 9.8264, …);
* λ_i = 2 ℓ / (1 + ℓ² w_i²);
* φ_i(s) = ℓ w_i cos(w_i s) + sin(w_i s), **not normalised**: ∫_0^1 φ_i² = (1 + ℓ²w_i²)/2
  + (ℓ²w_i² − 1)·sin(2w_i)/(4w_i) + ℓ·sin²(w_i), so with the √λ_i factor every term has an
  amplitude of about √(2ℓ) per axis. This is the scaling of the tutorial's generator, so the maps
  (and the training energies) are statistically those of the tutorial.

The i-th term uses the same eigenpair along every axis (a "diagonal" tensor product). Sample k
draws its coefficients from ``numpy.random.default_rng([seed, k])``, so a map depends only on the
seed and its index, not on the number of worker processes.

``--normalize`` divides every map by its mean. The solution u of −∇·(ν∇u) = 0 with the Dirichlet
conditions does not change when ν is multiplied by a constant, so the maps describe the same
problems; only their energies change: the loss (the mean energy over a batch) then weighs every
map alike instead of being dominated by the maps with the largest ν (the energies of the raw
family span two orders of magnitude), which makes training markedly faster.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from functools import lru_cache, partial
from typing import Optional, Sequence

import numpy as np

__all__ = ["kl_roots", "kl_eigenpairs", "diffusivity_map", "generate", "main"]


@lru_cache(maxsize=None)
def kl_roots(num: int, length: float = 0.5) -> tuple[float, ...]:
    """The first ``num`` positive roots w of (ℓ²w² − 1)·sin w − 2ℓw·cos w = 0 (ℓ = ``length``),
    increasing; the i-th lies in ((i − 1)π, iπ)."""
    from scipy.optimize import brentq

    ell = float(length)

    def f(w: float) -> float:
        return (ell * ell * w * w - 1.0) * math.sin(w) - 2.0 * ell * w * math.cos(w)

    roots = []
    for i in range(1, num + 1):
        lo, hi = (i - 1) * math.pi + 1e-9, i * math.pi
        roots.append(brentq(f, lo, hi, xtol=1e-14, rtol=1e-15, maxiter=200))
    return tuple(roots)


def kl_eigenpairs(num: int, length: float = 0.5):
    """``(w, lam)``: float64 arrays ``(num,)`` of the roots and eigenvalues λ = 2ℓ/(1 + ℓ²w²)."""
    w = np.asarray(kl_roots(num, length), dtype=np.float64)
    return w, 2.0 * length / (1.0 + (length * w) ** 2)


def eigenfunction(w: float, s: np.ndarray, length: float = 0.5) -> np.ndarray:
    """φ(s) = ℓ·w·cos(w·s) + sin(w·s) (not normalised), float64, shape of ``s``."""
    return length * w * np.cos(w * s) + np.sin(w * s)


def diffusivity_map(coefficients: Sequence[float], size: int, dims: int,
                    length: float = 0.5) -> np.ndarray:
    """ν on the nodal grid for the given KL coefficients ω (module docstring).

    Returns:
        float32 array ``(1, size, size)`` (dims = 2) or ``(1, size, size, size)`` (dims = 3).
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3 (got {dims})")
    w, lam = kl_eigenpairs(len(coefficients), length)
    s = np.linspace(0.0, 1.0, size)
    log_nu = np.zeros((size,) * dims)
    for om, wi, li in zip(coefficients, w, lam):
        phi = math.sqrt(li) * eigenfunction(wi, s, length)           # (size,)
        term = phi
        for _ in range(dims - 1):
            term = np.multiply.outer(term, phi)                      # (size,)*dims, axis a ↔ x_a
        log_nu += om * term
    return np.exp(log_nu)[None].astype(np.float32)


def sample_coefficients(seed: int, index: int, terms: int, coef_range: float) -> np.ndarray:
    """ω of sample ``index``: ``terms`` values ~ U[−A, A] from ``default_rng([seed, index])``."""
    rng = np.random.default_rng([int(seed), int(index)])
    return rng.uniform(-coef_range, coef_range, size=terms)


def _write_one(index: int, *, directory: str, size: int, dims: int, seed: int, terms: int,
               coef_range: float, length: float, normalize: bool = False) -> int:
    om = sample_coefficients(seed, index, terms, coef_range)
    arr = diffusivity_map(om, size, dims, length)
    if normalize:
        arr = (arr / arr.astype(np.float64).mean()).astype(np.float32)
    path = os.path.join(directory, f"diffusivity_{index}.npy")
    tmp = path + ".tmp.npy"
    np.save(tmp, arr)
    os.replace(tmp, path)
    return index


def generate(num_samples: int, directory: str, *, size: int = 64, dims: int = 3, seed: int = 0,
             workers: int = 1, terms: int = 4, coef_range: float = 3.0, length: float = 0.5,
             progress: bool = True, start: int = 0, normalize: bool = False) -> list[str]:
    """Write ``diffusivity_<k>.npy`` for k = ``start`` … ``start + num_samples − 1`` into
    ``directory`` (created if needed), in ``workers`` processes; returns the paths in order.
    ``normalize``: divide each map by its mean (module docstring)."""
    os.makedirs(directory, exist_ok=True)
    kl_roots(terms, length)                      # computed once, inherited by forked workers
    job = partial(_write_one, directory=directory, size=size, dims=dims, seed=seed, terms=terms,
                  coef_range=coef_range, length=length, normalize=normalize)
    indices = range(start, start + num_samples)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_samples, unit="map", desc="diffusivity maps", file=sys.stderr)
    try:
        if workers <= 1:
            for k in indices:
                job(k)
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing as mp

            with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
                chunk = max(1, min(64, num_samples // (workers * 8) or 1))
                for _ in pool.imap_unordered(job, indices, chunksize=chunk):
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return [os.path.join(directory, f"diffusivity_{k}.npy") for k in indices]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rmldnn_py.pde.diffusivity",
        description="Write random diffusivity maps nu = exp(KL expansion) as float32 .npy files "
                    "(1, n, n[, n]) for Poisson2D_PDE / Poisson3D_PDE training.")
    p.add_argument("--num-samples", "--num_samples", "-n", dest="num_samples", type=int,
                   required=True, help="number of maps to write")
    p.add_argument("--size", "--output_size", "-s", dest="size", type=int, default=64,
                   help="grid points per axis (default 64)")
    p.add_argument("--dims", "-D", type=int, default=3, choices=(2, 3),
                   help="2 or 3 spatial dimensions (default 3)")
    p.add_argument("--dir", "-d", dest="directory", default="./diffusivity_maps/",
                   help="output directory (default ./diffusivity_maps/)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", "--cores", dest="workers", type=int, default=1,
                   help="worker processes (default 1)")
    p.add_argument("--start", type=int, default=0,
                   help="index of the first map (to add maps to a directory; default 0)")
    p.add_argument("--terms", type=int, default=4, help="KL terms m (default 4)")
    p.add_argument("--coef-range", type=float, default=3.0,
                   help="coefficients are uniform in [-A, A] (default 3)")
    p.add_argument("--length", type=float, default=0.5, help="correlation length (default 0.5)")
    p.add_argument("--normalize", action="store_true",
                   help="divide every map by its mean (same solutions, comparable energies)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing diffusivity_<k>.npy files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit code (2 for invalid arguments)."""
    p = _parser()
    a = p.parse_args(argv)
    for name, value, low in (("--num-samples", a.num_samples, 1), ("--size", a.size, 2),
                             ("--workers", a.workers, 1), ("--terms", a.terms, 1),
                             ("--start", a.start, 0)):
        if value < low:
            p.error(f"{name} must be >= {low} (got {value})")
    if not a.coef_range >= 0 or not math.isfinite(a.coef_range):
        p.error(f"--coef-range must be a finite number >= 0 (got {a.coef_range})")
    if not a.length > 0 or not math.isfinite(a.length):
        p.error(f"--length must be > 0 (got {a.length})")
    if os.path.exists(a.directory) and not os.path.isdir(a.directory):
        p.error(f"--dir {a.directory}: exists and is not a directory")
    if not a.overwrite:
        clash = [k for k in (a.start, a.start + a.num_samples - 1)
                 if os.path.exists(os.path.join(a.directory, f"diffusivity_{k}.npy"))]
        if clash:
            p.error(f"--dir {a.directory}: diffusivity_{clash[0]}.npy exists (use --overwrite, "
                    "or --start to add maps)")
    try:
        paths = generate(a.num_samples, a.directory, size=a.size, dims=a.dims, seed=a.seed,
                         workers=a.workers, terms=a.terms, coef_range=a.coef_range,
                         length=a.length, progress=not a.no_progress, start=a.start,
                         normalize=a.normalize)
    except OSError as exc:
        sys.stderr.write(f"diffusivity: error: {exc}\n")
        return 1
    shape = (1,) + (a.size,) * a.dims
    sys.stdout.write(f"Wrote {len(paths)} diffusivity maps of shape {shape} (float32) to "
                     f"{a.directory}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
