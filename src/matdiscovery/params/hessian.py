"""Parameters of notebook 03 (Hessian spectra of multi-task GNNs)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from matdiscovery.params import NotebookParams


class HessianParams(NotebookParams):
    seed: int = Field(ge=0, description="data subsample / split seed")
    datasets: list[Literal["perov_5", "jarvis", "qm9", "qm8"]] = Field(min_length=1)
    n_samples: int | dict[str, int] = Field(description="graphs per benchmark (int or {dataset: int})")
    epochs: int = Field(ge=1)
    dim: int = Field(ge=1)
    n_layers: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    seeds: list[int] = Field(min_length=1)
    curvature_every: int = Field(ge=1)
    curvature_batch: int = Field(ge=1)
    curvature_steps: int = Field(ge=1)
    hessian_batch: int = Field(ge=1)
    hessian_scope: Literal["shared", "all"]
    n_eigs: int = Field(ge=1)
    trace_probes: int = Field(ge=1)
    trace_deflate: int = Field(ge=0)
    slq_probes: int = Field(ge=1)
    slq_steps: int = Field(ge=2)
    lanczos_max_steps: int = Field(ge=2)
    bench_batch: int = Field(ge=1)
    bench_trace_probes: int = Field(ge=1)
    bench_density_steps: int = Field(ge=2)
    torch_threads: int = Field(ge=1)
