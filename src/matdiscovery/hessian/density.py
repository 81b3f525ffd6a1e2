"""Spectral density of a Hessian by stochastic Lanczos quadrature (SLQ).

For a unit probe ``v``, ``m`` Lanczos steps give the tridiagonal ``T = S Θ Sᵀ``; the nodes
``θ_i`` and weights ``τ_i = S_{0i}²`` form a Gauss quadrature of the spectral measure
``Σ_j (vᵀu_j)² δ(λ − λ_j)``, exact for polynomials of degree ≤ 2m−1. Averaging over Rademacher
probes estimates the density ``φ(λ) = (1/n) Σ_j δ(λ − λ_j)``; a Gaussian of width ``σ``
smooths it for plotting. Probes run in lock step (one block product per step).

Deflation (``deflate_steps = m > 0``, as for the trace): ``m`` Lanczos steps from a random start
first capture the outlying eigen-directions ``Q``; their Ritz values enter the density exactly
(weight 1/n each), and SLQ runs on the projected ``P H P`` (``P = I − QQᵀ``) with projected
probes for the other ``n − m`` (weight (n − m)/n). The first moment (the mean eigenvalue,
tr H / n) stays unbiased and loses the outliers' probe variance, and the spectral edge is a
converged Ritz value; the coupling ``β_m`` between ``Q`` and its complement is dropped (a
block-diagonal approximation for the higher moments).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from matdiscovery.hessian.eigen import lanczos
from matdiscovery.hessian.trace import rademacher


@dataclass
class SpectralDensity:
    """Quadrature nodes and weights ``(n_probes, m)`` (weights of each probe sum to 1), the
    operator dimension and the Hessian-vector products spent."""

    nodes: np.ndarray
    weights: np.ndarray
    dim: int
    n_matvecs: int

    def evaluate(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """Gaussian-smoothed density on ``grid``; integrates to 1 over a grid covering the
        spectrum. ``sigma`` defaults to 1% of the node range."""
        grid = np.asarray(grid, dtype=float)
        if sigma is None:
            span = float(self.nodes.max() - self.nodes.min())
            sigma = max(0.01 * span, 1e-12)
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        z = (grid[:, None] - self.nodes.reshape(1, -1)) / sigma
        dens = (np.exp(-0.5 * z**2) * self.weights.reshape(1, -1)).sum(axis=1)
        return dens / (sigma * np.sqrt(2 * np.pi) * self.nodes.shape[0])

    def default_grid(self, n: int = 1000, pad: float = 0.05) -> np.ndarray:
        lo, hi = float(self.nodes.min()), float(self.nodes.max())
        span = max(hi - lo, 1e-12)
        return np.linspace(lo - pad * span, hi + pad * span, n)

    def moment(self, p: int) -> float:
        """Estimate of ``tr(H^p) / dim`` (p = 1: the mean eigenvalue)."""
        return float((self.weights * self.nodes**p).sum(axis=1).mean())

    def trace(self) -> float:
        """SLQ estimate of ``tr(H)``."""
        return self.dim * self.moment(1)


class _Projected:
    """``P H P`` with ``P = I − QᵀQ`` (``Q``: ``(m, n)`` orthonormal rows), sharing ``op``'s counter."""

    def __init__(self, op, Q: torch.Tensor):
        self.op, self.Q = op, Q
        self.dim, self.dtype, self.device = op.dim, op.dtype, op.device

    @property
    def n_matvecs(self) -> int:
        return self.op.n_matvecs

    def project(self, V: torch.Tensor) -> torch.Tensor:
        return V - (V @ self.Q.T) @ self.Q

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.project(self.op.matmat(self.project(V)))


def slq_density(op, n_probes: int = 1, n_steps: int = 100, seed: int = 0, deflate_steps: int = 0) -> SpectralDensity:
    """SLQ spectral density with ``n_probes`` Rademacher probes of ``n_steps`` Lanczos steps each,
    optionally after ``deflate_steps`` steps of Krylov deflation (module docstring)."""
    if n_probes < 1:
        raise ValueError(f"n_probes must be ≥ 1, got {n_probes}")
    if not 0 <= deflate_steps < op.dim:
        raise ValueError(f"deflate_steps must lie in [0, {op.dim}), got {deflate_steps}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    start = op.n_matvecs
    ritz = None
    if deflate_steps > 0:
        first = lanczos(op, deflate_steps, torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.dtype))
        m = int(first.lengths[0])
        ritz = first.ritz(0)[0]
        op = _Projected(op, first.basis[0, :m])
    V = rademacher(n_probes, op.dim, gen, op.dtype).to(op.device)
    if ritz is not None:
        V = op.project(V)
    run = lanczos(op, n_steps, V)
    m = int(run.lengths.max())
    nodes = np.zeros((n_probes, m))
    weights = np.zeros((n_probes, m))
    for i in range(n_probes):
        theta, s = run.ritz(i)
        r = len(theta)
        nodes[i, :r] = theta
        weights[i, :r] = s[0] ** 2
        if r < m:  # a probe that hit an invariant subspace: pad with zero-weight nodes
            nodes[i, r:] = theta[-1]
    if ritz is not None:
        k, n = len(ritz), op.dim
        nodes = np.concatenate([np.tile(ritz, (n_probes, 1)), nodes], axis=1)
        weights = np.concatenate([np.full((n_probes, k), 1.0 / n), weights * (n - k) / n], axis=1)
    return SpectralDensity(nodes, weights, op.dim, op.n_matvecs - start)
