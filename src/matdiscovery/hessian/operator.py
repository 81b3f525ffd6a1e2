"""The loss Hessian as a matrix-free linear operator over a model's flattened parameters.

``H v`` is computed without ever forming ``H``:

- ``method="double_backward"`` (default): the gradient graph of each data batch is built once
  (``create_graph=True``) and every product is one reverse pass through it; blocks of vectors
  are pushed through one after another (autograd's vmap, ``is_grads_batched``, is slower on
  CPU for PyG's scatter kernels).
- ``method="forward_over_reverse"``: :func:`torch.func.jvp` of :func:`torch.func.grad` over a
  functional call of the model (recomputes the forward pass; no graph kept in memory).

Several batches: with a :class:`TaskLoss` the batches are weighted by label count (each task's
squared errors are divided by its total over all batches, so the batch losses sum to the exact
data-set loss); any other ``loss_fn`` is averaged with weights ∝ graphs per batch. With one
batch the gradient graph is built once and kept (fast); with several (``retain_graphs=False``,
the default there) each product rebuilds and frees one batch's graph at a time, so memory stays
flat in the number of batches (a full-training-set Hessian streams its batches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

LossFn = Callable[[nn.Module, object], torch.Tensor]


def _batch_size(batch: object) -> int:
    n = getattr(batch, "num_graphs", None)
    if n is not None:
        return int(n)
    if isinstance(batch, (tuple, list)) and batch and torch.is_tensor(batch[0]):
        return int(batch[0].shape[0])
    return 1


@dataclass
class HessianOperator:
    """``H = ∇²_θ L(θ)`` of ``loss_fn(model, batch)`` averaged over ``batches``.

    ``loss_fn`` returns a scalar (e.g. one task's loss or the summed multi-task loss).
    ``params`` defaults to every trainable parameter of ``model``. Vectors are flat tensors of
    length :attr:`dim` in the parameters' dtype. :attr:`n_matvecs` counts Hessian-vector
    products (a block of ``k`` vectors counts ``k``).
    """

    model: nn.Module
    loss_fn: LossFn
    batches: Sequence[object]
    params: Sequence[torch.Tensor] | None = None
    method: str = "double_backward"
    retain_graphs: bool | None = None

    def __post_init__(self) -> None:
        if self.method not in ("double_backward", "forward_over_reverse"):
            raise ValueError(f"method must be 'double_backward' or 'forward_over_reverse', got {self.method!r}")
        if not isinstance(self.batches, (list, tuple)):
            self.batches = [self.batches]
        if len(self.batches) == 0:
            raise ValueError("HessianOperator needs at least one batch of data")
        if self.params is None:
            self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = list(self.params)
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        if self.method == "forward_over_reverse":
            own = {id(p) for p in self.model.parameters()}
            foreign = [i for i, p in enumerate(self.params) if id(p) not in own]
            if foreign:
                raise ValueError(f"params {foreign} are not parameters of the model (needed by forward_over_reverse)")
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.dim = int(sum(self.numels))
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        if isinstance(self.loss_fn, TaskLoss) and len(self.batches) > 1:
            self.loss_fn = self.loss_fn.over(self.batches)
            self.batch_weights = [1.0] * len(self.batches)
        else:
            sizes = torch.tensor([_batch_size(b) for b in self.batches], dtype=torch.float64)
            self.batch_weights = (sizes / sizes.sum()).tolist()
        if self.retain_graphs is None:
            self.retain_graphs = len(self.batches) == 1
        self.n_matvecs = 0
        self._grads: list[tuple[torch.Tensor, ...]] | None = None
        self.model.eval()  # dropout off; BatchNorm uses running statistics

    # ------------------------------------------------------------------ flat <-> per-parameter
    def unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Split a flat ``(dim,)`` (or ``(k, dim)``) tensor into parameter-shaped pieces."""
        lead = v.shape[:-1]
        return [c.reshape(*lead, *s) for c, s in zip(torch.split(v, self.numels, dim=-1), self.shapes)]

    def flatten(self, pieces: Iterable[torch.Tensor], lead: tuple[int, ...] = ()) -> torch.Tensor:
        return torch.cat([p.reshape(*lead, -1) for p in pieces], dim=-1)

    def loss(self) -> float:
        """The loss at the current parameters (weighted over batches)."""
        with torch.no_grad():
            return float(sum(w * float(self.loss_fn(self.model, b)) for w, b in zip(self.batch_weights, self.batches)))

    def gradient(self) -> torch.Tensor:
        """Flat gradient of the loss (weighted over batches)."""
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for w, b in zip(self.batch_weights, self.batches):
            g = torch.autograd.grad(self.loss_fn(self.model, b), self.params, allow_unused=True)
            out += w * self.flatten([torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, self.params)])
        return out

    # ------------------------------------------------------------------ products
    def _grad_graph(self, batch) -> tuple[torch.Tensor, ...]:
        loss = self.loss_fn(self.model, batch)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        g = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        # parameters the loss does not touch have zero gradient and zero curvature
        return tuple(p * 0 if gi is None else gi for gi, p in zip(g, self.params))

    def _graphs(self):
        """Each batch's gradient graph: kept after the first use with ``retain_graphs``, else
        rebuilt lazily and dropped after use (one batch's graph alive at a time)."""
        if not self.retain_graphs:
            return (self._grad_graph(b) for b in self.batches)
        if self._grads is None:
            self._grads = [self._grad_graph(b) for b in self.batches]
        return self._grads

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat ``(dim,)`` vector."""
        return self.matmat(v.reshape(1, -1)).reshape(-1)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``(H V^T)^T`` for a block ``V`` of shape ``(k, dim)``: one product per row."""
        if V.dim() != 2 or V.shape[1] != self.dim:
            raise ValueError(f"expected a (k, {self.dim}) block of vectors, got shape {tuple(V.shape)}")
        V = V.to(dtype=self.dtype, device=self.device)
        k = V.shape[0]
        self.n_matvecs += k
        if self.method == "forward_over_reverse":
            return torch.stack([self._fwd_rev(v) for v in V])
        out = torch.zeros_like(V)
        for w, grads in zip(self.batch_weights, self._graphs()):
            # one reverse pass per vector: on CPU this beats autograd's vmap (is_grads_batched),
            # which falls back to slow per-sample loops for PyG's scatter kernels
            for i in range(k):
                hv = torch.autograd.grad(grads, self.params, grad_outputs=self.unflatten(V[i]),
                                         retain_graph=self.retain_graphs or i < k - 1, allow_unused=True)
                out[i] += w * self.flatten([torch.zeros_like(p) if h is None else h for h, p in zip(hv, self.params)])
        return out

    def _fwd_rev(self, v: torch.Tensor) -> torch.Tensor:
        from torch.func import grad, jvp

        name_of = {id(p): n for n, p in self.model.named_parameters()}
        names = [name_of[id(p)] for p in self.params]
        primals = {n: p.detach() for n, p in zip(names, self.params)}
        tangents = dict(zip(names, self.unflatten(v)))
        out = torch.zeros_like(v)
        for w, b in zip(self.batch_weights, self.batches):
            def f(p, b=b):
                return self.loss_fn(_Functional(self.model, p), b)

            _, hv = jvp(grad(f), (primals,), (tangents,))
            out += w * self.flatten([hv[n] for n in names])
        return out

    def dense(self) -> torch.Tensor:
        """The full ``(dim, dim)`` Hessian, column by column (for tests on tiny models only)."""
        if self.dim > 20_000:
            raise ValueError(f"refusing to form a dense {self.dim}×{self.dim} Hessian")
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return torch.cat([self.matmat(eye[i:i + 256]) for i in range(0, self.dim, 256)])


class _Functional(nn.Module):
    """Calls ``model`` with parameters replaced by ``params`` (for :mod:`torch.func` transforms)."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]):
        super().__init__()
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_params", params)

    def forward(self, *args, **kwargs):
        from torch.func import functional_call

        return functional_call(self._model, self._params, args, kwargs)


# ---------------------------------------------------------------------------- task losses


def masked_task_losses(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(n_tasks,)`` mean squared error per task over labelled entries (NaN targets ignored;
    a task without labels in the batch gives 0)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    mask = ~torch.isnan(target)
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    return diff.pow(2).sum(dim=-2) / mask.sum(dim=-2).clamp_min(1)


class TaskLoss:
    """``loss(model, batch)`` for :class:`HessianOperator` on PyG batches with ``batch.y``.

    ``task=i``: that task's masked MSE; ``task=None``: the multi-task loss Σ_t w_t L_t
    (``weights`` default ones). ``transform`` (a :class:`~matdiscovery.hessian.mtl.TargetTransform`
    or anything with ``raw_to_unit``) maps labels as in training, so curvatures of different tasks
    share a scale. With ``totals`` (labelled entries per task over a whole data set) each task's
    squared errors are divided by its data-set total instead of the batch count, so the losses
    of several batches *sum* to the exact data-set loss, weighted by label count.
    """

    def __init__(self, task: int | None, transform=None, weights: torch.Tensor | None = None,
                 totals: torch.Tensor | None = None):
        self.task, self.transform, self.weights, self.totals = task, transform, weights, totals

    def _target(self, batch) -> torch.Tensor:
        y = batch.y
        return y if self.transform is None else self.transform.raw_to_unit(y)

    def __call__(self, model: nn.Module, batch) -> torch.Tensor:
        y = self._target(batch)
        pred = model(batch)
        if pred.shape != y.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(y.shape)}")
        if self.task is not None and not 0 <= self.task < y.shape[-1]:
            raise ValueError(f"task index {self.task} out of range for {y.shape[-1]} tasks")
        if self.totals is None:
            losses = masked_task_losses(pred, y)
        else:
            mask = ~torch.isnan(y)
            sq = torch.where(mask, pred - torch.nan_to_num(y), torch.zeros_like(pred)).pow(2).sum(dim=0)
            losses = sq / self.totals.to(sq).clamp_min(1)
        if self.task is not None:
            return losses[self.task]
        w = torch.ones_like(losses) if self.weights is None else self.weights.to(losses)
        return (losses * w).sum()

    def label_counts(self, batch) -> torch.Tensor:
        """Labelled entries per task in ``batch``."""
        return (~torch.isnan(batch.y)).sum(dim=0)

    def over(self, batches: Sequence[object]) -> "TaskLoss":
        """This loss with per-task totals over ``batches`` (see the class docstring)."""
        totals = sum(self.label_counts(b) for b in batches)
        if self.task is not None and not 0 <= self.task < totals.numel():
            raise ValueError(f"task index {self.task} out of range for {totals.numel()} tasks")
        if self.task is not None and int(totals[self.task]) == 0:
            raise ValueError(f"task {self.task} has no labels in the {len(batches)} batch(es)")
        return TaskLoss(self.task, self.transform, self.weights, totals)


def task_loss_fn(task: int | None, transform=None, weights: torch.Tensor | None = None) -> TaskLoss:
    """Shorthand for :class:`TaskLoss` (``task=None``: the summed multi-task loss)."""
    return TaskLoss(task, transform, weights)
