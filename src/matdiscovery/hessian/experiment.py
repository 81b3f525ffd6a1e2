"""The MTL-vs-STL study end to end: per (data set, seed) jobs that train every method
(:func:`~matdiscovery.hessian.multitask.train_seed`) and measure curvature at the solutions,
run in parallel worker processes; :class:`DatasetResult` holds one data set's seeds and turns
them into paired statistics, verdicts and a metrics dict; :class:`StudyResult` adds the
PyHessian comparison.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
import pandas as pd
import torch
from scipy import stats

from matdiscovery.hessian.density import slq_density
from matdiscovery.hessian.eigen import lanczos_eigenvalues
from matdiscovery.hessian.mtl import TaskData, shared_parameters
from matdiscovery.hessian.multitask import MTL_METHODS, SeedRun, TrainConfig, train_seed
from matdiscovery.hessian.operator import HessianOperator, task_loss_fn
from matdiscovery.hessian.stats import dataset_verdict, mean_ci, paired_difference, relative_difference

#: What the paper (arXiv:2208.01684) claims, per data set (qualitative; its numbers are not public here).
PAPER_CLAIMS = {
    "qm8": "MTL worse than STL on QM8",
    "jarvis": "MTL worse than STL on Materials Project (JARVIS-DFT is our stand-in)",
    "perov_5": "(not in the paper)",
    "qm9": "(not in the paper; the paper uses QM8)",
}
#: The paper's direction as a verdict (``paper_verdict`` beside ours in the metrics).
PAPER_VERDICT = {"qm8": "worse", "jarvis": "worse"}


@dataclass
class CurvatureConfig:
    """Per-seed curvature measurements: ``n_batches`` seeded batches of ``batch_size`` training
    graphs; top eigenvalue (largest algebraic, Lanczos ≤ ``max_steps``, ``tol``) of each task
    loss over the shared trunk at the MTL solution and at that task's STL solution; SLQ
    (``slq_deflate`` deflation steps, then ``slq_probes`` × ``slq_steps``) for the fraction of negative curvature; task-gradient cosines.
    ``full_dataset``: also the top eigenvalue of the summed loss over the whole training set
    (streamed batches, label-count weighted) for the first seed."""

    n_batches: int = 3
    batch_size: int = 128
    max_steps: int = 20
    tol: float = 1e-3
    slq_probes: int = 1
    slq_steps: int = 20
    slq_deflate: int = 10
    full_dataset: bool = False


def hessian_batches(data: TaskData, n: int, size: int, seed: int):
    """``n`` disjoint seeded batches of ``size`` training graphs."""
    order = np.random.default_rng(seed).permutation(len(data.train_idx))
    if n * size > len(order):
        raise ValueError(f"{n} Hessian batches of {size} graphs exceed {len(order)} training graphs")
    return [data.batch("train", order[i * size:(i + 1) * size]) for i in range(n)]


def gradient_cosines(model, data: TaskData, batch) -> np.ndarray:
    """``(T, T)`` cosine similarities of the task-loss gradients over the shared trunk."""
    params = shared_parameters(model)
    grads = []
    for t in range(data.n_tasks):
        g = torch.autograd.grad(task_loss_fn(t, data.transform)(model, batch), params, allow_unused=True)
        grads.append(torch.cat([(torch.zeros_like(p) if gi is None else gi).reshape(-1) for gi, p in zip(g, params)]))
    G = torch.stack(grads)
    G = G / G.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return (G @ G.T).numpy()


@dataclass
class SeedOutcome:
    """What one (data set, seed) job sends back (small, picklable)."""

    errors: pd.DataFrame
    curvature: pd.DataFrame
    negative: pd.DataFrame
    cosines: np.ndarray
    weights_history: list
    density: dict
    full_dataset: dict
    seconds: float
    mtl_model: object = None


def seed_curvature(run: SeedRun, data: TaskData, cfg: CurvatureConfig, data_seed: int) -> dict:
    """Curvature at one seed's solutions (see :class:`CurvatureConfig`)."""
    batches = hessian_batches(data, cfg.n_batches, cfg.batch_size, data_seed)
    mtl = run.model("mtl")
    rows, neg, dens = [], [], {}
    for t, task in enumerate(data.targets):
        for solution, model in (("mtl", mtl), ("stl", run.model("stl", t))):
            for b, batch in enumerate(batches):
                op = HessianOperator(model, task_loss_fn(t, data.transform), [batch], params=shared_parameters(model))
                eig = lanczos_eigenvalues(op, k=1, tol=cfg.tol, max_steps=cfg.max_steps, seed=run.seed * 100 + b,
                                          which="LA", on_unconverged="ignore")
                rows.append({"seed": run.seed, "solution": solution, "task": task, "batch": b,
                             "top_eigenvalue": float(eig.eigenvalues[0]), "converged": eig.converged,
                             "n_matvecs": eig.n_matvecs})
        op = HessianOperator(mtl, task_loss_fn(t, data.transform), [batches[0]], params=shared_parameters(mtl))
        d = slq_density(op, n_probes=cfg.slq_probes, n_steps=cfg.slq_steps, seed=run.seed, deflate_steps=cfg.slq_deflate)
        neg.append({"seed": run.seed, "task": task,
                    "negative_fraction": float((d.weights * (d.nodes < 0)).sum(axis=1).mean())})
        dens[task] = (d.nodes, d.weights)
    cos = np.mean([gradient_cosines(mtl, data, b) for b in batches], axis=0)
    full = {}
    if cfg.full_dataset:
        ids = np.arange(len(data.train_idx))
        stream = [data.batch("train", ids[i:i + cfg.batch_size]) for i in range(0, len(ids), cfg.batch_size)]
        op = HessianOperator(mtl, task_loss_fn(None, data.transform), stream, params=shared_parameters(mtl))
        eig = lanczos_eigenvalues(op, k=1, tol=cfg.tol, max_steps=cfg.max_steps, seed=run.seed, on_unconverged="ignore")
        single = HessianOperator(mtl, task_loss_fn(None, data.transform), [batches[0]], params=shared_parameters(mtl))
        one = lanczos_eigenvalues(single, k=1, tol=cfg.tol, max_steps=cfg.max_steps, seed=run.seed, on_unconverged="ignore")
        full = {"top_eigenvalue": float(eig.eigenvalues[0]), "n_batches": len(stream), "n_matvecs": eig.n_matvecs,
                "one_batch_top_eigenvalue": float(one.eigenvalues[0])}
    return {"curvature": pd.DataFrame(rows), "negative": pd.DataFrame(neg), "cosines": cos, "density": dens,
            "full_dataset": full}


def run_seed(data: TaskData, config: TrainConfig, seed: int, curvature: CurvatureConfig, data_seed: int = 0,
             full_dataset: bool = False) -> SeedOutcome:
    """One job: train every method for ``seed``, then measure curvature at its solutions."""
    import time

    t0 = time.perf_counter()
    run = train_seed(data, config, seed)
    cfg = CurvatureConfig(**{**curvature.__dict__, "full_dataset": curvature.full_dataset and full_dataset})
    c = seed_curvature(run, data, cfg, data_seed)
    return SeedOutcome(run.errors(data), c["curvature"], c["negative"], c["cosines"], run.curvature_history,
                       c["density"], c["full_dataset"], time.perf_counter() - t0, run.model("mtl"))


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def run_jobs(jobs: list[tuple], n_jobs: int, followups: dict | None = None, progress: bool = True) -> list:
    """Run ``(function, *args)`` jobs in ``n_jobs`` single-threaded worker processes (in this
    process when ``n_jobs == 1``); results in job order. ``followups[i]`` maps job ``i``'s result
    to a new job, run next (ahead of the queue) and appended to the results."""
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, wait

    from matdiscovery.progress import progress_bar

    if n_jobs < 1:
        raise ValueError(f"n_jobs must be ≥ 1, got {n_jobs}")
    followups = dict(followups or {})
    pending = deque(enumerate(jobs))
    results: dict[int, object] = {}
    extra = iter(range(len(jobs), len(jobs) + len(followups)))
    bar = progress_bar(total=len(jobs) + len(followups), desc="jobs", progress=progress)

    def finished(i: int, result) -> None:
        results[i] = result
        bar.update()
        if i in followups:
            pending.appendleft((next(extra), followups.pop(i)(result)))

    if n_jobs == 1:
        while pending:
            i, (fn, *args) = pending.popleft()
            finished(i, fn(*args))
    else:
        # spawn: fresh interpreters (no forked OpenMP/torch thread state)
        with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                 initargs=(1,)) as pool:
            running: dict = {}
            while pending or running:
                while pending and len(running) < n_jobs:
                    i, (fn, *args) = pending.popleft()
                    running[pool.submit(fn, *args)] = i
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    finished(running.pop(f), f.result())
    bar.close()
    return [results[i] for i in sorted(results)]


@dataclass
class DatasetResult:
    """One data set over seeds: ``errors`` (seed, method, task, mae, n_test, best_epoch),
    ``curvature`` (seed, solution, task, batch, top_eigenvalue), ``negative`` (seed, task,
    negative_fraction), per-seed gradient ``cosines`` (T×T), the curvature remedy's weight
    history and SLQ densities of the first seed."""

    name: str
    targets: tuple[str, ...]
    label_counts: pd.DataFrame
    outcomes: list[SeedOutcome]
    errors: pd.DataFrame = field(init=False)
    curvature: pd.DataFrame = field(init=False)
    negative: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.errors = pd.concat([o.errors for o in self.outcomes], ignore_index=True)
        self.curvature = pd.concat([o.curvature for o in self.outcomes], ignore_index=True)
        self.negative = pd.concat([o.negative for o in self.outcomes], ignore_index=True)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.errors["seed"].unique())

    @property
    def methods(self) -> list[str]:
        return [m for m in ("stl", *MTL_METHODS) if m in set(self.errors["method"])]

    def mae_table(self, method: str) -> pd.DataFrame:
        """``(seeds × tasks)`` test MAE of one method."""
        sub = self.errors[self.errors["method"] == method]
        if sub.empty:
            raise KeyError(f"{self.name}: no results for method {method!r}; have {self.methods}")
        return sub.pivot(index="seed", columns="task", values="mae").reindex(columns=list(self.targets))

    def compare(self, method: str, reference: str = "stl", confidence: float = 0.95) -> pd.DataFrame:
        """Per task: both methods' mean MAE with CIs, the paired difference (CI, p) and the verdict."""
        a, b = self.mae_table(method), self.mae_table(reference)
        rows = {}
        for task in self.targets:
            d = paired_difference(a[task].to_numpy(), b[task].to_numpy(), confidence)
            ma, la, ha = mean_ci(a[task].to_numpy(), confidence)
            mb, lb, hb = mean_ci(b[task].to_numpy(), confidence)
            rel = relative_difference(a[task].to_numpy(), b[task].to_numpy())
            rows[task] = {f"mae_{method}": ma, f"mae_{method}_ci_low": la, f"mae_{method}_ci_high": ha,
                          f"mae_{reference}": mb, f"mae_{reference}_ci_low": lb, f"mae_{reference}_ci_high": hb,
                          "diff": d.mean, "diff_ci_low": d.ci_low, "diff_ci_high": d.ci_high, "p_value": d.p_value,
                          "relative_diff": float(rel.mean()), "verdict": d.verdict, "n_seeds": d.n}
        return pd.DataFrame(rows).T.reindex(list(self.targets))

    def verdicts(self, reference: str = "stl") -> pd.DataFrame:
        """``(tasks × methods)`` verdicts of every multi-task method against ``reference``."""
        return pd.DataFrame({m: self.compare(m, reference)["verdict"] for m in self.methods if m != reference})

    def dataset_verdicts(self, reference: str = "stl") -> dict[str, str]:
        return {m: dataset_verdict(v) for m, v in self.verdicts(reference).items()}

    def curvature_summary(self) -> pd.DataFrame:
        """Per (solution, task): top eigenvalue mean over seeds (each seed averaged over its
        batches), its seed SD, and the mean within-seed SD over batches."""
        c = self.curvature
        per_seed = c.groupby(["solution", "task", "seed"])["top_eigenvalue"].agg(["mean", "std"]).reset_index()
        out = per_seed.groupby(["solution", "task"]).agg(top_eigenvalue=("mean", "mean"),
                                                         seed_sd=("mean", "std"), batch_sd=("std", "mean"))
        return out

    def grad_cosine(self) -> pd.Series:
        """Per task: mean cosine of its gradient with the other tasks' (shared trunk, MTL
        solution), averaged over batches and seeds."""
        C = np.mean([o.cosines for o in self.outcomes], axis=0)
        T = len(self.targets)
        return pd.Series([(C[t].sum() - C[t, t]) / (T - 1) for t in range(T)], index=list(self.targets))

    def cosine_matrix(self) -> pd.DataFrame:
        return pd.DataFrame(np.mean([o.cosines for o in self.outcomes], axis=0), index=list(self.targets),
                            columns=list(self.targets))

    def curvature_penalty(self) -> dict[str, float]:
        """Within this data set, Spearman ρ between each (task, seed)'s top eigenvalue at the MTL
        solution (mean over batches) and its MTL penalty ``MAE_MTL / MAE_STL − 1``."""
        lam = (self.curvature[self.curvature["solution"] == "mtl"].groupby(["seed", "task"])["top_eigenvalue"]
               .mean().unstack("task").reindex(columns=list(self.targets)))
        pen = self.mae_table("mtl") / self.mae_table("stl") - 1
        x, y = lam.loc[pen.index].to_numpy().ravel(), pen.to_numpy().ravel()
        rho = stats.spearmanr(x, y)
        return {"spearman": float(rho.statistic), "p_value": float(rho.pvalue), "n": int(len(x))}

    def metrics(self) -> dict:
        """Nested metrics: per task MAEs with CIs, paired differences and verdicts for MTL and
        every remedy (vs STL and vs MTL), curvature with its seed spread, gradient cosine."""
        out: dict = {"n_seeds": len(self.seeds), "labelled_rows": self.label_counts.to_dict(),
                     "job_seconds_median": float(np.median([o.seconds for o in self.outcomes]))}
        cur = self.curvature_summary()
        neg = self.negative.groupby("task")["negative_fraction"].mean()
        cos = self.grad_cosine()
        comps = {m: self.compare(m, "stl") for m in self.methods if m != "stl"}
        vs_mtl = {m: self.compare(m, "mtl") for m in self.methods if m not in ("stl", "mtl")}
        for task in self.targets:
            row = comps["mtl"].loc[task]
            d = {"mae_stl": row["mae_stl"], "mae_stl_ci_low": row["mae_stl_ci_low"], "mae_stl_ci_high": row["mae_stl_ci_high"]}
            for m, comp in comps.items():
                r = comp.loc[task]
                d[f"mae_{m}"] = r[f"mae_{m}"]
                d[f"mae_{m}_ci_low"], d[f"mae_{m}_ci_high"] = r[f"mae_{m}_ci_low"], r[f"mae_{m}_ci_high"]
                d[f"{m}_minus_stl"] = r["diff"]
                d[f"{m}_minus_stl_ci_low"], d[f"{m}_minus_stl_ci_high"] = r["diff_ci_low"], r["diff_ci_high"]
                d[f"{m}_minus_stl_p"] = r["p_value"]
                d["verdict" if m == "mtl" else f"{m}_verdict"] = r["verdict"]
            for m, comp in vs_mtl.items():
                r = comp.loc[task]
                d[f"{m}_minus_mtl_ci_low"], d[f"{m}_minus_mtl_ci_high"] = r["diff_ci_low"], r["diff_ci_high"]
                d[f"{m}_vs_mtl_verdict"] = r["verdict"]
            d["top_eigenvalue"] = cur.loc[("mtl", task), "top_eigenvalue"]
            d["top_eigenvalue_seed_sd"] = cur.loc[("mtl", task), "seed_sd"]
            d["top_eigenvalue_batch_sd"] = cur.loc[("mtl", task), "batch_sd"]
            d["top_eigenvalue_stl"] = cur.loc[("stl", task), "top_eigenvalue"]
            d["top_eigenvalue_stl_seed_sd"] = cur.loc[("stl", task), "seed_sd"]
            d["negative_curvature_fraction"] = neg[task]
            d["grad_cosine"] = cos[task]
            out[task] = d
        out["verdict"] = self.dataset_verdicts()["mtl"]
        if self.name in PAPER_VERDICT:
            out["paper_verdict"] = PAPER_VERDICT[self.name]
        for m in self.methods:
            if m not in ("stl", "mtl"):
                out[f"{m}_verdict"] = self.dataset_verdicts()[m]
        out["curvature_vs_penalty"] = self.curvature_penalty()
        full = self.outcomes[0].full_dataset
        if full:
            out["full_training_set_top_eigenvalue"] = full["top_eigenvalue"]
        return out


def study_jobs(datasets: dict[str, TaskData], config: dict[str, TrainConfig], seeds, curvature: CurvatureConfig,
               data_seed: int = 0) -> list[tuple]:
    """Jobs for :func:`run_jobs`: one per (data set, seed), the costliest data sets first."""
    jobs = []
    for name, data in sorted(datasets.items(), key=lambda kv: -len(kv[1].train_idx) * kv[1].n_tasks):
        jobs += [(run_seed, data, config[name], s, curvature, data_seed, s == seeds[0]) for s in seeds]
    return jobs


def collect(datasets: dict[str, TaskData], outcomes: list[SeedOutcome], seeds) -> dict[str, DatasetResult]:
    """Group job outcomes (in :func:`study_jobs` order) into one :class:`DatasetResult` per data set."""
    out, i = {}, 0
    for name, data in sorted(datasets.items(), key=lambda kv: -len(kv[1].train_idx) * kv[1].n_tasks):
        out[name] = DatasetResult(name, data.targets, data.label_counts(), outcomes[i:i + len(seeds)])
        i += len(seeds)
    return {name: out[name] for name in datasets}



def run_comparison(model, data: TaskData, batch_size: int, task: int, seed: int, kwargs: dict):
    """The PyHessian comparison (:func:`~matdiscovery.hessian.compare.compare_with_pyhessian`) on
    ``model`` for task ``task``'s loss on a seeded batch of training graphs, shared trunk."""
    from matdiscovery.hessian.compare import compare_with_pyhessian
    from matdiscovery.hessian.operator import masked_task_losses

    idx = np.random.default_rng(seed).choice(len(data.train_idx), size=min(batch_size, len(data.train_idx)),
                                             replace=False)
    batch = data.batch("train", idx)
    y = data.transform.raw_to_unit(batch.y)
    return compare_with_pyhessian(model, batch, lambda out, yy: masked_task_losses(out, yy)[task], y,
                                  params=shared_parameters(model), **kwargs)


@dataclass
class StudyResult:
    """Every data set's :class:`DatasetResult` and the PyHessian comparison."""

    datasets: dict[str, DatasetResult]
    comparison: object | None
    comparison_on: str = ""

    @property
    def molecules_dataset(self) -> str | None:
        return next((n for n in self.datasets if n in ("qm8", "qm9")), None)

    def headline(self) -> pd.DataFrame:
        """Per data set and task: the MTL-vs-STL verdict with its CI beside the paper's claim, and
        the verdict of each remedy against STL."""
        rows = []
        for name, r in self.datasets.items():
            comp = {m: r.compare(m, "stl") for m in r.methods if m != "stl"}
            for task in r.targets:
                c = comp["mtl"].loc[task]
                row = {"dataset": name, "task": task, "paper (arXiv:2208.01684)": PAPER_CLAIMS.get(name, ""),
                       "MTL − STL MAE [95% CI]": f"{c['diff']:+.3g} [{c['diff_ci_low']:+.3g}, {c['diff_ci_high']:+.3g}]",
                       "MTL/STL − 1": f"{100 * c['relative_diff']:+.1f} %", "p (paired t)": f"{c['p_value']:.2g}",
                       "ours: MTL vs STL": c["verdict"]}
                for m, cm in comp.items():
                    if m != "mtl":
                        row[f"{m} vs STL"] = cm.loc[task, "verdict"]
                rows.append(row)
        return pd.DataFrame(rows).set_index(["dataset", "task"])

    def verdict_summary(self) -> list[str]:
        """One sentence per data set and method, built from the verdicts only (what they support)."""
        lines = []
        for name, r in self.datasets.items():
            v = r.verdicts()
            for m in v.columns:
                worse = [t for t in r.targets if v.loc[t, m] == "worse"]
                better = [t for t in r.targets if v.loc[t, m] == "better"]
                lines.append(f"{name}: {m} vs STL is {r.dataset_verdicts()[m]} — worse on {len(worse)} of "
                             f"{len(r.targets)} targets ({', '.join(worse) or 'none'}), better on {len(better)} "
                             f"({', '.join(better) or 'none'}), indistinguishable on the rest.")
        return lines

    def metrics(self) -> dict:
        out: dict = {name: r.metrics() for name, r in self.datasets.items()}
        out["molecules_dataset"] = self.molecules_dataset
        if self.comparison is not None:
            out.update(self.comparison.metrics())
            out["pyhessian_comparison_dataset"] = self.comparison_on
        return out


def run_study(datasets: dict[str, TaskData], config: dict[str, TrainConfig], seeds, curvature: CurvatureConfig, *,
              data_seed: int = 0, n_jobs: int = 2, comparison: dict | None = None, progress: bool = True) -> StudyResult:
    """Every (data set, seed) job in parallel; with ``comparison`` (``dataset``, ``batch_size``,
    ``task`` and keyword arguments of :func:`~matdiscovery.hessian.compare.compare_with_pyhessian`
    under ``kwargs``) the PyHessian comparison runs on that data set's first-seed MTL network as
    soon as it is trained."""
    seeds = list(seeds)
    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise ValueError(f"need at least two distinct seeds for paired statistics, got {seeds}")
    jobs = study_jobs(datasets, config, seeds, curvature, data_seed)
    followups = {}
    if comparison is not None:
        name = comparison["dataset"]
        if name not in datasets:
            raise ValueError(f"comparison dataset {name!r} is not among the data sets {sorted(datasets)}")
        first = next(i for i, job in enumerate(jobs) if job[1] is datasets[name] and job[3] == seeds[0])
        data = datasets[name]
        followups[first] = lambda outcome: (run_comparison, outcome.mtl_model, data, comparison["batch_size"],
                                            comparison["task"], data_seed, comparison["kwargs"])
    results = run_jobs(jobs, n_jobs, followups, progress)
    comp = results[len(jobs)] if comparison is not None else None
    return StudyResult(collect(datasets, results[:len(jobs)], seeds), comp, comparison["dataset"] if comparison else "")


def ci_half_widths(result: StudyResult) -> pd.DataFrame:
    """Per data set and task: half-width of the 95 % CI of MTL − STL (label units and % of the
    STL MAE) and labelled test rows: the resolution the chosen sizes achieve."""
    rows = []
    for name, r in result.datasets.items():
        c = r.compare("mtl")
        for task in r.targets:
            half = (c.loc[task, "diff_ci_high"] - c.loc[task, "diff_ci_low"]) / 2
            rows.append({"dataset": name, "task": task, "ci_half_width": half,
                         "ci_half_width_pct_of_stl": 100 * half / c.loc[task, "mae_stl"],
                         "n_test_labelled": int(r.label_counts.loc[task, "test"]), "n_seeds": int(c.loc[task, "n_seeds"])})
    return pd.DataFrame(rows).set_index(["dataset", "task"])


def study_inputs(p) -> tuple[dict[str, TaskData], dict[str, TrainConfig], CurvatureConfig, dict]:
    """Data, per-data-set training configs, curvature config and comparison settings from the
    notebook's :class:`~matdiscovery.params.hessian.HessianParams`."""
    from matdiscovery.hessian.mtl import load_task_data

    data = {name: load_task_data(name, p.size(name), seed=p.seed) for name in p.datasets}
    configs = {name: TrainConfig(dim=p.dim, n_layers=p.n_layers, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                                 weight_decay=p.weight_decay, curvature_every=p.curvature_every,
                                 curvature_batch=p.curvature_batch, curvature_steps=p.curvature_steps,
                                 methods=tuple(p.methods),
                                 model_kwargs={"n_heads": p.roost_heads} if name == "jarvis" else {})
               for name in p.datasets}
    curvature = CurvatureConfig(n_batches=p.hessian_batches, batch_size=p.hessian_batch, max_steps=p.lanczos_max_steps,
                                slq_probes=p.slq_probes, slq_steps=p.slq_steps, slq_deflate=p.slq_deflate,
                                full_dataset=p.full_dataset_hessian)
    comparison = {"dataset": p.bench_dataset, "batch_size": p.bench_batch, "task": 0,
                  "kwargs": {"repeats": p.bench_repeats, "top_k": p.bench_top_k, "trace_probes": p.bench_trace_probes,
                             "density_steps": p.bench_density_steps, "density_probes": p.bench_density_probes}}
    return data, configs, curvature, comparison
