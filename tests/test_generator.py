"""Generator (issue 13): symmetry, Wyckoff snapping, training-set filters, decoders, generate() errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from matdiscovery.datasets import load_structure_csv
from matdiscovery.generator.data import (
    FILTERS,
    Record,
    TrainingSet,
    canonical_order,
    dedupe,
    record_formula,
    record_from_structure,
    record_structure,
    screen_structure,
    split_by_formula,
)
from matdiscovery.generator.model import RAW_DIM, CrystalGAN, distance_loss, load_generator, n_parameters, save_checkpoint
from matdiscovery.generator.sampling import (
    MAX_ABS_NOISE,
    SAMPLE_COLUMNS,
    compositional_valid,
    decode_crystal,
    generate,
    read_samples,
    sample,
    structural_valid,
    write_samples,
)
from matdiscovery.generator.symmetry import (
    build_structure,
    check_spacegroup,
    closure,
    expand_orbits,
    identity_index,
    merge_close_atoms,
    multiplication_table,
    snap_to_wyckoff,
    symmetry_operations,
)


def _rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _perovskite(a: float = 3.905, el=("Sr", "Ti", "O")) -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), list(el), [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


def tiny_model(noise_dim: int = 8) -> CrystalGAN:
    torch.manual_seed(0)
    model = CrystalGAN([221, 225, 123], loglen_mean=1.4, loglen_std=0.2, noise_dim=noise_dim, hidden=(16, 16),
                       critic_hidden=(16,))
    model.training_records = [record_from_structure(_perovskite(), "x")]
    return model


# ---------------------------------------------------------------- symmetry
def test_rocksalt_and_perovskite_from_basis_atoms():
    s = build_structure(["Na", "Cl"], np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.array([5.64] * 3), 225)
    assert len(s) == 8 and StructureMatcher().fit(s, _rocksalt())
    p = build_structure(["Sr", "Ti", "O"], np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
                        np.array([3.905, 1.0, 7.0]), 221)   # cubic: b and c tied to a
    assert p.lattice.abc == pytest.approx((3.905,) * 3) and StructureMatcher().fit(p, _perovskite())


def test_expand_orbits_multiplicity():
    assert symmetry_operations(225).shape == (192, 4, 4)
    assert len(expand_orbits(np.array([[0.11, 0.23, 0.37]]), 225)[0]) == 192
    assert len(expand_orbits(np.array([[0.25, 0.25, 0.25]]), 225)[0]) == 8    # 8c


def test_check_spacegroup_errors():
    for bad in (0, 231, -3, 2.5, "abc"):
        with pytest.raises(ValueError, match="1-230"):
            check_spacegroup(bad)


@pytest.mark.parametrize("number", [221, 166, 194, 227, 62])
def test_multiplication_table_is_a_group_table(number):
    table = multiplication_table(number)
    m = len(symmetry_operations(number))
    e = identity_index(number)
    assert (table[e] == np.arange(m)).all() and (table[:, e] == np.arange(m)).all()
    assert all(len(set(row)) == m for row in table)           # each row a permutation (Latin square)
    only_e = np.zeros(m, dtype=bool)
    only_e[e] = True
    assert closure(only_e, number).sum() == 1


def test_snap_to_wyckoff_projects_onto_the_special_position():
    lattice = np.eye(3) * 3.9
    q, h = snap_to_wyckoff(np.array([0.5, 0.5, 0.02]), 221, lattice, tol=0.72)    # O near 3c
    np.testing.assert_allclose(q, [0.5, 0.5, 0.0], atol=1e-12)
    assert len(expand_orbits(q, 221)[0]) == 3 and h == 16
    q, h = snap_to_wyckoff(np.array([0.03, 0.01, 0.98]), 221, lattice, tol=0.72)   # near the origin (1a)
    np.testing.assert_allclose(q, [0, 0, 0], atol=1e-12)
    assert h == 48
    p = np.array([0.2, 0.31, 0.13])                                                 # general position: unchanged
    q, h = snap_to_wyckoff(p, 221, lattice, tol=0.3)
    np.testing.assert_allclose(q, p) and h == 1
    q1, _ = snap_to_wyckoff(np.array([0.5, 0.5, 0.2]), 221, lattice, tol=0.72)     # 6 images left: affine in p
    q2, _ = snap_to_wyckoff(np.array([0.5, 0.5, 0.2 + 1e-7]), 221, lattice, tol=0.72)
    assert np.abs(q2 - q1).max() < 2e-7


def test_merge_close_atoms_uses_pgcgm_threshold():
    # Na radius 1.8 Å: PGCGM merges same-element atoms closer than 2 × 0.6 × 1.8 = 2.16 Å
    close = Structure(Lattice.cubic(10.0), ["Na", "Na", "Cl"], [[0, 0, 0], [0.2, 0, 0], [0.5, 0.5, 0.5]])
    merged, prov = merge_close_atoms(close, 0.6, np.array([[0, 0], [0, 1], [1, 0]]))
    assert len(merged) == 2 and prov.tolist() == [[0, 0], [1, 0]]
    np.testing.assert_allclose(merged[0].frac_coords, [0.1, 0, 0], atol=1e-8)
    far = Structure(Lattice.cubic(10.0), ["Na", "Na", "Cl"], [[0, 0, 0], [0.23, 0, 0], [0.5, 0.5, 0.5]])
    assert len(merge_close_atoms(far, 0.6)[0]) == 3


# ---------------------------------------------------------------- training set
def test_screen_structure_filters_in_order():
    out, sg, rec = screen_structure(_perovskite())
    assert out == "kept" and sg == 221 and rec.elements == tuple(canonical_order(["Sr", "Ti", "O"]))
    assert StructureMatcher().fit(record_structure(rec), _perovskite())
    assert record_formula(rec) == "SrTiO3"
    assert screen_structure(_rocksalt())[0] == "ternary"
    assert screen_structure(_perovskite(el=("La", "Ti", "O")))[0] == "pgcgm_elements"     # La: not among PGCGM's 63
    hexa = Structure.from_spacegroup("P-6m2", Lattice.hexagonal(3.0, 5.0), ["Mo", "W", "S"],
                                     [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.25]])
    assert screen_structure(hexa)[:2] == ("pgcgm_spacegroups", 187)
    assert screen_structure(hexa, frozenset({187}))[0] == "kept"
    assert FILTERS[0] == "ternary" and FILTERS[-1] == "setting"


def test_dedupe_and_split_by_formula():
    a = record_from_structure(_perovskite(3.905), "a", "s")
    b = record_from_structure(_perovskite(3.95), "b", "s")       # same crystal, 1 % larger: a duplicate
    c = record_from_structure(_perovskite(4.0, ("Ba", "Ti", "O")), "c", "s")
    kept, dropped = dedupe([a, b, c])
    assert [r.material_id for r in kept] == ["a", "c"] and [r.material_id for r in dropped] == ["b"]
    recs = [Record(str(i), "s", ("Sr", "Ti", "O") if i % 2 else ("Ba", "Ti", "O"), 221, (4.0,) * 3,
                   ((0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0))) for i in range(10)]
    train, held = split_by_formula(recs, 0.5, seed=0)
    assert len(train) == len(held) == 5
    assert {record_formula(r) for r in train}.isdisjoint({record_formula(r) for r in held})
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_by_formula(recs, 1.5, seed=0)


def test_training_set_tables_and_roundtrip(tmp_path):
    recs = [record_from_structure(_perovskite(), "mp-1", "3dsc_mp"), record_from_structure(_perovskite(4.0, ("Ba", "Ti", "O")), "j", "jarvis_epc")]
    screening = pd.DataFrame([
        {"source": "3dsc_mp", "material_id": "mp-1", "formula": "SrTiO3", "spacegroup": 221, "outcome": "train", "in_pgcgm_ids": True},
        {"source": "3dsc_mp", "material_id": "mp-2", "formula": "NaCl", "spacegroup": 0, "outcome": "ternary", "in_pgcgm_ids": False},
        {"source": "jarvis_epc", "material_id": "j", "formula": "BaTiO3", "spacegroup": 221, "outcome": "heldout", "in_pgcgm_ids": False},
        {"source": "jarvis_epc", "material_id": "k", "formula": "MoWS", "spacegroup": 187, "outcome": "pgcgm_spacegroups", "in_pgcgm_ids": False},
    ])
    ts = TrainingSet(recs[:1], recs[1:], screening, {"seed": 0})
    table = ts.filter_table()
    assert table.loc["3dsc_mp", "candidates"] == 2 and table.loc["3dsc_mp", "after ternary"] == 1
    assert table.loc["jarvis_epc", "after pgcgm_spacegroups"] == 1 and table.loc["total", "in PGCGM ids"] == 1
    assert table.loc["total", "train"] == 1 and table.loc["total", "heldout"] == 1
    sg = ts.spacegroup_table()
    assert sg.loc[187, "not kept"] == 1 and not sg.loc[187, "in_pgcgm_20"] and sg.loc[221, "in_pgcgm_20"]
    back = TrainingSet.load(ts.save(tmp_path))
    assert back.train == ts.train and back.heldout == ts.heldout and len(back.screening) == 4


# ---------------------------------------------------------------- model and physics loss
def test_model_sizes_and_raw_output():
    model = tiny_model()
    raw = model.raw(torch.zeros(2, model.noise_dim), torch.zeros(2, model.cond_dim))
    assert raw.shape == (2, RAW_DIM)
    big = CrystalGAN([221, 225], 1.4, 0.2, noise_dim=128, hidden=(1024, 2048, 1024, 320),
                     critic_hidden=(512, 768, 384))
    assert abs(n_parameters(big.generator) - 4_750_854) / 4_750_854 < 0.01   # PGCGM's generator size


def _loss_for(a: float, model: CrystalGAN) -> float:
    sg = torch.tensor([model.sg_index(221)])
    frac = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0]]])
    lattice = model.lattice(torch.tensor([[a, a, a]]), sg)
    return float(distance_loss(frac, lattice, torch.tensor([[2.0, 1.4, 0.6]]), model.ops[sg], model.op_mask[sg])[0])


def test_distance_loss_zero_when_separated_positive_when_overlapping():
    model = tiny_model()
    assert _loss_for(6.0, model) == 0.0 and 0 < _loss_for(2.0, model) < _loss_for(1.5, model)


# ---------------------------------------------------------------- decoders and flags
def test_decoders_recover_a_slightly_displaced_perovskite():
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.02]])     # O 0.08 Å off 3c
    for decoder in ("pgcgm", "pgcgm_rounded", "snap"):
        g = decode_crystal(canonical_order(["Sr", "Ti", "O"]), 221, np.array([3.9] * 3), frac, decoder)
        assert g.structure.composition.reduced_formula == "SrTiO3" and len(g.structure) == 5
        assert g.flags["spacegroup_match"] and g.flags["valid_combined"]
    assert g.orbit_sizes == (1, 1, 6) and g.flags["n_atoms_premerge"] == 8
    with pytest.raises(ValueError, match="unknown decoder"):
        decode_crystal(["Sr", "Ti", "O"], 221, np.array([3.9] * 3), frac, "nearest")


def test_snap_keeps_symmetry_where_merging_breaks_it():
    # random basis points in Pm-3m: PGCGM's cluster means leave an orthorhombic cell (Amm2),
    # snapping projects every atom onto a special position of the requested group
    frac = np.array([[0.637, 0.2698, 0.041], [0.0165, 0.8133, 0.9128], [0.6066, 0.7295, 0.5436]])
    els = canonical_order(["Ba", "Ti", "O"])
    merged = decode_crystal(els, 221, np.array([4.0] * 3), frac, "pgcgm")
    snap = decode_crystal(els, 221, np.array([4.0] * 3), frac, "snap")
    assert merged.flags["spacegroup_found"] == 38 and snap.flags["spacegroup_found"] == 221


def test_validity_flags():
    assert structural_valid(_perovskite())
    coincident = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]])
    assert not structural_valid(coincident)
    skewed = Structure(Lattice.from_parameters(5, 5, 5, 90, 90, 15), ["Na"], [[0, 0, 0]])   # self-image at 1.31 Å
    assert structural_valid(skewed) and not structural_valid(skewed, cutoff=1.5)
    assert compositional_valid("SrTiO3") and not compositional_valid("NaCl3") and compositional_valid("Cu3Au")


# ---------------------------------------------------------------- generate() and sample()
def test_generate_returns_a_structure_and_is_seeded():
    model = tiny_model()
    s = generate(["O", "Sr", "Ti"], 221, model=model, seed=1)
    assert isinstance(s, Structure) and s.lattice.angles == pytest.approx((90, 90, 90))
    assert {e.symbol for e in s.composition.elements} <= {"Sr", "Ti", "O"}
    np.testing.assert_allclose(s.lattice.abc, generate(["O", "Sr", "Ti"], 221, model=model, seed=1).lattice.abc)
    g = generate(["O", "Sr", "Ti"], 221, np.zeros(8), model=model, decoder="snap", full=True)
    assert g.decoder == "snap"


@pytest.mark.parametrize("z, message", [
    (np.full(8, 1e30), "beyond"),
    (np.r_[np.zeros(7), np.nan], "NaN"),
    (np.zeros(5), "8 components"),
    (np.zeros((2, 8)), "2 rows"),
    (np.zeros((1, 2, 8)), "8 components"),
])
def test_generate_rejects_bad_noise(z, message):
    with pytest.raises(ValueError, match=message):
        generate(["O", "Sr", "Ti"], 221, z, model=tiny_model())
    assert MAX_ABS_NOISE == 10.0


def test_generate_rejects_bad_conditions():
    model = tiny_model()
    for els, sg, msg in ((["Sr", "Ti"], 221, "three distinct"), (["Sr", "Ti", "Xx"], 221, "unknown element"),
                         (["Sr", "Ti", "O"], 194, "not in this generator"), (["Sr", "Ti", "O"], 0, "1-230")):
        with pytest.raises(ValueError, match=msg):
            generate(els, sg, model=model, seed=0)
    with pytest.raises(ValueError, match="decoder"):
        generate(["Sr", "Ti", "O"], 221, model=model, seed=0, decoder="x")


def test_sample_rows_per_decoder_and_roundtrip(tmp_path):
    model = tiny_model()
    frame = sample(model, 6, seed=0, decoders=("pgcgm", "snap"), progress=False)
    assert len(frame) == 12 and set(SAMPLE_COLUMNS) <= set(frame.columns)
    by = {v: g.reset_index(drop=True) for v, g in frame.groupby("variant")}
    assert (by["pgcgm"]["elements"] == by["snap"]["elements"]).all()     # same conditions for both decoders
    assert (by["pgcgm"]["n_atoms_premerge"] == by["snap"]["n_atoms_premerge"]).all()
    write_samples(frame, tmp_path)
    back = read_samples(tmp_path)
    assert [len(s) for s in back["structure"]] == [len(s) for s in frame["structure"]]
    readable = load_structure_csv(tmp_path / "samples.csv", on_error="skip")
    assert len(readable) + len(readable.attrs["skipped"]) == 12
    again = sample(model, 6, seed=0, decoders=("pgcgm",), progress=False)
    assert (again["formula"].to_numpy() == by["pgcgm"]["formula"].to_numpy()).all()


def test_checkpoint_roundtrip(tmp_path):
    model = tiny_model()
    model.train_config = {"seed": 0}
    path = save_checkpoint(model, tmp_path / "g.pt", pd.DataFrame({"epoch": [0], "critic_wdist": [1.0]}))
    back = load_generator(path)
    assert back.spacegroups == model.spacegroups and back.training_records == model.training_records
    z, c = torch.zeros(1, 8), torch.zeros(1, model.cond_dim)
    assert torch.equal(back.raw(z, c), model.raw(z, c))
    with pytest.raises(FileNotFoundError, match="train_generator"):
        load_generator(tmp_path / "missing.pt")
