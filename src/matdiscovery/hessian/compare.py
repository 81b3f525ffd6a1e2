"""Ours vs the ``pyhessian`` package (Yao et al. 2020) on the same model, loss, batch and
parameters (the shared trunk, as in the study: PyHessian takes every parameter with
``requires_grad``, so the task-specific output layer is frozen while it runs).

For each estimator both libraries run ``repeats`` times (seeds 0, 1, …, alternating which goes
first); we report the median wall time and its spread (min–max), the Hessian-vector products
(HVPs) each used, and each one's error against a high-accuracy reference of our own:

- ``top-1`` / ``top-k``: largest-*magnitude* eigenvalues (PyHessian's definition), reference =
  Lanczos to ``1e-8``; error = max relative error over the ``k`` values. PyHessian's power
  iteration is *not converged* for an eigenvalue that used all ``max_iter`` iterations; that is
  reported in ``pyhessian_converged`` (its time is then a lower bound of what convergence costs).
- ``trace``: PyHessian's Hutchinson with ``trace_probes`` probes, ours Krylov-deflated Hutchinson
  run until its standard error is at most PyHessian's; reference = deflated Hutchinson with
  ``reference_probes`` probes; error = relative error of the estimate (median over repeats).
- ``density``: PyHessian's SLQ with ``density_probes`` probes of ``density_steps`` steps; ours
  with the budget of one of its probes: ``density_steps // 2`` steps of Krylov deflation, then one
  projected probe of ``density_steps // 2`` steps (:func:`~matdiscovery.hessian.density.slq_density`);
  error = the larger relative error of the top node (vs the reference top eigenvalue) and of the
  mean eigenvalue (vs reference trace / dim).

The speed-up of an estimator is ``median(PyHessian time) / median(our time)``; it is marked
``equal_accuracy`` only where our median error is no larger than PyHessian's.

PyHessian 0.1 predates current torch: its density calls the removed ``torch.eig``; the shim
below supplies it (``torch.linalg.eigh``; the matrix is symmetric tridiagonal) only inside
:func:`pyhessian_shims`. Its ``trace`` stops when the running mean moves by less than ``tol``;
that test also fires when the mean is negative, so we pass ``tol=-inf`` to use exactly
``trace_probes`` probes.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from matdiscovery.hessian.density import slq_density
from matdiscovery.hessian.eigen import lanczos_eigenvalues
from matdiscovery.hessian.operator import HessianOperator
from matdiscovery.hessian.trace import hutchinson_trace

ESTIMATORS = ("top1", "topk", "trace", "density")


@contextlib.contextmanager
def pyhessian_shims(counter: list | None = None):
    """Provide ``torch.eig`` for ``pyhessian.hessian.density``; with ``counter`` (a list), log
    ``"H"`` for every PyHessian Hessian-vector product and ``"N"`` for every normalisation."""
    import importlib

    ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports its class)

    had = hasattr(torch, "eig")
    old_eig = getattr(torch, "eig", None)
    old_hvp, old_norm = ph.hessian_vector_product, ph.normalization

    def eig(matrix: torch.Tensor, eigenvectors: bool = True):
        vals, vecs = torch.linalg.eigh(matrix)
        return torch.stack([vals, torch.zeros_like(vals)], dim=1), vecs

    def hvp(*args, **kwargs):
        if counter is not None:
            counter.append("H")
        return old_hvp(*args, **kwargs)

    def norm(*args, **kwargs):
        if counter is not None:
            counter.append("N")
        return old_norm(*args, **kwargs)

    torch.eig = eig
    ph.hessian_vector_product, ph.normalization = hvp, norm
    try:
        yield
    finally:
        ph.hessian_vector_product, ph.normalization = old_hvp, old_norm
        if had:
            torch.eig = old_eig
        else:
            del torch.eig


def power_iterations_per_eigenvalue(events: list[str]) -> list[int]:
    """HVPs spent on each eigenvalue of one ``pyhessian.hessian.eigenvalues`` call, from the
    event log of :func:`pyhessian_shims` (a normalisation not right after a product starts a
    new eigenvalue)."""
    counts: list[int] = []
    prev = None
    for e in events:
        if e == "N" and prev != "H":
            counts.append(0)
        elif e == "H":
            if not counts:
                counts.append(0)
            counts[-1] += 1
        prev = e
    return counts


@dataclass
class Comparison:
    """One row per (estimator, repeat): times (s), HVPs, values, errors vs the reference."""

    rows: list[dict] = field(default_factory=list)
    reference: dict = field(default_factory=dict)
    hvp_cost: dict = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self) -> pd.DataFrame:
        """Per estimator: median times and spread, speed-up, HVPs, median errors, convergence."""
        f = self.frame()
        out = {}
        for est, g in f.groupby("estimator", sort=False):
            py, ours = g["pyhessian_s"], g["ours_s"]
            row = {
                "pyhessian_s_median": py.median(), "pyhessian_s_min": py.min(), "pyhessian_s_max": py.max(),
                "ours_s_median": ours.median(), "ours_s_min": ours.min(), "ours_s_max": ours.max(),
                "speedup": py.median() / max(ours.median(), 1e-12),
                "pyhessian_hvps": g["pyhessian_hvps"].median(), "ours_hvps": g["ours_hvps"].median(),
                "pyhessian_rel_error": g["pyhessian_rel_error"].median(), "ours_rel_error": g["ours_rel_error"].median(),
                "pyhessian_converged": float(g["pyhessian_converged"].mean()),
                "ours_converged": float(g["ours_converged"].mean()), "repeats": len(g),
            }
            # equal within round-off counts as equal (same algorithm, same probes: density)
            row["equal_accuracy"] = bool(row["ours_rel_error"] <= row["pyhessian_rel_error"] * (1 + 1e-6) + 1e-12)
            out[est] = row
        return pd.DataFrame(out).T

    def metrics(self) -> dict:
        """``pyhessian_speedup.<est>``, ``pyhessian_hvps.<est>``, ``ours_hvps.<est>``,
        ``pyhessian_rel_error.<est>``, ``ours_rel_error.<est>`` and convergence, plus the
        HVP/gradient cost ratio."""
        s = self.summary()
        keys = ("speedup", "pyhessian_hvps", "ours_hvps", "pyhessian_rel_error", "ours_rel_error",
                "pyhessian_converged", "equal_accuracy", "pyhessian_s_median", "ours_s_median")
        out: dict = {}
        for k in keys:
            name = "pyhessian_speedup" if k == "speedup" else k
            out[name] = {est: (bool(v) if k == "equal_accuracy" else float(v)) for est, v in s[k].items()}
        out["hvp_over_gradient"] = self.hvp_cost.get("ratio", float("nan"))
        return out


def _timed(fn: Callable):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _rel(values, reference) -> float:
    v, r = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    return float(np.max(np.abs(v - r) / np.maximum(np.abs(r), 1e-30)))


def hvp_over_gradient(model: nn.Module, loss_fn, batch, params, repeats: int = 5) -> dict:
    """Median seconds of one gradient (forward + backward) and of one HVP through a retained
    gradient graph (after it is built), and their ratio."""
    grads, hvps = [], []
    op = HessianOperator(model, loss_fn, [batch], params=params)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0))
    op.matvec(v)  # build the graph once
    for _ in range(repeats):
        _, t = _timed(lambda: torch.autograd.grad(loss_fn(model, batch), params))
        grads.append(t)
        _, t = _timed(lambda: op.matvec(v))
        hvps.append(t)
    g, h = float(np.median(grads)), float(np.median(hvps))
    return {"gradient_s": g, "hvp_s": h, "ratio": h / g}


def compare_with_pyhessian(
    model: nn.Module, batch, criterion: Callable[[torch.Tensor, object], torch.Tensor], targets, *,
    params: list[torch.Tensor], tol: float = 1e-3, max_iter: int = 100, top_k: int = 5, trace_probes: int = 50,
    density_steps: int = 50, density_probes: int = 2, repeats: int = 5, reference_tol: float = 1e-8,
    reference_probes: int = 400, deflate_steps: int = 20, estimators=ESTIMATORS, progress: bool = False,
) -> Comparison:
    """Time and score both libraries on every estimator (see the module docstring).

    ``criterion(model(batch), targets)`` is the scalar loss (PyHessian's interface); ``params``
    the parameters both differentiate (others are frozen while PyHessian runs).
    """
    from pyhessian import hessian as PyHessian

    from matdiscovery.progress import progress_bar

    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    unknown = set(estimators) - set(ESTIMATORS)
    if unknown:
        raise ValueError(f"unknown estimators {sorted(unknown)}; choose from {ESTIMATORS}")
    loss_fn = lambda m, b: criterion(m(b), targets)  # noqa: E731
    chosen = {id(p) for p in params}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]

    def ours_op():
        return HessianOperator(model, loss_fn, [batch], params=params)

    ref_op = ours_op()
    ref_eig = lanczos_eigenvalues(ref_op, k=top_k, tol=reference_tol, max_steps=min(ref_op.dim, 400), seed=12345,
                                  which="LM", on_unconverged="ignore")
    ref_tr = hutchinson_trace(ref_op, n_probes=reference_probes, block=50, seed=54321, deflate_steps=100)
    out = Comparison(reference={"eigenvalues": ref_eig.eigenvalues.tolist(), "eigen_converged": ref_eig.converged,
                                "trace": ref_tr.estimate, "trace_stderr": ref_tr.stderr, "dim": ref_op.dim})
    out.hvp_cost = hvp_over_gradient(model, loss_fn, batch, params)

    def run_py(fn):
        events: list[str] = []
        for p in frozen:
            p.requires_grad_(False)
        try:
            for p in model.parameters():
                p.grad = None
            with pyhessian_shims(events), warnings.catch_warnings():
                # PyHessian calls loss.backward(create_graph=True); we reset .grad after each run
                warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True",
                                        category=UserWarning)
                # timed with its set-up (the gradient graph), as ours is
                res, t = _timed(lambda: fn(PyHessian(model, criterion, data=(batch, targets), cuda=False)))
        finally:
            for p in frozen:
                p.requires_grad_(True)
            for p in model.parameters():
                p.grad = None
        return res, t, events

    jobs = [(est, r) for r in range(repeats) for est in estimators]
    for est, r in progress_bar(jobs, desc="PyHessian comparison", progress=progress):
        seed = r
        torch.manual_seed(seed)
        py_first = r % 2 == 0
        row = {"estimator": est, "repeat": r, "pyhessian_first": py_first}

        def py_side():
            if est in ("top1", "topk"):
                k = 1 if est == "top1" else top_k
                (vals, _), t, ev = run_py(lambda h: h.eigenvalues(maxIter=max_iter, tol=tol, top_n=k))
                vals = np.asarray(vals, dtype=float)
                vals = vals[np.argsort(-np.abs(vals))]
                iters = power_iterations_per_eigenvalue(ev)
                return {"pyhessian_s": t, "pyhessian_hvps": ev.count("H"), "pyhessian_value": float(vals[0]),
                        "pyhessian_rel_error": _rel(vals, ref_eig.eigenvalues[:k]),
                        "pyhessian_converged": bool(all(i < max_iter for i in iters))}
            if est == "trace":
                samples, t, ev = run_py(lambda h: h.trace(maxIter=trace_probes, tol=float("-inf")))
                s = np.asarray(samples, dtype=float)
                return {"pyhessian_s": t, "pyhessian_hvps": ev.count("H"), "pyhessian_value": float(s.mean()),
                        "pyhessian_stderr": float(s.std(ddof=1) / np.sqrt(len(s))),
                        "pyhessian_rel_error": _rel(s.mean(), ref_tr.estimate), "pyhessian_converged": True}
            (nodes, weights), t, ev = run_py(lambda h: h.density(iter=density_steps, n_v=density_probes))
            nodes, weights = np.asarray(nodes, dtype=float), np.asarray(weights, dtype=float)
            mean_eig = float((nodes * weights).sum(axis=1).mean())
            err = max(_rel(nodes.max(), ref_eig.eigenvalues.max()), _rel(mean_eig, ref_tr.estimate / ref_op.dim))
            return {"pyhessian_s": t, "pyhessian_hvps": ev.count("H"), "pyhessian_value": float(nodes.max()),
                    "pyhessian_rel_error": err, "pyhessian_converged": True}

        def ours_side(py_row):
            op = ours_op()
            if est in ("top1", "topk"):
                k = 1 if est == "top1" else top_k
                res, t = _timed(lambda: lanczos_eigenvalues(op, k=k, tol=tol, max_steps=max_iter, seed=seed,
                                                            which="LM", on_unconverged="ignore"))
                return {"ours_s": t, "ours_hvps": res.n_matvecs, "ours_value": float(res.eigenvalues[0]),
                        "ours_rel_error": _rel(res.eigenvalues, ref_eig.eigenvalues[:k]), "ours_converged": res.converged}
            if est == "trace":
                target = py_row.get("pyhessian_stderr") if py_row else None
                res, t = _timed(lambda: hutchinson_trace(op, n_probes=trace_probes, block=2, seed=seed,
                                                         deflate_steps=deflate_steps, stderr_target=target, min_probes=4))
                return {"ours_s": t, "ours_hvps": res.n_matvecs, "ours_value": res.estimate, "ours_stderr": res.stderr,
                        "ours_rel_error": _rel(res.estimate, ref_tr.estimate), "ours_converged": True}
            half = max(density_steps // 2, 1)
            res, t = _timed(lambda: slq_density(op, n_probes=1, n_steps=half, seed=seed, deflate_steps=half))
            err = max(_rel(res.nodes.max(), ref_eig.eigenvalues.max()), _rel(res.moment(1), ref_tr.estimate / ref_op.dim))
            return {"ours_s": t, "ours_hvps": res.n_matvecs, "ours_value": float(res.nodes.max()),
                    "ours_rel_error": err, "ours_converged": True}

        if py_first or est == "trace":  # our trace needs PyHessian's standard error as its target
            row.update(py_side())
            row.update(ours_side(row))
        else:
            row.update(ours_side(None))
            row.update(py_side())
        out.rows.append(row)
    return out
