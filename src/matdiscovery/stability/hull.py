"""Convex hull of formation energies from JARVIS-DFT entries (pymatgen ``PhaseDiagram``).

One phase diagram over all ~90 elements is out of reach for qhull, so the hull is built lazily
per chemical system: for a query composition every JARVIS compound whose elements are a subset
of the query's elements enters, plus each element at 0 eV/atom (the reference that defines a
formation energy). Energies are formation energies in eV/atom (JARVIS: OptB88vdW).

JARVIS's own elemental rows are not used as hull points: their "formation energies" are not
all zero (851 rows, from -0.56 to +5.3 eV/atom, see notebook 00), which would shift the hull.
"""

from __future__ import annotations

from itertools import combinations
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element


def _chemsys(comp: Composition) -> frozenset[str]:
    return frozenset(el.symbol for el in comp.elements)


class FormationEnergyHull:
    """Energy above the convex hull (eV/atom) of predicted formation energies.

    Build with :meth:`from_frame` (a :func:`~matdiscovery.datasets.load_jarvis_dft` frame).
    ``exclude`` (ids or reduced formulas) leaves entries out, e.g. the control materials
    themselves, so a known material is judged against the rest of the database.
    """

    def __init__(self, compositions: Sequence[Composition], formation_energies: Sequence[float],
                 ids: Sequence[str] | None = None):
        if len(compositions) != len(formation_energies):
            raise ValueError(
                f"{len(compositions)} compositions but {len(formation_energies)} formation energies"
            )
        ids = list(ids) if ids is not None else [str(i) for i in range(len(compositions))]
        self._by_system: dict[frozenset[str], list[PDEntry]] = {}
        for comp, ef, name in zip(compositions, formation_energies, ids):
            if len(comp.elements) < 2 or not np.isfinite(ef):
                continue
            entry = PDEntry(comp, float(ef) * comp.num_atoms, name=name)
            self._by_system.setdefault(_chemsys(comp), []).append(entry)
        self._diagrams: dict[frozenset[str], PhaseDiagram] = {}
        self.n_entries = sum(len(v) for v in self._by_system.values())

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, exclude: Iterable[str] = (),
                   energy_column: str = "formation_energy_per_atom") -> "FormationEnergyHull":
        """Hull from a frame with ``composition``, ``energy_column`` (eV/atom) and ``jid``;
        rows whose ``jid`` or reduced formula is in ``exclude`` are left out."""
        for col in ("composition", energy_column):
            if col not in frame.columns:
                raise KeyError(f"frame has no column {col!r}; columns: {list(frame.columns)}")
        drop = set(exclude)
        ids = frame["jid"].astype(str) if "jid" in frame.columns else pd.Series(frame.index.astype(str), index=frame.index)
        formulas = frame["composition"].map(lambda c: c.reduced_formula)
        keep = ~(ids.isin(drop) | formulas.isin(drop))
        sub = frame.loc[keep]
        return cls(list(sub["composition"]), sub[energy_column].to_numpy(float), list(ids[keep]))

    def phase_diagram(self, elements: Iterable[str | Element]) -> PhaseDiagram:
        """The (cached) phase diagram of the chemical system spanned by ``elements``."""
        system = frozenset(Element(e).symbol if isinstance(e, str) else e.symbol for e in elements)
        if system not in self._diagrams:
            entries = [PDEntry(Composition(el), 0.0, name=el) for el in sorted(system)]
            for k in range(2, len(system) + 1):
                for sub in combinations(sorted(system), k):
                    entries.extend(self._by_system.get(frozenset(sub), ()))
            self._diagrams[system] = PhaseDiagram(entries)
        return self._diagrams[system]

    def e_above_hull(self, composition: Composition, formation_energy_per_atom: float) -> float:
        """Signed distance (eV/atom) of ``(composition, formation energy)`` to the hull: negative
        means below the known hull (it would become a new hull vertex)."""
        if not np.isfinite(formation_energy_per_atom):
            return float("nan")
        comp = Composition(composition)
        if comp.num_atoms <= 0:
            raise ValueError(f"empty composition {composition!r}")
        pd_ = self.phase_diagram(comp.elements)
        entry = PDEntry(comp, float(formation_energy_per_atom) * comp.num_atoms)
        _, e = pd_.get_decomp_and_e_above_hull(entry, allow_negative=True, check_stable=False)
        return float(e)

    def e_above_hull_many(self, compositions: Sequence[Composition], formation_energies: Sequence[float]) -> np.ndarray:
        """:meth:`e_above_hull` for each pair (NaN where the energy is NaN)."""
        return np.array([self.e_above_hull(c, e) for c, e in zip(compositions, formation_energies)], dtype=float)
