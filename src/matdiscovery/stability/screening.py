"""Screening of structures with both judges against the JARVIS-DFT hull.

Every input row comes back: invalid structures (see :mod:`~matdiscovery.stability.validation`)
and structures a judge cannot score (e.g. no elemental reference, CHGNet failure) keep NaN
energies, a ``reason``, and count as not stable; :func:`unreadable_rows` adds the rows whose CIF
could not even be parsed, in the same layout.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from scipy.stats import spearmanr

from matdiscovery.stability.hull import FormationEnergyHull
from matdiscovery.stability.validation import check_structures

JUDGES = ("composition", "chgnet")


def _chgnet_formation(chgnet, structures: list[Structure]) -> tuple[np.ndarray, list[str]]:
    """CHGNet formation energies (eV/atom) with a reason for each NaN (never raises per structure)."""
    refs = chgnet.elemental_references()
    reasons = ["" for _ in structures]
    ok = []
    for i, s in enumerate(structures):
        missing = sorted({el.symbol for el in s.composition if el not in refs})
        if missing:
            reasons[i] = f"no MP elemental reference for {','.join(missing)}"
        else:
            ok.append(i)
    ef = np.full(len(structures), np.nan)
    if not ok:
        return ef, reasons
    try:
        energies = chgnet.predict_energy([structures[i] for i in ok])
    except Exception:  # noqa: BLE001 - e.g. an isolated atom; retry batch by batch, then one at a time
        energies = np.full(len(ok), np.nan)
        step = int(getattr(chgnet, "batch_size", 32))
        for start in range(0, len(ok), step):
            part = ok[start:start + step]
            try:
                energies[start:start + len(part)] = chgnet.predict_energy([structures[i] for i in part], progress=False)
                continue
            except Exception:  # noqa: BLE001
                pass
            for k, i in enumerate(part):
                try:
                    energies[start + k] = chgnet.predict_energy([structures[i]], progress=False)[0]
                except Exception as exc:  # noqa: BLE001
                    reasons[i] = f"CHGNet failed: {type(exc).__name__}: {str(exc)[:80]}"
    good = np.isfinite(energies)
    ef[np.array(ok)[good]] = chgnet.formation_energy([structures[i].composition for i in np.array(ok)[good]], energies[good])
    return ef, reasons


def screen(structures: Sequence[object], composition_judge, chgnet_judge, hull: FormationEnergyHull,
           ids: Sequence[str] | None = None, relax_steps: int = 0) -> pd.DataFrame:
    """Score each structure with both judges and place it against ``hull``.

    Columns: ``id``, ``formula``, ``n_atoms``, ``valid``, ``reason``, ``ef_<judge>`` (predicted
    formation energy, eV/atom) and ``ehull_<judge>`` (energy above the hull, eV/atom) for the
    ``composition`` and ``chgnet`` judges. With ``relax_steps > 0`` CHGNet first relaxes each
    structure for that many FIRE steps.
    """
    structures = list(structures)
    ids = [str(i) for i in (ids if ids is not None else range(len(structures)))]
    if len(ids) != len(structures):
        raise ValueError(f"{len(ids)} ids for {len(structures)} structures")
    checks = check_structures(structures)
    frame = pd.DataFrame({
        "id": ids,
        "formula": [s.composition.reduced_formula if isinstance(s, Structure) and len(s) else "" for s in structures],
        "n_atoms": [len(s) if isinstance(s, Structure) else 0 for s in structures],
        "valid": checks["valid"].to_numpy(), "reason": checks["reason"].to_numpy(),
    })
    for judge in JUDGES:
        frame[f"ef_{judge}"] = np.nan
        frame[f"ehull_{judge}"] = np.nan
    idx = np.flatnonzero(frame["valid"].to_numpy())
    if len(idx) == 0:
        return frame
    valid = [structures[i] for i in idx]
    comps = [s.composition for s in valid]
    frame.loc[idx, "ef_composition"] = composition_judge.predict(comps)
    relax_failures: dict[int, str] = {}
    if relax_steps > 0:
        valid = chgnet_judge.relax(valid, relax_steps, failures=relax_failures)
    ef_c, reasons = _chgnet_formation(chgnet_judge, valid)
    frame.loc[idx, "ef_chgnet"] = ef_c
    frame.loc[idx, "reason"] = ["; ".join(filter(None, (relax_failures.get(k, ""), r))) for k, r in enumerate(reasons)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for judge in JUDGES:
            frame.loc[idx, f"ehull_{judge}"] = hull.e_above_hull_many(comps, frame.loc[idx, f"ef_{judge}"].to_numpy(float))
    return frame


def relaxation_effect(structures: Sequence[Structure], chgnet_judge, hull: FormationEnergyHull, steps: int,
                      ids: Sequence[str] | None = None, progress: bool = True) -> pd.DataFrame:
    """CHGNet formation energy and energy above ``hull`` (eV/atom) of each (valid) structure as
    given and after ``steps`` FIRE steps of CHGNet relaxation (cell included): columns ``id``,
    ``formula``, ``ef_before``, ``ef_after``, ``ehull_before``, ``ehull_after``, ``relaxed``
    (False where the relaxation failed and the input geometry was kept)."""
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    structures = list(structures)
    ids = [str(i) for i in (ids if ids is not None else range(len(structures)))]
    failures: dict[int, str] = {}
    relaxed = chgnet_judge.relax(structures, steps, progress=progress, failures=failures)
    comps = [s.composition for s in structures]
    before = chgnet_judge.predict_formation_energy(structures, progress=False)
    after = chgnet_judge.predict_formation_energy(relaxed, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.DataFrame({
            "id": ids, "formula": [c.reduced_formula for c in comps], "ef_before": before, "ef_after": after,
            "ehull_before": hull.e_above_hull_many(comps, before), "ehull_after": hull.e_above_hull_many(comps, after),
            "relaxed": [i not in failures for i in range(len(structures))],
        })


def unreadable_rows(skipped: Sequence[object], table: pd.DataFrame, id_column: str = "material_id",
                    keep: Sequence[str] = ("variant", "pgcgm_valid")) -> pd.DataFrame:
    """Rows a loader could not parse, in the layout of :func:`screen` (invalid, NaN energies).

    ``skipped``: the ``BadRow`` list of a ``datasets`` loader run with ``on_error="skip"``
    (``frame.attrs["skipped"]``; ``.row`` is the 0-based data row, ``.reason`` why); ``table``:
    the raw file's rows (at least ``id_column``), so each row keeps its id and the ``keep`` columns.
    """
    rows = [int(b.row) for b in skipped]
    if rows and (min(rows) < 0 or max(rows) >= len(table)):
        raise IndexError(f"skipped rows {min(rows)}..{max(rows)} outside a table of {len(table)} rows")
    sub = table.iloc[rows]
    frame = pd.DataFrame({
        "id": sub[id_column].astype(str).to_numpy() if id_column in sub else [str(r) for r in rows],
        "formula": "", "n_atoms": 0, "valid": False,
        "reason": [f"unreadable CIF ({b.reason})" for b in skipped],
    })
    for judge in JUDGES:
        frame[f"ef_{judge}"] = np.nan
        frame[f"ehull_{judge}"] = np.nan
    for col in keep:
        if col in sub:
            frame[col] = sub[col].to_numpy()
    return frame


def stable_mask(frame: pd.DataFrame, judge: str, threshold: float) -> np.ndarray:
    """``ehull_<judge> ≤ threshold`` (eV/atom); NaN (invalid or unscored) counts as not stable."""
    e = frame[f"ehull_{judge}"].to_numpy(float)
    return np.where(np.isfinite(e), e <= threshold + 1e-9, False)


def summarize(frame: pd.DataFrame, thresholds: Sequence[float] = (0.0, 0.1), agreement_threshold: float = 0.1) -> dict[str, float]:
    """Fractions of ``frame`` (all rows, invalid included) predicted stable per judge and
    threshold, both judges together (``consensus``), validity, and judge agreement: the
    fraction of rows scored by both where the stable/unstable calls at
    ``agreement_threshold`` coincide, plus the Spearman correlation of their formation energies."""
    n = len(frame)
    out: dict[str, float] = {"n": n, "n_valid": int(frame["valid"].sum()),
                             "fraction_valid": float(frame["valid"].mean()) if n else float("nan")}
    for t in thresholds:
        tag = f"{t:g}"
        masks = {j: stable_mask(frame, j, t) for j in JUDGES}
        for j, m in masks.items():
            out[f"fraction_stable_{j}_{tag}"] = float(m.mean()) if n else float("nan")
        out[f"fraction_stable_consensus_{tag}"] = float((masks["composition"] & masks["chgnet"]).mean()) if n else float("nan")
    both = np.isfinite(frame["ehull_composition"].to_numpy(float)) & np.isfinite(frame["ehull_chgnet"].to_numpy(float))
    out["n_scored_both"] = int(both.sum())
    if both.any():
        a = stable_mask(frame, "composition", agreement_threshold)[both]
        b = stable_mask(frame, "chgnet", agreement_threshold)[both]
        out["judge_agreement"] = float((a == b).mean())
        ef = frame.loc[both, ["ef_composition", "ef_chgnet"]].to_numpy(float)
        out["judge_ef_spearman"] = float(spearmanr(ef[:, 0], ef[:, 1]).statistic) if both.sum() > 2 else float("nan")
        out["judge_ef_mean_abs_diff_eV_per_atom"] = float(np.abs(ef[:, 0] - ef[:, 1]).mean())
    return out
