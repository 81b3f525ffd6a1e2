"""The notebook runner and metrics helpers, on a throw-away project."""

import json

import nbformat
import pytest

from matdiscovery import pipeline, report_index, reporting


@pytest.fixture()
def tiny_project(tmp_path, monkeypatch):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params.yaml").write_text("00_data_overview:\n  n: 7\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("n = 2\nmetrics_path = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from matdiscovery.reporting import save_metrics\nsave_metrics({'n_squared': n * n}, metrics_path)\nprint(n)"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "notebooks" / "00_data_overview.ipynb")
    monkeypatch.setenv("MATDISCOVERY_ROOT", str(tmp_path))
    return tmp_path


def test_run_notebook_writes_report_and_metrics(tiny_project):
    html = pipeline.run_notebook("00_data_overview")
    assert html == tiny_project / "reports" / "00_data_overview.html"
    assert "<html" in html.read_text()
    metrics = json.loads((tiny_project / "metrics" / "00_data_overview.json").read_text())
    assert metrics == {"n_squared": 49}  # params.yaml value (7), not the notebook default (2)
    index = report_index.write_index(["00_data_overview"])
    assert "n_squared" in index.read_text()


def test_load_params_missing_section(tiny_project):
    with pytest.raises(KeyError, match="no section 'nope'"):
        pipeline.load_params("nope")


def test_save_metrics_none_writes_nothing(tiny_project):
    out = reporting.save_metrics({"a": 1.23456789, "b": float("nan"), "c": [1, 2]}, None)
    assert out == {"a": 1.23457, "b": None, "c": [1, 2]}
    assert not (tiny_project / "metrics").exists()


def test_index_shows_headline_keys_beside_paper_values(tiny_project):
    (tiny_project / "metrics").mkdir()
    (tiny_project / "metrics" / "04_closed_loop.json").write_text(json.dumps(
        {"aaa": 1.0, "improvement_ratio": 1.5, "paper_improvement_ratio": 2.0,
         "qm9": {"trace": 12.5, "paper_trace": 10.0}, "by_cycle": [0.1, 0.25]}))
    headline = {"04_closed_loop": ["improvement_ratio", "qm9/trace", "by_cycle", "missing_key"]}
    text = report_index.write_index(["04_closed_loop"], headline=headline).read_text()
    assert "<code>improvement_ratio</code>: 1.5 (paper: 2)" in text
    assert "<code>qm9/trace</code>: 12.5 (paper: 10)" in text
    assert "[0.1, 0.25]" in text
    assert "<code>aaa</code>" not in text and "missing_key" not in text


def test_flatten_metrics_joins_nested_keys():
    assert report_index.flatten_metrics({"a": {"b": 1, "c": {"d": [2]}}, "e": 3}) == {"a/b": 1, "a/c/d": [2], "e": 3}
