"""Formation energies from universal potentials, and their honest placement on the JARVIS hull.

- :func:`formation_energy`: ``E/atom − Σ x_el μ_el`` (eV/atom) with the Materials Project GGA
  energies of the lowest-energy elemental phases (matbench-discovery's references);
- :func:`mp2020_corrected_energy`: MP2020 anion and GGA+U corrections (pymatgen's
  ``MaterialsProject2020Compatibility``) for a potential trained on *uncorrected* MPtrj energies
  (SevenNet, as matbench-discovery does for such models). CHGNet is trained on corrected energies:
  never correct it again;
- :func:`chemistry_class` and :class:`ChemistryOffsets`: the mismatch between MP-compatible
  (PBE/PBE+U, MP2020) and JARVIS (OptB88vdW) formation energies depends on chemistry, so one
  offset per class is fitted on the control crystals (median of judge − JARVIS), with its
  cross-validated residual error per class, and subtracted before the hull;
- :func:`absurd_reason`: physically absurd outputs, rejected with a counted reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np
from pymatgen.core import Composition, Element, Structure

#: e_hull (eV/atom) at or below which a crystal counts as stable (MatterGen's S.U.N. threshold)
STABILITY_THRESHOLD = 0.1
#: formation energies outside this window (eV/atom) are rejected as absurd: the most negative known
#: formation energies (fluorides) are about −4.5 eV/atom, and compounds above +5 eV/atom do not exist
FORMATION_ENERGY_WINDOW = (-5.0, 5.0)
#: a relaxation that changes the volume by more than this factor (either way) blew up
MAX_VOLUME_RATIO = 3.0
#: an input denser than this (Å^3/atom) is absurd and not relaxed: diamond, the densest crystal at
#: ambient pressure, has 5.67 and the densest Carbon-24 allotrope 5.42 (megabar superhydrides ~3.3);
#: relaxed, such GAN outputs (e.g. SbH8N at 2.1) blew up (volume x3) or reached E_f < -5 eV/atom after
#: 50-300 costly steps
MIN_VOLUME_PER_ATOM_A3 = 4.0
#: the relaxation error text of a structure stopped because its CHGNet graph outgrew the memory guard
GRAPH_TOO_LARGE = "CHGNet graph too large"
#: after relaxation an atom whose nearest neighbour is farther than this (Å) has left the crystal
MAX_NEAREST_NEIGHBOUR_A = 5.0
#: after relaxation two atoms closer than this (Å) have collapsed (CDVAE's structural validity)
MIN_DISTANCE_A = 0.5

#: chemistry classes for the functional-mismatch offsets, decided by the most electronegative element
CHEMISTRY_CLASSES = ("intermetallic", "oxide_fluoride", "tm_oxide_fluoride", "non_oxide_anion")
#: elements MP2020 treats with GGA+U in oxides and fluorides
U_ELEMENTS = frozenset({"Co", "Cr", "Fe", "Mn", "Mo", "Ni", "V", "W"})
#: non-metals that make a compound a nitride, pnictide, chalcogenide, halide, hydride, carbide, boride or silicide
NON_OXIDE_ANIONS = frozenset({"H", "B", "C", "N", "Si", "P", "S", "Cl", "As", "Se", "Br", "Te", "I"})


@lru_cache(maxsize=1)
def elemental_references() -> dict[Element, float]:
    """MP GGA energy per atom (eV/atom) of each element's lowest-energy phase."""
    from matdiscovery.datasets import load_mp_elemental_references

    return {el: float(e.energy_per_atom) for el, e in load_mp_elemental_references().items()}


def formation_energy(compositions: Sequence[Composition], energies_per_atom: Sequence[float]) -> np.ndarray:
    """``E/atom − Σ_el x_el μ_el`` (eV/atom) with the MP elemental references; NaN energies stay NaN."""
    refs = elemental_references()
    out = np.empty(len(compositions), dtype=np.float64)
    for i, (comp, e) in enumerate(zip(compositions, energies_per_atom)):
        frac = Composition(comp).fractional_composition
        missing = [el.symbol for el in frac if el not in refs]
        if missing:
            raise KeyError(f"no MP elemental reference for {missing} (composition {comp})")
        out[i] = float(e) - sum(refs[el] * x for el, x in frac.items())
    return out


def mp2020_corrected_energy(structure: Structure, energy_per_atom: float) -> float:
    """``energy_per_atom`` (eV/atom, uncorrected MP-compatible PBE/PBE+U) plus the MP2020
    correction per atom that pymatgen's ``MaterialsProject2020Compatibility`` assigns; GGA+U is
    assumed where MP uses it (an O or F compound with one of :data:`U_ELEMENTS`)."""
    from pymatgen.entries.computed_entries import ComputedStructureEntry
    from pymatgen.io.vasp.sets import MPRelaxSet

    if not np.isfinite(energy_per_atom):
        return float("nan")
    symbols = {el.symbol for el in structure.composition.elements}
    anion = "F" if "F" in symbols else "O" if "O" in symbols else None
    u_values = MPRelaxSet.CONFIG["INCAR"]["LDAUU"]
    hubbards = {el: u_values[anion][el] for el in sorted(symbols & U_ELEMENTS)} if anion else {}
    entry = ComputedStructureEntry(structure, float(energy_per_atom) * len(structure), parameters={
        "run_type": "GGA+U" if hubbards else "GGA", "is_hubbard": bool(hubbards), "hubbards": hubbards})
    processed = _mp2020().process_entry(entry)
    if processed is None:
        raise ValueError(f"MP2020 compatibility rejected {structure.composition.reduced_formula}")
    return float(processed.energy_per_atom)


@lru_cache(maxsize=1)
def _mp2020():
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility(check_potcar=False)


def chemistry_class(composition: Composition | str) -> str:
    """One of :data:`CHEMISTRY_CLASSES` from the most electronegative element (Pauling): O or F
    makes an oxide/fluoride (``tm_`` when it holds a GGA+U element), a non-metal of
    :data:`NON_OXIDE_ANIONS` a non-oxide anion compound; otherwise intermetallic."""
    comp = Composition(composition)
    if len(comp.elements) == 0:
        raise ValueError(f"empty composition {composition!r}")
    symbols = {el.symbol for el in comp.elements}
    top = max(comp.elements, key=lambda el: (el.X if np.isfinite(el.X) else 0.0, el.Z)).symbol
    if top in ("O", "F"):
        return "tm_oxide_fluoride" if symbols & U_ELEMENTS else "oxide_fluoride"
    if top in NON_OXIDE_ANIONS and len(symbols) > 1:
        return "non_oxide_anion"
    return "intermetallic"


@dataclass
class ChemistryOffsets:
    """Per-class offset (eV/atom) of a judge's formation energies from JARVIS's: the median of
    judge − JARVIS over the control crystals of that class (the global median for a class
    without controls). ``cv_mae_raw`` / ``cv_mae_corrected``: per-class mean |judge − JARVIS|
    before and after subtracting offsets fitted on the other folds (``n_folds``-fold CV)."""

    offsets: dict[str, float]
    global_offset: float
    n: dict[str, int]
    cv_mae_raw: dict[str, float] = field(default_factory=dict)
    cv_mae_corrected: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, classes: Sequence[str], judge_ef: Sequence[float], dft_ef: Sequence[float], *, n_folds: int = 5,
            seed: int = 0) -> "ChemistryOffsets":
        """Fit on the finite pairs; classes must be from :data:`CHEMISTRY_CLASSES`."""
        classes = np.asarray(classes, dtype=object)
        diff = np.asarray(judge_ef, float) - np.asarray(dft_ef, float)
        if not (len(classes) == len(diff)):
            raise ValueError(f"{len(classes)} classes for {len(diff)} energies")
        unknown = set(classes) - set(CHEMISTRY_CLASSES)
        if unknown:
            raise ValueError(f"unknown chemistry classes {sorted(unknown)}; expected {CHEMISTRY_CLASSES}")
        ok = np.isfinite(diff)
        classes, diff = classes[ok], diff[ok]
        if len(diff) < n_folds:
            raise ValueError(f"need at least {n_folds} finite control pairs, got {len(diff)}")
        fitted = cls._medians(classes, diff)
        folds = np.random.default_rng(seed).permutation(len(diff)) % n_folds
        corrected = np.empty_like(diff)
        for k in range(n_folds):
            part = cls._medians(classes[folds != k], diff[folds != k])
            corrected[folds == k] = diff[folds == k] - part.shift(classes[folds == k])
        fitted.cv_mae_raw = {c: float(np.abs(diff[classes == c]).mean()) for c in fitted.n if fitted.n[c]}
        fitted.cv_mae_corrected = {c: float(np.abs(corrected[classes == c]).mean()) for c in fitted.n if fitted.n[c]}
        fitted.cv_mae_raw["all"] = float(np.abs(diff).mean())
        fitted.cv_mae_corrected["all"] = float(np.abs(corrected).mean())
        return fitted

    @classmethod
    def _medians(cls, classes: np.ndarray, diff: np.ndarray) -> "ChemistryOffsets":
        glob = float(np.median(diff))
        n = {c: int((classes == c).sum()) for c in CHEMISTRY_CLASSES}
        return cls({c: float(np.median(diff[classes == c])) if n[c] else glob for c in CHEMISTRY_CLASSES}, glob, n)

    def shift(self, classes: Sequence[str]) -> np.ndarray:
        """The offset (eV/atom) of each class."""
        return np.array([self.offsets.get(c, self.global_offset) for c in classes], dtype=float)

    def apply(self, classes: Sequence[str], formation_energies: Sequence[float]) -> np.ndarray:
        """Formation energies (eV/atom) moved onto the JARVIS scale: ``E_f − offset[class]``."""
        return np.asarray(formation_energies, float) - self.shift(classes)

    def weighted_offset(self, classes: Sequence[str]) -> float:
        """Mean offset (eV/atom) over a set of materials (their class mix)."""
        return float(self.shift(classes).mean()) if len(classes) else float("nan")


def absurd_reason(*, formation_energy: float, volume_ratio: float = 1.0, min_distance: float = np.inf,
                  n_isolated: int = 0, n_atoms_before: int = 0, n_atoms_after: int = 0, relax_error: str = "",
                  volume_per_atom: float = np.inf) -> str:
    """Why a (relaxed) structure's result is physically absurd, or ``""``: atoms lost, an input denser
    than :data:`MIN_VOLUME_PER_ATOM_A3` (``volume_per_atom``, Å^3/atom, of the input), a CHGNet graph
    that outgrew :data:`~matdiscovery.stability.relax.MAX_ANGLES` (``relax_error`` holds
    :data:`GRAPH_TOO_LARGE`: the cell collapsed, or was absurdly dense to begin with), no energy,
    a formation energy (eV/atom) outside :data:`FORMATION_ENERGY_WINDOW`, a volume change beyond
    :data:`MAX_VOLUME_RATIO`, atoms collapsed (< :data:`MIN_DISTANCE_A` Å) or isolated (no
    neighbour within :data:`MAX_NEAREST_NEIGHBOUR_A` Å); checked in that order."""
    lo, hi = FORMATION_ENERGY_WINDOW
    if n_atoms_after != n_atoms_before:
        return "lost atoms"
    if volume_per_atom < MIN_VOLUME_PER_ATOM_A3:
        return "input denser than any crystal"
    if GRAPH_TOO_LARGE in relax_error:
        return "relaxation blow-up (graph)"
    if not np.isfinite(formation_energy):
        return "no energy"
    if not lo <= formation_energy <= hi:
        return "formation energy outside window"
    if not (1 / MAX_VOLUME_RATIO <= volume_ratio <= MAX_VOLUME_RATIO):
        return "relaxation blow-up (volume)"
    if min_distance < MIN_DISTANCE_A:
        return "collapsed atoms"
    if n_isolated > 0:
        return "isolated atom"
    return ""
