"""Notebook 04's hot paths against named baselines, in one process, repeated (median [min, max]).

1. Featurisation — ours: :func:`matdiscovery.superconductors.featurize` (vectorised Magpie
   statistics over a cached element table); baseline: the same 144 statistics computed per
   composition from pymatgen ``Element`` attributes.
2. Near-duplicate search (composition L1 < 0.1 of JARVIS negatives and SuperCon-derived compounds
   to SuperCon-derived superconductors) — ours: :func:`matdiscovery.superconductors.within_l1` (candidates looked up by
   the elements every neighbour must share); baseline: ``scipy.spatial.distance.cdist`` (cityblock)
   on dense atomic-fraction vectors, in blocks.
3. One closed loop (4 cycles × 40 picks, greedy, family scenario of seed 0) — ours: the bootstrap
   ensemble of forests (``TcClassifierEnsemble``, members fitted in 2 threads); baseline: the same
   ensemble built with scikit-learn's ``BaggingClassifier(ExtraTreesClassifier)`` at ``n_jobs=2``
   (its best setting on 2 cores), same members, trees, leaf size. Both give a member spread.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_closed_loop.py [--repeats 3] [--n-feat 3000]
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition, Element
from scipy.spatial.distance import cdist
from sklearn.ensemble import BaggingClassifier, ExtraTreesClassifier

from matdiscovery import superconductors as sc
from matdiscovery.composition import MAX_Z, STOICH_NORMS, _raw_row, element_table_raw
from matdiscovery.superconductors.models import EnsembleConfig


def naive_magpie(compositions: list[Composition]) -> np.ndarray:
    """Per-composition Magpie statistics with element properties read from pymatgen for every
    composition (no element table cache); missing values filled with the same medians as ours."""
    med = np.nanmedian(element_table_raw()[1:], axis=0)
    out = []
    for comp in compositions:
        items = sorted(comp.fractional_composition.items(), key=lambda kv: kv[0].Z)
        fr = np.array([a for _, a in items], dtype=float)
        props = np.array([_raw_row(Element.from_Z(el.Z)) for el, _ in items], dtype=float)  # D, T → H
        props = np.where(np.isnan(props), med, props)
        mean = fr @ props
        stats = [mean, fr @ np.abs(props - mean), props.min(0), props.max(0), props.max(0) - props.min(0), props[np.argmax(fr)]]
        norms = [float(len(fr)) if p == 0 else float((fr**p).sum() ** (1 / p)) for p in STOICH_NORMS]
        out.append(np.concatenate([np.stack(stats, 1).reshape(-1), norms]))
    return np.array(out)


def dense_fractions(compositions: list[Composition]) -> np.ndarray:
    out = np.zeros((len(compositions), MAX_Z + 1))
    for i, c in enumerate(compositions):
        for el, f in c.fractional_composition.items():
            out[i, el.Z] = f
    return out


def cdist_pairs(query: list[Composition], reference: list[Composition], radius: float, block: int = 500) -> set:
    q, r = dense_fractions(query), dense_fractions(reference)
    pairs = set()
    for start in range(0, len(q), block):
        d = cdist(q[start:start + block], r, metric="cityblock")
        i, j = np.nonzero(d < radius)
        pairs.update(zip((i + start).tolist(), j.tolist()))
    return pairs


class BaggedEnsemble(sc.TcClassifierEnsemble):
    """The baseline: scikit-learn's BaggingClassifier of ExtraTrees forests (spread over members)."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        self.bag_ = BaggingClassifier(
            ExtraTreesClassifier(n_estimators=self.trees_per_member, min_samples_leaf=self.min_samples_leaf,
                                 max_features=self.max_features, class_weight="balanced", n_jobs=1),
            n_estimators=self.n_members, bootstrap=True, random_state=self.seed, n_jobs=self.n_jobs,
        ).fit(X, y)
        return self

    def _per_member(self, X):
        return np.stack([m.predict_proba(X)[:, 1] for m in self.bag_.estimators_])


@dataclass(frozen=True)
class BaggedConfig(EnsembleConfig):
    def make(self, seed: int) -> BaggedEnsemble:
        return BaggedEnsemble(self.n_members, self.trees_per_member, self.min_samples_leaf, seed=seed, n_jobs=self.n_jobs)


def timed(fn, repeats: int) -> tuple[float, float, float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), min(times), max(times), out


def fmt(t: tuple) -> str:
    return f"{t[0]:.2f} s [{t[1]:.2f}, {t[2]:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-feat", type=int, default=3000, help="compositions for the featurisation benchmark")
    parser.add_argument("--n-query", type=int, default=3000, help="JARVIS candidates for the near-duplicate benchmark")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=r".*skipped \d+ malformed row", category=UserWarning)

    data = sc.load_compounds(threshold_K=10.0, ehull_max=0.05, max_elements=4, parent_max_l1=0.2, near_l1=0.1)
    comps = list(data.table["composition"].iloc[: args.n_feat])
    ours, base = timed(lambda: sc.featurize(comps), args.repeats), timed(lambda: naive_magpie(comps), args.repeats)
    assert np.allclose(ours[3], base[3], atol=1e-3), "the baseline must compute the same features"
    print(f"featurisation of {len(comps)} compounds: ours {fmt(ours)}, naive pymatgen {fmt(base)} -> {base[0] / ours[0]:.1f}x")

    t = data.table
    query = list(t.loc[t["source"] == "jarvis", "composition"].iloc[: args.n_query]) + list(t.loc[data.supercon, "composition"])
    pos = list(t.loc[(t["source"] == "supercon") & (t["tc_K"] > 0), "composition"])
    ours = timed(lambda: set(sc.within_l1(query, pos, 0.1)), args.repeats)
    base = timed(lambda: cdist_pairs(query, pos, 0.1), args.repeats)
    differ = ours[3] ^ base[3]  # pairs at exactly L1 = 0.1, decided by rounding
    assert all(abs(sc.composition_l1(query[i], pos[j]) - 0.1) < 1e-9 for i, j in differ)
    print(f"near-duplicates, {len(query)} x {len(pos)} compositions: ours {fmt(ours)}, scipy cdist {fmt(base)} "
          f"-> {base[0] / ours[0]:.1f}x ({len(ours[3])} pairs; {len(differ)} at exactly L1 = 0.1 differ by rounding)")

    scen = sc.make_scenarios(data, [0], always_hidden=["iron_based"], n_random_hidden=3, never_hidden=["cuprate"],
                             ratio=2, year=2008).family[0]
    ens = EnsembleConfig(n_members=8, trees_per_member=8, min_samples_leaf=3, n_jobs=2)
    kw = dict(ensemble=ens, n_cycles=4, k=40, closed=True, threshold_K=10.0, beta=1.0, seed=0)
    ours = timed(lambda: sc.run_loop(scen, "greedy", **kw), args.repeats)
    base = timed(lambda: sc.run_loop(scen, "greedy", **{**kw, "ensemble": BaggedConfig(8, 8, 3, 2)}), args.repeats)
    print(f"closed loop (4 x 40 picks, pool {len(scen.pool_idx)}, training {len(scen.train_idx)}): ours {fmt(ours)}, "
          f"BaggingClassifier(n_jobs=2) {fmt(base)} -> {base[0] / ours[0]:.1f}x")
    print(f"success by cycle: ours {np.round(ours[3].success_rate(), 3).tolist()}, "
          f"baseline {np.round(base[3].success_rate(), 3).tolist()}")


if __name__ == "__main__":
    main()
