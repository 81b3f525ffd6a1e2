"""Superconductor discovery (notebook 04): SuperCon cleaning and family labels, Tc models,
candidate pool and oracle, acquisition functions, the simulated closed loop, ternary grids."""

from matdiscovery.superconductors.acquisition import ACQUISITIONS, acquire, diverse, greedy, ucb
from matdiscovery.superconductors.cleaning import (
    CleaningReport, chemical_class, clean_supercon, composition_key, family_group,
)
from matdiscovery.superconductors.loop import (
    LoopResult, improvement_table, mean_ci, ratio_ci, run_loop, run_seeds, summarize,
)
from matdiscovery.superconductors.models import (
    TcClassifierEnsemble, TcRegressor, cross_validate, featurize, labels, roost_cross_validate,
)
from matdiscovery.superconductors.pool import (
    Scenario, choose_hidden_groups, eligible_groups, jarvis_candidates, make_scenario,
)
from matdiscovery.superconductors.ternary import (
    in_system, fractions_in_system, plot_ternary, rank_ternary_systems, ternary_grid, to_cartesian,
)

__all__ = [
    "ACQUISITIONS", "acquire", "diverse", "greedy", "ucb",
    "CleaningReport", "chemical_class", "clean_supercon", "composition_key", "family_group",
    "LoopResult", "improvement_table", "mean_ci", "ratio_ci", "run_loop", "run_seeds", "summarize",
    "TcClassifierEnsemble", "TcRegressor", "cross_validate", "featurize", "labels", "roost_cross_validate",
    "Scenario", "choose_hidden_groups", "eligible_groups", "jarvis_candidates", "make_scenario",
    "in_system", "fractions_in_system", "plot_ternary", "rank_ternary_systems", "ternary_grid", "to_cartesian",
]
