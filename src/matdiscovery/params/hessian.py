"""Parameters of notebook 03 (Hessian spectra and the MTL-vs-STL study)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from matdiscovery.params import NotebookParams

Dataset = Literal["qm8", "jarvis", "perov_5", "qm9"]
Method = Literal["mtl", "mtl_wide", "curvature", "uw", "upgrad", "famo"]


class HessianParams(NotebookParams):
    seed: int = Field(ge=0, description="data subsample / split seed")
    datasets: list[Dataset] = Field(min_length=1, description="qm8 (the paper's molecules) or qm9; jarvis; perov_5")
    n_train: int | dict[str, int] = Field(description="training graphs per data set (-1: every row not in val/test)")
    n_val: int | dict[str, int] = Field(description="validation graphs (early stopping)")
    n_test: int | dict[str, int] = Field(description="test graphs (JARVIS: about 26 % carry an MBJ label)")
    epochs: int = Field(ge=1)
    dim: int = Field(ge=1, description="trunk width of every STL/MTL network")
    n_layers: int = Field(ge=1)
    roost_heads: int = Field(ge=1, description="attention heads of the JARVIS Roost network")
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    seeds: list[int] = Field(min_length=2, description="training seeds (paired statistics over them)")
    methods: list[Method] = Field(min_length=1, description="multi-task methods trained beside STL")
    confidence: float = Field(gt=0, lt=1)
    curvature_every: int = Field(ge=1, description="epochs between refreshes of the curvature weights")
    curvature_batch: int = Field(ge=1)
    curvature_steps: int = Field(ge=2, description="Lanczos steps per refresh and task")
    hessian_batches: int = Field(ge=1, description="batches per seed for the curvature statistics")
    hessian_batch: int = Field(ge=2, description="training graphs per Hessian batch")
    lanczos_max_steps: int = Field(ge=2)
    slq_probes: int = Field(ge=1)
    slq_steps: int = Field(ge=2)
    slq_deflate: int = Field(ge=0, description="Krylov deflation steps before the SLQ probes")
    full_dataset_hessian: bool = Field(description="also the summed-loss top eigenvalue over the whole training set")
    bench_dataset: Dataset = Field(description="data set whose first-seed MTL network the PyHessian comparison uses")
    bench_batch: int = Field(ge=2)
    bench_repeats: int = Field(ge=1)
    bench_top_k: int = Field(ge=2)
    bench_trace_probes: int = Field(ge=2)
    bench_density_steps: int = Field(ge=2)
    bench_density_probes: int = Field(ge=1)
    n_jobs: int = Field(ge=1, description="worker processes (one thread each)")
    torch_threads: int = Field(ge=1)

    @model_validator(mode="after")
    def _check(self) -> "HessianParams":
        if self.bench_dataset not in self.datasets:
            raise ValueError(f"bench_dataset {self.bench_dataset!r} must be one of datasets {self.datasets}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if {"qm8", "qm9"} <= set(self.datasets):
            raise ValueError("choose one molecular data set: qm8 or qm9")
        for name in ("n_train", "n_val", "n_test"):
            value = getattr(self, name)
            if isinstance(value, dict):
                missing = sorted(set(self.datasets) - set(value))
                if missing:
                    raise ValueError(f"{name} has no size for {missing}")
        return self

    def size(self, dataset: str) -> tuple[int, int, int]:
        """``(n_train, n_val, n_test)`` of one data set."""
        pick = lambda v: v[dataset] if isinstance(v, dict) else v  # noqa: E731
        return pick(self.n_train), pick(self.n_val), pick(self.n_test)
