"""CHGNet (pretrained universal potential) as a structure-based stability judge.

Energies come from CHGNet's own model and graph converter; what differs from the library's
``predict_structure(task="e")`` is only the plumbing, so energies are identical:

- crystal graphs are built and featurised into batches (``BatchedGraph``, composition-model
  energy) in worker processes (``n_workers``), so graph construction overlaps the
  convolutions running in the main process;
- the model runs under ``torch.inference_mode`` (the library builds an autograd graph even
  for energy-only predictions) with a larger batch;
- optionally graphs are cached by structure fingerprint (re-screening the same structures).

Formation energies (eV/atom) subtract Materials Project GGA elemental reference energies
(:func:`matdiscovery.datasets.load_mp_elemental_references`, lowest-energy elemental phases);
the default weights (``"0.3.0"``, shipped in the chgnet wheel, here chgnet 0.4.2) were trained
on MPtrj (MP GGA/GGA+U, MP2020-compatible energies).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator, Sequence

import numpy as np
import torch
from pymatgen.core import Composition, Element, Structure
from tqdm.auto import tqdm

DEFAULT_MODEL = "0.3.0"

_WORKER_MODEL = None


def _worker_init(model_name: str) -> None:
    global _WORKER_MODEL
    import contextlib
    import io

    from chgnet.model import CHGNet

    torch.set_num_threads(1)
    with contextlib.redirect_stdout(io.StringIO()):
        _WORKER_MODEL = CHGNet.load(model_name=model_name, verbose=False)
    _WORKER_MODEL.eval()


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


def _worker_batch(structures: list[Structure]) -> tuple:
    graphs = [_WORKER_MODEL.graph_converter(s) for s in structures]
    return _prepare(_WORKER_MODEL, graphs)


def _energies(model, batched, comp_energy) -> np.ndarray:
    """The rest of ``CHGNet.forward(task="e")``: convolutions, readout, plus the AtomRef energy."""
    with torch.inference_mode():
        pred = model._compute(batched, compute_force=False, compute_stress=False, compute_magmom=False)
        return (pred["e"] + comp_energy).numpy().astype(np.float64)


def _worker_energy(structures: list[Structure]) -> np.ndarray:
    return _energies(_WORKER_MODEL, *_worker_batch(structures))


def structure_fingerprint(structure: Structure) -> str:
    """A hash of lattice, species and fractional coordinates (exact, for graph caching)."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    h.update(",".join(s.species_string for s in structure).encode())
    return h.hexdigest()


class ChgnetJudge:
    """Energies (eV/atom) and formation energies (eV/atom) of structures from pretrained CHGNet.

    ``n_workers`` processes build and featurise graph batches (0 = in this process; the cache
    is used only then; the processes persist between calls until :meth:`close`, or use the
    judge as a context manager), ``batch_size`` structures per model call, ``threads`` torch threads for
    the model (1 is fastest on a shared 2-core machine), ``cache`` keeps graphs keyed by
    :func:`structure_fingerprint`. ``mode="pipeline"`` (workers prepare batches, this process
    runs the convolutions) or ``"parallel"`` (workers compute whole batches).
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, n_workers: int = 1, batch_size: int = 32,
                 threads: int | None = 1, cache: bool = False, mode: str = "pipeline"):
        from chgnet.model import CHGNet

        if mode not in ("pipeline", "parallel"):
            raise ValueError(f"mode must be 'pipeline' or 'parallel', got {mode!r}")
        self.mode = mode
        if batch_size < 1 or n_workers < 0:
            raise ValueError(f"need batch_size ≥ 1 and n_workers ≥ 0; got {batch_size}, {n_workers}")
        if threads is not None:
            torch.set_num_threads(threads)
        with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints on load even with verbose=False
            self.model = CHGNet.load(model_name=model_name, verbose=False)
        self.model.eval()
        self.model_name = model_name
        self.n_workers, self.batch_size = n_workers, batch_size
        self._cache: dict[str, object] | None = {} if cache else None
        self._refs: dict[Element, float] | None = None
        self._pool: ProcessPoolExecutor | None = None

    @property
    def version(self) -> str:
        """``"chgnet <package version>, weights <model_name>"``."""
        from importlib.metadata import version

        return f"chgnet {version('chgnet')}, weights {self.model_name}"

    # ------------------------------------------------------------------ energies
    def _batch_energies(self, structures: list[Structure]) -> Iterator[np.ndarray]:
        """Yield the energies (eV/atom) of each batch of ``batch_size`` structures, in order.

        ``mode="pipeline"``: workers build and featurise batches, this process runs the
        convolutions; ``mode="parallel"``: workers do everything for their batches.
        """
        chunks = [structures[i:i + self.batch_size] for i in range(0, len(structures), self.batch_size)]
        if self.n_workers > 0 and len(chunks) > 1:
            pool = self._worker_pool()
            # map() submits every chunk at once; workers run ahead of this process
            if self.mode == "parallel":
                yield from pool.map(_worker_energy, chunks)
            else:
                for prepared in pool.map(_worker_batch, chunks):
                    yield _energies(self.model, *prepared)
        else:
            for chunk in chunks:
                yield _energies(self.model, *_prepare(self.model, [self._graph(s) for s in chunk]))

    def _worker_pool(self) -> ProcessPoolExecutor:
        """The judge's worker processes, started on first use (each loads the model once) and
        kept until :meth:`close`."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.n_workers, initializer=_worker_init, initargs=(self.model_name,))
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "ChgnetJudge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

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
        bar = tqdm(total=len(structures), desc="CHGNet", disable=not progress, leave=False)
        for e in self._batch_energies(structures):
            out[start:start + len(e)] = e
            start += len(e)
            bar.update(len(e))
        bar.close()
        return out

    def relax(self, structures: Sequence[Structure], steps: int, fmax: float = 0.1,
              progress: bool = True, failures: dict[int, str] | None = None) -> list[Structure]:
        """A short FIRE relaxation (``steps`` ionic steps, cell included, ``fmax`` in eV/Å) of each
        structure. A structure whose relaxation fails keeps its input geometry; pass a dict as
        ``failures`` to receive ``{index: reason}`` for those."""
        if steps <= 0:
            return list(structures)
        from chgnet.model import StructOptimizer

        try:  # the cell filter's 3x3 matrix logarithms crawl when BLAS spawns threads on a busy machine
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            threadpool_limits = None
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the device
            opt = StructOptimizer(model=self.model, optimizer_class="FIRE")
        out = []
        for i, s in enumerate(tqdm(structures, desc="relax", disable=not progress, leave=False)):
            try:
                limit = threadpool_limits(1) if threadpool_limits is not None else contextlib.nullcontext()
                with limit, contextlib.redirect_stdout(io.StringIO()):
                    res = opt.relax(s, fmax=fmax, steps=steps, relax_cell=True, verbose=False)
                out.append(res["final_structure"])
            except Exception as exc:  # noqa: BLE001 - one bad structure must not stop the screening
                out.append(s)
                if failures is not None:
                    failures[i] = f"relaxation failed ({type(exc).__name__}: {str(exc)[:80]}); unrelaxed energy used"
        return out

    # ------------------------------------------------------------------ formation energies
    def elemental_references(self) -> dict[Element, float]:
        """MP GGA energy per atom (eV/atom) of each element's lowest-energy phase."""
        if self._refs is None:
            from matdiscovery.datasets import load_mp_elemental_references

            self._refs = {el: float(e.energy_per_atom) for el, e in load_mp_elemental_references().items()}
        return self._refs

    def formation_energy(self, compositions: Sequence[Composition], energies_per_atom: Sequence[float]) -> np.ndarray:
        """``E/atom - Σ_el x_el μ_el`` in eV/atom with the MP elemental references."""
        refs = self.elemental_references()
        out = np.empty(len(compositions), dtype=np.float64)
        for i, (comp, e) in enumerate(zip(compositions, energies_per_atom)):
            frac = Composition(comp).fractional_composition
            missing = [el.symbol for el in frac if el not in refs]
            if missing:
                raise KeyError(f"no MP elemental reference for {missing} (composition {comp})")
            out[i] = float(e) - sum(refs[el] * x for el, x in frac.items())
        return out

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


def default_workers() -> int:
    """One graph-building worker when there is more than one core, else none."""
    return 1 if (os.cpu_count() or 1) > 1 else 0
