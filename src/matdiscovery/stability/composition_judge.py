"""Composition-only formation-energy judge (Roost-style, :class:`matdiscovery.models.Roost`)
trained on JARVIS-DFT, plus the Magpie + random-forest baseline.

Targets are the lowest formation energy (eV/atom, OptB88vdW) of each reduced formula: a
composition model cannot tell polymorphs apart, and stability is decided by the ground state.
Splits are by reduced formula, so no composition appears in two splits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Composition

from matdiscovery.composition import composition_graph, magpie_features
from matdiscovery.models import Roost, fit, predict


def ground_state_table(frame: pd.DataFrame, energy_column: str = "formation_energy_per_atom") -> pd.DataFrame:
    """One row per reduced formula (the lowest ``energy_column``) with ``reduced_formula``.

    Input: a :func:`~matdiscovery.datasets.load_jarvis_dft` frame (``composition`` column).
    """
    if "composition" not in frame.columns or energy_column not in frame.columns:
        raise KeyError(f"need columns 'composition' and {energy_column!r}; got {list(frame.columns)}")
    out = frame.assign(reduced_formula=frame["composition"].map(lambda c: c.reduced_formula))
    out = out[np.isfinite(out[energy_column].to_numpy(float))]
    out = out.sort_values([energy_column, "reduced_formula"], kind="mergesort")
    out = out.drop_duplicates("reduced_formula", keep="first").sort_values("reduced_formula", kind="mergesort")
    out["composition"] = out["reduced_formula"].map(Composition)
    return out.reset_index(drop=True)


def split_by_formula(formulas: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                     seed: int = 0, force_test: Iterable[str] = ()) -> np.ndarray:
    """``"train"``/``"val"``/``"test"`` label per row, random by reduced formula (seeded);
    formulas in ``force_test`` (reduced) always go to test (e.g. the control materials)."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    formulas = [Composition(f).reduced_formula for f in formulas]
    unique = sorted(set(formulas))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    n_train = int(round(fractions[0] * len(unique)))
    n_val = int(round(fractions[1] * len(unique)))
    label = {}
    for rank, idx in enumerate(order):
        label[unique[idx]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    forced = {Composition(f).reduced_formula for f in force_test}
    return np.array(["test" if f in forced else label[f] for f in formulas])


@dataclass
class JudgeConfig:
    """Hyper-parameters of the composition judge (Roost) and its training."""

    dim: int = 64
    n_layers: int = 3
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 256
    seed: int = 0


class CompositionJudge:
    """A trained Roost predicting formation energy (eV/atom) from composition alone.

    ``train_formulas`` (reduced formulas it was trained on) define its domain for the
    out-of-domain analysis (:mod:`matdiscovery.stability.ood`).
    """

    def __init__(self, model: Roost, mean: float, std: float, config: JudgeConfig, train_formulas: Sequence[str]):
        self.model = model.eval()
        self.mean, self.std = float(mean), float(std)
        self.config = config
        self.train_formulas = list(train_formulas)

    @property
    def _scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor([self.mean]), torch.tensor([self.std])

    @staticmethod
    def _graphs(compositions: Sequence[Composition]) -> list:
        return [composition_graph(Composition(c)) for c in compositions]

    def predict(self, compositions: Sequence[Composition]) -> np.ndarray:
        """Formation energy per atom (eV/atom) of each composition."""
        if len(compositions) == 0:
            return np.empty(0)
        return predict(self.model, self._graphs(compositions), batch_size=1024, target_scale=self._scale)[:, 0].astype(np.float64)

    @torch.no_grad()
    def embed(self, compositions: Sequence[Composition], batch_size: int = 2048) -> np.ndarray:
        """``(n, dim)`` Roost material embeddings (the input of the output MLP)."""
        from torch_geometric.loader import DataLoader

        self.model.eval()
        graphs = self._graphs(compositions)
        if not graphs:
            return np.empty((0, self.config.dim), dtype=np.float32)
        return torch.cat([self.model.embed(b) for b in DataLoader(graphs, batch_size=batch_size)]).numpy()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": self.model.state_dict(), "mean": self.mean, "std": self.std,
                    "config": asdict(self.config), "train_formulas": self.train_formulas}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CompositionJudge":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no composition-judge checkpoint at {path}; run `dvc repro train_stability_judge`")
        state = torch.load(path, map_location="cpu", weights_only=False)
        config = JudgeConfig(**state["config"])
        model = Roost(dim=config.dim, n_layers=config.n_layers)
        model.load_state_dict(state["state_dict"])
        return cls(model, state["mean"], state["std"], config, state["train_formulas"])


def train_composition_judge(train: pd.DataFrame, val: pd.DataFrame | None = None, config: JudgeConfig | None = None,
                            energy_column: str = "formation_energy_per_atom", progress: bool = True) -> tuple[CompositionJudge, object]:
    """Train the Roost judge on ``train`` (``composition``, ``energy_column`` in eV/atom), keeping
    the best epoch on ``val``. Returns ``(judge, TrainHistory)``."""
    config = config or JudgeConfig()
    if len(train) == 0:
        raise ValueError("empty training set")
    y = train[energy_column].to_numpy(float)
    mean, std = float(y.mean()), float(y.std() or 1.0)
    torch.manual_seed(config.seed)
    model = Roost(dim=config.dim, n_layers=config.n_layers)
    tr = [composition_graph(c, [e]) for c, e in zip(train["composition"], y)]
    va = None
    if val is not None and len(val):
        va = [composition_graph(c, [e]) for c, e in zip(val["composition"], val[energy_column].to_numpy(float))]
    history = fit(model, tr, va, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, seed=config.seed,
                  loss="l1", target_scale=(torch.tensor([mean]), torch.tensor([std])), progress=progress)
    formulas = [Composition(c).reduced_formula for c in train["composition"]]
    return CompositionJudge(model, mean, std, config, formulas), history


def magpie_rf_baseline(train_compositions: Sequence[Composition], y_train: Sequence[float],
                       test_compositions: Sequence[Composition], n_estimators: int = 100, seed: int = 0,
                       n_jobs: int = 1) -> np.ndarray:
    """Magpie statistics + random forest (Ward et al. 2016 style): predictions (eV/atom) on test."""
    from sklearn.ensemble import RandomForestRegressor

    rf = RandomForestRegressor(n_estimators=n_estimators, max_features=0.33, min_samples_leaf=1,
                               random_state=seed, n_jobs=n_jobs)
    rf.fit(magpie_features(list(train_compositions)), np.asarray(y_train, dtype=float))
    return rf.predict(magpie_features(list(test_compositions)))
