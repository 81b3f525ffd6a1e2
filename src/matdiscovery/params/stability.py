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
    torch_threads: int = Field(ge=1, description="torch threads of the judge (1: bit-reproducible training)")
    rf_jobs: int = Field(ge=1, description="processes of the random-forest baseline (its trees do not depend on it); it fits beside the Roost training")
    max_formulas: int = Field(ge=0, description="seeded subsample of reduced formulas; 0 = all")


class BenchRelaxParams(StudyParams):
    """The ``bench_relax`` stage: batched FIRE vs CHGNet's ``StructOptimizer``, one thread each."""

    seed: int = Field(ge=0, description="perturbation of the crystals")
    n: int = Field(ge=1, description="jarvis_epc training crystals, strained (±3 %) and rattled (0.07 Å)")
    supercell: int = Field(ge=1, description="each crystal repeated n x n x 1")
    repeats: int = Field(ge=1, description="alternating timings of both relaxers (median and spread)")
    fmax: float = Field(gt=0, description="eV/Å, as the screen")
    max_steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    compile_chgnet: bool = Field(description="ours with torch.compile'd CHGNet (the screen's setting)")
    other_optimizers: list[Literal["BFGS", "LBFGS"]] = Field(
        description="StructOptimizer's other optimisers, each compared the same way (and with its FIRE results)")
    max_energy_diff_meV_per_atom: float = Field(gt=0, description="the stage fails if final energies differ more")


class ScreeningParams(NotebookParams):
    seed: int = Field(ge=0)
    judge_checkpoint: str = Field(description="composition judge of `train_stability_judge`; trained small if absent")
    small_judge_formulas: int = Field(ge=10, description="formulas of the quick-run fallback judge")
    small_judge_epochs: int = Field(ge=1)
    generator_dir: str = Field(description="folder of `train_generator` (samples, training set)")
    n_samples: int = Field(ge=1, description="generator samples per decoder drawn from the checkpoint")
    variants: list[Literal["pgcgm", "pgcgm_rounded", "snap"]] = Field(min_length=1, description="decoders screened")
    n_relax: int = Field(ge=1, description="valid, unique structures of the first variant relaxed (seeded sample; all if fewer)")
    n_relax_other: int = Field(ge=1, description="the same for each further variant")
    n_control: int = Field(ge=5, description="JARVIS e-ph control crystals (seeded sample)")
    n_hull_check: int = Field(ge=1, description="JARVIS entries comparing our hull with JARVIS's e_hull")
    fmax: float = Field(gt=0, description="relaxation force tolerance, eV/Å")
    max_steps: int = Field(ge=0, description="FIRE steps at most per relaxation")
    relax_batch_size: int = Field(ge=1, description="structures per batched CHGNet call")
    compile_chgnet: bool = Field(description="relax with CHGNet's message passing compiled (torch.compile); same numbers to round-off")
    shard_size: int = Field(ge=1, description="structures per Dask task (one result file each)")
    n_workers: int = Field(ge=1, description="processes of the local Dask cluster")
    dask_scheduler: str | None = Field(description="scheduler address; null: $MATDISCOVERY_DASK_SCHEDULER or a LocalCluster")
    shard_dir: str = Field(description="per-shard results, reused on rerun")
    sevennet_model: Literal["7net-0", "7net-l3i5"]
    thresholds: list[float] = Field(min_length=1, description="e_hull thresholds, eV/atom")
    offset_folds: int = Field(ge=2, description="cross-validation folds of the chemistry offsets")
    relax_benchmark: str | None = Field(description="results of the `bench_relax` stage (batched FIRE vs StructOptimizer) reported with the screen; null: none")
    bench_throughput_n: int = Field(ge=0, description="structures timed against the library's configurations; 0: skip")
    bench_repeats: int = Field(ge=1)
    ood_k: int = Field(ge=1)
    torch_threads: int = Field(ge=1)
