"""Throughput of the stability judges on CPU vs CHGNet's own ``predict_structure``.

Baseline: ``CHGNet.predict_structure(structures, task="e", batch_size=32)`` (chgnet's library
default path, torch's default thread count) on the same structures in the same process.
Ours: :class:`matdiscovery.stability.ChgnetJudge` (``torch.inference_mode``; by default two worker
processes scoring whole batches at one thread each, as in notebook 02). Energies must be identical; the script fails if they are not.

    .venv/bin/python benchmarks/bench_chgnet.py [--n 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

import torch

from matdiscovery.stability.benchmark import benchmark_sets, compare_chgnet_throughput, composition_throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="structures per set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", default="parallel", choices=["pipeline", "parallel"])
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; torch {torch.get_num_threads()} threads by default", flush=True)
    warnings.filterwarnings("ignore")
    results = {}
    for name, structures in benchmark_sets(args.n).items():
        r = compare_chgnet_throughput(structures, repeats=args.repeats, n_workers=args.workers, mode=args.mode)
        results[name] = r
        print(f"{name:>14}: CHGNet predict_structure {r['baseline_per_s']:7.1f}/s | ours {r['ours_per_s']:7.1f}/s "
              f"| ratio {r['ratio']:.2f}x (vs library at 1 thread: {r['ratio_vs_1thread']:.2f}x) "
              f"| max |ΔE| {r['max_abs_diff_eV_per_atom']:.1e} eV/atom | load avg {r['load_average_1min']:.1f}", flush=True)
        if r["max_abs_diff_eV_per_atom"] != 0.0:
            raise SystemExit(f"energies differ from predict_structure by {r['max_abs_diff_eV_per_atom']:.2e} eV/atom")
        c = composition_throughput(structures)
        results[name]["composition_judge_per_s"] = c
        print(f"{'':>14}  composition judge (Roost, featurise + predict) {c:9.1f}/s", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
