"""Figures of notebook 01: stage-wise Lipschitz ratios, jumps, bisections, generated unit cells."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from matdiscovery.generator.smoothness import CAUSES, CONTINUOUS_GROUPS, STAGES, SmoothnessResult

#: oblique projection of Cartesian (x, y, z) Å onto the page: x right, z up, y receding
_PROJ = np.array([[1.0, 0.0], [0.45, 0.3], [0.0, 1.0]])
STAGE_LABELS = {"raw": "raw network output (norm)", "premerge": "expanded cell before merging (RDF)",
                "final": "decoded crystal (RDF)"}


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
        order = np.argsort(-xyz[:, 1])
        xy = xyz @ _PROJ
        species = [s.specie.symbol for s in sites]
        palette = colors if colors is not None else {}
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for sp in sorted(set(species)):
            palette.setdefault(sp, cycle[len(palette) % len(cycle)])
        radius = np.array([float(s.specie.atomic_radius or 1.0) for s in sites])
        ax.scatter(xy[order, 0], xy[order, 1], s=40 * radius[order] ** 2, c=[palette[species[k]] for k in order],
                   edgecolors="k", linewidths=0.3, zorder=2)
        for sp in sorted(set(species)):
            ax.scatter([], [], color=palette[sp], label=sp, s=25)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)


def _combo_frame(result: SmoothnessResult, combos: dict[str, tuple[str, str]]) -> pd.DataFrame:
    f = result.perturbations
    parts = [f[(f["generator"] == g) & (f["decoder"] == d) & f["group"].isin(CONTINUOUS_GROUPS)].assign(combo=name)
             for name, (g, d) in combos.items()]
    return pd.concat(parts, ignore_index=True)


def plot_lipschitz_by_stage(result: SmoothnessResult, combos: dict[str, tuple[str, str]]):
    """Median (solid) and 95th-percentile (dashed) Lipschitz ratio vs step, one panel per stage."""
    import matplotlib.pyplot as plt

    f = _combo_frame(result, combos)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, stage in zip(axes, STAGES):
        for k, (name, g) in enumerate(f.groupby("combo", sort=False)):
            q = g.groupby("step")[f"lip_{stage}"]
            color = f"C{k}"
            ax.plot(q.median().index, q.median().clip(lower=1e-6), "-o", ms=3, color=color, label=name)
            ax.plot(q.quantile(0.95).index, q.quantile(0.95).clip(lower=1e-6), "--", color=color, lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="input step (input units)", ylabel="change / step",
               title=STAGE_LABELS[stage])
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle("Local Lipschitz ratio by stage (solid: median, dashed: 95th percentile; ratios below 1e-6 drawn at 1e-6)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_jumps(result: SmoothnessResult, combos: dict[str, tuple[str, str]]):
    """Left: discrete jump rate vs step; right: jumps by cause (all steps)."""
    import matplotlib.pyplot as plt

    f = _combo_frame(result, combos)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for k, (name, g) in enumerate(f.groupby("combo", sort=False)):
        r = g.groupby("step")["jump"].mean()
        axes[0].plot(r.index, r.values, "-o", ms=3, color=f"C{k}", label=name)
    axes[0].set(xscale="log", xlabel="input step (input units)", ylabel="fraction with a jump",
                title="jumps: atom count, formula or spglib group changed")
    axes[0].legend(fontsize=7, frameon=False)
    counts = f[f["jump"]].groupby(["combo", "cause"]).size().unstack(fill_value=0).reindex(
        index=list(combos), columns=list(CAUSES), fill_value=0)
    counts.plot.barh(stacked=True, ax=axes[1], width=0.7)
    axes[1].set(xlabel="jumps (count, all steps)", ylabel="", title="cause of each jump")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def plot_bisections(result: SmoothnessResult, combos: dict[str, tuple[str, str]]):
    """Ratio across each bisected segment over the stage's reference ratio, per stage; the
    verdict factor is the dashed line (above it: steep, a discontinuity at that scale)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    b = result.bisections
    for ax, stage in zip(axes, STAGES):
        for k, (name, (g, d)) in enumerate(combos.items()):
            rows = b[(b["generator"] == g) & (b["stage"] == stage) & ((b["decoder"] == d) if stage == "final" else True)]
            ref = result.references(g, d)[stage]
            y = (rows[f"lip_{stage}"] / ref).clip(lower=1e-3, upper=1e12) if ref > 0 else rows[f"lip_{stage}"]
            ax.scatter(np.full(len(y), k) + np.linspace(-0.2, 0.2, len(y)), y, s=10, color=f"C{k}")
        ax.axhline(result.factor, ls="--", color="k", lw=0.8)
        ax.set(yscale="log", xticks=range(len(combos)), title=STAGE_LABELS[stage])
        ax.set_xticklabels(list(combos), rotation=30, fontsize=7)
    axes[0].set_ylabel("bisected ratio / reference ratio")
    fig.suptitle(f"Ratio across each segment bisected to the final width (dashed: verdict factor {result.factor:g}; "
                 "values clipped to [1e-3, 1e12])", fontsize=9)
    fig.tight_layout()
    return fig


def plot_showcase(rows: pd.DataFrame):
    """Unit cells of generated crystals (one panel each)."""
    import matplotlib.pyplot as plt

    n = max(len(rows), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2))
    for ax, (_, r) in zip(np.atleast_1d(axes), rows.iterrows()):
        s = r["structure"]
        plot_cell(ax, s, colors={}, title=f"{s.composition.reduced_formula}: requested {r['spacegroup']}, "
                                          f"found {r['spacegroup_found']}\n{len(s)} atoms, {r['variant']} decoder")
    fig.tight_layout()
    return fig
