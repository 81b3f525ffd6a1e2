"""Element features, Magpie-style composition statistics and composition graphs.

The element table is built from pymatgen's periodic table (no download): for each element
Z = 1…94 a vector of :data:`ELEMENT_PROPERTIES` (missing values filled by the column median,
then z-scored over the table). :func:`magpie_features` turns compositions into the
statistics of Ward et al. (2016) (fraction-weighted mean, mean absolute deviation, min, max,
range, mode of each property, plus stoichiometric p-norms) and :func:`composition_graph` into a
PyG :class:`~torch_geometric.data.Data` for Roost-style message passing.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
import torch
from pymatgen.core import Composition, Element, Species
from pymatgen.core.periodic_table import DummySpecies
from torch_geometric.data import Data

MAX_Z = 94

#: (name, unit) of each element property in the table.
ELEMENT_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("Z", ""),
    ("row", ""),
    ("group", ""),
    ("atomic_mass", "amu"),
    ("X", "Pauling"),
    ("atomic_radius", "Å"),
    ("mendeleev_no", ""),
    ("melting_point", "K"),
    ("molar_volume", "cm^3/mol"),
    ("first_ionization_energy", "eV"),
    ("electron_affinity", "eV"),
    ("n_s_valence", ""),
    ("n_p_valence", ""),
    ("n_d_valence", ""),
    ("n_f_valence", ""),
    ("n_valence", ""),
    ("is_metal", ""),
    ("block_s", ""),
    ("block_p", ""),
    ("block_d", ""),
    ("block_f", ""),
    ("max_oxidation_state", ""),
    ("min_oxidation_state", ""),
)
ELEMENT_FEATURE_DIM = len(ELEMENT_PROPERTIES)
MAGPIE_STATS = ("mean", "avg_dev", "min", "max", "range", "mode")
STOICH_NORMS = (0, 2, 3, 5, 7, 10)


def _number(value: object) -> float:
    try:
        out = float(value)  # pymatgen FloatWithUnit and plain numbers
    except (TypeError, ValueError):
        return np.nan
    return out if np.isfinite(out) else np.nan


def _valence_counts(el: Element) -> tuple[float, float, float, float]:
    """Electrons in the outermost s, p, d, f subshells (from the full electronic structure)."""
    counts = {"s": 0.0, "p": 0.0, "d": 0.0, "f": 0.0}
    try:
        shells = el.full_electronic_structure
    except Exception:  # noqa: BLE001 - pymatgen lacks data for some heavy elements
        return (np.nan,) * 4
    outer_n = max(n for n, _, _ in shells)
    for n, l, count in shells:
        # s, p of the outermost shell; d of shell n-1; f of shell n-2 (the chemically active ones)
        if (l == "s" and n == outer_n) or (l == "p" and n == outer_n) or (l == "d" and n == outer_n - 1) or (l == "f" and n == outer_n - 2):
            counts[l] += count
    return counts["s"], counts["p"], counts["d"], counts["f"]


def _raw_row(el: Element) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s, p, d, f = _valence_counts(el)
        ies = el.ionization_energies
        oxs = el.common_oxidation_states or el.oxidation_states or (0,)
        block = el.block
        return [
            el.Z, el.row, el.group, _number(el.atomic_mass), _number(el.X), _number(el.atomic_radius),
            _number(el.mendeleev_no), _number(el.melting_point), _number(el.molar_volume),
            _number(ies[0]) if ies else np.nan, _number(getattr(el, "electron_affinity", np.nan)),
            s, p, d, f, s + p + d + f, float(el.is_metal),
            float(block == "s"), float(block == "p"), float(block == "d"), float(block == "f"),
            float(max(oxs)), float(min(oxs)),
        ]


@lru_cache(maxsize=1)
def element_table() -> np.ndarray:
    """``(MAX_Z + 1, ELEMENT_FEATURE_DIM)`` float32 table of z-scored element properties; row Z
    is element Z (row 0 is zeros, unused)."""
    raw = np.array([_raw_row(Element.from_Z(z)) for z in range(1, MAX_Z + 1)], dtype=float)
    med = np.nanmedian(raw, axis=0)
    raw = np.where(np.isnan(raw), med, raw)
    std = raw.std(axis=0)
    table = (raw - raw.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return np.vstack([np.zeros((1, raw.shape[1])), table]).astype(np.float32)


@lru_cache(maxsize=1)
def element_table_raw() -> np.ndarray:
    """Like :func:`element_table` but in physical units (NaN where pymatgen has no value)."""
    raw = np.array([_raw_row(Element.from_Z(z)) for z in range(1, MAX_Z + 1)], dtype=float)
    return np.vstack([np.full((1, raw.shape[1]), np.nan), raw])


def element_features(elements: Iterable[Element | str]) -> np.ndarray:
    """z-scored feature vectors of ``elements`` (``(n, ELEMENT_FEATURE_DIM)``)."""
    zs = [_z(e) for e in elements]
    return element_table()[zs]


def _z(el: Element | Species | str) -> int:
    if isinstance(el, str):
        if not Element.is_valid_symbol(el):
            raise ValueError(f"unknown element symbol {el!r}")
        el = Element(el)
    if isinstance(el, DummySpecies):  # what pymatgen makes of an unknown symbol in a formula
        raise ValueError(f"unknown element symbol {el.symbol!r} (not a chemical element; check the formula)")
    if isinstance(el, Species):
        el = el.element
    z = el.Z
    if z > MAX_Z:
        raise ValueError(f"element {el} (Z={z}) is beyond Pu (Z={MAX_Z}); no features for it")
    return z


def _fractions(comp: Composition) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(comp, Composition):
        raise TypeError(f"expected a pymatgen Composition, got {type(comp).__name__}")
    if comp.num_atoms <= 0:
        raise ValueError(f"empty composition {comp}")
    items = sorted(comp.fractional_composition.items(), key=lambda kv: kv[0].Z)
    zs = np.array([_z(el) for el, _ in items], dtype=np.int64)
    fr = np.array([amt for _, amt in items], dtype=np.float64)
    return zs, fr


def magpie_feature_names() -> list[str]:
    names = [f"{stat}_{prop}" for prop, _ in ELEMENT_PROPERTIES for stat in MAGPIE_STATS]
    return names + [f"stoich_{p}norm" for p in STOICH_NORMS]


def magpie_features(compositions: Sequence[Composition]) -> np.ndarray:
    """Magpie-style statistics of each composition (``(n, 6 * ELEMENT_FEATURE_DIM + 6)``).

    Uses the element properties in physical units with missing values filled by the median.
    """
    table = element_table_raw()
    med = np.nanmedian(table[1:], axis=0)
    table = np.where(np.isnan(table), med, table)
    n_props = table.shape[1]
    out = np.empty((len(compositions), len(MAGPIE_STATS) * n_props + len(STOICH_NORMS)), dtype=np.float64)
    for i, comp in enumerate(compositions):
        zs, fr = _fractions(comp)
        props = table[zs]  # (k, n_props)
        mean = fr @ props
        avg_dev = fr @ np.abs(props - mean)
        mn, mx = props.min(axis=0), props.max(axis=0)
        mode = props[np.argmax(fr)]
        stats = np.stack([mean, avg_dev, mn, mx, mx - mn, mode], axis=1).reshape(-1)
        norms = [float(len(fr)) if p == 0 else float((fr**p).sum() ** (1.0 / p)) for p in STOICH_NORMS]
        out[i, : len(stats)] = stats
        out[i, len(stats):] = norms
    return out


def composition_graph(comp: Composition, y: Sequence[float] | np.ndarray | None = None) -> Data:
    """A fully connected element graph of ``comp`` for Roost-style message passing.

    Nodes are the distinct elements: ``x`` (z-scored element features), ``z`` (atomic number),
    ``weight`` (atomic fraction, sums to 1). ``edge_index`` holds every ordered pair i≠j (a
    self-loop for a single element). ``y`` (``(1, n_targets)``, NaN = missing label) is optional.
    """
    zs, fr = _fractions(comp)
    k = len(zs)
    if k == 1:
        edge_index = torch.zeros((2, 1), dtype=torch.long)
    else:
        src, dst = np.where(~np.eye(k, dtype=bool))
        edge_index = torch.as_tensor(np.stack([src, dst]), dtype=torch.long)
    data = Data(
        x=torch.as_tensor(element_table()[zs]),
        z=torch.as_tensor(zs),
        weight=torch.as_tensor(fr, dtype=torch.float32).unsqueeze(-1),
        edge_index=edge_index,
    )
    if y is not None:
        data.y = torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(1, -1))
    data.formula = comp.reduced_formula
    return data
