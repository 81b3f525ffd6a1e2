"""Candidate pool and the simulated lab (oracle), over the compound table.

Rows are the ordered compounds of :func:`~matdiscovery.superconductors.compounds.compound_table`:
SuperCon-derived parents (label: best Tc of the doping family, 0 K for measured non-superconductors)
and JARVIS-DFT negatives (assumed Tc = 0 K). A :class:`Scenario` hides SuperCon-derived compounds
from the initial training set and puts them in the pool with style-matched JARVIS negatives:

* **family scenario** (:func:`family_scenario`): whole similarity components
  (:mod:`~matdiscovery.superconductors.grouping`) are hidden;
* **time scenario** (:func:`time_scenario`): near-duplicate components first reported in or
  after a year are hidden (train on what was known before it).

Hidden SuperCon-derived compounds are matched on their anonymized formula with ``ratio`` JARVIS
negatives each (:func:`~matdiscovery.superconductors.style.match_formula_style`); those without
enough JARVIS partners are left out of both training and pool (``n_unmatched``). The oracle
reveals a candidate's Tc only when the loop picks it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from matdiscovery.composition import MAX_Z
from matdiscovery.superconductors.cleaning import composition_key
from matdiscovery.superconductors.style import match_formula_style


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


def eligible_components(table: pd.DataFrame, components: np.ndarray, threshold_K: float, min_size: int = 10,
                        max_size: int = 600, min_positive: int = 5, exclude: tuple[str, ...] | list[str] = ("cuprate",)) -> list[str]:
    """Components (of the SuperCon-derived rows) that may be hidden: ``min_size ≤ size ≤
    max_size`` compounds, at least ``min_positive`` with Tc ≥ ``threshold_K``, not in ``exclude``."""
    sup = (table["source"] == "supercon").to_numpy()
    stats = pd.DataFrame({"c": np.asarray(components)[sup], "pos": table["tc_K"].to_numpy()[sup] >= threshold_K})
    agg = stats.groupby("c")["pos"].agg(["size", "sum"])
    ok = agg[(agg["size"] >= min_size) & (agg["size"] <= max_size) & (agg["sum"] >= min_positive)]
    return sorted(c for c in ok.index if c not in set(exclude))


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
    """One seeded discovery scenario over the compound table.

    ``X``: features of every table row (float32); ``tc_K``: the oracle's Tc (K); ``source``:
    ``"supercon"``/``"jarvis"``; ``component``: similarity component (``"jarvis"`` for JARVIS);
    ``system``: chemical system; ``train_idx``: initial training rows (visible SuperCon-derived
    compounds); ``pool_idx``: candidates (matched hidden compounds + JARVIS negatives);
    ``hidden``: what was hidden (component names, or ``"first reported ≥ Y"``); ``n_unmatched``:
    hidden compounds left out for lack of style-matched negatives.
    """

    name: str
    X: np.ndarray
    tc_K: np.ndarray
    source: np.ndarray
    component: np.ndarray
    system: np.ndarray
    train_idx: np.ndarray
    pool_idx: np.ndarray
    hidden: list[str]
    n_unmatched: int = 0

    def oracle(self, idx: np.ndarray) -> np.ndarray:
        """The lab: measured Tc (K) of the picked rows ``idx`` (0 K for JARVIS negatives)."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.tc_K)):
            raise IndexError(f"oracle asked for rows outside 0..{len(self.tc_K) - 1}")
        return self.tc_K[idx]

    def pool_positive_rate(self, threshold_K: float) -> float:
        """Fraction of the pool with Tc ≥ ``threshold_K``: the success rate of random picking
        (``threshold_K = 0`` counts any superconductor, Tc > 0 K)."""
        tc = self.tc_K[self.pool_idx]
        return float((tc > 0).mean() if threshold_K <= 0 else (tc >= threshold_K).mean())

    def with_known_negatives(self, n: int, seed: int) -> "Scenario":
        """The same pool and oracle, with ``n`` JARVIS negatives from outside the pool added to the
        initial training set (an initial model that has seen the kind of negatives the pool holds);
        named ``<name>_informed``."""
        outside = np.setdiff1d(np.flatnonzero(self.source == "jarvis"), self.pool_idx)
        if not 0 <= n <= len(outside):
            raise ValueError(f"n must be in 0..{len(outside)} (JARVIS rows outside the pool), got {n}")
        extra = np.random.default_rng(seed).choice(outside, size=n, replace=False)
        return replace(self, name=f"{self.name}_informed", train_idx=np.sort(np.concatenate([self.train_idx, extra])))

    def with_features(self, X: np.ndarray, name: str | None = None) -> "Scenario":
        """The same split and oracle with other features (e.g. the provenance-only control)."""
        if len(X) != len(self.tc_K):
            raise ValueError(f"features have {len(X)} rows, the scenario {len(self.tc_K)}")
        return replace(self, X=np.asarray(X, dtype=np.float32), name=name or self.name)


def _scenario(name: str, table: pd.DataFrame, X: np.ndarray, components: np.ndarray, hidden_mask: np.ndarray,
              hidden: list[str], anonymized: np.ndarray, ratio: int, seed: int) -> Scenario:
    if len(X) != len(table) or len(components) != len(table) or len(anonymized) != len(table):
        raise ValueError("features, components and anonymized formulas must have one row per table row")
    sup = (table["source"] == "supercon").to_numpy()
    jar = np.flatnonzero(~sup)
    hid = np.flatnonzero(sup & hidden_mask)
    rng = np.random.default_rng(seed)
    keep_s, keep_j = match_formula_style(anonymized[hid], anonymized[jar], ratio, rng)
    return Scenario(
        name=name, X=np.asarray(X, dtype=np.float32), tc_K=table["tc_K"].to_numpy(float),
        source=table["source"].to_numpy(object), component=np.asarray(components, dtype=object),
        system=table["chemical_system"].to_numpy(object), train_idx=np.flatnonzero(sup & ~hidden_mask),
        pool_idx=np.sort(np.concatenate([hid[keep_s], jar[keep_j]])), hidden=list(hidden),
        n_unmatched=int(len(hid) - len(keep_s)),
    )


def family_scenario(table: pd.DataFrame, X: np.ndarray, components: np.ndarray, hidden: list[str],
                    anonymized: np.ndarray, ratio: int = 2, seed: int = 0) -> Scenario:
    """Hide the SuperCon-derived compounds of the ``hidden`` components (see module doc)."""
    unknown = set(hidden) - set(np.asarray(components)[(table["source"] == "supercon").to_numpy()])
    if unknown:
        raise ValueError(f"hidden component(s) not among the SuperCon-derived compounds: {sorted(unknown)}")
    mask = np.isin(np.asarray(components, dtype=object), list(hidden))
    return _scenario("family", table, X, components, mask, hidden, anonymized, ratio, seed)


def time_scenario(table: pd.DataFrame, X: np.ndarray, components: np.ndarray, year: int, anonymized: np.ndarray,
                  ratio: int = 2, seed: int = 0) -> Scenario:
    """Hide the near-duplicate ``components`` whose earliest report (``first_year``) is ≥ ``year``;
    components without any dated compound stay in training."""
    years = pd.Series(table["first_year"].astype("Float64").to_numpy(float, na_value=np.nan))
    first = years.groupby(np.asarray(components, dtype=object)).transform("min").to_numpy()
    sup = (table["source"] == "supercon").to_numpy()
    mask = sup & (first >= year)
    if not mask.any():
        raise ValueError(f"no SuperCon-derived compound first reported in or after {year}")
    return _scenario("time", table, X, components, mask, [f"first reported ≥ {year}"], anonymized, ratio, seed)
