"""CHGNet (pretrained universal potential) as a structure-based stability judge.

Energies come from CHGNet's own model and graph converter; what differs from the library's
``predict_structure(task="e")`` is only the plumbing, so energies are identical: the model runs
under ``torch.inference_mode`` (the library builds an autograd graph even for energy-only
predictions), and graphs can be cached by structure fingerprint (re-screening the same
structures). The judge is single-process; screens scale out by running it per shard on Dask
workers (:mod:`matdiscovery.stability.distributed`).

Formation energies (eV/atom) subtract Materials Project GGA elemental reference energies
(:func:`matdiscovery.datasets.load_mp_elemental_references`, lowest-energy elemental phases);
the default weights (``"0.3.0"``, shipped in the chgnet wheel, here chgnet 0.4.2) were trained
on MPtrj (MP GGA/GGA+U, MP2020-compatible energies).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from typing import Iterator, Sequence

import numpy as np
import torch
from pymatgen.core import Composition, Element, Structure

from matdiscovery.progress import progress_bar

DEFAULT_MODEL = "0.3.0"


def _prepare(model, graphs: list) -> tuple:
    """What ``CHGNet.forward`` computes before its convolutions: the batched, featurised graph
    and the composition-model energy (same modules, same weights, so identical numbers)."""
    from chgnet.model.model import BatchedGraph

    with torch.inference_mode():
        comp_energy = 0 if model.composition_model is None else model.composition_model(graphs)
        batched = BatchedGraph.from_graphs(
            graphs, bond_basis_expansion=model.bond_basis_expansion,
            angle_basis_expansion=model.angle_basis_expansion, compute_stress=False,
        )
    return batched, comp_energy


def _energies(model, batched, comp_energy) -> np.ndarray:
    """The rest of ``CHGNet.forward(task="e")``: convolutions, readout, plus the AtomRef energy."""
    with torch.inference_mode():
        pred = model._compute(batched, compute_force=False, compute_stress=False, compute_magmom=False)
        return (pred["e"] + comp_energy).numpy().astype(np.float64)


def structure_fingerprint(structure: Structure) -> str:
    """A hash of lattice, species and fractional coordinates (exact, for graph caching)."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    h.update(",".join(s.species_string for s in structure).encode())
    return h.hexdigest()


class ChgnetJudge:
    """Energies (eV/atom) and formation energies (eV/atom) of structures from pretrained CHGNet.

    ``batch_size`` structures per model call, ``threads`` torch threads (1 is fastest per core on
    a shared machine; ``None`` leaves torch's setting alone; note this is process-wide),
    ``cache`` keeps graphs keyed by :func:`structure_fingerprint`.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, batch_size: int = 32, threads: int | None = 1,
                 cache: bool = False):
        from chgnet.model import CHGNet

        if batch_size < 1:
            raise ValueError(f"need batch_size ≥ 1; got {batch_size}")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"need threads ≥ 1 (or None); got {threads}")
            torch.set_num_threads(threads)
        with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints on load even with verbose=False
            self.model = CHGNet.load(model_name=model_name, verbose=False)
        self.model.eval()
        self.model_name = model_name
        self.batch_size = batch_size
        self._cache: dict[str, object] | None = {} if cache else None

    @property
    def version(self) -> str:
        """``"chgnet <package version>, weights <model_name>"``."""
        from importlib.metadata import version

        return f"chgnet {version('chgnet')}, weights {self.model_name}"

    # ------------------------------------------------------------------ energies
    def _batch_energies(self, structures: list[Structure]) -> Iterator[np.ndarray]:
        """Yield the energies (eV/atom) of each batch of ``batch_size`` structures, in order."""
        for i in range(0, len(structures), self.batch_size):
            chunk = structures[i:i + self.batch_size]
            yield _energies(self.model, *_prepare(self.model, [self._graph(s) for s in chunk]))

    def _graph(self, structure: Structure):
        if self._cache is None:
            return self.model.graph_converter(structure)
        key = structure_fingerprint(structure)
        if key not in self._cache:
            self._cache[key] = self.model.graph_converter(structure)
        return self._cache[key]

    def predict_energy(self, structures: Sequence[Structure], progress: bool = True) -> np.ndarray:
        """CHGNet energy per atom (eV/atom) of each structure, identical to
        ``CHGNet.predict_structure(task="e")``."""
        structures = [structures] if isinstance(structures, Structure) else list(structures)
        for i, s in enumerate(structures):
            if not isinstance(s, Structure):
                raise TypeError(f"item {i} is a {type(s).__name__}, not a pymatgen Structure")
        out = np.empty(len(structures), dtype=np.float64)
        start = 0
        bar = progress_bar(total=len(structures), desc="CHGNet", progress=progress, leave=False)
        for e in self._batch_energies(structures):
            out[start:start + len(e)] = e
            start += len(e)
            bar.update(len(e))
        bar.close()
        return out

    # ------------------------------------------------------------------ formation energies
    def elemental_references(self) -> dict[Element, float]:
        """MP GGA energy per atom (eV/atom) of each element's lowest-energy phase."""
        from matdiscovery.stability.energies import elemental_references

        return elemental_references()

    def formation_energy(self, compositions: Sequence[Composition], energies_per_atom: Sequence[float]) -> np.ndarray:
        """``E/atom - Σ_el x_el μ_el`` in eV/atom with the MP elemental references."""
        from matdiscovery.stability.energies import formation_energy

        return formation_energy(compositions, energies_per_atom)

    def predict_formation_energy(self, structures: Sequence[Structure], progress: bool = True) -> np.ndarray:
        """CHGNet formation energy per atom (eV/atom) vs MP elemental references."""
        structures = list(structures)
        energies = self.predict_energy(structures, progress=progress)
        return self.formation_energy([s.composition for s in structures], energies)


def library_default_energy(model, structures: Sequence[Structure], batch_size: int = 32) -> np.ndarray:
    """The baseline: CHGNet's own ``predict_structure(task="e", batch_size=32)`` (eV/atom)."""
    preds = model.predict_structure(list(structures), task="e", batch_size=batch_size)
    preds = [preds] if isinstance(preds, dict) else preds
    return np.array([float(p["e"]) for p in preds], dtype=np.float64)

