"""Superconductor discovery (notebook 04): SuperCon cleaning, ordered parent compounds, hidden
groups closed under chemical similarity, style-matched candidate pools with an oracle, Tc models
with real ensemble uncertainty, the simulated closed loop, statistics and the verdict rule,
ternary grids, and the study object that builds the metrics."""

from matdiscovery.superconductors.acquisition import ACQUISITIONS, acquire, diverse, greedy, ucb
from matdiscovery.superconductors.cleaning import (
    CleaningReport,
    chemical_class,
    clean_supercon,
    composition_key,
    family_group,
    nominal_oxygen,
    recover_oxygen,
)
from matdiscovery.superconductors.compounds import (
    CompoundReport,
    composition_l1,
    compound_table,
    integer_multiplier,
    jarvis_negatives,
    parent_compound,
    within_l1,
)
from matdiscovery.superconductors.grouping import near_duplicate_fraction, similarity_components
from matdiscovery.superconductors.loop import (
    ANY_SUPERCONDUCTOR,
    LoopResult,
    final_training_set,
    is_success,
    results_frame,
    run_loop,
    run_seed,
    run_seeds,
)
from matdiscovery.superconductors.models import (
    TcClassifierEnsemble,
    TcRegressor,
    calibrated_classifier,
    cross_validate,
    featurize,
    labels,
    roost_cross_validate,
    spread_explained_by_mean,
    spread_is_bernoulli,
)
from matdiscovery.superconductors.pool import (
    Scenario,
    choose_hidden_groups,
    eligible_components,
    family_scenario,
    jarvis_candidates,
    time_scenario,
)
from matdiscovery.superconductors.stats import DOUBLING, PairedTest, Verdict, loop_verdict, mean_ci, paired_test, ratio_ci
from matdiscovery.superconductors.study import (
    ClosedLoopStudy,
    CompoundData,
    PoolAudit,
    Scenarios,
    TernaryCase,
    UncertaintyCheck,
    audit_pools,
    check_uncertainty,
    load_compounds,
    make_scenarios,
    reliability,
    run_loops,
    run_study,
    zr_in_ni_case,
)
from matdiscovery.superconductors.style import (
    STYLE_FEATURES,
    anonymized_formulas,
    formula_style_auc,
    formula_style_features,
    formula_style_scores,
    match_formula_style,
)
from matdiscovery.superconductors.ternary import (
    fractions_in_system,
    in_system,
    plot_ternary,
    rank_ternary_systems,
    ternary_grid,
    to_cartesian,
)

__all__ = [
    "ACQUISITIONS", "acquire", "diverse", "greedy", "ucb",
    "CleaningReport", "chemical_class", "clean_supercon", "composition_key", "family_group", "nominal_oxygen",
    "recover_oxygen",
    "CompoundReport", "composition_l1", "compound_table", "integer_multiplier", "jarvis_negatives", "parent_compound",
    "within_l1",
    "near_duplicate_fraction", "similarity_components",
    "ANY_SUPERCONDUCTOR", "LoopResult", "final_training_set", "is_success", "results_frame", "run_loop", "run_seed",
    "run_seeds",
    "TcClassifierEnsemble", "TcRegressor", "calibrated_classifier", "cross_validate", "featurize", "labels",
    "roost_cross_validate", "spread_explained_by_mean", "spread_is_bernoulli",
    "Scenario", "choose_hidden_groups", "eligible_components", "family_scenario", "jarvis_candidates", "time_scenario",
    "DOUBLING", "PairedTest", "Verdict", "loop_verdict", "mean_ci", "paired_test", "ratio_ci",
    "ClosedLoopStudy", "CompoundData", "PoolAudit", "Scenarios", "TernaryCase", "UncertaintyCheck", "audit_pools",
    "check_uncertainty", "load_compounds", "make_scenarios", "reliability", "run_loops", "run_study", "zr_in_ni_case",
    "STYLE_FEATURES", "anonymized_formulas", "formula_style_auc", "formula_style_features", "formula_style_scores",
    "match_formula_style",
    "fractions_in_system", "in_system", "plot_ternary", "rank_ternary_systems", "ternary_grid", "to_cartesian",
]
