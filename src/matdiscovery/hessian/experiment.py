"""One benchmark end to end: STL vs MTL vs curvature-weighted MTL over seeds, then per-task
Hessian spectra at the MTL solution and at each STL solution (seed ``seeds[0]``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from matdiscovery.hessian.mtl import Curvature, TaskData, TrainConfig, load_task_data, mae, task_curvature, train

#: Key of the summed multi-task loss in :attr:`DatasetResult.spectra` (``("mtl", SUMMED)``).
SUMMED = "summed MTL loss"


@dataclass
class DatasetResult:
    """``errors``: one row per (seed, mode, task) with test ``mae`` in label units;
    ``curvature``: one row per (solution, task) with top eigenvalues and trace (+ CI);
    ``spectra``: :class:`Curvature` by ``(solution, task)`` (plus ``("mtl", SUMMED)``: the summed
    multi-task loss at the MTL solution); ``weights_history``: the remedy's
    ``(epoch, eigenvalues, weights)`` refreshes of the first seed; ``models``: the first seed's
    ``mtl`` and ``curvature`` networks."""

    data: TaskData
    errors: pd.DataFrame
    curvature: pd.DataFrame
    spectra: dict = field(default_factory=dict)
    weights_history: list = field(default_factory=list)
    models: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Per task: mean ± std MAE of each mode, top eigenvalue and trace at MTL and STL solutions."""
        err = self.errors.groupby(["task", "mode"])["mae"].agg(["mean", "std"]).unstack("mode")
        err.columns = [f"mae_{m}" if s == "mean" else f"mae_{m}_std" for s, m in err.columns]
        cur = self.curvature.pivot(index="task", columns="solution", values=["top_eigenvalue", "trace"])
        cur.columns = [f"{v}_{s}" for v, s in cur.columns]
        out = err.join(cur).reindex(list(self.data.targets))
        out["mtl_penalty"] = out["mae_mtl"] / out["mae_stl"] - 1
        return out

    def curvature_ratio(self, solution: str = "mtl") -> float:
        lam = self.curvature.query("solution == @solution")["top_eigenvalue"].to_numpy()
        return float(lam.max() / lam.min())

    def metrics(self) -> dict[str, float]:
        """Flat ``<dataset>.<task>.<metric>`` keys for ``metrics/03_hessian_spectra.json``."""
        s = self.summary()
        out: dict[str, float] = {}
        for task, row in s.iterrows():
            key = f"{self.data.name}.{task}"
            out[f"{key}.mae_stl"] = row["mae_stl"]
            out[f"{key}.mae_mtl"] = row["mae_mtl"]
            out[f"{key}.mae_curvature_weighted"] = row["mae_curvature"]
            out[f"{key}.top_eigenvalue"] = row["top_eigenvalue_mtl"]
            out[f"{key}.trace"] = row["trace_mtl"]
            out[f"{key}.top_eigenvalue_stl"] = row["top_eigenvalue_stl"]
            out[f"{key}.trace_stl"] = row["trace_stl"]
        summed = self.spectra.get(("mtl", SUMMED))
        if summed is not None:
            out[f"{self.data.name}.summed_mtl_loss.top_eigenvalue"] = float(summed.eigenvalues[0])
            out[f"{self.data.name}.summed_mtl_loss.trace"] = summed.trace.estimate
        out[f"{self.data.name}.n_tasks_mtl_worse_than_stl"] = int((s["mae_mtl"] > s["mae_stl"]).sum())
        out[f"{self.data.name}.n_tasks_curvature_weighted_better_than_mtl"] = int((s["mae_curvature"] < s["mae_mtl"]).sum())
        out[f"{self.data.name}.curvature_ratio_mtl"] = self.curvature_ratio("mtl")
        out[f"{self.data.name}.curvature_ratio_stl"] = self.curvature_ratio("stl")
        out[f"{self.data.name}.n_train"] = len(self.data.train)
        out[f"{self.data.name}.n_test"] = len(self.data.test)
        return out


def run_dataset(
    name: str, n_samples: int | None, config: TrainConfig, seeds=(0,), curvature: dict | None = None,
    data_seed: int = 0, progress: bool = True,
) -> DatasetResult:
    """Train STL (one per target), MTL and curvature-weighted MTL for each seed on the same split,
    then measure per-task spectra (``curvature`` = keyword arguments of :func:`task_curvature`)."""
    from tqdm.auto import tqdm

    curvature = dict(curvature or {})
    data = load_task_data(name, n_samples, seed=data_seed)
    rows, cur_rows, spectra, history, result_models = [], [], {}, [], {}
    jobs = [(seed, mode, t) for seed in seeds for mode, t in
            [("mtl", None), ("curvature", None)] + [("stl", i) for i in range(data.n_tasks)]]
    for seed, mode, t in tqdm(jobs, desc=f"{name} training", disable=not progress):
        view = data if t is None else data.task(t)
        model, _, weights = train(view, mode, config, seed=seed)
        errs = mae(model, view)
        names = data.targets if t is None else (data.targets[t],)
        rows += [{"seed": seed, "mode": mode, "task": n, "mae": float(e)} for n, e in zip(names, errs)]
        if seed == seeds[0] and mode != "stl":
            result_models[mode] = model
        if weights is not None and seed == seeds[0]:
            history = weights.history
        if seed != seeds[0] or mode == "curvature":
            continue
        if t is None:  # the summed (equal-weight) multi-task loss at the MTL solution
            spectra[("mtl", SUMMED)] = task_curvature(model, view, None, seed=seed, **curvature)
        for i, task_name in enumerate(names):
            c: Curvature = task_curvature(model, view, i, seed=seed, **curvature)
            solution = "mtl" if t is None else "stl"
            spectra[(solution, task_name)] = c
            cur_rows.append({
                "solution": solution, "task": task_name, "top_eigenvalue": float(c.eigenvalues[0]),
                "eigenvalues": c.eigenvalues, "trace": c.trace.estimate, "trace_ci_low": c.trace.ci_low,
                "trace_ci_high": c.trace.ci_high,
            })
    return DatasetResult(data, pd.DataFrame(rows), pd.DataFrame(cur_rows), spectra, history, result_models)
