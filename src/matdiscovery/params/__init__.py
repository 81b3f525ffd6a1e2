"""Typed, range-checked parameters: one pydantic model per notebook and per training stage.

Each model declares its knobs once (type, range, unit in the description) and no defaults: the
notebook's ``parameters`` cell holds the small interactive values and ``params.yaml`` the
full-size ones. Bad input fails in well under a second with a :class:`ParameterError` naming the
parameter::

    p = ClosedLoopParams.from_namespace(globals())             # in a notebook, after the parameters cell
    p = TrainJudgeParams.from_yaml_section("train_stability_judge")   # in a training stage

The runner (:mod:`matdiscovery.pipeline`) looks models up in :data:`NOTEBOOK_PARAMS` and checks a
``params.yaml`` section against both the model and the notebook's parameters cell before anything
executes. Models live in this light subpackage (pydantic only, no torch) so that check is fast.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any, ClassVar, Mapping, Self

from pydantic import BaseModel, ConfigDict, ValidationError

#: Notebook name → ``"module:Class"`` of its parameters model.
NOTEBOOK_PARAMS: dict[str, str] = {
    "00_data_overview": "matdiscovery.params.overview:OverviewParams",
    "01_generator_smoothness": "matdiscovery.params.generator:SmoothnessParams",
    "02_stability_screening": "matdiscovery.params.stability:ScreeningParams",
    "03_hessian_spectra": "matdiscovery.params.hessian:HessianParams",
    "04_closed_loop": "matdiscovery.params.closed_loop:ClosedLoopParams",
}

#: Parameters the runner passes to every notebook beside its ``params.yaml`` section.
RUNNER_PARAMETERS = ("metrics_path",)


class ParameterError(ValueError):
    """A parameter is unknown, missing, of the wrong type or out of range (the message names it)."""


def suggest(name: str, known: set[str]) -> str:
    """` (did you mean 'x'?)` for a close known name, else an empty string."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class StudyParams(BaseModel):
    """Base of every parameters model: strict types (no ``"5"`` → 5), no unknown keys, frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: Names a caller may pass that are not knobs of the study (set by the runner).
    passthrough: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "parameters") -> Self:
        """Validate ``values``; unknown or missing names and bad values raise :class:`ParameterError`."""
        known = set(cls.model_fields)
        unknown = sorted(set(values) - known - set(cls.passthrough))
        missing = sorted(known - set(values))
        problems = [f"unknown parameter {k!r}{suggest(k, known)}" for k in unknown]
        problems += [f"missing parameter {k!r}" for k in missing]
        if problems:
            raise ParameterError(f"{source}: " + "; ".join(problems))
        try:
            return cls.model_validate({k: values[k] for k in known})
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                name = ".".join(str(p) for p in err["loc"])
                lines.append(f"parameter {name!r} = {err.get('input')!r}: {err['msg']}")
            raise ParameterError(f"{source}: " + "; ".join(lines)) from None

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> Self:
        """The model's fields picked from a notebook's ``globals()`` (after the parameters cell)."""
        missing = sorted(set(cls.model_fields) - set(namespace))
        if missing:
            raise ParameterError(f"notebook parameters: missing parameter(s) {missing}")
        return cls.from_mapping({k: namespace[k] for k in cls.model_fields}, source="notebook parameters")

    @classmethod
    def from_yaml_section(cls, section: str, path: str | Path | None = None) -> Self:
        """Strictly read one section of ``params.yaml`` (no silent fallback on a typo)."""
        return cls.from_mapping(load_params(section, path), source=f"params.yaml section {section!r}")


class NotebookParams(StudyParams):
    """Parameters of a notebook: its knobs plus ``metrics_path`` (``None`` in interactive runs, so a
    quick run never overwrites the committed metrics; the runner passes ``metrics/<name>.json``)."""

    metrics_path: str | None


def load_params(section: str | None = None, path: str | Path | None = None) -> dict[str, Any]:
    """``params.yaml`` (or one section of it) as a dict; a missing section is an error."""
    import yaml

    from matdiscovery.paths import project_root

    file = Path(path) if path else project_root() / "params.yaml"
    params = yaml.safe_load(file.read_text()) or {}
    if section is None:
        return params
    if section not in params:
        raise ParameterError(f"params.yaml has no section {section!r}; sections: {sorted(params)}")
    return params[section] or {}


def params_model(notebook: str) -> type[NotebookParams]:
    """The parameters model registered for ``notebook`` in :data:`NOTEBOOK_PARAMS`."""
    try:
        target = NOTEBOOK_PARAMS[notebook]
    except KeyError:
        raise KeyError(f"no parameters model registered for notebook {notebook!r}") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
