"""Notebook 01's study: where the generator's roughness lives, its controls, remedy and validity.

:func:`load_or_train` gives the trained generator and its training set (the ``train_generator``
outputs, or the same training path run small when they are absent); :func:`run_study` runs the
staged smoothness analysis of our generator (decoders ``pgcgm``, ``pgcgm_rounded``, ``snap``),
the linear and rough-layer controls (decoder ``pgcgm``) and the validity metrics of the
samples; :class:`GeneratorStudy` holds the results and builds the metrics dict.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from matdiscovery.generator.data import TrainingSet, record_structure
from matdiscovery.generator.metrics import ValidityResult, evaluate_validity
from matdiscovery.generator.model import PGCGM_CRITIC_PARAMETERS, PGCGM_GENERATOR_PARAMETERS, CrystalGAN, n_parameters
from matdiscovery.generator.sampling import sample
from matdiscovery.generator.smoothness import (
    INPUT_CAUSES,
    SmoothnessResult,
    base_points,
    linear_control,
    rough_control,
    run_smoothness,
)
from matdiscovery.params.generator import SmoothnessParams, TrainGeneratorParams

#: (generator, decoder) of each configuration the study reports
COMBOS: dict[str, tuple[str, str]] = {
    "ours": ("ours", "pgcgm"),
    "rounded": ("ours", "pgcgm_rounded"),
    "remedy": ("ours", "snap"),
    "linear_control": ("linear_control", "pgcgm"),
    "rough_control": ("rough_control", "pgcgm"),
}
#: PGCGM's published scale: training ids (22,064 OQMD + 7,432 MP + 4,041 ICSD + 112 other), 20 groups
PAPER = {"paper_n_training_records": 33_649, "paper_n_spacegroups": 20,
         "paper_generator_parameters": PGCGM_GENERATOR_PARAMETERS, "paper_critic_parameters": PGCGM_CRITIC_PARAMETERS,
         "paper_input_space_smooth": False}
STAGE_WORDS = {"raw": "the raw network output", "premerge": "the expanded cell before merging",
               "final": "the decoded crystal"}


@dataclass
class Run:
    """A trained generator, its training set and samples, and where they came from."""

    model: CrystalGAN
    training: TrainingSet
    samples: pd.DataFrame
    label: str
    fallback: bool


def load_or_train(p: SmoothnessParams, root: Path, progress: bool = True) -> Run:
    """The ``train_generator`` outputs in ``root / p.generator_dir``; when absent (a fresh clone),
    :func:`~matdiscovery.generator.train.run_training` with the stage's own parameters made small
    (``fallback_limit_per_split`` structures per split, ``fallback_epochs`` epochs, every space
    group kept, ``max_eval_samples`` samples), labelled as such."""
    from matdiscovery.generator.sampling import read_samples
    from matdiscovery.generator.train import load_run, run_training

    folder = root / p.generator_dir
    fallback = not (folder / "generator.pt").exists()
    if fallback:
        small = TrainGeneratorParams.from_yaml_section("train_generator", root / "params.yaml").model_copy(update={
            "limit_per_split": p.fallback_limit_per_split, "epochs": p.fallback_epochs, "min_sg_count": 1,
            "n_jobs": 1, "n_samples": p.max_eval_samples})
        with tempfile.TemporaryDirectory(prefix="generator_fallback_") as tmp:
            run_training(small, tmp, progress=progress)
            model, training = load_run(tmp)
            samples = read_samples(tmp)
    else:
        model, training = load_run(folder)
        samples = read_samples(folder)
    samples = pd.concat([g.head(p.max_eval_samples) for _, g in samples.groupby("variant", sort=False)], ignore_index=True)
    label = (f"FALLBACK: trained here for {p.fallback_epochs} epochs on {len(model.training_records)} records "
             "(no train_generator checkpoint)") if fallback else f"checkpoint {p.generator_dir}/generator.pt"
    return Run(model, training, samples, label, fallback)


#: validity variants: samples.csv (PGCGM's conditions) and samples on held-out / training crystals' conditions
VALIDITY_VARIANTS = {
    "pgcgm": "PGCGM conditions, PGCGM merging", "snap": "PGCGM conditions, Wyckoff snapping",
    "heldout_pgcgm": "held-out conditions, PGCGM merging", "heldout_snap": "held-out conditions, Wyckoff snapping",
    "training_pgcgm": "training conditions, PGCGM merging", "training_snap": "training conditions, Wyckoff snapping",
}
#: which sample set each headline metric comes from (against PGCGM's random chemistries novelty is
#: trivially 1, coverage 0 and memorisation impossible): held-out conditions for coverage and
#: re-discovery, training conditions for memorisation, samples.csv for the rest
HEADLINE_SOURCE = {"cov_recall": "heldout", "cov_precision": "heldout", "novelty_vs_heldout": "heldout",
                   "near_duplicate_rate": "training", "novelty_vs_training": "training"}


@dataclass
class GeneratorStudy:
    """Results of notebook 01 (:func:`run_study`)."""

    run: Run
    smoothness: SmoothnessResult
    validity: ValidityResult

    def summaries(self) -> dict[str, dict]:
        return {name: self.smoothness.summary(g, d) for name, (g, d) in COMBOS.items()}

    def verdict_table(self) -> pd.DataFrame:
        return self.smoothness.verdict_table(list(COMBOS.values()))

    def where_roughness_lives(self) -> str:
        """One sentence, from the verdicts and jump causes of ours and the controls."""
        s = self.summaries()
        ours, lin, rough = s["ours"], s["linear_control"], s["rough_control"]
        smooth = [STAGE_WORDS[st] for st in ("raw", "premerge") if not ours["rough"][st]]
        causes = {c: n for c, n in ours["jump_cause"].items() if c not in INPUT_CAUSES}
        total = max(sum(causes.values()), 1)
        top = max(causes, key=causes.get)
        if ours["roughness_enters_at"] == "final":
            where = (f"in the decoding: {' and '.join(smooth)} stay smooth while the decoded crystal jumps in "
                     f"{100 * ours['jump_rate_decoding']:.1f} % of small on-manifold perturbations for reasons of its own "
                     f"({100 * causes[top] / total:.0f} % of those jumps: {top.replace('_', ' ')})")
        elif ours["roughness_enters_at"] == "none":
            where = "nowhere we could detect: no stage is rough at the probed scales"
        else:
            where = f"already in {STAGE_WORDS[ours['roughness_enters_at']]}"
        return (f"The roughness lives {where}; a perfectly smooth (linear) network through the same decoding is rough "
                f"from the {lin['roughness_enters_at']} stage on, the network with a staircase layer from the "
                f"{rough['roughness_enters_at']} stage on.")

    def validity_table(self) -> pd.DataFrame:
        return self.validity.table().rename(columns=VALIDITY_VARIANTS)

    def paper_table(self) -> pd.DataFrame:
        """Paper (arXiv:2309.12323 on PGCGM) beside ours, every cell in full."""
        s, v = self.summaries(), self.validity.per_decoder
        d, r = v["pgcgm"], v["snap"]
        m = self.run.model

        def ci(x):
            return f"{x['value']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]"

        rows = [
            ("input space smooth?", "no (qualitative; inputs, metric and property model not public)", self.where_roughness_lives()),
            ("model size", f"generator {PGCGM_GENERATOR_PARAMETERS:,}, critic {PGCGM_CRITIC_PARAMETERS:,} parameters",
             f"generator {n_parameters(m.generator):,}, critic {n_parameters(m.critic):,} parameters"),
            ("training set", "33,649 ternaries (OQMD, MP, ICSD), 20 space groups",
             f"{len(m.training_records):,} ternaries (perov_5, JARVIS e-ph, 3DSC MP) in {len(m.spacegroups)} of PGCGM's groups"),
            ("space-group recovery", "PGCGM keeps only samples whose group spglib recovers (rate not reported)",
             f"{ci(d['spacegroup_recovery'])} with PGCGM merging; {ci(r['spacegroup_recovery'])} with Wyckoff snapping"),
            ("remedy (ours)", "—",
             f"Wyckoff snapping: decoding jump rate {s['remedy']['jump_rate_decoding']:.3f} vs {s['ours']['jump_rate_decoding']:.3f}; "
             f"combined validity {ci(r['validity_combined'])} vs {ci(d['validity_combined'])}; "
             f"structural validity {ci(r['validity_structural'])} vs {ci(d['validity_structural'])}"),
        ]
        return pd.DataFrame(rows, columns=["aspect", "paper", "ours"]).set_index("aspect")

    def metrics(self) -> dict:
        """Nested metrics: ours (PGCGM decoding) at top level, the other configurations in
        sub-dicts (:data:`COMBOS`); validity of every variant under ``validity`` with intervals,
        the headline ones also at top level (and ``remedy``): from samples.csv, except
        :data:`HEADLINE_SOURCE`; sizes; paper values."""
        s = self.summaries()
        out: dict = dict(s["ours"])
        out["input_space_smooth"] = s["ours"]["roughness_enters_at"] == "none"   # input → decoded crystal
        out["network_smooth"] = not s["ours"]["rough"]["raw"]
        for name in ("linear_control", "rough_control", "remedy", "rounded"):
            out[name] = dict(s[name])
        per = self.validity.per_decoder
        out["validity"] = {v: {k: {"value": x["value"], "ci": [x["ci_low"], x["ci_high"]], "n": x["n"]} for k, x in m.items()}
                           for v, m in per.items()}
        for decoder, target in (("pgcgm", out), ("snap", out["remedy"])):
            for k in per[decoder]:
                src = per[f"{HEADLINE_SOURCE[k]}_{decoder}" if k in HEADLINE_SOURCE else decoder][k]
                target[k] = src["value"]
                target[f"{k}_ci"] = [src["ci_low"], src["ci_high"]]
        out["cov_threshold_structure"], out["cov_threshold_composition"] = self.validity.cov_thresholds
        out["cov_recall_training_reference"] = self.validity.cov_recall_training_reference
        m = self.run.model
        ft = self.run.training.filter_table()
        out.update({
            "n_training_records": len(m.training_records), "n_heldout_records": len(self.run.training.heldout),
            "n_spacegroups": len(m.spacegroups), "generator_parameters": n_parameters(m.generator),
            "critic_parameters": n_parameters(m.critic), "fallback_model": self.run.fallback,
            "training_set": {src: {"candidates": int(ft.loc[src, "candidates"]), "kept": int(ft.loc[src, "after dedup"]),
                                   "in_pgcgm_ids": int(ft.loc[src, "in PGCGM ids"])} for src in ft.index},
            **PAPER,
        })
        return out


def run_study(p: SmoothnessParams, run: Run, progress: bool = True) -> GeneratorStudy:
    """Smoothness of ours and the controls around ``p.n_bases`` seeded bases; validity of
    samples.csv, of ``p.heldout_draws`` samples per held-out crystal's conditions and of as many
    on the conditions of a seeded subset of training crystals."""
    model = copy.deepcopy(run.model).double()   # float64: bisection to 1e-6 is not limited by float32 resolution
    generators = {
        "ours": (model, ["pgcgm", "pgcgm_rounded", "snap"]),
        "linear_control": (linear_control(model, n_fit=p.linear_fit_samples, seed=p.seed + 1), ["pgcgm"]),
        "rough_control": (rough_control(model, p.rough_step), ["pgcgm"]),
    }
    bases = base_points(model, p.n_bases, seed=p.seed)
    smooth = run_smoothness(generators, bases, steps=p.steps, n_noise_dims=p.n_noise_dims,
                            n_element_partners=p.n_element_partners, n_sg_switches=p.n_sg_switches,
                            max_bisect=p.max_bisect, bisect_width=p.bisect_width, factor=p.verdict_factor,
                            small_step=p.small_step, seed=p.seed, progress=progress)
    held = [r for r in run.training.heldout if r.spacegroup in run.model.spacegroups]
    rng = np.random.default_rng(p.seed)
    train_recs = run.model.training_records
    seen = [train_recs[i] for i in rng.choice(len(train_recs), size=min(len(held), len(train_recs)), replace=False)]
    frames = [run.samples]
    for name, recs in (("heldout", held), ("training", seen)):
        f = sample(run.model, p.heldout_draws * len(recs), seed=p.seed, decoders=("pgcgm", "snap"), conditions="records",
                   records=recs, progress=progress)
        frames.append(f.assign(variant=f"{name}_" + f["variant"]))
    samples = pd.concat(frames, ignore_index=True)
    validity = evaluate_validity(samples, train=[record_structure(r) for r in run.model.training_records],
                                 heldout=[record_structure(r) for r in run.training.heldout],
                                 cov_quantile=p.cov_quantile, n_bootstrap=p.n_bootstrap, seed=p.seed)
    return GeneratorStudy(run, smooth, validity)
