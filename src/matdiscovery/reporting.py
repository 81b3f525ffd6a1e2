"""Metrics files, figure files and report style.

Metrics are JSON objects, nested where that reads better (``{"jump_cause": {"merging": 12}}`` is
the key ``jump_cause.merging``): numbers, lists of numbers, booleans or short strings, keyed by
names a reader knows (``mae_eV_per_atom``, ``roc_auc``). A paper's number goes beside ours under
a ``paper_`` prefix.

Under the pipeline runner (:mod:`matdiscovery.pipeline`) :func:`save_metrics` and
:func:`save_figure` write into the run's staging folder, which the runner moves into place only
when the whole notebook succeeded; in an interactive run ``save_metrics(m, None)`` and
``save_figure`` write nothing, so committed results are never overwritten by a quick run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from matdiscovery.paths import project_root

FIGURE_DPI = 90  # keeps embedded PNGs small enough for committed HTML reports
_FIGURE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _short_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as ``Category (module): message``: no machine paths in rendered reports."""
    module = Path(filename).stem
    for parent in Path(filename).parents:
        if parent.name in ("site-packages", "src"):
            module = ".".join(Path(filename).relative_to(parent).with_suffix("").parts)
            break
    return f"{category.__name__} ({module}): {message}\n"


def setup_style() -> None:
    """Style shared by every report: seaborn theme, figure size and DPI, pandas tables shown in
    full (no ``...`` cut cells), warnings printed without machine paths."""
    import matplotlib as mpl
    import pandas as pd
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({"figure.dpi": FIGURE_DPI, "savefig.dpi": FIGURE_DPI, "figure.figsize": (7.0, 4.2)})
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.width", 160)
    warnings.formatwarning = _short_warning
    # pymatgen warns once per noble gas when it sorts a formula by electronegativity; the NaN it
    # returns is never used as a number here (element features impute it)
    warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)


def _staged(path: Path) -> Path:
    """``path`` (project-relative) inside the runner's staging folder when one is set."""
    staging = os.environ.get("MATDISCOVERY_STAGING")
    if path.is_absolute():
        return path
    return Path(staging) / path if staging else project_root() / path


def save_figure(fig, name: str, *, directory: str | Path | None = None) -> None:
    """Save ``fig`` as ``reports/figures/<notebook>/<name>.png`` when run by the pipeline.

    ``name`` is lower-case letters, digits, ``_`` and ``-`` and unique within the notebook (a
    second figure under the same name is an error, not an overwrite). Interactive runs write
    nothing unless ``directory`` is given. Returns nothing (a notebook cell ending with it shows no
    path).
    """
    if not _FIGURE_NAME.match(name):
        raise ValueError(f"figure name {name!r}: use lower-case letters, digits, '_' and '-'")
    notebook = os.environ.get("MATDISCOVERY_NOTEBOOK")
    if directory is not None:
        folder = Path(directory)
    elif notebook:
        folder = _staged(Path("reports") / "figures" / notebook)
    else:
        return
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.png"
    if target.exists() and directory is None:
        raise ValueError(f"figure name {name!r} used twice in notebook {notebook}")
    fig.savefig(target, dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})


def _clean(value: Any, digits: int) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _clean(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v, digits) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return None
        return float(f"{v:.{digits}g}")
    return value


def save_metrics(metrics: Mapping[str, Any], path: str | Path | None, digits: int = 6) -> dict:
    """Write ``metrics`` as sorted, rounded JSON to ``path`` (relative to the project root).

    With ``path=None`` (interactive runs with small defaults) nothing is written, so the
    committed full-size metrics are never overwritten by a quick run; under the pipeline the file
    goes to the staging folder first. Returns the cleaned dict.
    """
    cleaned = _clean(dict(metrics), digits)
    if path is not None:
        target = _staged(Path(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(cleaned, indent=2, sort_keys=True) + "\n")
    return cleaned


def environment_summary() -> dict[str, str]:
    """Versions of the packages that produced a report (printed in every notebook)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torch-geometric", "pymatgen", "chgnet", "scikit-learn", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
