"""The notebook runner, strict parameters, figure files, metrics and the index, on a throw-away
project (plus consistency checks of the real notebooks, params.yaml and dvc.yaml)."""

import json
import subprocess
import sys

import nbformat
import pytest
import yaml

from matdiscovery import pipeline, report_index, reporting
from matdiscovery.params import NOTEBOOK_PARAMS, ParameterError, load_params, params_model
from matdiscovery.paths import project_root

NB = "00_data_overview"  # the tiny project borrows notebook 00's name and parameters model


def _write_notebook(root, body: str, params: str = "seed = 0\nsample_structures = 2\ntop_elements = 3\nmetrics_path = None"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "notebooks" / f"{NB}.ipynb")


GOOD_BODY = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matdiscovery.params.overview import OverviewParams
from matdiscovery.reporting import save_figure, save_metrics
p = OverviewParams.from_namespace(globals())
fig, ax = plt.subplots()
ax.plot(range(p.top_elements))
save_figure(fig, "line")
save_metrics({"n_squared": p.sample_structures ** 2, "nested": {"a": 1}}, p.metrics_path)
print(p.sample_structures)
"""


@pytest.fixture()
def tiny_project(tmp_path, monkeypatch):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params.yaml").write_text(f"{NB}:\n  seed: 1\n  sample_structures: 7\n  top_elements: 4\n")
    _write_notebook(tmp_path, GOOD_BODY)
    monkeypatch.setenv("MATDISCOVERY_ROOT", str(tmp_path))
    return tmp_path


def _set_params(root, **values):
    (root / "params.yaml").write_text(yaml.safe_dump({NB: values}))


def test_run_writes_report_metrics_and_figures_deterministically(tiny_project):
    html = pipeline.run_notebook(NB)
    assert html == tiny_project / "reports" / f"{NB}.html"
    metrics = json.loads((tiny_project / "metrics" / f"{NB}.json").read_text())
    assert metrics == {"n_squared": 49, "nested": {"a": 1}}  # params.yaml value (7), not the notebook default (2)
    figure = tiny_project / "reports" / "figures" / NB / "line.png"
    assert figure.read_bytes()[:4] == b"\x89PNG"
    first = html.read_bytes()
    assert b'id="cell-000"' in first or b"cell-000" in first
    assert not (tiny_project / "build" / "pipeline" / NB).exists()
    pipeline.run_notebook(NB)
    assert html.read_bytes() == first  # stable cell ids, no timings
    assert figure.read_bytes() == (tiny_project / "reports" / "figures" / NB / "line.png").read_bytes()


@pytest.mark.parametrize("values, message", [
    ({"seed": 1, "sample_structure": 7, "top_elements": 4}, "unknown parameter 'sample_structure'"),
    ({"seed": 1, "top_elements": 4}, "missing parameter 'sample_structures'"),
    ({"seed": 1, "sample_structures": "many", "top_elements": 4}, "'sample_structures' = 'many'"),
    ({"seed": 1, "sample_structures": -5, "top_elements": 4}, "'sample_structures' = -5: Input should be greater than or equal to 1"),
    ({"seed": 1, "sample_structures": 0, "top_elements": 4}, "'sample_structures' = 0"),
    ({"seed": 1.5, "sample_structures": 3, "top_elements": 4}, "'seed' = 1.5"),
])
def test_bad_parameters_are_refused_before_anything_runs(tiny_project, values, message):
    _set_params(tiny_project, **values)
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace("'", "'")):
        pipeline.run_notebook(NB)
    assert not (tiny_project / "reports").exists() and not (tiny_project / "build").exists()


def test_params_section_must_match_the_notebook_parameters_cell(tiny_project):
    _write_notebook(tiny_project, GOOD_BODY, params="seed = 0\nsample_structures = 2\nmetrics_path = None")
    with pytest.raises(ParameterError, match="unknown parameter 'top_elements' \\(not in the notebook's parameters cell"):
        pipeline.run_notebook(NB)


def test_cli_names_the_misspelt_key_and_exits_nonzero(tiny_project):
    _set_params(tiny_project, seed=1, sample_structure=7, top_elements=4)
    proc = subprocess.run([sys.executable, "-m", "matdiscovery.pipeline", "run", NB], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "unknown parameter 'sample_structure' (did you mean 'sample_structures'?)" in proc.stderr or \
        "unknown parameter 'sample_structure'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_failed_or_interrupted_run_leaves_committed_outputs_in_place(tiny_project, monkeypatch):
    pipeline.run_notebook(NB)
    committed = {p: p.read_bytes() for p in [tiny_project / "metrics" / f"{NB}.json",
                                             tiny_project / "reports" / f"{NB}.html",
                                             tiny_project / "reports" / "figures" / NB / "line.png"]}
    _write_notebook(tiny_project, GOOD_BODY.replace('save_figure(fig, "line")', 'save_figure(fig, "other")')
                    + "\nraise RuntimeError('boom')")
    with pytest.raises(pipeline.StageError, match="did not finish.*partial notebook is build/pipeline"):
        pipeline.run_notebook(NB)
    assert all(p.read_bytes() == b for p, b in committed.items())

    import papermill

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(pipeline.StageError, match="KeyboardInterrupt"):
        pipeline.run_notebook(NB)
    assert all(p.read_bytes() == b for p, b in committed.items())


def test_a_notebook_that_saves_no_metrics_is_an_error(tiny_project):
    _write_notebook(tiny_project, "print('forgot the metrics')")
    with pytest.raises(pipeline.StageError, match="without saving metrics/00_data_overview.json"):
        pipeline.run_notebook(NB)
    assert not (tiny_project / "reports" / f"{NB}.html").exists()


def test_load_params_missing_section(tiny_project):
    with pytest.raises(ParameterError, match="no section 'nope'"):
        load_params("nope")


def test_save_metrics_and_figures_write_nothing_interactively(tiny_project, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.delenv("MATDISCOVERY_NOTEBOOK", raising=False)
    out = reporting.save_metrics({"a": 1.23456789, "b": float("nan"), "c": [1, 2]}, None)
    assert out == {"a": 1.23457, "b": None, "c": [1, 2]}
    fig, _ = plt.subplots()
    assert reporting.save_figure(fig, "anything") is None
    assert not (tiny_project / "metrics").exists() and not (tiny_project / "reports").exists()
    with pytest.raises(ValueError, match="lower-case letters"):
        reporting.save_figure(fig, "Bad Name.png")
    reporting.save_figure(fig, "kept", directory=tiny_project / "figs")
    assert (tiny_project / "figs" / "kept.png").exists()


def test_index_and_summaries_show_headline_keys_beside_paper_values(tiny_project):
    (tiny_project / "metrics").mkdir()
    (tiny_project / "metrics" / "04_closed_loop.json").write_text(json.dumps(
        {"aaa": 1.0, "improvement_ratio": 1.5, "paper_improvement_ratio": 2.0,
         "qm9": {"trace": 12.5, "paper_trace": 10.0}, "by_cycle": [0.1, 0.25]}))
    headline = {"04_closed_loop": ["improvement_ratio", "qm9.trace", "by_cycle"]}
    text = report_index.write_index(["04_closed_loop"], headline=headline).read_text()
    assert "<code>improvement_ratio</code>: 1.5 (paper: 2)" in text
    assert "<code>qm9.trace</code>: 12.5 (paper: 10)" in text
    assert "[0.1, 0.25]" in text and "<code>aaa</code>" not in text
    [summary] = report_index.write_summaries(["04_closed_loop"], headline)
    assert json.loads(summary.read_text()) == {"improvement_ratio": 1.5, "paper_improvement_ratio": 2.0,
                                               "qm9.trace": 12.5, "qm9.paper_trace": 10.0, "by_cycle": [0.1, 0.25]}
    with pytest.raises(KeyError, match="no headline key"):
        report_index.write_summaries(["04_closed_loop"], {"04_closed_loop": ["missing_key"]})


def test_flatten_metrics_joins_nested_keys_like_dvc():
    assert report_index.flatten_metrics({"a": {"b": 1, "c": {"d": [2]}}, "e": 3}) == {"a.b": 1, "a.c.d": [2], "e": 3}


# ----------------------------------------------------------------- the real project

@pytest.mark.parametrize("name", pipeline.NOTEBOOKS)
def test_each_notebook_parameters_cell_model_and_params_yaml_agree(name):
    model = params_model(name)
    assert set(pipeline.notebook_parameters(name)) == set(model.model_fields), \
        f"notebooks/{name}.ipynb's parameters cell and {NOTEBOOK_PARAMS[name]} declare different names"
    pipeline.check_parameters(name, {**load_params(name), "metrics_path": f"metrics/{name}.json"})


def test_dvc_yaml_deps_match_each_stage_import_closure():
    assert pipeline.check_deps() == {}, "run `python -m matdiscovery.pipeline deps --write`"


def test_every_stage_figure_folder_is_a_dvc_plot_and_outputs_persist():
    stages = yaml.safe_load((project_root() / "dvc.yaml").read_text())["stages"]
    for name in pipeline.NOTEBOOKS:
        stage = stages[name]
        assert {f"reports/figures/{name}"} == {next(iter(p)) for p in stage["plots"]}
        for out in stage["outs"]:
            (path, opts), = out.items()
            assert opts.get("persist") is True, f"{name}: {path} must be persist (Ctrl-C keeps it)"


def test_import_closure_follows_lazy_and_relative_imports():
    files = pipeline.import_closure(["matdiscovery.params.overview"])
    assert "src/matdiscovery/params/__init__.py" in files and "src/matdiscovery/paths.py" in files
    closure = pipeline.import_closure(code=["from matdiscovery import overview"])
    assert "src/matdiscovery/overview.py" in closure and "src/matdiscovery/datasets.py" in closure
