"""Batched CHGNet relaxation vs CHGNet's own StructOptimizer, at equal parallelism.

Both relaxers run in this one process with one torch thread and one BLAS thread each (the
baseline's ASE cell filter gets the same single-thread BLAS as ours), alternating, on the same
perturbed real crystals (jarvis_epc train, lattice strained by up to ±3 %, positions rattled by
0.07 Å, seeded). Fails (exit 1) if final energies differ by more than the ``bench_relax`` stage's
tolerance (``max_energy_diff_meV_per_atom`` in ``params.yaml``: 1 meV/atom).

    .venv/bin/python benchmarks/bench_relax.py [--n 32] [--repeats 3] [--max-steps 300] [--batch-size 32] [--compile] [--supercell 1] [--other-optimizers BFGS]

``--compile`` relaxes ours with :func:`load_chgnet_compiled` (the screen's setting; compiled before the
timings); ``--supercell 2`` doubles each crystal along a and b (4x the atoms, nearer the generated
structures' 16 atoms on average); ``--other-optimizers BFGS`` also compares both relaxers with ASE's BFGS,
``StructOptimizer``'s faster configuration, and says how far its results are from FIRE's.

The ``bench_relax`` stage of ``dvc.yaml`` runs the same measurement with the ``bench_relax`` section of
``params.yaml`` (``python -m matdiscovery.stability.benchmark``) into ``metrics/bench_relax.json``, which
notebook 02 reports as ``relax_speedup_vs_structoptimizer``.

``--dask N`` times the screen's path instead: batched FIRE in shards on a local Dask cluster of N
one-thread workers against ``StructOptimizer`` in N one-thread processes (structures split evenly).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

from matdiscovery.params import load_params
from matdiscovery.stability.benchmark import perturbed_crystals, relax_speed
from matdiscovery.stability.relax import DEFAULT_FMAX, DEFAULT_MAX_STEPS, OPTIMIZERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="structures")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compile", action="store_true", help="ours with torch.compile'd CHGNet (the screen's setting)")
    parser.add_argument("--supercell", type=int, default=1, help="repeat each crystal n x n x 1")
    parser.add_argument("--other-optimizers", nargs="*", default=[], choices=[o for o in OPTIMIZERS if o != "FIRE"],
                        help="also compare both relaxers with these ASE optimisers")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--dask", type=int, default=0, metavar="N",
                        help="screen path: Dask cluster of N workers vs StructOptimizer in N processes")
    args = parser.parse_args()
    if args.dask:
        return main_dask(args)
    warnings.filterwarnings("ignore")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          "torch 1 thread, BLAS 1 thread, for both relaxers", flush=True)
    r = relax_speed(n=args.n, supercell=args.supercell, repeats=args.repeats, fmax=DEFAULT_FMAX, max_steps=args.max_steps,
                    batch_size=args.batch_size, compile_chgnet=args.compile, other_optimizers=args.other_optimizers)
    print(f"{r['n_structures']} structures, {r['mean_atoms']:.1f} atoms on average, max_steps {args.max_steps}, "
          f"batch {args.batch_size}, {r['repeats']} repeat(s), load average {r['load_average_1min']:.1f}")
    print(f"StructOptimizer {r['structoptimizer_s_median']:8.2f} s (spread {r['structoptimizer_s_spread']:.2f} s), "
          f"median {r['median_steps_structoptimizer']:.0f} steps, {r['fraction_converged_structoptimizer']:.0%} converged")
    print(f"batched{' (compiled)' if args.compile else '           '} {r['batched_s_median']:8.2f} s (spread {r['batched_s_spread']:.2f} s), "
          f"median {r['median_steps_batched']:.0f} steps, {r['fraction_converged_batched']:.0%} converged")
    print(f"speedup {r['speedup']:.2f}x | final energy |Δ| max {r['max_abs_final_energy_diff_meV_per_atom']:.3g}, "
          f"median {r['median_abs_final_energy_diff_meV_per_atom']:.3g} meV/atom | load average now {os.getloadavg()[0]:.1f}",
          flush=True)
    for name, o in r["optimizers"].items():
        print(f"{name}: StructOptimizer {o['structoptimizer_s_median']:.2f} s, batched {o['batched_s_median']:.2f} s, "
              f"speedup {o['speedup']:.2f}x, |Δ| max {o['max_abs_final_energy_diff_meV_per_atom']:.3g} meV/atom; "
              f"StructOptimizer {name} vs FIRE: |Δ| max {o['structoptimizer_vs_fire_max_abs_final_energy_diff_meV_per_atom']:.3g} "
              f"meV/atom, {o['structoptimizer_vs_fire_n_over_1_meV_per_atom']} of {o['n_structures']} over 1 meV/atom")
    print(f"against the fastest StructOptimizer ({r['fastest_structoptimizer_optimizer']}): "
          f"{r['speedup_vs_fastest_structoptimizer']:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2)
    tolerance = load_params("bench_relax")["max_energy_diff_meV_per_atom"]  # one tolerance for this and the stage
    if not r["max_abs_final_energy_diff_meV_per_atom"] <= tolerance:
        raise SystemExit(f"final energies differ from StructOptimizer by {r['max_abs_final_energy_diff_meV_per_atom']:.3g} "
                         f"meV/atom (> {tolerance})")


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
