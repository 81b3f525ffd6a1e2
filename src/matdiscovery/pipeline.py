"""The runner behind every notebook stage of ``dvc.yaml``.

``python -m matdiscovery.pipeline run 00_data_overview`` executes
``notebooks/00_data_overview.ipynb`` with Papermill, passing the ``00_data_overview`` section of
``params.yaml`` plus ``metrics_path="metrics/00_data_overview.json"``, writes the executed
notebook to ``reports/00_data_overview.ipynb`` and renders it to a self-contained
``reports/00_data_overview.html`` (figures embedded). ``python -m matdiscovery.pipeline index``
writes ``reports/index.html``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from matdiscovery.paths import project_root

NOTEBOOKS = (
    "00_data_overview",
    "01_generator_smoothness",
    "02_stability_screening",
    "03_hessian_spectra",
    "04_closed_loop",
)


def load_params(section: str | None = None, path: str | Path | None = None) -> dict[str, Any]:
    """``params.yaml`` (or one section of it) as a dict; a missing section is an error."""
    file = Path(path) if path else project_root() / "params.yaml"
    params = yaml.safe_load(file.read_text()) or {}
    if section is None:
        return params
    if section not in params:
        raise KeyError(f"params.yaml has no section {section!r}; sections: {sorted(params)}")
    return params[section] or {}


def run_notebook(name: str, params: dict[str, Any] | None = None, kernel: str = "python3") -> Path:
    """Execute ``notebooks/<name>.ipynb`` with ``params`` and render ``reports/<name>.html``."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    root = project_root()
    source = root / "notebooks" / f"{name}.ipynb"
    if not source.exists():
        raise FileNotFoundError(f"no notebook {source}")
    parameters = dict(load_params(name) if params is None else params)
    parameters.setdefault("metrics_path", f"metrics/{name}.json")
    executed = root / "reports" / f"{name}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(source), str(executed), parameters=parameters, kernel_name=kernel,
        cwd=str(root / "notebooks"), progress_bar=False, log_output=True,
    )
    nb = nbformat.read(executed, as_version=4)
    nb.metadata.pop("papermill", None)  # timings would make the HTML differ run to run
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    body, _ = HTMLExporter(template_name="lab", embed_images=True).from_notebook_node(nb)
    html_path = root / "reports" / f"{name}.html"
    html_path.write_text(body)
    return html_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matdiscovery.pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one notebook with its params.yaml section")
    run.add_argument("name", choices=NOTEBOOKS)
    index = sub.add_parser("index", help="write reports/index.html")
    index.add_argument("names", nargs="*", default=list(NOTEBOOKS))
    args = parser.parse_args(argv)
    if args.command == "run":
        print(run_notebook(args.name))
    else:
        from matdiscovery.report_index import HEADLINE_METRICS, write_index

        names = [n for n in args.names if (project_root() / "reports" / f"{n}.html").exists()]
        print(write_index(names, headline=HEADLINE_METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
