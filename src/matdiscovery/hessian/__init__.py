"""Matrix-free Hessian spectra of (multi-task) networks: Hessian-vector products, top
eigenvalues (power iteration with deflation, Lanczos), Hutchinson traces with confidence
intervals and SLQ spectral densities, per task loss or for the summed multi-task loss."""

from matdiscovery.hessian.density import SpectralDensity, slq_density
from matdiscovery.hessian.eigen import (
    DenseOperator,
    EigenResult,
    UnconvergedEigenvaluesWarning,
    lanczos,
    lanczos_eigenvalues,
    power_iteration,
    top_eigenvalues,
)
from matdiscovery.hessian.operator import HessianOperator, TaskLoss, masked_task_losses, task_loss_fn
from matdiscovery.hessian.trace import TraceResult, hutchinson_trace

__all__ = [
    "HessianOperator", "DenseOperator", "EigenResult", "SpectralDensity", "TraceResult",
    "hutchinson_trace", "lanczos", "lanczos_eigenvalues", "masked_task_losses", "power_iteration",
    "slq_density", "task_loss_fn", "top_eigenvalues", "TaskLoss", "UnconvergedEigenvaluesWarning",
]
