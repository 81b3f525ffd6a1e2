"""Top eigenvalues of a symmetric operator: power iteration with deflation, and Lanczos.

Both work on anything with ``dim``, ``dtype``, ``device``, ``matmat(V)`` and ``n_matvecs``
(a :class:`~matdiscovery.hessian.operator.HessianOperator` or :class:`DenseOperator`).
Lanczos keeps full re-orthogonalisation (the Krylov basis is small) and runs several
independent starting vectors in lock step (one block product per step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


class DenseOperator:
    """A dense symmetric matrix with the operator interface (tests, baselines)."""

    def __init__(self, matrix: torch.Tensor):
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.dim, self.dtype, self.device = matrix.shape[0], matrix.dtype, matrix.device
        self.n_matvecs = 0

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        self.n_matvecs += V.shape[0]
        return V @ self.matrix  # symmetric: (H V^T)^T = V H

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matmat(v.reshape(1, -1)).reshape(-1)


@dataclass
class LanczosRun:
    """Tridiagonal matrices of ``k`` lock-step Lanczos runs.

    ``alphas``/``betas``: ``(k, m)`` / ``(k, m-1)`` (numpy, float64); ``lengths[i]``: steps
    run ``i`` actually took (shorter after an invariant subspace was found); ``basis``:
    ``(k, m, dim)`` orthonormal Krylov vectors; ``last_beta``: the residual norm after the last step.
    """

    alphas: np.ndarray
    betas: np.ndarray
    lengths: np.ndarray
    basis: torch.Tensor
    last_beta: np.ndarray

    def tridiagonal(self, i: int) -> np.ndarray:
        m = int(self.lengths[i])
        t = np.diag(self.alphas[i, :m])
        if m > 1:
            off = self.betas[i, : m - 1]
            t += np.diag(off, 1) + np.diag(off, -1)
        return t

    def ritz(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and eigenvectors of run ``i``'s tridiagonal matrix."""
        return np.linalg.eigh(self.tridiagonal(i))


def lanczos(op, n_steps: int, start: torch.Tensor, tol_breakdown: float = 1e-10, callback=None) -> LanczosRun:
    """``n_steps`` Lanczos steps from each row of ``start`` (``(k, dim)``), run in lock step.

    ``callback(run_so_far, step)`` may return True to stop early (used for convergence tests).
    """
    if start.dim() == 1:
        start = start.reshape(1, -1)
    k, n = start.shape
    if n != op.dim:
        raise ValueError(f"start vectors have length {n}, operator dimension is {op.dim}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be ≥ 1, got {n_steps}")
    n_steps = min(n_steps, n)
    q = start.to(dtype=op.dtype, device=op.device)
    q = q / q.norm(dim=1, keepdim=True)
    basis = torch.zeros((k, n_steps, n), dtype=op.dtype, device=op.device)
    alphas = np.zeros((k, n_steps))
    betas = np.zeros((k, max(n_steps - 1, 0)))
    lengths = np.zeros(k, dtype=int)
    last_beta = np.zeros(k)
    active = np.ones(k, dtype=bool)
    scale = np.zeros(k)
    for j in range(n_steps):
        idx = np.flatnonzero(active)
        basis[idx, j] = q[idx]
        w = op.matmat(q[idx])
        a = (w * q[idx]).sum(dim=1)
        alphas[idx, j] = a.double().cpu().numpy()
        lengths[idx] = j + 1
        # full re-orthogonalisation (twice is enough) against the whole basis of each run
        Qb = basis[idx, : j + 1]
        for _ in range(2):
            w = w - torch.einsum("kj,kjn->kn", torch.einsum("kjn,kn->kj", Qb, w), Qb)
        b = w.norm(dim=1).double().cpu().numpy()
        scale[idx] = np.maximum(scale[idx], np.abs(alphas[idx, j]) + b)
        last_beta[idx] = b
        if j + 1 == n_steps:
            break
        done = b <= tol_breakdown * np.maximum(scale[idx], 1e-300)
        betas[idx, j] = b
        nxt = torch.zeros_like(q)
        nxt[idx] = w / torch.as_tensor(np.where(done, 1.0, b), dtype=op.dtype, device=op.device).reshape(-1, 1)
        q = nxt
        active[idx[done]] = False
        if not active.any():
            break
        if callback is not None and callback(LanczosRun(alphas, betas, lengths.copy(), basis, last_beta), j + 1):
            break
    return LanczosRun(alphas, betas, lengths, basis, last_beta)


@dataclass
class EigenResult:
    """Eigenvalues (descending by the chosen order), unit eigenvectors ``(k, dim)``, the
    Hessian-vector products spent, whether every value met the tolerance, and residual norms
    ``‖H v − λ v‖`` where known."""

    eigenvalues: np.ndarray
    eigenvectors: torch.Tensor
    n_matvecs: int
    converged: bool
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _order(values: np.ndarray, which: str) -> np.ndarray:
    if which == "LA":
        return np.argsort(-values)
    if which == "LM":
        return np.argsort(-np.abs(values))
    raise ValueError(f"which must be 'LA' (largest algebraic) or 'LM' (largest magnitude), got {which!r}")


def lanczos_eigenvalues(
    op, k: int = 1, tol: float = 1e-3, max_steps: int = 100, seed: int = 0, which: str = "LA",
    min_steps: int | None = None,
) -> EigenResult:
    """Top-``k`` eigenpairs by Lanczos with full re-orthogonalisation.

    Stops when each of the top-``k`` Ritz values changed by less than ``tol`` (relative) over
    the last step (PyHessian's criterion, so tolerances are comparable), or after ``max_steps``.
    ``which="LA"`` orders by value (the sharpest directions of a loss), ``"LM"`` by magnitude.
    """
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.dtype)
    start_count = op.n_matvecs
    state = {"prev": None, "converged": False}
    first = max(k + 1, min_steps or 0)

    def check(run: LanczosRun, step: int) -> bool:
        if step < first:
            return False
        theta, _ = run.ritz(0)
        top = theta[_order(theta, which)[:k]]
        prev, state["prev"] = state["prev"], top
        if prev is not None and len(prev) == len(top):
            rel = np.abs(top - prev) / (np.abs(prev) + 1e-12)
            if np.all(rel < tol):
                state["converged"] = True
                return True
        return False

    run = lanczos(op, max_steps, v0, callback=check)
    theta, s = run.ritz(0)
    order = _order(theta, which)[:k]
    m = int(run.lengths[0])
    vectors = torch.as_tensor(s[:, order].T, dtype=op.dtype, device=op.device) @ run.basis[0, :m]
    residuals = np.abs(run.last_beta[0] * s[-1, order])
    converged = state["converged"] or bool(m == op.dim) or bool(np.all(residuals <= tol * np.abs(theta[order])))
    return EigenResult(theta[order], vectors, op.n_matvecs - start_count, converged, residuals)


def power_iteration(
    op, k: int = 1, tol: float = 1e-3, max_iter: int = 100, seed: int = 0
) -> EigenResult:
    """Top-``k`` eigenpairs (largest magnitude) by power iteration with deflation.

    Each eigenvector is found in turn, orthogonalising the iterate against those already found
    (Hotelling deflation in projected form); an eigenvalue is accepted when its Rayleigh
    quotient changes by less than ``tol`` (relative) between iterations.
    """
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    start_count = op.n_matvecs
    values, vectors, residuals, all_converged = [], [], [], True
    for _ in range(k):
        found = torch.stack(vectors) if vectors else None
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.dtype)
        lam, converged, hv = None, False, None
        for _ in range(max_iter):
            if found is not None:
                v = v - found.T @ (found @ v)
            v = v / v.norm()
            hv = op.matvec(v)
            if found is not None:
                hv = hv - found.T @ (found @ hv)
            new = float(v @ hv)
            if lam is not None and abs(new - lam) / (abs(lam) + 1e-12) < tol:
                lam, converged = new, True
                break
            lam = new
            v = hv
        vec = v / v.norm()
        residuals.append(float((hv - lam * vec).norm()))
        values.append(lam)
        vectors.append(vec)
        all_converged &= converged
    return EigenResult(np.array(values), torch.stack(vectors), op.n_matvecs - start_count, all_converged, np.array(residuals))


def top_eigenvalues(op, k: int = 1, method: str = "lanczos", tol: float = 1e-3, max_iter: int = 100,
                    seed: int = 0, which: str = "LA") -> EigenResult:
    """Top-``k`` Hessian eigenvalues; ``method`` is ``"lanczos"`` or ``"power"``."""
    if method == "lanczos":
        return lanczos_eigenvalues(op, k, tol=tol, max_steps=max_iter, seed=seed, which=which)
    if method == "power":
        return power_iteration(op, k, tol=tol, max_iter=max_iter, seed=seed)
    raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
