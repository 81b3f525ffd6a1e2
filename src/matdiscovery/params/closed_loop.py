"""Parameters of notebook 04 (closed-loop superconductor discovery)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from matdiscovery.params import NotebookParams

Acquisition = Literal["greedy", "ucb", "diverse"]


class ClosedLoopParams(NotebookParams):
    seed: int = Field(ge=0)
    threshold_K: float = Field(gt=0, description="K; the model's target and a success is Tc at least this")
    n_cycles: int = Field(ge=2)
    picks_per_cycle: int = Field(ge=1, description="candidates measured per cycle")
    n_seeds: int = Field(ge=2, description="scenarios (hidden families, JARVIS draws, model seeds) for CIs")
    acquisitions: list[Acquisition] = Field(min_length=1)
    primary_acquisition: Acquisition = Field(description="pre-registered; must be among acquisitions")
    ucb_beta: float = Field(ge=0)
    n_members: int = Field(ge=2, description="bootstrap members of the classifier ensemble")
    trees_per_member: int = Field(ge=1)
    min_samples_leaf: int = Field(ge=1)
    always_hidden: list[str] = Field(description="components hidden in every family scenario")
    never_hidden: list[str] = Field(description="components never drawn for hiding")
    n_random_hidden: int = Field(ge=0, description="further components hidden per seed")
    time_split_year: int = Field(ge=1950, le=2025, description="time scenario: hide what was first reported from this year on")
    ehull_max: float = Field(ge=0, description="eV/atom, JARVIS candidates")
    max_elements: int = Field(ge=2, le=8, description="elements per compound, both sides of the pool")
    parent_max_l1: float = Field(ge=0, le=2, description="largest composition L1 from a doped formula to its rounded parent")
    near_l1: float = Field(gt=0, le=1, description="composition L1 below which compounds are near-duplicates")
    jarvis_per_supercon: int = Field(ge=1, description="style-matched JARVIS negatives per hidden SuperCon compound")
    informed_negatives: int = Field(ge=0, description="informed start: JARVIS negatives outside the pool in the initial training set; 0 skips it")
    cv_folds: int = Field(ge=2)
    cv_subsample: int | None = Field(ge=10, description="SuperCon-derived compounds in cross-validation; None for all")
    roost_epochs: int = Field(ge=1)
    roost_max_train: int = Field(ge=10)
    roost_max_test: int = Field(ge=10)
    grid_div: int = Field(ge=3, description="ternary grid steps of 1 / grid_div (interior needs ≥ 3)")
    n_jobs: int = Field(ge=1)

    @model_validator(mode="after")
    def _primary_is_run(self) -> Self:
        if self.primary_acquisition not in self.acquisitions:
            raise ValueError(f"primary_acquisition {self.primary_acquisition!r} is not among acquisitions {self.acquisitions}")
        return self
