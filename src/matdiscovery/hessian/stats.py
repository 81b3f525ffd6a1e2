"""Paired seed statistics and the verdict rules of the MTL-vs-STL study.

Every method of one seed shares that seed's data order and test set, so methods are compared
*paired by seed*: for a target, ``d_s = MAE_method,s − MAE_reference,s`` over seeds ``s``, a
Student-t confidence interval of the mean difference and a paired t-test (``scipy.stats.ttest_rel``).
The interval covers training noise between seeds (initialisation and mini-batch order), not
the sampling of the fixed test set.

Verdict rule (:func:`verdict`): ``"worse"`` when the whole interval lies above zero (the method
has the larger error), ``"better"`` when it lies below zero, otherwise ``"indistinguishable"``.
A data set's verdict (:func:`dataset_verdict`) summarises its targets: ``"worse"`` if at least
one target is worse and none better, ``"better"`` the other way round, ``"mixed"`` if both
occur, ``"indistinguishable"`` if neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

VERDICTS = ("worse", "better", "indistinguishable")


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a − b`` over paired seeds with its ``confidence`` interval and paired-t p-value."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    confidence: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    @property
    def verdict(self) -> str:
        return verdict(self.ci_low, self.ci_high)


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t ``confidence`` interval of ``values`` (NaN interval for n < 2)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0 or np.isnan(x).any():
        raise ValueError(f"need a 1-d array of finite values, got {x!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - half, m + half


def paired_difference(a, b, confidence: float = 0.95) -> PairedDifference:
    """``a − b`` paired element-wise (one entry per seed)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need equal 1-d shapes, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"a paired comparison needs at least 2 seeds, got {len(a)}")
    d = a - b
    m, lo, hi = mean_ci(d, confidence)
    p = 1.0 if np.allclose(d, d[0]) and d[0] == 0 else float(stats.ttest_rel(a, b).pvalue)
    if np.isnan(p):  # zero variance with a non-zero mean: the difference is certain
        p = 0.0
    return PairedDifference(m, lo, hi, p, len(d), confidence)


def verdict(ci_low: float, ci_high: float) -> str:
    """``"worse"`` (interval above 0), ``"better"`` (below 0) or ``"indistinguishable"``."""
    if np.isnan(ci_low) or np.isnan(ci_high):
        raise ValueError("a verdict needs a finite confidence interval (at least 2 seeds)")
    if ci_low > ci_high:
        raise ValueError(f"ci_low {ci_low} exceeds ci_high {ci_high}")
    if ci_low > 0:
        return "worse"
    if ci_high < 0:
        return "better"
    return "indistinguishable"


def dataset_verdict(verdicts) -> str:
    """Summary of per-target verdicts (see the module docstring)."""
    v = list(verdicts)
    bad = set(v) - set(VERDICTS)
    if bad or not v:
        raise ValueError(f"verdicts must be a non-empty list drawn from {VERDICTS}, got {v}")
    worse, better = "worse" in v, "better" in v
    if worse and better:
        return "mixed"
    return "worse" if worse else "better" if better else "indistinguishable"


def relative_difference(a, b) -> np.ndarray:
    """Per seed ``a / b − 1`` (e.g. the MTL penalty ``MAE_MTL / MAE_STL − 1``)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if (b <= 0).any():
        raise ValueError("the reference errors must be positive")
    return a / b - 1
