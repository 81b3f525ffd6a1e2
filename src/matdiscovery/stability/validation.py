"""Structure sanity checks run before any judge sees a structure.

A bad structure (empty cell, NaN coordinates or lattice, unknown or unsupported elements,
overlapping atoms) is reported with a reason and counted, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Element, Structure

from matdiscovery.composition import MAX_Z  # heaviest element the judges support (Pu)

#: Minimum interatomic distance (Å) below which two atoms are considered overlapping
#: (the CDVAE/DiffCSP structural-validity threshold).
MIN_DISTANCE_A = 0.5


@dataclass(frozen=True)
class StructureCheck:
    """Outcome of :func:`check_structure`: ``valid`` and, if not, ``reason``."""

    valid: bool
    reason: str = ""


def check_structure(structure: object, min_distance: float = MIN_DISTANCE_A, max_z: int = MAX_Z) -> StructureCheck:
    """Check one structure; never raises on bad content (only the reason differs).

    Invalid when: not a :class:`Structure`; no sites; a non-finite or (near-)zero-volume
    lattice; non-finite coordinates; a species that is not a real element or has Z > ``max_z``;
    a pair of atoms closer than ``min_distance`` Å (periodic images included).
    """
    if not isinstance(structure, Structure):
        return StructureCheck(False, f"not a pymatgen Structure ({type(structure).__name__})")
    if len(structure) == 0:
        return StructureCheck(False, "empty cell (no sites)")
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.isfinite(matrix).all():
        return StructureCheck(False, "non-finite lattice")
    volume = abs(float(np.linalg.det(matrix)))
    if not np.isfinite(volume) or volume < 1e-3:
        return StructureCheck(False, f"degenerate cell (volume {volume:.3g} Å^3)")
    if not np.isfinite(structure.frac_coords).all():
        return StructureCheck(False, "NaN or infinite coordinates")
    for site in structure:
        for sp in site.species:
            el = getattr(sp, "element", sp)
            if not isinstance(el, Element):
                return StructureCheck(False, f"unknown element {sp!s}")
            if el.Z > max_z:
                return StructureCheck(False, f"unsupported element {el.symbol} (Z={el.Z} > {max_z})")
        if not site.is_ordered:
            return StructureCheck(False, f"disordered site {site.species_string}")
    if len(structure) > 1 or volume < 50:
        dist = structure.distance_matrix if len(structure) > 1 else np.zeros((1, 1))
        np.fill_diagonal(dist, np.inf)
        # a single atom can still overlap its own periodic image in a tiny cell
        shortest = min(float(dist.min()), min(structure.lattice.abc))
        if shortest < min_distance:
            return StructureCheck(False, f"overlapping atoms (shortest distance {shortest:.3f} Å < {min_distance} Å)")
    return StructureCheck(True)


def check_structures(structures: Sequence[object], min_distance: float = MIN_DISTANCE_A) -> pd.DataFrame:
    """:func:`check_structure` for each item: a frame with ``valid`` (bool) and ``reason``."""
    checks = [check_structure(s, min_distance) for s in structures]
    return pd.DataFrame({"valid": [c.valid for c in checks], "reason": [c.reason for c in checks]})


def invalid_summary(checks: pd.DataFrame) -> dict[str, int]:
    """Counts of invalid structures by reason category (text before the first parenthesis)."""
    bad = checks.loc[~checks["valid"], "reason"].str.split(" \\(").str[0]
    return {str(k): int(v) for k, v in bad.value_counts().items()}
