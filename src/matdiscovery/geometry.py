"""Geometry of periodic structures shared by every validity check (generator, judges, overview)."""

from __future__ import annotations

import math

from pymatgen.core import Structure


def min_interatomic_distance(structure: Structure) -> float:
    """Shortest distance (Å) between two atoms of ``structure``, periodic images included.

    An atom's distance to its own periodic image counts (a one-atom cell with a = b = c = 5 Å and
    γ = 15° has 1.31 Å, not min(a, b, c)); coincident atoms give 0. Built on pymatgen's neighbour
    list, searched in growing spheres up to min(a, b, c), which always holds a self-image.
    """
    if len(structure) == 0:
        raise ValueError("min_interatomic_distance: the structure has no sites")
    cap = min(structure.lattice.abc) * (1 + 1e-9) + 1e-9
    if not math.isfinite(cap) or cap <= 0:
        raise ValueError(f"min_interatomic_distance: degenerate lattice {structure.lattice.abc}")
    radius = min(2.0, cap)
    while True:
        *_, distances = structure.get_neighbor_list(radius, exclude_self=True)
        if len(distances):
            return float(distances.min())
        if radius >= cap:  # unreachable for a finite lattice: a lattice vector is a self-image
            return math.inf
        radius = min(2 * radius, cap)
