"""Figures of notebook 04, each drawn from a :class:`~matdiscovery.superconductors.study.ClosedLoopStudy`
(matplotlib only; every axis and colour bar labelled, legends outside the data)."""

from __future__ import annotations

import numpy as np

from matdiscovery.superconductors.study import CHEMISTRY, PROVENANCE, ClosedLoopStudy, reliability
from matdiscovery.superconductors.ternary import fractions_in_system, plot_ternary

_STYLE = {(CHEMISTRY, "closed"): ("C0", "-", "composition model, closed loop"),
          (CHEMISTRY, "open"): ("C0", "--", "composition model, open loop"),
          (PROVENANCE, "closed"): ("C3", "-", "provenance-only control, closed"),
          (PROVENANCE, "open"): ("C3", "--", "provenance-only control, open")}


def success_by_cycle(study: ClosedLoopStudy):
    """Mean success rate per cycle (95 % CI over seeds) of the primary acquisition: rows family /
    time scenario, columns Tc ≥ threshold / any superconductor; random picking dotted."""
    import matplotlib.pyplot as plt

    s = study.summary()
    s = s[s["acquisition"] == study.primary]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for i, scen in enumerate(("family", "time")):
        scenarios = study.scenarios.family if scen == "family" else study.scenarios.time
        for j, name in enumerate(study.thresholds):
            ax = axes[i, j]
            for (model, mode), (colour, ls, label) in _STYLE.items():
                d = s[(s.scenario == scen) & (s.model == model) & (s["mode"] == mode)]
                ax.plot(d.cycle, d[f"success_{name}"], ls, color=colour, marker="o", label=label)
                if mode == "closed":
                    ax.fill_between(d.cycle, d[f"success_{name}_ci_low"], d[f"success_{name}_ci_high"], color=colour, alpha=0.15)
            base = np.mean([v.pool_positive_rate(study.thresholds[name]) for v in scenarios.values()])
            ax.axhline(base, color="k", ls=":", lw=1, label="random picking")
            what = f"Tc ≥ {study.data.threshold_K:g} K" if name == "tc" else "any superconductor"
            ax.set(title=f"{scen} scenario, success = {what}", ylabel="success rate", xticks=range(1, study.n_cycles + 1))
            ax.set_ylim(bottom=0)
            if i == 1:
                ax.set_xlabel("cycle")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(f"{study.primary} acquisition, mean and 95 % CI over {study.n_seeds} seeds (CI bands clipped at 0)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def acquisitions(study: ClosedLoopStudy):
    """Closed-loop success per cycle of every acquisition (family scenario, 95 % CI)."""
    import matplotlib.pyplot as plt

    s = study.summary()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, acq in enumerate(study.acquisitions):
        for mode, ls in (("closed", "-"), ("open", "--")):
            d = s[(s.scenario == "family") & (s.model == CHEMISTRY) & (s.acquisition == acq) & (s["mode"] == mode)]
            ax.plot(d.cycle, d["success_tc"], ls, marker="o", color=f"C{k}", label=f"{acq}, {mode}")
            if mode == "closed":
                ax.fill_between(d.cycle, d["success_tc_ci_low"], d["success_tc_ci_high"], color=f"C{k}", alpha=0.12)
    ax.set(xlabel="cycle", ylabel=f"success rate (Tc ≥ {study.data.threshold_K:g} K)", xticks=range(1, study.n_cycles + 1),
           title="acquisition functions, family scenario (CI clipped at 0)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def per_seed(study: ClosedLoopStudy):
    """Per-seed distributions (primary acquisition): closed − open discoveries, and the first and
    last cycle's success rate, for the composition model and the control in both scenarios."""
    import matplotlib.pyplot as plt

    d = study.per_seed()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    groups = [(scen, model) for scen in ("family", "time") for model in (CHEMISTRY, PROVENANCE)]
    rng = np.random.default_rng(0)
    for x, (scen, model) in enumerate(groups):
        g = d[(d.scenario == scen) & (d.model == model)]
        colour = _STYLE[(model, "closed")][0]
        axes[0].scatter(x + rng.uniform(-0.15, 0.15, len(g)), g.closed_minus_open, s=14, color=colour, alpha=0.7)
        axes[0].boxplot([g.closed_minus_open], positions=[x], widths=0.45, showfliers=False)
        for _, row in g.iterrows():
            axes[1].plot([2 * x, 2 * x + 1], [row["first"], row["last"]], color=colour, alpha=0.3, lw=0.8)
        axes[1].plot([2 * x, 2 * x + 1], [g["first"].mean(), g["last"].mean()], color="k", lw=2)
    names = [f"{scen}\n{'model' if m == CHEMISTRY else 'control'}" for scen, m in groups]
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set(xticks=range(len(groups)), xticklabels=names, ylabel="closed − open discoveries (all cycles)",
                title="per seed: the loop's gain over no feedback")
    axes[1].set(xticks=range(2 * len(groups)), xticklabels=["first", "last"] * len(groups),
                ylabel=f"success rate (Tc ≥ {study.data.threshold_K:g} K)", title="per seed: first vs last cycle (black: mean)")
    for x, name in enumerate(names):
        axes[1].annotate(name.replace("\n", " "), (2 * x + 0.5, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(0, -12), textcoords="offset points", ha="center", fontsize=8)
    fig.tight_layout()
    return fig


def spread_vs_mean(study: ClosedLoopStudy):
    """Ensemble spread against its mean over a pool, with the Bernoulli curve sqrt(m(1 − m))
    that spreads of 0/1-voting trees follow exactly."""
    import matplotlib.pyplot as plt

    u = study.uncertainty
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(u.mean, u.std, s=6, alpha=0.5, label=f"bootstrap ensemble (R² from mean {u.r2_from_mean:.2f})")
    m = np.linspace(0, 1, 200)
    ax.plot(m, np.sqrt(m * (1 - m)), "k--", lw=1, label="single fully grown trees: sqrt(m(1 − m))")
    ax.set(xlabel="ensemble mean P(Tc ≥ T)", ylabel="spread over members (std)", title="UCB's uncertainty, initial model, seed 0")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def calibration(study: ClosedLoopStudy, split: str = "grouped"):
    """Reliability diagram of the out-of-fold predictions of ``split`` cross-validation."""
    import matplotlib.pyplot as plt

    rel = reliability(study.cv[split], study.data.table["tc_K"].to_numpy()[study.cv_rows], study.data.threshold_K)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for kind, d in rel.groupby("kind"):
        ax.plot(d.predicted, d.observed, "o-", label=kind)
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
    ax.set(xlabel="predicted P(Tc ≥ T) (out of fold)", ylabel="observed fraction with Tc ≥ T",
           title=f"reliability, {split} 5-fold CV (10 quantile bins)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def ternary_case(study: ClosedLoopStudy):
    """Calibrated P(Tc ≥ T) of the final closed-loop model over the Zr–In–Ni interior, with the
    system's known compounds (SuperCon-derived and JARVIS) marked."""
    import matplotlib.pyplot as plt

    c = study.case
    fig, ax = plt.subplots(figsize=(6, 5))
    known = fractions_in_system(list(c.known["composition"]), c.elements)
    cs = plot_ternary(ax, c.elements, c.fractions, c.probability, known, None,
                      label=f"{'-'.join(c.elements)} interior: calibrated P(Tc ≥ {study.data.threshold_K:g} K)\n"
                            "(white: compounds in the table, edges included)",
                      cmap="viridis", vmin=0, vmax=max(0.05, float(c.probability.max())))
    fig.colorbar(cs, ax=ax, shrink=0.75, label=f"calibrated P(Tc ≥ {study.data.threshold_K:g} K)")
    fig.tight_layout()
    return fig
