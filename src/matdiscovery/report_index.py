"""``reports/index.html`` and ``metrics/summary/<name>.json``: each report's headline metrics.

Written by the ``index`` stage (``python -m matdiscovery.report_index``); kept apart from
:mod:`matdiscovery.reporting` and the runner so that changing what the index shows does not
invalidate the notebook stages. The full metrics stay in ``metrics/<name>.json`` (committed;
``dvc metrics show metrics/<name>.json`` prints one file); the summaries are the DVC metrics
files, so a plain ``dvc metrics show`` prints a short table.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Any, Mapping

from matdiscovery.paths import project_root

#: Metrics shown for each report on ``reports/index.html`` (the keys each issue asks for).
HEADLINE_METRICS = {
    "00_data_overview": [
        "n_supercon_rows", "n_supercon_skipped", "n_jarvis_rows", "n_qm8_rows", "crystal_min_distance_A",
    ],
    "01_generator_smoothness": [
        "paper_input_space_smooth", "roughness_enters_at", "rough.raw", "rough.premerge", "rough.final",
        "lipschitz_raw_median", "lipschitz_premerge_median", "jump_rate", "jump_cause.merging",
        "linear_control.roughness_enters_at", "rough_control.roughness_enters_at", "remedy.jump_rate",
        "spacegroup_recovery", "remedy.spacegroup_recovery", "validity_combined", "remedy.validity_combined",
        "n_training_records", "generator_parameters", "paper_generator_parameters",
    ],
    "02_stability_screening": [
        "n_relaxed", "fraction_stable_relaxed_chgnet_0.25", "fraction_stable_relaxed_chgnet_0.25_offset",
        "fraction_stable_relaxed_chgnet_0.25_offset_ci_low", "fraction_stable_relaxed_chgnet_0.25_offset_ci_high",
        "fraction_stable_unrelaxed_chgnet_0.25_offset", "paper_pgcgm_dft_fraction_ehull_lt_0.25",
        "fraction_negative_ef_relaxed_chgnet", "paper_pgcgm_dft_fraction_negative_ef",
        "fraction_stable_relaxed_chgnet_0.1_offset", "fraction_stable_relaxed_sevennet_0.1_offset",
        "sun_rate", "sun_rate_ci_low", "sun_rate_ci_high", "n_rejected_absurd", "judge_agreement_0.1_offset",
        "judge_chgnet_mae_eV_per_atom", "judge_sevennet_mae_eV_per_atom", "chemistry_offset.oxide_fluoride",
        "chemistry_offset.non_oxide_anion", "relax_speedup_vs_structoptimizer",
        "relax_speedup_vs_fastest_structoptimizer", "chgnet_throughput_ratio_vs_best_library_config",
        "ood_spearman_distance_vs_judge_disagreement",
    ],
    "03_hessian_spectra": [
        "molecules_dataset", "qm8.verdict", "jarvis.verdict", "qm8.curvature_verdict", "jarvis.curvature_verdict",
        "qm8.uw_verdict", "jarvis.uw_verdict", "qm8.upgrad_verdict", "jarvis.upgrad_verdict",
        "qm8.famo_verdict", "jarvis.famo_verdict", "qm8.mtl_wide_verdict", "jarvis.mtl_wide_verdict",
        "pyhessian_speedup.top1", "pyhessian_speedup.topk", "pyhessian_speedup.trace", "pyhessian_speedup.density",
        "hvp_over_gradient",
    ],
    "04_closed_loop": [
        "improvement_ratio", "improvement_ratio_ci_low", "improvement_ratio_ci_high", "paper_improvement_ratio_lower_bound",
        "provenance_control_improvement_ratio", "closed_vs_open_discoveries_diff",
        "closed_vs_open_discoveries_diff_p_value", "success_rate_by_cycle_closed", "success_rate_by_cycle_open",
        "provenance_control_success_rate_by_cycle", "pool_formula_style_auc", "hidden_positive_near_duplicate_fraction",
        "time_split_improvement_ratio", "ucb_spread_equals_bernoulli", "n_seeds", "rediscovered_compounds",
        "paper_rediscovered_superconductors", "rediscovered_families", "zr_in_ni_max_probability",
        "classifier_roc_auc_grouped",
    ],
}


NOTEBOOKS = tuple(HEADLINE_METRICS)


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics as one level with ``.``-joined keys, as DVC shows them
    (``{"qm9": {"trace": 1}}`` → ``qm9.trace``)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _paper_key(key: str) -> str:
    head, _, leaf = key.rpartition(".")
    return f"{head}.paper_{leaf}" if head else f"paper_{leaf}"


def headline(name: str, headline_keys: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """The headline metrics of report ``name`` (flat keys, the paper's value beside where one
    exists); a listed key absent from ``metrics/<name>.json`` is an error, not a silent gap."""
    metrics = flatten_metrics(json.loads((project_root() / "metrics" / f"{name}.json").read_text()))
    keys = list((headline_keys or HEADLINE_METRICS).get(name, []))
    absent = [k for k in keys if k not in metrics]
    if absent:
        raise KeyError(f"metrics/{name}.json has no headline key(s) {absent}")
    out: dict[str, Any] = {}
    for key in keys:
        out[key] = metrics[key]
        if _paper_key(key) in metrics:
            out[_paper_key(key)] = metrics[_paper_key(key)]
    return out


def write_summaries(names: list[str], headline_keys: Mapping[str, list[str]] | None = None) -> list[Path]:
    """``metrics/summary/<name>.json``: the few headline keys ``dvc metrics show`` prints."""
    folder = project_root() / "metrics" / "summary"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        target = folder / f"{name}.json"
        target.write_text(json.dumps(headline(name, headline_keys), indent=2, sort_keys=True) + "\n")
        written.append(target)
    return written


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        return html.escape(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def write_index(names: list[str], out: str | Path = "reports/index.html",
                headline: Mapping[str, list[str]] | None = None, n_default: int = 8) -> Path:
    """A small HTML page linking each ``reports/<name>.html`` with its headline metrics.

    ``headline[name]`` lists the metric keys (flattened with ``.``) shown for ``name``, each with
    the paper's value where a ``paper_<key>`` metric exists; without it, the first
    ``n_default`` numeric metrics are shown.
    """
    root = project_root()
    rows = []
    for name in names:
        mfile = root / "metrics" / f"{name}.json"
        metrics = flatten_metrics(json.loads(mfile.read_text())) if mfile.exists() else {}
        keys = list((headline or {}).get(name, []))
        if not keys:
            keys = [k for k, v in metrics.items() if isinstance(v, (int, float, list))
                    and not k.rsplit(".", 1)[-1].startswith("paper_")][:n_default]
        items = []
        for key in keys:
            if key not in metrics:
                continue
            paper = metrics.get(_paper_key(key))
            beside = f" (paper: {_format_value(paper)})" if paper is not None else ""
            items.append(f"<li><code>{html.escape(key)}</code>: {_format_value(metrics[key])}{beside}</li>")
        rest = len(metrics) - len(items)
        more = f"<li>… {rest} more in <code>metrics/{name}.json</code></li>" if rest > 0 else ""
        rows.append(
            f"<tr><td><a href='{name}.html'>{html.escape(name)}</a></td><td><ul>{''.join(items)}{more}</ul></td></tr>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>matdiscovery reports</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td{vertical-align:top;padding:.4em;"
        "border-bottom:1px solid #ddd}ul{margin:0}</style></head><body><h1>matdiscovery reports</h1>"
        "<p>Rendered by <code>dvc repro</code>; numbers from <code>metrics/*.json</code>.</p>"
        f"<table><tr><th>report</th><th>headline metrics</th></tr>{''.join(rows)}</table></body></html>\n"
    )
    target = root / out
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matdiscovery.report_index", description=__doc__)
    parser.add_argument("names", nargs="*", default=list(NOTEBOOKS))
    args = parser.parse_args(argv)
    names = [n for n in args.names if (project_root() / "reports" / f"{n}.html").exists()]
    write_summaries(names)
    print(write_index(names, headline=HEADLINE_METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
