"""SevenNet (pretrained universal potential, ``sevenn`` wheel, GPL-3.0) as the second structure judge.

SevenNet-0 (``"7net-0"``; matbench-discovery F1 0.72, MAE 0.048 eV/atom, against CHGNet's 0.61 /
0.063) and SevenNet-l3i5 (``"7net-l3i5"``, F1 0.76) ship inside the wheel and load offline. They
are trained on MPtrj's uncorrected PBE/PBE+U energies, so their energies get the MP2020 corrections
(:func:`~matdiscovery.stability.energies.mp2020_corrected_energy`) before formation energies, as
matbench-discovery does; CHGNet's do not (it learnt corrected energies).
"""

from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np
from pymatgen.core import Structure

from matdiscovery.progress import progress_bar
from matdiscovery.stability.energies import formation_energy, mp2020_corrected_energy

DEFAULT_MODEL = "7net-0"


class SevennetJudge:
    """Energies and MP2020-corrected formation energies (eV/atom) of structures from SevenNet."""

    def __init__(self, model_name: str = DEFAULT_MODEL):
        from sevenn.calculator import SevenNetCalculator

        with contextlib.redirect_stdout(io.StringIO()):
            self.calculator = SevenNetCalculator(model_name, device="cpu")
        self.model_name = model_name

    @property
    def version(self) -> str:
        """``"sevenn <package version>, weights <model_name>"``."""
        from importlib.metadata import version

        return f"sevenn {version('sevenn')}, weights {self.model_name}"

    def predict_energy(self, structures: Sequence[Structure], progress: bool = True) -> np.ndarray:
        """Uncorrected SevenNet energy per atom (eV/atom); NaN where the model fails on a structure."""
        from pymatgen.io.ase import AseAtomsAdaptor

        out = np.full(len(structures), np.nan)
        for i, s in enumerate(progress_bar(structures, desc="SevenNet", progress=progress)):
            if not isinstance(s, Structure):
                raise TypeError(f"item {i} is a {type(s).__name__}, not a pymatgen Structure")
            atoms = AseAtomsAdaptor.get_atoms(s)
            atoms.calc = self.calculator
            try:
                out[i] = float(atoms.get_potential_energy()) / len(atoms)
            except Exception:  # noqa: BLE001 - one structure must not stop a screen; NaN is counted downstream
                pass
        return out

    def predict_formation_energy(self, structures: Sequence[Structure], progress: bool = True) -> np.ndarray:
        """MP2020-corrected SevenNet formation energy per atom (eV/atom) vs MP elemental references."""
        structures = list(structures)
        raw = self.predict_energy(structures, progress=progress)
        corrected = [mp2020_corrected_energy(s, e) for s, e in zip(structures, raw)]
        return formation_energy([s.composition for s in structures], corrected)
