"""Batched CHGNet relaxation (FIRE, or BFGS/LBFGS, atoms and cell) of many crystals at once.

Every valid, unique generated structure is relaxed with CHGNet before the convex hull, and the
relaxation dominates the cost of screening. :func:`relax_structures` relaxes many structures
together: each iteration evaluates all active structures in **one** batched CHGNet forward
(energy, forces, stress) and then advances each structure's own optimiser by one step.
:func:`relax_with_structoptimizer` is the baseline (CHGNet's ``StructOptimizer``, one structure
at a time) and :func:`compare_relaxers` times both on the same structures.

Units: energies in eV/atom, forces and ``fmax`` in eV/Å, stresses in eV/Å³ inside the
optimiser (CHGNet predicts GPa; converted with ``ase.units.GPa`` exactly as CHGNet's calculator does).

Why it matches ``StructOptimizer``: CHGNet's ``StructOptimizer.relax(s, fmax, steps,
relax_cell=True)`` runs ASE's ``FIRE`` (its default ``optimizer_class``; BFGS and LBFGS likewise)
on ``ase.filters.FrechetCellFilter(atoms)`` with a
``CHGNetCalculator``, and ASE's ``Dynamics.irun`` does: evaluate; converged? stop; otherwise
``step()``, ``nsteps += 1`` and repeat, stopping at ``steps``. Here every structure keeps its own ASE
``Atoms``, cell filter and ASE optimiser object (ASE's own update rule, not a re-implementation) and
follows exactly that loop. Three things are computed differently, each to the same numbers up to
float round-off (each is tested against the original): the CHGNet results for all active structures
come from one batched forward and one backward pass (:func:`predict_efs`, the model's own modules
and weights); CHGNet's graphs are built with array operations (:func:`crystal_graph`, tensor for
tensor equal to the model's own ``graph_converter``); and the cell filter is ASE's
``FrechetCellFilter`` with its 3x3 matrix functions done by small dedicated routines
(:func:`logm_3x3`, and one Fréchet derivative instead of nine). Predictions reach ASE through a ``SinglePointCalculator`` with the
same values and dtypes as ``CHGNetCalculator`` (``energy = e_per_atom * n_atoms``,
``stress = s * units.GPa``). The trajectories are therefore the same up to float round-off of the
batched forward (summation order), which shows as sub-meV/atom differences in the final energy.
:func:`load_chgnet_compiled` additionally compiles the model's message passing (``torch.compile``).

Continuous batching: at most ``batch_size`` structures are active; a finished structure's slot is
refilled from the queue at once, so converged structures do not waste batch slots. A pass holds at
most :data:`MAX_ANGLES` CHGNet angles (larger batches are split), and a structure whose graph alone
exceeds it (a collapsing cell) is stopped with ``error`` set instead of exhausting memory. A structure
whose graph or prediction raises is retried on its own; if it still fails it stops with ``error``
set and its last successfully evaluated geometry, without stopping the others. Torch runs with
whatever thread count the caller set; BLAS is held to one thread around the ASE cell-filter work
(3x3 matrix functions, where OpenBLAS threads only add hand-off latency: ~5x slower on a busy machine).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import math
import os
import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from pymatgen.core import Lattice, Structure

from matdiscovery.progress import progress_bar
from matdiscovery.stability.energies import GRAPH_TOO_LARGE, MAX_VOLUME_RATIO

DEFAULT_FMAX = 0.05  # eV/Å
DEFAULT_MAX_STEPS = 300
#: ASE optimisers both relaxers accept, by ``StructOptimizer``'s names: those that take one energy and
#: force evaluation per step (BFGSLineSearch evaluates several and cannot share a batched pass)
OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")
#: CHGNet angles (bond pairs within 3 Å) per batched pass: with gradients each takes about 10 kB,
#: so a pass stays near 1.5 GB; a structure with more is stopped ("graph too large"), not evaluated
MAX_ANGLES = 150_000


@dataclass
class Relaxation:
    """Result of relaxing one structure (energies in eV/atom)."""

    structure: Structure  # final geometry (the last evaluated one; input geometry if it failed at once)
    energy_initial: float  # CHGNet eV/atom at the input geometry (NaN if it failed)
    energy_final: float  # CHGNet eV/atom at the final geometry
    n_steps: int  # optimiser steps taken
    converged: bool  # max force (incl. cell dofs, as ASE's filter) < fmax
    error: str = ""  # non-empty when the relaxation failed


@functools.lru_cache(maxsize=4)
def load_chgnet(model_name: str = "0.3.0"):
    """The pretrained CHGNet model ``model_name`` (eval mode), loaded quietly and cached."""
    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints on load even with verbose=False
        model = CHGNet.load(model_name=model_name, verbose=False)
    model.eval()
    model.requires_grad_(False)  # inference only: autograd then tracks positions and strains, not weights
    return model


@functools.lru_cache(maxsize=4)
def load_chgnet_compiled(model_name: str = "0.3.0"):
    """A copy of :func:`load_chgnet` whose message-passing layers (atom, bond and angle
    convolutions, most of a relaxation step's time) go through ``torch.compile(dynamic=True)``:
    the first call compiles (about 40 s on one core; then no recompiles for new batch sizes), after
    which forward and backward run about 1.45x faster on the CPU, with the same weights and results
    equal to float32 round-off (``tests/test_relax.py``). If compiling fails (no C++ compiler, an
    unsupported platform), warns and returns the eager model. Cached per process."""
    import copy

    import torch

    model = copy.deepcopy(load_chgnet(model_name))
    eager = load_chgnet(model_name)
    try:
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = 1  # no compile subprocesses (Dask workers are daemonic)
        for name in ("atom_conv_layers", "bond_conv_layers", "angle_layers"):
            layers = getattr(model, name)
            for i, layer in enumerate(layers):
                if layer is not None:
                    layers[i] = torch.compile(layer, dynamic=True)
        probe = [Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
                 for a in (5.4, 5.8)]  # 8-atom rock salt
        probe[1].translate_sites([0], [0.02, 0.01, 0.0])  # an off-site atom: nonzero forces
        predict_efs(model, [crystal_graph(model.graph_converter, s) for s in probe])  # compiles now
    except Exception as exc:  # noqa: BLE001 - the eager model gives the same numbers, only slower
        warnings.warn(f"torch.compile of CHGNet failed ({_error_text(exc)}); relaxing with the eager model", stacklevel=2)
        return eager
    model.compiled_layers = True
    return model


def _check_inputs(structures: Sequence[Structure], fmax: float, max_steps: int, batch_size: int = 1,
                  optimizer: str = "FIRE") -> list[Structure]:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if not (isinstance(fmax, (int, float)) and math.isfinite(fmax) and fmax > 0):
        raise ValueError(f"fmax must be a finite number > 0 (eV/Å), got {fmax!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 0:
        raise ValueError(f"max_steps must be an integer >= 0, got {max_steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(structures, Structure):
        raise TypeError("structures must be a sequence of pymatgen Structures, not a single Structure")
    structures = list(structures)
    for i, s in enumerate(structures):
        if not isinstance(s, Structure):
            raise TypeError(f"structures[{i}] is a {type(s).__name__}, not a pymatgen Structure")
        if len(s) == 0:
            raise ValueError(f"structures[{i}] has no sites")
    return structures


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


# ------------------------------------------------------------------------------------------------
# ASE's FrechetCellFilter spends most of its time in scipy's general-purpose logm (about 3 ms for
# a 3x3 matrix, twice per step) and in nine expm_frechet calls per force evaluation.


def logm_3x3(m: np.ndarray) -> np.ndarray:
    """Principal logarithm of a real 3x3 matrix with positive determinant and no eigenvalue on the
    negative real axis (a deformation gradient), as ``scipy.linalg.logm`` but 10-50x faster:
    the scalar part ``det(m)**(1/3)`` is taken out, square roots (Denman-Beavers) are taken until
    ``z = (a - 1)(a + 1)^-1`` is small, and ``log a = 2 atanh z`` is summed as its series."""
    m = np.asarray(m, dtype=float)
    det = np.linalg.det(m)
    if not (np.isfinite(m).all() and det > 0):
        from scipy.linalg import logm

        return np.real(logm(m))
    eye = np.eye(3)
    scale = np.cbrt(det)
    a = m / scale
    k = 0
    z = np.linalg.solve(a + eye, a - eye)
    while np.abs(z).sum(axis=0).max() > 0.2 and k < 40:
        y, w = a, eye
        for _ in range(60):  # Denman-Beavers: y -> sqrt(a), w -> 1/sqrt(a)
            y, w = 0.5 * (y + np.linalg.inv(w)), 0.5 * (w + np.linalg.inv(y))
            if np.abs(y @ y - a).max() <= 1e-15 * np.abs(a).max():
                break
        a, k = y, k + 1
        z = np.linalg.solve(a + eye, a - eye)
    z2, term, out = z @ z, z, z.copy()
    for n in range(3, 201, 2):
        term = term @ z2
        out += term / n
        if np.abs(term).max() / n <= 1e-17 * max(np.abs(out).max(), 1e-300):
            break
    return np.log(scale) * eye + (2.0 ** (k + 1)) * out


@functools.cache
def _frechet_filter_class():
    """ASE's ``FrechetCellFilter`` with its matrix functions done faster (same numbers up to float
    round-off, checked against ASE in ``tests/test_relax.py``): :func:`logm_3x3` instead of scipy's
    ``logm``, and the cell gradient from one Fréchet derivative instead of nine. ASE sums
    ``<L_exp(X, E_ij), G>`` over the nine unit directions ``E_ij`` (``X`` the log deformation, ``G``
    the UnitCellFilter cell gradient); that is the adjoint ``L_exp(X^T, G)``, evaluated once as a 6x6
    block exponential. Default filter options only (no mask, pressure, hydrostatic or constant-volume
    constraint), as StructOptimizer uses them. About 13x (forces) and 50x (coordinates) faster."""
    from ase.filters import FrechetCellFilter
    from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress
    from scipy.linalg import expm

    class FastFrechetCellFilter(FrechetCellFilter):
        def __init__(self, atoms):
            super().__init__(atoms)
            self._utility.logm = logm_3x3  # get_positions (the optimiser's coordinates) goes through it

        def get_forces(self, **kwargs):
            stress = self.atoms.get_stress(**kwargs)
            atoms_forces = self.atoms.get_forces(**kwargs)
            cell = self.atoms.get_cell()
            volume = cell.volume
            virial = -volume * voigt_6_to_full_3x3_stress(stress)
            deform = self._utility.deform_grad(cell)
            cell_grad = virial @ np.linalg.inv(deform.T)
            norm = np.abs(cell_grad).max()
            log_force = np.zeros((3, 3))
            if norm > 0:  # L_exp is linear in its direction: evaluate at unit scale
                block = np.zeros((6, 6))
                block[:3, :3] = block[3:, 3:] = logm_3x3(deform).T
                block[:3, 3:] = cell_grad / norm
                log_force = expm(block)[:3, 3:] * norm
            n = len(atoms_forces)
            forces = np.zeros((n + 3, 3))
            forces[:n] = atoms_forces @ deform
            forces[n:] = log_force / self.exp_cell_factor
            self.stress = full_3x3_to_voigt_6_stress(-(virial / volume))  # ASE's convergence stress
            return forces

    return FastFrechetCellFilter


class _Active:
    """One structure under relaxation: its ASE atoms, cell filter and ASE optimiser (``optimizer``,
    one of :data:`OPTIMIZERS`, with ASE's defaults as ``StructOptimizer`` uses them)."""

    def __init__(self, index: int, structure: Structure, fmax: float, optimizer: str = "FIRE"):
        import ase.optimize
        from pymatgen.io.ase import AseAtomsAdaptor

        self.index = index
        self.input = structure
        self.atoms = AseAtomsAdaptor().get_atoms(structure)
        self.opt = getattr(ase.optimize, optimizer)(_frechet_filter_class()(self.atoms), logfile=None)
        self.opt.fmax = fmax
        self.nsteps = 0
        self.energy_initial = math.nan
        self.energy = math.nan
        self.last_good: Structure = structure  # last geometry CHGNet evaluated successfully
        self.current: Structure | None = None  # geometry being evaluated now

    def current_structure(self) -> Structure:
        from pymatgen.io.ase import AseAtomsAdaptor

        self.atoms.calc = None  # a stale calculator must not travel into the Structure
        self.current = AseAtomsAdaptor.get_structure(self.atoms)
        return self.current


def _blas_single_thread() -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of contexts limiting BLAS (not torch's OpenMP pool) to one thread: the cell filter's
    3x3 matrix exponentials/logarithms gain nothing from threads, and on a busy machine OpenBLAS's
    thread hand-offs make each 3x3 solve take milliseconds. No-op without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext
    controller = ThreadpoolController()
    return lambda: controller.limit(limits=1, user_api="blas")


@functools.cache
def _step_takes_forces(optimizer_class: type) -> bool:
    # FIRE.step(f), LBFGS.step(forces), BFGS.step(gradient): each reads its argument as forces (ASE 3.29)
    return len(inspect.signature(optimizer_class.step).parameters) > 1


def _optimizer_step(opt, gradient: np.ndarray) -> None:
    """``opt.step()`` reusing the filter gradient just computed (ASE would recompute the same numbers;
    the cell filter's matrix functions are a large part of each step's ASE cost)."""
    if _step_takes_forces(type(opt)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ASE deprecates passing forces to step()
            opt.step(-gradient)  # step() takes forces = -gradient
    else:  # pragma: no cover - a future ASE without the argument
        opt.step()


def predict_efs(model, graphs: list) -> list[dict[str, np.ndarray]]:
    """CHGNet energy ``e`` (eV/atom), forces ``f`` (eV/Å) and stress ``s`` (GPa) of the CHGNet
    ``graphs`` in one batched forward and **one** backward pass.

    ``CHGNet.predict_graph(task="efs")`` differentiates twice, each with ``create_graph=True`` (it
    keeps a double-backward graph so that training losses can include forces and stress).
    Inference needs neither: one ``autograd.grad`` over the positions and strains together gives
    the same derivatives (float round-off apart; ``tests/test_relax.py`` checks this against
    ``predict_graph``), 1.7-2.6x faster for batches of 4-8-atom cells. The modules and weights are the model's own:
    ``BatchedGraph.from_graphs`` with ``compute_stress=True``, ``model._compute`` and the
    composition-model (AtomRef) energy, as ``CHGNet.forward`` does."""
    import torch
    from chgnet.model.model import BatchedGraph

    comp_energy = 0 if model.composition_model is None else model.composition_model(graphs)
    with torch.enable_grad():
        batched = BatchedGraph.from_graphs(graphs, bond_basis_expansion=model.bond_basis_expansion,
                                           angle_basis_expansion=model.angle_basis_expansion, compute_stress=True)
        pred = model._compute(batched, compute_force=False, compute_stress=False, compute_magmom=False)
        energy = pred["e"]  # eV/atom if the model is intensive (it divides the total in place)
        n_atoms = torch.tensor([g.atomic_number.shape[0] for g in graphs], dtype=energy.dtype)
        total = energy * n_atoms if model.is_intensive else energy  # eV, as differentiated by CHGNet
        grads = torch.autograd.grad(total.sum(), [*batched.atom_positions, *batched.strains])
    k = len(graphs)
    gpa = 160.21766208  # eV/Å³ -> GPa, CHGNet's own factor
    e = (energy.detach() + comp_energy).numpy()
    return [{"e": e[i], "f": (-grads[i]).numpy(), "s": (grads[k + i] / batched.volumes[i] * gpa).numpy()}
            for i in range(k)]


# ------------------------------------------------------------------------------------------------
# CHGNet graphs without Python loops. CHGNet's CrystalGraphConverter builds its bond (line) graph
# with a Python loop over edge objects (`Graph.line_graph_adjacency_list`), about a tenth of a
# relaxation step; `crystal_graph` builds the same tensors with numpy, in the same order.


def _reverse_edges(center: np.ndarray, neighbor: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Index of each directed edge's reverse (neighbor -> center, image negated); -1 if absent."""
    n = len(center)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    img = np.rint(image).astype(np.int64)
    base = 2 * int(np.abs(img).max()) + 1
    n_atoms = int(max(center.max(), neighbor.max())) + 1

    def code(a, b, im):  # one integer per (center, neighbor, image)
        im = im + base // 2
        return ((a * n_atoms + b) * base + im[:, 0]) * base * base + im[:, 1] * base + im[:, 2]

    key, rev = code(center, neighbor, img), code(neighbor, center, -img)
    order = np.argsort(key, kind="stable")
    if (np.diff(key[order]) == 0).any():  # a repeated edge: leave it to CHGNet's own converter
        return np.full(n, -2, dtype=np.int64)
    pos = np.minimum(np.searchsorted(key[order], rev), n - 1)
    found = key[order][pos] == rev
    return np.where(found, order[pos], -1)


def crystal_graph(converter, structure: Structure):
    """The ``CrystalGraph`` that CHGNet's ``converter(structure)`` returns, built with array
    operations: the same neighbour list (pymatgen's ``get_neighbor_list``), the same edge pairing
    (a directed edge joins the undirected edge of its reverse when that came first) and the same row
    order of every tensor (``tests/test_relax.py`` checks equality on real and distorted crystals).
    Falls back to ``converter(structure)`` (which then raises or warns as CHGNet does) for an
    isolated atom, a repeated or unpaired edge, or a converter with options this does not cover."""
    import torch
    from chgnet.graph.crystalgraph import CrystalGraph

    if getattr(converter, "on_isolated_atoms", "error") != "error":
        return converter(structure)
    n_atoms = len(structure)
    atom_cutoff, bond_cutoff = converter.atom_graph_cutoff, converter.bond_graph_cutoff
    center, neighbor, image, distance = structure.get_neighbor_list(r=atom_cutoff, sites=structure.sites,
                                                                    numerical_tol=1e-8)
    center, neighbor = center.astype(np.int64), neighbor.astype(np.int64)
    n_edges = len(center)
    if len(np.unique(center)) != n_atoms:
        return converter(structure)
    reverse = _reverse_edges(center, neighbor, image)
    idx = np.arange(n_edges)
    paired = (reverse >= 0) & (reverse < idx)
    if (reverse < 0).any() or 2 * int(paired.sum()) != n_edges or \
            (np.abs(distance[reverse[paired]] - distance[paired]) >= 1e-6).any():
        return converter(structure)
    new = ~paired
    undirected_of_new = np.cumsum(new) - 1
    d2u = np.where(new, undirected_of_new, 0)
    d2u[paired] = undirected_of_new[reverse[paired]]
    u2d = np.flatnonzero(new)  # each undirected edge's first directed edge (center -> neighbor)
    second = np.empty(len(u2d), dtype=np.int64)  # and its reverse (neighbor -> center)
    second[d2u[paired]] = idx[paired]

    # each atom's directed edges in the order of CHGNet's Node.neighbors: grouped by neighbour in
    # order of first appearance, then in insertion order; only bonds shorter than the bond cutoff
    pair = center * n_atoms + neighbor
    _, first_of_pair, pair_inverse = np.unique(pair, return_index=True, return_inverse=True)
    order = np.lexsort((idx, first_of_pair[pair_inverse.reshape(-1)], center))
    order = order[distance[order] < bond_cutoff]
    ptr = np.searchsorted(center[order], np.arange(n_atoms + 1))

    short = np.flatnonzero(distance[u2d] <= bond_cutoff)  # undirected edges that are bond-graph nodes
    side_center = np.stack([center[u2d[short]], neighbor[u2d[short]]], 1).reshape(-1)
    side_edge = np.stack([u2d[short], second[short]], 1).reshape(-1)
    side_undirected = np.repeat(short, 2)
    counts = ptr[side_center + 1] - ptr[side_center]
    starts = np.repeat(ptr[side_center] - (np.cumsum(counts) - counts), counts)
    other = order[starts + np.arange(int(counts.sum()))]
    rows = np.stack([np.repeat(side_center, counts), np.repeat(side_undirected, counts),
                     np.repeat(side_edge, counts), d2u[other], other], 1)
    rows = rows[rows[:, 4] != rows[:, 2]]

    def int32(a: np.ndarray):  # CHGNet makes tensors from lists: an empty one has shape (0,)
        return torch.tensor(a.tolist() if a.size == 0 else a, dtype=torch.int32)

    dtype = torch.float32
    return CrystalGraph(
        atomic_number=torch.tensor([site.specie.Z for site in structure], dtype=torch.int32),
        atom_frac_coord=torch.tensor(structure.frac_coords, dtype=dtype, requires_grad=True),
        atom_graph=int32(np.stack([center, neighbor], 1)), neighbor_image=torch.tensor(image, dtype=dtype),
        directed2undirected=int32(d2u), undirected2directed=int32(u2d), bond_graph=int32(rows),
        lattice=torch.tensor(structure.lattice.matrix, dtype=dtype, requires_grad=True),
        graph_id=None, mp_id=None, composition=structure.composition.formula,
        atom_graph_cutoff=atom_cutoff, bond_graph_cutoff=bond_cutoff,
    )


def _n_angles(graph) -> int:
    return int(graph.bond_graph.shape[0]) if graph.bond_graph.dim() == 2 else 0


def _chunks(sizes: list[int], budget: int) -> list[list[int]]:
    """Consecutive index groups whose ``sizes`` sum to at most ``budget`` (an item larger than the
    budget goes alone)."""
    out: list[list[int]] = [[]]
    total = 0
    for i, n in enumerate(sizes):
        if out[-1] and total + n > budget:
            out.append([])
            total = 0
        out[-1].append(i)
        total += n
    return [c for c in out if c]


def _predict_each(model, structures: list[Structure], max_angles: int = MAX_ANGLES
                  ) -> list[dict[str, np.ndarray] | BaseException]:
    """:func:`predict_efs` of ``structures`` in as few passes as the angle budget allows; failures
    come back as exceptions in place, without stopping the others: a graph that cannot be built, one
    with more than ``max_angles`` CHGNet angles (a collapsing cell; its gradients alone would need
    many GB), and a structure that fails inside a batch (retried on its own to find which)."""
    out: list[dict[str, np.ndarray] | BaseException | None] = [None] * len(structures)
    graphs, ok = [], []
    for i, s in enumerate(structures):
        try:
            g = crystal_graph(model.graph_converter, s)
            if _n_angles(g) > max_angles:
                raise ValueError(f"{GRAPH_TOO_LARGE}: {_n_angles(g)} angles > {max_angles} "
                                 f"({len(s)} atoms, {s.volume / len(s):.2f} Å³/atom)")
        except Exception as exc:  # noqa: BLE001 - keep the others going
            out[i] = exc
            continue
        graphs.append(g)
        ok.append(i)
    for chunk in _chunks([_n_angles(g) for g in graphs], max_angles):
        try:
            preds = predict_efs(model, [graphs[k] for k in chunk])
        except Exception as exc:  # noqa: BLE001 - find the structure(s) that fail, keep the others
            if len(chunk) == 1:
                preds = [exc]
            else:
                preds = []
                for k in chunk:
                    try:
                        preds.append(predict_efs(model, [graphs[k]])[0])
                    except Exception as exc_k:  # noqa: BLE001
                        preds.append(exc_k)
        for k, pred in zip(chunk, preds):
            out[ok[k]] = pred
    return out  # type: ignore[return-value]


def relax_structures(
    structures: Sequence[Structure], *, model=None, fmax: float = DEFAULT_FMAX, max_steps: int = DEFAULT_MAX_STEPS,
    batch_size: int = 32, max_angles: int = MAX_ANGLES, optimizer: str = "FIRE", progress: bool = True,
) -> list[Relaxation]:
    """Relax atoms and cell of each structure with CHGNet + ASE ``optimizer`` (FIRE, the screen's, or
    another of :data:`OPTIMIZERS`) on a FrechetCellFilter, evaluating
    up to ``batch_size`` structures per batched CHGNet forward. Stops a structure when its max force
    (atoms and cell dofs, eV/Å) is below ``fmax``, after ``max_steps`` steps, or (``error``
    "blow-up") when its volume leaves [1/3, 3] × the input's (:data:`MAX_VOLUME_RATIO`), or (``error``
    "graph too large") when its CHGNet graph has more than ``max_angles`` angles; a pass holds at most
    ``max_angles`` angles in all (memory stays bounded, :data:`MAX_ANGLES`). Same trajectory
    as ``StructOptimizer(model, optimizer).relax(s, fmax=fmax, steps=max_steps)`` up to round-off.
    ``model=None`` uses :func:`load_chgnet` (the screen passes :func:`load_chgnet_compiled`).
    Results are in input order. The screen uses FIRE: BFGS and LBFGS take about half its steps but
    turn float round-off into other minima (on ``bench_relax``'s 16 perturbed crystals one ends
    25 meV/atom from ``StructOptimizer``'s BFGS, and one 540 meV/atom from its LBFGS, against at most
    0.3 meV/atom with FIRE), and ``StructOptimizer``'s BFGS itself ends 3 of the 16 in other minima than its FIRE."""
    structures = _check_inputs(structures, fmax, max_steps, batch_size, optimizer)
    if model is None:
        model = load_chgnet()
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator

    blas_1 = _blas_single_thread()
    results: list[Relaxation | None] = [None] * len(structures)
    queue = deque(range(len(structures)))
    active: list[_Active] = []
    bar = progress_bar(total=len(structures), desc="relax (batched CHGNet)", progress=progress, leave=False)

    def finish(st: _Active, converged: bool, error: str = "") -> None:
        results[st.index] = Relaxation(structure=st.last_good, energy_initial=st.energy_initial,
                                       energy_final=st.energy, n_steps=st.nsteps, converged=converged, error=error)
        bar.update(1)

    try:
        while queue or active:
            while queue and len(active) < batch_size:
                i = queue.popleft()
                try:
                    active.append(_Active(i, structures[i], fmax, optimizer))
                except Exception as exc:  # noqa: BLE001 - e.g. a structure ASE cannot represent
                    results[i] = Relaxation(structures[i], math.nan, math.nan, 0, False, _error_text(exc))
                    bar.update(1)
            if not active:
                continue
            current = [st.current_structure() for st in active]
            predictions = _predict_each(model, current, max_angles)
            still: list[_Active] = []
            for st, pred in zip(active, predictions):
                if isinstance(pred, BaseException):
                    finish(st, False, f"CHGNet evaluation failed after {st.nsteps} steps ({_error_text(pred)})")
                    continue
                try:
                    n_atoms = len(st.atoms)
                    energy = pred["e"] * n_atoms if model.is_intensive else pred["e"]  # as CHGNetCalculator
                    st.atoms.calc = SinglePointCalculator(st.atoms, energy=energy, free_energy=energy,
                                                          forces=pred["f"], stress=pred["s"] * units.GPa)
                    st.energy = float(energy) / n_atoms
                    st.last_good = st.current
                    if st.nsteps == 0:
                        st.energy_initial = st.energy
                    ratio = st.current.volume / st.input.volume
                    if not 1 / MAX_VOLUME_RATIO <= ratio <= MAX_VOLUME_RATIO:  # a blow-up: graphs explode, stop it
                        finish(st, False, f"blow-up: volume x{ratio:.2f} after {st.nsteps} steps")
                        continue
                    with blas_1():
                        gradient = st.opt.optimizable.get_gradient()
                        converged = bool(st.opt.gradient_converged(gradient))
                        if converged or st.nsteps >= max_steps:
                            finish(st, converged)
                            continue
                        _optimizer_step(st.opt, gradient)
                    st.nsteps += 1
                except Exception as exc:  # noqa: BLE001 - a broken step must not stop the others
                    finish(st, False, f"{optimizer} step failed after {st.nsteps} steps ({_error_text(exc)})")
                    continue
                still.append(st)
            active = still
    finally:
        bar.close()
    return results  # type: ignore[return-value]


def _structoptimizer(model, optimizer: str = "FIRE"):
    from chgnet.model import StructOptimizer

    device = next(model.parameters()).device.type
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the device
        return StructOptimizer(model=model, optimizer_class=optimizer, use_device=device)


def _filter_converged(structure: Structure, final: Structure, forces: np.ndarray, stress: np.ndarray, fmax: float) -> bool:
    """ASE's convergence test (``Optimizer.gradient_converged``, the same for every optimiser) on a
    FrechetCellFilter started at ``structure``, for the final
    geometry ``final`` with its forces (eV/Å) and Voigt stress (eV/Å³)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor().get_atoms(final)
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, free_energy=0.0, forces=forces, stress=stress)
    filt = FrechetCellFilter(atoms)
    filt.orig_cell = structure.lattice.matrix  # the reference cell the relaxation started from
    opt = FIRE(filt, logfile=None)
    opt.fmax = fmax
    return bool(opt.gradient_converged(opt.optimizable.get_gradient()))


def relax_with_structoptimizer(
    structures: Sequence[Structure], *, model=None, fmax: float = DEFAULT_FMAX, max_steps: int = DEFAULT_MAX_STEPS,
    optimizer: str = "FIRE", progress: bool = True,
) -> list[Relaxation]:
    """The baseline: CHGNet's ``StructOptimizer(model, optimizer).relax(s, fmax=fmax (eV/Å),
    steps=max_steps, relax_cell=True)``, one structure at a time. Energies (eV/atom) are the first
    and last of its trajectory; a structure that raises keeps its input geometry with ``error`` set.
    BLAS is limited to one thread during each relaxation, as in :func:`relax_structures` (and as
    ``ChgnetJudge.relax`` does), so that the comparison measures batching, not BLAS contention."""
    structures = _check_inputs(structures, fmax, max_steps, optimizer=optimizer)
    if model is None:
        model = load_chgnet()
    opt = _structoptimizer(model, optimizer)
    blas_1 = _blas_single_thread()
    out = []
    for s in progress_bar(structures, desc="relax (StructOptimizer)", progress=progress, leave=False):
        try:
            with blas_1(), contextlib.redirect_stdout(io.StringIO()):
                res = opt.relax(s, fmax=fmax, steps=max_steps, relax_cell=True, verbose=False)
            traj = res["trajectory"]
            final = res["final_structure"]
            final.remove_site_property("magmom")
            n = len(s)
            converged = _filter_converged(s, final, traj.forces[-1], traj.stresses[-1], fmax)
            out.append(Relaxation(structure=final, energy_initial=float(traj.energies[0]) / n,
                                  energy_final=float(traj.energies[-1]) / n, n_steps=len(traj) - 2,
                                  converged=converged))
        except Exception as exc:  # noqa: BLE001 - one bad structure must not stop the others
            out.append(Relaxation(s, math.nan, math.nan, 0, False, _error_text(exc)))
    return out


def compare_relaxers(
    structures: Sequence[Structure], *, model=None, fmax: float = DEFAULT_FMAX, max_steps: int = DEFAULT_MAX_STEPS,
    batch_size: int = 32, repeats: int = 3, batched_model=None, optimizer: str = "FIRE",
) -> dict[str, Any]:
    """Time :func:`relax_with_structoptimizer` (with ``model``) and :func:`relax_structures` (with
    ``batched_model``, default ``model``; e.g. :func:`load_chgnet_compiled`), both with ASE's
    ``optimizer``, on the same structures,
    alternating them ``repeats`` times in this process at the current torch thread count (seconds,
    wall clock), and compare their final energies (meV/atom) and step counts."""
    import torch

    structures = _check_inputs(structures, fmax, max_steps, batch_size, optimizer)
    if not structures:
        raise ValueError("compare_relaxers needs at least one structure")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    if model is None:
        model = load_chgnet()
    if batched_model is None:
        batched_model = model
    load = os.getloadavg()[0]
    # warm-up (first-call allocations, lazy imports) outside the timings
    relax_with_structoptimizer(structures[:1], model=model, fmax=fmax, max_steps=1, optimizer=optimizer, progress=False)
    relax_structures(structures[:1], model=batched_model, fmax=fmax, max_steps=1, batch_size=batch_size,
                     optimizer=optimizer, progress=False)
    t_so, t_b = [], []
    res_so: list[Relaxation] = []
    res_b: list[Relaxation] = []
    for r in range(repeats):
        order = ("so", "b") if r % 2 == 0 else ("b", "so")  # alternate who goes first
        for which in order:
            t0 = time.perf_counter()
            if which == "so":
                res_so = relax_with_structoptimizer(structures, model=model, fmax=fmax, max_steps=max_steps,
                                                    optimizer=optimizer, progress=False)
                t_so.append(time.perf_counter() - t0)
            else:
                res_b = relax_structures(structures, model=batched_model, fmax=fmax, max_steps=max_steps,
                                         batch_size=batch_size, optimizer=optimizer, progress=False)
                t_b.append(time.perf_counter() - t0)
    diff = np.abs(np.array([a.energy_final - b.energy_final for a, b in zip(res_b, res_so)])) * 1000.0
    diff = np.where(np.isnan(diff), np.inf, diff)  # a failure on one side only counts as a mismatch
    both_failed = np.array([math.isnan(a.energy_final) and math.isnan(b.energy_final) for a, b in zip(res_b, res_so)])
    diff[both_failed] = 0.0
    return {
        "optimizer": optimizer,
        "n_structures": len(structures),
        "mean_atoms": float(np.mean([len(s) for s in structures])),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "batched_model_compiled": bool(getattr(batched_model, "compiled_layers", False)),
        "structoptimizer_s_median": float(np.median(t_so)),
        "batched_s_median": float(np.median(t_b)),
        "structoptimizer_s_spread": float(max(t_so) - min(t_so)),
        "batched_s_spread": float(max(t_b) - min(t_b)),
        "speedup": float(np.median(t_so) / np.median(t_b)),
        "max_abs_final_energy_diff_meV_per_atom": float(diff.max()),
        "median_abs_final_energy_diff_meV_per_atom": float(np.median(diff)),
        "n_final_energy_diff_over_1_meV_per_atom": int(np.sum(diff > 1.0)),
        "final_energy_structoptimizer_eV_per_atom": [float(r.energy_final) for r in res_so],
        "fraction_converged_batched": float(np.mean([r.converged for r in res_b])),
        "fraction_converged_structoptimizer": float(np.mean([r.converged for r in res_so])),
        "median_steps_batched": float(np.median([r.n_steps for r in res_b])),
        "median_steps_structoptimizer": float(np.median([r.n_steps for r in res_so])),
        "load_average_1min": float(load),
    }
