"""Training records for the generator: ternary crystals as (3 elements, space group, lengths, basis).

A record is kept, as in PGCGM, when the conventional standard cell (spglib, symprec 0.1) has
exactly three symmetry-distinct sites, one per element, in a space group with fixed cell angles,
and expanding the three basis atoms with pymatgen's operations of that group gives back the
conventional cell site by site (guards against origin/setting mismatches between spglib and
pymatgen). Elements are ordered by Pauling electronegativity (ties by Z): the canonical order of
the conditioning.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pymatgen.core import Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from tqdm.auto import tqdm

from matdiscovery.generator.symmetry import expand_orbits, is_supported

#: what the default training stage reads (dataset, splits): perov_5 val+test and all JARVIS-EPC
DEFAULT_SOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("perov_5", ("val", "test")),
    ("jarvis_epc", ("train", "val", "test")),
)


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


def canonical_order(elements: list[str] | tuple[str, ...]) -> list[str]:
    """Sort element symbols by Pauling electronegativity (missing → 0), ties by Z."""
    def key(sym: str) -> tuple[float, int]:
        el = Element(sym)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = el.X
        return (float(x) if x == x else 0.0, el.Z)

    return sorted(elements, key=key)


def record_from_structure(structure: Structure, material_id: str = "", source: str = "",
                          symprec: float = 0.1) -> Record | None:
    """The generator record of ``structure``, or ``None`` if it does not fit the PGCGM form."""
    if len(structure.composition.elements) != 3:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conv = SpacegroupAnalyzer(structure, symprec=symprec).get_conventional_standard_structure()
            analyzer = SpacegroupAnalyzer(conv, symprec=symprec)
            number = analyzer.get_space_group_number()
            sym = analyzer.get_symmetrized_structure()
    except Exception:  # noqa: BLE001 - spglib failures just drop the structure
        return None
    if not is_supported(number) or len(sym.equivalent_sites) != 3:
        return None
    species = [str(sites[0].specie) for sites in sym.equivalent_sites]
    if len(set(species)) != 3:
        return None
    order = canonical_order(species)
    basis = {str(sites[0].specie): sites[0].frac_coords % 1.0 for sites in sym.equivalent_sites}
    frac = np.array([basis[s] for s in order])
    coords, owner, _ = expand_orbits(frac, number)
    if len(coords) != len(conv) or not _same_sites(coords, [order[k] for k in owner], conv):
        return None
    lengths = tuple(float(x) for x in conv.lattice.abc)
    return Record(material_id, source, tuple(order), int(number), lengths,
                  tuple(tuple(float(v) for v in f) for f in frac))


def _same_sites(coords: np.ndarray, species: list[str], conv: Structure, tol: float = 0.02) -> bool:
    """True when every expanded site has a same-species site of ``conv`` within ``tol`` (fractional,
    periodic): guards against origin/setting mismatches between spglib and pymatgen operations."""
    ref = conv.frac_coords
    ref_species = np.array([str(sp) for sp in conv.species])
    for c, sp in zip(coords, species):
        d = ref[ref_species == sp] - c
        d -= np.round(d)
        if not len(d) or np.abs(d).max(axis=1).min() > tol:
            return False
    return True


def records_from_frame(frame: pd.DataFrame, source: str, symprec: float = 0.1, progress: bool = True) -> tuple[list[Record], dict]:
    """Records of a ``load_crystals`` frame; also counts of ternaries seen and kept."""
    records, n_ternary = [], 0
    ids = frame["material_id"].astype(str) if "material_id" in frame else frame.index.astype(str)
    for mid, s in tqdm(list(zip(ids, frame["structure"])), desc=f"records {source}", disable=not progress):
        if len(s.composition.elements) != 3:
            continue
        n_ternary += 1
        rec = record_from_structure(s, mid, source, symprec)
        if rec is not None:
            records.append(rec)
    return records, {"structures": len(frame), "ternary": n_ternary, "kept": len(records)}


def load_training_records(sources=DEFAULT_SOURCES, limit: int | None = None, symprec: float = 0.1,
                          progress: bool = True) -> tuple[list[Record], pd.DataFrame]:
    """Records from the data store (``datasets.load_crystals``); ``limit`` rows per split (quick runs).

    Returns the records and a provenance table (dataset, split, structures, ternary, kept).
    """
    from matdiscovery.datasets import load_crystals

    records, rows = [], []
    for dataset, splits in sources:
        for split in splits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frame = load_crystals(dataset, split, on_error="skip", limit=limit)
            recs, counts = records_from_frame(frame, f"{dataset}/{split}", symprec, progress)
            records.extend(recs)
            rows.append({"dataset": dataset, "split": split, **counts})
    return records, pd.DataFrame(rows)


def records_to_frame(records: list[Record]) -> pd.DataFrame:
    return pd.DataFrame([r.to_dict() for r in records])


def record_structure(rec: Record) -> Structure:
    """Rebuild the conventional cell of a record (symmetry expansion of its basis)."""
    from matdiscovery.generator.symmetry import build_structure

    return build_structure(list(rec.elements), np.array(rec.frac), np.array(rec.lengths), rec.spacegroup)
