import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from matdiscovery import superconductors as sc
from matdiscovery.datasets import BadRow
from matdiscovery.superconductors.cleaning import skipped_reason
from matdiscovery.superconductors.models import EnsembleConfig

SMALL = EnsembleConfig(n_members=4, trees_per_member=4, min_samples_leaf=2, n_jobs=1)


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


def test_oxygen_recovery_uses_the_nominal_oxygen_of_the_structure_type():
    known = [(f"Y1Ba2Cu3O{o}", 90.0, "Y123") for o in (7, 7, 7, 6.9, 6.5, 6)]
    frame = _frame(known + [("Y1Ba2Cu3", 91.0, "Y123"),        # cations only: oxygen unknown
                            ("Y1Ba2Cu4", 80.0, "Y123"),        # 7 cations, the type has 6
                            ("La2Cu1", 30.0, None),             # no structure type
                            ("Bi2Sr2Cu1", 10.0, "Bi2201")])     # a type without oxide rows
    frame["oxygen_unknown"] = [False] * len(known) + [True] * 4
    table = sc.nominal_oxygen(frame)
    assert table.loc["Y123", "o_nominal"] == 7 and table.loc["Y123", "cations"] == 6
    out, dropped, recovered = sc.recover_oxygen(frame)
    assert recovered == {"Y123": 1}
    assert dropped == {"cation count differs from the type's": 1, "no structure type": 1,
                       "type without a nominal oxygen": 1}
    row = out[out["oxygen_recovered"]]
    assert len(row) == 1 and row["composition"].iloc[0] == Composition("Y1Ba2Cu3O7")
    cleaned, report = sc.clean_supercon(frame)
    assert report.n_oxygen_unknown == 4 and report.n_oxygen_recovered == 1
    assert cleaned["oxygen_recovered"].sum() == 1


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


def test_bootstrap_ensemble_learns_and_its_spread_is_not_bernoulli():
    X, tc, _ = _synthetic()
    y = sc.labels(tc, 10.0)
    clf = SMALL.make(0).fit(X[:300], y[:300])
    mean, std = clf.predict_dist(X[300:])
    np.testing.assert_allclose(mean, clf.predict_proba(X[300:])[:, 1], atol=1e-12)
    assert (std >= 0).all() and std.max() > 0
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(y[300:], mean) > 0.9
    assert not sc.spread_is_bernoulli(mean, std)
    # single fully grown trees vote 0/1: their spread is exactly sqrt(m(1-m)), the landed model's flaw
    trees = sc.TcClassifierEnsemble(n_members=16, trees_per_member=1, min_samples_leaf=1, n_jobs=1).fit(X[:300], y[:300])
    m1, s1 = trees.predict_dist(X[300:])
    assert sc.spread_is_bernoulli(m1, s1)
    assert sc.spread_explained_by_mean(m1, s1, n_bins=5) > sc.spread_explained_by_mean(mean, std, n_bins=5)
    with pytest.raises(ValueError, match="both classes"):
        SMALL.make(0).fit(X[:10], np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="n_members"):
        sc.TcClassifierEnsemble(n_members=1).fit(X, y)


def test_spread_checks():
    m = np.linspace(0.01, 0.99, 200)
    assert sc.spread_is_bernoulli(m, np.sqrt(m * (1 - m)))
    assert sc.spread_explained_by_mean(m, np.sqrt(m * (1 - m)), n_bins=50) > 0.99
    noise = np.random.default_rng(0).uniform(0, 0.2, 200)
    assert sc.spread_explained_by_mean(m, noise, n_bins=20) < 0.3
    with pytest.raises(ValueError, match="mean/std"):
        sc.spread_explained_by_mean(m[:5], noise[:5])


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
        r = sc.cross_validate(X, tc, groups, 10.0, model=SMALL, split=split, n_folds=4, regressor_trees=10)
        assert 0.8 < r.roc_auc <= 1 and r.proba.shape == (len(tc),)
        assert 0 <= r.proba_calibrated.min() and r.proba_calibrated.max() <= 1
        assert r.tc_r2 > 0.5 and len(r.fold_roc_auc) == 4
    with pytest.raises(ValueError, match="split"):
        sc.cross_validate(X, tc, groups, 10.0, model=SMALL, split="stratified")


def test_calibrated_classifier_uses_group_folds():
    X, tc, groups = _synthetic()
    y = sc.labels(tc, 10.0)
    cal = sc.calibrated_classifier(X, y, groups, model=SMALL, seed=0)
    p = cal.predict_proba(X)[:, 1]
    assert p.shape == (len(y),) and 0 <= p.min() and p.max() <= 1
    assert len(cal.calibrated_classifiers_) == 3


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


# ------------------------------------------------------------------ parents, compounds, grouping


@pytest.mark.parametrize("formula, parent, how", [
    ("Nb3Sn", "Nb3Sn", "exact"),
    ("Nb6Sn2", "Nb3Sn", "exact"),
    ("La1.85Sr0.15Cu1O4", "La2CuO4", "rounded"),
    ("Y1Ba2Cu3O6.6", "YBa2Cu3O7", "rounded"),
    ("Y1Ba2Cu3O6.5", "YBa2Cu3O7", "rounded"),      # not Y2Ba4Cu6O13: rounding comes first
    ("Nb3Sn0.91Al0.09", "Nb3Sn", "rounded"),
    ("Ba0.6K0.4Fe2As2", "BaFe2As2", "rounded"),
    ("Nb0.75Sn0.25", "Nb3Sn", "exact"),             # an ordered compound written per atom
    ("Mo0.39Ru0.61", None, "no parent"),            # a solid solution
])
def test_parent_compound(formula, parent, how):
    p, h = sc.parent_compound(Composition(formula), max_l1=0.2)
    assert h == how
    assert (p is None and parent is None) or p == Composition(parent)


def test_parent_compound_errors_and_distance():
    with pytest.raises(TypeError):
        sc.parent_compound("Nb3Sn")
    with pytest.raises(ValueError, match="max_l1"):
        sc.parent_compound(Composition("Nb3Sn"), max_l1=-1)
    assert sc.composition_l1(Composition("Nb3Sn"), Composition("Nb6Sn2")) == 0
    assert sc.composition_l1(Composition("NaCl"), Composition("KBr")) == pytest.approx(2)
    assert sc.integer_multiplier(Composition("Nb0.75Sn0.25")) == 4 and sc.integer_multiplier(Composition("Mo0.39Ru0.61")) == 0


def test_within_l1_matches_brute_force():
    rng = np.random.default_rng(0)
    elements = ["Nb", "Sn", "Al", "Ge", "O", "Cu", "Ba"]
    comps = []
    for _ in range(150):
        els = rng.choice(elements, size=rng.integers(1, 4), replace=False)
        comps.append(Composition({e: float(rng.integers(1, 6)) + rng.choice([0, 0.1, 0.3]) for e in els}))
    for radius, same in ((0.1, False), (0.3, False), (0.3, True)):
        fast = set(sc.within_l1(comps[:60], comps, radius, same_system=same))
        brute = {(i, j) for i in range(60) for j in range(len(comps))
                 if sc.composition_l1(comps[i], comps[j]) < radius
                 and (not same or comps[i].chemical_system == comps[j].chemical_system)}
        assert fast == brute and len(brute) > 60  # self-pairs plus real neighbours
    with pytest.raises(ValueError, match="radius"):
        sc.within_l1(comps, comps, 1.5)


def _supercon_rows(rows):
    comps = [Composition(f) for f, _, _, _ in rows]
    return pd.DataFrame({"composition": comps, "tc_K": [t for _, t, _, _ in rows], "family": [f for _, _, f, _ in rows],
                         "first_year": pd.array([y for *_, y in rows], dtype="Int64"), "oxygen_recovered": False})


def _jarvis_rows(formulas):
    comps = [Composition(f) for f in formulas]
    return pd.DataFrame({"key": [sc.composition_key(c) for c in comps], "jid": [f"J{i}" for i in range(len(comps))],
                         "formula": formulas, "composition": comps, "ehull": 0.0,
                         "chemical_system": [c.chemical_system for c in comps], "n_elements": [len(c) for c in comps]})


def test_compound_table_labels_parents_by_their_best_variant():
    supercon = _supercon_rows([
        ("La1.85Sr0.15Cu1O4", 38.0, "T", 1987), ("La2Cu1O4", 0.0, "T", 1986),     # doped SC, undoped parent measured 0 K
        ("Nb3Sn0.91Al0.09", 17.8, "A15", 1970), ("Nb3Sn", 18.0, "A15", 1954), ("Nb2.9Sn1.1", 12.0, "A15", 1975),
        ("Mo0.39Ru0.61", 6.9, None, 1960),                                        # no parent
        ("Y1Ba2Cu3Sr1La1O7", 50.0, "Y123", 1990),                                 # > 4 elements
    ])
    negatives = pd.DataFrame({"composition": [Composition("Au1Zn1"), Composition("Ba0.95K0.05Cu1O2")]})
    jarvis = _jarvis_rows(["AuZn", "NaCl", "Nb11Sn5", "KBr", "La2CuO4"])
    table, report = sc.compound_table(supercon, negatives, jarvis, max_elements=4, parent_max_l1=0.2, near_l1=0.1)
    t = table.set_index("formula")
    assert t.loc["La2CuO4", "tc_K"] == 38.0 and t.loc["La2CuO4", "n_variants"] == 2 and t.loc["La2CuO4", "first_year"] == 1986
    assert t.loc["La2CuO4", "source"] == "supercon" and not t.loc["La2CuO4", "measured_negative"]
    assert t.loc["Nb3Sn", "tc_K"] == 18.0 and t.loc["Nb3Sn", "exact"] and t.loc["Nb3Sn", "n_variants"] == 3
    assert t.loc["ZnAu", "measured_negative"] and t.loc["ZnAu", "source"] == "supercon"   # measured, so not a JARVIS row
    assert t.loc["BaCuO2", "measured_negative"] and pd.isna(t.loc["BaCuO2", "first_year"])
    assert set(t[t["source"] == "jarvis"].index) == {"NaCl", "KBr"}   # Nb11Sn5: L1 0.075 from Nb2.9Sn1.1 (12 K)
    assert report.n_jarvis_superconductor_variants == 1 and report.n_jarvis_is_supercon_parent == 2
    assert report.parent_how["no parent"] == 1 and report.n_outside_elements == 1
    assert (t.loc[["NaCl", "KBr"], "tc_K"] == 0).all()
    with pytest.raises(ValueError, match="lacks column"):
        sc.compound_table(supercon.drop(columns="first_year"), negatives, jarvis)


def test_similarity_components_close_over_labels_and_near_duplicates():
    comps = [Composition(f) for f in ["Nb3Sn", "Nb3Ge", "V3Si", "NbN", "Nb3.1Sn0.9", "MgB2", "NaCl"]]
    labels = ["A15", "A15", "A15", "NaCl", "sys:Nb-Sn", "AlB2", "NaCl"]
    comp = sc.similarity_components(comps, labels, near_l1=0.1)
    assert comp[0] == comp[1] == comp[2] == comp[4] == "A15"     # Nb3.1Sn0.9 joins Nb3Sn as a near-duplicate
    assert comp[3] == comp[6] == "NaCl" and comp[5] == "AlB2"
    only_near = sc.similarity_components(comps, None, near_l1=0.1)
    assert only_near[0] == only_near[4] and len(set(only_near)) == 6
    assert sc.near_duplicate_fraction([comps[4], comps[5]], [comps[0]], 0.1) == 0.5
    assert sc.near_duplicate_fraction([], [comps[0]], 0.1) == 0.0


def test_formula_style_features_ignore_element_identity():
    f = sc.formula_style_features([Composition("Nb3Sn"), Composition("V3Si"), Composition("La1.85Sr0.15CuO4")])
    np.testing.assert_allclose(f[0], f[1])
    assert f[0, sc.STYLE_FEATURES.index("integer_as_written")] == 1 and f[2, sc.STYLE_FEATURES.index("integer_as_written")] == 0
    assert f[2, sc.STYLE_FEATURES.index("n_elements")] == 4
    assert list(sc.anonymized_formulas([Composition("Nb3Sn"), Composition("BaFe2As2")])) == ["AB3", "AB2C2"]


def test_style_matching_makes_any_style_score_uninformative():
    rng = np.random.default_rng(0)
    s_anon = rng.choice(["AB", "AB2", "ABC", "AB2C2D7"], size=200, p=[0.1, 0.2, 0.3, 0.4])
    j_anon = rng.choice(["AB", "AB2", "ABC", "AB2C2D7"], size=2000, p=[0.5, 0.3, 0.19, 0.01])
    ks, kj = sc.match_formula_style(s_anon, j_anon, ratio=2, rng=np.random.default_rng(1))
    for a in set(s_anon[ks]):
        assert (j_anon[kj] == a).sum() == 2 * (s_anon[ks] == a).sum()
    assert (s_anon[ks] == "AB2C2D7").sum() == 10      # only 20 JARVIS partners: 10 SuperCon kept
    # any score that is a function of the stratum has AUC 0.5 on the matched rows
    y = np.r_[np.ones(len(ks)), np.zeros(len(kj))]
    score = {"AB": 0.1, "AB2": 0.3, "ABC": 0.5, "AB2C2D7": 0.99}  # ordered by SuperCon share
    s = np.array([score[a] for a in np.r_[s_anon[ks], j_anon[kj]]])
    assert sc.formula_style_auc(s, y) == pytest.approx(0.5)
    unmatched = np.array([score[a] for a in np.r_[s_anon, j_anon]])
    assert sc.formula_style_auc(unmatched, np.r_[np.ones(200), np.zeros(2000)]) > 0.7
    with pytest.raises(ValueError, match="ratio"):
        sc.match_formula_style(s_anon, j_anon, ratio=0, rng=rng)


def test_formula_style_scores_detect_a_style_shortcut():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (np.arange(400) < 200).astype(int)
    X[:200, 0] += 3          # SuperCon rows written differently
    scores = sc.formula_style_scores(X, y)
    assert sc.formula_style_auc(scores, y) > 0.95
    assert np.isnan(sc.formula_style_auc(scores, y, np.arange(200)))


# ------------------------------------------------------------------ pool, oracle, loop


def _toy(n_s=240, n_j=600, seed=0):
    """A compound-table-like frame: 6 SuperCon components (feature 0 drives Tc) and JARVIS rows
    that look like superconductors on feature 0 but differ on feature 1 (so feedback matters)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_s + n_j, 5))
    X[:n_s, 1] = 0.0
    X[n_s:, 0] = np.abs(X[n_s:, 0]) + 0.5
    X[n_s:, 1] = 3.0
    tc = np.r_[np.where(X[:n_s, 0] > 0, 20.0, np.where(X[:n_s, 0] > -1, 2.0, 0.0)), np.zeros(n_j)]
    table = pd.DataFrame({
        "source": ["supercon"] * n_s + ["jarvis"] * n_j, "tc_K": tc,
        "chemical_system": [f"s{i % 40}" for i in range(n_s)] + [f"j{i % 100}" for i in range(n_j)],
        "first_year": pd.array([1960 + (i % 60) for i in range(n_s)] + [pd.NA] * n_j, dtype="Int64"),
    })
    components = np.array([f"g{i % 6}" for i in range(n_s)] + ["jarvis"] * n_j, dtype=object)
    anon = np.array([["AB", "AB2", "ABC"][i % 3] for i in range(n_s + n_j)], dtype=object)
    return table, X, components, anon


def test_family_scenario_hides_components_with_style_matched_negatives():
    table, X, comp, anon = _toy()
    scn = sc.family_scenario(table, X, comp, ["g1", "g4"], anon, ratio=2, seed=0)
    assert not set(comp[scn.train_idx]) & {"g1", "g4"} and not set(scn.train_idx) & set(scn.pool_idx)
    hidden = scn.pool_idx[scn.source[scn.pool_idx] == "supercon"]
    assert set(comp[hidden]) == {"g1", "g4"} and len(hidden) + scn.n_unmatched == 80
    jar = scn.pool_idx[scn.source[scn.pool_idx] == "jarvis"]
    for a in ("AB", "AB2", "ABC"):
        assert (anon[jar] == a).sum() == 2 * (anon[hidden] == a).sum()
    np.testing.assert_array_equal(scn.oracle(jar), 0.0)
    np.testing.assert_array_equal(scn.oracle(hidden), table["tc_K"].to_numpy()[hidden])
    assert scn.pool_positive_rate(10.0) <= scn.pool_positive_rate(0.0)
    with pytest.raises(IndexError):
        scn.oracle(np.array([10**6]))
    with pytest.raises(ValueError, match="not among"):
        sc.family_scenario(table, X, comp, ["nope"], anon)
    ctl = scn.with_features(X[:, 1:2], name="control")
    assert ctl.X.shape == (len(X), 1) and ctl.name == "control" and (ctl.pool_idx == scn.pool_idx).all()


def test_time_scenario_hides_what_came_later():
    table, X, comp, anon = _toy()
    comp = np.array([f"c{i // 3}" if s == "supercon" else "jarvis" for i, s in enumerate(table["source"])], dtype=object)
    scn = sc.time_scenario(table, X, comp, 2000, anon, ratio=1, seed=0)
    assert len(scn.pool_idx) > 0 and scn.hidden == ["first reported ≥ 2000"]
    years = table["first_year"].to_numpy(float, na_value=np.nan)
    comp_first = pd.Series(years).groupby(comp).transform("min").to_numpy()
    assert (comp_first[scn.pool_idx[scn.source[scn.pool_idx] == "supercon"]] >= 2000).all()
    assert (comp_first[scn.train_idx] < 2000).all()
    with pytest.raises(ValueError, match="first reported"):
        sc.time_scenario(table, X, comp, 2100, anon)


def test_choose_hidden_and_eligible_components():
    table, X, comp, _ = _toy()
    el = sc.eligible_components(table, comp, 10.0, min_size=10, max_size=100, min_positive=3, exclude=["g5"])
    assert el == [f"g{i}" for i in range(5)]
    h0 = sc.choose_hidden_groups(el, 2, ["g0"], seed=0)
    assert h0[0] == "g0" and len(set(h0)) == 3 and h0 == sc.choose_hidden_groups(el, 2, ["g0"], seed=0)
    with pytest.raises(ValueError, match="not eligible"):
        sc.choose_hidden_groups(el, 1, ["zz"], seed=0)


def test_closed_loop_learns_from_feedback_open_loop_does_not():
    table, X, comp, anon = _toy()
    scn = sc.family_scenario(table, X, comp, ["g1", "g4"], anon, ratio=4, seed=0)
    kw = dict(seed=0, ensemble=SMALL, n_cycles=3, k=15, threshold_K=10.0, beta=1.0)
    closed, opened = sc.run_seed(scn, ["greedy"], **kw)
    assert closed.closed and not opened.closed
    for r in (closed, opened):
        picks = np.concatenate(r.picks)
        assert len(set(picks)) == len(picks) and set(picks) <= set(scn.pool_idx)
        assert r.discoveries()[-1] == sum(int((t >= 10).sum()) for t in r.tc_revealed)
        assert (r.discoveries(0.0) >= r.discoveries()).all()       # any superconductor ⊇ Tc ≥ 10 K
    np.testing.assert_array_equal(closed.picks[0], opened.picks[0])   # same initial model
    assert closed.success_rate()[-1] > opened.success_rate()[-1]
    rows, tc = sc.final_training_set(scn, closed)
    assert len(rows) == len(scn.train_idx) + 45 and (tc == table["tc_K"].to_numpy()[rows]).all()
    with pytest.raises(ValueError, match="exceed the pool"):
        sc.run_loop(scn, "greedy", closed=True, **{**kw, "n_cycles": 100, "k": 100})


def _result(closed: bool, tcs: list[list[float]], comps: list[list[str]], seed: int = 0) -> sc.LoopResult:
    return sc.LoopResult("family", "chemistry", "greedy", closed, seed, 10.0, [np.arange(len(t)) for t in tcs],
                         [np.array(t) for t in tcs], [np.array(c, dtype=object) for c in comps])


def test_loop_result_counts_compounds_and_families():
    r = _result(True, [[0.0, 12.0], [20.0, 5.0], [30.0, 0.0]], [["jarvis", "c"], ["a", "b"], ["a", "jarvis"]])
    assert r.discoveries().tolist() == [1, 2, 3] and r.discoveries(0.0).tolist() == [1, 3, 4]
    assert r.rediscovered_families().tolist() == [1, 2, 2]          # c, then a; b failed at 10 K
    assert r.rediscovered_families(0.0).tolist() == [1, 3, 3]       # b counts as a superconductor
    np.testing.assert_allclose(r.success_rate(), [0.5, 0.5, 0.5])
    frame = sc.results_frame([r], {"tc": 10.0, "any": 0.0})
    assert len(frame) == 3 and frame["discoveries_any"].tolist() == [1, 3, 4]


# ------------------------------------------------------------------ statistics and the verdict rule


def test_mean_ci_ratio_ci_and_paired_test():
    m, lo, hi = sc.mean_ci(np.array([[0.1, 0.2], [0.3, 0.4], [0.2, 0.3]]))
    np.testing.assert_allclose(m, [0.2, 0.3])
    assert (lo < m).all() and (hi > m).all()
    ratio, rlo, rhi = sc.ratio_ci(np.array([0.1, 0.2, 0.3]), np.array([0.4, 0.4, 0.4]))
    assert ratio == pytest.approx(2.0) and rlo <= ratio <= rhi
    rng = np.random.default_rng(0)
    a = rng.normal(10, 1, 30)
    pt = sc.paired_test(a + 3, a)
    assert pt.mean_diff == pytest.approx(3) and pt.ci_low == pytest.approx(3) and pt.p_value < 1e-5 and pt.n == 30
    null = sc.paired_test(a + rng.normal(0, 1, 30), a)
    assert null.ci_low < 0 < null.ci_high and null.p_value > 0.05
    assert sc.paired_test(a, a).p_value == 1.0
    with pytest.raises(ValueError, match="equal-length"):
        sc.paired_test(a, a[:3])


def _pt(diff, lo, hi, p):
    return sc.PairedTest(diff, lo, hi, p, 30)


@pytest.mark.parametrize("ratio, control, diff, control_diff, label", [
    ((3.0, 2.4, 3.8), (1.0, 0.8, 1.2), _pt(20, 10, 30, 1e-4), _pt(0, -3, 3, 0.8), "more than doubled"),
    ((2.3, 1.5, 3.5), (1.0, 0.8, 1.2), _pt(20, 10, 30, 1e-4), _pt(0, -3, 3, 0.8), "consistent with doubling"),
    ((1.5, 1.2, 1.8), (1.0, 0.8, 1.2), _pt(20, 10, 30, 1e-4), _pt(0, -3, 3, 0.8), "improves, less than doubled"),
    ((3.0, 2.4, 3.8), (1.0, 0.8, 1.2), _pt(1, -2, 4, 0.5), _pt(0, -3, 3, 0.8), "rises without feedback"),
    ((1.1, 0.8, 1.4), (1.0, 0.8, 1.2), _pt(1, -2, 4, 0.5), _pt(0, -3, 3, 0.8), "no improvement shown"),
    ((3.0, 2.4, 3.8), (2.0, 1.3, 3.0), _pt(20, 10, 30, 1e-4), _pt(0, -3, 3, 0.8), "pool leaks"),
    ((3.0, 2.4, 3.8), (1.1, 0.9, 1.3), _pt(20, 10, 30, 1e-4), _pt(8, 2, 14, 0.01), "pool leaks"),
])
def test_loop_verdict(ratio, control, diff, control_diff, label):
    v = sc.loop_verdict(ratio=ratio, control_ratio=control, closed_vs_open=diff, control_closed_vs_open=control_diff)
    assert v.label == label
    assert v.doubled == (ratio[1] > sc.DOUBLING) and v.control_improves == (label == "pool leaks")
    assert ("leaks" in v.text) == (label == "pool leaks")


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




def test_verdict_caveats_do_not_change_the_label():
    kw = dict(ratio=(3.0, 2.4, 3.8), control_ratio=(1.0, 0.8, 1.2), closed_vs_open=_pt(20, 10, 30, 1e-4),
              control_closed_vs_open=_pt(0, -3, 3, 0.8))
    plain = sc.loop_verdict(**kw)
    caveated = sc.loop_verdict(**kw, open_ratio=(2.4, 1.9, 3.2), first_vs_random=(0.09, 0.16))
    assert plain.label == caveated.label == "more than doubled"
    assert "open loop alone rises" in caveated.text and "below random" in caveated.text
    assert "Caveat" not in sc.loop_verdict(**kw, open_ratio=(1.0, 0.8, 1.3), first_vs_random=(0.2, 0.16)).text


def test_informed_start_adds_only_outside_negatives():
    table, X, comp, anon = _toy()
    scn = sc.family_scenario(table, X, comp, ["g1"], anon, ratio=2, seed=0)
    inf = scn.with_known_negatives(50, seed=0)
    extra = np.setdiff1d(inf.train_idx, scn.train_idx)
    assert len(extra) == 50 and (inf.source[extra] == "jarvis").all() and not set(extra) & set(scn.pool_idx)
    assert inf.name == "family_informed" and (inf.pool_idx == scn.pool_idx).all()
    with pytest.raises(ValueError, match="outside the pool"):
        scn.with_known_negatives(10**6, seed=0)
