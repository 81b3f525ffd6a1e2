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
    _frechet_filter_class,
    crystal_graph,
    load_chgnet,
    load_chgnet_compiled,
    logm_3x3,
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


def test_screen_shard_scores_an_absurdly_dense_input_without_relaxing_it(structures):
    """score_shard: an input denser than any crystal gets a single point and a counted absurd reason;
    the ordinary structures beside it in the shard are relaxed as usual."""
    from matdiscovery.stability.energies import MIN_VOLUME_PER_ATOM_A3
    from matdiscovery.stability.study import score_shard

    dense = Structure(Lattice.cubic(1.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # 2.05 Å^3/atom
    assert dense.volume / len(dense) < MIN_VOLUME_PER_ATOM_A3 < structures[0].volume / len(structures[0])
    frame = score_shard([("ok", structures[0]), ("dense", dense)], relax=True, fmax=DEFAULT_FMAX, max_steps=20,
                        batch_size=4, sevennet_model="7net-0").set_index("id")
    assert frame.loc["ok", "n_steps"] > 0 and frame.loc["ok", "relax_error"] == ""
    assert frame.loc["dense", "n_steps"] == 0 and frame.loc["dense", "relax_error"].startswith("not relaxed: input 2.05")
    assert frame.loc["dense", "ef_chgnet"] == frame.loc["dense", "ef_chgnet_initial"]
    assert math.isfinite(frame.loc["dense", "ef_sevennet"]) and frame.loc["dense", "volume_ratio"] == 1.0
    assert absurd_reason(formation_energy=frame.loc["dense", "ef_chgnet"], volume_per_atom=2.05,
                         relax_error=frame.loc["dense", "relax_error"]) == "input denser than any crystal"


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


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


GRAPH_FIELDS = ["atomic_number", "atom_frac_coord", "atom_graph", "neighbor_image", "directed2undirected",
                "undirected2directed", "bond_graph", "lattice"]


def test_crystal_graph_equals_chgnet_converter(model):
    """The array-built graph is CHGNet's own, tensor for tensor in the same row order, on real
    crystals and on compressed and expanded ones (dense graphs, edges to many periodic images)."""
    crystals = list(load_crystals("jarvis_epc", "train", limit=30)["structure"])
    crystals += list(load_crystals("perov_5", "val", limit=5)["structure"])
    crystals += [s.copy().scale_lattice(s.volume * f) for s in crystals[:8] for f in (0.4, 2.5)]
    n_angles = 0
    for s in crystals:
        ref, ours = model.graph_converter(s), crystal_graph(model.graph_converter, s)
        for field in GRAPH_FIELDS:
            a, b = getattr(ref, field), getattr(ours, field)
            assert a.dtype == b.dtype and a.shape == b.shape and torch_equal(a, b), (s.formula, field)
        assert ours.composition == ref.composition
        n_angles += ours.bond_graph.shape[0] if ours.bond_graph.dim() == 2 else 0
    assert n_angles > 1000


def test_crystal_graph_isolated_atom_handled_like_chgnet(model):
    """An isolated atom goes to CHGNet's converter, which raises or warns as it is set to."""
    s = Structure(Lattice.cubic(20.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # 17 Å apart > 6 Å cutoff
    converter = model.graph_converter
    old = converter.on_isolated_atoms
    try:
        converter.set_isolated_atom_response("error")
        with pytest.raises(ValueError, match="isolated atom"):
            crystal_graph(converter, s)
        converter.set_isolated_atom_response("ignore")
        assert crystal_graph(converter, s).atomic_number.tolist() == [11, 17]
    finally:
        converter.set_isolated_atom_response(old)


def test_logm_3x3_matches_scipy():
    from scipy.linalg import expm, logm

    rng = np.random.default_rng(0)
    for scale in (1e-6, 0.05, 0.3, 0.8):
        for _ in range(50):
            x = scale * rng.normal(size=(3, 3)) + rng.uniform(-1.0, 1.0) * np.eye(3)
            m = expm(x) * rng.choice([1.0, 9.0])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns about its own accuracy
                ref = np.real(logm(m))
            np.testing.assert_allclose(logm_3x3(m), ref, rtol=0, atol=1e-12 * max(1.0, np.abs(ref).max()))
    np.testing.assert_allclose(logm_3x3(np.eye(3) * 5.0), np.log(5.0) * np.eye(3), atol=1e-15)


def test_fast_filter_matches_ase_frechet_filter():
    """Our FrechetCellFilter gives ASE's forces (atoms and cell), coordinates and convergence stress."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.filters import FrechetCellFilter

    rng = np.random.default_rng(1)
    for k in range(20):
        atoms = (bulk("NaCl", "rocksalt", a=5.6, cubic=True) if k % 2 else bulk("Si", "diamond", a=5.43)).repeat((1, 1, 1 + k % 3))
        a, b = atoms.copy(), atoms.copy()
        ref, ours = FrechetCellFilter(a), _frechet_filter_class()(b)
        x = ref.get_positions() + rng.normal(0.0, 0.2, (len(atoms) + 3, 3))  # moves atoms and cell
        ref.set_positions(x)
        ours.set_positions(x)
        forces, stress = rng.normal(0.0, 1.0, (len(atoms), 3)), rng.normal(0.0, 0.05, 6)
        for at in (a, b):
            at.calc = SinglePointCalculator(at, energy=0.0, forces=forces, stress=stress)
        np.testing.assert_allclose(ours.get_forces(), ref.get_forces(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours.get_positions(), ref.get_positions(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours.stress, ref.stress, rtol=0, atol=1e-14)


def test_compiled_model_matches_eager(structures, model):
    """The screen's compiled CHGNet (torch.compile of the message passing) gives the eager model's
    energies, forces and stresses to float32 round-off, and relaxes to the same final energies."""
    compiled = load_chgnet_compiled()
    assert compiled is not model and getattr(compiled, "compiled_layers", False)
    graphs = [crystal_graph(model.graph_converter, s) for s in structures]
    for a, b in zip(predict_efs(compiled, graphs), predict_efs(model, graphs)):
        assert abs(float(a["e"]) - float(b["e"])) < 1e-5  # eV/atom
        np.testing.assert_allclose(a["f"], b["f"], atol=1e-3)  # eV/Å
        np.testing.assert_allclose(a["s"], b["s"], atol=1e-2)  # GPa
    short = relax_structures(structures[:3], model=compiled, max_steps=20, progress=False)
    ref = relax_structures(structures[:3], model=model, max_steps=20, progress=False)
    for a, b in zip(short, ref):
        assert abs(a.energy_final - b.energy_final) * 1000 < 1.0  # meV/atom


@pytest.mark.parametrize("optimizer", ["BFGS", "LBFGS"])
def test_other_ase_optimizers_follow_structoptimizer(structures, model, optimizer):
    """Each ASE optimiser gets the forces (not the gradient) of the batched pass: the first steps
    follow StructOptimizer's with the same optimiser (a sign error would climb the energy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = relax_structures(structures[:3], model=model, max_steps=6, optimizer=optimizer, progress=False)
        ref = relax_with_structoptimizer(structures[:3], model=model, max_steps=6, optimizer=optimizer, progress=False)
    for a, b in zip(ours, ref):
        assert not a.error and a.energy_final < a.energy_initial
        assert abs(a.energy_final - b.energy_final) * 1000 < 0.1  # meV/atom
        assert a.n_steps == b.n_steps
    with pytest.raises(ValueError, match="optimizer must be one of"):
        relax_structures(structures[:1], model=model, optimizer="BFGSLineSearch")


def test_relax_speed_benchmark_same_energies_and_stage_fails_on_a_mismatch(monkeypatch, tmp_path):
    """The bench_relax stage: both relaxers on the same perturbed crystals give the same energies;
    a mismatch beyond the tolerance fails the stage (exit 1) after writing its numbers."""
    import json

    from matdiscovery.stability import benchmark

    r = benchmark.relax_speed(n=2, supercell=1, repeats=1, fmax=DEFAULT_FMAX, max_steps=5, batch_size=4,
                              compile_chgnet=False, other_optimizers=("BFGS",))
    assert r["n_structures"] == 2 and r["threads"] == 1 and r["speedup"] > 0 and r["optimizer"] == "FIRE"
    assert r["max_abs_final_energy_diff_meV_per_atom"] < 1.0
    bfgs = r["optimizers"]["BFGS"]
    assert bfgs["optimizer"] == "BFGS" and bfgs["max_abs_final_energy_diff_meV_per_atom"] < 1.0
    # five BFGS steps end elsewhere than five FIRE steps: the gap to StructOptimizer's FIRE is measured, not assumed
    assert bfgs["structoptimizer_vs_fire_max_abs_final_energy_diff_meV_per_atom"] > 0
    fastest = min(["FIRE", "BFGS"], key=lambda k: (r if k == "FIRE" else bfgs)["structoptimizer_s_median"])
    assert r["fastest_structoptimizer_optimizer"] == fastest
    assert r["speedup_vs_fastest_structoptimizer"] <= r["speedup"] + 1e-12
    assert [len(s) for s in benchmark.perturbed_crystals(2, supercell=2)] == [4 * len(s) for s in
                                                                             benchmark.perturbed_crystals(2)]
    monkeypatch.setattr(benchmark, "relax_speed", lambda **kw: r | {"max_abs_final_energy_diff_meV_per_atom": 8.0})
    out = tmp_path / "bench.json"
    assert benchmark.main(["--out", str(out)]) == 1
    assert json.loads(out.read_text())["max_abs_final_energy_diff_meV_per_atom"] == 8.0
    monkeypatch.setattr(benchmark, "relax_speed", lambda **kw: r)
    assert benchmark.main(["--out", str(out)]) == 0


def test_screen_reports_the_bench_relax_stage_and_names_a_missing_file(tmp_path):
    import json

    from matdiscovery.params import load_params
    from matdiscovery.params.stability import ScreeningParams
    from matdiscovery.stability.study import ScreeningStudy, run_benchmarks

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"speedup": 3.2, "repeats": 3, "speedup_vs_fastest_structoptimizer": 2.1}))
    p = ScreeningParams.model_construct(**(load_params("02_stability_screening") | {"relax_benchmark": str(bench),
                                                                                    "bench_throughput_n": 0}))
    study = ScreeningStudy(params=p, generated=None, controls=None, offsets={}, judge_metrics={}, test_predictions=None,
                           hull_check_mae=0.0, sources={})
    out = run_benchmarks(study)
    assert out["relax_speedup_vs_structoptimizer"] == 3.2 and out["relax_benchmark"]["repeats"] == 3
    assert out["relax_speedup_vs_fastest_structoptimizer"] == 2.1
    study.params = p.model_copy(update={"relax_benchmark": str(tmp_path / "missing.json")})
    with pytest.raises(FileNotFoundError, match="dvc repro bench_relax"):
        run_benchmarks(study)
