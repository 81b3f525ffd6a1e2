"""The runner behind every notebook stage of ``dvc.yaml``.

``python -m matdiscovery.pipeline run 00_data_overview``:

1. checks the ``00_data_overview`` section of ``params.yaml`` against the notebook's
   ``parameters`` cell (same names) and its typed model (:mod:`matdiscovery.params`); a typo, a
   wrong type or an out-of-range value stops here, before anything executes, naming the key;
2. executes ``notebooks/00_data_overview.ipynb`` with Papermill into a staging folder
   (``build/pipeline/<name>/``), progress bars off (``TQDM_DISABLE=1``);
   :func:`matdiscovery.reporting.save_metrics` and :func:`~matdiscovery.reporting.save_figure`
   write there too;
3. only if the whole notebook succeeded, renders a self-contained HTML report with stable cell
   ids (byte-identical for identical results) and moves ``reports/<name>.ipynb``,
   ``reports/<name>.html``, ``metrics/<name>.json`` and ``reports/figures/<name>/`` into place.
   An error or Ctrl-C leaves the committed outputs untouched (the stage's outs are
   ``persist: true``, so DVC does not delete them first either) and says where the partial
   notebook is.

``python -m matdiscovery.report_index`` (the ``index`` stage) writes ``reports/index.html`` and
the short ``metrics/summary/<name>.json`` files that ``dvc metrics show`` prints.
``python -m matdiscovery.pipeline deps [--write]`` prints (or writes into ``dvc.yaml``) each
stage's ``src/`` dependencies, computed from its import closure.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml

from matdiscovery.params import RUNNER_PARAMETERS, NotebookParams, ParameterError, load_params, params_model, suggest
from matdiscovery.paths import project_root

NOTEBOOKS = (
    "00_data_overview",
    "01_generator_smoothness",
    "02_stability_screening",
    "03_hessian_spectra",
    "04_closed_loop",
)

#: Environment variables the runner sets for the notebook's kernel.
STAGING_ENV = "MATDISCOVERY_STAGING"  # folder that mirrors the project for this run's outputs
NOTEBOOK_ENV = "MATDISCOVERY_NOTEBOOK"  # name of the notebook being run (figures go under it)


class StageError(RuntimeError):
    """A notebook stage failed; the committed outputs were left in place."""


def _code_cells(name: str) -> list[dict[str, Any]]:
    """Code cells of ``notebooks/<name>.ipynb`` with ``source`` as one string (plain JSON: importing
    nbformat costs seconds, and a parameter typo must be refused at once)."""
    nb = json.loads((project_root() / "notebooks" / f"{name}.ipynb").read_text())
    return [{**c, "source": "".join(c["source"]) if isinstance(c["source"], list) else c["source"]}
            for c in nb["cells"] if c["cell_type"] == "code"]


def notebook_parameters(name: str) -> list[str]:
    """Names assigned in the ``parameters``-tagged cell of ``notebooks/<name>.ipynb``, in order."""
    cells = [c for c in _code_cells(name) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise StageError(f"notebooks/{name}.ipynb needs exactly one cell tagged 'parameters' (found {len(cells)})")
    names: list[str] = []
    for node in ast.parse(cells[0]["source"]).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def check_parameters(name: str, values: dict[str, Any]) -> NotebookParams:
    """Validate the values the runner would pass to notebook ``name`` (its section plus
    ``metrics_path``): the same names as the notebook's parameters cell, and valid for its model."""
    source = f"params.yaml section {name!r}"
    declared = set(notebook_parameters(name))
    given = set(values)
    problems = [f"unknown parameter {k!r}{suggest(k, declared)} (not in the notebook's parameters cell: "
                f"{sorted(declared)})" for k in sorted(given - declared)]
    problems += [f"missing parameter {k!r} (every notebook parameter needs its full-size value here)"
                 for k in sorted(declared - given - set(RUNNER_PARAMETERS))]
    if problems:
        raise ParameterError(f"{source}: " + "; ".join(problems))
    return params_model(name).from_mapping(values, source=source)


def _normalise(nb) -> None:
    """Drop volatile metadata (timings, random cell ids) so identical results render identically."""
    nb.metadata.pop("papermill", None)
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        cell["id"] = f"cell-{i:03d}"


def _move_into_place(staged: Path, target: Path) -> None:
    """Replace ``target`` (file or folder) by ``staged`` with renames only."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if staged.is_dir():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staged.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, target)


def run_notebook(name: str, params: dict[str, Any] | None = None, kernel: str = "python3") -> Path:
    """Check, execute and render ``notebooks/<name>.ipynb``; return ``reports/<name>.html``."""
    root = project_root()
    values = dict(load_params(name) if params is None else params)
    values.setdefault("metrics_path", f"metrics/{name}.json")
    check_parameters(name, values)

    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    staging = root / "build" / "pipeline" / name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    executed = staging / f"{name}.ipynb"
    env = {STAGING_ENV: str(staging), NOTEBOOK_ENV: name, "TQDM_DISABLE": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(
            str(root / "notebooks" / f"{name}.ipynb"), str(executed), parameters=values,
            kernel_name=kernel, cwd=str(root / "notebooks"), progress_bar=False, log_output=True,
        )
    except BaseException as exc:  # Ctrl-C included: nothing committed is touched
        raise StageError(f"notebook {name} did not finish ({type(exc).__name__}); committed outputs left "
                         f"in place; the partial notebook is {executed.relative_to(root)}") from exc
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    nb = nbformat.read(executed, as_version=4)
    _normalise(nb)
    nbformat.write(nb, executed)
    body, _ = HTMLExporter(template_name="lab", embed_images=True).from_notebook_node(nb)
    (staging / f"{name}.html").write_text(body)

    staged_metrics = staging / values["metrics_path"] if values["metrics_path"] else None
    if staged_metrics is not None and not staged_metrics.exists():
        raise StageError(f"notebook {name} finished without saving {values['metrics_path']} "
                         "(call save_metrics(..., metrics_path)); committed outputs left in place")
    figures = staging / "reports" / "figures" / name
    figures.mkdir(parents=True, exist_ok=True)
    _move_into_place(figures, root / "reports" / "figures" / name)
    if staged_metrics is not None:
        _move_into_place(staged_metrics, root / values["metrics_path"])
    _move_into_place(executed, root / "reports" / f"{name}.ipynb")
    html_path = root / "reports" / f"{name}.html"
    _move_into_place(staging / f"{name}.html", html_path)
    shutil.rmtree(staging, ignore_errors=True)
    return html_path


# --------------------------------------------------------------------------- dependencies

def _module_file(module: str, src: Path) -> Path | None:
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imported_modules(code: str, package: str | None) -> set[str]:
    """``matdiscovery`` modules named by the import statements of ``code`` (lazy ones included);
    ``from a import b`` yields ``a`` and ``a.b`` (kept only where ``a.b`` is a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = (package or "").split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in out if m == "matdiscovery" or m.startswith("matdiscovery.")}


def import_closure(modules: Iterable[str] = (), code: Iterable[str] = ()) -> list[str]:
    """Project-relative paths of every ``src/matdiscovery`` file that importing ``modules`` and
    running ``code`` (notebook cells) can execute: imported modules, their parent packages, and
    what those import in turn (function-level imports included)."""
    root = project_root()
    src = root / "src"
    todo = set(modules)
    for text in code:
        todo |= _imported_modules(text, None)
    seen: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in seen:
                continue
            file = _module_file(name, src)
            if file is None:
                continue
            seen[name] = file
            package = name if file.name == "__init__.py" else ".".join(name.split(".")[:-1])
            todo |= _imported_modules(file.read_text(), package) - set(seen)
    return sorted(str(f.relative_to(root)) for f in seen.values())


def _notebook_code(name: str) -> list[str]:
    return ["\n".join(line for line in c["source"].splitlines() if not line.lstrip().startswith(("%", "!")))
            for c in _code_cells(name)]


def stage_src_deps(stage: dict[str, Any]) -> list[str]:
    """The ``src/`` files a ``dvc.yaml`` stage must depend on, from its command's import closure."""
    cmd = stage["cmd"].split()
    if cmd[:3] != ["python", "-m", cmd[2]] or len(cmd) < 3:
        raise ValueError(f"cannot infer the dependencies of command {stage['cmd']!r}")
    modules = [cmd[2]]
    code: list[str] = []
    if cmd[2] == "matdiscovery.pipeline" and cmd[3] == "run":
        name = cmd[4]
        modules.append(params_module(name))
        code = _notebook_code(name)
    return import_closure(modules, code)


def params_module(name: str) -> str:
    from matdiscovery.params import NOTEBOOK_PARAMS

    return NOTEBOOK_PARAMS[name].partition(":")[0]


def check_deps(write: bool = False) -> dict[str, tuple[list[str], list[str]]]:
    """Per stage, the ``src/`` deps missing from ``dvc.yaml`` and those it lists needlessly.
    With ``write=True`` the ``src/`` entries of each stage are replaced by the computed list."""
    path = project_root() / "dvc.yaml"
    spec = yaml.safe_load(path.read_text())
    report: dict[str, tuple[list[str], list[str]]] = {}
    for name, stage in spec["stages"].items():
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
        declared = [d for d in deps if d.startswith("src/")]
        expected = stage_src_deps(stage)
        missing = sorted(set(expected) - set(declared))
        extra = sorted(set(declared) - set(expected))
        if missing or extra:
            report[name] = (missing, extra)
        if write:
            others = [d for d in stage.get("deps", []) if not (isinstance(d, str) and d.startswith("src/"))]
            stage["deps"] = [d for d in others if isinstance(d, str) and d.startswith("notebooks/")] + expected + [
                d for d in others if not (isinstance(d, str) and d.startswith("notebooks/"))]
    if write and report:
        path.write_text(yaml.safe_dump(spec, sort_keys=False, width=120))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matdiscovery.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="check, execute and render one notebook with its params.yaml section")
    run.add_argument("name", choices=NOTEBOOKS)
    check = sub.add_parser("check", help="check every notebook's params.yaml section; execute nothing")
    check.add_argument("names", nargs="*", default=list(NOTEBOOKS))
    deps = sub.add_parser("deps", help="compare dvc.yaml's src/ deps with each stage's import closure")
    deps.add_argument("--write", action="store_true", help="rewrite the src/ deps in dvc.yaml")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            print(run_notebook(args.name))
        elif args.command == "check":
            for name in args.names:
                check_parameters(name, {**load_params(name), "metrics_path": f"metrics/{name}.json"})
            print(f"parameters of {', '.join(args.names)}: OK")
        elif args.command == "deps":
            report = check_deps(write=args.write)
            for stage, (missing, extra) in report.items():
                print(f"{stage}: missing {missing}; not imported {extra}")
            if not report:
                print("dvc.yaml src/ deps match the import closures")
            return 1 if report and not args.write else 0
    except (ParameterError, StageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
