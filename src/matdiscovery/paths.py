"""Where things live: the project root, raw data, metrics and reports.

The root is found by walking up from the current directory (so notebooks run from
``notebooks/`` and the pipeline run from the root agree), falling back to the source tree.
Set ``MATDISCOVERY_DATA`` to read raw data from somewhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

_MARKERS = (".dvc", "pyproject.toml")


def project_root() -> Path:
    """The directory holding ``.dvc/`` and ``pyproject.toml``."""
    env = os.environ.get("MATDISCOVERY_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path.cwd(), Path(__file__).resolve()):
        for candidate in (start, *start.parents):
            if all((candidate / m).exists() for m in _MARKERS):
                return candidate
    raise FileNotFoundError(
        "Could not find the matdiscovery project root (a folder with .dvc/ and pyproject.toml) "
        f"above {Path.cwd()}; set MATDISCOVERY_ROOT."
    )


def data_dir() -> Path:
    """Raw data folder materialised by ``dvc pull`` (read-only)."""
    env = os.environ.get("MATDISCOVERY_DATA")
    return Path(env).resolve() if env else project_root() / "data"


def metrics_dir() -> Path:
    return project_root() / "metrics"


def reports_dir() -> Path:
    return project_root() / "reports"


def models_dir() -> Path:
    """Trained checkpoints written by pipeline stages (DVC outs, not in git)."""
    return project_root() / "models"
