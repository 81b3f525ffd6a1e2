"""SuperCon cleaning: implausible rows, chemical-family labels, duplicate merging.

Input is :func:`matdiscovery.datasets.load_supercon_nims` (formulas already parsed with the
oxygen-variable rule of :mod:`matdiscovery.chemistry`: a trailing ``±x`` is dropped, a variable
in place of an amount such as ``Oz`` makes the row malformed). On top of that:

* **Implausible Tc**: ``tc_K > 165`` K without hydrogen/deuterium is dropped (the highest
  cuprate Tc, Hg-1223 under pressure, is ~164 K; the rows above it are misprints such as
  ``Er1Ba2Cu3O7-X`` at 275 K). Rows with an element beyond Pu (no element features) are dropped.
  Both are counted in :class:`CleaningReport`, like the loader's malformed rows (which include
  ``Oz``/``OX``/``OY`` rows: the oxygen content is unknown).
* **Unknown oxygen content** (``Y1Ba2Cu3Oz``, read with ``keep_oxygen_unknown=True``): the
  nominal oxygen of the row's SuperCon structure type (``str3``) is supplied where the type has
  one (:func:`nominal_oxygen`: the modal integer O amount of that type's rows with known oxygen)
  and the row's cation count matches the type's; the row is flagged ``oxygen_recovered``. Rows
  without a type, or whose type has no clear nominal oxygen, are dropped and counted.
* **Duplicates** are merged on the composition key (atomic fractions rounded to 1e-4, see
  :func:`composition_key`): ``tc_K`` is the **median** over measurements (robust to single bad
  reports), ``tc_max_K`` the maximum, ``family`` (SuperCon ``str3``) the most frequent label, ``first_year`` the earliest
  publication year.
* **Chemical class** (:func:`chemical_class`) from composition and ``str3``; the **group** used
  for family-grouped splits is the class for the large unconventional classes (cuprate,
  iron-based, hydride, fullerene, bismuthate) and otherwise the ``str3`` structure label, or the
  chemical system when ``str3`` is blank (so doping series of one system never straddle a split).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from matdiscovery.composition import MAX_Z

#: Tc above which a row without H/D is treated as a misprint (K).
MAX_PLAUSIBLE_TC_K = 165.0
#: Classes that form one group each in family-grouped splits.
GROUPED_CLASSES = ("cuprate", "iron_based", "hydride", "fullerene", "bismuthate")
_PNICTOGEN_CHALCOGEN = {"As", "P", "Se", "Te", "S"}
_HEAVY_FERMION = {"Ce", "U", "Pu", "Np", "Yb"}


def composition_key(comp: Composition, digits: int = 4) -> str:
    """A canonical string for ``comp``: elements in Z order with atomic fractions rounded to
    ``digits`` (``Ni1Zr2`` and ``Zr2Ni`` both give ``'Ni0.3333Zr0.6667'``)."""
    if not isinstance(comp, Composition):
        raise TypeError(f"expected a pymatgen Composition, got {type(comp).__name__}")
    if comp.num_atoms <= 0:
        raise ValueError(f"empty composition {comp}")
    frac = comp.fractional_composition
    items = sorted(((el, round(float(a), digits)) for el, a in frac.items()), key=lambda kv: kv[0].Z)
    return "".join(f"{el.symbol}{a:g}" for el, a in items if a > 0)


def chemical_class(comp: Composition, family: str | None = None) -> str:
    """Superconductor class from composition (and the SuperCon ``str3`` label where it decides).

    Rules, first match wins (fractions are atomic fractions):
    ``hydride`` H+D ≥ 0.5; ``fullerene`` str3 'fullerene' or C ≥ 0.8 with C ≥ 28 atoms per formula;
    ``cuprate`` Cu and O present with O ≥ 0.25; ``iron_based`` Fe ≥ 0.1 with As/P/S/Se/Te;
    ``bismuthate`` Bi and O with Ba or K, no Cu; ``oxide`` other O ≥ 0.25;
    ``heavy_fermion`` Ce/U/Pu/Np/Yb ≥ 0.1; ``borocarbide`` B and C with Ni/Pd/Pt;
    ``chalcogenide`` S/Se/Te ≥ 0.2; otherwise ``intermetallic``.
    """
    frac = {el.symbol: float(a) for el, a in comp.fractional_composition.items()}
    fam = family.strip() if isinstance(family, str) else ""

    def f(*symbols: str) -> float:
        return sum(frac.get(s, 0.0) for s in symbols)

    if f("H", "D") >= 0.5:
        return "hydride"
    if fam == "fullerene" or (f("C") >= 0.8 and comp["C"] >= 28):
        return "fullerene"
    if "Cu" in frac and f("O") >= 0.25:
        return "cuprate"
    if f("Fe") >= 0.1 and _PNICTOGEN_CHALCOGEN & frac.keys():
        return "iron_based"
    if "Bi" in frac and "O" in frac and ({"Ba", "K"} & frac.keys()) and "Cu" not in frac:
        return "bismuthate"
    if f("O") >= 0.25:
        return "oxide"
    if f(*_HEAVY_FERMION) >= 0.1:
        return "heavy_fermion"
    if "B" in frac and "C" in frac and ({"Ni", "Pd", "Pt"} & frac.keys()):
        return "borocarbide"
    if f("S", "Se", "Te") >= 0.2:
        return "chalcogenide"
    return "intermetallic"


def family_group(comp: Composition, family: str | None, chem_class: str) -> str:
    """Group label for family-grouped splits (see module docstring)."""
    if chem_class in GROUPED_CLASSES:
        return chem_class
    fam = family.strip() if isinstance(family, str) else ""
    return f"str3:{fam}" if fam else f"sys:{comp.chemical_system}"


@dataclass
class CleaningReport:
    """Counts of what was dropped and why, and how duplicates were merged."""

    n_raw_rows: int
    n_loader_skipped: int
    loader_skipped_by_reason: dict[str, int]
    n_implausible_tc: int
    n_beyond_pu: int
    n_rows_kept: int
    n_compositions: int
    n_merged_duplicates: int
    n_oxygen_unknown: int = 0
    n_oxygen_recovered: int = 0
    oxygen_unrecovered_by_reason: dict[str, int] = field(default_factory=dict)
    oxygen_recovered_by_type: dict[str, int] = field(default_factory=dict)
    tc_aggregation: str = "median"
    dropped_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "dropped_examples"}


def skipped_reason(reason: str) -> str:
    """A short category for a :class:`~matdiscovery.datasets.BadRow` reason."""
    if "in place of the amount of O" in reason:
        return "oxygen content unknown (Oz/OX)"
    if "in place of the amount" in reason:
        return "other amount unknown"
    if "unknown element symbol 'M'" in reason:
        return "generic metal 'M'"
    if "unknown element symbol" in reason:
        return "unknown element symbol"
    if "unexpected character" in reason:
        return "stray character (+, -, =)"
    if "could not convert" in reason or "ValueError" in reason and "float" in reason:
        return "non-numeric Tc"
    return "other"


def nominal_oxygen(frame: pd.DataFrame, min_rows: int = 5, min_share: float = 0.5) -> pd.DataFrame:
    """Nominal oxygen per SuperCon structure type, from its rows with a known oxygen amount.

    Index ``family`` (``str3``); columns ``o_nominal`` (modal O amount rounded half-up, atoms per
    formula unit), ``share`` (fraction of the type's rows at that value), ``cations`` (median
    number of non-oxygen atoms per formula unit) and ``n_rows``. Only types with at least
    ``min_rows`` oxide rows and ``share ≥ min_share`` are listed.
    """
    known = frame
    if "oxygen_unknown" in frame.columns:
        known = frame[~frame["oxygen_unknown"].to_numpy(bool)]
    known = known[known["family"].notna()]
    o = np.array([float(c["O"]) for c in known["composition"]])
    has_o = o > 0
    data = pd.DataFrame({
        "family": known["family"].to_numpy()[has_o],
        "o": np.floor(o[has_o] + 0.5),
        "cations": [c.num_atoms - float(c["O"]) for c, h in zip(known["composition"], has_o) if h],
    })
    rows = []
    for fam, d in data.groupby("family", sort=True):
        counts = d["o"].value_counts()
        rows.append({"family": fam, "o_nominal": float(counts.index[0]), "share": float(counts.iloc[0] / len(d)),
                     "cations": float(d["cations"].median()), "n_rows": len(d)})
    table = pd.DataFrame(rows, columns=["family", "o_nominal", "share", "cations", "n_rows"]).set_index("family")
    return table[(table["n_rows"] >= min_rows) & (table["share"] >= min_share)]


def recover_oxygen(frame: pd.DataFrame, cation_tol: float = 0.5, min_rows: int = 5,
                   min_share: float = 0.5) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """Give rows with ``oxygen_unknown`` (composition = cations only) the nominal oxygen of their
    structure type (:func:`nominal_oxygen`) when their cation count is within ``cation_tol`` of
    the type's. Returns the frame with those rows completed and flagged ``oxygen_recovered``
    (unrecoverable rows removed), the dropped counts by reason and the recovered counts by type."""
    frame = frame.copy()
    frame["oxygen_recovered"] = False
    if "oxygen_unknown" not in frame.columns or not frame["oxygen_unknown"].any():
        return frame, {}, {}
    unknown = frame["oxygen_unknown"].to_numpy(bool)
    types = nominal_oxygen(frame, min_rows=min_rows, min_share=min_share)
    keep = ~unknown
    reasons: Counter = Counter()
    recovered: Counter = Counter()
    comps = list(frame["composition"])
    for i in np.flatnonzero(unknown):
        fam = frame["family"].iloc[i]
        comp = comps[i]
        if not isinstance(fam, str) or not fam:
            reasons["no structure type"] += 1
        elif fam not in types.index:
            reasons["type without a nominal oxygen"] += 1
        elif abs(comp.num_atoms - types.at[fam, "cations"]) > cation_tol:
            reasons["cation count differs from the type's"] += 1
        else:
            comps[i] = comp + Composition({"O": types.at[fam, "o_nominal"]})
            keep[i] = True
            recovered[fam] += 1
    frame["composition"] = comps
    frame["oxygen_recovered"] = unknown & keep
    return frame.loc[keep], dict(reasons.most_common()), dict(recovered.most_common())


def clean_supercon(frame: pd.DataFrame, tc_max_plausible_K: float = MAX_PLAUSIBLE_TC_K) -> tuple[pd.DataFrame, CleaningReport]:
    """Clean and merge :func:`~matdiscovery.datasets.load_supercon_nims` output.

    Returns one row per distinct composition with columns ``key``, ``composition``
    (:class:`Composition`, as first written), ``formula``, ``tc_K`` (median, K), ``tc_max_K``,
    ``n_measurements``, ``family`` (str3 mode or None), ``chem_class``, ``group``,
    ``chemical_system``, ``n_elements``, ``oxygen_variable`` (any measurement),
    ``oxygen_recovered`` (any measurement got the nominal oxygen of its type), ``first_year``
    (earliest publication year, NA if none), and a :class:`CleaningReport`.
    """
    required = {"composition", "tc_K", "family", "formula"}
    missing = required - set(frame.columns)
    if missing:
        raise ValueError(f"clean_supercon needs columns {sorted(required)}; missing {sorted(missing)}")
    skipped = list(frame.attrs.get("skipped", []))
    by_reason = Counter(skipped_reason(b.reason) for b in skipped)
    n_unknown = int(frame["oxygen_unknown"].sum()) if "oxygen_unknown" in frame.columns else 0
    n_before = len(frame)
    frame, o_dropped, o_recovered = recover_oxygen(frame)
    if "year" not in frame.columns:
        frame = frame.assign(year=pd.array([pd.NA] * len(frame), dtype="Int64"))
    has_h = np.array([("H" in c) or ("D" in c) for c in (frozenset(e.symbol for e in comp.elements) for comp in frame["composition"])])
    implausible = (frame["tc_K"].to_numpy() > tc_max_plausible_K) & ~has_h
    beyond = np.array([max(e.Z for e in comp.elements) > MAX_Z for comp in frame["composition"]])
    negative = frame["tc_K"].to_numpy() < 0
    drop = implausible | beyond | negative
    examples = [f"{f} ({t:g} K)" for f, t in zip(frame["formula"][implausible], frame["tc_K"][implausible])]
    kept = frame.loc[~drop].copy()
    kept.attrs = {}  # pandas deep-copies attrs (the skipped-row list) into every group otherwise
    kept["key"] = [composition_key(c) for c in kept["composition"]]

    def mode(values: pd.Series) -> str | None:
        vals = [v for v in values if isinstance(v, str) and v]
        return Counter(vals).most_common(1)[0][0] if vals else None

    grouped = kept.groupby("key", sort=True)
    merged = grouped.agg(
        formula=("formula", "first"),
        composition=("composition", "first"),
        tc_K=("tc_K", "median"),
        tc_max_K=("tc_K", "max"),
        n_measurements=("tc_K", "size"),
        family=("family", mode),
        oxygen_variable=("oxygen_variable", "any"),
        oxygen_recovered=("oxygen_recovered", "any"),
        first_year=("year", "min"),
    ).reset_index()
    merged["family"] = merged["family"].astype(object).where(merged["family"].notna(), None)
    merged["chem_class"] = [chemical_class(c, f) for c, f in zip(merged["composition"], merged["family"])]
    merged["group"] = [family_group(c, f, k) for c, f, k in zip(merged["composition"], merged["family"], merged["chem_class"])]
    merged["chemical_system"] = [c.chemical_system for c in merged["composition"]]
    merged["n_elements"] = [len(c.elements) for c in merged["composition"]]
    report = CleaningReport(
        n_raw_rows=n_before + len(skipped),
        n_loader_skipped=len(skipped),
        loader_skipped_by_reason=dict(by_reason.most_common()),
        n_implausible_tc=int(implausible.sum()),
        n_beyond_pu=int(beyond.sum()),
        n_rows_kept=len(kept),
        n_compositions=len(merged),
        n_merged_duplicates=len(kept) - len(merged),
        n_oxygen_unknown=n_unknown,
        n_oxygen_recovered=sum(o_recovered.values()),
        oxygen_unrecovered_by_reason=o_dropped,
        oxygen_recovered_by_type=o_recovered,
        dropped_examples=examples,
    )
    return merged, report
