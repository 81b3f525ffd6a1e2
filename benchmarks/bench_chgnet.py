"""Throughput of the CHGNet judge on the Dask path vs the library's best single-machine configuration.

Baseline: CHGNet's own ``predict_structure(structures, task="e", batch_size=32)`` in three
configurations on the same structures: this process at 1 torch thread, this process at N threads,
and N worker processes at 1 thread each (structures split evenly, model loaded once per worker).
Ours: :func:`matdiscovery.stability.distributed.map_shards` over shards of 32 structures, each
scored by a single-process ``ChgnetJudge`` (``torch.inference_mode``, 1 thread) on a Dask
LocalCluster of N one-thread workers (or the scheduler in ``$MATDISCOVERY_DASK_SCHEDULER``).
Start-up is excluded on both sides; configurations alternate within each repeat; medians and
spreads (max - min) over repeats; load average at start and end. Energies must agree to 1e-6
eV/atom, else the script exits non-zero. Also prints the composition judge's rate and what a
million-structure screen takes at the measured per-core rate.

    .venv/bin/python benchmarks/bench_chgnet.py [--n 256] [--repeats 3] [--processes 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

import numpy as np
import torch

from matdiscovery.stability.benchmark import benchmark_sets, compare_to_best_library, composition_throughput
from matdiscovery.stability.distributed import dask_client

TOLERANCE_EV_PER_ATOM = 1e-6


def _fmt(c: dict) -> str:
    return f"{c['median_per_s']:7.1f} ± {c['spread_per_s']:5.1f}/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="structures per set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="N: library threads/processes and Dask workers")
    parser.add_argument("--sets", nargs="*", default=None, help="only these benchmark sets (default: all)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"torch default {torch.get_num_threads()} threads; N = {args.processes}; "
          f"{args.n} structures per set, {args.repeats} repeats; rates: median ± spread (max - min)", flush=True)
    sets = benchmark_sets(args.n)
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets}
    results, worst = {}, 0.0
    with dask_client(n_workers=args.processes, threads_per_worker=1) as client:
        for name, structures in sets.items():
            r = compare_to_best_library(structures, client=client, repeats=args.repeats, n_processes=args.processes)
            results[name] = r
            print(f"\n{name} ({r['n_structures']} structures, {r['mean_atoms']:.1f} atoms on average; "
                  f"load {r['load_average_1min_start']:.2f} -> {r['load_average_1min_end']:.2f})", flush=True)
            for cfg, c in r["configs"].items():
                mark = "  <- best library config" if cfg == r["best_config"] else ""
                print(f"  {cfg:>22}: {_fmt(c)}{mark}")
            print(f"  {'ours (Dask, ' + str(r['worker_threads']) + 'x1 thread)':>22}: {_fmt(r['ours'])}")
            print(f"  ratio vs best library config: {r['ratio_vs_best_library_config']:.2f}x | "
                  f"max |ΔE| {r['max_abs_diff_eV_per_atom']:.1e} eV/atom")
            per_core = r["structures_per_hour_per_core"]
            print(f"  {per_core:,.0f} structures/hour per core -> 1e6 structures: {1e6 / per_core:,.1f} h on one core, "
                  f"{1e6 / per_core / 64:,.2f} h on a 64-core node (energies only, no relaxation)", flush=True)
            worst = max(worst, r["max_abs_diff_eV_per_atom"])
            c = composition_throughput(structures)
            r["composition_judge_per_s"] = c
            print(f"  composition judge (Roost, featurise + predict, 1 thread): {c:9.1f}/s", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at end", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
    if worst > TOLERANCE_EV_PER_ATOM:
        raise SystemExit(f"energies differ from predict_structure by {worst:.2e} eV/atom (> {TOLERANCE_EV_PER_ATOM:g})")


if __name__ == "__main__":
    main()
