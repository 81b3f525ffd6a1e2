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
    """Energies and MP2020-corrected formation energies (eV/atom) of structures from SevenNet.

    Energies come from the calculator's own model and graph builder, batched ``batch_size``
    structures per forward (``torch_geometric`` ``Batch``, the layout SevenNet trains on) and
    without the force/stress output module (an energy needs no gradients): the same numbers as
    ``SevenNetCalculator`` per structure (float round-off apart; tested), about 2x faster."""

    def __init__(self, model_name: str = DEFAULT_MODEL, batch_size: int = 32):
        import copy

        from sevenn.calculator import SevenNetCalculator

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        with contextlib.redirect_stdout(io.StringIO()):
            self.calculator = SevenNetCalculator(model_name, device="cpu")
        self.model_name = model_name
        self.batch_size = batch_size
        self._energy_model = copy.deepcopy(self.calculator.model)  # energy-only, batched copy
        self._energy_model.set_is_batch_data(True)
        self._energy_model.delete_module_by_key("force_output")
        self._energy_model.requires_grad_(False)

    @property
    def version(self) -> str:
        """``"sevenn <package version>, weights <model_name>"``."""
        from importlib.metadata import version

        return f"sevenn {version('sevenn')}, weights {self.model_name}"

    def _graph(self, structure: Structure):
        from pymatgen.io.ase import AseAtomsAdaptor
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        atoms = AseAtomsAdaptor.get_atoms(structure)
        self.calculator.set_atoms(atoms)  # raises on an element the model does not know
        return AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, self.calculator.cutoff, with_shift=False))

    def _energies(self, graphs: list) -> np.ndarray:
        """Total energies (eV) of ``graphs`` in one batched forward."""
        import torch
        from sevenn import _keys as KEY
        from torch_geometric.data import Batch

        with torch.no_grad():
            out = self._energy_model(Batch.from_data_list(graphs))
        return out[KEY.PRED_TOTAL_ENERGY].detach().numpy().astype(np.float64).reshape(-1)

    def predict_energy(self, structures: Sequence[Structure], progress: bool = True) -> np.ndarray:
        """Uncorrected SevenNet energy per atom (eV/atom); NaN where the model fails on a structure
        (a failing batch is retried structure by structure, so one bad structure costs only itself)."""
        structures = list(structures)
        for i, s in enumerate(structures):
            if not isinstance(s, Structure):
                raise TypeError(f"item {i} is a {type(s).__name__}, not a pymatgen Structure")
        out = np.full(len(structures), np.nan)
        bar = progress_bar(total=len(structures), desc="SevenNet", progress=progress)
        for start in range(0, len(structures), self.batch_size):
            idx, graphs = [], []
            for i in range(start, min(start + self.batch_size, len(structures))):
                try:
                    graphs.append(self._graph(structures[i]))
                    idx.append(i)
                except Exception:  # noqa: BLE001 - one structure must not stop a screen; NaN is counted downstream
                    pass
            try:
                energies = self._energies(graphs) if graphs else []
            except Exception:  # noqa: BLE001 - find the structure that fails, keep the others
                energies = []
                for g in graphs:
                    try:
                        energies.append(self._energies([g])[0])
                    except Exception:  # noqa: BLE001
                        energies.append(np.nan)
            for i, e in zip(idx, energies):
                out[i] = float(e) / len(structures[i])
            bar.update(min(self.batch_size, len(structures) - start))
        bar.close()
        return out

    def predict_formation_energy(self, structures: Sequence[Structure], progress: bool = True) -> np.ndarray:
        """MP2020-corrected SevenNet formation energy per atom (eV/atom) vs MP elemental references."""
        structures = list(structures)
        raw = self.predict_energy(structures, progress=progress)
        corrected = [mp2020_corrected_energy(s, e) for s, e in zip(structures, raw)]
        return formation_energy([s.composition for s in structures], corrected)
