"""Parameters of notebook 00 (data overview)."""

from __future__ import annotations

from pydantic import Field

from matdiscovery.params import NotebookParams


class OverviewParams(NotebookParams):
    seed: int = Field(ge=0, description="seed of the structure subsample")
    sample_structures: int = Field(ge=1, description="structures parsed per crystal split for size statistics")
    top_elements: int = Field(ge=1, le=118, description="elements shown in the element-count bar charts")
