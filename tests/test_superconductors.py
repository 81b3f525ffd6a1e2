import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from matdiscovery.datasets import BadRow
from matdiscovery import superconductors as sc
from matdiscovery.superconductors.cleaning import skipped_reason


# ------------------------------------------------------------------ cleaning


def test_composition_key_is_canonical():
    assert sc.composition_key(Composition("Zr2Ni")) == sc.composition_key(Composition("Ni1Zr2")) == "Ni0.3333Zr0.6667"
    assert sc.composition_key(Composition("Ni2Zr4")) == sc.composition_key(Composition("NiZr2"))
    assert sc.composition_key(Composition("NiZr2")) != sc.composition_key(Composition("NiZr3"))
    with pytest.raises(TypeError, match="Composition"):
        sc.composition_key("NiZr2")


@pytest.mark.parametrize("formula, family, expected", [
    ("YBa2Cu3O7", "Y123", "cuprate"),
    ("LaFeAsO0.9F0.1", "oxypnictide", "iron_based"),
    ("FeSe", None, "iron_based"),
    ("H3S", None, "hydride"),
    ("K3C60", "fullerene", "fullerene"),
    ("Ba0.6K0.4BiO3", "BKBO", "bismuthate"),
    ("SrTiO3", None, "oxide"),
    ("CeCoIn5", "HoCoGa5", "heavy_fermion"),
    ("YNi2B2C", "LuNi2B2C", "borocarbide"),
    ("NbSe2", None, "chalcogenide"),
    ("Nb3Sn", "Cr3Si(A15)", "intermetallic"),
    ("Cu", None, "intermetallic"),
])
def test_chemical_class_rules(formula, family, expected):
    assert sc.chemical_class(Composition(formula), family) == expected


def test_family_group():
    assert sc.family_group(Composition("YBa2Cu3O7"), "Y123", "cuprate") == "cuprate"
    assert sc.family_group(Composition("Nb3Sn"), "Cr3Si(A15)", "intermetallic") == "str3:Cr3Si(A15)"
    assert sc.family_group(Composition("Nb3Sn"), None, "intermetallic") == "sys:Nb-Sn"


def _frame(rows, skipped=()):
    frame = pd.DataFrame(rows, columns=["formula", "tc_K", "family"])
    frame["composition"] = [Composition(f.replace("-X", "").replace("OY", "O")) for f in frame["formula"]]
    frame["oxygen_variable"] = frame["formula"].str.contains("-X")
    frame.attrs["skipped"] = list(skipped)
    return frame


def test_clean_supercon_merges_and_counts():
    bad = BadRow("x.tsv", 3, "element", "Y1Ba2Cu3Oz", "FormulaError: formula 'Y1Ba2Cu3Oz': variable 'z' in place of the amount of O (content unknown)")
    frame = _frame([
        ("Nb3Sn", 18.0, "Cr3Si(A15)"),
        ("Sn1Nb3", 17.0, "Cr3Si(A15)"),
        ("Nb6Sn2", 10.0, None),            # same composition: median of 18, 17, 10 = 17
        ("Er1Ba2Cu3O7-X", 275.0, "Y123"),  # implausible Tc
        ("H3S", 203.0, None),              # hydride: allowed above 165 K
        ("MgB2", 39.0, "AlB2"),
    ], skipped=[bad])
    table, report = sc.clean_supercon(frame)
    assert report.n_loader_skipped == 1 and report.loader_skipped_by_reason == {"oxygen content unknown (Oz/OX)": 1}
    assert report.n_implausible_tc == 1
    assert report.n_compositions == 3 and report.n_merged_duplicates == 2
    nb3sn = table.set_index("key").loc[sc.composition_key(Composition("Nb3Sn"))]
    assert nb3sn.tc_K == 17.0 and nb3sn.tc_max_K == 18.0 and nb3sn.n_measurements == 3
    assert nb3sn.family == "Cr3Si(A15)" and nb3sn.group == "str3:Cr3Si(A15)"
    assert set(table["chem_class"]) == {"intermetallic", "hydride"}
    assert report.n_raw_rows == len(frame) + 1


def test_clean_supercon_rejects_missing_columns():
    with pytest.raises(ValueError, match="missing"):
        sc.clean_supercon(pd.DataFrame({"formula": ["Nb"]}))


def test_skipped_reason_categories():
    assert skipped_reason("unknown element symbol 'M'") == "generic metal 'M'"
    assert skipped_reason("unexpected character(s) ['=']") == "stray character (+, -, =)"


# ------------------------------------------------------------------ models


def _synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    tc = np.clip(15 * X[:, 0] + 10 + rng.normal(scale=2, size=n), 0, None)
    groups = np.array([f"g{i % 8}" for i in range(n)])
    return X, tc, groups


def test_labels_and_errors():
    np.testing.assert_array_equal(sc.labels(np.array([0.0, 9.9, 10.0, 30.0]), 10.0), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        sc.labels(np.array([np.nan, 1.0]), 10.0)
    with pytest.raises(ValueError, match="threshold_K"):
        sc.labels(np.array([1.0]), 0)


def test_classifier_ensemble_learns_and_spreads():
    X, tc, _ = _synthetic()
    y = sc.labels(tc, 10.0)
    clf = sc.TcClassifierEnsemble(n_estimators=20, seed=0, n_jobs=1).fit(X[:300], y[:300])
    mean, std = clf.predict_dist(X[300:])
    np.testing.assert_allclose(mean, clf.predict_proba(X[300:]), atol=1e-6)
    assert (std >= 0).all() and std.max() > 0
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(y[300:], mean) > 0.9
    with pytest.raises(ValueError, match="single class"):
        sc.TcClassifierEnsemble(n_estimators=5).fit(X[:10], np.zeros(10))
    with pytest.raises(ValueError, match="n_estimators"):
        sc.TcClassifierEnsemble(n_estimators=1)


def test_regressor_predicts_kelvin():
    X, tc, _ = _synthetic()
    reg = sc.TcRegressor(n_estimators=20, n_jobs=1).fit(X[:300], tc[:300])
    pred = reg.predict(X[300:])
    assert (pred >= 0).all() and np.corrcoef(pred, tc[300:])[0, 1] > 0.8
    with pytest.raises(ValueError, match="≥ 0 K"):
        reg.fit(X[:3], np.array([1.0, -2.0, 3.0]))


def test_cross_validate_random_and_grouped():
    X, tc, groups = _synthetic()
    for split in ("random", "grouped"):
        r = sc.cross_validate(X, tc, groups, 10.0, split=split, n_folds=4, n_estimators=10, calibrate=True, n_jobs=1)
        assert 0.8 < r.roc_auc <= 1 and r.proba.shape == (len(tc),)
        assert r.tc_r2 > 0.5 and len(r.fold_roc_auc) == 4
    with pytest.raises(ValueError, match="split"):
        sc.cross_validate(X, tc, groups, 10.0, split="stratified")


def test_roost_cross_validate_runs_small():
    comps = [Composition(f) for f in ["Nb3Sn", "MgB2", "NbTi", "Al", "Pb", "Cu", "YBa2Cu3O7", "LaFeAsO", "NaCl", "SiO2"] * 4]
    tc = np.array([18, 39, 10, 1.2, 7.2, 0, 92, 26, 0, 0] * 4, dtype=float)
    groups = np.array([c.chemical_system for c in comps])
    r = sc.roost_cross_validate(comps, tc, groups, 10.0, split="grouped", n_folds=2, epochs=1, dim=8, n_layers=1)
    assert np.isfinite(r["tc_r2"]) and r["n_test"] == len(r["test_idx"]) > 0


# ------------------------------------------------------------------ acquisition


def test_acquisitions():
    rng = np.random.default_rng(0)
    mean = np.array([0.9, 0.8, 0.7, 0.1, 0.2])
    std = np.array([0.0, 0.0, 0.0, 0.5, 0.0])
    np.testing.assert_array_equal(sc.greedy(mean, std, 2, rng), [0, 1])
    np.testing.assert_array_equal(sc.ucb(mean, std, 2, rng, beta=0.0), [0, 1])
    np.testing.assert_array_equal(sc.ucb(mean, std, 1, rng, beta=2.0), [3])
    systems = np.array(["A-B", "A-B", "C-D", "E-F", "G-H"])
    np.testing.assert_array_equal(sc.diverse(mean, std, 3, rng, beta=0.0, systems=systems), [0, 2, 4])
    # too few systems: topped up in score order
    assert sorted(sc.diverse(mean, std, 5, rng, beta=0.0, systems=np.array(["A"] * 5)).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="k="):
        sc.greedy(mean, std, 6, rng)
    with pytest.raises(ValueError, match="unknown acquisition"):
        sc.acquire("thompson", mean, std, 1, rng)
    with pytest.raises(ValueError, match="chemical system"):
        sc.diverse(mean, std, 1, rng)


# ------------------------------------------------------------------ pool, oracle, loop


def _toy_tables(n_s=240, n_j=300, seed=0):
    """SuperCon-like table with 6 groups; JARVIS-like candidates; features where feature 0
    drives Tc and feature 1 separates JARVIS from SuperCon (so feedback matters)."""
    rng = np.random.default_rng(seed)
    groups = np.array([f"g{i % 6}" for i in range(n_s)])
    X_s = rng.normal(size=(n_s, 5))
    X_s[:, 1] = 0.0
    tc = np.where(X_s[:, 0] > 0, 20.0, 2.0)
    supercon = pd.DataFrame({"tc_K": tc, "group": groups, "chemical_system": [f"s{i % 40}" for i in range(n_s)]})
    X_j = rng.normal(size=(n_j, 5))
    X_j[:, 0] = np.abs(X_j[:, 0]) + 0.5  # look like superconductors on feature 0
    X_j[:, 1] = 3.0                      # but are different on feature 1
    jarvis = pd.DataFrame({"chemical_system": [f"j{i % 100}" for i in range(n_j)]})
    return X_s, supercon, X_j, jarvis


def test_scenario_hides_groups_and_oracle_reveals():
    X_s, supercon, X_j, jarvis = _toy_tables()
    scn = sc.make_scenario(X_s, supercon, X_j, jarvis, ["g1", "g4"], 10.0, jarvis_limit=100, seed=0)
    assert not set(scn.family[scn.train_idx]) & {"g1", "g4"}
    assert set(scn.family[scn.pool_idx]) == {"g1", "g4", "jarvis"}
    assert len(scn.pool_idx) == (supercon.group.isin(["g1", "g4"])).sum() + 100
    assert not set(scn.train_idx) & set(scn.pool_idx)
    j_rows = scn.pool_idx[scn.family[scn.pool_idx] == "jarvis"]
    np.testing.assert_array_equal(scn.oracle(j_rows), 0.0)
    s_rows = scn.pool_idx[:5]
    np.testing.assert_array_equal(scn.oracle(s_rows), supercon["tc_K"].to_numpy()[s_rows])
    with pytest.raises(IndexError):
        scn.oracle(np.array([10**6]))
    with pytest.raises(ValueError, match="not in SuperCon"):
        sc.make_scenario(X_s, supercon, X_j, jarvis, ["nope"], 10.0)


def test_choose_hidden_groups_and_eligible():
    X_s, supercon, _, _ = _toy_tables()
    el = sc.eligible_groups(supercon, 10.0, min_size=10, max_size=100, min_positive=3)
    assert el == [f"g{i}" for i in range(6)]
    h0 = sc.choose_hidden_groups(el, 2, ["g0"], seed=0)
    assert h0[0] == "g0" and len(set(h0)) == 3 and h0 == sc.choose_hidden_groups(el, 2, ["g0"], seed=0)
    with pytest.raises(ValueError, match="not eligible"):
        sc.choose_hidden_groups(el, 1, ["zz"], seed=0)
    with pytest.raises(ValueError, match="only"):
        sc.choose_hidden_groups(el, 9, [], seed=0)


def test_closed_loop_learns_from_feedback_open_loop_does_not():
    X_s, supercon, X_j, jarvis = _toy_tables()
    scn = sc.make_scenario(X_s, supercon, X_j, jarvis, ["g1", "g4"], 10.0, seed=0)
    closed = sc.run_loop(scn, "greedy", n_cycles=3, k=20, closed=True, n_estimators=20, seed=0, n_jobs=1)
    opened = sc.run_loop(scn, "greedy", n_cycles=3, k=20, closed=False, n_estimators=20, seed=0, n_jobs=1)
    for r in (closed, opened):
        picks = np.concatenate(r.picks)
        assert len(set(picks)) == len(picks) and set(picks) <= set(scn.pool_idx)
        assert ((0 <= r.success_rate) & (r.success_rate <= 1)).all()
        assert r.cumulative_discoveries[-1] == sum(int((t >= 10).sum()) for t in r.tc_revealed)
    # both start from the same model; with feedback the JARVIS look-alikes are learnt away
    assert closed.success_rate[0] == opened.success_rate[0]
    assert closed.success_rate[-1] > opened.success_rate[-1]
    assert set(closed.rediscovered_groups) <= {"g1", "g4"}
    with pytest.raises(ValueError, match="exceed the pool"):
        sc.run_loop(scn, "greedy", n_cycles=100, k=100)


def test_summaries_and_intervals():
    m, lo, hi = sc.mean_ci(np.array([[0.1, 0.2], [0.3, 0.4], [0.2, 0.3]]))
    np.testing.assert_allclose(m, [0.2, 0.3])
    assert (lo < m).all() and (hi > m).all()
    ratio, rlo, rhi = sc.ratio_ci(np.array([0.1, 0.2, 0.3]), np.array([0.4, 0.4, 0.4]))
    assert ratio == pytest.approx(2.0) and rlo <= ratio <= rhi
    X_s, supercon, X_j, jarvis = _toy_tables()
    scns = {s: sc.make_scenario(X_s, supercon, X_j, jarvis, ["g2"], 10.0, seed=s) for s in (0, 1)}
    results = sc.run_seeds(scns, ["greedy", "diverse"], n_cycles=2, k=10, n_estimators=10, n_jobs=1, progress=False)
    table = sc.summarize(results)
    assert len(table) == 2 * 2 * 2 and set(table["n_seeds"]) == {2}
    assert (table["ci_low"] <= table["success_rate"]).all()


def test_jarvis_candidates_dedupes_and_excludes_supercon():
    jarvis = pd.DataFrame({
        "jid": ["a", "b", "c", "d", "e"],
        "formula": ["NbSn3", "Nb3Sn", "Sn3Nb", "NaCl", "Nb"],
        "composition": [Composition(f) for f in ["NbSn3", "Nb3Sn", "Sn3Nb", "NaCl", "Nb"]],
        "ehull": [0.01, 0.0, 0.0, 0.2, 0.0],
        "nelements": [2, 2, 2, 2, 1],
    })
    out = sc.jarvis_candidates(jarvis, {sc.composition_key(Composition("Nb3Sn"))}, ehull_max=0.05)
    assert out["jid"].tolist() == ["c"]  # lowest-ehull NbSn3 polymorph; Nb3Sn known; NaCl unstable; Nb unary
    with pytest.raises(ValueError, match="ehull_max"):
        sc.jarvis_candidates(jarvis, set(), ehull_max=-1)


# ------------------------------------------------------------------ ternary


def test_ternary_grid_and_projection():
    comps, fr = sc.ternary_grid(["Zr", "In", "Ni"], n_div=4)
    assert len(comps) == 15 - 3 and np.allclose(fr.sum(axis=1), 1)
    assert all(c.get_atomic_fraction("Zr") == pytest.approx(f[0]) for c, f in zip(comps, fr))
    inner, _ = sc.ternary_grid(["Zr", "In", "Ni"], n_div=4, include_edges=False)
    assert len(inner) == 3
    xy = sc.to_cartesian(np.eye(3))
    np.testing.assert_allclose(xy, [[0, 0], [1, 0], [0.5, np.sqrt(3) / 2]])
    with pytest.raises(ValueError, match="three distinct"):
        sc.ternary_grid(["Zr", "Zr", "Ni"])
    with pytest.raises(ValueError, match="unknown element"):
        sc.ternary_grid(["Zr", "Qq", "Ni"])


def test_systems_masks_and_ranking():
    comps = [Composition(f) for f in ["Zr2Ni", "ZrInNi2", "ZrO2", "Zr"]]
    np.testing.assert_array_equal(sc.in_system(comps, ["Zr", "In", "Ni"]), [True, True, False, False])
    np.testing.assert_allclose(sc.fractions_in_system(comps[:1], ["Zr", "In", "Ni"]), [[2 / 3, 0, 1 / 3]])
    with pytest.raises(ValueError, match="outside"):
        sc.fractions_in_system(comps[2:3], ["Zr", "In", "Ni"])
    top = sc.rank_ternary_systems(np.array(["A-B-C", "A-B-C", "D-E-F", "G-H", "In-Ni-Zr"]),
                                  np.array([0.2, 0.9, 0.5, 1.0, 1.0]), exclude=["In-Ni-Zr"], top=2)
    assert top["system"].tolist() == ["A-B-C", "D-E-F"] and top["n_candidates"].tolist() == [2, 1]


def test_plot_ternary_draws():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps, fr = sc.ternary_grid(["Zr", "In", "Ni"], n_div=6)
    fig, ax = plt.subplots()
    cs = sc.plot_ternary(ax, ["Zr", "In", "Ni"], fr, fr[:, 0], known=np.array([[0.5, 0.0, 0.5]]), known_values=np.array([1.0]))
    assert cs is not None and ax.get_title() == "Zr-In-Ni"
    plt.close(fig)


def _result(closed: bool, rates: list[list[float]], groups: list[list[str]], seed: int = 0) -> sc.LoopResult:
    return sc.LoopResult("greedy", closed, seed, [np.arange(len(t)) for t in rates], [np.array(t) for t in rates],
                         10.0, ["a", "b"], [np.array(g, dtype=object) for g in groups])


def test_rediscovered_by_cycle_counts_hidden_groups_cumulatively():
    r = _result(True, [[0.0, 12.0], [20.0, 5.0], [30.0, 0.0]], [["jarvis", "c"], ["a", "b"], ["a", "jarvis"]])
    assert r.rediscovered_by_cycle.tolist() == [0, 1, 1]  # 'c' is not hidden; 'b' failed (5 K)
    assert r.rediscovered_groups == ["a"]


def test_improvement_table_ratio_of_last_to_first_cycle():
    results = [_result(True, [[12.0, 0.0], [12.0, 11.0]], [["a", "x"], ["a", "b"]], seed=s) for s in (0, 1)]
    results += [_result(False, [[12.0, 0.0], [0.0, 0.0]], [["a", "x"], ["x", "x"]], seed=s) for s in (0, 1)]
    table = sc.improvement_table(results).set_index("mode")
    assert table.loc["closed", "last/first success rate"] == pytest.approx(2.0)
    assert table.loc["open", "last/first success rate"] == pytest.approx(0.0)
    assert table.loc["closed", "hidden groups re-discovered"] == 2 and table.loc["open", "hidden groups re-discovered"] == 1
