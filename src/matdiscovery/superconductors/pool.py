"""Candidate pool and the simulated lab (oracle).

The pool holds real materials only:

* **hidden SuperCon families**: every composition of the family groups removed from the
  initial training set (:func:`choose_hidden_groups`); the oracle knows their measured Tc.
* **JARVIS-DFT compounds** with ``ehull ≤ ehull_max`` (eV/atom), 2–``max_elements`` elements,
  whose composition key is not in SuperCon. They are **assumed non-superconducting** (Tc = 0 K
  for the oracle), as in the literature; some surely superconduct below the threshold, a few
  above it, so our success rates are a lower bound for them.

The oracle reveals a candidate's Tc only when the loop picks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from matdiscovery.composition import MAX_Z
from matdiscovery.superconductors.cleaning import composition_key


def jarvis_candidates(jarvis: pd.DataFrame, supercon_keys: set[str], ehull_max: float = 0.05,
                      max_elements: int = 4) -> pd.DataFrame:
    """Distinct low-ehull JARVIS compositions not in SuperCon (lowest-ehull polymorph kept).

    Columns ``key``, ``jid``, ``formula``, ``composition``, ``ehull`` (eV/atom),
    ``chemical_system``, ``n_elements``.
    """
    if ehull_max < 0:
        raise ValueError(f"ehull_max must be ≥ 0 eV/atom, got {ehull_max}")
    sel = jarvis[(jarvis["ehull"] <= ehull_max) & (jarvis["nelements"] >= 2) & (jarvis["nelements"] <= max_elements)]
    sel = sel[[max(e.Z for e in c.elements) <= MAX_Z for c in sel["composition"]]]
    sel = sel.assign(key=[composition_key(c) for c in sel["composition"]])
    sel = sel.sort_values(["ehull", "jid"]).drop_duplicates("key", keep="first")
    sel = sel[~sel["key"].isin(supercon_keys)]
    return sel.assign(
        chemical_system=[c.chemical_system for c in sel["composition"]],
        n_elements=sel["nelements"].astype(int),
    )[["key", "jid", "formula", "composition", "ehull", "chemical_system", "n_elements"]].reset_index(drop=True)


def eligible_groups(supercon: pd.DataFrame, threshold_K: float, min_size: int = 20, max_size: int = 1500,
                    min_positive: int = 5, exclude: tuple[str, ...] = ("cuprate",)) -> list[str]:
    """Family groups that may be hidden: ``min_size ≤ size ≤ max_size`` compositions, at least
    ``min_positive`` with Tc ≥ threshold, not in ``exclude`` (cuprates are half of SuperCon)."""
    stats = supercon.groupby("group").agg(n=("tc_K", "size"), pos=("tc_K", lambda t: int((t >= threshold_K).sum())))
    ok = stats[(stats.n >= min_size) & (stats.n <= max_size) & (stats.pos >= min_positive)]
    return sorted(g for g in ok.index if g not in exclude)


def choose_hidden_groups(eligible: list[str], n_random: int, always: tuple[str, ...] | list[str], seed: int) -> list[str]:
    """``always`` plus ``n_random`` groups drawn (seeded) from the rest of ``eligible``."""
    missing = [g for g in always if g not in eligible]
    if missing:
        raise ValueError(f"always-hidden group(s) {missing} are not eligible; eligible: {eligible}")
    rest = [g for g in eligible if g not in always]
    if n_random > len(rest):
        raise ValueError(f"asked to hide {n_random} random groups but only {len(rest)} are eligible")
    rng = np.random.default_rng(seed)
    return list(always) + sorted(rng.choice(rest, size=n_random, replace=False).tolist())


@dataclass
class Scenario:
    """One seeded discovery scenario over a fixed feature matrix.

    ``X`` rows are SuperCon compositions first (``n_supercon``), then JARVIS candidates.
    ``train_idx``: initial training rows (visible SuperCon); ``pool_idx``: candidate rows (hidden
    SuperCon families + JARVIS); ``tc_K``: the oracle's Tc for every row (0 K for JARVIS);
    ``family``: group label (``'jarvis'`` for JARVIS rows); ``system``: chemical system.
    """

    X: np.ndarray
    tc_K: np.ndarray
    family: np.ndarray
    system: np.ndarray
    train_idx: np.ndarray
    pool_idx: np.ndarray
    hidden_groups: list[str]
    threshold_K: float

    def oracle(self, idx: np.ndarray) -> np.ndarray:
        """The lab: measured Tc (K) of the picked rows ``idx`` (0 K for JARVIS candidates)."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.tc_K)):
            raise IndexError(f"oracle asked for rows outside 0..{len(self.tc_K) - 1}")
        return self.tc_K[idx]

    @property
    def pool_positive_rate(self) -> float:
        """Fraction of the pool with Tc ≥ threshold: the success rate of random picking."""
        return float((self.tc_K[self.pool_idx] >= self.threshold_K).mean())


def make_scenario(X_supercon: np.ndarray, supercon: pd.DataFrame, X_jarvis: np.ndarray, jarvis: pd.DataFrame,
                  hidden_groups: list[str], threshold_K: float, jarvis_limit: int | None = None,
                  seed: int = 0) -> Scenario:
    """Build a :class:`Scenario`: hide ``hidden_groups`` from training and put them, with the
    JARVIS candidates (optionally a seeded subsample of ``jarvis_limit``), in the pool."""
    if len(X_supercon) != len(supercon) or len(X_jarvis) != len(jarvis):
        raise ValueError("feature matrices and tables differ in length")
    unknown = set(hidden_groups) - set(supercon["group"])
    if unknown:
        raise ValueError(f"hidden group(s) not in SuperCon: {sorted(unknown)}")
    rng = np.random.default_rng(seed)
    j_rows = np.arange(len(jarvis))
    if jarvis_limit is not None and jarvis_limit < len(jarvis):
        j_rows = np.sort(rng.choice(j_rows, size=jarvis_limit, replace=False))
    X = np.vstack([X_supercon, X_jarvis[j_rows]]).astype(np.float32)  # trees predict in float32
    n_s = len(supercon)
    hidden = supercon["group"].isin(hidden_groups).to_numpy()
    return Scenario(
        X=X,
        tc_K=np.concatenate([supercon["tc_K"].to_numpy(float), np.zeros(len(j_rows))]),
        family=np.concatenate([supercon["group"].to_numpy(object), np.full(len(j_rows), "jarvis", dtype=object)]),
        system=np.concatenate([supercon["chemical_system"].to_numpy(object), jarvis["chemical_system"].to_numpy(object)[j_rows]]),
        train_idx=np.flatnonzero(~hidden),
        pool_idx=np.concatenate([np.flatnonzero(hidden), n_s + np.arange(len(j_rows))]),
        hidden_groups=list(hidden_groups),
        threshold_K=threshold_K,
    )
