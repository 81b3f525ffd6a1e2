"""Minimal, seeded training and prediction loops for PyG regressors with sparse labels.

Labels live in ``data.y`` as ``(1, n_targets)`` with NaN for a missing value; the loss masks
them, so one multi-task model can train on partially labelled data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from matdiscovery.progress import progress_bar


def masked_loss(
    pred: torch.Tensor, target: torch.Tensor, task_weights: torch.Tensor | None = None, kind: str = "mse"
) -> torch.Tensor:
    """Mean over tasks of the mean per-task loss over labelled entries (NaN targets ignored).

    ``task_weights`` (``(n_targets,)``) multiplies each task's mean loss; tasks without any
    label in the batch contribute zero.
    """
    mask = ~torch.isnan(target)
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    per = diff.pow(2) if kind == "mse" else diff.abs() if kind == "l1" else None
    if per is None:
        raise ValueError(f"kind must be 'mse' or 'l1', got {kind!r}")
    counts = mask.sum(dim=0)
    per_task = per.sum(dim=0) / counts.clamp_min(1)
    if task_weights is not None:
        per_task = per_task * task_weights
    present = (counts > 0).sum().clamp_min(1)
    return per_task.sum() / present


@dataclass
class TrainHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1


def fit(
    model: nn.Module,
    train: Sequence[Data],
    val: Sequence[Data] | None = None,
    epochs: int = 50,
    lr: float = 3e-3,
    batch_size: int = 128,
    weight_decay: float = 1e-6,
    seed: int = 0,
    loss: str = "l1",
    task_weights: torch.Tensor | Callable[[int, nn.Module], torch.Tensor | None] | None = None,
    target_scale: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = True,
) -> TrainHistory:
    """Train ``model`` with AdamW + cosine schedule; keeps the weights of the best validation epoch.

    ``target_scale = (mean, std)`` standardises targets inside the loss (the model then predicts
    standardised values: use the same pair in :func:`predict`). ``task_weights`` is a tensor or
    a callable ``(epoch, model) -> tensor`` refreshed each epoch (for curvature-aware weighting).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(list(train), batch_size=batch_size, shuffle=True, generator=generator)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    mean, std = target_scale if target_scale is not None else (None, None)
    history, best, best_state = TrainHistory(), float("inf"), None
    bar = progress_bar(range(epochs), desc="epochs", progress=progress, leave=False)
    for epoch in bar:
        weights = task_weights(epoch, model) if callable(task_weights) else task_weights
        model.train()
        total, n = 0.0, 0
        for batch in loader:
            y = batch.y if mean is None else (batch.y - mean) / std
            opt.zero_grad()
            value = masked_loss(model(batch), y, weights, loss)
            value.backward()
            opt.step()
            total += float(value.detach()) * batch.num_graphs
            n += batch.num_graphs
        sched.step()
        history.train_loss.append(total / max(n, 1))
        if val is not None and len(val):
            pred = torch.as_tensor(predict(model, val, batch_size=512))
            y = torch.cat([d.y for d in val])
            if mean is not None:
                y = (y - mean) / std
            v = float(masked_loss(pred, y, None, loss))
            history.val_loss.append(v)
            if v < best:
                best, history.best_epoch = v, epoch
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            bar.set_postfix(train=f"{history.train_loss[-1]:.4f}", val=f"{v:.4f}")
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


@torch.no_grad()
def predict(
    model: nn.Module, data: Sequence[Data], batch_size: int = 512,
    target_scale: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> np.ndarray:
    """``(n, n_targets)`` predictions; with ``target_scale`` mapped back to label units."""
    model.eval()
    out = [model(batch) for batch in DataLoader(list(data), batch_size=batch_size, shuffle=False)]
    pred = torch.cat(out) if out else torch.empty((0, getattr(model, "n_targets", 1)))
    if target_scale is not None:
        pred = pred * target_scale[1] + target_scale[0]
    return pred.numpy()
