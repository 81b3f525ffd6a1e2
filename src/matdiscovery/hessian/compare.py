"""Ours vs the ``pyhessian`` package (Yao et al. 2020) on the same model, loss and batch.

Where ours is faster: Lanczos gets the top-k eigenvalues from one Krylov space instead of k
deflated power iterations; Krylov deflation cuts the trace variance; per Hessian-vector product
both do the same reverse pass through a retained gradient graph (no speed-up there).

PyHessian 0.1 predates current torch: its density calls the removed ``torch.eig``. The shim
below supplies it (via ``torch.linalg.eigh``, the matrix is symmetric tridiagonal) only inside
:func:`pyhessian_shims`; site-packages are not touched. PyHessian's ``trace`` stops when the
running mean moves by less than ``tol``; its test ``|Δmean| / (mean + 1e-6) < tol`` also fires when the mean is negative, so we pass
``tol=-inf`` and both use exactly ``n_probes``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from matdiscovery.hessian.density import slq_density
from matdiscovery.hessian.eigen import lanczos_eigenvalues
from matdiscovery.hessian.operator import HessianOperator
from matdiscovery.hessian.trace import hutchinson_trace


@contextlib.contextmanager
def pyhessian_shims():
    """Temporarily provide ``torch.eig`` (removed in torch 2.x) for ``pyhessian.hessian.density``."""
    had = hasattr(torch, "eig")
    old = getattr(torch, "eig", None)

    def eig(matrix: torch.Tensor, eigenvectors: bool = True):
        vals, vecs = torch.linalg.eigh(matrix)
        return torch.stack([vals, torch.zeros_like(vals)], dim=1), vecs

    torch.eig = eig
    try:
        yield
    finally:
        if had:
            torch.eig = old
        else:
            del torch.eig


@dataclass
class Comparison:
    """Wall times (s), Hessian-vector products and results of both implementations per task."""

    rows: list[dict] = field(default_factory=list)

    def add(self, **row) -> None:
        row["speedup"] = row["pyhessian_s"] / max(row["ours_s"], 1e-12)
        self.rows.append(row)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def geometric_mean_speedup(self, equal_accuracy_only: bool = True) -> float:
        """Geometric mean of the speed-ups; by default over the equal-accuracy rows (top-1,
        top-k, trace at equal standard error, density at equal steps and probes), leaving out
        the equal-probe trace row, which checks agreement rather than accuracy-matched cost."""
        rows = [r for r in self.rows if r.get("equal_accuracy", True) or not equal_accuracy_only]
        return float(np.exp(np.mean([np.log(r["speedup"]) for r in rows])))


def _timed(fn: Callable):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def compare_with_pyhessian(
    model: nn.Module,
    batch,
    criterion: Callable[[torch.Tensor, object], torch.Tensor],
    targets,
    tol: float = 1e-3,
    max_iter: int = 100,
    top_n: int = 5,
    trace_probes: int = 50,
    density_steps: int = 50,
    density_probes: int = 2,
    seed: int = 0,
    reference_tol: float = 1e-7,
    deflate_steps: int = 10,
) -> Comparison:
    """Time top-1 and top-``top_n`` eigenvalues (largest magnitude, PyHessian's definition), the
    trace and the SLQ density with both libraries.

    ``criterion(model(batch), targets)`` is the scalar loss (PyHessian's interface). Accuracy is
    judged against a tight Lanczos reference (``reference_tol``) for the eigenvalues; traces
    twice: with equal probe counts, and at equal accuracy (our Krylov-deflated Hutchinson run
    until its standard error is at most PyHessian's); densities by top node and mean eigenvalue.
    """
    from pyhessian import hessian as PyHessian

    loss_fn = lambda m, b: criterion(m(b), targets)  # noqa: E731
    ref_op = HessianOperator(model, loss_fn, [batch])
    # PyHessian's power iteration finds the largest-*magnitude* eigenvalues: ours and the
    # reference use the same definition (``which="LM"``), values ordered by magnitude
    ref = lanczos_eigenvalues(ref_op, k=top_n, tol=reference_tol, max_steps=min(ref_op.dim, 300), seed=seed + 99,
                              which="LM")
    out = Comparison()

    def fresh_py():
        for p in model.parameters():
            p.grad = None
        torch.manual_seed(seed)
        return PyHessian(model, criterion, data=(batch, targets), cuda=False)

    def fresh_ours():
        return HessianOperator(model, loss_fn, [batch])

    try:
        with pyhessian_shims():
            for k in (1, top_n):
                (py_vals, _), t_py = _timed(lambda: fresh_py().eigenvalues(maxIter=max_iter, tol=tol, top_n=k))
                op = fresh_ours()
                ours, t_ours = _timed(lambda: lanczos_eigenvalues(op, k=k, tol=tol, max_steps=max_iter, seed=seed,
                                                                    which="LM"))
                py_sorted = np.asarray(py_vals, dtype=float)
                py_sorted = py_sorted[np.argsort(-np.abs(py_sorted))]
                out.add(
                    estimator=f"top-{k} eigenvalues", pyhessian_s=t_py, ours_s=t_ours,
                    pyhessian_value=float(py_sorted[0]), ours_value=float(ours.eigenvalues[0]),
                    reference=float(ref.eigenvalues[0]),
                    pyhessian_max_rel_err=float(np.max(np.abs(py_sorted - ref.eigenvalues[:k]) / np.abs(ref.eigenvalues[:k]))),
                    ours_max_rel_err=float(np.max(np.abs(ours.eigenvalues - ref.eigenvalues[:k]) / np.abs(ref.eigenvalues[:k]))),
                    ours_matvecs=ours.n_matvecs,
                )
            py_tr, t_py = _timed(lambda: fresh_py().trace(maxIter=trace_probes, tol=float("-inf")))
            py_tr = np.asarray(py_tr, dtype=float)
            py_se = float(py_tr.std(ddof=1) / np.sqrt(len(py_tr)))
            op = fresh_ours()
            ours_tr, t_ours = _timed(lambda: hutchinson_trace(op, n_probes=trace_probes, block=trace_probes, seed=seed))
            out.add(
                estimator=f"trace (equal probes, {trace_probes})", pyhessian_s=t_py, ours_s=t_ours, equal_accuracy=False,
                pyhessian_value=float(py_tr.mean()), ours_value=ours_tr.estimate, reference=float("nan"),
                pyhessian_stderr=py_se, ours_stderr=ours_tr.stderr,
                pyhessian_in_our_ci=bool(ours_tr.contains(float(py_tr.mean()))), ours_matvecs=ours_tr.n_matvecs,
            )
            # equal accuracy: Krylov-deflated Hutchinson run until its standard error ≤ PyHessian's
            op = fresh_ours()
            defl, t_ours = _timed(lambda: hutchinson_trace(
                op, n_probes=trace_probes, block=2, seed=seed, deflate_steps=deflate_steps, stderr_target=py_se,
                min_probes=4))
            out.add(
                estimator="trace (equal accuracy, deflated)", pyhessian_s=t_py, ours_s=t_ours,
                pyhessian_value=float(py_tr.mean()), ours_value=defl.estimate, reference=float("nan"),
                pyhessian_stderr=py_se, ours_stderr=defl.stderr,
                pyhessian_in_our_ci=bool(defl.contains(float(py_tr.mean()))), ours_matvecs=defl.n_matvecs,
            )
            (py_nodes, py_weights), t_py = _timed(lambda: fresh_py().density(iter=density_steps, n_v=density_probes))
            op = fresh_ours()
            dens, t_ours = _timed(lambda: slq_density(op, n_probes=density_probes, n_steps=density_steps, seed=seed))
            py_nodes = np.asarray(py_nodes, dtype=float)
            out.add(
                estimator=f"density ({density_probes}×{density_steps} SLQ)", pyhessian_s=t_py, ours_s=t_ours,
                pyhessian_value=float(py_nodes.max()), ours_value=float(dens.nodes.max()),
                reference=float(ref.eigenvalues[0]), ours_matvecs=dens.n_matvecs,
                pyhessian_mean_eig=float((np.asarray(py_weights) * py_nodes).sum(axis=1).mean()),
                ours_mean_eig=dens.moment(1),
            )
    finally:
        for p in model.parameters():
            p.grad = None
    return out
