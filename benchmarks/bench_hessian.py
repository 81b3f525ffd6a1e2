"""Ours (matdiscovery.hessian) vs the `pyhessian` package on the same model, loss, batch and parameters.

    .venv/bin/python benchmarks/bench_hessian.py                         # QM8 MPNN, batch of 128, 5 repeats
    .venv/bin/python benchmarks/bench_hessian.py --dataset jarvis --batch 256 --repeats 7

Trains a multi-task network (equal-weight MTL, ``--epochs``) so that the Hessian is taken near a
solution, then, for the first task's loss over the shared trunk (every parameter but the
task-specific output layer: the scope the study uses), runs each estimator ``--repeats`` times
with both libraries (alternating which goes first): top-1 and top-k eigenvalues (largest
magnitude, PyHessian's definition, tol 1e-3, ≤ 100 iterations), the trace (PyHessian's
Hutchinson with ``--trace-probes`` probes; ours Krylov-deflated until its standard error is at
most PyHessian's) and an SLQ density (equal steps and probes). Printed per estimator: median time
and spread (min–max), the speed-up (PyHessian median / ours), Hessian-vector products of each,
each one's median relative error against a high-accuracy reference (Lanczos to 1e-8; deflated
Hutchinson with 400 probes), PyHessian's convergence, and the cost of one HVP relative to one
gradient. Baseline: pyhessian 0.1 from PyPI, in this process (a ``torch.eig`` shim only around
it; site-packages untouched). Both single-threaded with subnormals flushed (``--keep-denormals``
to turn that off for both). Run under ``flock /tmp/cpu.lock`` on a shared machine; the load is
printed.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch

from matdiscovery.hessian.experiment import run_comparison
from matdiscovery.hessian.mtl import load_task_data
from matdiscovery.hessian.multitask import TrainConfig, train_seed


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="qm8", choices=["qm8", "jarvis", "perov_5", "qm9"])
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--trace-probes", type=int, default=50)
    ap.add_argument("--density-steps", type=int, default=40)
    ap.add_argument("--density-probes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-denormals", action="store_true", help="do not flush subnormal floats (both libraries)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(not args.keep_denormals)
    print(f"load average before: {os.getloadavg()}")
    data = load_task_data(args.dataset, (args.n_train, 500, 500), seed=args.seed)
    kwargs = {"n_heads": 1} if args.dataset == "jarvis" else {}
    run = train_seed(data, TrainConfig(epochs=args.epochs, batch_size=128, methods=("mtl",), model_kwargs=kwargs),
                     seed=args.seed)
    model = run.model("mtl")
    print(f"{args.dataset}: {type(model).__name__}, batch of {args.batch} graphs, loss = MSE of task "
          f"{data.targets[0]!r}, shared trunk, {args.threads} thread(s), {args.repeats} repeats")
    t0 = time.perf_counter()
    comp = run_comparison(model, data, args.batch, 0, args.seed, {
        "repeats": args.repeats, "top_k": args.top_k, "trace_probes": args.trace_probes,
        "density_steps": args.density_steps, "density_probes": args.density_probes, "progress": True})
    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 30)
    print(comp.summary().T.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\nreference: {comp.reference}")
    h = comp.hvp_cost
    print(f"one HVP = {h['ratio']:.2f}× one gradient ({1e3 * h['hvp_s']:.2f} ms vs {1e3 * h['gradient_s']:.2f} ms)")
    print(f"total {time.perf_counter() - t0:.1f} s; load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
