"""Batched CHGNet relaxation vs CHGNet's own StructOptimizer (matdiscovery.stability.relax)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from matdiscovery.datasets import load_crystals
from matdiscovery.stability.energies import absurd_reason
from matdiscovery.stability.relax import (
    DEFAULT_FMAX,
    Relaxation,
    _chunks,
    load_chgnet,
    predict_efs,
    relax_structures,
    relax_with_structoptimizer,
)

# the screen's setting: one perovskite here does not converge, and a trajectory cut mid-descent (at
# 100 steps it is still falling fast) is not a result two float-round-off-different evaluations agree on
MAX_STEPS = 300


def perturb(structure: Structure, rng: np.random.Generator, rattle: float = 0.07, strain: float = 0.03) -> Structure:
    """Rattle Cartesian positions (Å, normal σ=``rattle``) and strain the lattice axes by ±``strain``."""
    lattice = structure.lattice.matrix @ (np.eye(3) + np.diag(rng.uniform(-strain, strain, 3)))
    frac = structure.frac_coords + rng.normal(0.0, rattle, (len(structure), 3)) @ np.linalg.inv(lattice)
    return Structure(Lattice(lattice), structure.species, frac)


@pytest.fixture(scope="module")
def model():
    return load_chgnet()


@pytest.fixture(scope="module")
def structures() -> list[Structure]:
    """Six perturbed real crystals of mixed size (jarvis_epc + perov_5)."""
    rng = np.random.default_rng(7)
    jarvis = list(load_crystals("jarvis_epc", "train", limit=40)["structure"])
    jarvis = sorted(jarvis, key=len)
    picked = [jarvis[0], jarvis[len(jarvis) // 2], jarvis[-1]]  # 2, 4 and 9 atoms
    picked += list(load_crystals("perov_5", "val", limit=3)["structure"])
    return [perturb(s, rng) for s in picked]


@pytest.fixture(scope="module")
def reference(structures, model) -> list[Relaxation]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return relax_with_structoptimizer(structures, model=model, max_steps=MAX_STEPS, progress=False)


@pytest.fixture(scope="module")
def batched(structures, model) -> list[Relaxation]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return relax_structures(structures, model=model, max_steps=MAX_STEPS, batch_size=32, progress=False)


@pytest.mark.slow
def test_matches_structoptimizer(structures, reference, batched):
    assert len(batched) == len(structures)
    for i, (b, r) in enumerate(zip(batched, reference)):
        assert not b.error and not r.error, (i, b.error, r.error)
        assert abs(b.energy_initial - r.energy_initial) < 1e-5, i
        assert abs(b.energy_final - r.energy_final) < 1e-3, (i, b.energy_final, r.energy_final)  # 1 meV/atom
        assert abs(b.n_steps - r.n_steps) <= 2, (i, b.n_steps, r.n_steps)
        assert b.converged == r.converged, i
        assert len(b.structure) == len(structures[i])
        assert b.structure.composition == structures[i].composition
    assert sum(b.n_steps for b in batched) > 5 * len(structures)  # the perturbation made real work


@pytest.mark.slow
def test_relaxation_lowers_energy(structures, batched):
    for i, b in enumerate(batched):
        assert b.energy_final < b.energy_initial - 1e-3, (i, b.energy_initial, b.energy_final)
        assert 0 < b.n_steps <= MAX_STEPS
        # the final geometry is a different one than the input
        assert not np.allclose(b.structure.lattice.matrix, structures[i].lattice.matrix)
    assert np.mean([b.converged for b in batched]) >= 0.5


@pytest.mark.slow
def test_small_batch_same_as_large(structures, batched, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = relax_structures(structures, model=model, max_steps=MAX_STEPS, batch_size=2, progress=False)
    for b, s in zip(batched, small):
        assert abs(b.energy_final - s.energy_final) < 1e-4
        assert abs(b.n_steps - s.n_steps) <= 2
        assert b.converged == s.converged


def test_zero_steps_returns_input(structures, model):
    out = relax_structures(structures[:2], model=model, max_steps=0, progress=False)
    for s, r in zip(structures[:2], out):
        assert r.n_steps == 0 and not r.error
        assert r.energy_initial == r.energy_final and math.isfinite(r.energy_final)
        assert np.allclose(r.structure.lattice.matrix, s.lattice.matrix)
        assert np.allclose(r.structure.cart_coords, s.cart_coords)


def test_empty_input(model):
    assert relax_structures([], model=model, progress=False) == []


def test_bad_inputs(structures, model):
    with pytest.raises(ValueError, match="fmax"):
        relax_structures(structures[:1], model=model, fmax=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        relax_structures(structures[:1], model=model, max_steps=-1)
    with pytest.raises(ValueError, match="batch_size"):
        relax_structures(structures[:1], model=model, batch_size=0)
    with pytest.raises(TypeError, match=r"structures\[1\]"):
        relax_structures([structures[0], "Si2"], model=model)
    with pytest.raises(ValueError, match="fmax"):
        relax_with_structoptimizer(structures[:1], model=model, fmax=-DEFAULT_FMAX)


def test_failure_does_not_stop_others(structures, model):
    """A structure CHGNet cannot evaluate (an isolated atom in a huge cell) fails alone."""
    lonely = Structure(Lattice.cubic(30.0), ["Si"], [[0, 0, 0]])
    converter = model.graph_converter
    old = converter.on_isolated_atoms
    converter.set_isolated_atom_response("error")
    try:
        out = relax_structures([structures[0], lonely, structures[3]], model=model, max_steps=3, progress=False)
    finally:
        converter.set_isolated_atom_response(old)
    assert out[1].error and not out[1].converged and math.isnan(out[1].energy_initial)
    assert out[1].structure is lonely
    for r in (out[0], out[2]):
        assert not r.error and math.isfinite(r.energy_final) and r.n_steps > 0


def test_predict_efs_matches_predict_graph(structures, model):
    """One backward pass without a double-backward graph gives CHGNet's own energies, forces and
    stresses (``predict_graph(task="efs")``, two ``create_graph=True`` passes)."""
    graphs = [model.graph_converter(s) for s in structures]
    ours = predict_efs(model, graphs)
    ref = model.predict_graph(graphs, task="efs", batch_size=len(graphs))
    for s, a, b in zip(structures, ours, ref):
        assert abs(float(a["e"]) - float(b["e"])) < 1e-6
        assert a["f"].shape == (len(s), 3) and a["s"].shape == (3, 3)
        np.testing.assert_allclose(a["f"], b["f"], atol=1e-4)  # eV/Å
        np.testing.assert_allclose(a["s"], b["s"], atol=1e-3)  # GPa
    assert max(np.abs(a["f"]).max() for a in ours) > 0.05  # the perturbed crystals feel real forces


def test_chunks_respect_budget():
    assert _chunks([5, 5, 5], 10) == [[0, 1], [2]]
    assert _chunks([20, 1, 1], 10) == [[0], [1, 2]]  # an item over the budget goes alone
    assert _chunks([], 10) == []


def test_graph_size_guard(structures, model):
    """A structure whose CHGNet graph has more angles than the guard allows is stopped (counted as a
    graph blow-up), while the others relax, split into passes that fit the budget."""
    sizes = [model.graph_converter(s).bond_graph.shape[0] for s in structures[:3]]
    big = int(np.argmax(sizes))
    limit = max(sizes) - 1
    out = relax_structures(structures[:3], model=model, max_steps=3, max_angles=limit, progress=False)
    assert "CHGNet graph too large" in out[big].error and math.isnan(out[big].energy_final)
    assert absurd_reason(formation_energy=math.nan, relax_error=out[big].error) == "relaxation blow-up (graph)"
    for i, r in enumerate(out):
        if i != big:
            assert not r.error and math.isfinite(r.energy_final) and r.n_steps > 0
    ref = relax_structures(structures[:3], model=model, max_steps=3, progress=False)
    for i, (a, b) in enumerate(zip(out, ref)):
        if i != big:
            assert abs(a.energy_final - b.energy_final) < 1e-5
