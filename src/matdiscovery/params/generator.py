"""Parameters of the generator training stage and of notebook 01 (generator smoothness)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from matdiscovery.params import NotebookParams, StudyParams

Decoder = Literal["pgcgm", "pgcgm_rounded", "snap"]


class TrainGeneratorParams(StudyParams):
    """``train_generator``: training set, model size, WGAN-GP schedule, samples for notebook 02."""

    seed: int = Field(ge=0, description="seed of the held-out split, initialisation, batches and noise")
    heldout_fraction: float = Field(ge=0, lt=1, description="fraction of reduced formulas held out (novelty, coverage)")
    limit_per_split: int | None = Field(ge=1, description="structures read per source split (None: all)")
    min_sg_count: int = Field(ge=1, description="space groups with fewer training records are dropped")
    n_jobs: int = Field(ge=1, description="processes screening the structure sources")
    noise_dim: int = Field(ge=1, description="noise vector length (PGCGM: 128)")
    hidden: list[int] = Field(min_length=1, description="generator hidden widths")
    critic_hidden: list[int] = Field(min_length=1, description="critic hidden widths")
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    lr: float = Field(gt=0, description="Adam learning rate (both networks)")
    n_critic: int = Field(ge=1, description="critic steps per generator step")
    gp_weight: float = Field(ge=0, description="WGAN gradient-penalty weight")
    dist_weight: float = Field(ge=0, description="weight of the physics (overlap) loss, per Å²")
    bf16: bool = Field(description="train under bfloat16 autocast (CPU AMX); sampling is always float32")
    threads: int = Field(ge=1, description="torch threads")
    n_samples: int = Field(ge=1, description="samples per decoder written to samples.csv")
    sample_seed: int = Field(ge=0)
    conditions: Literal["pgcgm", "training"] = Field(description="how sample conditions are drawn")
    decoders: list[Decoder] = Field(min_length=1, description="decoders written to samples.csv (variant column)")


class SmoothnessParams(NotebookParams):
    """Notebook 01: staged smoothness, controls, remedy, validity."""

    seed: int = Field(ge=0)
    generator_dir: str = Field(description="folder of the train_generator outputs, relative to the project root")
    n_bases: int = Field(ge=1, description="base inputs of the sweeps")
    n_noise_dims: int = Field(ge=1, description="noise dimensions swept per base")
    n_element_partners: int = Field(ge=1, description="real partner elements per basis position")
    n_sg_switches: int = Field(ge=1, description="space-group switches per base")
    steps: list[float] = Field(min_length=2, description="perturbation sizes (input units)")
    small_step: float = Field(gt=0, description="jump rates are also reported for steps up to this size")
    max_bisect: int = Field(ge=1, description="segments bisected per stage and generator")
    bisect_width: float = Field(gt=0, description="input width bisection stops at")
    verdict_factor: float = Field(gt=1, description="rough: bisected Lipschitz ratio above this × the stage median")
    rough_step: float = Field(gt=0, description="staircase step of the rough control's hidden layer")
    linear_fit_samples: int = Field(ge=10, description="inputs the linear control is fitted on")
    max_eval_samples: int = Field(ge=1, description="samples per decoder evaluated for validity")
    heldout_draws: int = Field(ge=1, description="noise draws per held-out (and as many training) crystals' conditions")
    n_bootstrap: int = Field(ge=10, description="bootstrap resamples of the coverage CIs")
    cov_quantile: float = Field(gt=0, lt=1, description="coverage thresholds: this quantile of held-out→training distances")
    n_showcase: int = Field(ge=1, description="generated crystals drawn")
    fallback_limit_per_split: int = Field(ge=1, description="only without a checkpoint: structures per split")
    fallback_epochs: int = Field(ge=1, description="only without a checkpoint: epochs")
    torch_threads: int = Field(ge=1)
