"""Parameters of the composition-judge training stage and of notebook 02 (stability screening)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from matdiscovery.params import NotebookParams, StudyParams


class TrainJudgeParams(StudyParams):
    seed: int = Field(ge=0)
    fractions: list[float] = Field(min_length=3, max_length=3, description="train/val/test by reduced formula")
    dim: int = Field(ge=1)
    n_layers: int = Field(ge=1)
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    rf_estimators: int = Field(ge=1, description="trees of the Magpie + random-forest baseline")
    torch_threads: int = Field(ge=1)


class ScreeningParams(NotebookParams):
    seed: int = Field(ge=0)
    judge_checkpoint: str
    small_train_formulas: int = Field(ge=10)
    small_train_epochs: int = Field(ge=1)
    generated_path: str
    max_generated: int = Field(ge=0, description="per variant (seeded subsample); 0 = all")
    n_control: int = Field(ge=1)
    n_perov: int = Field(ge=1)
    n_hull_check: int = Field(ge=1)
    relax_steps: int = Field(ge=0)
    relax_check_n: int = Field(ge=0)
    relax_check_steps: int = Field(ge=0)
    chgnet_workers: int = Field(ge=0)
    chgnet_mode: Literal["parallel", "pipeline"]
    chgnet_batch_size: int = Field(ge=1)
    throughput_n: int = Field(ge=1)
    throughput_repeats: int = Field(ge=1)
    thresholds: list[float] = Field(min_length=1)
    ood_k: int = Field(ge=1)
    ood_max_reference: int = Field(ge=0)
    torch_threads: int = Field(ge=1)
