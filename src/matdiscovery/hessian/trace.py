"""Hutchinson's stochastic trace estimator with a confidence interval.

``tr(H) = E[zᵀ H z]`` for Rademacher ``z`` (±1 entries). Probes are drawn from a seeded
generator and pushed through the operator in blocks.
The interval is Student-t on the probe samples: ``mean ± t_{n-1} · s / √n``.

With ``deflate_steps = m > 0`` (a Hutch++-style variance reduction), ``m`` Lanczos steps first
build an orthonormal Krylov basis ``Q`` that captures the outlying eigen-directions; then exactly
``tr(H) = tr(QᵀHQ) + tr(PHP)`` with ``P = I − QQᵀ``, where ``tr(QᵀHQ) = Σ α_j`` (the Lanczos
diagonal) is computed exactly and only ``tr(PHP)`` is estimated from projected probes ``Pz``.
NN Hessians have a few large outliers, so the variance drops by orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats


@dataclass
class TraceResult:
    """Trace estimate, its standard error, the ``confidence`` interval ``(low, high)``, the
    per-probe samples ``zᵀHz`` and the Hessian-vector products spent."""

    estimate: float
    stderr: float
    ci_low: float
    ci_high: float
    confidence: float
    samples: np.ndarray
    n_matvecs: int

    def contains(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


def rademacher(n: int, dim: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """``(n, dim)`` tensor of independent ±1 entries."""
    return (torch.randint(0, 2, (n, dim), generator=generator) * 2 - 1).to(dtype)


def hutchinson_trace(
    op, n_probes: int = 100, tol: float | None = None, block: int = 8, seed: int = 0,
    confidence: float = 0.95, min_probes: int = 8, deflate_steps: int = 0,
    stderr_target: float | None = None,
) -> TraceResult:
    """Estimate ``tr(H)`` with up to ``n_probes`` Rademacher probes.

    With ``tol``, stops early once the relative standard error ``s/(√n |mean|)`` is below
    ``tol`` (after at least ``min_probes``; checked after each block of ``block`` probes), or
    with ``stderr_target`` once the absolute standard error is below it. ``deflate_steps``:
    Krylov deflation (see the module docstring); its products count in ``n_matvecs``.
    """
    if n_probes < 2:
        raise ValueError(f"n_probes must be ≥ 2 for a confidence interval, got {n_probes}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    start = op.n_matvecs
    exact_part, Q = 0.0, None
    if deflate_steps > 0:
        from matdiscovery.hessian.eigen import lanczos

        run = lanczos(op, deflate_steps, torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.dtype))
        m = int(run.lengths[0])
        exact_part, Q = float(run.alphas[0, :m].sum()), run.basis[0, :m]
    samples: list[float] = []
    while len(samples) < n_probes:
        b = min(block, n_probes - len(samples))
        Z = rademacher(b, op.dim, gen, op.dtype).to(op.device)
        if Q is not None:
            Z = Z - (Z @ Q.T) @ Q
        samples.extend((Z * op.matmat(Z)).sum(dim=1).double().cpu().tolist())
        if len(samples) >= max(min_probes, 2):
            s = np.asarray(samples)
            se = s.std(ddof=1) / np.sqrt(len(s))
            if (tol is not None and se <= tol * abs(s.mean() + exact_part)) or (
                stderr_target is not None and se <= stderr_target
            ):
                break
    s = np.asarray(samples) + exact_part
    mean = float(s.mean())
    se = float(s.std(ddof=1) / np.sqrt(len(s)))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(s) - 1)) * se
    return TraceResult(mean, se, mean - half, mean + half, confidence, s, op.n_matvecs - start)
