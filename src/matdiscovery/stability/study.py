"""Notebook 02's study: relax generated crystals with CHGNet, judge them with CHGNet, SevenNet and the
composition judge, place them on the JARVIS hull with per-chemistry offsets, and count S.U.N.

One call, :func:`run_screening`, returns a :class:`ScreeningStudy`; ``.metrics()`` builds the
metrics dict, ``.paper_table()`` the comparison with PGCGM's DFT numbers, ``.structures_table()``
the per-structure table. The expensive map (relax + score) runs through Dask in shards
(:func:`~matdiscovery.stability.distributed.map_shards`): each shard is written when it finishes and
reused on rerun.

Definitions (all energies eV/atom):

- *screened*: a generated structure that passes the sanity checks
  (:func:`~matdiscovery.stability.validation.check_structure`) and PGCGM's own filter
  (``pgcgm_valid``: spglib finds the requested group, every pair > 0.75 (r_i + r_j)), and is the
  first of its ``StructureMatcher`` class (*unique*); a seeded sample (``n_relax`` of the first variant,
  ``n_relax_other`` of each further one) is
  relaxed (FIRE, cell included, ``fmax``, ``max_steps``) with CHGNet, except inputs denser than
  :data:`~matdiscovery.stability.energies.MIN_VOLUME_PER_ATOM_A3`, which are scored unrelaxed and absurd;
- *stable at t*: e_hull ≤ t on the JARVIS hull, not absurd (:func:`~matdiscovery.stability.energies.absurd_reason`);
  fractions are over the relaxed sample with Wilson 95 % intervals; ``_offset`` keys subtract the
  judge's per-chemistry-class offset fitted on the controls;
- *S.U.N.* (MatterGen): stable at 0.1 after relaxation (offset-corrected CHGNet), unique, and
  novel (no ``StructureMatcher`` match in the generator's training set, relaxed structure);
  ``sun_rate`` is over all generated samples of the variant: (unique screened / generated) ×
  (S.U.N. / relaxed sample), the first factor known exactly, the interval from the second.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Structure
from scipy.stats import spearmanr

from matdiscovery.generator.metrics import _prop as _fraction  # proportion with its Wilson interval and n
from matdiscovery.generator.metrics import match_mask, unique_mask
from matdiscovery.geometry import min_interatomic_distance
from matdiscovery.params.stability import ScreeningParams, TrainJudgeParams
from matdiscovery.paths import project_root
from matdiscovery.stability.energies import (
    STABILITY_THRESHOLD,
    ChemistryOffsets,
    absurd_reason,
    chemistry_class,
    formation_energy,
    mp2020_corrected_energy,
)
from matdiscovery.stability.hull import FormationEnergyHull
from matdiscovery.stability.validation import check_structure, check_structures

#: judges that score a geometry (the composition judge scores the formula only)
STRUCTURE_JUDGES = ("chgnet", "sevennet")
#: PGCGM (Zhao et al. 2023): 1,869 DFT-optimised generated structures
PGCGM_DFT = {"n": 1869, "fraction_ehull_lt_0.25": 0.053, "fraction_negative_ef": 0.396}
#: MatterGen benchmark table (ML-relaxed, MP hull): stable (≤ 0.1 eV/atom) / S.U.N. fractions
MATTERGEN_TABLE = {"MatterGen (MP-20)": (0.471, 0.258), "DiffCSP (MP-20)": (0.413, 0.201),
                   "CDVAE (MP-20)": (0.243, 0.183)}


# --------------------------------------------------------------------------- worker side
def score_shard(items: list[tuple[str, Structure]], *, relax: bool, fmax: float, max_steps: int, batch_size: int,
                sevennet_model: str, compile_chgnet: bool = False) -> pd.DataFrame:
    """Relax (if ``relax``) with batched CHGNet FIRE, then score with CHGNet and SevenNet: one row per
    item with ``id``, ``n_steps``, ``converged``, ``relax_error``, ``ef_chgnet_initial``,
    ``ef_chgnet``, ``ef_sevennet`` (MP2020-corrected), ``volume_ratio``, ``min_distance_A``,
    ``n_isolated``, ``n_atoms_final``, ``final_structure`` (pymatgen JSON) and the shard's cost
    ``core_seconds_per_item`` (wall seconds × torch threads / items, model loading included). An
    input denser than :data:`~matdiscovery.stability.energies.MIN_VOLUME_PER_ATOM_A3` is scored
    where it stands, not relaxed (``relax_error`` says so; it is absurd). Runs on a Dask worker; the
    models load (and with ``compile_chgnet`` compile) once per worker process."""
    import dataclasses

    import torch

    from matdiscovery.stability.energies import MAX_NEAREST_NEIGHBOUR_A, MIN_VOLUME_PER_ATOM_A3
    from matdiscovery.stability.relax import load_chgnet_compiled, relax_structures

    t0 = time.perf_counter()
    ids = [i for i, _ in items]
    structures = [s for _, s in items]
    model = load_chgnet_compiled() if compile_chgnet and relax else None
    dense = [relax and s.volume / len(s) < MIN_VOLUME_PER_ATOM_A3 for s in structures]
    relaxed: list = [None] * len(structures)
    for skip, steps in ((False, max_steps if relax else 0), (True, 0)):
        picked = [k for k in range(len(structures)) if dense[k] == skip]
        out = relax_structures([structures[k] for k in picked], model=model, fmax=fmax, max_steps=steps,
                               batch_size=batch_size, progress=False) if picked else []
        for k, r in zip(picked, out):
            why = f"not relaxed: input {structures[k].volume / len(structures[k]):.2f} Å^3/atom < {MIN_VOLUME_PER_ATOM_A3}"
            relaxed[k] = dataclasses.replace(r, error="; ".join(filter(None, (why, r.error)))) if skip else r
    finals = [r.structure for r in relaxed]
    e7 = _sevennet(sevennet_model).predict_energy(finals, progress=False)
    rows = []
    for i, s, r, e in zip(ids, structures, relaxed, e7):
        comp = s.composition
        ef_init, ef_final = formation_energy([comp, comp], [r.energy_initial, r.energy_final])
        ef7 = formation_energy([comp], [mp2020_corrected_energy(r.structure, e)])[0]
        centres = r.structure.get_neighbor_list(MAX_NEAREST_NEIGHBOUR_A)[0] if len(r.structure) else []
        rows.append({
            "id": i, "n_steps": r.n_steps, "converged": r.converged, "relax_error": r.error,
            "ef_chgnet_initial": ef_init, "ef_chgnet": ef_final, "ef_sevennet": ef7,
            "volume_ratio": r.structure.volume / s.volume, "min_distance_A": min_interatomic_distance(r.structure),
            "n_isolated": len(r.structure) - len(set(np.asarray(centres).tolist())),
            "n_atoms_final": len(r.structure), "final_structure": json.dumps(r.structure.as_dict()),
        })
    frame = pd.DataFrame(rows)
    frame["core_seconds_per_item"] = (time.perf_counter() - t0) * torch.get_num_threads() / max(len(items), 1)
    return frame


_SEVENNET: dict[str, object] = {}


def _sevennet(model_name: str):
    if model_name not in _SEVENNET:
        from matdiscovery.stability.sevennet_judge import SevennetJudge

        _SEVENNET[model_name] = SevennetJudge(model_name)
    return _SEVENNET[model_name]


# --------------------------------------------------------------------------- inputs
def load_composition_judge(p: ScreeningParams, *, progress: bool = True):
    """The composition judge, its metrics and test predictions: the ``train_stability_judge``
    checkpoint, or (quick runs) a small judge trained through the same path into ``build/``."""
    from matdiscovery.stability.composition_judge import CompositionJudge
    from matdiscovery.stability.train import run as train_judge

    ckpt = project_root() / p.judge_checkpoint
    source = f"checkpoint {p.judge_checkpoint}"
    if not ckpt.exists():
        small = TrainJudgeParams.from_yaml_section("train_stability_judge").model_copy(
            update={"max_formulas": p.small_judge_formulas, "epochs": p.small_judge_epochs, "seed": p.seed})
        ckpt = project_root() / "build" / "stability_small_judge" / "composition_judge.pt"
        train_judge(small, ckpt.parent, progress=progress)
        source = f"SMALL judge ({p.small_judge_formulas} formulas, {p.small_judge_epochs} epochs): not the stage's model"
    metrics = json.loads((ckpt.parent / "judge_metrics.json").read_text())
    test_pred = pd.read_csv(ckpt.parent / "test_predictions.csv", keep_default_na=False)  # "NaN" is sodium nitride
    return CompositionJudge.load(ckpt), metrics, test_pred, source


def load_generated(p: ScreeningParams, *, client, progress: bool = True) -> tuple[Callable[[], pd.DataFrame],
                                                                                 list[Structure], str]:
    """``p.n_samples`` fresh samples per decoder of ``p.variants`` from the generator checkpoint
    (PGCGM's conditions, seed ``p.seed``) and the generator's training + held-out structures (for
    novelty); quick runs without ``generator_dir`` train a seconds-long generator into ``build/`` first.
    Each decoder samples on a worker of the Dask ``client`` (the same rows as one
    :func:`~matdiscovery.generator.sampling.sample` call, :func:`interleave_decoders`); the first item
    returned waits for them and gives the samples, so call it after queueing other work."""
    from matdiscovery.generator.data import record_structure
    from matdiscovery.generator.sampling import sample
    from matdiscovery.generator.train import load_run, run_training
    from matdiscovery.params.generator import TrainGeneratorParams

    folder = project_root() / p.generator_dir
    source = f"{p.n_samples} samples per decoder from {p.generator_dir}/generator.pt"
    if not (folder / "generator.pt").exists():
        small = TrainGeneratorParams.from_yaml_section("train_generator").model_copy(
            update={"epochs": 2, "n_samples": 8, "limit_per_split": 40, "decoders": list(p.variants)})
        folder = project_root() / "build" / "stability_small_generator"
        run_training(small, folder, progress=progress)
        source = f"{p.n_samples} samples per decoder of a SMALL generator (2 epochs, 40 structures per source): not the pipeline's"
    model, training = load_run(folder)
    train_structures = [record_structure(r) for r in training.train + training.heldout]
    kwargs = {"seed": p.seed, "conditions": "pgcgm"}
    shared = client.scatter(model)  # one copy per worker, not one per task
    futures = [client.submit(sample, shared, p.n_samples, decoders=(d,), progress=False, pure=False, **kwargs)
               for d in p.variants]
    return lambda: interleave_decoders(client.gather(futures)), train_structures, source


def interleave_decoders(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One :func:`~matdiscovery.generator.sampling.sample` frame per decoder (same seed and ``n``)
    merged into the row order of a single call with all decoders: sample 0 of each decoder, then 1, …"""
    if len({len(f) for f in frames}) > 1:
        raise ValueError(f"decoder frames differ in length: {[len(f) for f in frames]}")
    order = [f.assign(_sample=np.arange(len(f)), _decoder=j) for j, f in enumerate(frames)]
    merged = pd.concat(order, ignore_index=True).sort_values(["_sample", "_decoder"], kind="mergesort")
    return merged.drop(columns=["_sample", "_decoder"]).reset_index(drop=True)


# --------------------------------------------------------------------------- result

@dataclass
class ScreeningStudy:
    """Everything notebook 02 reports; see the module docstring for the definitions."""

    params: ScreeningParams
    generated: pd.DataFrame          # one row per generated sample of the screened variants
    controls: pd.DataFrame           # one row per control crystal
    offsets: dict[str, ChemistryOffsets]
    judge_metrics: dict
    test_predictions: pd.DataFrame
    hull_check_mae: float
    sources: dict[str, str]
    benchmarks: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    shards: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- per variant
    def relaxed(self, variant: str) -> pd.DataFrame:
        """The relaxed sample of ``variant``."""
        g = self.generated
        return g[(g["variant"] == variant) & g["relaxed"]]

    def stable(self, frame: pd.DataFrame, judge: str, threshold: float, *, state: str = "relaxed",
               offset: bool = False) -> np.ndarray:
        """``e_hull ≤ threshold`` and not absurd (NaN counts as not stable)."""
        col = f"ehull_{judge}" + ("_initial" if state == "unrelaxed" else "") + ("_offset" if offset else "")
        e = frame[col].to_numpy(float)
        ok = (frame["absurd_reason"] == "").to_numpy() if state == "relaxed" else np.isfinite(e)
        return np.where(np.isfinite(e), e <= threshold + 1e-9, False) & ok

    def sun(self, variant: str, judge: str = "chgnet") -> dict[str, float]:
        """S.U.N. rate over all generated samples of ``variant`` (module docstring)."""
        g = self.generated[self.generated["variant"] == variant]
        r = self.relaxed(variant)
        mask = self.stable(r, judge, STABILITY_THRESHOLD, offset=True) & r["novel"].to_numpy(bool)
        inner = _fraction(mask)
        scale = g["unique"].sum() / len(g)
        return {"value": inner["value"] * scale, "ci_low": inner["ci_low"] * scale, "ci_high": inner["ci_high"] * scale,
                "in_relaxed_sample": inner["value"], "n_relaxed": inner["n"], "n_generated": len(g),
                "fraction_unique_screened": float(scale), "fraction_novel_relaxed": float(r["novel"].mean())}

    def variant_metrics(self, variant: str) -> dict:
        """Counts, stable fractions (relaxed / unrelaxed, with and without offsets), S.U.N., absurd."""
        g = self.generated[self.generated["variant"] == variant]
        r = self.relaxed(variant)
        out: dict = {"n_generated": len(g), "n_sane": int(g["valid"].sum()), "n_pgcgm_filter": int(g["screened"].sum()),
                     "n_unique_screened": int(g["unique"].sum()), "n_relaxed": len(r),
                     "n_relax_lost_worker_failure": int((g["relax_lost"] != "").sum()) if "relax_lost" in g else 0,
                     "fraction_relax_converged": float(r["converged"].mean()) if len(r) else float("nan"),
                     "median_relax_steps": float(r["n_steps"].median()) if len(r) else float("nan"),
                     "median_volume_change": float((r["volume_ratio"] - 1).abs().median()) if len(r) else float("nan"),
                     "n_rejected_absurd": int((r["absurd_reason"] != "").sum()),
                     "rejected_absurd_by_reason": {k: int(v) for k, v in r.loc[r["absurd_reason"] != "", "absurd_reason"]
                                                   .value_counts().items()}}
        for t in self.params.thresholds:
            tag = f"{t:g}"
            for judge in STRUCTURE_JUDGES:
                for offset in (False, True):
                    key = f"fraction_stable_relaxed_{judge}_{tag}" + ("_offset" if offset else "")
                    _put(out, key, _fraction(self.stable(r, judge, t, offset=offset)))
            for offset in (False, True):
                _put(out, f"fraction_stable_unrelaxed_chgnet_{tag}" + ("_offset" if offset else ""),
                     _fraction(self.stable(r, "chgnet", t, state="unrelaxed", offset=offset)))
            _put(out, f"fraction_stable_relaxed_composition_{tag}", _fraction(self.stable(r, "composition", t)))
            _put(out, f"fraction_stable_relaxed_consensus_{tag}_offset",
                 _fraction(self.stable(r, "chgnet", t, offset=True) & self.stable(r, "sevennet", t, offset=True)))
        ok = (r["absurd_reason"] == "").to_numpy()
        _put(out, "fraction_negative_ef_relaxed_chgnet", _fraction(ok & (r["ef_chgnet"].to_numpy(float) < 0)))
        _put(out, "fraction_negative_ef_unrelaxed_chgnet", _fraction(r["ef_chgnet_initial"].to_numpy(float) < 0))
        _put(out, "fraction_negative_ef_relaxed_sevennet", _fraction(ok & (r["ef_sevennet"].to_numpy(float) < 0)))
        for judge in STRUCTURE_JUDGES:
            s = self.sun(variant, judge)
            prefix = "sun_rate" if judge == "chgnet" else f"sun_rate_{judge}"
            out[prefix], out[f"{prefix}_ci_low"], out[f"{prefix}_ci_high"] = s["value"], s["ci_low"], s["ci_high"]
            out[f"{prefix}_in_relaxed_sample"] = s["in_relaxed_sample"]
        out["fraction_novel_relaxed"] = float(r["novel"].mean()) if len(r) else float("nan")
        out["class_weighted_offset_chgnet"] = self.offsets["chgnet"].weighted_offset(list(r["chemistry_class"]))
        out["class_mix"] = {k: float(v) for k, v in r["chemistry_class"].value_counts(normalize=True).items()}
        both = r[["ef_chgnet", "ef_sevennet"]].notna().all(axis=1) & (r["absurd_reason"] == "")
        out["judge_disagreement_median_eV_per_atom"] = float((r.loc[both, "ef_chgnet"] - r.loc[both, "ef_sevennet"]).abs().median())
        a = self.stable(r, "chgnet", STABILITY_THRESHOLD, offset=True)[both.to_numpy()]
        b = self.stable(r, "sevennet", STABILITY_THRESHOLD, offset=True)[both.to_numpy()]
        out["judge_agreement_0.1_offset"] = float((a == b).mean()) if len(a) else float("nan")
        if "ood_distance" in r and r["ood_distance"].notna().sum() > 2:
            m = both & r["ood_distance"].notna()
            dis = (r.loc[m, "ef_chgnet"] - r.loc[m, "ef_sevennet"]).abs()
            out["ood_spearman_distance_vs_judge_disagreement"] = float(spearmanr(r.loc[m, "ood_distance"], dis).statistic)
            out["median_ood_distance"] = float(r["ood_distance"].median())
        return out

    # ---------------------------------------------------------------- controls
    def control_metrics(self) -> dict:
        """Judges against JARVIS on the controls; offsets per class with CV residuals."""
        c = self.controls
        out: dict = {"n_control": len(c)}
        for judge in ("chgnet", "sevennet", "composition"):
            d = (c[f"ef_{judge}"] - c["dft_ef"]).dropna()
            out[f"judge_{judge}_mae_eV_per_atom"] = float(d.abs().mean())
            out[f"judge_{judge}_mean_signed_error_eV_per_atom"] = float(d.mean())
            out[f"judge_{judge}_n_control_scored"] = int(len(d))
        for judge, off in self.offsets.items():
            key = "chemistry_offset" if judge == "chgnet" else f"chemistry_offset_{judge}"
            out[key] = dict(off.offsets)
            out[f"{key}_n"] = dict(off.n)
            out[f"{key}_cv_mae_raw"] = dict(off.cv_mae_raw)
            out[f"{key}_cv_mae_corrected"] = dict(off.cv_mae_corrected)
        truth = c["dft_ehull_loo"].to_numpy(float) <= STABILITY_THRESHOLD
        out["fraction_stable_control_dft_0.1"] = float(truth.mean())
        for judge in STRUCTURE_JUDGES:
            pred = self.stable(c, judge, STABILITY_THRESHOLD, offset=True)
            out[f"judge_{judge}_recall_dft_stable_control"] = float(pred[truth].mean()) if truth.any() else float("nan")
            out[f"judge_{judge}_precision_dft_stable_control"] = float(truth[pred].mean()) if pred.any() else float("nan")
        return out

    def metrics(self) -> dict:
        """The metrics dict of notebook 02 (headline keys for the first variant, the PGCGM decoder)."""
        head = self.params.variants[0]
        out = dict(self.variant_metrics(head))
        out["variant"] = head
        out["by_variant"] = {v: self.variant_metrics(v) for v in self.params.variants[1:]}
        out.update(self.control_metrics())
        jm = self.judge_metrics
        out.update({"judge_composition_test_mae_eV_per_atom": jm["judge_mae_eV_per_atom"],
                    "judge_composition_baseline_magpie_rf_mae_eV_per_atom": jm["magpie_rf_mae_eV_per_atom"],
                    "judge_composition_baseline_mean_mae_eV_per_atom": jm["mean_baseline_mae_eV_per_atom"],
                    "judge_composition_n_test": jm["n_test"], "hull_vs_jarvis_ehull_mae_eV_per_atom": self.hull_check_mae,
                    "paper_pgcgm_dft_fraction_ehull_lt_0.25": PGCGM_DFT["fraction_ehull_lt_0.25"],
                    "paper_pgcgm_dft_fraction_negative_ef": PGCGM_DFT["fraction_negative_ef"],
                    "paper_pgcgm_dft_n": PGCGM_DFT["n"],
                    "paper_mattergen_table_stable_sun": {k: list(v) for k, v in MATTERGEN_TABLE.items()},
                    "seconds": self.seconds,
                    "shards": {k: ({kk: vv for kk, vv in v.items() if kk != "lost_ids"} if isinstance(v, dict) else v)
                               for k, v in self.shards.items()}})
        out.update(self.screen_throughput())
        out.update(self.benchmarks)
        return out

    def screen_throughput(self) -> dict:
        """What the screen itself cost, from its shards' own timings (so also after a rerun that
        reused them): relaxations (CHGNet FIRE + CHGNet and SevenNet scores) per core-hour, the
        core-hours a million such relaxations would take, and the mean atoms per structure."""
        if "core_seconds_per_item" not in self.generated:  # no shard came back
            return {}
        r = self.generated[self.generated["relaxed"] & self.generated["core_seconds_per_item"].notna()]
        if r.empty:
            return {}
        per_hour = 3600.0 * len(r) / float(r["core_seconds_per_item"].sum())
        return {"screen_relaxations_per_core_hour": per_hour,
                "screen_core_hours_per_million_relaxations": 1e6 / per_hour,
                "screen_mean_atoms": float(r["n_atoms"].mean()), "screen_n_timed": len(r)}

    def paper_table(self) -> pd.DataFrame:
        """Our relaxed numbers (PGCGM decoder) beside PGCGM's DFT ones and MatterGen's table, with n."""
        m = self.variant_metrics(self.params.variants[0])

        def ours(key):
            return f"{m[key]:.1%} [{m[key + '_ci_low']:.1%}, {m[key + '_ci_high']:.1%}] (n={m[key + '_n']})"

        rows = [
            ("e_hull < 0.25 eV/atom, relaxed", f"{PGCGM_DFT['fraction_ehull_lt_0.25']:.1%} (DFT, MP hull, n=1,869)",
             ours("fraction_stable_relaxed_chgnet_0.25"), ours("fraction_stable_relaxed_chgnet_0.25_offset"),
             ours("fraction_stable_relaxed_sevennet_0.25_offset")),
            ("formation energy < 0, relaxed", f"{PGCGM_DFT['fraction_negative_ef']:.1%} (DFT, n=1,869)",
             ours("fraction_negative_ef_relaxed_chgnet"), "(offsets move the hull, not this)",
             ours("fraction_negative_ef_relaxed_sevennet")),
            ("e_hull ≤ 0.1 eV/atom (stable), relaxed", "not reported; MatterGen table: " + ", ".join(
                f"{k} {v[0]:.1%}" for k, v in MATTERGEN_TABLE.items()),
             ours("fraction_stable_relaxed_chgnet_0.1"), ours("fraction_stable_relaxed_chgnet_0.1_offset"),
             ours("fraction_stable_relaxed_sevennet_0.1_offset")),
            ("S.U.N. rate (of all generated)", "not reported; MatterGen table: " + ", ".join(
                f"{k} {v[1]:.1%}" for k, v in MATTERGEN_TABLE.items()), "—",
             f"{m['sun_rate']:.1%} [{m['sun_rate_ci_low']:.1%}, {m['sun_rate_ci_high']:.1%}] (n={m['n_generated']})",
             f"{m['sun_rate_sevennet']:.1%} [{m['sun_rate_sevennet_ci_low']:.1%}, {m['sun_rate_sevennet_ci_high']:.1%}]"),
        ]
        return pd.DataFrame(rows, columns=["quantity", "paper / peers", "ours: CHGNet, JARVIS hull",
                                           "ours: CHGNet + class offsets", "ours: SevenNet + class offsets"])

    def structures_table(self) -> pd.DataFrame:
        """The per-structure table committed under ``reports/`` (no structures, rounded energies)."""
        cols = ["id", "variant", "formula", "n_atoms", "spacegroup", "spacegroup_found", "valid", "reason", "pgcgm_valid",
                "unique", "relaxed", "n_steps", "converged", "volume_ratio", "chemistry_class", "ef_composition",
                "ef_chgnet_initial", "ef_chgnet", "ef_sevennet", "ehull_chgnet_initial", "ehull_chgnet", "ehull_chgnet_offset",
                "ehull_sevennet", "ehull_sevennet_offset", "ehull_composition", "relax_error", "relax_lost", "absurd_reason", "novel",
                "ood_distance"]
        return self.generated[[c for c in cols if c in self.generated]].round(4)


def _put(out: dict, key: str, frac: dict) -> None:
    out[key], out[f"{key}_ci_low"], out[f"{key}_ci_high"], out[f"{key}_n"] = (
        frac["value"], frac["ci_low"], frac["ci_high"], frac["n"])


# --------------------------------------------------------------------------- the study
def _ehull(hull: FormationEnergyHull, frame: pd.DataFrame, col: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hull.e_above_hull_many(list(frame["composition"]), frame[col].to_numpy(float))


def _add_hull_columns(frame: pd.DataFrame, hull: FormationEnergyHull, offsets: dict[str, ChemistryOffsets]) -> None:
    for judge, col in (("chgnet", "ef_chgnet"), ("chgnet", "ef_chgnet_initial"), ("sevennet", "ef_sevennet")):
        suffix = "_initial" if col.endswith("_initial") else ""
        frame[f"ehull_{judge}{suffix}"] = _ehull(hull, frame, col)
        frame[f"{col}_offset"] = offsets[judge].apply(list(frame["chemistry_class"]), frame[col].to_numpy(float))
        frame[f"ehull_{judge}{suffix}_offset"] = _ehull(hull, frame, f"{col}_offset")
    frame["ehull_composition"] = _ehull(hull, frame, "ef_composition")


def _score(client, p: ScreeningParams, ids, structures, *, relax: bool, name: str, progress: bool) -> tuple[pd.DataFrame, dict]:
    """:func:`score_shard` over ``structures`` in Dask shards (reused on rerun). Identical inputs (a
    structure both decoders produce) are relaxed and scored once and their rows copied, with
    ``core_seconds_per_item`` NaN on the copies (not timed: the screen's cost counts each
    relaxation once)."""
    from importlib.metadata import version

    from matdiscovery.stability.distributed import map_shards, shard_key

    fn = partial(score_shard, relax=relax, fmax=p.fmax, max_steps=p.max_steps, batch_size=p.relax_batch_size,
                 sevennet_model=p.sevennet_model, compile_chgnet=p.compile_chgnet)
    content = [s.as_dict() for s in structures]
    first: dict[str, int] = {}
    source = [first.setdefault(json.dumps(c, sort_keys=True), k) for k, c in enumerate(content)]
    unique = [k for k in range(len(ids)) if source[k] == k]
    # largest structures first (their shards take longest), so the last shards are short and the workers finish together
    unique = sorted(unique, key=lambda k: -len(structures[k]))
    key = shard_key(name, relax, p.fmax, p.max_steps, p.sevennet_model, p.shard_size, version("chgnet"), version("sevenn"),
                    _code_version(), [ids[k] for k in unique], [content[k] for k in unique],
                    *(["compiled"] if p.compile_chgnet and relax else []))
    frame = map_shards(fn, [(ids[k], structures[k]) for k in unique], shard_size=p.shard_size,
                       cache_dir=project_root() / p.shard_dir, key=f"{name}-{key}", client=client, progress=progress,
                       desc=f"{name} shards", on_error="skip")
    lost = {ids[unique[k]]: reason for k, reason in frame.attrs.get("failed_items", {}).items()}
    by_id = frame.set_index("id", drop=False) if "id" in frame else pd.DataFrame()
    copies = []
    for k in (k for k in range(len(ids)) if source[k] != k):
        original = ids[source[k]]
        if original in lost:
            lost[ids[k]] = lost[original]
        elif original in by_id.index:
            copies.append(by_id.loc[original].copy())
            copies[-1]["id"], copies[-1]["core_seconds_per_item"] = ids[k], np.nan
    attrs = dict(frame.attrs)
    frame = pd.concat([frame, pd.DataFrame(copies).infer_objects()], ignore_index=True) if copies else frame
    frame.attrs = attrs
    return frame, {"computed": attrs.get("shards_computed"), "reused": attrs.get("shards_reused"),
                   "duplicates_copied": len(copies), "lost_items": len(lost), "lost_reasons": sorted(set(lost.values())),
                   "lost_ids": lost}


def _code_version() -> str:
    """Hash of the code that produces a shard's numbers (:func:`score_shard` and the modules it
    calls): a change there invalidates the shards, an edit elsewhere in this module does not."""
    import hashlib
    import inspect

    here = Path(__file__).parent
    h = hashlib.sha1(inspect.getsource(score_shard).encode())
    for name in ("relax.py", "sevennet_judge.py", "energies.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:12]


def run_screening(p: ScreeningParams, *, progress: bool = True) -> ScreeningStudy:
    """The whole screen (module docstring): controls, generated samples, relaxation, judges, hull,
    offsets, novelty, out-of-domain distances and, if asked, the in-run benchmarks."""
    from matdiscovery.datasets import load_crystals, load_jarvis_dft
    from matdiscovery.stability.distributed import dask_client
    from matdiscovery.stability.ood import EmbeddingDomain
    from matdiscovery.stability.train import control_formulas

    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    shards = {}
    address = p.dask_scheduler or os.environ.get("MATDISCOVERY_DASK_SCHEDULER")
    with dask_client(address, n_workers=p.n_workers, threads_per_worker=p.torch_threads) as client:
        shards["cluster"] = "external scheduler" if address else f"LocalCluster {p.n_workers} x {p.torch_threads} thread"
        # the workers sample the generator (one decoder each) while this process loads the rest
        get_samples, train_structures, gen_source = load_generated(p, client=client, progress=progress)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jarvis = load_jarvis_dft(on_error="skip")
        ctrl_formulas = control_formulas()
        hull = FormationEnergyHull.from_frame(jarvis)
        hull_loo = FormationEnergyHull.from_frame(jarvis, exclude=ctrl_formulas)  # controls judged without themselves
        check = jarvis[jarvis["nelements"] >= 2].sample(p.n_hull_check, random_state=p.seed)
        hull_mae = float(np.abs(_ehull(hull, check.assign(ef=check["formation_energy_per_atom"]), "ef") - check["ehull"]).mean())
        judge, judge_metrics, test_pred, judge_source = load_composition_judge(p, progress=progress)

        # controls: the JARVIS e-ph crystals, DFT energies of the same entries
        ctrl = pd.concat([load_crystals("jarvis_epc", s) for s in ("train", "val", "test")], ignore_index=True)
        ctrl = ctrl.merge(jarvis[["jid", "formation_energy_per_atom"]], left_on="material_id", right_on="jid", how="left")
        ctrl = ctrl.sample(n=min(p.n_control, len(ctrl)), random_state=p.seed).sort_index().reset_index(drop=True)
        ctrl = ctrl.assign(composition=ctrl["structure"].map(lambda s: s.composition), dft_ef=ctrl["formation_energy_per_atom"])
        ctrl = ctrl[ctrl["structure"].map(lambda s: check_structure(s).valid)].reset_index(drop=True)
        seconds["inputs"] = time.perf_counter() - t0

        t1 = time.perf_counter()  # queued behind the sampling on the workers
        ctrl_scores, shards["controls"] = _score(client, p, list(ctrl["material_id"].astype(str)), list(ctrl["structure"]),
                                                 relax=False, name="controls", progress=progress)
        seconds["sampling_and_controls_scoring"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        samples = get_samples()
        checks = check_structures(list(samples["structure"]))
        samples["valid"] = checks["valid"].to_numpy()
        samples["reason"] = checks["reason"].to_numpy()
        samples["screened"] = samples["valid"] & samples["pgcgm_valid"].astype(bool)
        samples["unique"] = False
        samples["relaxed"] = False
        rng = np.random.default_rng(p.seed)
        for variant, g in samples.groupby("variant"):
            idx = g.index[g["screened"].to_numpy()]
            samples.loc[idx, "unique"] = unique_mask(list(samples.loc[idx, "structure"]))
            pool = samples.index[(samples["variant"] == variant) & samples["unique"]]
            n = p.n_relax if variant == p.variants[0] else p.n_relax_other
            pick = rng.choice(pool, size=min(n, len(pool)), replace=False) if len(pool) else []
            samples.loc[np.sort(pick), "relaxed"] = True
        seconds["generated_checks"] = time.perf_counter() - t2

        rel = samples[samples["relaxed"]]
        t3 = time.perf_counter()
        gen_scores, shards["generated"] = _score(client, p, list(rel["material_id"]), list(rel["structure"]), relax=True,
                                                 name="generated", progress=progress)
        seconds["relax_and_scoring"] = time.perf_counter() - t3

    # controls: offsets per class and judge, fitted against JARVIS E_f
    ctrl = ctrl.assign(id=ctrl["material_id"].astype(str)).merge(ctrl_scores.drop(columns=["final_structure"]), on="id",
                                                                   how="inner")  # a lost control shard drops its rows
    ctrl["chemistry_class"] = ctrl["composition"].map(chemistry_class)
    ctrl["ef_composition"] = judge.predict(list(ctrl["composition"]))
    offsets = {j: ChemistryOffsets.fit(ctrl["chemistry_class"], ctrl[f"ef_{j}"], ctrl["dft_ef"], n_folds=p.offset_folds,
                                       seed=p.seed) for j in STRUCTURE_JUDGES}
    _add_hull_columns(ctrl, hull_loo, offsets)
    ctrl["dft_ehull_loo"] = _ehull(hull_loo, ctrl, "dft_ef")
    ctrl["absurd_reason"] = ""

    # generated: merge scores, hull with and without offsets, absurd outputs, novelty, OOD
    gen = samples.drop(columns=["cif"], errors="ignore").merge(gen_scores.rename(columns={"id": "material_id"}),
                                                              on="material_id", how="left")
    gen["id"] = gen["material_id"]
    # items of a shard whose workers died (e.g. a relaxation whose graph outgrew memory) are recorded, not scored
    gen["relax_lost"] = gen["id"].map(shards["generated"]["lost_ids"]).fillna("")
    gen.loc[gen["relax_lost"] != "", "relaxed"] = False
    gen["composition"] = gen["structure"].map(lambda s: s.composition)
    gen["chemistry_class"] = gen["composition"].map(chemistry_class)
    gen["ef_composition"] = np.nan
    ok = gen["valid"].to_numpy()
    gen.loc[ok, "ef_composition"] = judge.predict(list(gen.loc[ok, "composition"]))
    _add_hull_columns(gen, hull, offsets)
    gen["absurd_reason"] = ""
    r = gen["relaxed"].to_numpy()
    gen.loc[r, "absurd_reason"] = [
        absurd_reason(formation_energy=row.ef_chgnet, volume_ratio=row.volume_ratio, min_distance=row.min_distance_A,
                      n_isolated=int(row.n_isolated), n_atoms_before=int(row.n_atoms), n_atoms_after=int(row.n_atoms_final),
                      relax_error=str(row.relax_error), volume_per_atom=row.structure.volume / len(row.structure))
        for row in gen[r].itertuples()]
    finals = [Structure.from_dict(json.loads(s)) for s in gen.loc[r, "final_structure"]]
    gen["novel"] = False
    gen.loc[r, "novel"] = ~match_mask(finals, train_structures)
    domain = EmbeddingDomain(judge, k=p.ood_k)
    gen["ood_distance"] = np.nan
    gen.loc[ok, "ood_distance"] = domain.distance([Composition(c) for c in gen.loc[ok, "composition"]])
    seconds["total_screen"] = time.perf_counter() - t0
    return ScreeningStudy(params=p, generated=gen, controls=ctrl, offsets=offsets, judge_metrics=judge_metrics,
                          test_predictions=test_pred, hull_check_mae=hull_mae, seconds=seconds, shards=shards,
                          sources={"composition_judge": judge_source, "generated": gen_source,
                                   "chgnet": _chgnet_version(), "sevennet": _sevennet(p.sevennet_model).version})


def save_table(frame: pd.DataFrame, name: str) -> None:
    """Write ``frame`` as ``reports/figures/<notebook>/<name>.csv`` beside the figures when run by
    the pipeline (staged like them, moved into place only when the notebook succeeds); interactive
    runs write nothing."""
    from matdiscovery.reporting import _staged

    notebook = os.environ.get("MATDISCOVERY_NOTEBOOK")
    if not notebook:
        return
    folder = _staged(Path("reports") / "figures" / notebook)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)


def _chgnet_version() -> str:
    from importlib.metadata import version

    return f"chgnet {version('chgnet')}, weights 0.3.0 (trained on MP2020-corrected MPtrj; no corrections added)"


def run_benchmarks(study: ScreeningStudy, *, progress: bool = True) -> dict:
    """The speed checks reported with the screen: batched FIRE vs CHGNet's ``StructOptimizer`` (one
    process, one thread each; read from the ``bench_relax`` stage's results, ``p.relax_benchmark``,
    measured there with repeats so that this stage's time goes to the screen) and, run here, the
    Dask judge vs the library's best configuration. The screen's own cost per relaxation is in
    :meth:`ScreeningStudy.screen_throughput`; the Dask relax screen vs ``StructOptimizer`` in N
    processes is ``benchmarks/bench_relax.py --dask``."""
    from matdiscovery.stability.benchmark import compare_to_best_library
    from matdiscovery.stability.distributed import dask_client

    p = study.params
    out: dict = {}
    if p.relax_benchmark:
        path = project_root() / p.relax_benchmark
        if not path.exists():
            raise FileNotFoundError(f"relax_benchmark = {p.relax_benchmark!r} does not exist; run `dvc repro bench_relax` "
                                    "(or set relax_benchmark = None)")
        res = json.loads(path.read_text())
        out["relax_speedup_vs_structoptimizer"] = res["speedup"]  # FIRE, the screen's optimiser, on both sides
        if "speedup_vs_fastest_structoptimizer" in res:  # e.g. StructOptimizer with BFGS: faster, other minima
            out["relax_speedup_vs_fastest_structoptimizer"] = res["speedup_vs_fastest_structoptimizer"]
        out["relax_benchmark"] = res | {"source": f"{p.relax_benchmark} (stage bench_relax)"}
    if p.bench_throughput_n:
        structures = list(study.controls["structure"].iloc[: p.bench_throughput_n])
        with dask_client(p.dask_scheduler, n_workers=p.n_workers, threads_per_worker=1) as client:
            # one balanced shard per worker thread, as the library's process pool splits the structures
            res = compare_to_best_library(structures, client=client, repeats=p.bench_repeats, n_processes=p.n_workers,
                                          shard_size=-(-len(structures) // p.n_workers))
            out["chgnet_throughput_ratio_vs_best_library_config"] = res["ratio_vs_best_library_config"]
            out["throughput_benchmark"] = {k: v for k, v in res.items() if k != "energies"}
    study.benchmarks.update(out)
    return out
