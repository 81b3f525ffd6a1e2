"""Top eigenvalues of a symmetric operator: power iteration with deflation, and Lanczos.

Both work on anything with ``dim``, ``dtype``, ``device``, ``matmat(V)`` and ``n_matvecs``
(a :class:`~matdiscovery.hessian.operator.HessianOperator` or :class:`DenseOperator`).
Lanczos keeps full re-orthogonalisation (the Krylov basis is small) and runs several
independent starting vectors in lock step (one block product per step).
"""

from __future__ import annotations

import warnings
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


class UnconvergedEigenvaluesWarning(RuntimeWarning):
    """Fewer of the requested eigenvalues met the tolerance than were asked for."""


WHICH = {"LA": "largest algebraic (the sharpest directions of a loss)", "LM": "largest magnitude"}


@dataclass
class EigenResult:
    """Eigenvalues ordered by ``which`` (``"LA"``: descending value; ``"LM"``: descending
    magnitude), unit eigenvectors ``(k, dim)``, the Hessian-vector products spent, how many of
    the ``k`` values met the tolerance (``n_converged``; ``converged`` is ``n_converged == k``)
    and residual norms ``‖H v − λ v‖`` where known."""

    eigenvalues: np.ndarray
    eigenvectors: torch.Tensor
    n_matvecs: int
    n_converged: int
    which: str = "LA"
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def converged(self) -> bool:
        return self.n_converged == len(self.eigenvalues)


def _order(values: np.ndarray, which: str) -> np.ndarray:
    if which == "LA":
        return np.argsort(-values, kind="stable")
    if which == "LM":
        return np.argsort(-np.abs(values), kind="stable")
    raise ValueError(f"which must be 'LA' (largest algebraic) or 'LM' (largest magnitude), got {which!r}")


def _check_k(op, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if k > op.dim:
        raise ValueError(f"k = {k} eigenvalues requested of a {op.dim}-dimensional operator")


def _report(result: EigenResult, k: int, on_unconverged: str, method: str) -> EigenResult:
    if on_unconverged not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_unconverged must be 'warn', 'raise' or 'ignore', got {on_unconverged!r}")
    if result.n_converged < k and on_unconverged != "ignore":
        msg = (f"{method}: only {result.n_converged} of the {k} requested eigenvalues ({WHICH[result.which]}) met "
               f"the tolerance after {result.n_matvecs} Hessian-vector products; raise max_iter or ask for fewer")
        if on_unconverged == "raise":
            raise RuntimeError(msg)
        warnings.warn(msg, UnconvergedEigenvaluesWarning, stacklevel=3)
    return result


def lanczos_eigenvalues(
    op, k: int = 1, tol: float = 1e-3, max_steps: int = 100, seed: int = 0, which: str = "LA",
    min_steps: int | None = None, on_unconverged: str = "warn",
) -> EigenResult:
    """Top-``k`` eigenpairs by Lanczos with full re-orthogonalisation.

    ``which="LA"`` orders by value (the sharpest directions of a loss), ``"LM"`` by magnitude.
    A value counts as converged when its relative change over the last step is below ``tol``
    (PyHessian's criterion, so tolerances are comparable) or its residual bound
    ``|β_m s_m|`` is below ``tol·|θ|``; stops when all ``k`` have converged or after
    ``max_steps``. Fewer than ``k`` converged: ``on_unconverged`` = ``"warn"``
    (:class:`UnconvergedEigenvaluesWarning`), ``"raise"`` (``RuntimeError``) or ``"ignore"``.
    A Krylov space smaller than ``k`` (the start vector lies in an invariant subspace) raises.
    """
    _check_k(op, k)
    _order(np.zeros(1), which)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.dtype)
    start_count = op.n_matvecs
    state: dict = {"prev": None, "done": False}
    first = max(k + 1, min_steps or 0)

    def converged_count(run: LanczosRun) -> int:
        theta, s = run.ritz(0)
        order = _order(theta, which)[:k]
        top = theta[order]
        ok = np.abs(run.last_beta[0] * s[-1, order]) <= tol * np.maximum(np.abs(top), 1e-12)
        prev = state["prev"]
        if prev is not None and len(prev) == len(top):
            ok |= np.abs(top - prev) / (np.abs(prev) + 1e-12) < tol
        state["prev"] = top
        return len(ok) if ok.all() else int(np.argmin(ok))  # leading run of converged values

    def check(run: LanczosRun, step: int) -> bool:
        if step < k:
            return False
        state["done"] = converged_count(run) == k and step >= first
        return state["done"]

    run = lanczos(op, max_steps, v0, callback=check)
    theta, s = run.ritz(0)
    m = int(run.lengths[0])
    if m < k:
        raise ValueError(f"the Krylov space has only {m} dimensions (invariant subspace found); cannot return {k} "
                         f"eigenvalues: use another seed or k ≤ {m}")
    order = _order(theta, which)[:k]
    vectors = torch.as_tensor(s[:, order].T, dtype=op.dtype, device=op.device) @ run.basis[0, :m]
    residuals = np.abs(run.last_beta[0] * s[-1, order])
    invariant = m == op.dim or run.last_beta[0] <= 1e-10 * max(np.abs(theta).max(), 1e-300)
    # the callback does not see the last step of a run that hit max_steps: judge it here
    n_conv = k if (state["done"] or invariant) else converged_count(run)
    result = EigenResult(theta[order], vectors, op.n_matvecs - start_count, n_conv, which, residuals)
    return _report(result, k, on_unconverged, "lanczos")


def _power(op, k: int, tol: float, max_iter: int, gen: torch.Generator, shift: float = 0.0):
    """Deflated power iteration on ``H + shift·I``: values (of ``H``), vectors, residuals, converged flags."""
    values, vectors, residuals, flags = [], [], [], []
    for _ in range(k):
        found = torch.stack(vectors) if vectors else None
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.dtype)
        lam, converged, hv = None, False, None
        for _ in range(max_iter):
            if found is not None:
                v = v - found.T @ (found @ v)
            v = v / v.norm()
            hv = op.matvec(v) + shift * v
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
        values.append(lam - shift)
        vectors.append(vec)
        flags.append(converged)
    return values, vectors, residuals, flags


def power_iteration(
    op, k: int = 1, tol: float = 1e-3, max_iter: int = 100, seed: int = 0, which: str = "LM",
    on_unconverged: str = "warn",
) -> EigenResult:
    """Top-``k`` eigenpairs by power iteration with deflation (PyHessian's method).

    Power iteration converges to the largest-*magnitude* eigenvalue (``which="LM"``). For
    ``which="LA"`` it first estimates that magnitude ``|λ|_max`` and then iterates on the
    shifted ``H + |λ|_max I`` (positive semi-definite, same eigenvectors, order by value
    preserved), subtracting the shift again; those products count in ``n_matvecs``. Each
    eigenvector is found in turn, orthogonalised against those already found; a value is
    accepted when its Rayleigh quotient changes by less than ``tol`` (relative).
    """
    _check_k(op, k)
    _order(np.zeros(1), which)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    start_count = op.n_matvecs
    shift = 0.0
    if which == "LA":
        lm, _, _, _ = _power(op, 1, tol, max_iter, gen)
        shift = abs(lm[0])
    values, vectors, residuals, flags = _power(op, k, tol, max_iter, gen, shift)
    # deflation finds values in (roughly) the requested order; sort to be sure
    order = _order(np.array(values), which)
    n_conv = int(np.argmin(np.r_[np.array(flags)[order], False]))
    result = EigenResult(np.array(values)[order], torch.stack(vectors)[torch.as_tensor(order)],
                         op.n_matvecs - start_count, n_conv, which, np.array(residuals)[order])
    return _report(result, k, on_unconverged, "power iteration")


def top_eigenvalues(op, k: int = 1, method: str = "lanczos", tol: float = 1e-3, max_iter: int = 100,
                    seed: int = 0, which: str = "LA", on_unconverged: str = "warn") -> EigenResult:
    """Top-``k`` Hessian eigenvalues, ``which="LA"`` (largest algebraic, default) or ``"LM"``
    (largest magnitude), honoured by both ``method="lanczos"`` and ``method="power"``. The
    result carries the Hessian-vector products used (``n_matvecs``) and how many values met
    ``tol`` (``n_converged``); fewer than ``k``: see ``on_unconverged``."""
    if method == "lanczos":
        return lanczos_eigenvalues(op, k, tol=tol, max_steps=max_iter, seed=seed, which=which,
                                   on_unconverged=on_unconverged)
    if method == "power":
        return power_iteration(op, k, tol=tol, max_iter=max_iter, seed=seed, which=which, on_unconverged=on_unconverged)
    raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
