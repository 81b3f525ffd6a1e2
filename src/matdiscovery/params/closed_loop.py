"""Parameters of notebook 04 (closed-loop superconductor discovery)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from matdiscovery.params import NotebookParams

Acquisition = Literal["greedy", "ucb", "diverse"]


class ClosedLoopParams(NotebookParams):
    seed: int = Field(ge=0)
    threshold_K: float = Field(gt=0, description="K; a pick succeeds if its Tc is at least this")
    n_cycles: int = Field(ge=2)
    picks_per_cycle: int = Field(ge=1, description="candidates measured per cycle")
    n_seeds: int = Field(ge=2, description="scenarios, for confidence intervals")
    acquisitions: list[Acquisition] = Field(min_length=1)
    primary_acquisition: Acquisition
    ucb_beta: float = Field(ge=0)
    n_estimators: int = Field(ge=2)
    always_hidden: list[str]
    n_random_hidden: int = Field(ge=0)
    ehull_max: float = Field(ge=0, description="eV/atom, JARVIS candidates")
    jarvis_limit: int | None = Field(ge=1)
    cv_folds: int = Field(ge=2)
    cv_n_estimators: int = Field(ge=2)
    cv_subsample: int | None = Field(ge=10)
    roost_epochs: int = Field(ge=1)
    roost_max_train: int = Field(ge=10)
    roost_max_test: int = Field(ge=10)
    grid_div: int = Field(ge=2, description="ternary grid steps of 1 / grid_div")
    n_jobs: int = Field(ge=1)
