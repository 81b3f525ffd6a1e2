"""Ours (matdiscovery.hessian) vs the `pyhessian` package on the same model, loss and batch.

    .venv/bin/python benchmarks/bench_hessian.py                      # perov_5 CGCNN, 128 graphs
    .venv/bin/python benchmarks/bench_hessian.py --dataset qm9 --batch 256 --epochs 5

Trains a small multi-task network for ``--epochs`` (so the Hessian is taken near a solution,
not at random initialisation), then times top-1 and top-5 eigenvalues (tol 1e-3, ≤ 100
iterations), the trace (equal probe count, and equal accuracy with our Krylov-deflated
Hutchinson), and an SLQ density (equal steps and probes) for the first task's loss, printing the
agreement of the results and the speed-up (PyHessian time / ours). Baseline: pyhessian 0.1 from
PyPI, run in this process (a ``torch.eig`` shim is applied only around it; site-packages untouched).
Both run single-threaded with subnormal floats flushed to zero (``--keep-denormals`` to turn that
off for both), so the ratio measures the algorithms, not the floating-point mode.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from torch_geometric.data import Batch

from matdiscovery.hessian import masked_task_losses
from matdiscovery.hessian.compare import compare_with_pyhessian
from matdiscovery.hessian.mtl import TrainConfig, load_task_data, train


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="perov_5", choices=["perov_5", "jarvis", "qm9", "qm8"])
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--top-n", type=int, default=5)
    ap.add_argument("--trace-probes", type=int, default=50)
    ap.add_argument("--density-steps", type=int, default=50)
    ap.add_argument("--density-probes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-denormals", action="store_true",
                    help="do not flush subnormal floats to zero (slower for both libraries)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(not args.keep_denormals)  # same setting for both libraries
    data = load_task_data(args.dataset, args.n_samples, seed=args.seed)
    model, _, _ = train(data, "mtl", TrainConfig(epochs=args.epochs), seed=args.seed)
    batch = Batch.from_data_list(data.train[: args.batch])
    y = (batch.y - data.scale[0]) / data.scale[1]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.dataset}: {type(model).__name__} with {n_params} parameters, batch of {batch.num_graphs} graphs, "
          f"loss = MSE of task {data.targets[0]!r}, {args.threads} thread(s)")
    t0 = time.perf_counter()
    comp = compare_with_pyhessian(
        model, batch, lambda out, yy: masked_task_losses(out, yy)[0], y, tol=args.tol, top_n=args.top_n,
        trace_probes=args.trace_probes, density_steps=args.density_steps, density_probes=args.density_probes,
        seed=args.seed,
    )
    frame = comp.frame().set_index("estimator")
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(frame[["pyhessian_s", "ours_s", "speedup", "ours_matvecs"]].round(4).to_string())
    print("\nagreement:")
    cols = [c for c in ("pyhessian_value", "ours_value", "reference", "pyhessian_max_rel_err", "ours_max_rel_err",
                        "pyhessian_stderr", "ours_stderr") if c in frame]
    print(frame[cols].to_string(float_format=lambda v: f"{v:.5g}"))
    print(f"\ngeometric-mean speed-up (PyHessian time / ours) at equal accuracy (top-1, top-{args.top_n}, trace at "
          f"equal standard error, density): {comp.geometric_mean_speedup():.2f}×; over all rows incl. the "
          f"equal-probe trace: {comp.geometric_mean_speedup(False):.2f}× (total benchmark {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
