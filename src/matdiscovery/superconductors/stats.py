"""Statistics over seeds and the verdict rule for the closed-loop claim.

* :func:`mean_ci`: Student-t interval over seeds; :func:`ratio_ci`: last/first-cycle success
  ratio with a percentile bootstrap over seeds; :func:`paired_test`: closed − open per seed,
  bootstrap CI of the mean difference and a Wilcoxon signed-rank p-value.
* :func:`loop_verdict`: does the loop more than double success (the paper's claim), does it beat
  the open loop, and does the provenance-only control fail to improve (else the pool leaks)?
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

#: The paper's claim: the success rate "more than doubled" over the cycles.
DOUBLING = 2.0


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and Student-t confidence interval over axis 0 (seeds)."""
    v = np.asarray(values, dtype=float)
    m = v.mean(axis=0)
    if v.shape[0] < 2:
        return m, m, m
    half = stats.t.ppf(0.5 + confidence / 2, v.shape[0] - 1) * v.std(axis=0, ddof=1) / np.sqrt(v.shape[0])
    return m, m - half, m + half


def ratio_ci(first: np.ndarray, last: np.ndarray, n_boot: int = 2000, seed: int = 0,
             confidence: float = 0.95) -> tuple[float, float, float]:
    """``mean(last) / mean(first)`` over seeds with a percentile bootstrap CI (resampling seeds
    in pairs). Infinite where the first-cycle mean is 0."""
    first, last = np.asarray(first, float), np.asarray(last, float)
    if first.shape != last.shape or first.ndim != 1 or len(first) == 0:
        raise ValueError(f"first and last must be equal-length 1-D arrays, got {first.shape} and {last.shape}")
    point = float(last.mean() / first.mean()) if first.mean() > 0 else float("inf")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(first), size=(n_boot, len(first)))
    f, la = first[idx].mean(axis=1), last[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(f > 0, la / np.where(f > 0, f, 1), np.inf)
    lo, hi = np.quantile(r, [(1 - confidence) / 2, (1 + confidence) / 2], method="inverted_cdf")  # no inf − inf
    return point, float(lo), float(hi)


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison over seeds of ``a − b``."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean_diff, "ci_low": self.ci_low, "ci_high": self.ci_high, "p_value": self.p_value, "n": self.n}


def paired_test(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> PairedTest:
    """Mean of ``a − b`` over seeds, its percentile-bootstrap CI and the two-sided Wilcoxon
    signed-rank p-value (1.0 when every difference is zero)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired_test needs two equal-length 1-D arrays of ≥ 2 seeds, got {a.shape} and {b.shape}")
    d = a - b
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.percentile(boot, [50 * (1 - confidence), 50 * (1 + confidence)])
    p = 1.0 if np.all(d == 0) else float(stats.wilcoxon(a, b).pvalue)
    return PairedTest(float(d.mean()), float(lo), float(hi), p, len(d))


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`loop_verdict`; ``label`` is one of ``pool leaks``, ``rises without
    feedback``, ``more than doubled``, ``consistent with doubling``, ``improves, less than
    doubled``, ``no improvement shown``."""

    label: str
    doubled: bool
    beats_open_loop: bool
    control_improves: bool
    text: str


def loop_verdict(*, ratio: tuple[float, float, float], control_ratio: tuple[float, float, float],
                 closed_vs_open: PairedTest, control_closed_vs_open: PairedTest, alpha: float = 0.05,
                 doubling: float = DOUBLING, open_ratio: tuple[float, float, float] | None = None,
                 first_vs_random: tuple[float, float] | None = None) -> Verdict:
    """The verdict rule, fixed before looking at results.

    ``ratio``/``control_ratio``: (point, CI low, CI high) of the last/first-cycle success ratio of
    the real model and of the provenance-only control. The control **improves** if its ratio CI
    lies above 1 or its closed loop beats its open loop (CI of the difference above 0 and
    p < ``alpha``): then the pool leaks and no chemistry claim is made. The loop **beats the open
    loop** if the closed−open CI lies above 0 with p < ``alpha``; a rising success rate (ratio CI
    above 1) that does not beat the open loop is not credited to feedback. Otherwise success
    **more than doubled** if the ratio CI lies above ``doubling``; ``consistent with doubling``
    if the point estimate reaches ``doubling`` and the CI lies above 1.

    Caveats that do not change the label are added to the text: ``open_ratio`` (the open loop's
    ratio, CI above 1: part of the rise needs no feedback) and ``first_vs_random`` (first-cycle
    success and random picking: a first cycle below random inflates any last/first ratio).
    """
    point, lo, hi = ratio
    control_up = control_ratio[1] > 1 or (control_closed_vs_open.ci_low > 0 and control_closed_vs_open.p_value < alpha)
    beats = closed_vs_open.ci_low > 0 and closed_vs_open.p_value < alpha
    doubled = lo > doubling
    fmt = f"{point:.2f} [{lo:.2f}, {hi:.2f}]"
    diff = (f"closed − open {closed_vs_open.mean_diff:+.1f} discoveries [{closed_vs_open.ci_low:+.1f}, "
            f"{closed_vs_open.ci_high:+.1f}], Wilcoxon p = {closed_vs_open.p_value:.2g}")
    if control_up:
        label = "pool leaks"
        text = (f"The pool leaks: the provenance-only control also improves (ratio {control_ratio[0]:.2f} "
                f"[{control_ratio[1]:.2f}, {control_ratio[2]:.2f}]), so the real model's ratio {fmt} cannot be "
                "credited to chemistry.")
    elif lo > 1 and not beats:
        label = "rises without feedback"
        text = (f"Not credited to the loop: success rises (ratio {fmt}) but the closed loop does not beat the "
                f"open loop ({diff}); the rise comes from the ranking, not from feedback.")
    elif doubled:
        label = "more than doubled"
        text = f"Reproduced: success more than doubled, ratio {fmt}; {diff}; the provenance-only control stays flat."
    elif point >= doubling and lo > 1:
        label = "consistent with doubling"
        text = (f"Consistent with the paper: ratio {fmt} (the CI does not exclude less than doubling); {diff}; "
                "the provenance-only control stays flat.")
    elif lo > 1:
        label = "improves, less than doubled"
        text = f"Not reproduced as stated: success improves, ratio {fmt}, but is not shown to double; {diff}."
    else:
        label = "no improvement shown"
        text = f"Not reproduced: the success ratio {fmt} is indistinguishable from 1; {diff}."
    if label != "pool leaks" and open_ratio is not None and open_ratio[1] > 1:
        text += (f" Caveat: the open loop alone rises too (ratio {open_ratio[0]:.2f} [{open_ratio[1]:.2f}, "
                 f"{open_ratio[2]:.2f}]); only the closed − open difference is feedback.")
    if label != "pool leaks" and first_vs_random is not None and first_vs_random[0] < first_vs_random[1]:
        text += (f" Cycle 1 ({first_vs_random[0]:.3f}) is below random picking ({first_vs_random[1]:.3f}): the initial "
                 "model never saw the pool's kind of negatives, so part of the ratio is recovery from that.")
    return Verdict(label, doubled, beats, control_up, text)
