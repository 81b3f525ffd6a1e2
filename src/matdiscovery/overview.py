"""Dataset summaries for the data-overview report: element frequencies, duplicates, sizes."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import pandas as pd
from pymatgen.core import Composition, Structure

from matdiscovery.datasets import BadRow
from matdiscovery.geometry import min_interatomic_distance


def element_frequencies(compositions: Iterable[Composition]) -> pd.Series:
    """Number of compositions containing each element, most frequent first."""
    counts = Counter(el.symbol for comp in compositions for el in comp.elements)
    return pd.Series(counts, name="n_compositions").sort_values(ascending=False)


def skipped_by_reason(skipped: Sequence[BadRow]) -> pd.Series:
    """Count malformed rows by reason class (the text before the first quoted value)."""
    def reason_class(bad: BadRow) -> str:
        text = bad.reason.split(": ", 1)[-1]
        # 'formula 'X': unknown element symbol 'Oz'' -> 'unknown element symbol'
        text = text.split("': ", 1)[-1]
        return text.split(" '")[0].split(" (")[0].split(" [")[0]

    return pd.Series(Counter(reason_class(b) for b in skipped), name="rows", dtype=int).sort_values(ascending=False)


def duplicate_compositions(frame: pd.DataFrame, value: str, composition: str = "composition") -> pd.DataFrame:
    """Group rows by reduced composition: count, mean/min/max/std of ``value`` for groups of ≥ 2.

    Compositions are compared by their reduced formula with amounts rounded to 3 decimals.
    """
    keys = [_round_formula(c) for c in frame[composition]]
    grouped = frame.assign(_key=keys).groupby("_key")[value]
    stats = grouped.agg(["count", "mean", "min", "max", "std"])
    return stats[stats["count"] > 1].sort_values("count", ascending=False)


def _round_formula(comp: Composition) -> str:
    frac = comp.fractional_composition
    return " ".join(f"{el.symbol}{amt:.3f}" for el, amt in sorted(frac.items(), key=lambda kv: kv[0].symbol))


def structure_sizes(structures: Sequence[Structure]) -> pd.DataFrame:
    """Per structure: ``n_sites``, ``volume_per_atom`` (Å^3), ``density`` (g/cm^3), ``n_elements``,
    ``min_distance`` (Å, shortest interatomic distance including periodic images)."""
    rows = [{
        "n_sites": len(s),
        "volume_per_atom": s.volume / len(s),
        "density": float(s.density),
        "n_elements": len(s.composition.elements),
        "min_distance": min_interatomic_distance(s),
    } for s in structures]
    return pd.DataFrame(rows)
