"""Multi-task (MTL) vs single-task (STL) training on three benchmarks, and per-task curvature.

Datasets (all seeded, subsampled for CPU budgets):

- ``perov_5`` crystals (CGCNN): heat_all, heat_ref (eV/atom), dir_gap, ind_gap (eV); the offline
  val and test files are pooled and re-split (our own seeded train/val/test split);
- ``jarvis`` compositions (Roost): formation energy, ehull (eV/atom), OptB88vdW and MBJ gaps (eV;
  MBJ is sparse, missing labels are masked in the loss);
- ``qm9`` molecules from the ``qm9pack`` wheel (MPNN on RDKit graphs from SMILES; the pipeline's
  default): HOMO, LUMO, gap, ZPVE (Hartree), dipole (Debye), polarizability (bohr³), Cv
  (cal/mol/K); or ``qm8`` (MoleculeNet CSV layout, the paper's benchmark): E1, E2 (Hartree),
  f1, f2 of CC2.

MTL trains one network on all targets with equal weights; STL one network per target with the
same architecture, epochs and optimiser; the curvature-weighted remedy (:class:`CurvatureWeights`)
weights each task's loss by the inverse of its current top Hessian eigenvalue, refreshed during
training. Losses are MSE on train-standardised targets, so curvatures are comparable across tasks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from matdiscovery.hessian.density import SpectralDensity, slq_density
from matdiscovery.hessian.eigen import lanczos_eigenvalues
from matdiscovery.hessian.operator import HessianOperator, task_loss_fn
from matdiscovery.hessian.trace import TraceResult, hutchinson_trace
from matdiscovery.models.training import fit, predict

DATASET_TARGETS: dict[str, tuple[str, ...]] = {
    "perov_5": ("heat_all", "heat_ref", "dir_gap", "ind_gap"),
    "jarvis": ("formation_energy_per_atom", "optb88vdw_bandgap", "mbj_bandgap", "ehull"),
    "qm8": ("E1-CC2", "E2-CC2", "f1-CC2", "f2-CC2"),
    "qm9": ("homo_Ha", "lumo_Ha", "gap_Ha", "mu_D", "alpha_bohr3", "zpve_Ha", "cv_cal_mol_K"),
}
DATASET_MODEL = {"perov_5": "cgcnn", "jarvis": "roost", "qm8": "mpnn", "qm9": "mpnn"}


@dataclass
class TaskData:
    """Graphs of one benchmark split three ways; ``scale = (mean, std)`` of the training labels
    (``(n_targets,)`` each, NaN-aware)."""

    name: str
    targets: tuple[str, ...]
    train: list[Data]
    val: list[Data]
    test: list[Data]
    scale: tuple[torch.Tensor, torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError(f"{self.name}: empty training set")
        y = torch.cat([d.y for d in self.train]).double()
        mean = torch.nanmean(y, dim=0)
        std = torch.sqrt(torch.nanmean((y - mean) ** 2, dim=0)).clamp_min(1e-8)
        if torch.isnan(mean).any():
            raise ValueError(f"{self.name}: a target has no training labels: {np.array(self.targets)[torch.isnan(mean).numpy()]}")
        self.scale = (mean.float(), std.float())

    @property
    def n_tasks(self) -> int:
        return len(self.targets)

    def task(self, i: int) -> "TaskData":
        """The single-task view of target ``i`` (labels sliced, graphs shared)."""
        def pick(graphs):
            out = []
            for g in graphs:
                h = copy.copy(g)
                h.y = g.y[:, i : i + 1]
                if not torch.isnan(h.y).all():
                    out.append(h)
            return out

        return TaskData(f"{self.name}:{self.targets[i]}", (self.targets[i],), pick(self.train), pick(self.val), pick(self.test))


def split(graphs: Sequence[Data], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> tuple[list, list, list]:
    """Seeded random train/val/test split."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(len(graphs))
    n_train = int(round(fractions[0] * len(graphs)))
    n_val = int(round(fractions[1] * len(graphs)))
    pick = lambda idx: [graphs[i] for i in idx]  # noqa: E731
    return pick(order[:n_train]), pick(order[n_train : n_train + n_val]), pick(order[n_train + n_val :])


def _sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or n >= len(frame):
        return frame
    return frame.sample(n=n, random_state=seed).reset_index(drop=True)


def load_task_data(
    name: str, n_samples: int | None = 2000, seed: int = 0, targets: Sequence[str] | None = None,
    fractions=(0.8, 0.1, 0.1), path: str | None = None,
) -> TaskData:
    """Build the graphs of benchmark ``name`` (``perov_5``, ``jarvis``, ``qm8``, ``qm9``) with
    ``n_samples`` seeded random entries (``None``: all). ``path`` overrides the raw file (QM8 CSV)."""
    from matdiscovery import datasets
    from matdiscovery.hessian.graphs import crystal_graph, molecule_graph

    if name not in DATASET_TARGETS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(DATASET_TARGETS)}")
    targets = tuple(targets or DATASET_TARGETS[name])
    if name == "perov_5":
        # the CSVs are in random order; reading the first rows of each split is a random subsample
        per = None if n_samples is None else (n_samples + 1) // 2
        frame = pd.concat([datasets.load_crystals("perov_5", s, limit=per) for s in ("val", "test")], ignore_index=True)
        frame = _sample(frame, n_samples, seed)
        make = lambda row, y: crystal_graph(row.structure, y)  # noqa: E731
    elif name == "jarvis":
        from matdiscovery.composition import composition_graph

        frame = datasets.load_jarvis_dft(on_error="skip")
        frame = frame[frame["composition"].map(lambda c: max(e.Z for e in c.elements) <= 94)]
        frame = _sample(frame.dropna(subset=[t for t in targets if t != "mbj_bandgap"]), n_samples, seed)
        make = lambda row, y: composition_graph(row.composition, y)  # noqa: E731
    elif name == "qm8":
        frame = _sample(datasets.load_qm8(path, on_error="skip"), n_samples, seed)
        make = lambda row, y: molecule_graph(row.smiles, y)  # noqa: E731
    else:
        frame = _sample(datasets.load_qm9(on_error="skip"), n_samples, seed)
        make = lambda row, y: molecule_graph(row.smiles, y)  # noqa: E731
    missing = [t for t in targets if t not in frame.columns]
    if missing:
        raise ValueError(f"{name} has no target(s) {missing}; available: {list(frame.columns)}")
    graphs = []
    for row in tqdm(frame.itertuples(index=False), total=len(frame), desc=f"{name} graphs", leave=False):
        y = np.array([getattr(row, t) if t.isidentifier() else row[frame.columns.get_loc(t)] for t in targets], dtype=float)
        try:
            graphs.append(make(row, y))
        except ValueError:
            continue  # e.g. an isolated atom without neighbours, an RDKit-unparsable SMILES
    return TaskData(name, targets, *split(graphs, fractions, seed))


def make_model(kind: str, n_targets: int, dim: int = 32, n_layers: int = 3, **kwargs) -> nn.Module:
    """``cgcnn``, ``roost`` or ``mpnn`` with ``n_targets`` outputs."""
    if kind == "cgcnn":
        from matdiscovery.models.cgcnn import CGCNN

        return CGCNN(n_targets, dim=dim, n_layers=n_layers, **kwargs)
    if kind == "roost":
        from matdiscovery.models.roost import Roost

        return Roost(n_targets, dim=dim, n_layers=n_layers, **kwargs)
    if kind == "mpnn":
        from matdiscovery.models.mpnn import MPNN

        return MPNN(n_targets, dim=dim, n_layers=n_layers, **kwargs)
    raise ValueError(f"unknown model kind {kind!r}; choose cgcnn, roost or mpnn")


def mae(model: nn.Module, data: TaskData, split_name: str = "test") -> np.ndarray:
    """Per-task mean absolute error in label units on a split (missing labels skipped)."""
    graphs = getattr(data, split_name)
    pred = predict(model, graphs, target_scale=data.scale)
    y = torch.cat([g.y for g in graphs]).numpy()
    return np.nanmean(np.abs(pred - y), axis=0)


def shared_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Every trainable parameter except the task-specific output layer ``model.head[-1]``.

    With an MSE loss and a linear output layer, the output layer's Hessian block of task ``t`` is
    ``2 E[φφᵀ]`` (``φ`` = shared penultimate features) — the same matrix for every task — and it
    usually holds the top eigenvalue; task curvatures therefore differ only in the shared trunk,
    which is where tasks compete."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Sequential) or not isinstance(head[-1], nn.Linear):
        raise ValueError(f"{type(model).__name__} has no nn.Sequential `head` ending in nn.Linear")
    last = {id(p) for p in head[-1].parameters()}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in last]


def _params(model: nn.Module, scope: str):
    if scope == "shared":
        return shared_parameters(model)
    if scope == "all":
        return None
    raise ValueError(f"scope must be 'shared' or 'all', got {scope!r}")


class CurvatureWeights:
    """Task weights ``w_t ∝ 1 / λ_max,t`` (mean 1, clipped to ``[1/clip, clip]``) from each task's
    top Hessian eigenvalue (over the shared trunk with ``scope="shared"``, see
    :func:`shared_parameters`) on a fixed training batch, refreshed every ``every`` epochs.
    Pass as ``task_weights`` to :func:`matdiscovery.models.training.fit`; ``history`` keeps
    ``(epoch, eigenvalues, weights)``."""

    def __init__(self, batch: Batch, scale, n_tasks: int, every: int = 5, lanczos_steps: int = 10,
                 clip: float = 10.0, seed: int = 0, scope: str = "shared"):
        self.batch, self.scale, self.n_tasks, self.scope = batch, scale, n_tasks, scope
        self.every, self.steps, self.clip, self.seed = every, lanczos_steps, clip, seed
        self.weights = torch.ones(n_tasks)
        self.history: list[tuple[int, np.ndarray, np.ndarray]] = []

    def __call__(self, epoch: int, model: nn.Module) -> torch.Tensor:
        if epoch % self.every == 0:
            lam = np.array([
                lanczos_eigenvalues(HessianOperator(model, task_loss_fn(t, self.scale), [self.batch],
                                                    params=_params(model, self.scope)), k=1, tol=1e-2,
                                    max_steps=self.steps, seed=self.seed + epoch).eigenvalues[0]
                for t in range(self.n_tasks)
            ])
            inv = 1.0 / np.clip(lam, 1e-6, None)
            w = np.clip(inv / inv.mean(), 1 / self.clip, self.clip)
            self.weights = torch.as_tensor(w / w.mean(), dtype=torch.float32)
            self.history.append((epoch, lam, self.weights.numpy().copy()))
            model.train()
        return self.weights


@dataclass
class TrainConfig:
    """Architecture and optimiser shared by STL, MTL and curvature-weighted runs."""

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


def train(data: TaskData, mode: str, config: TrainConfig, seed: int = 0, progress: bool = False):
    """Train ``mode`` ∈ {``mtl``, ``curvature``} on all targets, or ``stl`` on a single-task view.
    Returns ``(model, history, extra)`` (``extra``: the :class:`CurvatureWeights` or ``None``)."""
    kind = DATASET_MODEL[data.name.split(":")[0]]
    torch.manual_seed(seed)
    model = make_model(kind, data.n_tasks, dim=config.dim, n_layers=config.n_layers)
    weights = None
    if mode == "curvature":
        gen = np.random.default_rng(seed)
        idx = gen.choice(len(data.train), size=min(config.curvature_batch, len(data.train)), replace=False)
        weights = CurvatureWeights(Batch.from_data_list([data.train[i] for i in idx]), data.scale, data.n_tasks,
                                   every=config.curvature_every, lanczos_steps=config.curvature_steps, seed=seed,
                                   scope=config.curvature_scope)
    elif mode not in ("mtl", "stl"):
        raise ValueError(f"mode must be 'stl', 'mtl' or 'curvature', got {mode!r}")
    history = fit(model, data.train, data.val, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                  weight_decay=config.weight_decay, seed=seed, loss="mse", task_weights=weights,
                  target_scale=data.scale, progress=progress)
    return model, history, weights


@dataclass
class Curvature:
    """Per-task curvature at one solution: top eigenvalues (descending), Hutchinson trace, SLQ density."""

    eigenvalues: np.ndarray
    trace: TraceResult
    density: SpectralDensity


def task_curvature(
    model: nn.Module, data: TaskData, task: int | None, n_eigs: int = 3, trace_probes: int = 30,
    slq_probes: int = 2, slq_steps: int = 40, batch_size: int = 256, seed: int = 0, max_steps: int = 60,
    scope: str = "shared", trace_deflate: int = 10,
) -> Curvature:
    """Hessian spectrum of task ``task`` (``None``: the summed MTL loss) at ``model``'s weights on
    a seeded batch of ``batch_size`` training graphs (standardised targets), over the shared trunk
    (``scope="shared"``, :func:`shared_parameters`) or all parameters (``"all"``). The trace uses
    Krylov-deflated Hutchinson with ``trace_deflate`` Lanczos steps."""
    idx = np.random.default_rng(seed).choice(len(data.train), size=min(batch_size, len(data.train)), replace=False)
    batch = Batch.from_data_list([data.train[i] for i in idx])
    op = HessianOperator(model, task_loss_fn(task, data.scale), [batch], params=_params(model, scope))
    eig = lanczos_eigenvalues(op, k=n_eigs, tol=1e-4, max_steps=max_steps, seed=seed)
    tr = hutchinson_trace(op, n_probes=trace_probes, block=trace_probes, seed=seed, deflate_steps=trace_deflate)
    dens = slq_density(op, n_probes=slq_probes, n_steps=slq_steps, seed=seed)
    return Curvature(eig.eigenvalues, tr, dens)
