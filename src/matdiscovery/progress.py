"""Progress bars: ``tqdm.auto`` in interactive runs (JupyterLab widgets, terminal text), none in
pipeline runs, so rendered reports carry no progress output.

tqdm's own ``TQDM_DISABLE`` is not enough: ``tqdm.notebook`` and any explicit ``disable=`` override
it. Library loops therefore call :func:`progress_bar`, never ``tqdm`` directly.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

#: Set by the pipeline runner for the notebook's kernel (see :mod:`matdiscovery.pipeline`).
PIPELINE_ENV = "MATDISCOVERY_NOTEBOOK"


def progress_enabled(progress: bool = True) -> bool:
    """``progress``, unless the pipeline runner or ``TQDM_DISABLE`` switches bars off."""
    quiet = os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false") or PIPELINE_ENV in os.environ
    return progress and not quiet


def progress_bar(iterable: Iterable | None = None, *, progress: bool = True, **kwargs: Any):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, disabled when :func:`progress_enabled` says so."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress_enabled(progress), **kwargs)
