"""Inverse design through the generator's input: minimise a predicted property of the output.

The search space is the continuous generator input ``x = (z, e)``: noise ``z`` and the three
z-scored element-feature vectors ``e`` (space group fixed per run). The network sees ``x`` as
is; the crystal's species are the nearest elements (Euclidean, in the same feature space) among
``candidates`` (distinct per basis position), as an optimiser over PGCGM's continuous input
must decode them. Objective (lower is better): the property model's prediction for the
post-processed crystal (e.g. formation energy, eV/atom) plus ``invalid_penalty`` when the
crystal is structurally invalid or lost an element in merging.

Two optimisers, same evaluation budget:

- :func:`evolution_strategy` (gradient-free): a (μ/μ, λ) evolution strategy with a 1/5th-success
  step-size rule;
- :func:`finite_difference_descent` ("gradients where available"): autograd gives no gradient
  (the objective is piecewise constant in ``x``: the composition changes only at merging or
  nearest-element boundaries), so it descends along central finite-difference estimates over
  random directions (Adam). Flat plateaus give zero estimates, boundaries give huge ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from tqdm.auto import tqdm

from matdiscovery.composition import ELEMENT_FEATURE_DIM, element_features
from matdiscovery.generator.model import N_BASIS, CrystalGAN
from matdiscovery.generator.smoothness import InputPoint, PropertyFn, decode


@dataclass
class Objective:
    """Objective of inverse design for one space group (see module docstring)."""

    model: CrystalGAN
    property_fn: PropertyFn
    spacegroup: int
    candidates: Sequence[str]
    invalid_penalty: float = 1.0

    def __post_init__(self) -> None:
        self.candidates = list(dict.fromkeys(str(c) for c in self.candidates))
        if len(self.candidates) < N_BASIS:
            raise ValueError(f"need at least {N_BASIS} candidate elements, got {self.candidates}")
        self.table = element_features(self.candidates).astype(np.float32)     # (n_cand, 23)
        self.sg_index = self.model.sg_index(self.spacegroup)
        self.n_eval = 0

    @property
    def dim(self) -> int:
        return self.model.noise_dim + N_BASIS * ELEMENT_FEATURE_DIM

    def nearest_elements(self, e: np.ndarray) -> tuple[str, str, str]:
        """Distinct nearest candidates of the three element-feature vectors (greedy, closest first)."""
        d = np.linalg.norm(e.reshape(N_BASIS, 1, -1) - self.table[None], axis=-1)   # (3, n_cand)
        chosen: dict[int, int] = {}
        for flat in np.argsort(d, axis=None):
            i, j = divmod(int(flat), d.shape[1])
            if i not in chosen and j not in chosen.values():
                chosen[i] = j
            if len(chosen) == N_BASIS:
                break
        return tuple(self.candidates[chosen[i]] for i in range(N_BASIS))

    def points(self, xs: np.ndarray) -> list[InputPoint]:
        onehot = np.zeros(self.model.n_sg, dtype=np.float32)
        onehot[self.sg_index] = 1.0
        out = []
        for x in np.atleast_2d(xs):
            z, e = x[: self.model.noise_dim], x[self.model.noise_dim:]
            out.append(InputPoint(z.astype(np.float32), np.concatenate([e, onehot]).astype(np.float32),
                                  self.nearest_elements(e), self.spacegroup))
        return out

    def __call__(self, xs: np.ndarray) -> tuple[np.ndarray, list]:
        """Objective values of a batch of inputs ``(n, dim)`` and the decoded crystals."""
        gens = decode(self.model, self.points(xs), check_symmetry=False)
        y = np.asarray(self.property_fn([g.structure for g in gens]), dtype=float)
        bad = np.array([not (g.flags["structural_valid"] and g.flags["all_elements_kept"]) for g in gens])
        self.n_eval += len(gens)
        return y + self.invalid_penalty * bad, gens

    def start(self, elements: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        """A start input: seeded noise and the feature vectors of ``elements``."""
        z = rng.standard_normal(self.model.noise_dim).astype(np.float32)
        from matdiscovery.generator.data import canonical_order

        e = element_features(canonical_order(list(elements))).reshape(-1).astype(np.float32)
        return np.concatenate([z, e])


def evolution_strategy(obj: Objective, x0: np.ndarray, iterations: int = 30, popsize: int = 16, sigma: float = 0.3,
                       seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """(μ/μ, λ)-ES (μ = λ/4, recombination of the best μ; σ × 1.2 on improvement of the best,
    × 0.85 otherwise). One row per iteration: best-so-far objective, evaluations, σ, formula."""
    rng = np.random.default_rng(seed)
    mean = np.asarray(x0, dtype=np.float32)
    (best_y,), (g0,) = obj(mean[None])
    best_formula = g0.structure.composition.reduced_formula
    rows = [{"iteration": 0, "best": float(best_y), "evaluations": 1, "sigma": sigma, "formula": best_formula}]
    mu = max(1, popsize // 4)
    evals = 1
    for it in tqdm(range(1, iterations + 1), desc="ES", disable=not progress):
        xs = mean[None] + sigma * rng.standard_normal((popsize, len(mean))).astype(np.float32)
        y, gens = obj(xs)
        evals += popsize
        order = np.argsort(y)
        mean = xs[order[:mu]].mean(0)
        if y[order[0]] < best_y:
            best_y, best_formula = float(y[order[0]]), gens[order[0]].structure.composition.reduced_formula
            sigma *= 1.2
        else:
            sigma *= 0.85
        rows.append({"iteration": it, "best": best_y, "evaluations": evals, "sigma": sigma, "formula": best_formula})
    return pd.DataFrame(rows)


def finite_difference_descent(obj: Objective, x0: np.ndarray, iterations: int = 30, n_directions: int = 8,
                              h: float = 0.05, lr: float = 0.1, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Adam on central finite-difference gradient estimates along ``n_directions`` random unit
    directions (2 evaluations each, so the budget per iteration is ``2·n_directions``; plus the
    current point). Rows: best-so-far and current objective, evaluations, the gradient-estimate
    norm and the fraction of directional differences that were exactly zero (plateaus)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x0, dtype=np.float64)
    m, v = np.zeros_like(x), np.zeros_like(x)
    (y0,), (g0,) = obj(x[None])
    best_y, best_formula = float(y0), g0.structure.composition.reduced_formula
    rows = [{"iteration": 0, "best": best_y, "current": best_y, "evaluations": 1, "grad_norm": np.nan,
             "zero_fraction": np.nan, "formula": best_formula}]
    evals = 1
    for it in tqdm(range(1, iterations + 1), desc="FD", disable=not progress):
        u = rng.standard_normal((n_directions, len(x)))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        xs = np.concatenate([x[None] + h * u, x[None] - h * u, x[None]]).astype(np.float32)
        y, gens = obj(xs)
        evals += len(xs)
        diff = (y[:n_directions] - y[n_directions: 2 * n_directions]) / (2 * h)
        grad = (diff[:, None] * u).sum(0) * len(x) / n_directions
        k = int(np.argmin(y))
        if y[k] < best_y:
            best_y, best_formula = float(y[k]), gens[k].structure.composition.reduced_formula
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        x = x - lr * (m / (1 - 0.9**it)) / (np.sqrt(v / (1 - 0.999**it)) + 1e-8)
        rows.append({"iteration": it, "best": best_y, "current": float(y[-1]), "evaluations": evals,
                     "grad_norm": float(np.linalg.norm(grad)), "zero_fraction": float(np.mean(diff == 0)),
                     "formula": best_formula})
    return pd.DataFrame(rows)


def run_inverse_design(model: CrystalGAN, property_fn: PropertyFn, starts: Sequence[tuple[Sequence[str], int]],
                       iterations: int = 30, popsize: int = 16, sigma: float = 0.3, fd_h: float = 0.05,
                       fd_lr: float = 0.1, seed: int = 0, candidates: Sequence[str] | None = None,
                       progress: bool = True) -> pd.DataFrame:
    """Both optimisers from each (elements, space group) start, seeded ``seed + i``; equal
    budgets (``popsize`` evaluations per iteration; the FD method uses ``popsize // 2``
    directions). ``candidates`` default to the elements of the model's training records."""
    if candidates is None:
        candidates = sorted({e for r in model.training_records for e in r.elements})
    frames = []
    for i, (elements, sg) in enumerate(tqdm(starts, desc="inverse design", disable=not progress)):
        obj = Objective(model, property_fn, sg, candidates)
        x0 = obj.start(elements, np.random.default_rng(seed + i))
        es = evolution_strategy(obj, x0, iterations, popsize, sigma, seed + i)
        fd = finite_difference_descent(obj, x0, iterations, max(1, popsize // 2), fd_h, fd_lr, seed + i)
        for name, f in (("evolution strategy", es), ("finite-difference Adam", fd)):
            frames.append(f.assign(method=name, run=i, start=" ".join(elements), spacegroup=sg))
    return pd.concat(frames, ignore_index=True)


def judge_property(judge) -> PropertyFn:
    """A property function (eV/atom) from a composition judge (anything with
    ``predict(compositions) -> array``), cached by reduced formula (the judge sees composition only)."""
    cache: dict[str, float] = {}

    def fn(structures: list[Structure]) -> np.ndarray:
        formulas = [s.composition.reduced_formula for s in structures]
        new = sorted({f for f in formulas if f not in cache})
        if new:
            from pymatgen.core import Composition

            cache.update(zip(new, np.asarray(judge.predict([Composition(f) for f in new]), dtype=float)))
        return np.array([cache[f] for f in formulas])

    return fn


def load_property_judge(path, fallback_formulas: int = 800, fallback_epochs: int = 3, seed: int = 0):
    """``(judge, label)``: the composition judge checkpoint (``models/stability/composition_judge.pt``,
    stage ``train_stability_judge``) if it loads, else a tiny Roost judge trained here on
    ``fallback_formulas`` JARVIS-DFT ground-state formulas for ``fallback_epochs`` epochs, labelled
    as such (quick runs and tests only)."""
    import warnings
    from pathlib import Path

    from matdiscovery.stability.composition_judge import CompositionJudge, JudgeConfig, ground_state_table, train_composition_judge

    path = Path(path)
    if path.exists():
        return CompositionJudge.load(path), f"composition judge ({path.name})"
    from matdiscovery.datasets import load_jarvis_dft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = ground_state_table(load_jarvis_dft(on_error="skip"))
    table = table.sample(n=min(fallback_formulas, len(table)), random_state=seed)
    judge, _ = train_composition_judge(table, None, JudgeConfig(epochs=fallback_epochs, seed=seed), progress=False)
    return judge, f"FALLBACK tiny judge ({len(table)} formulas, {fallback_epochs} epochs; {path} missing)"
