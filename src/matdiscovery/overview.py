"""Dataset summaries for the data-overview report (notebook 00): every dataset loaded once
(:func:`load_overview`), element frequencies, duplicates, structure sizes, headline metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd
from pymatgen.core import Composition, Structure

from matdiscovery import datasets
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


@dataclass
class DataOverview:
    """Every dataset of the store, loaded once with malformed rows counted (``attrs["skipped"]``),
    plus a seeded sample of crystal structures (``crystals``, one row per structure)."""

    supercon: pd.DataFrame
    stanev: pd.DataFrame
    jarvis: pd.DataFrame
    epc_tc: pd.DataFrame
    qm8: pd.DataFrame
    qm9: pd.DataFrame
    refs: list
    pgcgm_ids: pd.DataFrame
    crystals: pd.DataFrame

    def counts(self) -> pd.DataFrame:
        """Rows loaded and rows skipped as malformed, per dataset."""
        frames = {"SuperCon (NIMS)": self.supercon, "Stanev 2018": self.stanev, "JARVIS-DFT 3D": self.jarvis,
                  "JARVIS e-ph Tc": self.epc_tc, "QM8": self.qm8, f"QM9 (first {len(self.qm9):,} rows)": self.qm9,
                  "PGCGM training ids": self.pgcgm_ids, "crystal structures (sampled)": self.crystals}
        rows = {name: {"rows loaded": len(f), "rows skipped": len(f.attrs.get("skipped", []))} for name, f in frames.items()}
        rows["MP elemental refs"] = {"rows loaded": len(self.refs), "rows skipped": 0}
        return pd.DataFrame(rows).T

    def sizes(self) -> pd.DataFrame:
        """:func:`structure_sizes` of the sampled crystals, with their ``dataset``."""
        return pd.concat([structure_sizes(g["structure"]).assign(dataset=name)
                          for name, g in self.crystals.groupby("dataset")], ignore_index=True)

    def elemental_outliers(self, threshold: float = 0.5) -> pd.DataFrame:
        """JARVIS single-element entries with |formation energy| above ``threshold`` eV/atom (should be 0)."""
        j = self.jarvis
        return j[(j.nelements == 1) & (j.formation_energy_per_atom.abs() > threshold)].sort_values(
            "formation_energy_per_atom", ascending=False)

    def metrics(self) -> dict[str, float | int]:
        """Headline counts and values for ``metrics/00_data_overview.json`` (units in the key names)."""
        s, j = self.supercon, self.jarvis
        return {
            "n_supercon_rows": len(s), "n_supercon_skipped": len(s.attrs["skipped"]),
            "n_supercon_duplicate_compositions": len(duplicate_compositions(s, "tc_K")),
            "n_supercon_zero_tc": int((s.tc_K == 0).sum()), "supercon_tc_median_K": float(s.tc_K.median()),
            "n_supercon_tc_above_140K": int((s.tc_K > 140).sum()),
            "n_stanev_rows": len(self.stanev), "n_jarvis_rows": len(j), "n_jarvis_ternary": int((j.nelements == 3).sum()),
            "n_jarvis_mbj_gap": int(j.mbj_bandgap.notna().sum()),
            "jarvis_formation_energy_median_eV_per_atom": float(j.formation_energy_per_atom.median()),
            "jarvis_fraction_ehull_le_0p1": float((j.ehull <= 0.1).mean()),
            "n_jarvis_elemental_nonzero_formation_energy": len(self.elemental_outliers()),
            "n_qm8_rows": len(self.qm8), "n_pgcgm_training_ids": len(self.pgcgm_ids),
            "crystal_min_distance_A": float(self.sizes().min_distance.min()),
        }


def load_overview(*, sample_structures: int, qm9_rows: int = 5000) -> DataOverview:
    """Load every dataset (malformed rows skipped and counted) and the first ``sample_structures``
    structures of each crystal split."""
    crystals = pd.concat(
        [datasets.load_crystals(name, split, on_error="skip", limit=sample_structures).assign(dataset=name)
         for name, splits in datasets.CRYSTAL_DATASETS.items() for split in splits],
        ignore_index=True,
    )
    return DataOverview(
        supercon=datasets.load_supercon_nims(on_error="skip"), stanev=datasets.load_stanev2018(on_error="skip"),
        jarvis=datasets.load_jarvis_dft(on_error="skip"), epc_tc=datasets.load_jarvis_supercon_3d(),
        qm8=datasets.load_qm8(), qm9=datasets.load_qm9(limit=qm9_rows), refs=datasets.load_mp_elemental_references(),
        pgcgm_ids=datasets.load_pgcgm_training_ids(), crystals=crystals,
    )
