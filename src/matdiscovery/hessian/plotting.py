"""Figures of notebook 03 (each returns the figure; the notebook saves it by name)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def mae_differences(result) -> plt.Figure:
    """Per data set: every method's MAE relative to STL, ``(MAE − MAE_STL) / MAE_STL`` in %, with
    the 95 % CI of the paired seed differences."""
    fig, axes = plt.subplots(1, len(result.datasets), figsize=(6.2 * len(result.datasets), 4.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], result.datasets.items()):
        methods = [m for m in r.methods if m != "stl"]
        for j, m in enumerate(methods):
            c = r.compare(m, "stl")
            base = c["mae_stl"].astype(float)
            y = np.arange(len(r.targets)) + (j - len(methods) / 2) * 0.12
            ax.errorbar(100 * c["diff"].astype(float) / base, y, fmt="o", ms=4, label=m,
                        xerr=[100 * (c["diff"] - c["diff_ci_low"]).astype(float) / base,
                              100 * (c["diff_ci_high"] - c["diff"]).astype(float) / base])
        ax.axvline(0, color="grey", lw=0.8)
        ax.set(yticks=range(len(r.targets)), yticklabels=r.targets, title=name,
               xlabel="(MAE_method − MAE_STL) / MAE_STL (%), 95 % CI over seeds")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def top_eigenvalues(result) -> plt.Figure:
    """Top eigenvalue per task at the MTL and STL solutions (bars: mean over seeds; error bars:
    seed SD)."""
    fig, axes = plt.subplots(1, len(result.datasets), figsize=(6 * len(result.datasets), 3.8), squeeze=False)
    for ax, (name, r) in zip(axes[0], result.datasets.items()):
        s = r.curvature_summary().reset_index()
        for k, sol in enumerate(["mtl", "stl"]):
            q = s[s.solution == sol].set_index("task").reindex(list(r.targets))
            ax.bar(np.arange(len(q)) + 0.4 * k - 0.2, q["top_eigenvalue"], 0.4, yerr=q["seed_sd"], capsize=3,
                   label=f"{sol.upper()} solution")
        ax.set(xticks=range(len(r.targets)), xticklabels=r.targets, yscale="log", title=name,
               ylabel="top Hessian eigenvalue (± seed SD)")
        ax.tick_params(axis="x", rotation=20)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curvature_vs_penalty(result) -> plt.Figure:
    """Per data set: each (task, seed)'s top eigenvalue at the MTL solution against its MTL
    penalty; the title gives the within-data-set Spearman ρ."""
    fig, axes = plt.subplots(1, len(result.datasets), figsize=(5.5 * len(result.datasets), 3.8), squeeze=False)
    for ax, (name, r) in zip(axes[0], result.datasets.items()):
        lam = r.curvature[r.curvature.solution == "mtl"].groupby(["seed", "task"])["top_eigenvalue"].mean().unstack()
        pen = 100 * (r.mae_table("mtl") / r.mae_table("stl") - 1)
        for task in r.targets:
            ax.scatter(lam.loc[pen.index, task], pen[task], label=task, s=18)
        rho = r.curvature_penalty()
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xscale="log", title=f"{name}: Spearman ρ = {rho['spearman']:.2f} (p = {rho['p_value']:.2g}, n = {rho['n']})",
               xlabel="top eigenvalue at the MTL solution (per seed)", ylabel="MTL penalty (%)")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def spectra_and_weights(result, floor: float = 1e-6) -> plt.Figure:
    """Top row: Gaussian-smoothed SLQ densities of each task loss at the first seed's MTL solution
    (values below ``floor`` clipped to it); bottom row: the curvature remedy's task weights."""
    fig, axes = plt.subplots(2, len(result.datasets), figsize=(5.5 * len(result.datasets), 6.6), squeeze=False)
    for j, (name, r) in enumerate(result.datasets.items()):
        dens = r.outcomes[0].density
        lo = min(n.min() for n, _ in dens.values())
        hi = max(n.max() for n, _ in dens.values())
        grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 600)
        sigma = max(0.02 * (hi - lo), 1e-12)
        for task, (nodes, weights) in dens.items():
            z = (grid[:, None] - nodes.reshape(1, -1)) / sigma
            d = (np.exp(-0.5 * z**2) * weights.reshape(1, -1)).sum(1) / (nodes.shape[0] * sigma * np.sqrt(2 * np.pi))
            axes[0][j].semilogy(grid, np.maximum(d, floor), label=task)
        axes[0][j].set(title=f"{name}: SLQ density (σ = 2 % of range, clipped at {floor:g})", xlabel="eigenvalue",
                       ylabel="spectral density")
        axes[0][j].legend(fontsize=7)
        hist = r.outcomes[0].weights_history
        if hist:
            w = np.array([h[2] for h in hist])
            for i, task in enumerate(r.targets):
                axes[1][j].plot([h[0] for h in hist], w[:, i], marker="o", ms=3, label=task)
            axes[1][j].legend(fontsize=7)
        axes[1][j].set(xlabel="epoch", ylabel="curvature task weight (mean 1)")
    fig.tight_layout()
    return fig


def curvature_table(result) -> pd.DataFrame:
    """Per data set and task: top eigenvalue (MTL and STL solutions, seed and batch SD), fraction
    of negative curvature and gradient cosine at the MTL solution."""
    curv = pd.concat({name: r.curvature_summary().unstack("solution") for name, r in result.datasets.items()},
                     names=["dataset", "task"])
    curv.columns = [f"{a}_{b}" for a, b in curv.columns]
    extra = pd.concat({name: pd.DataFrame({"negative_fraction": r.negative.groupby("task")["negative_fraction"].mean(),
                                           "grad_cosine": r.grad_cosine()}) for name, r in result.datasets.items()},
                      names=["dataset", "task"])
    return curv.join(extra)
