"""Formation energies, MP2020 corrections, chemistry offsets, absurd outputs and the S.U.N. rule."""

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from matdiscovery.stability.energies import (
    CHEMISTRY_CLASSES,
    ChemistryOffsets,
    absurd_reason,
    chemistry_class,
    formation_energy,
    mp2020_corrected_energy,
)


def rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def fe2o3_like() -> Structure:
    return Structure(Lattice.cubic(4), ["Fe", "Fe", "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])


@pytest.mark.parametrize("formula,expected", [
    ("Fe2O3", "tm_oxide_fluoride"), ("Al2O3", "oxide_fluoride"), ("LiF", "oxide_fluoride"), ("NiF2", "tm_oxide_fluoride"),
    ("NbSe2", "non_oxide_anion"), ("GaN", "non_oxide_anion"), ("MgB2", "non_oxide_anion"), ("AlNi3", "intermetallic"),
    ("Cu", "intermetallic"), ("BaSO4", "oxide_fluoride"),
])
def test_chemistry_class(formula, expected):
    assert chemistry_class(formula) == expected


def test_chemistry_class_rejects_empty():
    with pytest.raises(ValueError, match="empty composition|Invalid formula"):
        chemistry_class("")


def test_mp2020_correction_matches_published_values():
    # MP2020: Fe (GGA+U, oxide) -2.256 eV per Fe, oxide -0.687 eV per O
    assert mp2020_corrected_energy(fe2o3_like(), -7.0) == pytest.approx(-7.0 + (2 * -2.256 + 3 * -0.687) / 5, abs=1e-3)
    cu = Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    assert mp2020_corrected_energy(cu, -4.0) == pytest.approx(-4.0)  # no anion, no U: no correction
    assert mp2020_corrected_energy(rocksalt(), -3.0) < -3.0  # chloride anion correction
    assert np.isnan(mp2020_corrected_energy(cu, float("nan")))


def test_formation_energy_of_elements_at_reference_is_zero():
    from matdiscovery.stability.energies import elemental_references

    refs = elemental_references()
    cu = [el for el in refs if el.symbol == "Cu"][0]
    assert formation_energy(["Cu"], [refs[cu]])[0] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(KeyError, match="no MP elemental reference"):
        formation_energy(["Og"], [0.0])


def synthetic_controls(true_offsets: dict[str, float], n: int = 400, noise: float = 0.02, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = rng.choice(CHEMISTRY_CLASSES, size=n)
    dft = rng.normal(-1, 0.7, size=n)
    judge = dft + np.array([true_offsets[c] for c in classes]) + rng.normal(0, noise, size=n)
    return classes, judge, dft


def test_offsets_recover_class_dependent_shift_and_cut_heldout_error():
    true = {"intermetallic": 0.03, "oxide_fluoride": -0.17, "tm_oxide_fluoride": 0.07, "non_oxide_anion": -0.10}
    classes, judge, dft = synthetic_controls(true)
    off = ChemistryOffsets.fit(classes, judge, dft, n_folds=5, seed=0)
    for c, v in true.items():
        assert off.offsets[c] == pytest.approx(v, abs=0.01)
        assert off.cv_mae_corrected[c] < 0.03 < off.cv_mae_raw[c] or abs(v) < 0.04
    assert off.cv_mae_corrected["all"] < off.cv_mae_raw["all"] / 3
    corrected = off.apply(classes, judge)
    assert np.abs(corrected - dft).mean() < 0.03
    assert off.weighted_offset(["oxide_fluoride", "non_oxide_anion"]) == pytest.approx(-0.135, abs=0.01)


def test_offsets_do_not_help_when_there_is_no_shift():
    # the control that could fail: with no class-dependent shift the CV error must not drop
    classes, judge, dft = synthetic_controls(dict.fromkeys(CHEMISTRY_CLASSES, 0.0), noise=0.1)
    off = ChemistryOffsets.fit(classes, judge, dft)
    assert off.cv_mae_corrected["all"] >= off.cv_mae_raw["all"] * 0.97
    assert max(abs(v) for v in off.offsets.values()) < 0.03


def test_offsets_bad_input():
    with pytest.raises(ValueError, match="unknown chemistry classes"):
        ChemistryOffsets.fit(["metal"] * 10, np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="at least 5"):
        ChemistryOffsets.fit(["intermetallic"] * 3, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="3 classes for 2"):
        ChemistryOffsets.fit(["intermetallic"] * 3, np.zeros(2), np.zeros(2))


@pytest.mark.parametrize("kwargs,reason", [
    ({"formation_energy": -63.0}, "formation energy outside window"),
    ({"formation_energy": 58.0}, "formation energy outside window"),
    ({"formation_energy": float("nan")}, "no energy"),
    ({"formation_energy": -1.0, "volume_ratio": 4.0}, "relaxation blow-up (volume)"),
    ({"formation_energy": -1.0, "volume_ratio": 0.2}, "relaxation blow-up (volume)"),
    ({"formation_energy": -1.0, "min_distance": 0.3}, "collapsed atoms"),
    ({"formation_energy": -1.0, "n_isolated": 1}, "isolated atom"),
    ({"formation_energy": -1.0, "n_atoms_before": 4, "n_atoms_after": 3}, "lost atoms"),
    ({"formation_energy": -1.0, "volume_ratio": 1.16, "min_distance": 2.0}, ""),
    ({"formation_energy": 4.0, "volume_per_atom": 2.1, "relax_error": "not relaxed"}, "input denser than any crystal"),
    ({"formation_energy": -0.1, "volume_per_atom": 5.67}, ""),  # diamond, the densest real crystal, passes
])
def test_absurd_reason(kwargs, reason):
    assert absurd_reason(**kwargs) == reason


def test_sevennet_judge_on_rock_salt():
    from matdiscovery.stability.sevennet_judge import SevennetJudge

    judge = SevennetJudge()
    e = judge.predict_energy([rocksalt(), rocksalt(4.6)], progress=False)
    assert np.isfinite(e).all() and e[1] > e[0] + 0.1  # compressing the cell by 18 % costs energy
    ef = judge.predict_formation_energy([rocksalt()], progress=False)[0]
    assert -2.6 < ef < -1.8  # NaCl: about -2.1 eV/atom (MP, JARVIS)
    with pytest.raises(TypeError, match="item 0"):
        judge.predict_energy(["NaCl"], progress=False)


def test_sevennet_batched_energies_match_calculator():
    """The batched energy-only path gives the ASE calculator's energies, structure by structure, and a
    structure the model cannot take (an unknown element) is NaN without stopping its batch."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from matdiscovery.datasets import load_crystals
    from matdiscovery.stability.sevennet_judge import SevennetJudge

    structures = list(load_crystals("jarvis_epc", "train", limit=5)["structure"]) + [rocksalt(), rocksalt(4.6)]
    judge = SevennetJudge(batch_size=3)
    ours = judge.predict_energy(structures, progress=False)
    for s, e in zip(structures, ours):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.calc = judge.calculator
        assert abs(e - atoms.get_potential_energy() / len(atoms)) < 1e-5
    og = Structure(Lattice.cubic(5.0), ["Og", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mixed = judge.predict_energy([structures[0], og, structures[1]], progress=False)
    assert np.isnan(mixed[1]) and np.allclose(mixed[[0, 2]], ours[:2], atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        SevennetJudge(batch_size=0)


def test_sun_rate_rule():
    """The S.U.N. rule on a hand-made table: stable (offset e_hull ≤ 0.1, not absurd) & novel, scaled by the
    unique-screened fraction of all generated samples."""
    from matdiscovery.stability.study import ScreeningStudy

    n = 10
    gen = pd.DataFrame({
        "variant": "pgcgm", "unique": [True] * 5 + [False] * 5, "relaxed": [True] * 4 + [False] * 6,
        "ehull_chgnet_offset": [0.05, 0.05, 0.2, -0.1] + [np.nan] * 6,
        "ehull_sevennet_offset": [0.05, 0.3, 0.3, 0.0] + [np.nan] * 6,
        "novel": [True, False, True, True] + [False] * 6,
        "absurd_reason": ["", "", "", "formation energy outside window"] + [""] * 6,
    })

    class P:
        variants = ["pgcgm"]

    study = ScreeningStudy(params=P(), generated=gen, controls=pd.DataFrame(), offsets={}, judge_metrics={},
                           test_predictions=pd.DataFrame(), hull_check_mae=0.0, sources={})
    s = study.sun("pgcgm")
    # relaxed sample of 4: only row 0 is stable, novel and not absurd -> 1/4; unique fraction 5/10
    assert s["in_relaxed_sample"] == pytest.approx(0.25)
    assert s["value"] == pytest.approx(0.125)
    assert s["ci_low"] < 0.125 < s["ci_high"] and s["n_generated"] == n
    assert study.sun("pgcgm", "sevennet")["in_relaxed_sample"] == pytest.approx(0.25)


def test_screen_throughput_from_shard_timings():
    """Relaxations per core-hour from the shards' own timings: relaxed rows only, core-seconds summed."""
    from matdiscovery.stability.study import ScreeningStudy

    gen = pd.DataFrame({"relaxed": [True, True, False, True], "n_atoms": [10, 20, 4, 30],
                        "core_seconds_per_item": [10.0, 30.0, 1.0, np.nan]})  # the NaN row: a lost shard
    study = ScreeningStudy(params=None, generated=gen, controls=pd.DataFrame(), offsets={}, judge_metrics={},
                           test_predictions=pd.DataFrame(), hull_check_mae=0.0, sources={})
    t = study.screen_throughput()
    assert t["screen_relaxations_per_core_hour"] == pytest.approx(3600 * 2 / 40)
    assert t["screen_core_hours_per_million_relaxations"] == pytest.approx(1e6 * 40 / 3600 / 2)
    assert t["screen_mean_atoms"] == pytest.approx(15.0) and t["screen_n_timed"] == 2
    empty = ScreeningStudy(params=None, generated=gen.assign(relaxed=False), controls=pd.DataFrame(), offsets={},
                           judge_metrics={}, test_predictions=pd.DataFrame(), hull_check_mae=0.0, sources={})
    assert empty.screen_throughput() == {}
