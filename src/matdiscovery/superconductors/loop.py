"""The simulated discovery loop, its open-loop baseline, and summaries over seeds.

Closed loop, each cycle: fit the classifier ensemble on the training rows → score the
remaining pool → pick ``k`` (acquisition function) → the oracle reveals their Tc → the picks
join the training set with their measured labels. Open loop: the same acquisition on the
scores of the initial model only, ``k`` picks per cycle, no feedback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from matdiscovery.superconductors.acquisition import acquire
from matdiscovery.superconductors.models import TcClassifierEnsemble, labels
from matdiscovery.superconductors.pool import Scenario


@dataclass
class LoopResult:
    """One run: the rows picked per cycle and what the oracle said."""

    acquisition: str
    closed: bool
    seed: int
    picks: list[np.ndarray]
    tc_revealed: list[np.ndarray]
    threshold_K: float
    hidden_groups: list[str]
    pick_groups: list[np.ndarray] = field(default_factory=list)

    @property
    def success_rate(self) -> np.ndarray:
        """Fraction of each cycle's picks with Tc ≥ threshold."""
        return np.array([float((t >= self.threshold_K).mean()) for t in self.tc_revealed])

    @property
    def cumulative_discoveries(self) -> np.ndarray:
        return np.cumsum([int((t >= self.threshold_K).sum()) for t in self.tc_revealed])

    @property
    def rediscovered_groups(self) -> list[str]:
        """Hidden family groups with at least one successful pick."""
        found = set()
        for g, t in zip(self.pick_groups, self.tc_revealed):
            found.update(g[t >= self.threshold_K].tolist())
        return sorted(found & set(self.hidden_groups))

    @property
    def rediscovered_by_cycle(self) -> np.ndarray:
        """Number of hidden groups re-discovered by the end of each cycle."""
        hidden, found, counts = set(self.hidden_groups), set(), []
        for g, t in zip(self.pick_groups, self.tc_revealed):
            found.update(g[t >= self.threshold_K].tolist())
            counts.append(len(found & hidden))
        return np.array(counts)


def run_loop(scenario: Scenario, acquisition: str = "ucb", n_cycles: int = 4, k: int = 40, closed: bool = True,
             beta: float = 1.0, n_estimators: int = 100, seed: int = 0, n_jobs: int = 2,
             return_model: bool = False) -> LoopResult | tuple[LoopResult, TcClassifierEnsemble]:
    """Run ``n_cycles`` of ``k`` picks on ``scenario`` (closed loop, or open loop if ``closed=False``).

    With ``return_model`` also returns the last fitted classifier (trained on the initial data
    plus every revealed pick in closed mode).
    """
    if n_cycles < 1:
        raise ValueError(f"n_cycles must be ≥ 1, got {n_cycles}")
    if k * n_cycles > len(scenario.pool_idx):
        raise ValueError(f"{n_cycles} cycles × {k} picks exceed the pool of {len(scenario.pool_idx)}")
    rng = np.random.default_rng(seed)
    train = list(scenario.train_idx)
    pool = np.array(scenario.pool_idx)
    train_tc = list(scenario.tc_K[scenario.train_idx])
    picks, revealed, groups = [], [], []
    model, mean, std = None, None, None
    for cycle in range(n_cycles):
        if model is None or closed:
            model = TcClassifierEnsemble(n_estimators=n_estimators, seed=seed * 1000 + cycle, n_jobs=n_jobs)
            model.fit(scenario.X[train], labels(np.array(train_tc), scenario.threshold_K))
            mean, std = model.predict_dist(scenario.X[pool])
        chosen = acquire(acquisition, mean, std, k, rng, beta=beta, systems=scenario.system[pool])
        rows = pool[chosen]
        tc = scenario.oracle(rows)
        picks.append(rows)
        revealed.append(tc)
        groups.append(scenario.family[rows])
        keep = np.ones(len(pool), dtype=bool)
        keep[chosen] = False
        pool, mean, std = pool[keep], mean[keep], std[keep]
        train += rows.tolist()
        train_tc += tc.tolist()
    result = LoopResult(acquisition, closed, seed, picks, revealed, scenario.threshold_K,
                        list(scenario.hidden_groups), groups)
    if return_model:
        if closed:  # refit on everything revealed, as the next cycle would
            model = TcClassifierEnsemble(n_estimators=n_estimators, seed=seed * 1000 + n_cycles, n_jobs=n_jobs)
            model.fit(scenario.X[train], labels(np.array(train_tc), scenario.threshold_K))
        return result, model
    return result


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and Student-t confidence interval over axis 0 (seeds)."""
    v = np.asarray(values, dtype=float)
    if v.shape[0] < 2:
        m = v.mean(axis=0)
        return m, m, m
    m = v.mean(axis=0)
    half = stats.t.ppf(0.5 + confidence / 2, v.shape[0] - 1) * v.std(axis=0, ddof=1) / np.sqrt(v.shape[0])
    return m, m - half, m + half


def ratio_ci(first: np.ndarray, last: np.ndarray, n_boot: int = 2000, seed: int = 0,
             confidence: float = 0.95) -> tuple[float, float, float]:
    """``mean(last) / mean(first)`` over seeds with a percentile bootstrap CI (resampling seeds)."""
    first, last = np.asarray(first, float), np.asarray(last, float)
    point = float(last.mean() / first.mean()) if first.mean() > 0 else float("inf")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(first), size=(n_boot, len(first)))
    f, l = first[idx].mean(axis=1), last[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(f > 0, l / np.where(f > 0, f, 1), np.inf)
    lo, hi = np.percentile(r, [50 * (1 - confidence), 50 * (1 + confidence)])
    return point, float(lo), float(hi)


def summarize(results: list[LoopResult]) -> pd.DataFrame:
    """Per (acquisition, mode, cycle): mean success rate with 95 % CI over seeds, cumulative
    discoveries, and mean number of re-discovered hidden groups (by the end of that cycle)."""
    rows = []
    keyed: dict[tuple[str, str], list[LoopResult]] = {}
    for r in results:
        keyed.setdefault((r.acquisition, "closed" if r.closed else "open"), []).append(r)
    for (acq, mode), rs in keyed.items():
        sr = np.stack([r.success_rate for r in rs])
        cum = np.stack([r.cumulative_discoveries for r in rs])
        redis = np.stack([r.rediscovered_by_cycle for r in rs])
        m, lo, hi = mean_ci(sr)
        cm, clo, chi = mean_ci(cum)
        for c in range(sr.shape[1]):
            rows.append({"acquisition": acq, "mode": mode, "cycle": c + 1, "n_seeds": len(rs),
                         "success_rate": m[c], "ci_low": lo[c], "ci_high": hi[c],
                         "cumulative_discoveries": cm[c], "cum_ci_low": clo[c], "cum_ci_high": chi[c],
                         "rediscovered_groups": redis[:, c].mean()})
    return pd.DataFrame(rows)


def improvement_table(results: list[LoopResult], seed: int = 0) -> pd.DataFrame:
    """Per (acquisition, mode): last/first-cycle success-rate ratio over seeds with a bootstrap
    95 % CI (:func:`ratio_ci`), mean discoveries over all cycles, and mean hidden groups
    re-discovered out of those hidden."""
    keyed: dict[tuple[str, bool], list[LoopResult]] = {}
    for r in results:
        keyed.setdefault((r.acquisition, r.closed), []).append(r)
    rows = []
    for (acq, closed), rs in keyed.items():
        first = np.array([r.success_rate[0] for r in rs])
        last = np.array([r.success_rate[-1] for r in rs])
        ratio, lo, hi = ratio_ci(first, last, seed=seed)
        rows.append({"acquisition": acq, "mode": "closed" if closed else "open",
                     "last/first success rate": ratio, "95% CI low": lo, "95% CI high": hi,
                     "discoveries (all cycles)": np.mean([r.cumulative_discoveries[-1] for r in rs]),
                     "hidden groups re-discovered": np.mean([len(r.rediscovered_groups) for r in rs]),
                     "hidden groups": np.mean([len(r.hidden_groups) for r in rs])})
    return pd.DataFrame(rows)


def run_seeds(scenarios: dict[int, Scenario], acquisitions: list[str] | tuple[str, ...], n_cycles: int = 4, k: int = 40,
              beta: float = 1.0, n_estimators: int = 100, n_jobs: int = 2, progress: bool = True) -> list[LoopResult]:
    """Closed and open loops for every seed's scenario and every acquisition function."""
    jobs = [(s, a, c) for s in scenarios for a in acquisitions for c in (True, False)]
    out = []
    for seed, acq, closed in tqdm(jobs, desc="loops", disable=not progress):
        out.append(run_loop(scenarios[seed], acq, n_cycles, k, closed, beta, n_estimators, seed, n_jobs))
    return out
