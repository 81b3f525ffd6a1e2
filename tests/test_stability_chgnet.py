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
    return ChgnetJudge(batch_size=3, cache=True)


def test_energies_identical_to_predict_structure(judge, structures):
    ours = judge.predict_energy(structures, progress=False)
    base = library_default_energy(judge.model, structures)
    assert ours.shape == (len(structures),)
    np.testing.assert_array_equal(ours, base)
    np.testing.assert_array_equal(judge.predict_energy(structures, progress=False), ours)  # from the graph cache


def test_batch_size_and_cache_do_not_change_energies(judge, structures):
    base = judge.predict_energy(structures, progress=False)
    other = ChgnetJudge(batch_size=2, threads=None)
    np.testing.assert_array_equal(other.predict_energy(structures, progress=False), base)
    np.testing.assert_array_equal(other.predict_energy(structures[:4], progress=False), base[:4])
    assert not hasattr(other, "n_workers") and not hasattr(other, "close")  # single-process judge


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
    with pytest.raises(ValueError, match="batch_size"):
        ChgnetJudge(batch_size=0)


def test_rock_salt_is_bound_and_fingerprint_stable(judge):
    nacl = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    ef = judge.predict_formation_energy([nacl], progress=False)[0]
    assert -2.6 < ef < -1.8  # NaCl: about -2.1 eV/atom in MP
    assert structure_fingerprint(nacl) == structure_fingerprint(nacl.copy())
    moved = nacl.copy()
    moved.translate_sites([0], [0.01, 0, 0])
    assert structure_fingerprint(nacl) != structure_fingerprint(moved)
