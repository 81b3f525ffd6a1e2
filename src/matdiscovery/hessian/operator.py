"""The loss Hessian as a matrix-free linear operator over a model's flattened parameters.

``H v`` is computed without ever forming ``H``:

- ``method="double_backward"`` (default): the gradient graph of each data batch is built once
  (``create_graph=True``) and every product is one reverse pass through it; blocks of vectors
  are pushed through one after another (autograd's vmap, ``is_grads_batched``, is slower on
  CPU for PyG's scatter kernels).
- ``method="forward_over_reverse"``: :func:`torch.func.jvp` of :func:`torch.func.grad` over a
  functional call of the model (recomputes the forward pass; no graph kept in memory).

Losses over several batches are averaged with weights ∝ batch size ("batched over data").
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
        sizes = torch.tensor([_batch_size(b) for b in self.batches], dtype=torch.float64)
        self.batch_weights = (sizes / sizes.sum()).tolist()
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
    def _graphs(self) -> list[tuple[torch.Tensor, ...]]:
        if self._grads is None:
            grads = []
            for b in self.batches:
                loss = self.loss_fn(self.model, b)
                if loss.dim() != 0:
                    raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
                g = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                # parameters the loss does not touch have zero gradient and zero curvature
                grads.append(tuple(p * 0 if gi is None else gi for gi, p in zip(g, self.params)))
            self._grads = grads
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
                                         retain_graph=True, allow_unused=True)
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
    return diff.pow(2).sum(dim=0) / mask.sum(dim=0).clamp_min(1)


def task_loss_fn(
    task: int | None,
    target_scale: tuple[torch.Tensor, torch.Tensor] | None = None,
    weights: torch.Tensor | None = None,
) -> LossFn:
    """A ``loss_fn(model, batch)`` for :class:`HessianOperator` on PyG batches with ``batch.y``.

    ``task=i``: that task's masked MSE; ``task=None``: the multi-task loss Σ_t w_t L_t
    (``weights`` default ones). Targets are standardised with ``target_scale=(mean, std)`` as in
    training, so curvatures of different tasks are on a common scale.
    """

    def fn(model: nn.Module, batch) -> torch.Tensor:
        y = batch.y
        if target_scale is not None:
            y = (y - target_scale[0].to(y)) / target_scale[1].to(y)
        losses = masked_task_losses(model(batch), y)
        if task is not None:
            if not 0 <= task < losses.numel():
                raise ValueError(f"task index {task} out of range for {losses.numel()} tasks")
            return losses[task]
        w = torch.ones_like(losses) if weights is None else weights.to(losses)
        return (losses * w).sum()

    return fn
