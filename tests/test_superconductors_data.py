"""Notebook 04's data rules, pools, groups and uncertainty on the real tables (needs `dvc pull`;
about half a minute: the compound table is built once for the module)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from matdiscovery import datasets
from matdiscovery import superconductors as sc
from matdiscovery.superconductors.models import EnsembleConfig

THRESHOLD_K = 10.0
ENSEMBLE = EnsembleConfig(n_members=8, trees_per_member=4, min_samples_leaf=3, n_jobs=2)


@pytest.fixture(scope="module")
def cleaned():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*skipped \d+ malformed row", category=UserWarning)
        raw = datasets.load_supercon_nims(on_error="skip", keep_oxygen_unknown=True)
    table, report = sc.clean_supercon(raw)
    return raw, table, report


@pytest.fixture(scope="module")
def data():
    return sc.load_compounds(threshold_K=THRESHOLD_K, ehull_max=0.05, max_elements=4, parent_max_l1=0.2, near_l1=0.1)


@pytest.fixture(scope="module")
def scenarios(data):
    return sc.make_scenarios(data, [0, 1], always_hidden=["iron_based"], n_random_hidden=3, never_hidden=["cuprate"],
                             ratio=2, year=2008, informed_negatives=200)


# ------------------------------------------------------------------ SuperCon rows


def test_every_row_is_accounted_for(cleaned):
    raw, table, report = cleaned
    assert report.n_raw_rows == 26_321 == len(raw) + report.n_loader_skipped
    assert sum(report.loader_skipped_by_reason.values()) == report.n_loader_skipped
    dropped_o = sum(report.oxygen_unrecovered_by_reason.values())
    assert report.n_oxygen_unknown == report.n_oxygen_recovered + dropped_o == int(raw["oxygen_unknown"].sum())
    assert report.n_rows_kept == len(raw) - dropped_o - report.n_implausible_tc - report.n_beyond_pu
    assert report.n_compositions == len(table) == table["key"].nunique()
    assert report.n_rows_kept == report.n_compositions + report.n_merged_duplicates == table["n_measurements"].sum()


def test_oxygen_unknown_rows_are_recovered_per_structure_type(cleaned):
    raw, table, report = cleaned
    unknown = raw[raw["oxygen_unknown"]]
    assert len(unknown) == 2095 and all("O" not in c for c in unknown["composition"])   # cations only
    assert report.n_oxygen_recovered > 1000 and report.oxygen_recovered_by_type["Y123"] > 500
    rec = table[table["oxygen_recovered"]]
    assert (rec["chem_class"] == "cuprate").mean() > 0.9
    trailing = table["formula"].str.contains(r"O[YDyd]$", regex=True)     # a trailing OY is not yttrium:
    assert trailing.any() and table.loc[trailing, "oxygen_recovered"].all()  # only recovered rows keep it
    ybco = table.set_index("key").loc[sc.composition_key(Composition("YBa2Cu3O7")), "tc_K"]
    assert 85 < ybco < 95


def test_year_comes_from_the_journal_field(cleaned):
    raw, table, _ = cleaned
    assert raw["year"].notna().sum() > 25_000 and raw["year"].dropna().between(1900, 2025).all()
    fe_as = raw["formula"].str.contains("Fe") & raw["formula"].str.contains("As")
    assert raw.loc[fe_as, "year"].min() == 2008     # iron arsenides: Kamihara et al., J. Am. Chem. Soc. 130 (2008)
    assert table["first_year"].notna().sum() > 0.9 * len(table)


def test_tc_plausible_and_classes_present(cleaned):
    _, table, _ = cleaned
    no_h = np.array(["H" not in c and "D" not in c for c in table["composition"]])
    assert table["tc_K"][no_h].max() <= sc.cleaning.MAX_PLAUSIBLE_TC_K
    counts = table["chem_class"].value_counts()
    assert counts["cuprate"] > 3000 and counts["iron_based"] > 500
    assert table.set_index("key").loc[sc.composition_key(Composition("MgB2")), "tc_K"] > 30


# ------------------------------------------------------------------ compound table and pools


def test_compound_table_shares_one_formula_style(data):
    t = data.table
    assert all(2 <= len(c) <= 4 for c in t["composition"])
    assert all(float(a).is_integer() for c in t["composition"] for a in c.values())       # ordered, integer
    assert t["key"].is_unique and (t.loc[t["source"] == "jarvis", "tc_K"] == 0).all()
    sup = t[data.supercon]
    assert (sup["tc_K"] >= THRESHOLD_K).sum() > 500 and sup["measured_negative"].sum() > 1000
    # no JARVIS negative within L1 < 0.1 of a SuperCon-derived superconductor
    jar = list(t.loc[t["source"] == "jarvis", "composition"])
    assert not sc.within_l1(jar, list(sup.loc[sup["tc_K"] > 0, "composition"]), 0.1)


def test_pools_are_style_matched_and_leak_free(data, scenarios):
    audit = sc.audit_pools(data, scenarios, near_l1=0.1)
    assert audit.style_auc_all_compounds > 0.7                       # the unmatched table still leaks
    assert np.all(np.abs(audit.style_auc_pools - 0.5) < 0.05)         # the matched pools do not
    assert np.all(np.abs(audit.time_style_auc_pools - 0.5) < 0.05)
    assert np.all(audit.near_duplicate_fraction == 0) and np.all(audit.time_near_duplicate_fraction == 0)
    assert audit.iron_based_all_hidden


def test_grouping_invariant_checked_pair_by_pair(data, scenarios):
    comps = data.table["composition"].to_numpy()
    pos = data.table["tc_K"].to_numpy() >= THRESHOLD_K
    for v in scenarios.family.values():
        hidden = [comps[i] for i in v.pool_idx if pos[i]]
        train_by_system = {}
        for i in v.train_idx[pos[v.train_idx]]:
            train_by_system.setdefault(comps[i].chemical_system, []).append(comps[i])
        for h in hidden:
            assert all(sc.composition_l1(h, t) >= 0.1 for t in train_by_system.get(h.chemical_system, []))
        iron = np.flatnonzero((data.table["chem_class"] == "iron_based").to_numpy())
        assert not set(iron) & set(v.train_idx)
        assert len(hidden) > 50


def test_time_split_hides_later_iron_based(data, scenarios):
    v = scenarios.time[0]
    hidden = v.pool_idx[data.supercon[v.pool_idx]]
    cls = data.table["chem_class"].to_numpy()
    assert (cls[hidden] == "iron_based").sum() > 50
    years = pd.Series(data.table["first_year"].to_numpy(float, na_value=np.nan))
    first = years.groupby(data.near_components).transform("min").to_numpy()   # a component dates from its first report
    assert not (first[v.train_idx] >= 2008).any() and (first[hidden] >= 2008).all()


# ------------------------------------------------------------------ uncertainty


def test_ensemble_spread_is_not_a_function_of_its_mean_on_real_data(data, scenarios):
    check = sc.check_uncertainty(scenarios.family[0], threshold_K=THRESHOLD_K, ensemble=ENSEMBLE, seed=0)
    assert not check.bernoulli and check.r2_from_mean < 0.9
    assert check.single_trees_bernoulli and check.single_trees_r2_from_mean > 0.99   # the landed model's spread


# ------------------------------------------------------------------ the study object


def test_study_metrics_hold_the_issue_keys(data, scenarios):
    small = scenarios
    loops = sc.run_loops(data, small, acquisitions=["greedy", "ucb"], primary="greedy", n_cycles=2, k=10, beta=1.0,
                         ensemble=ENSEMBLE, progress=False)
    rows = np.flatnonzero(data.supercon)[::8]
    tc, X = data.table["tc_K"].to_numpy()[rows], data.X[rows]
    cv = {name: sc.cross_validate(X, tc, g[rows], THRESHOLD_K, model=ENSEMBLE, split=split, n_folds=3, regressor_trees=8)
          for name, split, g in (("random", "random", data.components), ("grouped", "grouped", data.components),
                                 ("family_labels", "grouped", data.table["group"].to_numpy()))}
    roost = {s: {"roc_auc": 0.5, "tc_r2": 0.0, "trees_roc_auc_same_rows": 0.5} for s in ("random", "grouped")}
    first = [r for r in loops if (r.scenario, r.model, r.acquisition, r.closed) == ("family", "chemistry", "greedy", True)][0]
    case = sc.zr_in_ni_case(data, small.family[first.seed], first, grid_div=6, ensemble=ENSEMBLE, seed=0)
    unc = sc.check_uncertainty(small.family[0], threshold_K=THRESHOLD_K, ensemble=ENSEMBLE, seed=0)
    audit = sc.audit_pools(data, small, near_l1=0.1)
    study = sc.ClosedLoopStudy(data, small, audit, loops, unc, cv, roost, case, primary="greedy",
                               acquisitions=["greedy", "ucb"], n_cycles=2, k=10, cv_rows=rows)
    m = study.metrics()
    for key in ("provenance_control_improvement_ratio", "provenance_control_success_rate_by_cycle",
                "pool_formula_style_auc", "hidden_positive_near_duplicate_fraction", "closed_vs_open_discoveries_diff",
                "closed_vs_open_discoveries_diff_ci_low", "closed_vs_open_discoveries_diff_ci_high",
                "closed_vs_open_discoveries_diff_p_value", "time_split_improvement_ratio", "n_seeds",
                "ucb_spread_equals_bernoulli", "improvement_ratio", "success_rate_by_cycle_closed",
                "rediscovered_compounds", "rediscovered_families", "zr_in_ni_max_probability", "paper_n_cycles"):
        assert key in m, key
    assert m["n_seeds"] == 2 and m["hidden_positive_near_duplicate_fraction"] == 0
    assert m["ucb_spread_equals_bernoulli"] is False and len(m["provenance_control_success_rate_by_cycle"]) == 2
    assert 0 < case.best()["n_grid"] and all(len(c) == 3 for c in case.compositions)   # interior only
    assert study.verdict().label in {"pool leaks", "rises without feedback", "more than doubled", "consistent with doubling",
                                     "improves, less than doubled", "no improvement shown"}
    assert set(study.per_seed()["model"]) == {"chemistry", "provenance"}
    # family: greedy, ucb, control; time: greedy, control; informed start: greedy; × 2 success thresholds
    assert len(study.improvement_table()) == 6 * 2
    assert m["informed_start_negatives"] == 200 and "feedback_gain_last_cycle" in m
    findings = study.findings()
    assert len(findings) == 4 and findings[0] == study.verdict().text and "Informed start (200" in findings[2]
    assert len(study.paper_table()) == 7 and study.headline()["random picking"].notna().all()
