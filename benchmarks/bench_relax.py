"""Batched CHGNet relaxation vs CHGNet's own StructOptimizer, at equal parallelism.

Both relaxers run in this one process with one torch thread and one BLAS thread each (the
baseline's ASE cell filter gets the same single-thread BLAS as ours), alternating, on the same
perturbed real crystals (jarvis_epc train, lattice strained by up to ±3 %, positions rattled by
0.07 Å, seeded). Fails (exit 1) if final energies differ by more than 1 meV/atom.

    .venv/bin/python benchmarks/bench_relax.py [--n 32] [--repeats 3] [--max-steps 300] [--batch-size 32]

``--dask N`` times the screen's path instead: batched FIRE in shards on a local Dask cluster of N
one-thread workers against ``StructOptimizer`` in N one-thread processes (structures split evenly).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

import numpy as np
import torch
from pymatgen.core import Lattice, Structure
from threadpoolctl import threadpool_limits

from matdiscovery.datasets import load_crystals
from matdiscovery.stability.relax import DEFAULT_MAX_STEPS, compare_relaxers


def perturbed_crystals(n: int, seed: int = 0) -> list[Structure]:
    """``n`` jarvis_epc crystals, lattice axes strained by ±3 %, positions rattled by σ = 0.07 Å."""
    rng = np.random.default_rng(seed)
    out = []
    for s in load_crystals("jarvis_epc", "train", limit=n)["structure"]:
        lattice = s.lattice.matrix @ (np.eye(3) + np.diag(rng.uniform(-0.03, 0.03, 3)))
        frac = s.frac_coords + rng.normal(0.0, 0.07, (len(s), 3)) @ np.linalg.inv(lattice)
        out.append(Structure(Lattice(lattice), s.species, frac))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="structures")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--dask", type=int, default=0, metavar="N",
                        help="screen path: Dask cluster of N workers vs StructOptimizer in N processes")
    args = parser.parse_args()
    if args.dask:
        return main_dask(args)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"torch {torch.get_num_threads()} thread, BLAS 1 thread, for both relaxers", flush=True)
    structures = perturbed_crystals(args.n)
    with threadpool_limits(limits=1, user_api="blas"):
        r = compare_relaxers(structures, max_steps=args.max_steps, batch_size=args.batch_size, repeats=args.repeats)
    print(f"{r['n_structures']} structures, {r['mean_atoms']:.1f} atoms on average, max_steps {args.max_steps}, "
          f"batch {args.batch_size}, {r['repeats']} repeat(s), load average {r['load_average_1min']:.1f}")
    print(f"StructOptimizer {r['structoptimizer_s_median']:8.2f} s (spread {r['structoptimizer_s_spread']:.2f} s), "
          f"median {r['median_steps_structoptimizer']:.0f} steps, {r['fraction_converged_structoptimizer']:.0%} converged")
    print(f"batched         {r['batched_s_median']:8.2f} s (spread {r['batched_s_spread']:.2f} s), "
          f"median {r['median_steps_batched']:.0f} steps, {r['fraction_converged_batched']:.0%} converged")
    print(f"speedup {r['speedup']:.2f}x | final energy |Δ| max {r['max_abs_final_energy_diff_meV_per_atom']:.3g}, "
          f"median {r['median_abs_final_energy_diff_meV_per_atom']:.3g} meV/atom | load average now {os.getloadavg()[0]:.1f}",
          flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r | {"max_steps": args.max_steps, "batch_size": args.batch_size}, fh, indent=2)
    if not r["max_abs_final_energy_diff_meV_per_atom"] <= 1.0:
        raise SystemExit(f"final energies differ from StructOptimizer by {r['max_abs_final_energy_diff_meV_per_atom']:.3g} meV/atom")


def main_dask(args) -> None:
    from matdiscovery.stability.benchmark import compare_relax_throughput
    from matdiscovery.stability.distributed import dask_client

    warnings.filterwarnings("ignore")
    structures = perturbed_crystals(args.n)
    with dask_client(None, n_workers=args.dask, threads_per_worker=1) as client:
        r = compare_relax_throughput(structures, client=client, n_processes=args.dask, max_steps=args.max_steps,
                                     batch_size=args.batch_size, shard_size=-(-len(structures) // args.dask),
                                     repeats=args.repeats)
    print(json.dumps(r, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2)


if __name__ == "__main__":
    main()
