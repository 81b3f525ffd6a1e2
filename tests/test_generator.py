"""Generator (issue 3): symmetry expansion, physics loss, generate() errors, sampling, smoothness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from matdiscovery.generator import (
    CrystalGAN, build_structure, distance_loss, expand_orbits, generate, record_from_structure, sample,
    symmetry_operations, train, validity_metrics, write_samples_csv,
)
from matdiscovery.generator.data import record_structure
from matdiscovery.generator.inverse import Objective, evolution_strategy, finite_difference_descent, judge_property
from matdiscovery.generator.sampling import compositional_valid, structural_valid
from matdiscovery.generator.smoothness import (
    compare, decode, describe, fingerprint_distance, interpolate, log_steps, perturb, rdf_fingerprint,
    summarise, sweep,
)
from matdiscovery.generator.symmetry import check_spacegroup, merge_close_atoms


def _rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _perovskite(a: float = 3.905) -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), ["Sr", "Ti", "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


def _tiny_model(noise_dim: int = 8) -> CrystalGAN:
    torch.manual_seed(0)
    return CrystalGAN([221, 225, 123], loglen_mean=1.4, loglen_std=0.2, noise_dim=noise_dim, hidden=16, critic_hidden=16)


# ---------------------------------------------------------------- symmetry expansion
def test_rocksalt_from_basis_atoms():
    s = build_structure(["Na", "Cl"], np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.array([5.64, 5.64, 5.64]), 225)
    assert len(s) == 8 and s.composition.reduced_formula == "NaCl"
    assert StructureMatcher().fit(s, _rocksalt())
    np.testing.assert_allclose(sorted(s.distance_matrix[0])[1], 5.64 / 2, atol=1e-6)


def test_perovskite_from_basis_atoms():
    s = build_structure(["Sr", "Ti", "O"], np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
                        np.array([3.905, 1.0, 7.0]), 221)   # cubic: b and c tied to a
    assert s.composition.reduced_formula == "SrTiO3" and len(s) == 5
    assert s.lattice.abc == pytest.approx((3.905,) * 3)
    assert StructureMatcher().fit(s, _perovskite())


def test_expand_orbits_general_position_multiplicity():
    ops = symmetry_operations(225)
    assert ops.shape == (192, 4, 4)   # Fm-3m conventional cell: 48 point operations × 4 centrings
    coords, owner, _ = expand_orbits(np.array([[0.11, 0.23, 0.37]]), 225)
    assert len(coords) == 192 and (owner == 0).all()
    coords, _, _ = expand_orbits(np.array([[0.25, 0.25, 0.25]]), 225)   # 8c
    assert len(coords) == 8


def test_record_roundtrip_perovskite():
    rec = record_from_structure(_perovskite(), "srtio3")
    assert rec is not None and rec.spacegroup == 221 and set(rec.elements) == {"Sr", "Ti", "O"}
    assert StructureMatcher().fit(record_structure(rec), _perovskite())
    assert record_from_structure(_rocksalt()) is None            # binary: not a PGCGM ternary


def test_check_spacegroup_errors():
    for bad in (0, 231, -3, 2.5, "abc"):
        with pytest.raises(ValueError, match="1-230"):
            check_spacegroup(bad)


def test_merge_close_atoms():
    s = Structure(Lattice.cubic(5.0), ["Na", "Na", "Cl"], [[0, 0, 0], [0.02, 0, 0], [0.5, 0.5, 0.5]])
    merged, prov = merge_close_atoms(s, 0.6, np.array([[0, 0], [0, 1], [1, 0]]))
    assert len(merged) == 2 and prov.tolist() == [[0, 0], [1, 0]]
    np.testing.assert_allclose(merged[0].frac_coords, [0.01, 0, 0], atol=1e-8)


# ---------------------------------------------------------------- physics loss
def _loss_for(a: float, model: CrystalGAN) -> float:
    sg = torch.tensor([model.sg_index(221)])
    frac = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0]]])
    radii = torch.tensor([[2.0, 1.4, 0.6]])   # Sr, Ti, O (Å)
    lattice = model.lattice(torch.tensor([[a, a, a]]), sg)
    return float(distance_loss(frac, lattice, radii, model.ops[sg], model.op_mask[sg])[0])


def test_distance_loss_zero_when_separated_positive_when_overlapping():
    model = _tiny_model()
    assert _loss_for(6.0, model) == 0.0
    assert _loss_for(2.0, model) > 0.0
    assert _loss_for(1.5, model) > _loss_for(2.0, model)


def test_distance_loss_gradient_pushes_atoms_apart():
    model = _tiny_model()
    sg = torch.tensor([model.sg_index(221)])
    frac = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.1, 0.0, 0.0]]], requires_grad=True)
    lengths = torch.tensor([[4.0, 4.0, 4.0]], requires_grad=True)
    loss = distance_loss(frac, model.lattice(lengths, sg), torch.tensor([[2.0, 1.4, 0.6]]), model.ops[sg], model.op_mask[sg])
    loss.sum().backward()
    assert loss.item() > 0 and lengths.grad.sum() < 0   # larger cell lowers the overlap


# ---------------------------------------------------------------- generate / sample
def test_generate_returns_structure_of_requested_elements():
    model = _tiny_model()
    s = generate(["O", "Ba", "Ti"], 221, model=model, seed=1)
    assert isinstance(s, Structure)
    assert {str(e) for e in s.composition.elements} <= {"Ba", "Ti", "O"}
    assert s.lattice.angles == pytest.approx((90, 90, 90))
    again = generate(["O", "Ba", "Ti"], 221, model=model, seed=1)
    np.testing.assert_allclose(s.lattice.abc, again.lattice.abc)


@pytest.mark.parametrize("elements, sg, match", [
    (["Ba", "Ti", "Xx"], 221, "unknown element"),
    (["Ba", "Ti"], 221, "three distinct"),
    (["Ba", "Ba", "O"], 221, "three distinct"),
    (["Ba", "Ti", "O"], 0, "1-230"),
    (["Ba", "Ti", "O"], 231, "1-230"),
    (["Ba", "Ti", "O"], 12, "not in this generator"),
])
def test_generate_rejects_bad_input(elements, sg, match):
    with pytest.raises(ValueError, match=match):
        generate(elements, sg, model=_tiny_model())


def test_validity_flags():
    assert structural_valid(_rocksalt())
    assert not structural_valid(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]]))
    assert compositional_valid("NaCl") and compositional_valid("SrTiO3")
    assert not compositional_valid("NaCl2")
    assert compositional_valid("Cu3Au")    # all-metal counts as valid (CDVAE rule)


def _records() -> list:
    recs = []
    for a, (x, y, z) in [(3.9, ("Sr", "Ti", "O")), (4.0, ("Ba", "Ti", "O")), (3.8, ("Ca", "Ti", "O")),
                         (4.1, ("K", "Nb", "O")), (3.95, ("Sr", "Zr", "O")), (4.2, ("Ba", "Sn", "O"))]:
        s = Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), [x, y, z], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
        recs.append(record_from_structure(s, f"{x}{y}{z}3"))
    return recs


def test_train_sample_roundtrip(tmp_path):
    from matdiscovery.datasets import load_structure_csv
    from matdiscovery.generator import load_generator, save_checkpoint

    recs = _records()
    model, history = train(recs, epochs=2, batch_size=4, noise_dim=8, hidden=16, critic_hidden=16, progress=False)
    assert len(history) == 2 and np.isfinite(history["dist_loss_A2"]).all()
    path = save_checkpoint(model, tmp_path / "g.pt", history)
    loaded = load_generator(path)
    assert loaded.spacegroups == [221] and len(loaded.training_records) == len(recs)
    frame = sample(loaded, 6, seed=3, progress=False)
    assert (frame["variant"] == "default").all() and frame["material_id"].is_unique
    assert frame.equals(sample(loaded, 6, seed=3, progress=False).pipe(lambda f: f.assign(structure=frame["structure"])))
    out = write_samples_csv([frame, frame.assign(variant="smooth", material_id=frame["material_id"] + "s")],
                            tmp_path / "samples.csv")
    back = load_structure_csv(out)
    assert len(back) == 12 and set(back["variant"]) == {"default", "smooth"}
    m = validity_metrics(frame, recs)
    for key in ("validity_structural", "validity_compositional", "uniqueness", "novelty"):
        assert 0.0 <= m[key] <= 1.0


def test_load_generator_missing_file(tmp_path):
    from matdiscovery.generator import load_generator

    with pytest.raises(FileNotFoundError, match="train_generator"):
        load_generator(tmp_path / "nope.pt")


def test_novelty_detects_training_structure():
    from matdiscovery.generator.sampling import novel_mask, unique_mask

    recs = _records()
    ref = [record_structure(r) for r in recs]
    assert not novel_mask([_perovskite(3.9)], ref)[0]
    assert novel_mask([_perovskite(3.9).replace_species({"Sr": "Mg"})], ref)[0]
    assert unique_mask([_perovskite(), _perovskite(), _rocksalt()]).tolist() == [True, False, True]


# ---------------------------------------------------------------- smoothness
def test_rdf_fingerprint_supercell_invariant_and_sensitive():
    s = _perovskite()
    f1, f2 = rdf_fingerprint(s), rdf_fingerprint(s * (2, 1, 1))
    assert fingerprint_distance(f1, f2) < 1e-8
    assert fingerprint_distance(f1, rdf_fingerprint(_perovskite(3.5))) > 0.1


def test_perturb_and_steps():
    model = _tiny_model()
    from matdiscovery.generator.smoothness import input_point

    p = input_point(model, ["Ba", "Ti", "O"], 221, seed=0)
    q, norm = perturb(model, p, "noise", 3, 0.1)
    assert norm == pytest.approx(0.1) and q.z[3] - p.z[3] == pytest.approx(0.1) and (q.cond == p.cond).all()
    q, norm = perturb(model, p, "elements", 5, 0.01)
    assert q.cond[5] - p.cond[5] == pytest.approx(0.01) and (q.z == p.z).all()
    q, norm = perturb(model, p, "spacegroup", model.sg_index(225), 0.5)
    assert norm == pytest.approx(np.sqrt(2) * 0.5) and q.cond[-model.n_sg:].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="input group"):
        perturb(model, p, "lattice", 0, 0.1)
    with pytest.raises(ValueError):
        log_steps(0.1, 0.01, 4)
    np.testing.assert_allclose(log_steps(1e-3, 1.0, 4), [1e-3, 1e-2, 1e-1, 1.0])


def test_sweep_zero_step_limit_and_summary():
    model = _tiny_model()
    from matdiscovery.generator.smoothness import input_point

    bases = [input_point(model, ["Ba", "Ti", "O"], 221, seed=s) for s in range(2)]
    frame = sweep(model, bases, [1e-6, 1.0], n_noise_dims=2, n_element_dims=2, n_spacegroups=1, matcher=True, progress=False)
    assert len(frame) == 2 * (2 + 2 + 1) * 2
    tiny = frame[frame["step"] == 1e-6]
    assert tiny["d_lattice_A"].max() < 1e-3     # the network itself is continuous
    summary = summarise(frame, small_step=1e-3)
    assert set(summary) >= {"lipschitz_median_noise", "lipschitz_median_conditioning", "jump_rate", "jump_rate_small"}
    assert 0 <= summary["jump_rate"] <= 1


def test_compare_flags_jumps():
    model = _tiny_model()
    from matdiscovery.generator.smoothness import input_point

    p = input_point(model, ["Ba", "Ti", "O"], 221, seed=0)
    d = describe(decode(model, [p, p]))
    c = compare(d[0], d[1])
    assert c["d_fingerprint"] == 0 and not c["jump"]
    d[1].n_atoms += 1
    assert compare(d[0], d[1])["jump_atoms"]


def test_interpolation_endpoints():
    model = _tiny_model()
    from matdiscovery.generator.smoothness import input_point

    p = input_point(model, ["Ba", "Ti", "O"], 221, seed=0)
    z1 = input_point(model, ["Ba", "Ti", "O"], 221, seed=1).z
    for kind in ("linear", "slerp"):
        frame, gens = interpolate(model, p, z1, n_steps=5, kind=kind)
        assert len(frame) == 5 and frame["t"].tolist() == [0, 0.25, 0.5, 0.75, 1.0]
        end = decode(model, [p.with_input(z=z1)])[0]
        np.testing.assert_allclose(gens[-1].lengths, end.lengths, rtol=1e-5)
    with pytest.raises(ValueError, match="linear"):
        interpolate(model, p, z1, kind="cubic")


# ---------------------------------------------------------------- inverse design
class _CountJudge:
    """A fake property model: energy = −(fraction of oxygen) (eV/atom)."""

    def predict(self, comps):
        return np.array([-c.get_atomic_fraction("O") for c in comps])


def test_inverse_design_objective_and_optimisers():
    model = _tiny_model()
    obj = Objective(model, judge_property(_CountJudge()), 221, ["Ba", "Ti", "O", "Sr", "Ca"])
    x0 = obj.start(["Ba", "Ti", "O"], np.random.default_rng(0))
    assert obj.points(x0[None])[0].elements == ("Ba", "Ti", "O")
    y, gens = obj(x0[None])
    assert y.shape == (1,) and np.isfinite(y).all()
    es = evolution_strategy(obj, x0, iterations=3, popsize=4, seed=0)
    fd = finite_difference_descent(obj, x0, iterations=3, n_directions=2, seed=0)
    for f in (es, fd):
        assert len(f) == 4 and (np.diff(f["best"]) <= 0).all()
    assert es["evaluations"].iloc[-1] == 1 + 3 * 4 and fd["evaluations"].iloc[-1] == 1 + 3 * 5
    with pytest.raises(ValueError, match="candidate"):
        Objective(model, judge_property(_CountJudge()), 221, ["Ba", "Ti"])


def _merging_model() -> CrystalGAN:
    """A hand-set linear 'generator' for Pm-3m: Sr (0,0,0), Ti (½,½,½), O (x,0,0) with
    x = atan(2·z₀)/2π, a = 4 Å. Below x ≈ 0.11 the six O images merge (PGCGM post-processing)."""
    model = CrystalGAN([221], loglen_mean=float(np.log(4.0)), loglen_std=0.1, noise_dim=2, hidden=8, critic_hidden=8)
    lin = torch.nn.Linear(model.noise_dim + model.cond_dim, 3 + 18)
    with torch.no_grad():
        lin.weight.zero_()
        bias = torch.zeros(21)
        uv = bias[3:].view(3, 3, 2)
        uv[..., 0] = 1.0                    # angle 0 -> frac 0
        uv[1, :, 0] = -1.0                  # Ti: angle π -> frac ½
        lin.bias.copy_(bias)
        lin.weight[3 + 2 * (2 * 3 + 0) + 1, 0] = 2.0   # O x-coordinate: v = 2·z₀
    model.generator = torch.nn.Sequential(lin)
    return model


def test_bisection_confirms_merging_discontinuity():
    from matdiscovery.generator.smoothness import bisect_jump, input_point

    model = _merging_model()
    p0 = input_point(model, ["Sr", "Ti", "O"], 221, z=np.zeros(2))
    p1 = p0.with_input(z=np.array([1.0, 0.0], dtype=np.float32))
    d0, d1 = describe(decode(model, [p0, p1]))
    assert (d0.n_atoms, d1.n_atoms) == (3, 8)
    out = bisect_jump(model, p0, p1, width=1e-5)
    assert out["confirmed"] and out["jump_atoms"] and out["width"] <= 1e-5
    assert out["d_fingerprint"] > 0.05 and out["lip_fingerprint"] > 1e3
    with pytest.raises(ValueError, match="do not differ"):
        bisect_jump(model, p0, p0)
