"""Throughput measurements behind ``benchmarks/bench_chgnet.py``, ``benchmarks/bench_relax.py``,
the ``bench_relax`` stage (``python -m matdiscovery.stability.benchmark``) and notebook 02.

The claim to test is "the screen is at least as fast as the library's *best* single-machine
configuration", not "faster than the library at torch's default threads" (on a busy 2-core
machine the default thread count oversubscribes, which made an earlier 2.6x a threading
artefact). So the baseline is CHGNet's own ``predict_structure(task="e", batch_size=32)`` in
each reasonable configuration:

- ``library_1thread``: this process, 1 torch thread;
- ``library_{N}threads``: this process, N torch threads;
- ``library_{N}processes``: N worker processes (``ProcessPoolExecutor``), 1 thread each, the
  structures split evenly, the model loaded once per worker in the initializer.

Ours is the Dask path of the screen (:func:`~matdiscovery.stability.distributed.map_shards`
over shards scored by a single-process :class:`ChgnetJudge` at 1 thread, one cached per worker).
Start-up (process spawn, model load) is excluded everywhere: each side has a warm-up pass.
Configurations alternate within each repeat, so a change in machine load hits all of them;
medians and spreads (max - min) over the repeats are reported together with the 1-minute load
average at start and end, and the energies of every configuration are compared.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure

from matdiscovery.stability.chgnet_judge import DEFAULT_MODEL, library_default_energy


def benchmark_sets(n: int = 256) -> dict[str, list[Structure]]:
    """Three CPU benchmark sets of ``n`` structures: perov_5 (5-atom cells), the same as
    2×2×1 supercells (20 atoms), and JARVIS electron-phonon crystals (1–40+ atoms)."""
    from matdiscovery.datasets import load_crystals

    perov = list(load_crystals("perov_5", "val", limit=n)["structure"])
    return {
        "perov_5 (5 at)": perov,
        "perov_5 x4 (20 at)": [s.make_supercell([2, 2, 1], in_place=False) for s in perov],
        "jarvis_epc": list(load_crystals("jarvis_epc", "train", limit=n)["structure"]),
    }


def _load_chgnet(model_name: str = DEFAULT_MODEL):
    import contextlib
    import io

    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints on load even with verbose=False
        model = CHGNet.load(model_name=model_name, verbose=False)
    model.eval()
    return model


# ---------------------------------------------------------------- library in N processes
_LIB_MODEL = None
_LIB_BATCH = 32


def _quiet_worker() -> None:
    """A spawned worker does not inherit the caller's warning filters; its raw stderr would end up
    in a notebook report (CHGNet's tensor-to-scalar notice, the cell filter's 1e-13 logm notes)."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", message="logm result may be inaccurate")


def _library_worker_init(model_name: str, batch_size: int, warm: list) -> None:
    """Initializer of a library worker: 1 thread, model loaded once, one warm-up prediction."""
    global _LIB_MODEL, _LIB_BATCH
    _quiet_worker()
    torch.set_num_threads(1)
    _LIB_MODEL, _LIB_BATCH = _load_chgnet(model_name), batch_size
    library_default_energy(_LIB_MODEL, warm, batch_size=batch_size)


def _library_worker_energy(structures: list) -> np.ndarray:
    return library_default_energy(_LIB_MODEL, structures, batch_size=_LIB_BATCH)


def _library_worker_pid(delay: float) -> int:
    time.sleep(delay)
    return os.getpid()


def _split(items: list, n: int) -> list[list]:
    """``items`` in ``n`` consecutive, nearly equal parts (empty parts dropped)."""
    bounds = np.linspace(0, len(items), n + 1).round().astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class _LibraryConfigs:
    """The library's configurations, started (model loaded, worker pool up and warm) once;
    :meth:`run` times one configuration on the structures."""

    def __init__(self, structures: list[Structure], n_processes: int, batch_size: int, model=None):
        self.structures, self.n_processes, self.batch_size = structures, n_processes, batch_size
        self.model = model if model is not None else _load_chgnet()
        warm = structures[: min(len(structures), 4)]
        self.names = ["library_1thread", f"library_{n_processes}threads", f"library_{n_processes}processes"]
        self.pool = ProcessPoolExecutor(n_processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_library_worker_init, initargs=(DEFAULT_MODEL, batch_size, warm))
        pids: set[int] = set()  # wait until every worker has started and run its initializer
        for _ in range(50):
            pids |= set(self.pool.map(_library_worker_pid, [0.2] * n_processes))
            if len(pids) >= n_processes:
                break
        current = torch.get_num_threads()
        try:
            for threads in (1, n_processes):  # warm the in-process paths too
                torch.set_num_threads(threads)
                library_default_energy(self.model, warm, batch_size=batch_size)
        finally:
            torch.set_num_threads(current)

    def run(self, name: str) -> tuple[float, np.ndarray]:
        current = torch.get_num_threads()
        try:
            if name == self.names[2]:
                t = time.perf_counter()
                parts = list(self.pool.map(_library_worker_energy, _split(self.structures, self.n_processes)))
                return time.perf_counter() - t, np.concatenate(parts)
            torch.set_num_threads(1 if name == self.names[0] else self.n_processes)
            t = time.perf_counter()
            e = library_default_energy(self.model, self.structures, batch_size=self.batch_size)
            return time.perf_counter() - t, e
        finally:
            torch.set_num_threads(current)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- ours: Dask shards
_DASK_JUDGE = None


def _dask_judge():
    """The worker process's judge (1 thread, loaded once per process)."""
    global _DASK_JUDGE
    if _DASK_JUDGE is None:
        from matdiscovery.stability.chgnet_judge import ChgnetJudge

        _DASK_JUDGE = ChgnetJudge(threads=1)
    return _DASK_JUDGE


def _dask_warm_up(warm: list) -> int:
    _dask_judge().predict_energy(warm, progress=False)
    return os.getpid()


def chgnet_energy_shard(structures: list) -> pd.DataFrame:
    """Shard function for :func:`~matdiscovery.stability.distributed.map_shards`: CHGNet energy
    per atom (eV/atom) of each structure, by the worker's cached single-process judge."""
    return pd.DataFrame({"energy_per_atom": _dask_judge().predict_energy(list(structures), progress=False)})


class _DaskRunner:
    def __init__(self, structures: list[Structure], client, shard_size: int):
        self.structures, self.client, self.shard_size = structures, client, shard_size
        self.threads = int(sum(client.nthreads().values()))
        client.run(_dask_warm_up, structures[: min(len(structures), 4)])  # every worker: load + warm
        self._tmp = tempfile.TemporaryDirectory(prefix="chgnet-bench-")
        self._runs = 0

    def run(self) -> tuple[float, np.ndarray]:
        from matdiscovery.stability.distributed import map_shards

        self._runs += 1  # a fresh key per run: every shard is computed (and written), none reused
        t = time.perf_counter()
        frame = map_shards(chgnet_energy_shard, self.structures, shard_size=self.shard_size, cache_dir=self._tmp.name,
                           key=f"bench{self._runs}", client=self.client, progress=False)
        return time.perf_counter() - t, frame["energy_per_atom"].to_numpy(np.float64)

    def close(self) -> None:
        self._tmp.cleanup()


# ---------------------------------------------------------------- summaries
def _summary(n: int, times: list[float]) -> dict:
    rates = [n / t for t in times]
    return {"median_per_s": float(np.median(rates)), "spread_per_s": float(max(rates) - min(rates)),
            "per_s": rates, "seconds": list(times)}


def _check(structures: Sequence[Structure], repeats: int, n_processes: int = 1) -> list[Structure]:
    structures = list(structures)
    if not structures:
        raise ValueError("no structures to benchmark")
    if repeats < 1 or n_processes < 1:
        raise ValueError(f"need repeats ≥ 1 and n_processes ≥ 1; got {repeats}, {n_processes}")
    return structures


def _machine(structures: list[Structure]) -> dict:
    return {"n_structures": len(structures), "mean_atoms": float(np.mean([len(s) for s in structures])),
            "cpu_count": os.cpu_count(), "load_average_1min_start": float(os.getloadavg()[0])}


def library_configs_throughput(structures: Sequence[Structure], *, repeats: int = 3, n_processes: int = 2,
                               batch_size: int = 32) -> dict:
    """Structures/s of ``CHGNet.predict_structure(task="e", batch_size)`` at 1 thread, at
    ``n_processes`` threads, and in ``n_processes`` one-thread worker processes: per configuration
    ``median_per_s`` and ``spread_per_s`` (max - min over ``repeats``); ``best_config`` and
    ``best_per_s``; ``max_abs_diff_eV_per_atom`` between the configurations' energies."""
    structures = _check(structures, repeats, n_processes)
    out = _machine(structures)
    lib = _LibraryConfigs(structures, n_processes, batch_size)
    times: dict[str, list[float]] = {name: [] for name in lib.names}
    ref, diff = None, 0.0
    try:
        for _ in range(repeats):
            for name in lib.names:
                t, e = lib.run(name)
                times[name].append(t)
                ref = e if ref is None else ref
                diff = max(diff, float(np.abs(e - ref).max()))
    finally:
        lib.close()
    out["configs"] = {name: _summary(len(structures), ts) for name, ts in times.items()}
    out["best_config"] = max(out["configs"], key=lambda k: out["configs"][k]["median_per_s"])
    out["best_per_s"] = out["configs"][out["best_config"]]["median_per_s"]
    out["max_abs_diff_eV_per_atom"] = diff
    out["load_average_1min_end"] = float(os.getloadavg()[0])
    return out


def dask_energy_throughput(structures: Sequence[Structure], *, client, repeats: int = 3, shard_size: int = 32) -> dict:
    """Structures/s of the screen's energy path: :func:`map_shards` over shards of
    ``shard_size`` scored by :func:`chgnet_energy_shard` on the Dask ``client`` (worker start-up
    and model load excluded by a warm-up on every worker); median and spread over ``repeats``,
    ``worker_threads``, and the energies (``energies``, eV/atom)."""
    structures = _check(structures, repeats)
    out = _machine(structures)
    ours = _DaskRunner(structures, client, shard_size)
    times, energies = [], None
    try:
        for _ in range(repeats):
            t, energies = ours.run()
            times.append(t)
    finally:
        ours.close()
    out.update(_summary(len(structures), times))
    out["worker_threads"] = ours.threads
    out["energies"] = energies
    out["load_average_1min_end"] = float(os.getloadavg()[0])
    return out


def compare_to_best_library(structures: Sequence[Structure], *, client, repeats: int = 3, n_processes: int = 2,
                            batch_size: int = 32, shard_size: int = 32) -> dict:
    """The library's configurations (:func:`library_configs_throughput`) and the Dask path
    (:func:`dask_energy_throughput`), alternating within each repeat on the same structures.

    Returns ``configs`` (per library configuration: median and spread, structures/s),
    ``best_config`` / ``best_per_s``, ``ours`` (the same for the Dask path),
    ``ratio_vs_best_library_config`` (ours median / best library median),
    ``max_abs_diff_eV_per_atom`` (ours vs every library configuration; should be ~0),
    ``worker_threads``, ``structures_per_hour_per_core`` (ours, per worker thread),
    ``hours_per_million_structures_per_core``, ``load_average_1min_start`` / ``_end`` and
    ``cpu_count``.
    """
    structures = _check(structures, repeats, n_processes)
    out = _machine(structures)
    lib = _LibraryConfigs(structures, n_processes, batch_size)
    try:
        ours = _DaskRunner(structures, client, shard_size)
        try:
            times: dict[str, list[float]] = {name: [] for name in lib.names}
            ours_times: list[float] = []
            diff = 0.0
            for r in range(repeats):
                lib_runs = {}
                if r % 2:  # alternate the order, so neither side always runs first
                    lib_runs = {name: lib.run(name) for name in lib.names}
                t, e_ours = ours.run()
                ours_times.append(t)
                if not r % 2:
                    lib_runs = {name: lib.run(name) for name in lib.names}
                for name, (t, e) in lib_runs.items():
                    times[name].append(t)
                    diff = max(diff, float(np.abs(e_ours - e).max()))
        finally:
            ours.close()
    finally:
        lib.close()
    n = len(structures)
    out["configs"] = {name: _summary(n, ts) for name, ts in times.items()}
    out["best_config"] = max(out["configs"], key=lambda k: out["configs"][k]["median_per_s"])
    out["best_per_s"] = out["configs"][out["best_config"]]["median_per_s"]
    out["ours"] = _summary(n, ours_times)
    out["ours_per_s"] = out["ours"]["median_per_s"]
    out["ratio_vs_best_library_config"] = out["ours_per_s"] / out["best_per_s"]
    out["max_abs_diff_eV_per_atom"] = diff
    out["worker_threads"] = ours.threads
    out["structures_per_hour_per_core"] = out["ours_per_s"] * 3600 / max(ours.threads, 1)
    out["hours_per_million_structures_per_core"] = 1e6 / out["structures_per_hour_per_core"]
    out["load_average_1min_end"] = float(os.getloadavg()[0])
    return out


def composition_throughput(structures: Sequence[Structure], model=None, repeats: int = 3) -> float:
    """Structures/s of the composition judge (graph featurisation + Roost forward); with
    ``model=None`` an untrained Roost of the default judge size (same cost as a trained one)."""
    from matdiscovery.composition import composition_graph
    from matdiscovery.models import Roost, predict

    model = model if model is not None else Roost(dim=64, n_layers=3)
    comps = [s.composition for s in structures]
    times = []
    current = torch.get_num_threads()
    torch.set_num_threads(1)  # like the judge in the pipeline (more threads stall on a busy machine)
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            predict(model, [composition_graph(c) for c in comps], batch_size=512)
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(current)
    return len(comps) / float(np.median(times))


# ---------------------------------------------------------------- the screen's workload: relaxation
_RELAX_MODEL = None


def _relax_worker_init() -> None:
    """Initializer of a StructOptimizer worker: 1 thread, CHGNet loaded once."""
    global _RELAX_MODEL
    _quiet_worker()
    torch.set_num_threads(1)
    from matdiscovery.stability.relax import load_chgnet

    _RELAX_MODEL = load_chgnet()


def _structoptimizer_energies(structures: list, fmax: float, max_steps: int) -> list[float]:
    from matdiscovery.stability.relax import relax_with_structoptimizer

    return [r.energy_final for r in relax_with_structoptimizer(structures, model=_RELAX_MODEL, fmax=fmax,
                                                               max_steps=max_steps, progress=False)]


def relax_energy_shard(structures: list, *, fmax: float, max_steps: int, batch_size: int) -> pd.DataFrame:
    """Shard function: final CHGNet energy (eV/atom) after our batched FIRE relaxation."""
    from matdiscovery.stability.relax import relax_structures

    res = relax_structures(list(structures), fmax=fmax, max_steps=max_steps, batch_size=batch_size, progress=False)
    return pd.DataFrame({"energy_final": [r.energy_final for r in res]})


def compare_relax_throughput(structures: Sequence[Structure], *, client, n_processes: int = 2, fmax: float = 0.05,
                             max_steps: int = 300, batch_size: int = 32, shard_size: int = 16, repeats: int = 1) -> dict:
    """Relaxations/s of the screen (batched FIRE in :func:`map_shards` shards on the Dask ``client``)
    against the library's best configuration for the same work: CHGNet's ``StructOptimizer`` in
    ``n_processes`` worker processes at 1 thread each (structures split evenly; start-up excluded),
    alternating per repeat. Returns medians and spreads, ``ratio`` (ours / library), the final-energy
    agreement (meV/atom), structures/hour per core and the load average at start and end."""
    from functools import partial

    from matdiscovery.stability.distributed import map_shards

    structures = _check(structures, repeats, n_processes)
    out = _machine(structures)
    pool = ProcessPoolExecutor(n_processes, mp_context=multiprocessing.get_context("spawn"), initializer=_relax_worker_init)
    warm = structures[:1]
    list(pool.map(_structoptimizer_energies, [warm] * n_processes, [fmax] * n_processes, [2] * n_processes))
    fn = partial(relax_energy_shard, fmax=fmax, max_steps=max_steps, batch_size=batch_size)
    tmp = tempfile.TemporaryDirectory(prefix="relax-bench-")
    try:
        map_shards(partial(relax_energy_shard, fmax=fmax, max_steps=2, batch_size=batch_size), warm * n_processes,
                   shard_size=1, cache_dir=tmp.name, key="warm", client=client, progress=False)
        lib_t, ours_t, diff = [], [], 0.0
        for r in range(repeats):
            def library():
                t = time.perf_counter()
                parts = pool.map(_structoptimizer_energies, _split(structures, n_processes),
                                 [fmax] * n_processes, [max_steps] * n_processes)
                e = np.concatenate([np.asarray(p, float) for p in parts])
                lib_t.append(time.perf_counter() - t)
                return e

            def ours():
                t = time.perf_counter()
                frame = map_shards(fn, structures, shard_size=shard_size, cache_dir=tmp.name, key=f"run{r}", client=client,
                                   progress=False)
                ours_t.append(time.perf_counter() - t)
                return frame["energy_final"].to_numpy(float)

            if r % 2 == 0:  # alternate the order, so neither side always runs first
                e_lib = library()
                e_ours = ours()
            else:
                e_ours = ours()
                e_lib = library()
            ok = np.isfinite(e_lib) & np.isfinite(e_ours)
            diff = max(diff, float(np.abs(e_lib - e_ours)[ok].max()) * 1000 if ok.any() else float("nan"))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        tmp.cleanup()
    n = len(structures)
    threads = int(sum(client.nthreads().values()))
    out.update({"n_processes": n_processes, "worker_threads": threads, "fmax": fmax, "max_steps": max_steps,
                "library_structoptimizer": _summary(n, lib_t), "ours": _summary(n, ours_t)})
    out["ratio"] = out["ours"]["median_per_s"] / out["library_structoptimizer"]["median_per_s"]
    out["max_abs_final_energy_diff_meV_per_atom"] = diff
    out["relaxations_per_hour_per_core"] = out["ours"]["median_per_s"] * 3600 / max(threads, 1)
    out["core_hours_per_million_relaxations"] = 1e6 / out["relaxations_per_hour_per_core"]
    out["load_average_1min_end"] = float(os.getloadavg()[0])
    return out


# --------------------------------------------------------------------------- batched FIRE vs StructOptimizer
def perturbed_crystals(n: int, *, seed: int = 0, supercell: int = 1) -> list[Structure]:
    """``n`` jarvis_epc training crystals, lattice axes strained by ±3 %, positions rattled by σ = 0.07 Å
    (seeded), each repeated ``supercell`` x ``supercell`` x 1."""
    from pymatgen.core import Lattice

    from matdiscovery.datasets import load_crystals

    rng = np.random.default_rng(seed)
    out = []
    for s in load_crystals("jarvis_epc", "train", limit=n)["structure"]:
        lattice = s.lattice.matrix @ (np.eye(3) + np.diag(rng.uniform(-0.03, 0.03, 3)))
        frac = s.frac_coords + rng.normal(0.0, 0.07, (len(s), 3)) @ np.linalg.inv(lattice)
        out.append(Structure(Lattice(lattice), s.species, frac) * (supercell, supercell, 1))
    return out


def relax_speed(*, n: int, supercell: int, repeats: int, fmax: float, max_steps: int, batch_size: int,
                compile_chgnet: bool, seed: int = 0, other_optimizers: Sequence[str] = ()) -> dict:
    """:func:`~matdiscovery.stability.relax.compare_relaxers` on :func:`perturbed_crystals` at equal
    parallelism: this process, one torch thread and one BLAS thread for both relaxers (the baseline's
    ASE cell filter gets the same single-thread BLAS as ours); ours compiled with ``compile_chgnet``
    (compiled before the timings). Seconds are wall clock; the dict adds the machine's CPU count.

    The top level is FIRE, the screen's optimiser. Each of ``other_optimizers`` (e.g. ``"BFGS"``,
    ``StructOptimizer``'s other configurations) is compared the same way under ``optimizers[name]``,
    which adds how far ``StructOptimizer`` with it ends from ``StructOptimizer`` with FIRE (a faster
    baseline configuration that lands in other minima is a different computation, not a better
    configuration of the same one); ``speedup_vs_fastest_structoptimizer`` is ours (FIRE) against
    the fastest ``StructOptimizer`` configuration whatever its results."""
    from threadpoolctl import threadpool_limits

    from matdiscovery.stability.relax import compare_relaxers, load_chgnet_compiled

    torch.set_num_threads(1)
    structures = perturbed_crystals(n, seed=seed, supercell=supercell)
    batched_model = load_chgnet_compiled() if compile_chgnet else None
    with threadpool_limits(limits=1, user_api="blas"):
        r = compare_relaxers(structures, fmax=fmax, max_steps=max_steps, batch_size=batch_size, repeats=repeats,
                             batched_model=batched_model)
        fire = np.array(r["final_energy_structoptimizer_eV_per_atom"])
        others = {}
        for name in other_optimizers:
            o = compare_relaxers(structures, fmax=fmax, max_steps=max_steps, batch_size=batch_size, repeats=repeats,
                                 batched_model=batched_model, optimizer=name)
            gap = np.abs(np.array(o["final_energy_structoptimizer_eV_per_atom"]) - fire) * 1000.0
            others[name] = o | {"structoptimizer_vs_fire_max_abs_final_energy_diff_meV_per_atom": float(gap.max()),
                                "structoptimizer_vs_fire_n_over_1_meV_per_atom": int(np.sum(gap > 1.0))}
    times = {"FIRE": r["structoptimizer_s_median"]} | {k: v["structoptimizer_s_median"] for k, v in others.items()}
    fastest = min(times, key=times.get)
    r = r | {"optimizers": others, "fastest_structoptimizer_optimizer": fastest,
             "speedup_vs_fastest_structoptimizer": times[fastest] / r["batched_s_median"]}
    return r | {"cpu_count": os.cpu_count(), "supercell": supercell, "max_steps": max_steps, "batch_size": batch_size,
                "fmax": fmax, "structures": f"{n} perturbed jarvis_epc training crystals x ({supercell}, {supercell}, 1)",
                "load_average_1min_end": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    """The ``bench_relax`` stage: :func:`relax_speed` with the ``bench_relax`` section of
    ``params.yaml``, written to ``--out``; exit 1 if final energies differ by more than the section's
    tolerance (the batched relaxer must give CHGNet's own results)."""
    import argparse
    import json
    import warnings

    from matdiscovery.params.stability import BenchRelaxParams

    parser = argparse.ArgumentParser(prog="python -m matdiscovery.stability.benchmark", description=main.__doc__)
    parser.add_argument("--section", default="bench_relax")
    parser.add_argument("--out", default="metrics/bench_relax.json")
    args = parser.parse_args(argv)
    p = BenchRelaxParams.from_yaml_section(args.section)
    warnings.filterwarnings("ignore")
    r = relax_speed(**p.model_dump(exclude={"max_energy_diff_meV_per_atom"}))
    with open(args.out, "w") as fh:
        json.dump(r, fh, indent=2, sort_keys=True)
        fh.write("\n")
    print(json.dumps(r, indent=2, sort_keys=True))
    if not r["max_abs_final_energy_diff_meV_per_atom"] <= p.max_energy_diff_meV_per_atom:
        print(f"error: final energies differ from StructOptimizer by {r['max_abs_final_energy_diff_meV_per_atom']:.3g} "
              f"meV/atom (> {p.max_energy_diff_meV_per_atom})")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
