"""Closed-loop cycle time and composition featurisation throughput (notebook 04).

Featurisation — ours: :func:`matdiscovery.superconductors.featurize` (the shared vectorised
``magpie_features`` over a cached element table); baseline: the same 144 statistics computed
naively per composition from pymatgen ``Element`` attributes (what one writes without a table).
Loop — ours: one closed loop (4 cycles × 40 picks, default pool: every low-ehull JARVIS candidate
plus the hidden families) with the extremely-randomised-trees ensemble (params.yaml size);
baseline: the same loop with scikit-learn's default ``RandomForestClassifier(100 trees)``.

    .venv/bin/python benchmarks/bench_closed_loop.py [--n-feat 3000] [--trees 64]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from pymatgen.core import Composition

from matdiscovery import datasets
from matdiscovery import superconductors as sc
from matdiscovery.composition import ELEMENT_PROPERTIES, STOICH_NORMS, _raw_row
from matdiscovery.superconductors import models as sc_models


def naive_magpie(compositions: list[Composition]) -> np.ndarray:
    """Per-composition Magpie statistics straight from pymatgen (no element table cache)."""
    out = []
    for comp in compositions:
        items = sorted(comp.fractional_composition.items(), key=lambda kv: kv[0].Z)
        fr = np.array([a for _, a in items], dtype=float)
        props = np.array([_raw_row(el) for el, _ in items], dtype=float)
        props = np.where(np.isnan(props), 0.0, props)
        mean = fr @ props
        stats = [mean, fr @ np.abs(props - mean), props.min(0), props.max(0), props.max(0) - props.min(0), props[np.argmax(fr)]]
        norms = [float(len(fr)) if p == 0 else float((fr**p).sum() ** (1 / p)) for p in STOICH_NORMS]
        out.append(np.concatenate([np.stack(stats, 1).reshape(-1), norms]))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-feat", type=int, default=3000, help="compositions for the featurisation benchmark")
    parser.add_argument("--trees", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    raw = datasets.load_supercon_nims(on_error="skip")
    table, _ = sc.clean_supercon(raw)
    comps = list(table["composition"].iloc[: args.n_feat])
    t0 = time.perf_counter(); ours = sc.featurize(comps); t_ours = time.perf_counter() - t0
    t0 = time.perf_counter(); base = naive_magpie(comps); t_base = time.perf_counter() - t0
    assert ours.shape[1] == base.shape[1] == 6 * len(ELEMENT_PROPERTIES) + len(STOICH_NORMS)
    print(f"featurisation: ours {len(comps) / t_ours:,.0f} compositions/s, naive pymatgen {len(comps) / t_base:,.0f}/s "
          f"-> ratio {t_base / t_ours:.1f}x")

    jarvis = datasets.load_jarvis_dft()
    cands = sc.jarvis_candidates(jarvis, set(table["key"]), ehull_max=0.05)
    t0 = time.perf_counter()
    X_s = sc.featurize(list(table["composition"])); X_j = sc.featurize(list(cands["composition"]))
    t_all = time.perf_counter() - t0
    print(f"featurised {len(X_s) + len(X_j):,} compositions in {t_all:.1f} s ({(len(X_s) + len(X_j)) / t_all:,.0f}/s)")
    eligible = [g for g in sc.eligible_groups(table, 10.0) if not g.startswith("str3:Y123")]
    hidden = sc.choose_hidden_groups(eligible, 3, ["iron_based"], args.seed)
    scn = sc.make_scenario(X_s, table, X_j, cands, hidden, 10.0, seed=args.seed)
    print(f"pool {len(scn.pool_idx):,} candidates, training {len(scn.train_idx):,}")

    t0 = time.perf_counter()
    r = sc.run_loop(scn, "ucb", 4, 40, True, n_estimators=args.trees, seed=args.seed)
    t_loop = time.perf_counter() - t0

    class RFEnsemble(sc.TcClassifierEnsemble):
        def __init__(self, n_estimators=100, seed=0, n_jobs=2, **_):
            from sklearn.ensemble import RandomForestClassifier
            self.forest = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=n_jobs)

    original = sc_models.TcClassifierEnsemble
    import matdiscovery.superconductors.loop as loop_mod
    loop_mod.TcClassifierEnsemble = RFEnsemble
    try:
        t0 = time.perf_counter()
        rb = sc.run_loop(scn, "ucb", 4, 40, True, seed=args.seed)
        t_rf = time.perf_counter() - t0
    finally:
        loop_mod.TcClassifierEnsemble = original
    print(f"closed loop (4 cycles x 40 picks, UCB): ours {t_loop:.1f} s ({t_loop / 4:.1f} s/cycle), "
          f"RandomForest(100) baseline {t_rf:.1f} s -> ratio {t_rf / t_loop:.1f}x; budget 60 s")
    print(f"success rate by cycle: ours {np.round(r.success_rate, 3).tolist()}, baseline {np.round(rb.success_rate, 3).tolist()}")


if __name__ == "__main__":
    main()
