"""Parameters of the generator training stage and of notebook 01 (generator smoothness)."""

from __future__ import annotations

from pydantic import Field

from matdiscovery.params import NotebookParams, StudyParams


class VariantParams(StudyParams):
    smooth_weight: float = Field(ge=0, description="weight of the finite-difference Lipschitz penalty")


class TrainGeneratorParams(StudyParams):
    seed: int = Field(ge=0)
    limit_per_split: int | None = Field(ge=1, description="training structures read per split (None: all)")
    noise_dim: int = Field(ge=1)
    hidden: int = Field(ge=1)
    critic_hidden: int = Field(ge=1)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    n_critic: int = Field(ge=1)
    gp_weight: float = Field(ge=0)
    dist_weight: float = Field(ge=0)
    smooth_sigma: float = Field(gt=0)
    min_sg_count: int = Field(ge=1)
    threads: int = Field(ge=1)
    n_samples: int = Field(ge=1, description="samples per variant written to samples.csv")
    sample_seed: int = Field(ge=0)
    variants: dict[str, VariantParams] = Field(min_length=1)


class SmoothnessParams(NotebookParams):
    seed: int = Field(ge=0)
    generator_dir: str
    judge_checkpoint: str
    n_samples: int = Field(ge=1)
    n_bases: int = Field(ge=1)
    n_noise_dims: int = Field(ge=1)
    n_element_dims: int = Field(ge=1)
    n_spacegroups: int = Field(ge=1)
    steps: list[float] = Field(min_length=2)
    small_step: float = Field(gt=0)
    max_bisect: int = Field(ge=0)
    bisect_width: float = Field(gt=0)
    n_interp_pairs: int = Field(ge=1)
    interp_steps: int = Field(ge=2)
    inverse_starts: int = Field(ge=1)
    inverse_iterations: int = Field(ge=1)
    inverse_popsize: int = Field(ge=2)
    fallback_limit_per_split: int = Field(ge=1)
    fallback_epochs: int = Field(ge=1)
    judge_fallback_formulas: int = Field(ge=10)
    torch_threads: int = Field(ge=1)
