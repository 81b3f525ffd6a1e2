"""Ordered parent compounds: one formula style on both sides of the candidate pool.

SuperCon mostly records doped samples (``La1.85Sr0.15Cu1O4``, ``Nb3Sn0.91Al0.09``) while a
DFT database lists ordered compounds with integer stoichiometry (``La2CuO4``, ``Nb3Sn``). A pool
that mixes the two is separable by how a formula is written. Here every SuperCon measurement is
mapped to its **parent compound** (:func:`parent_compound`) and the study works on compounds:

* **label**: the highest Tc (K) measured on any doping variant of the parent (a parent whose
  family superconducts is never a "negative"); ``0`` for parents whose every variant was measured
  non-superconducting (``measured_negative``);
* **JARVIS negatives** are ordered DFT compounds that are neither a parent nor within composition
  L1 distance ``near_l1`` of a measured superconductor (doping variants of known superconductors
  are removed from the negative side, :func:`jarvis_negatives`).

Composition distance: L1 between atomic-fraction vectors (:func:`composition_l1`), in [0, 2].
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from matdiscovery.composition import MAX_Z
from matdiscovery.superconductors.cleaning import chemical_class, composition_key, family_group

#: Tolerance on an amount being an integer (atoms per formula unit).
INTEGER_TOL = 1e-3


def _fractions(amounts: dict) -> dict:
    total = float(sum(amounts.values()))
    return {str(el): float(a) / total for el, a in amounts.items()}


def _l1(fa: dict, fb: dict) -> float:
    return float(sum(abs(fa.get(el, 0.0) - fb.get(el, 0.0)) for el in fa.keys() | fb.keys()))


def composition_l1(a: Composition, b: Composition) -> float:
    """L1 distance between the atomic-fraction vectors of ``a`` and ``b`` (0 … 2)."""
    return _l1(_fractions(dict(a.items())), _fractions(dict(b.items())))


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def integer_multiplier(comp: Composition, max_multiplier: int = 4, tol: float = INTEGER_TOL) -> int:
    """Smallest ``m ≤ max_multiplier`` making every amount of ``comp`` an integer; 0 if none."""
    amounts = np.array(list(comp.values()), dtype=float)
    for m in range(1, max_multiplier + 1):
        if np.all(np.abs(amounts * m - np.round(amounts * m)) < tol * m):
            return m
    return 0


def parent_compound(comp: Composition, max_l1: float = 0.2, max_multiplier: int = 4) -> tuple[Composition | None, str]:
    """The ordered parent of a (possibly doped) composition and how it was found.

    1. ``"exact"``: the formula is integer as written: its reduced formula.
    2. ``"rounded"``: amounts as written rounded half-up to integers (``La1.85Sr0.15Cu1O4`` →
       La2CuO4, ``Y1Ba2Cu3O6.6`` → YBa2Cu3O7), accepted if within L1 ``max_l1`` of the original.
    3. ``"exact"`` again for ordered compounds written per atom (integer after ×2…×
       ``max_multiplier``: ``Nb0.75Sn0.25`` → Nb3Sn).
    4. ``(None, "no parent")``: solid solutions such as ``Mo0.39Ru0.61``.
    """
    if not isinstance(comp, Composition):
        raise TypeError(f"expected a pymatgen Composition, got {type(comp).__name__}")
    if max_l1 < 0:
        raise ValueError(f"max_l1 must be ≥ 0, got {max_l1}")
    amounts = dict(comp.items())
    rounded = {el: _round_half_up(float(a)) for el, a in amounts.items()}
    rounded = {el: a for el, a in rounded.items() if a > 0}
    if rounded:
        d = _l1(_fractions(amounts), _fractions(rounded))
        if d < 1e-9:
            return _reduced(rounded), "exact"
        if d <= max_l1:
            return _reduced(rounded), "rounded"
    m = integer_multiplier(comp, max_multiplier)
    if m > 1:
        return _reduced({el: round(float(a) * m) for el, a in amounts.items()}), "exact"
    return None, "no parent"


def _reduced(amounts: dict) -> Composition:
    """Integer amounts divided by their greatest common divisor."""
    g = math.gcd(*amounts.values())
    return Composition({el: a // g for el, a in amounts.items()})


@dataclass
class CompoundReport:
    """What happened to each SuperCon composition and each JARVIS candidate on the way to the
    compound table."""

    n_supercon_compositions: int
    n_measured_negative_rows: int
    parent_how: dict[str, int]
    n_outside_elements: int  # parents with 1 or > max_elements elements, or an element beyond Pu
    n_compounds_supercon: int
    n_measured_negative_compounds: int
    n_jarvis_candidates: int
    n_jarvis_is_supercon_parent: int
    n_jarvis_superconductor_variants: int
    n_jarvis_negatives: int
    jarvis_variant_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "jarvis_variant_examples"}


def _mode(values) -> str | None:
    vals = [v for v in values if isinstance(v, str) and v]
    return Counter(vals).most_common(1)[0][0] if vals else None


def _parents(compositions: Sequence[Composition], max_l1: float) -> tuple[list, list]:
    out = [parent_compound(c, max_l1) for c in compositions]
    return [p for p, _ in out], [h for _, h in out]


def within_l1(query: Sequence[Composition], reference: Sequence[Composition], radius: float,
              same_system: bool = False) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` with L1(``query[i]``, ``reference[j]``) < ``radius`` (and, with
    ``same_system``, the same set of elements).

    Exact, without comparing all pairs: an element with fraction ≥ ``radius`` in one composition
    must be present in the other, so candidates are looked up by those elements.
    """
    if not 0 < radius <= 1:
        raise ValueError(f"radius must be in (0, 1], got {radius}")
    ref = [_fractions(dict(c.items())) for c in reference]
    columns: dict[str, int] = {}
    index: dict[str, set[int]] = {}
    for j, f in enumerate(ref):
        for el in f:
            index.setdefault(el, set()).add(j)
            columns.setdefault(el, len(columns))
    dense = np.zeros((len(ref), len(columns) + 1))  # last column: mass on elements absent from reference
    for j, f in enumerate(ref):
        for el, x in f.items():
            dense[j, columns[el]] = x
    systems = [frozenset(f) for f in ref]
    pairs = []
    for i, comp in enumerate(query):
        fq = _fractions(dict(comp.items()))
        major = sorted((el for el, x in fq.items() if x >= radius), key=lambda el: len(index.get(el, ())))
        if major:
            cand = set(index.get(major[0], set()))
            for el in major[1:]:
                cand &= index.get(el, set())
        else:  # every fraction below the radius: any shared element
            cand = set().union(*(index.get(el, set()) for el in fq))
        if not cand:
            continue
        cand_idx = np.fromiter(cand, dtype=np.int64, count=len(cand))
        q = np.zeros(len(columns) + 1)
        for el, x in fq.items():
            q[columns[el] if el in columns else -1] += x
        d = np.abs(dense[cand_idx] - q).sum(axis=1)
        hits = cand_idx[d < radius]
        if same_system:
            key = frozenset(fq)
            hits = [j for j in hits if systems[j] == key]
        pairs += [(i, int(j)) for j in hits]
    return sorted(pairs)


def jarvis_negatives(candidates: pd.DataFrame, parent_keys: set[str], superconductors: Sequence[Composition],
                     near_l1: float = 0.1) -> tuple[pd.DataFrame, dict]:
    """JARVIS candidates (:func:`~matdiscovery.superconductors.pool.jarvis_candidates`) usable as
    assumed negatives: not a SuperCon parent and not within L1 < ``near_l1`` of any measured
    superconductor (Tc > 0 K, as written or as parent). Returns the kept rows and counts."""
    is_parent = candidates["key"].isin(parent_keys).to_numpy()
    near = np.zeros(len(candidates), dtype=bool)
    for i, _ in within_l1(list(candidates["composition"]), list(superconductors), near_l1):
        near[i] = True
    variant = near & ~is_parent
    kept = candidates.loc[~is_parent & ~near].reset_index(drop=True)
    return kept, {
        "n_is_parent": int(is_parent.sum()), "n_variants": int(variant.sum()),
        "examples": candidates.loc[variant, "formula"].head(12).tolist(),
    }


def compound_table(supercon: pd.DataFrame, measured_negatives: pd.DataFrame, jarvis: pd.DataFrame, *,
                   max_elements: int = 4, parent_max_l1: float = 0.2, near_l1: float = 0.1) -> tuple[pd.DataFrame, CompoundReport]:
    """One row per ordered compound with 2…``max_elements`` elements.

    ``supercon``: :func:`~matdiscovery.superconductors.cleaning.clean_supercon` output (one row per
    measured composition: ``composition``, ``tc_K``, ``family``, ``first_year``, ``oxygen_recovered``);
    ``measured_negatives``: compositions measured non-superconducting (Stanev et al. Tc = 0 K;
    ``composition``); ``jarvis``: JARVIS candidates (``key``, ``jid``, ``formula``,
    ``composition``, ``ehull``).

    Columns: ``key``, ``composition`` (parent, reduced), ``formula``, ``n_elements``,
    ``chemical_system``, ``tc_K`` (max over variants, K; 0 for measured negatives and JARVIS),
    ``source`` (``"supercon"`` or ``"jarvis"``), ``measured_negative``, ``n_variants``,
    ``exact`` (the parent itself was measured), ``first_year`` (earliest report, NA if unknown),
    ``family`` (SuperCon structure label, mode), ``oxygen_recovered``, ``chem_class``, ``group``.
    """
    if max_elements < 2:
        raise ValueError(f"max_elements must be ≥ 2, got {max_elements}")
    need = {"composition", "tc_K", "family", "first_year", "oxygen_recovered"}
    missing = need - set(supercon.columns)
    if missing:
        raise ValueError(f"compound_table: supercon table lacks column(s) {sorted(missing)}")
    sc_parents, sc_how = _parents(list(supercon["composition"]), parent_max_l1)
    neg_parents, neg_how = _parents(list(measured_negatives["composition"]), parent_max_l1)
    rows = pd.DataFrame({
        "parent": sc_parents + neg_parents,
        "how": sc_how + neg_how,
        "tc_K": np.concatenate([supercon["tc_K"].to_numpy(float), np.zeros(len(measured_negatives))]),
        "family": list(supercon["family"]) + [None] * len(measured_negatives),
        "first_year": pd.array(list(supercon["first_year"]) + [pd.NA] * len(measured_negatives), dtype="Int64"),
        "oxygen_recovered": np.concatenate([supercon["oxygen_recovered"].to_numpy(bool), np.zeros(len(measured_negatives), bool)]),
    })
    ok = rows["parent"].notna().to_numpy().copy()
    ok[ok] = [2 <= len(p.elements) <= max_elements and max(e.Z for e in p.elements) <= MAX_Z for p in rows.loc[ok, "parent"]]
    n_outside = int((rows["parent"].notna() & ~ok).sum())
    rows = rows.loc[ok].copy()
    rows["key"] = [composition_key(p) for p in rows["parent"]]
    rows["exact"] = rows["how"] == "exact"
    g = rows.groupby("key", sort=True)
    comp = g.agg(
        composition=("parent", "first"), tc_K=("tc_K", "max"), n_variants=("tc_K", "size"), exact=("exact", "any"),
        first_year=("first_year", "min"), family=("family", _mode), oxygen_recovered=("oxygen_recovered", "any"),
    ).reset_index()
    comp["family"] = comp["family"].astype(object).where(comp["family"].notna(), None)
    comp["measured_negative"] = comp["tc_K"] <= 0
    comp["source"] = "supercon"

    positives = [c for c, t in zip(supercon["composition"], supercon["tc_K"]) if t > 0]
    positives += list(comp.loc[comp["tc_K"] > 0, "composition"])
    neg, counts = jarvis_negatives(jarvis, set(comp["key"]), positives, near_l1)
    neg = neg[(neg["n_elements"] >= 2) & (neg["n_elements"] <= max_elements)]
    jar = pd.DataFrame({
        "key": neg["key"].to_numpy(), "composition": [_reduced({el: int(round(a)) for el, a in c.items()}) for c in neg["composition"]],
        "formula": neg["formula"].to_numpy(),
        "chemical_system": neg["chemical_system"].to_numpy(), "tc_K": 0.0, "n_variants": 0, "exact": True,
        "first_year": pd.array([pd.NA] * len(neg), dtype="Int64"), "family": None, "oxygen_recovered": False,
        "measured_negative": False, "source": "jarvis", "chem_class": None, "group": "jarvis",
    })
    comp["formula"] = [c.reduced_formula for c in comp["composition"]]
    comp["chemical_system"] = [c.chemical_system for c in comp["composition"]]
    comp["chem_class"] = [chemical_class(c, f) for c, f in zip(comp["composition"], comp["family"])]
    comp["group"] = [family_group(c, f, k) for c, f, k in zip(comp["composition"], comp["family"], comp["chem_class"])]
    table = pd.concat([comp, jar], ignore_index=True)
    table["n_elements"] = [len(c) for c in table["composition"]]
    report = CompoundReport(
        n_supercon_compositions=len(supercon), n_measured_negative_rows=len(measured_negatives),
        parent_how=dict(Counter(sc_how + neg_how)), n_outside_elements=n_outside,
        n_compounds_supercon=len(comp), n_measured_negative_compounds=int(comp["measured_negative"].sum()),
        n_jarvis_candidates=len(jarvis), n_jarvis_is_supercon_parent=counts["n_is_parent"],
        n_jarvis_superconductor_variants=counts["n_variants"], n_jarvis_negatives=len(jar),
        jarvis_variant_examples=counts["examples"],
    )
    cols = ["key", "composition", "formula", "n_elements", "chemical_system", "tc_K", "source", "measured_negative",
            "n_variants", "exact", "first_year", "family", "oxygen_recovered", "chem_class", "group"]
    return table[cols], report
