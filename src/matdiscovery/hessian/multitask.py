"""STL, MTL and multi-task remedies trained together, one seed at a time, in a vectorised pass.

Every model of one seed sees the same mini-batches (drawn from that seed) and is selected by the
same early-stopping rule. Models of the same shape are stacked (:func:`torch.func.stack_module_state`)
and run with :func:`torch.func.vmap` in one forward/backward pass per mini-batch:

- ``stl:<task>``: one network per target (``n_targets`` outputs, only its own target in the loss,
  so all STL and MTL networks share a shape and a stack);
- ``mtl``: one network, the mean of the task losses (equal weights);
- ``curvature``: our remedy, task weights ∝ 1 / (top Hessian eigenvalue of the task loss over
  the shared trunk), refreshed every ``curvature_every`` epochs (:class:`CurvatureWeights`);
- ``uw``: uncertainty weighting (Kendall et al. 2018), ``torchjd.scalarization.UW``;
- ``famo``: FAMO (Liu et al. 2023), ``torchjd.scalarization.FAMO``;
- ``upgrad``: UPGrad (Quinton & Rey 2024), ``torchjd.autojac.mtl_backward`` + ``jac_to_grad``
  with ``torchjd.aggregation.UPGrad`` over the shared trunk (its own, unstacked network: it needs
  one Jacobian row per task);
- ``mtl_wide``: the capacity-matched control, MTL with a trunk as large (in parameters) as
  the ``n_targets`` STL trunks together (:func:`~matdiscovery.hessian.mtl.capacity_matched_dim`).

Early stopping, the same rule for every model: after each epoch the validation MSE of every
(model, task) pair is measured on standardised targets, and each task's test prediction comes
from the epoch with that task's lowest validation loss. An STL network is selected on its task,
an MTL network separately for each of its tasks; the MTL network selected on its mean
validation loss (``"joint"``) is the "MTL solution" whose curvature we measure.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from matdiscovery.hessian.eigen import lanczos_eigenvalues
from matdiscovery.hessian.mtl import TaskData, capacity_matched_dim, make_model, scope_parameters, shared_parameters
from matdiscovery.hessian.operator import HessianOperator, masked_task_losses, task_loss_fn

#: Multi-task methods beside STL; ``REMEDIES`` are those that change how tasks are combined.
MTL_METHODS = ("mtl", "mtl_wide", "curvature", "uw", "upgrad", "famo")
REMEDIES = ("curvature", "uw", "upgrad", "famo")
STACKED = ("mtl", "curvature", "uw", "famo")


@dataclass
class TrainConfig:
    """Architecture and optimiser shared by every model (AdamW, cosine schedule)."""

    dim: int = 32
    n_layers: int = 3
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 1e-6
    curvature_every: int = 5
    curvature_batch: int = 256
    curvature_steps: int = 10
    curvature_scope: str = "shared"
    methods: tuple[str, ...] = MTL_METHODS
    model_kwargs: dict = field(default_factory=dict)


class ModelStack:
    """``M`` networks of one shape as stacked parameters, evaluated together with ``vmap``.

    ``self(batch)`` returns ``(M, n_graphs, n_targets)``; :meth:`module` rebuilds network ``i``.
    """

    def __init__(self, models: list[nn.Module]):
        if not models:
            raise ValueError("ModelStack needs at least one model")
        self.n = len(models)
        self.template = copy.deepcopy(models[0])
        self.params, self.buffers = stack_module_state(models)
        self._meta = copy.deepcopy(models[0]).to("meta")

    def _call(self, params, buffers, batch):
        return functional_call(self._meta, (params, buffers), (batch,))

    def __call__(self, batch, params: dict | None = None) -> torch.Tensor:
        params = self.params if params is None else params
        if self.n == 1:  # no vmap overhead for a lone network
            one = {k: v[0] for k, v in params.items()}
            return functional_call(self.template, (one, {k: v[0] for k, v in self.buffers.items()}), (batch,)).unsqueeze(0)
        return vmap(self._call, in_dims=(0, 0, None), randomness="different")(params, self.buffers, batch)

    def state(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i].detach().clone() for k, v in self.params.items()}

    def module(self, i: int, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """A standalone copy of network ``i`` (or of a saved ``state``)."""
        net = copy.deepcopy(self.template)
        net.load_state_dict({**(self.state(i) if state is None else state),
                             **{k: v[i] for k, v in self.buffers.items()}})
        return net


class CurvatureWeights:
    """Task weights ``w_t ∝ 1 / λ_max,t`` (mean 1, clipped to ``[1/clip, clip]``) from each task's
    top Hessian eigenvalue (largest algebraic, shared trunk by default) on a fixed training batch;
    ``history`` keeps ``(epoch, eigenvalues, weights)``."""

    def __init__(self, batch, transform, n_tasks: int, lanczos_steps: int = 10, clip: float = 10.0,
                 seed: int = 0, scope: str = "shared"):
        self.batch, self.transform, self.n_tasks, self.scope = batch, transform, n_tasks, scope
        self.steps, self.clip, self.seed = lanczos_steps, clip, seed
        self.weights = torch.ones(n_tasks)
        self.history: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.n_matvecs = 0

    def refresh(self, epoch: int, model: nn.Module) -> torch.Tensor:
        lam = []
        for t in range(self.n_tasks):
            op = HessianOperator(model, task_loss_fn(t, self.transform), [self.batch], params=scope_parameters(model, self.scope))
            res = lanczos_eigenvalues(op, k=1, tol=1e-2, max_steps=self.steps, seed=self.seed + epoch, which="LA",
                                      on_unconverged="ignore")
            lam.append(res.eigenvalues[0])
            self.n_matvecs += res.n_matvecs
        lam = np.array(lam)
        inv = 1.0 / np.clip(lam, 1e-6, None)
        w = np.clip(inv / inv.mean(), 1 / self.clip, self.clip)
        self.weights = torch.as_tensor(w / w.mean(), dtype=torch.float32)
        self.history.append((epoch, lam, self.weights.numpy().copy()))
        return self.weights


class _Group:
    """Networks of one shape trained with one optimiser; ``names[i]`` is network ``i``'s method."""

    def __init__(self, names: list[str], models: list[nn.Module], tasks_of: list[list[int]], config: TrainConfig,
                 extra_params: list[torch.Tensor] = ()):
        self.names, self.tasks_of = names, tasks_of
        self.stack = ModelStack(models)
        self.opt = torch.optim.AdamW(
            [{"params": list(self.stack.params.values())},
             {"params": list(extra_params), "weight_decay": 0.0}], lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(config.epochs, 1))
        n_t = max(max(t) for t in tasks_of) + 1
        self.best = np.full((len(names), n_t), np.inf)
        self.best_epoch = np.full((len(names), n_t), -1)
        self.best_state: dict[tuple[int, int], dict] = {}
        self.joint_best, self.joint_state = np.full(len(names), np.inf), {}

    @torch.no_grad()
    def predict(self, data: TaskData, split: str, states: list[dict] | None = None, chunk: int = 1024) -> torch.Tensor:
        """``(M, n, n_targets)`` standardised predictions on a split (current or given weights)."""
        params = None
        if states is not None:
            params = {k: torch.stack([s[k] for s in states]) for k in self.stack.params}
        ids = np.arange(len(getattr(data, f"{split}_idx")))
        return torch.cat([self.stack(data.batch(split, ids[i:i + chunk]), params) for i in range(0, len(ids), chunk)], dim=1)

    def validate(self, data: TaskData, y_val: torch.Tensor, epoch: int) -> None:
        losses = masked_task_losses(self.predict(data, "val"), y_val.expand(self.stack.n, -1, -1)).numpy()
        for i, tasks in enumerate(self.tasks_of):
            for t in tasks:
                if losses[i, t] < self.best[i, t]:
                    self.best[i, t], self.best_epoch[i, t] = losses[i, t], epoch
                    self.best_state[(i, t)] = self.stack.state(i)
            joint = float(losses[i, tasks].mean())
            if joint < self.joint_best[i]:
                self.joint_best[i], self.joint_state[i] = joint, self.stack.state(i)

    def test_predictions(self, data: TaskData) -> dict[str, np.ndarray]:
        """Per network, ``(n_test, n_targets)`` raw-unit predictions, column ``t`` from task ``t``'s
        best epoch (NaN for tasks the network is not trained on)."""
        n_t = data.n_tasks
        out = {name: np.full((len(data.test_idx), n_t), np.nan) for name in self.names}
        for t in range(n_t):
            users = [i for i, tasks in enumerate(self.tasks_of) if t in tasks]
            if not users:
                continue
            states = [self.best_state.get((i, t), self.stack.state(i)) if i in users else self.stack.state(i)
                      for i in range(self.stack.n)]
            pred = data.transform.unit_to_raw(self.predict(data, "test", states)).numpy()
            for i in users:
                out[self.names[i]][:, t] = pred[i, :, t]
        return out


class _StackedGroup(_Group):
    """Scalarised losses: STL, MTL, curvature weights, UW, FAMO."""

    def __init__(self, data: TaskData, names: list[str], config: TrainConfig, seed: int, dim: int):
        from torchjd.scalarization import FAMO, UW

        T = data.n_tasks
        models, tasks_of = [], []
        for j, name in enumerate(names):
            torch.manual_seed(seed * 1000 + j)
            models.append(make_model(data.kind, T, dim=dim, n_layers=config.n_layers, **config.model_kwargs))
            tasks_of.append([int(name.split(":")[1])] if name.startswith("stl:") else list(range(T)))
        self.uw = {i: UW(T) for i, n in enumerate(names) if n == "uw"}
        self.famo = {i: FAMO(T) for i, n in enumerate(names) if n == "famo"}
        super().__init__(names, models, tasks_of, config, [p for s in self.uw.values() for p in s.parameters()])
        self.curv: dict[int, CurvatureWeights] = {}
        gen = np.random.default_rng(seed)
        for i, n in enumerate(names):
            if n == "curvature":
                idx = gen.choice(len(data.train_idx), size=min(config.curvature_batch, len(data.train_idx)), replace=False)
                self.curv[i] = CurvatureWeights(data.batch("train", idx), data.transform, T, config.curvature_steps,
                                                seed=seed, scope=config.curvature_scope)
        self.every = config.curvature_every

    def start_epoch(self, epoch: int) -> None:
        if epoch % self.every == 0:
            for i, cw in self.curv.items():
                cw.refresh(epoch, self.stack.module(i))

    def step(self, batch, y: torch.Tensor) -> None:
        L = masked_task_losses(self(batch), y.expand(self.stack.n, -1, -1))  # (M, T)
        total = L.new_zeros(())
        for i, name in enumerate(self.names):
            if i in self.uw:
                total = total + self.uw[i](L[i])
            elif i in self.famo:
                total = total + self.famo[i](L[i])
            elif i in self.curv:
                total = total + (self.curv[i].weights * L[i]).mean()
            elif name.startswith("stl:"):
                total = total + L[i, self.tasks_of[i][0]]
            else:
                total = total + L[i].mean()
        self.opt.zero_grad()
        total.backward()
        self.opt.step()
        if self.famo:  # FAMO learns its weights from the change of the losses over the step
            with torch.no_grad():
                for i, famo in self.famo.items():
                    one = {k: v[i] for k, v in self.stack.params.items()}
                    pred = functional_call(self.stack.template, one, (batch,))
                    famo.update(masked_task_losses(pred, y))

    def __call__(self, batch):
        return self.stack(batch)


class _JacobianGroup(_Group):
    """One network trained by Jacobian descent (UPGrad over the shared trunk)."""

    def __init__(self, data: TaskData, config: TrainConfig, seed: int, dim: int):
        from torchjd.aggregation import UPGrad

        torch.manual_seed(seed * 1000 + 99)
        model = make_model(data.kind, data.n_tasks, dim=dim, n_layers=config.n_layers, **config.model_kwargs)
        super().__init__(["upgrad"], [model], [list(range(data.n_tasks))], config)
        self.model = self.stack.module(0)  # the trained network; the stack holds its snapshots
        self.shared = shared_parameters(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(config.epochs, 1))
        self.aggregator = UPGrad()
        self.n_tasks = data.n_tasks

    def start_epoch(self, epoch: int) -> None:
        pass

    def step(self, batch, y: torch.Tensor) -> None:
        from torchjd.autojac import jac_to_grad, mtl_backward

        features = self.model.head[:-1](self.model.embed(batch))
        L = masked_task_losses(self.model.head[-1](features), y)
        self.opt.zero_grad()
        # the output layer is one Linear for all tasks: its per-task gradients share one graph
        mtl_backward(list(L), features=features, shared_params=self.shared, retain_graph=True)
        jac_to_grad(self.shared, self.aggregator)
        self.opt.step()
        with torch.no_grad():  # mirror into the stack used for validation and snapshots
            for k, p in self.model.named_parameters():
                self.stack.params[k][0].copy_(p)


@dataclass
class SeedRun:
    """One seed of every method: test predictions (raw units) per method, best epochs, the
    selected networks (``states[(method, task)]``; ``task = -1``: selected on the mean validation
    loss) and the curvature remedy's weight history."""

    seed: int
    predictions: dict[str, np.ndarray]
    best_epochs: dict[str, np.ndarray]
    states: dict[tuple[str, int], dict]
    templates: dict[str, nn.Module]
    curvature_history: list
    curvature_matvecs: int
    wide_dim: int
    seconds: float

    def errors(self, data: TaskData) -> pd.DataFrame:
        """One row per (method, task): test MAE in label units, labelled test rows, best epoch."""
        y = data.labels("test")
        rows = []
        for method, pred in self.predictions.items():
            for t, task in enumerate(data.targets):
                if np.isnan(pred[:, t]).all():
                    continue
                ok = ~np.isnan(y[:, t])
                rows.append({"seed": self.seed, "method": method.split(":")[0], "task": task,
                             "mae": float(np.abs(pred[ok, t] - y[ok, t]).mean()), "n_test": int(ok.sum()),
                             "best_epoch": int(self.best_epochs[method][t])})
        return pd.DataFrame(rows)

    def model(self, method: str, task: int = -1) -> nn.Module:
        """The selected network of ``method`` (``"stl"`` with its task; ``task=-1``: joint selection)."""
        key = f"stl:{task}" if method == "stl" else method
        net = copy.deepcopy(self.templates[key])
        net.load_state_dict(self.states[(key, task)])
        return net.eval()


def train_seed(data: TaskData, config: TrainConfig, seed: int, progress: bool = False) -> SeedRun:
    """Train STL (one network per target) and every method in ``config.methods`` for one seed,
    in lock step over the same mini-batches, with the shared early-stopping rule."""
    import time

    from matdiscovery.progress import progress_bar

    unknown = set(config.methods) - set(MTL_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {MTL_METHODS}")
    t0 = time.perf_counter()
    T = data.n_tasks
    names = [f"stl:{t}" for t in range(T)] + [m for m in STACKED if m in config.methods]
    groups: list[_Group] = [_StackedGroup(data, names, config, seed, config.dim)]
    if "upgrad" in config.methods:
        groups.append(_JacobianGroup(data, config, seed, config.dim))
    wide = capacity_matched_dim(data.kind, T, config.dim, config.n_layers, **config.model_kwargs)
    if "mtl_wide" in config.methods:
        groups.append(_StackedGroup(data, ["mtl"], config, seed + 7919, wide))
        groups[-1].names = ["mtl_wide"]
    y_val = data.transform.raw_to_unit(data.store.y[data.val_idx])
    y_all = data.transform.raw_to_unit(data.store.y)
    rng = np.random.default_rng(seed)
    n_train = len(data.train_idx)
    for epoch in progress_bar(range(config.epochs), desc=f"{data.name} seed {seed}", progress=progress, leave=False):
        for g in groups:
            g.start_epoch(epoch)
        order = data.train_idx[rng.permutation(n_train)]
        for s in range(0, n_train, config.batch_size):
            ids = order[s:s + config.batch_size]
            batch = data.store.batch(ids)
            y = y_all[ids]
            for g in groups:
                g.step(batch, y)
        for g in groups:
            g.sched.step()
            g.validate(data, y_val, epoch)
    predictions, best_epochs, states, templates = {}, {}, {}, {}
    for g in groups:
        predictions.update(g.test_predictions(data))
        for i, name in enumerate(g.names):
            best_epochs[name] = g.best_epoch[i]
            templates[name] = g.stack.template
            for t in g.tasks_of[i]:
                states[(name, t)] = g.best_state[(i, t)]
            if len(g.tasks_of[i]) == 1:
                states[(name, g.tasks_of[i][0])] = g.best_state[(i, g.tasks_of[i][0])]
            states[(name, -1)] = g.joint_state[i]
    curv = next((g.curv[i] for g in groups if isinstance(g, _StackedGroup) for i in g.curv), None)
    return SeedRun(seed, predictions, best_epochs, states, templates, [] if curv is None else curv.history,
                   0 if curv is None else curv.n_matvecs, wide, time.perf_counter() - t0)
