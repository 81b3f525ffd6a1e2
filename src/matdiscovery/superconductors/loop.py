"""The simulated discovery loop and its open-loop baseline.

Closed loop, each cycle: fit the classifier ensemble on the training rows → score the
remaining pool → pick ``k`` (acquisition function) → the oracle reveals their Tc → the picks
join the training set with their measured labels. Open loop: the same acquisition on the
scores of the initial model only, ``k`` picks per cycle, no feedback. Both start from the same
initial model (:func:`run_seed` fits it once and shares it).

Success is counted two ways: Tc ≥ ``threshold_K`` (the model's target) and, as in the paper, any
superconductor (Tc > 0 K; ``threshold = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from matdiscovery.progress import progress_bar
from matdiscovery.superconductors.acquisition import acquire
from matdiscovery.superconductors.models import EnsembleConfig, TcClassifierEnsemble, labels
from matdiscovery.superconductors.pool import Scenario

#: Success threshold meaning "any superconductor" (Tc > 0 K), the paper's definition.
ANY_SUPERCONDUCTOR = 0.0


def is_success(tc_K: np.ndarray, threshold_K: float) -> np.ndarray:
    """Tc ≥ ``threshold_K``; with ``threshold_K = 0`` any superconductor (Tc > 0 K)."""
    tc = np.asarray(tc_K, dtype=float)
    return tc > 0 if threshold_K <= 0 else tc >= threshold_K


@dataclass
class LoopResult:
    """One run: the rows picked per cycle and what the oracle said about them."""

    scenario: str
    model: str
    acquisition: str
    closed: bool
    seed: int
    threshold_K: float
    picks: list[np.ndarray]
    tc_revealed: list[np.ndarray]
    components: list[np.ndarray] = field(default_factory=list)

    def success_rate(self, threshold_K: float | None = None) -> np.ndarray:
        """Fraction of each cycle's picks that succeed (default: the loop's ``threshold_K``)."""
        t = self.threshold_K if threshold_K is None else threshold_K
        return np.array([float(is_success(tc, t).mean()) for tc in self.tc_revealed])

    def discoveries(self, threshold_K: float | None = None) -> np.ndarray:
        """Cumulative number of successful picks at the end of each cycle."""
        t = self.threshold_K if threshold_K is None else threshold_K
        return np.cumsum([int(is_success(tc, t).sum()) for tc in self.tc_revealed])

    def rediscovered_families(self, threshold_K: float | None = None) -> np.ndarray:
        """Cumulative number of hidden components with at least one successful pick."""
        t = self.threshold_K if threshold_K is None else threshold_K
        found, out = set(), []
        for comp, tc in zip(self.components, self.tc_revealed):
            found.update(c for c in comp[is_success(tc, t)] if c != "jarvis")
            out.append(len(found))
        return np.array(out)


def _fit(scenario: Scenario, rows: np.ndarray, tc: np.ndarray, threshold_K: float, ensemble: EnsembleConfig,
         seed: int) -> TcClassifierEnsemble:
    return ensemble.make(seed).fit(scenario.X[rows], labels(tc, threshold_K))


def run_loop(scenario: Scenario, acquisition: str, *, ensemble: EnsembleConfig, n_cycles: int, k: int, closed: bool,
             threshold_K: float, beta: float, seed: int, model: str = "chemistry",
             initial: tuple[np.ndarray, np.ndarray] | None = None) -> LoopResult:
    """``n_cycles`` of ``k`` picks on ``scenario`` (closed loop, or open loop if ``closed=False``).

    ``initial``: the initial model's ``(mean, std)`` over ``scenario.pool_idx`` (fitted here if
    not given); ``model`` names the feature set in the result (``"chemistry"``, ``"provenance"``).
    """
    if n_cycles < 1 or k < 1:
        raise ValueError(f"n_cycles and k must be ≥ 1, got {n_cycles} and {k}")
    if k * n_cycles > len(scenario.pool_idx):
        raise ValueError(f"{n_cycles} cycles × {k} picks exceed the pool of {len(scenario.pool_idx)}")
    rng = np.random.default_rng(seed)
    train = np.array(scenario.train_idx)
    train_tc = scenario.tc_K[train]
    pool = np.array(scenario.pool_idx)
    if initial is None:
        initial = _fit(scenario, train, train_tc, threshold_K, ensemble, seed * 1000).predict_dist(scenario.X[pool])
    mean, std = (np.asarray(a) for a in initial)
    if mean.shape != (len(pool),) or std.shape != (len(pool),):
        raise ValueError(f"initial scores must have one value per pool row ({len(pool)})")
    picks, revealed, comps = [], [], []
    for cycle in range(n_cycles):
        if cycle and closed:
            model_c = _fit(scenario, train, train_tc, threshold_K, ensemble, seed * 1000 + cycle)
            mean, std = model_c.predict_dist(scenario.X[pool])
        chosen = acquire(acquisition, mean, std, k, rng, beta=beta, systems=scenario.system[pool])
        rows = pool[chosen]
        tc = scenario.oracle(rows)
        picks.append(rows)
        revealed.append(tc)
        comps.append(scenario.component[rows])
        keep = np.ones(len(pool), dtype=bool)
        keep[chosen] = False
        pool, mean, std = pool[keep], mean[keep], std[keep]
        train = np.concatenate([train, rows])
        train_tc = np.concatenate([train_tc, tc])
    return LoopResult(scenario.name, model, acquisition, closed, seed, threshold_K, picks, revealed, comps)


def run_seed(scenario: Scenario, acquisitions: list[str] | tuple[str, ...], *, seed: int, ensemble: EnsembleConfig,
             n_cycles: int, k: int, threshold_K: float, beta: float, model: str = "chemistry") -> list[LoopResult]:
    """Closed and open loops of every acquisition on one scenario, sharing the initial model."""
    kw = dict(ensemble=ensemble, n_cycles=n_cycles, k=k, threshold_K=threshold_K, beta=beta, seed=seed, model=model)
    initial = _fit(scenario, scenario.train_idx, scenario.tc_K[scenario.train_idx], threshold_K, ensemble,
                   seed * 1000).predict_dist(scenario.X[scenario.pool_idx])
    return [run_loop(scenario, acq, closed=closed, initial=initial, **kw)
            for acq in acquisitions for closed in (True, False)]


def final_training_set(scenario: Scenario, result: LoopResult) -> tuple[np.ndarray, np.ndarray]:
    """Rows and Tc (K) the model would train on after ``result``'s last cycle (closed loop)."""
    rows = np.concatenate([scenario.train_idx, *result.picks])
    return rows, scenario.tc_K[rows]


def run_seeds(scenarios: dict[int, Scenario], acquisitions: list[str] | tuple[str, ...], *, model: str = "chemistry",
              progress: bool = True, **kwargs) -> list[LoopResult]:
    """:func:`run_seed` for every seed's scenario (keyword arguments passed on)."""
    out: list[LoopResult] = []
    name = next(iter(scenarios.values())).name if scenarios else ""
    for seed, scenario in progress_bar(scenarios.items(), desc=f"{name} {model} loops", progress=progress):
        out += run_seed(scenario, acquisitions, seed=seed, model=model, **kwargs)
    return out


def results_frame(results: list[LoopResult], thresholds: dict[str, float]) -> pd.DataFrame:
    """Long table: one row per (loop, cycle) with success rate, cumulative discoveries and
    re-discovered compounds/families for each named success threshold (``{"tc10": 10.0, "any": 0.0}``)."""
    rows = []
    for r in results:
        per = {name: (r.success_rate(t), r.discoveries(t), r.rediscovered_families(t)) for name, t in thresholds.items()}
        for c in range(len(r.picks)):
            row = {"scenario": r.scenario, "model": r.model, "acquisition": r.acquisition,
                   "mode": "closed" if r.closed else "open", "seed": r.seed, "cycle": c + 1}
            for name, (sr, disc, fam) in per.items():
                row[f"success_rate_{name}"] = sr[c]
                row[f"discoveries_{name}"] = disc[c]
                row[f"families_{name}"] = fam[c]
            rows.append(row)
    return pd.DataFrame(rows)
