"""Training stage of the composition judge: ``python -m matdiscovery.stability.train``.

Reads the ``train_stability_judge`` section of ``params.yaml``; writes
``models/stability/composition_judge.pt`` (the Roost judge) and
``models/stability/judge_metrics.json`` (held-out MAE of the judge, the Magpie + random-forest
baseline and the predict-the-mean baseline, eV/atom). The JARVIS electron-phonon materials
(the screening control set) are forced into the test split.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matdiscovery.params.stability import TrainJudgeParams
from matdiscovery.paths import models_dir


def control_formulas() -> list[str]:
    """Reduced formulas of the JARVIS electron-phonon crystals (all splits): the control set."""
    from matdiscovery.datasets import CRYSTAL_DATASETS, load_crystals

    out: set[str] = set()
    for split in CRYSTAL_DATASETS["jarvis_epc"]:
        out.update(load_crystals("jarvis_epc", split)["formula"])
    return sorted(out)


def _timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), wall seconds)``."""
    t0 = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - t0


def run(p: TrainJudgeParams, out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the judge and the baseline with ``p`` and write them to ``out_dir`` (default
    ``models/stability``); return the metrics written. The stage and notebook 02's quick-run
    fallback (a smaller ``p``) both train through here."""
    from matdiscovery.datasets import load_jarvis_dft
    from matdiscovery.stability.composition_judge import (
        JudgeConfig,
        ground_state_table,
        magpie_rf_baseline,
        split_by_formula,
        train_composition_judge,
    )

    out = Path(out_dir) if out_dir is not None else models_dir() / "stability"
    torch.set_num_threads(p.torch_threads)
    seed = p.seed
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = ground_state_table(load_jarvis_dft(on_error="skip"))
        forced = control_formulas()
    if p.max_formulas:
        table = table.sample(n=min(p.max_formulas, len(table)), random_state=seed).sort_values("reduced_formula")
    split = split_by_formula(table["reduced_formula"], tuple(p.fractions), seed, forced)
    train, val, test = (table[split == s] for s in ("train", "val", "test"))
    config = JudgeConfig(dim=p.dim, n_layers=p.n_layers, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, seed=seed)
    # the baseline forest fits in its own process while Roost trains (one thread): the two cores work together
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        rf_job = pool.submit(_timed, magpie_rf_baseline, list(train["composition"]),
                             train["formation_energy_per_atom"].to_numpy(float), list(test["composition"]),
                             n_estimators=p.rf_estimators, seed=seed, n_jobs=p.rf_jobs)
        judge, history = train_composition_judge(train, val, config, progress=progress)
        y_test = test["formation_energy_per_atom"].to_numpy(float)
        pred = judge.predict(list(test["composition"]))
        t_judge = time.perf_counter()
        rf, rf_seconds = rf_job.result()
    control = test["reduced_formula"].isin(forced).to_numpy()
    metrics = {
        "n_train": len(train), "n_val": len(val), "n_test": len(test), "n_test_control": int(control.sum()),
        "judge_mae_eV_per_atom": float(np.abs(pred - y_test).mean()),
        "judge_mae_control_eV_per_atom": float(np.abs(pred - y_test)[control].mean()) if control.any() else None,
        "magpie_rf_mae_eV_per_atom": float(np.abs(rf - y_test).mean()),
        "mean_baseline_mae_eV_per_atom": float(np.abs(train["formation_energy_per_atom"].mean() - y_test).mean()),
        "best_epoch": history.best_epoch, "train_loss": history.train_loss, "val_loss": history.val_loss,
        "train_seconds": t_judge - t0, "rf_seconds": rf_seconds, "wall_seconds": time.perf_counter() - t0,
    }
    out.mkdir(parents=True, exist_ok=True)
    judge.save(out / "composition_judge.pt")
    (out / "judge_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    test[["reduced_formula", "formation_energy_per_atom"]].assign(judge=pred, magpie_rf=rf).to_csv(
        out / "test_predictions.csv", index=False, float_format="%.5f")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matdiscovery.stability.train", description=__doc__)
    parser.add_argument("--section", default="train_stability_judge")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    metrics = run(TrainJudgeParams.from_yaml_section(args.section), args.out)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
