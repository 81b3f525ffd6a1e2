"""Metrics files and figure style.

Metrics are flat JSON objects (``dvc metrics show`` reads them): numbers, or lists of numbers,
keyed by names a reader knows (``mae_eV_per_atom``, ``roc_auc``). A paper's number goes beside
ours under a ``paper_`` prefix.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from matdiscovery.paths import project_root

FIGURE_DPI = 90  # keeps embedded PNGs small enough for committed HTML reports


def setup_style() -> None:
    """Seaborn/matplotlib style shared by every report."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({"figure.dpi": FIGURE_DPI, "savefig.dpi": FIGURE_DPI, "figure.figsize": (7.0, 4.2)})


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
    committed full-size metrics are never overwritten by a quick run. Returns the cleaned dict.
    """
    cleaned = _clean(dict(metrics), digits)
    if path is not None:
        target = Path(path)
        if not target.is_absolute():
            target = project_root() / target
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
