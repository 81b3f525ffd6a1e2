"""Predictions over ternary composition grids, and ternary diagrams (matplotlib only)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from matdiscovery.chemistry import check_elements


def ternary_grid(elements: Sequence[str], n_div: int = 20, include_edges: bool = True) -> tuple[list[Composition], np.ndarray]:
    """Compositions ``A_a B_b C_c`` with ``a + b + c = 1`` on a grid of step ``1 / n_div``.

    Returns the compositions and their ``(n, 3)`` atomic fractions. Pure elements (corners) are
    left out; binary edges are kept when ``include_edges``.
    """
    if len(elements) != 3 or len(set(elements)) != 3:
        raise ValueError(f"a ternary grid needs three distinct elements, got {list(elements)}")
    if n_div < 2:
        raise ValueError(f"n_div must be ≥ 2, got {n_div}")
    els = check_elements(list(elements))
    comps, fracs = [], []
    for i in range(n_div + 1):
        for j in range(n_div + 1 - i):
            kk = n_div - i - j
            f = np.array([i, j, kk]) / n_div
            nonzero = int((f > 0).sum())
            if nonzero < 2 or (nonzero == 2 and not include_edges):
                continue
            comps.append(Composition({el: a for el, a in zip(els, f) if a > 0}))
            fracs.append(f)
    return comps, np.array(fracs)


def to_cartesian(fracs: np.ndarray) -> np.ndarray:
    """Barycentric ``(n, 3)`` fractions → 2-D points in an equilateral triangle with corners
    A = (0, 0), B = (1, 0), C = (1/2, √3/2)."""
    f = np.asarray(fracs, dtype=float)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"fractions must have shape (n, 3), got {f.shape}")
    f = f / f.sum(axis=1, keepdims=True)
    return np.stack([f[:, 1] + 0.5 * f[:, 2], np.sqrt(3) / 2 * f[:, 2]], axis=1)


def fractions_in_system(compositions: Sequence[Composition], elements: Sequence[str]) -> np.ndarray:
    """Atomic fractions of ``elements`` for compositions lying in that system, ``(n, 3)``."""
    out = []
    for c in compositions:
        extra = {e.symbol for e in c.elements} - set(elements)
        if extra:
            raise ValueError(f"{c.reduced_formula} has elements {sorted(extra)} outside {list(elements)}")
        out.append([c.get_atomic_fraction(e) for e in elements])
    return np.array(out).reshape(-1, 3)


def in_system(compositions: Sequence[Composition], elements: Sequence[str], min_elements: int = 2) -> np.ndarray:
    """Boolean mask: composition uses only ``elements`` and at least ``min_elements`` of them."""
    s = set(elements)
    return np.array([{e.symbol for e in c.elements} <= s and len(c.elements) >= min_elements for c in compositions])


def rank_ternary_systems(systems: np.ndarray, scores: np.ndarray, exclude: Sequence[str] = (),
                         top: int = 2) -> pd.DataFrame:
    """Rank chemical systems of ternary candidates by their best score: ``system``, ``best_score``,
    ``n_candidates``. ``systems`` are ``'A-B-C'`` strings; only three-element systems count."""
    frame = pd.DataFrame({"system": systems, "score": scores})
    frame = frame[frame["system"].str.count("-") == 2]
    frame = frame[~frame["system"].isin(list(exclude))]
    agg = frame.groupby("system")["score"].agg(best_score="max", n_candidates="size").reset_index()
    return agg.sort_values(["best_score", "n_candidates", "system"], ascending=[False, False, True]).head(top).reset_index(drop=True)


def plot_ternary(ax, elements: Sequence[str], fracs: np.ndarray, values: np.ndarray, known: np.ndarray | None = None,
                 known_values: np.ndarray | None = None, label: str = "", cmap: str = "viridis",
                 vmin: float | None = None, vmax: float | None = None):
    """Draw ``values`` on the ternary grid ``fracs`` (filled contours) with known points
    (``known`` fractions, coloured by ``known_values`` with black edges) overlaid."""
    import matplotlib.tri as mtri

    xy = to_cartesian(fracs)
    tri = mtri.Triangulation(xy[:, 0], xy[:, 1])
    cs = ax.tricontourf(tri, values, levels=12, cmap=cmap, vmin=vmin, vmax=vmax)
    corners = np.array([[0, 0], [1, 0], [0.5, np.sqrt(3) / 2], [0, 0]])
    ax.plot(corners[:, 0], corners[:, 1], color="k", lw=1)
    for (x, y), el, ha in zip(corners[:3], elements, ("right", "left", "center")):
        ax.annotate(el, (x, y), xytext=(0, -12 if y == 0 else 5), textcoords="offset points", ha=ha, fontsize=11)
    if known is not None and len(known):
        kxy = to_cartesian(known)
        colour = (dict(c=known_values, cmap=cmap, vmin=cs.get_clim()[0], vmax=cs.get_clim()[1])
                  if known_values is not None else dict(c="w"))
        ax.scatter(kxy[:, 0], kxy[:, 1], edgecolors="k", s=36, zorder=3, label="SuperCon", **colour)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(label or "-".join(elements))
    return cs
