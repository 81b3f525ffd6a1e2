"""Throughput measurements behind ``benchmarks/bench_chgnet.py`` and notebook 02.

Timings are wall-clock on whatever the machine is doing; the baseline and ours run
alternately in the same process on the same structures, and the median of ``repeats`` is kept.
The 1-minute load average at the end is returned with the rates: on a shared machine, the
library default (torch's default thread count) slows down far more than one-thread code when
other jobs hold the cores, so read ``ratio`` together with ``ratio_vs_1thread``.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np
import torch
from pymatgen.core import Structure

from matdiscovery.stability.chgnet_judge import ChgnetJudge, library_default_energy


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


def _timed(fn) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def compare_chgnet_throughput(structures: Sequence[Structure], repeats: int = 3, n_workers: int = 1,
                              mode: str = "pipeline", batch_size: int = 32,
                              judge: ChgnetJudge | None = None, default_threads: int | None = None) -> dict[str, float]:
    """Structures/s of CHGNet's ``predict_structure(task="e", batch_size=32)`` (at torch's
    default thread count, and at 1 thread) and of :class:`ChgnetJudge`; ``ratio`` = ours /
    library default; ``max_abs_diff_eV_per_atom`` between their energies. ``default_threads``:
    the library's thread count (torch's default, read before anything changed it; defaults to
    the current setting). Ours runs with one model thread (+ its workers)."""
    structures = list(structures)
    if not structures:
        raise ValueError("no structures to benchmark")
    current = torch.get_num_threads()
    default_threads = default_threads or current
    if judge is None:
        judge = ChgnetJudge(n_workers=n_workers, batch_size=batch_size, mode=mode, threads=None)
    model = judge.model
    warm = structures[: min(len(structures), 2 * batch_size)]
    library_default_energy(model, warm)
    judge.predict_energy(warm, progress=False)
    times = {"baseline": [], "baseline_1thread": [], "ours": []}
    diff = 0.0
    try:
        for _ in range(repeats):
            torch.set_num_threads(default_threads)
            t, base = _timed(lambda: library_default_energy(model, structures))
            times["baseline"].append(t)
            torch.set_num_threads(1)
            t, base1 = _timed(lambda: library_default_energy(model, structures))
            times["baseline_1thread"].append(t)
            t, ours = _timed(lambda: judge.predict_energy(structures, progress=False))
            times["ours"].append(t)
            diff = max(diff, float(np.abs(ours - base).max()), float(np.abs(ours - base1).max()))
    finally:
        torch.set_num_threads(current)
    med = {k: float(np.median(v)) for k, v in times.items()}
    n = len(structures)
    return {
        "load_average_1min": float(os.getloadavg()[0]),
        "n_structures": n,
        "mean_atoms": float(np.mean([len(s) for s in structures])),
        "default_threads": default_threads,
        "baseline_per_s": n / med["baseline"],
        "baseline_1thread_per_s": n / med["baseline_1thread"],
        "ours_per_s": n / med["ours"],
        "ratio": med["baseline"] / med["ours"],
        "ratio_vs_1thread": med["baseline_1thread"] / med["ours"],
        "max_abs_diff_eV_per_atom": diff,
    }


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
