"""Small matplotlib renderings of generated unit cells (oblique projection, no 3-D backend)."""

from __future__ import annotations

import itertools

import numpy as np
from pymatgen.core import Structure

#: oblique projection of Cartesian (x, y, z) Å onto the page: x right, z up, y receding
_PROJ = np.array([[1.0, 0.0], [0.45, 0.3], [0.0, 1.0]])


def plot_cell(ax, structure: Structure, colors: dict[str, str] | None = None, title: str | None = None,
              max_atoms: int = 400) -> None:
    """Draw ``structure``'s unit cell edges and atoms (size ∝ atomic radius) on ``ax``."""
    import matplotlib.pyplot as plt

    m = structure.lattice.matrix
    corners = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float)
    for i, j in itertools.combinations(range(8), 2):
        if np.abs(corners[i] - corners[j]).sum() == 1:
            seg = corners[[i, j]] @ m @ _PROJ
            ax.plot(seg[:, 0], seg[:, 1], color="0.6", lw=0.7, zorder=1)
    sites = list(structure)[:max_atoms]
    if sites:
        xyz = np.array([s.coords for s in sites])
        depth = xyz[:, 1]
        order = np.argsort(-depth)
        xy = xyz @ _PROJ
        species = [s.specie.symbol for s in sites]
        palette = colors or {}
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for sp in sorted(set(species)):
            palette.setdefault(sp, cycle[len(palette) % len(cycle)])
        radius = np.array([float(s.specie.atomic_radius or 1.0) for s in sites])
        ax.scatter(xy[order, 0], xy[order, 1], s=40 * radius[order] ** 2,
                   c=[palette[species[k]] for k in order], edgecolors="k", linewidths=0.3, zorder=2)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
