"""Verdict rules, paired statistics and the study's result objects (synthetic outcomes: no training)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from matdiscovery.hessian.experiment import DatasetResult, SeedOutcome, StudyResult, ci_half_widths, run_jobs
from matdiscovery.hessian.stats import dataset_verdict, mean_ci, paired_difference, relative_difference, verdict


def test_verdict_rule():
    assert verdict(0.1, 0.3) == "worse"
    assert verdict(-0.3, -0.01) == "better"
    assert verdict(-0.1, 0.2) == "indistinguishable"
    assert verdict(0.0, 0.2) == "indistinguishable"  # touching zero is not excluding it
    with pytest.raises(ValueError, match="finite confidence interval"):
        verdict(float("nan"), 1.0)
    with pytest.raises(ValueError, match="exceeds"):
        verdict(1.0, 0.0)


def test_dataset_verdict():
    assert dataset_verdict(["worse", "indistinguishable"]) == "worse"
    assert dataset_verdict(["better", "better"]) == "better"
    assert dataset_verdict(["worse", "better"]) == "mixed"
    assert dataset_verdict(["indistinguishable"] * 3) == "indistinguishable"
    with pytest.raises(ValueError, match="drawn from"):
        dataset_verdict(["bad"])
    with pytest.raises(ValueError, match="non-empty"):
        dataset_verdict([])


def test_paired_difference_matches_scipy_and_pairs_by_seed():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 1.0, 6)  # large seed-to-seed noise shared by both methods
    a = 10 + seed_effect + 0.2 + rng.normal(0, 0.01, 6)
    b = 10 + seed_effect
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(np.mean(a - b))
    assert d.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert d.verdict == "worse"  # pairing removes the shared seed noise
    assert d.ci_low > 0 and d.half_width == pytest.approx((d.ci_high - d.ci_low) / 2)
    # unpaired, the same difference is lost in the seed noise
    lo, hi = stats.ttest_ind(a, b).confidence_interval()
    assert lo < 0 < hi
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and (lo, hi) == pytest.approx((2 - stats.t.ppf(0.975, 2) / np.sqrt(3), 2 + stats.t.ppf(0.975, 2) / np.sqrt(3)))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paired_difference([1.0], [2.0])
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        paired_difference([1.0, 2.0], [1.0])
    np.testing.assert_allclose(relative_difference([2.0, 3.0], [1.0, 2.0]), [1.0, 0.5])


def _outcome(seed: int, effect: dict[str, float], rng) -> SeedOutcome:
    """A seed of a 2-task data set: STL MAE 1 + noise; each method adds ``effect[method]`` to task a."""
    rows = []
    noise = rng.normal(0, 0.05, 2)
    for method in ("stl", "mtl", "mtl_wide", "uw"):
        for t, task in enumerate(("a", "b")):
            mae = 1.0 + noise[t] + (effect.get(method, 0.0) if task == "a" else 0.0) + rng.normal(0, 0.002)
            rows.append({"seed": seed, "method": method, "task": task, "mae": mae, "n_test": 1000, "best_epoch": 3})
    curv = pd.DataFrame([{"seed": seed, "solution": sol, "task": task, "batch": b,
                          "top_eigenvalue": (10.0 if task == "a" else 2.0) * (1 + 0.1 * seed) + b,
                          "converged": True, "n_matvecs": 10}
                         for sol in ("mtl", "stl") for task in ("a", "b") for b in range(3)])
    neg = pd.DataFrame([{"seed": seed, "task": t, "negative_fraction": 0.1} for t in ("a", "b")])
    cos = np.array([[1.0, -0.2], [-0.2, 1.0]])
    return SeedOutcome(pd.DataFrame(rows), curv, neg, cos, [], {}, {}, 1.0)


@pytest.fixture
def result():
    rng = np.random.default_rng(1)
    counts = pd.DataFrame({"train": [100, 100], "val": [50, 50], "test": [1000, 1000]}, index=["a", "b"])
    outcomes = [_outcome(s, {"mtl": 0.1, "uw": -0.1}, rng) for s in range(5)]
    return DatasetResult("qm8", ("a", "b"), counts, outcomes)


def test_dataset_result_verdicts_and_metrics(result):
    v = result.verdicts()
    assert v.loc["a", "mtl"] == "worse" and v.loc["a", "uw"] == "better" and v.loc["a", "mtl_wide"] == "indistinguishable"
    assert (v.loc["b"] == "indistinguishable").all()
    assert result.dataset_verdicts() == {"mtl": "worse", "mtl_wide": "indistinguishable", "uw": "better"}
    m = result.metrics()
    a = m["a"]
    for key in ("mae_stl", "mae_mtl", "mae_mtl_ci_low", "mtl_minus_stl_ci_low", "mtl_minus_stl_ci_high", "verdict",
                "mae_uw", "uw_minus_stl_ci_low", "uw_minus_stl_ci_high", "uw_verdict", "uw_vs_mtl_verdict",
                "top_eigenvalue", "top_eigenvalue_seed_sd", "grad_cosine"):
        assert key in a, key
    assert a["verdict"] == "worse" and a["uw_verdict"] == "better" and a["uw_vs_mtl_verdict"] == "better"
    assert a["mtl_minus_stl_ci_low"] > 0
    per_seed = [10.0 * (1 + 0.1 * s) + 1.0 for s in range(5)]  # batch means (batches add 0, 1, 2)
    assert a["top_eigenvalue"] == pytest.approx(np.mean(per_seed))
    assert a["top_eigenvalue_seed_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert a["top_eigenvalue_batch_sd"] == pytest.approx(1.0)
    assert a["grad_cosine"] == pytest.approx(-0.2)
    assert m["verdict"] == "worse" and m["n_seeds"] == 5
    rho = result.curvature_penalty()
    assert rho["n"] == 10 and -1 <= rho["spearman"] <= 1


def test_study_headline_and_resolution(result):
    study = StudyResult({"qm8": result}, None)
    assert study.molecules_dataset == "qm8"
    head = study.headline()
    assert head.loc[("qm8", "a"), "ours: MTL vs STL"] == "worse"
    assert head.loc[("qm8", "a"), "uw vs STL"] == "better"
    assert "MTL worse than STL on QM8" in head.loc[("qm8", "a"), "paper (arXiv:2208.01684)"]
    m = study.metrics()
    assert m["molecules_dataset"] == "qm8" and m["qm8"]["a"]["verdict"] == "worse"
    lines = study.verdict_summary()
    assert lines[0] == ("qm8: mtl vs STL is worse — worse on 1 of 2 targets (a), better on 0 (none), "
                        "indistinguishable on the rest.")
    assert len(lines) == 3
    res = ci_half_widths(study)
    assert (res["ci_half_width"] > 0).all() and (res["n_test_labelled"] == 1000).all()


def _square(x):
    return x * x


def test_run_jobs_keeps_order_and_runs_followups_next():
    order = []

    def follow(result):
        order.append("followup")
        return (_square, result + 1)

    out = run_jobs([(_square, 2), (_square, 3)], n_jobs=1, followups={0: follow}, progress=False)
    assert out == [4, 9, 25]
    with pytest.raises(ValueError, match="n_jobs"):
        run_jobs([], n_jobs=0)
