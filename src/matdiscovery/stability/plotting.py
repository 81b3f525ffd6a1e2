"""Figures of notebook 02 (each returns the matplotlib figure; energies in eV/atom)."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from pymatgen.core import Structure

from matdiscovery.stability.energies import CHEMISTRY_CLASSES, STABILITY_THRESHOLD


def relaxation_effect(study, variant: str):
    """CHGNet e_hull before vs after relaxation, and the volume change, for the relaxed sample."""
    r = study.relaxed(variant)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4))
    ax = axes[0]
    ax.scatter(r["ehull_chgnet_initial"].clip(-1, 4), r["ehull_chgnet"].clip(-1, 4), s=10, alpha=0.6)
    ax.plot([-1, 4], [-1, 4], "k--", lw=1)
    ax.axhline(STABILITY_THRESHOLD, color="k", ls=":", lw=1)
    ax.set(xlabel="CHGNet e_hull, as generated (eV/atom)", ylabel="after CHGNet relaxation (eV/atom)",
           title=f"{variant}: n={len(r)} (clipped to [-1, 4])")
    axes[1].hist((r["volume_ratio"] - 1).clip(-1, 2) * 100, bins=40, color="C1")
    axes[1].set(xlabel="volume change on relaxation (%)", ylabel="structures", title="relaxation moves the cell")
    fig.tight_layout()
    return fig


def ehull_distributions(study):
    """ECDFs of e_hull after relaxation per judge (with class offsets) for each variant, and the
    controls' DFT e_hull on the same (leave-out) hull."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, judge in zip(axes, ("chgnet", "sevennet")):
        for variant in study.params.variants:
            r = study.relaxed(variant)
            e = r.loc[r["absurd_reason"] == "", f"ehull_{judge}_offset"].dropna().clip(-1, 3)
            ax.ecdf(e, label=f"generated ({variant}), n={len(e)}")
        ax.ecdf(study.controls[f"ehull_{judge}_offset"].dropna().clip(-1, 3), label="controls, judge", ls="--")
        ax.ecdf(study.controls["dft_ehull_loo"].dropna().clip(-1, 3), label="controls, JARVIS DFT", ls=":", color="k")
        ax.axvline(STABILITY_THRESHOLD, color="k", lw=0.8)
        ax.set(xlabel=f"e_hull, {judge} + class offsets (eV/atom)", title=judge)
    axes[0].set_ylabel("fraction ≤ x")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def chemistry_offsets(study):
    """Judge − JARVIS formation energy on the controls per chemistry class, and the per-class
    cross-validated error before and after subtracting the class offsets."""
    c = study.controls
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4))
    data, labels = [], []
    for judge in ("chgnet", "sevennet"):
        for cls in CHEMISTRY_CLASSES:
            d = (c.loc[c["chemistry_class"] == cls, f"ef_{judge}"] - c.loc[c["chemistry_class"] == cls, "dft_ef"]).dropna()
            data.append(d.clip(-1.5, 1.5))
            labels.append(f"{judge}\n{cls.replace('_', ' ')}\nn={len(d)}")
    axes[0].boxplot(data, showfliers=False)
    axes[0].set_xticks(range(1, len(labels) + 1), labels, fontsize=6.5)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set(ylabel="judge − JARVIS E_f (eV/atom)", title="functional mismatch depends on chemistry")
    rows = []
    for judge, off in study.offsets.items():
        for cls in [*CHEMISTRY_CLASSES, "all"]:
            if cls in off.cv_mae_raw:
                rows.append({"class": f"{judge}: {cls}", "raw": off.cv_mae_raw[cls], "class offsets (CV)": off.cv_mae_corrected[cls]})
    pd.DataFrame(rows).set_index("class").plot.barh(ax=axes[1])
    axes[1].set(xlabel="mean |judge − JARVIS| on held-out controls (eV/atom)", ylabel="")
    fig.tight_layout()
    return fig


def out_of_domain(study, variant: str):
    """Judge disagreement |E_f(CHGNet) − E_f(SevenNet)| of the relaxed generated crystals against
    their distance to the composition judge's training data."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    r = study.relaxed(variant)
    r = r[r["absurd_reason"] == ""]
    ax.scatter(r["ood_distance"], (r["ef_chgnet"] - r["ef_sevennet"]).abs(), s=10, alpha=0.6, label=f"generated ({variant})")
    ax.set(xlabel="embedding distance to training formulas", ylabel="|E_f CHGNet − E_f SevenNet| (eV/atom)",
           yscale="log", title="judge disagreement vs out-of-domain distance")
    ax.legend()
    fig.tight_layout()
    return fig


def crystals(study, variant: str, n: int = 4):
    """Pictures of ``n`` relaxed generated crystals, most stable first (CHGNet + offsets)."""
    from ase.visualize.plot import plot_atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    r = study.relaxed(variant)
    r = r[r["absurd_reason"] == ""].sort_values("ehull_chgnet_offset").head(n)
    fig, axes = plt.subplots(1, max(1, len(r)), figsize=(3.2 * max(1, len(r)), 3.4))
    for ax, row in zip(np.atleast_1d(axes), r.itertuples()):
        s = Structure.from_dict(json.loads(row.final_structure))
        plot_atoms(AseAtomsAdaptor.get_atoms(s), ax, rotation="10x,20y,0z", radii=0.4)
        ax.set_title(f"{row.formula} (requested sg {row.spacegroup})\ne_hull {row.ehull_chgnet_offset:+.3f} eV/atom"
                     f"{'' if row.novel else ', not novel'}", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    return fig
