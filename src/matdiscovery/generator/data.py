"""The PGCGM-like training set: ternary crystals as (3 elements, space group, lengths, basis).

Sources (:data:`SOURCES`): perov_5 (val + test), JARVIS e-ph (train + val + test) and the
undoped Materials Project crystals of 3DSC. Each candidate structure passes PGCGM's filters in
order (:data:`FILTERS`); the first one it fails is recorded, so every filter's effect can be
counted per source and per space group (:meth:`TrainingSet.filter_table`):

1. ``ternary``: three distinct elements;
2. ``pgcgm_elements``: all three among PGCGM's 63 elements (:data:`PGCGM_ELEMENTS`);
3. ``three_sites``: spglib (symprec 0.1) finds exactly three symmetry-distinct sites, one per
   element (PGCGM's 3-atom asymmetric unit);
4. ``fixed_angles``: the space group has fixed cell angles (cubic, tetragonal, orthorhombic,
   trigonal/hexagonal), so the lattice is three tied lengths;
5. ``pgcgm_spacegroups``: the group is one of PGCGM's 20 (:data:`PGCGM_SPACEGROUPS`);
6. ``setting``: expanding the three basis atoms with pymatgen's operations of the group gives
   spglib's standard conventional cell back site by site (guards against origin/setting
   mismatches; a technical check of ours, not PGCGM's).

Survivors are deduplicated with pymatgen's ``StructureMatcher`` (same reduced formula and group;
the first source in :data:`SOURCES` wins) and split by reduced formula into training and a
held-out set (novelty and coverage are measured against it). Elements are ordered by Pauling
electronegativity (ties by Z): the canonical order of the conditioning.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import spglib
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element, Structure

from matdiscovery.generator.symmetry import build_structure, expand_orbits, is_supported
from matdiscovery.progress import progress_bar

#: PGCGM's 20 space groups and their frequency in its training set (MilesZhao/PGCGM,
#: ``data/paras.pickle``: I4/mmm, P6_3/mmc, Immm, Fm-3m, Fd-3m, Pnma, P6/mmm, R-3, R-3m, Pm-3m,
#: R-3c, P-3m1, P4/mmm, Cmcm, P4/nmm, F-43m, I-42d, P6_3mc, I4_1/amd, I4/mcm)
PGCGM_SPACEGROUPS: dict[int, float] = {
    139: 0.1465, 194: 0.1331, 71: 0.1112, 225: 0.0883, 227: 0.0782, 62: 0.0601, 191: 0.0526,
    148: 0.0468, 166: 0.0352, 221: 0.0347, 167: 0.0296, 164: 0.0283, 123: 0.0280, 63: 0.0239,
    129: 0.0236, 216: 0.0213, 122: 0.0178, 186: 0.0164, 141: 0.0140, 140: 0.0103,
}

#: PGCGM's 63 elements (MilesZhao/PGCGM ``data/elements_id_NoPo.json``; Po excluded)
PGCGM_ELEMENTS: frozenset[str] = frozenset(
    "Ag Al As Au B Ba Be Bi Br C Ca Cd Cl Co Cr Cs Cu F Fe Ga Ge H Hf Hg I In Ir K Li Mg Mn Mo N Na "
    "Nb Ni O Os P Pb Pd Pt Rb Re Rh Ru S Sb Sc Se Si Sn Sr Ta Tc Te Ti Tl V W Y Zn Zr".split()
)

#: structure sources in deduplication priority: (name, loader splits)
SOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("3dsc_mp", ("undoped",)),
    ("jarvis_epc", ("train", "val", "test")),
    ("perov_5", ("val", "test")),
)

#: PGCGM's filters in the order they are applied (module docstring)
FILTERS = ("ternary", "pgcgm_elements", "three_sites", "fixed_angles", "pgcgm_spacegroups", "setting")

SYMPREC = 0.1


@dataclass(frozen=True)
class Record:
    """One training crystal: ``elements`` (3 symbols, electronegativity order), space group,
    conventional-cell ``lengths`` (a, b, c in Å) and ``frac`` basis coordinates (3 × 3)."""

    material_id: str
    source: str
    elements: tuple[str, str, str]
    spacegroup: int
    lengths: tuple[float, float, float]
    frac: tuple[tuple[float, float, float], ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        def tup(v):
            return tuple(json.loads(v)) if isinstance(v, str) else tuple(v)

        return cls(str(d["material_id"]), str(d["source"]), tup(d["elements"]), int(d["spacegroup"]),
                   tuple(float(x) for x in tup(d["lengths"])), tuple(tuple(float(x) for x in f) for f in tup(d["frac"])))


@lru_cache(maxsize=None)
def _en_key(sym: str) -> tuple[float, int]:
    el = Element(sym)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)
        x = el.X
    return (float(x) if x == x else 0.0, el.Z)


def canonical_order(elements: list[str] | tuple[str, ...]) -> list[str]:
    """Sort element symbols by Pauling electronegativity (missing → 0), ties by Z."""
    return sorted((str(e) for e in elements), key=_en_key)


def screen_structure(structure: Structure, spacegroups: frozenset[int] | None = None,
                     material_id: str = "", source: str = "") -> tuple[str, int, Record | None]:
    """Apply :data:`FILTERS` to one structure.

    Returns ``(outcome, space group, record)``: ``outcome`` is the first failed filter or
    ``"kept"``; the space group is spglib's (0 before the ``three_sites`` filter ran or when
    spglib fails); the record is ``None`` unless kept. ``spacegroups`` defaults to PGCGM's 20.
    """
    allowed = frozenset(PGCGM_SPACEGROUPS) if spacegroups is None else spacegroups
    symbols = sorted({el.symbol for el in structure.composition.elements})
    if len(symbols) != 3:
        return "ternary", 0, None
    if not set(symbols) <= PGCGM_ELEMENTS:
        return "pgcgm_elements", 0, None
    numbers = [site.specie.Z for site in structure]
    cell = (structure.lattice.matrix, structure.frac_coords, numbers)
    data = spglib.get_symmetry_dataset(cell, symprec=SYMPREC)
    if data is None:
        return "three_sites", 0, None
    number = int(data.number)
    orbits = {int(k): numbers[int(k)] for k in set(data.equivalent_atoms)}
    if len(orbits) != 3 or len(set(orbits.values())) != 3:
        return "three_sites", number, None
    if not is_supported(number):
        return "fixed_angles", number, None
    if number not in allowed:
        return "pgcgm_spacegroups", number, None
    std_types = np.asarray(data.std_types)
    std_pos = np.asarray(data.std_positions) % 1.0
    order = canonical_order(symbols)
    z_of = {s: Element(s).Z for s in order}
    frac = np.array([std_pos[np.nonzero(std_types == z_of[s])[0][0]] for s in order])
    lengths = np.linalg.norm(np.asarray(data.std_lattice), axis=1)
    coords, owner, _ = expand_orbits(frac, number)
    std_species = np.array([Element.from_Z(int(z)).symbol for z in std_types])
    if len(coords) != len(std_pos) or not _same_sites(coords, [order[k] for k in owner], std_pos, std_species):
        return "setting", number, None
    rec = Record(material_id, source, tuple(order), number, tuple(float(x) for x in lengths),
                 tuple(tuple(float(v) for v in f) for f in frac))
    return "kept", number, rec


def record_from_structure(structure: Structure, material_id: str = "", source: str = "",
                          spacegroups: frozenset[int] | None = None) -> Record | None:
    """The generator record of ``structure``, or ``None`` if a PGCGM filter rejects it
    (``spacegroups``: allowed groups, default PGCGM's 20)."""
    return screen_structure(structure, spacegroups, material_id, source)[2]


def _same_sites(coords: np.ndarray, species: list[str], ref: np.ndarray, ref_species: np.ndarray,
                tol: float = 0.02) -> bool:
    """True when every expanded site has a same-species reference site within ``tol``
    (fractional, periodic)."""
    for c, sp in zip(coords, species):
        d = ref[ref_species == sp] - c
        d -= np.round(d)
        if not len(d) or np.abs(d).max(axis=1).min() > tol:
            return False
    return True


def _ternary_name(formula: str, rejected: list[str]) -> bool:
    try:
        ok = len(Composition(formula).elements) == 3
    except ValueError:
        ok = True   # let the parsed structure decide
    if not ok:
        rejected.append(formula)
    return ok


def load_source(name: str, split: str, limit: int | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Candidate structures of one source split (``material_id``, ``structure``; ``limit``: first
    rows only) and the formulas of candidates rejected as non-ternary before parsing (3DSC file
    names carry the formula; for its undoped crystals it always has the structure's elements)."""
    from matdiscovery.datasets import load_3dsc_structures, load_crystals

    splits = dict(SOURCES).get(name)
    if splits is None or split not in splits:
        raise ValueError(f"unknown generator source {name!r}/{split!r}; choose from {list(SOURCES)}")
    rejected: list[str] = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*skipped .* malformed", category=UserWarning)
        if name == "3dsc_mp":
            frame = load_3dsc_structures(on_error="skip", include_doped=False, limit=limit,
                                         select=lambda f: _ternary_name(f, rejected))
            frame = frame.drop_duplicates("mp_id").rename(columns={"mp_id": "material_id"})
        else:
            frame = load_crystals(name, split, on_error="skip", limit=limit)
    return frame[["material_id", "structure"]].assign(material_id=lambda f: f["material_id"].astype(str)), rejected


def _screen_split(source: str, split: str, limit: int | None, spacegroups: frozenset[int] | None
                  ) -> tuple[list[dict], list[Record]]:
    frame, rejected = load_source(source, split, limit)
    rows = [{"source": source, "material_id": "", "formula": Composition(f).reduced_formula, "spacegroup": 0,
             "outcome": "ternary"} for f in rejected]
    kept = []
    for mid, s in zip(frame["material_id"], frame["structure"]):
        outcome, number, rec = screen_structure(s, spacegroups, mid, source)
        rows.append({"source": source, "material_id": mid, "formula": s.composition.reduced_formula,
                     "spacegroup": number, "outcome": outcome})
        if rec is not None:
            kept.append(rec)
    return rows, kept


def structure_matcher(loose: bool = False) -> StructureMatcher:
    """pymatgen's default tolerances (ltol 0.2, stol 0.3, 5°; CDVAE/DiffCSP's match rate), or the
    loose ones of the near-duplicate check (ltol 0.3, stol 0.5, 10°)."""
    if loose:
        return StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10)
    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)


def dedupe(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """Records without StructureMatcher duplicates (same reduced formula and space group; the
    first occurrence wins) and the duplicates removed."""
    sm = structure_matcher()
    kept, dropped = [], []
    reps: dict[tuple[str, int], list[tuple[Record, Structure]]] = {}
    for rec in records:
        s = record_structure(rec)
        key = (s.composition.reduced_formula, rec.spacegroup)
        group = reps.setdefault(key, [])
        if any(sm.fit(s, t) for _, t in group):
            dropped.append(rec)
        else:
            group.append((rec, s))
            kept.append(rec)
    return kept, dropped


def split_by_formula(records: list[Record], heldout_fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Seeded split into (training, held-out): every reduced formula goes wholly to one side;
    about ``heldout_fraction`` of the formulas are held out."""
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    formulas = sorted({record_formula(r) for r in records})
    rng = np.random.default_rng(seed)
    n_out = int(round(heldout_fraction * len(formulas)))
    out = set(rng.choice(formulas, size=n_out, replace=False).tolist()) if n_out else set()
    train = [r for r in records if record_formula(r) not in out]
    held = [r for r in records if record_formula(r) in out]
    return train, held


@lru_cache(maxsize=200_000)
def _formula(elements: tuple[str, ...], spacegroup: int, frac: tuple) -> str:
    _, owner, _ = expand_orbits(np.array(frac), spacegroup)
    return Composition({e: int((owner == k).sum()) for k, e in enumerate(elements)}).reduced_formula


def record_formula(rec: Record) -> str:
    """Reduced formula of a record's conventional cell."""
    return _formula(rec.elements, rec.spacegroup, rec.frac)


def record_structure(rec: Record) -> Structure:
    """Rebuild the conventional cell of a record (symmetry expansion of its basis)."""
    return build_structure(list(rec.elements), np.array(rec.frac), np.array(rec.lengths), rec.spacegroup)


@dataclass
class TrainingSet:
    """The training and held-out records and the per-structure screening log.

    ``screening``: one row per candidate structure: ``source``, ``material_id``, ``spacegroup``
    (spglib, 0 if not determined), ``outcome`` (first failed filter, ``duplicate`` or
    ``train``/``heldout``) and ``in_pgcgm_ids`` (the id is in PGCGM's own training list; only
    Materials Project ids can match).
    """

    train: list[Record]
    heldout: list[Record]
    screening: pd.DataFrame
    settings: dict = field(default_factory=dict)

    def filter_table(self) -> pd.DataFrame:
        """Per source: candidates and how many survive each filter in turn, after
        deduplication, and in the training / held-out split; ``in PGCGM ids``: of the training
        + held-out records, how many ids are in PGCGM's own list."""
        rows = []
        for source, g in self.screening.groupby("source", sort=False):
            row = {"source": source, "candidates": len(g)}
            failed = 0
            for name in FILTERS:
                failed += int((g["outcome"] == name).sum())
                row[f"after {name}"] = len(g) - failed
            row["after dedup"] = int(g["outcome"].isin(["train", "heldout"]).sum())
            row["train"] = int((g["outcome"] == "train").sum())
            row["heldout"] = int((g["outcome"] == "heldout").sum())
            row["in PGCGM ids"] = int((g["outcome"].isin(["train", "heldout"]) & g["in_pgcgm_ids"]).sum())
            rows.append(row)
        table = pd.DataFrame(rows).set_index("source")
        table.loc["total"] = table.sum()
        return table

    def spacegroup_table(self) -> pd.DataFrame:
        """Per space group (of those with a fixed-angle, three-site record): records kept per
        source after deduplication, PGCGM's frequency, and whether the group is one of PGCGM's 20."""
        g = self.screening[self.screening["outcome"].isin(["train", "heldout", "pgcgm_spacegroups", "duplicate", "setting"])]
        table = pd.crosstab(g["spacegroup"], g["source"].where(g["outcome"].isin(["train", "heldout"]), "not kept"))
        table["pgcgm_frequency"] = [PGCGM_SPACEGROUPS.get(int(s), 0.0) for s in table.index]
        table["in_pgcgm_20"] = [int(s) in PGCGM_SPACEGROUPS for s in table.index]
        return table.sort_values("pgcgm_frequency", ascending=False)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame([{**r.to_dict(), "split": split} for split, recs in (("train", self.train), ("heldout", self.heldout))
                              for r in recs])
        for col in ("elements", "lengths", "frac"):
            frame[col] = frame[col].map(json.dumps)
        frame.to_csv(folder / "training_records.csv", index=False)
        self.screening.to_csv(folder / "screening.csv", index=False)
        (folder / "training_set.json").write_text(json.dumps(self.settings, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "TrainingSet":
        folder = Path(folder)
        frame = pd.read_csv(folder / "training_records.csv", dtype={"material_id": str})
        recs = {s: [Record.from_dict(d) for d in g.to_dict(orient="records")] for s, g in frame.groupby("split")}
        screening = pd.read_csv(folder / "screening.csv", dtype={"material_id": str})
        return cls(recs.get("train", []), recs.get("heldout", []), screening,
                   json.loads((folder / "training_set.json").read_text()))


def build_training_set(*, heldout_fraction: float, seed: int, limit_per_split: int | None = None,
                       spacegroups: frozenset[int] | None = None, n_jobs: int = 1, progress: bool = True) -> TrainingSet:
    """Screen every source (:data:`SOURCES`; one task per split, ``n_jobs`` processes), deduplicate
    and split (module docstring). ``limit_per_split``: read only the first rows of each split
    (quick runs and tests); ``spacegroups``: allowed groups (default PGCGM's 20)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from matdiscovery.datasets import load_pgcgm_training_ids

    tasks = [(source, split) for source, splits in SOURCES for split in splits]
    if n_jobs > 1:
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_screen_split, source, split, limit_per_split, spacegroups) for source, split in tasks]
            results = [f.result() for f in progress_bar(futures, desc="screen sources", progress=progress)]
    else:
        results = [_screen_split(source, split, limit_per_split, spacegroups)
                   for source, split in progress_bar(tasks, desc="screen sources", progress=progress)]
    screening = pd.DataFrame([row for rows, _ in results for row in rows])
    pgcgm_ids = set(load_pgcgm_training_ids()["id"])
    screening["in_pgcgm_ids"] = screening["material_id"].isin(pgcgm_ids)
    unique, dropped = dedupe([rec for _, recs in results for rec in recs])
    train, held = split_by_formula(unique, heldout_fraction, seed)
    outcome = {(r.source, r.material_id): "duplicate" for r in dropped}
    outcome.update({(r.source, r.material_id): "train" for r in train})
    outcome.update({(r.source, r.material_id): "heldout" for r in held})
    keys = list(zip(screening["source"], screening["material_id"]))
    screening["outcome"] = [outcome.get(k, o) for k, o in zip(keys, screening["outcome"])]
    settings = {"heldout_fraction": heldout_fraction, "seed": seed, "limit_per_split": limit_per_split,
                "spacegroups": sorted(spacegroups or PGCGM_SPACEGROUPS), "symprec": SYMPREC}
    return TrainingSet(train, held, screening, settings)
