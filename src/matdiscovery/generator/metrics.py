"""Validity, uniqueness, novelty and coverage of generated crystals as the field reports them."""

from __future__ import annotations

from pymatgen.analysis.structure_matcher import StructureMatcher


def structure_matcher(loose: bool = False) -> StructureMatcher:
    """pymatgen's default tolerances (ltol 0.2, stol 0.3, 5°; CDVAE/DiffCSP's match rate), or the
    loose ones of the near-duplicate check (ltol 0.3, stol 0.5, 10°)."""
    if loose:
        return StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10)
    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)
