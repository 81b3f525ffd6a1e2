"""Staged smoothness (issue 13): fingerprints, paths, jump causes, bisection, controls, the verdict rule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from matdiscovery.generator.data import canonical_order, record_from_structure
from matdiscovery.generator.model import CrystalGAN
from matdiscovery.generator.sampling import decode_crystal
from matdiscovery.generator.smoothness import (
    CAUSES,
    Final,
    Staircase,
    base_points,
    bisect_paths,
    composition_distance,
    element_partners,
    element_path,
    evaluate,
    jump_cause,
    linear_control,
    noise_path,
    premerge_fingerprint,
    rough_control,
    run_smoothness,
    spacegroup_path,
    stage_verdict,
    sweep,
)


def tiny_model() -> CrystalGAN:
    from pymatgen.core import Lattice, Structure

    torch.manual_seed(0)
    model = CrystalGAN([221, 225, 123], loglen_mean=1.4, loglen_std=0.2, noise_dim=8, hidden=(32, 32),
                       critic_hidden=(8,)).double()
    perov = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [.5, .5, .5], [.5, .5, 0]])
    model.training_records = [record_from_structure(perov, "x")]
    return model


def test_premerge_fingerprint_is_continuous_through_a_special_position():
    lengths = np.array([3.9] * 3)
    at = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0]])
    a = premerge_fingerprint(lengths, at, 221)
    changes = [np.abs(premerge_fingerprint(lengths, at + np.array([0, 0, h]), 221) - a).max() for h in (1e-6, 1e-7, 1e-8)]
    assert a.shape == (50,) and 0 < changes[0] < 1e-2
    np.testing.assert_allclose(np.array(changes[1:]) / changes[:-1], 0.1, rtol=0.05)   # shrinks with the step
    # while the expansion with duplicate removal (tolerance 1e-3) changes discretely: 3 → 6 O sites
    els = canonical_order(["Sr", "Ti", "O"])
    off = at.copy()
    off[2, 2] = 0.003
    assert decode_crystal(els, 221, lengths, at).orbit_sizes == (1, 1, 3)
    assert decode_crystal(els, 221, lengths, off).orbit_sizes == (1, 1, 6)


def _final(**kw) -> Final:
    base = dict(fingerprint=np.zeros(3), composition={"Sr": 0.2, "Ti": 0.2, "O": 0.6}, n_atoms=5, formula="SrTiO3",
                spacegroup_found=221, requested=221, species=("Sr", "Ti", "O"), orbit_sizes=(1, 1, 3), generated=None)
    return Final(**{**base, **kw})


def test_jump_cause_hierarchy():
    a = _final()
    assert jump_cause(a, _final()) is None
    assert jump_cause(a, _final(spacegroup_found=99)) == "spglib_label_only"
    assert jump_cause(a, _final(n_atoms=8, formula="SrTiO6")) == "merging"
    assert jump_cause(a, _final(n_atoms=8, formula="SrTiO6", orbit_sizes=(1, 1, 6))) == "orbit_collapse"
    assert jump_cause(a, _final(formula="BaTiO3", species=("Ba", "Ti", "O"))) == "composition_change"
    assert jump_cause(a, _final(requested=123, spacegroup_found=123)) == "spacegroup_change"
    assert set(CAUSES) == {"spacegroup_change", "composition_change", "orbit_collapse", "merging", "spglib_label_only"}
    assert composition_distance({"Sr": 0.2, "O": 0.8}, {"Ba": 0.2, "O": 0.8}) == pytest.approx(0.2)


def test_paths_stay_on_the_data_manifold():
    model = tiny_model()
    base = base_points(model, 1, seed=0)[0]
    partners = element_partners(base.elements, 1, 3)
    assert len(partners) == 3 and all(canonical_order([base.elements[0], p, base.elements[2]])[1] == p for p in partners)
    full = element_path(base, 1, partners[0], None)
    assert full.group == "element_switch" and full.point(1.0).elements[1] == partners[0]
    assert full.point(0.49).elements == base.elements and full.switch_t == 0.5
    target_cond = model.condition(list(full.point(1.0).elements), base.spacegroup)[0].numpy()
    np.testing.assert_allclose(full.point(1.0).cond, target_cond, atol=1e-6)     # lands on the real element's features
    small = element_path(base, 1, partners[0], 1e-3)
    assert small.length == pytest.approx(1e-3) and small.point(1.0).elements == base.elements
    sg = spacegroup_path(model, base, [s for s in model.spacegroups if s != base.spacegroup][0])
    assert sg.point(1.0).spacegroup != base.spacegroup and sg.point(0.99).spacegroup == base.spacegroup
    onehot = sg.point(1.0).cond[-model.n_sg:]
    assert sorted(onehot.tolist()) == [0.0] * (model.n_sg - 1) + [1.0]           # a switch, not a blend
    assert noise_path(base, 3, 0.1).point(1.0).z[3] == pytest.approx(base.z[3] + 0.1)


def test_stage_verdict_rule():
    ref = np.full(20, 1.0)
    smooth = stage_verdict(ref, np.array([0.8, 2.0, 5.0]), factor=100)
    rough = stage_verdict(ref, np.array([1e5, 3e5, 2.0]), factor=100)
    none = stage_verdict(ref, np.array([]), factor=100)
    assert not smooth["rough"] and rough["rough"] and not none["rough"]
    assert rough["steep_fraction"] == pytest.approx(2 / 3) and none["bisected"] == 0


def test_controls_are_told_apart_by_bisection():
    model = tiny_model()
    lin = linear_control(model, n_fit=300, seed=1)
    rough = rough_control(model, 0.05)
    assert isinstance(lin.generator, torch.nn.Linear) and any(isinstance(m, Staircase) for m in rough.generator)
    bases = base_points(model, 3, seed=0)
    paths = [noise_path(b, d, 1.0) for b in bases for d in range(4)]
    x = torch.as_tensor(np.stack([np.r_[p.base.z, p.base.cond] for p in paths]))
    with torch.no_grad():   # the linear control reproduces the network to first order
        assert torch.corrcoef(torch.stack([lin.generator(x).ravel(), model.generator(x).ravel()]))[0, 1] > 0.9
    ratios = {}
    for name, m in (("linear", lin), ("rough", rough), ("ours", model)):
        b = bisect_paths(m, paths, stage="raw", decoder=None, width=1e-6)
        ref = np.array([e for e in (np.linalg.norm(evaluate(m, [p.point(1.0)], premerge=False)[0].raw
                                                   - evaluate(m, [p.point(0.0)], premerge=False)[0].raw) for p in paths)])
        ratios[name] = stage_verdict(ref, b["lip_raw"].to_numpy(), factor=100)
    assert not ratios["linear"]["rough"] and not ratios["ours"]["rough"] and ratios["rough"]["rough"]


def test_run_smoothness_end_to_end():
    model = tiny_model()
    gens = {"ours": (model, ["pgcgm", "snap"]), "linear_control": (linear_control(model, n_fit=200, seed=1), ["pgcgm"]),
            "rough_control": (rough_control(model, 0.05), ["pgcgm"])}
    bases = base_points(model, 2, seed=0)
    res = run_smoothness(gens, bases, steps=[1e-3, 0.1, 1.0], n_noise_dims=2, n_element_partners=1, n_sg_switches=1,
                         max_bisect=3, bisect_width=1e-6, factor=100, small_step=1e-2, seed=0, progress=False)
    s = res.summary("ours", "pgcgm")
    for key in ("lipschitz_raw_median", "lipschitz_raw_p95", "lipschitz_premerge_median", "jump_rate", "jump_cause",
                "rough", "roughness_enters_at", "spacegroup_switch_recovery"):
        assert key in s
    assert set(s["jump_cause"]) == set(CAUSES)
    assert not s["rough"]["raw"] and res.summary("rough_control", "pgcgm")["rough"]["raw"]
    assert res.summary("rough_control", "pgcgm")["roughness_enters_at"] == "raw"
    table = res.verdict_table([("ours", "pgcgm"), ("rough_control", "pgcgm")])
    assert table.shape[0] == 2
    # the same inputs for every generator: identical paths and bases
    sw = res.perturbations
    assert (sw[sw["generator"] == "ours"].query("decoder == 'pgcgm'")["group"].to_numpy()
            == sw[sw["generator"] == "linear_control"]["group"].to_numpy()).all()


def test_sweep_rows_and_ratios():
    model = tiny_model()
    bases = base_points(model, 1, seed=0)
    sw, paths = sweep(model, bases, decoders=["pgcgm"], steps=[0.01, 1.0], n_noise_dims=2, n_element_partners=1,
                      n_sg_switches=1, seed=0, progress=False)
    n = 2 * 2 + 3 * (2 + 1) + 1
    assert len(sw) == len(paths) == n
    cont = sw[sw["group"].isin(["noise", "elements"])]
    np.testing.assert_allclose(cont["lip_raw"], cont["d_raw"] / cont["length"])
    assert sw[sw["group"] == "spacegroup_switch"]["lip_raw"].isna().all()
    assert copy.deepcopy(model).raw(torch.zeros(1, 8, dtype=torch.float64),
                                    torch.zeros(1, model.cond_dim, dtype=torch.float64)).dtype == torch.float64
