"""Generator validity metrics and the notebook-01 study object (issue 13)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matdiscovery.generator.data import TrainingSet, record_from_structure, record_structure
from matdiscovery.generator.metrics import (
    coverage,
    evaluate_validity,
    match_mask,
    showcase,
    unique_mask,
    wilson,
)
from matdiscovery.generator.model import CrystalGAN
from matdiscovery.generator.sampling import sample
from matdiscovery.generator.study import GeneratorStudy, Run, run_study
from matdiscovery.params.generator import SmoothnessParams


def _perov(a: float, el=("Sr", "Ti", "O")) -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), list(el), [[0, 0, 0], [.5, .5, .5], [.5, .5, 0]])


def test_wilson_interval():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 10)[0] == pytest.approx(0.0) and wilson(10, 10)[1] == pytest.approx(1.0)
    assert all(np.isnan(wilson(0, 0)))


def test_unique_and_match_masks():
    # StructureMatcher scales volumes (as CDVAE/DiffCSP use it): a 6 Å SrTiO3 cell is the same crystal
    other = Structure(Lattice.tetragonal(3.9, 6.5), ["Sr", "Ti", "O", "O", "O"],
                      [[0, 0, 0], [.5, .5, .3], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    structs = [_perov(3.9), _perov(3.92), _perov(4.0, ("Ba", "Ti", "O")), _perov(6.0), other]
    assert unique_mask(structs).tolist() == [True, False, True, False, True]
    ref = [_perov(3.91)]
    assert match_mask(structs, ref).tolist() == [True, True, False, True, False]


def test_coverage_indicators():
    gen = (np.array([[0.0], [5.0]]), np.array([[0.0], [0.0]]))
    ref = (np.array([[0.1], [2.0], [5.05]]), np.array([[0.0], [0.0], [3.0]]))
    recall, precision = coverage(gen, ref, (0.2, 1.0))
    assert recall.tolist() == [True, False, False] and precision.tolist() == [True, False]


def _tiny_run() -> Run:
    torch.manual_seed(0)
    model = CrystalGAN([221, 225, 123], 1.4, 0.2, noise_dim=8, hidden=(16, 16), critic_hidden=(8,))
    train = [record_from_structure(_perov(a, el), f"t{i}", "perov_5")
             for i, (a, el) in enumerate([(3.9, ("Sr", "Ti", "O")), (4.0, ("Ba", "Ti", "O")), (3.8, ("Ca", "Ti", "O"))])]
    held = [record_from_structure(_perov(4.1, ("Ba", "Zr", "O")), "h0", "perov_5")]
    model.training_records = train
    model.history = pd.DataFrame({"epoch": [0], "critic_wdist": [0.0], "dist_loss_A2": [1.0]})
    screening = pd.DataFrame([{"source": "perov_5", "material_id": r.material_id, "formula": "x", "spacegroup": 221,
                               "outcome": o, "in_pgcgm_ids": False}
                              for r, o in [(train[0], "train"), (train[1], "train"), (train[2], "train"), (held[0], "heldout")]])
    samples = sample(model, 12, seed=0, decoders=("pgcgm", "snap"), progress=False)
    return Run(model, TrainingSet(train, held, screening, {}), samples, "tiny test model", True)


def test_evaluate_validity_and_showcase():
    run = _tiny_run()
    res = evaluate_validity(run.samples, train=[record_structure(r) for r in run.model.training_records],
                            heldout=[record_structure(r) for r in run.training.heldout], cov_quantile=0.5,
                            n_bootstrap=50, seed=0)
    for decoder in ("pgcgm", "snap"):
        m = res.per_decoder[decoder]
        for key in ("validity_structural", "validity_compositional_smact", "spacegroup_recovery", "validity_combined",
                    "uniqueness", "novelty_vs_training", "novelty_vs_heldout", "near_duplicate_rate", "cov_recall",
                    "cov_precision"):
            assert m[key]["ci_low"] is None or np.isnan(m[key]["ci_low"]) or m[key]["ci_low"] <= m[key]["value"] <= m[key]["ci_high"]
        assert m["validity_structural"]["n"] == 12
    assert res.table().shape[1] == 2
    picked = showcase(run.samples, 3)
    assert len(picked) <= 3


def _params(**kw) -> SmoothnessParams:
    base = dict(seed=0, metrics_path=None, generator_dir="models/none", n_bases=2, n_noise_dims=2, n_element_partners=1,
                n_sg_switches=1, steps=[1e-3, 0.1, 1.0], small_step=1e-2, max_bisect=2, bisect_width=1e-6,
                verdict_factor=100.0, rough_step=0.05, linear_fit_samples=100, max_eval_samples=12, heldout_draws=2, n_bootstrap=50,
                cov_quantile=0.5, n_showcase=2, fallback_limit_per_split=5, fallback_epochs=1, torch_threads=1)
    return SmoothnessParams.from_mapping({**base, **kw})


def test_study_metrics_have_the_issue_keys():
    study = run_study(_params(), _tiny_run(), progress=False)
    assert isinstance(study, GeneratorStudy)
    m = study.metrics()
    required = ["lipschitz_raw_median", "lipschitz_raw_p95", "lipschitz_premerge_median", "jump_rate", "jump_cause",
                "spacegroup_recovery", "validity_compositional_smact", "validity_combined", "near_duplicate_rate",
                "cov_recall", "cov_precision", "n_training_records", "n_spacegroups", "generator_parameters"]
    for key in required:
        assert key in m, key
    for sub in ("linear_control", "remedy", "rough_control"):
        for key in ("lipschitz_raw_median", "lipschitz_raw_p95", "lipschitz_premerge_median", "jump_rate", "jump_cause"):
            assert key in m[sub], (sub, key)
    assert set(m["jump_cause"]) == {"spacegroup_change", "composition_change", "orbit_collapse", "merging",
                                    "spglib_label_only"}
    assert m["remedy"]["spacegroup_recovery"] >= 0 and m["paper_generator_parameters"] == 4_750_854
    assert m["rough_control"]["rough"]["raw"] and not m["rough"]["raw"]
    sentence = study.where_roughness_lives()
    assert sentence.startswith("The roughness lives") and sentence.endswith(".")
    assert "remedy (ours)" in study.paper_table().index


def test_smoothness_params_are_strict():
    from matdiscovery.params import ParameterError

    with pytest.raises(ParameterError, match="n_bases"):
        _params(n_bases=0)
    with pytest.raises(ParameterError, match="unknown parameter 'n_base'"):
        SmoothnessParams.from_mapping({**_params().model_dump(), "n_base": 3})
