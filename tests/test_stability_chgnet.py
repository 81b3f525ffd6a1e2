"""CHGNet judge: identical energies to the library path, formation energies, failures reported."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pymatgen.core import Composition, Element, Lattice, Structure

from matdiscovery.stability.chgnet_judge import ChgnetJudge, library_default_energy, structure_fingerprint


@pytest.fixture(scope="module")
def structures():
    from matdiscovery.datasets import load_crystals

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(load_crystals("jarvis_epc", "val", limit=7)["structure"])


@pytest.fixture(scope="module")
def judge():
    return ChgnetJudge(n_workers=0, batch_size=3, cache=True)


def test_energies_identical_to_predict_structure(judge, structures):
    ours = judge.predict_energy(structures, progress=False)
    base = library_default_energy(judge.model, structures)
    assert ours.shape == (len(structures),)
    np.testing.assert_array_equal(ours, base)
    np.testing.assert_array_equal(judge.predict_energy(structures, progress=False), ours)  # from the graph cache


def test_worker_modes_identical(judge, structures):
    base = judge.predict_energy(structures, progress=False)
    for mode in ("pipeline", "parallel"):
        with ChgnetJudge(n_workers=1, batch_size=2, mode=mode, threads=None) as fast:
            np.testing.assert_array_equal(fast.predict_energy(structures, progress=False), base)
            pool = fast._pool
            np.testing.assert_array_equal(fast.predict_energy(structures[:4], progress=False), base[:4])
            assert fast._pool is pool and pool is not None  # workers persist between calls
        assert fast._pool is None


def test_formation_energy_uses_mp_references(judge):
    refs = judge.elemental_references()
    fe = refs[Element("Fe")]
    assert judge.formation_energy([Composition("Fe")], [fe])[0] == pytest.approx(0.0)
    ef = judge.formation_energy([Composition("FeO")], [0.5 * (fe + refs[Element("O")]) - 1.0])[0]
    assert ef == pytest.approx(-1.0)
    with pytest.raises(KeyError, match="no MP elemental reference"):
        judge.formation_energy([Composition("Pu2Fm")], [0.0])
    with pytest.raises(TypeError, match="not a pymatgen Structure"):
        judge.predict_energy(["NaCl"], progress=False)
    with pytest.raises(ValueError, match="mode"):
        ChgnetJudge(mode="gpu")


def test_rock_salt_is_bound_and_fingerprint_stable(judge):
    nacl = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    ef = judge.predict_formation_energy([nacl], progress=False)[0]
    assert -2.6 < ef < -1.8  # NaCl: about -2.1 eV/atom in MP
    assert structure_fingerprint(nacl) == structure_fingerprint(nacl.copy())
    moved = nacl.copy()
    moved.translate_sites([0], [0.01, 0, 0])
    assert structure_fingerprint(nacl) != structure_fingerprint(moved)


def test_short_relaxation_lowers_the_energy(judge):
    strained = Structure(Lattice.cubic(3.3), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # CsCl, compressed ~18%
    failures: dict[int, str] = {}
    relaxed = judge.relax([strained], steps=3, failures=failures, progress=False)
    assert failures == {} and len(relaxed) == 1
    assert relaxed[0].volume > strained.volume  # the cell expands towards equilibrium (~4.1 Å)
    e0, e1 = judge.predict_energy([strained, relaxed[0]], progress=False)
    assert e1 < e0
    assert judge.relax([strained], steps=0) == [strained]


def test_relaxation_effect_on_a_compressed_cell(judge):
    from matdiscovery.stability.hull import FormationEnergyHull
    from matdiscovery.stability.screening import relaxation_effect

    strained = Structure(Lattice.cubic(3.3), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    hull = FormationEnergyHull([Composition("CsCl")], [-2.2])
    out = relaxation_effect([strained], judge, hull, steps=3, ids=["cscl"], progress=False)
    row = out.iloc[0]
    assert row["id"] == "cscl" and row["relaxed"] and row["ef_after"] < row["ef_before"]
    assert row["ehull_after"] - row["ehull_before"] == pytest.approx(row["ef_after"] - row["ef_before"], abs=1e-9)
    with pytest.raises(ValueError, match="steps"):
        relaxation_effect([strained], judge, hull, steps=0)
