"""Stability package: structure checks, JARVIS hull, composition judge, OOD distances, screening."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, DummySpecies, Lattice, Structure

from matdiscovery.stability import FormationEnergyHull, check_structure, check_structures, invalid_summary
from matdiscovery.stability.composition_judge import (
    CompositionJudge,
    JudgeConfig,
    ground_state_table,
    magpie_rf_baseline,
    split_by_formula,
    train_composition_judge,
)
from matdiscovery.stability.ood import EmbeddingDomain, element_counts, element_coverage

L = Lattice.cubic(4.0)
ROCKSALT = Structure(L, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("structure, fragment", [
    (Structure(L, ["Na", "Cl"], [[0, 0, 0], [0.02, 0, 0]]), "overlapping atoms"),
    (Structure(L, ["Na", "Cl"], [[0, 0, 0], [np.nan, 0.5, 0.5]]), "NaN"),
    (Structure(L, ["Na", DummySpecies("X")], [[0, 0, 0], [0.5, 0.5, 0.5]]), "unknown element"),
    (Structure(L, [], []), "empty cell"),
    (Structure(Lattice.cubic(0.3), ["Na"], [[0, 0, 0]]), "overlapping atoms"),  # atom on its own image
    (Structure(Lattice([[1, 0, 0], [2, 0, 0], [0, 0, 1]]), ["Na"], [[0, 0, 0]]), "degenerate cell"),
    ("not a structure", "not a pymatgen Structure"),
])
def test_bad_structures_get_a_reason(structure, fragment):
    check = check_structure(structure)
    assert not check.valid
    assert fragment in check.reason


def test_good_structure_is_valid_and_counts():
    assert check_structure(ROCKSALT).valid
    checks = check_structures([ROCKSALT, Structure(L, [], []), Structure(L, ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]])])
    assert checks["valid"].tolist() == [True, False, False]
    assert invalid_summary(checks) == {"empty cell": 1, "overlapping atoms": 1}


# ----------------------------------------------------------------------------- hull
def _toy_hull():
    # A-B binary: AB at -1.0 eV/atom is the only compound on the hull; A3B at -0.2 is above it
    comps = [Composition("AlNi"), Composition("Al3Ni")]
    return FormationEnergyHull(comps, [-1.0, -0.2], ids=["ab", "a3b"])


def test_hull_distances_on_a_toy_binary():
    hull = _toy_hull()
    assert hull.e_above_hull(Composition("AlNi"), -1.0) == pytest.approx(0.0, abs=1e-9)
    assert hull.e_above_hull(Composition("AlNi"), -1.3) == pytest.approx(-0.3, abs=1e-9)
    # Al3Ni: the hull at x_Ni = 0.25 is halfway between Al (0) and AlNi (-1.0) -> -0.5
    assert hull.e_above_hull(Composition("Al3Ni"), -0.2) == pytest.approx(0.3, abs=1e-9)
    # a ternary query uses the binary sub-hulls plus the third element at 0
    assert hull.e_above_hull(Composition("AlNiCu"), -2 / 3) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(hull.e_above_hull(Composition("AlNi"), float("nan")))
    assert hull.n_entries == 2


def test_hull_exclude_and_errors():
    frame = pd.DataFrame({"jid": ["x1", "x2"], "composition": [Composition("AlNi"), Composition("Al3Ni")],
                          "formation_energy_per_atom": [-1.0, -0.6]})
    full = FormationEnergyHull.from_frame(frame)
    without = FormationEnergyHull.from_frame(frame, exclude=["AlNi"])
    assert full.e_above_hull(Composition("Al3Ni"), -0.6) == pytest.approx(0.0, abs=1e-9)  # its own hull point
    assert full.e_above_hull(Composition("Al3Ni"), -0.7) == pytest.approx(-0.1, abs=1e-9)
    assert without.e_above_hull(Composition("AlNi"), -1.0) < 0  # judged against Al3Ni only
    with pytest.raises(KeyError, match="no column"):
        FormationEnergyHull.from_frame(frame.drop(columns=["formation_energy_per_atom"]))
    with pytest.raises(ValueError, match="compositions but"):
        FormationEnergyHull([Composition("AlNi")], [-1.0, 0.0])


@pytest.fixture(scope="module")
def jarvis():
    from matdiscovery.datasets import load_jarvis_dft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_jarvis_dft(on_error="skip")


def test_hull_reproduces_jarvis_ehull(jarvis):
    sample = jarvis[(jarvis["nelements"] == 2)].sample(40, random_state=1)
    # only the entries of the sampled chemical systems matter (keeps the test fast)
    systems = {frozenset(el.symbol for el in c.elements) for c in sample["composition"]}
    inside = jarvis["composition"].map(lambda c: any({el.symbol for el in c.elements} <= s for s in systems))
    hull = FormationEnergyHull.from_frame(jarvis[inside])
    ours = hull.e_above_hull_many(list(sample["composition"]), sample["formation_energy_per_atom"].to_numpy())
    assert np.median(np.abs(ours - sample["ehull"].to_numpy())) < 0.005
    assert np.mean(np.abs(ours - sample["ehull"].to_numpy())) < 0.05


# ----------------------------------------------------------------------------- composition judge
def test_ground_state_and_split():
    frame = pd.DataFrame({"composition": [Composition("NaCl"), Composition("Na2Cl2"), Composition("KBr")],
                          "formation_energy_per_atom": [-2.0, -2.1, -1.9]})
    gs = ground_state_table(frame)
    assert gs["reduced_formula"].tolist() == ["KBr", "NaCl"]
    assert gs.set_index("reduced_formula").loc["NaCl", "formation_energy_per_atom"] == -2.1
    formulas = [f"Na{i}Cl" for i in range(1, 60)] + ["Na2Cl2"]
    split = split_by_formula(formulas, seed=0, force_test=["NaCl"])
    assert split[formulas.index("Na2Cl2")] == "test" and split[0] == "test"  # NaCl forced, same formula
    assert set(split) == {"train", "val", "test"}
    assert np.array_equal(split, split_by_formula(formulas, seed=0, force_test=["NaCl"]))
    with pytest.raises(ValueError, match="fractions"):
        split_by_formula(formulas, fractions=(0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def tiny_judge(jarvis):
    gs = ground_state_table(jarvis.sample(450, random_state=0)).head(400)
    split = split_by_formula(gs["reduced_formula"], seed=0)
    judge, history = train_composition_judge(gs[split == "train"], gs[split == "val"],
                                             JudgeConfig(dim=16, n_layers=1, epochs=3, seed=0), progress=False)
    judge.train_table = gs[split == "train"]
    return judge, gs[split == "test"], history


def test_composition_judge_learns_and_round_trips(tiny_judge, tmp_path):
    judge, test, history = tiny_judge
    y = test["formation_energy_per_atom"].to_numpy()
    pred = judge.predict(list(test["composition"]))
    assert pred.shape == y.shape and np.isfinite(pred).all()
    assert np.abs(pred - y).mean() < np.abs(y - y.mean()).mean()  # beats predicting the mean
    assert history.train_loss[-1] < history.train_loss[0]
    loaded = CompositionJudge.load(judge.save(tmp_path / "judge.pt"))
    np.testing.assert_allclose(loaded.predict(list(test["composition"])), pred, atol=1e-6)
    assert judge.embed(list(test["composition"])[:5]).shape == (5, 16)
    with pytest.raises(FileNotFoundError, match="train_stability_judge"):
        CompositionJudge.load(tmp_path / "missing.pt")


def test_magpie_rf_baseline_beats_mean(tiny_judge):
    judge, test, _ = tiny_judge
    train = judge.train_table
    y = test["formation_energy_per_atom"].to_numpy()
    pred = magpie_rf_baseline(train["composition"], train["formation_energy_per_atom"], test["composition"], n_estimators=10)
    assert pred.shape == (len(test),) and np.isfinite(pred).all()
    assert np.abs(pred - y).mean() < np.abs(y - train["formation_energy_per_atom"].mean()).mean()


# ----------------------------------------------------------------------------- OOD
def test_ood_distances(tiny_judge):
    judge, test, _ = tiny_judge
    domain = EmbeddingDomain(judge, k=1)
    train0 = Composition(judge.train_formulas[0])
    assert domain.distance([train0])[0] == pytest.approx(0.0, abs=1e-5)  # its own nearest neighbour
    assert domain.distance([Composition("Pu3Np")])[0] > 0
    counts = element_counts(["NaCl", "KCl", "NaBr"])
    assert counts["Cl"] == 2 and counts["Na"] == 2
    np.testing.assert_array_equal(element_coverage([Composition("NaCl"), Composition("KI")], counts), [2, 0])
    with pytest.raises(ValueError, match="k must be"):
        EmbeddingDomain(judge, k=0)


# ----------------------------------------------------------------------------- screening


SCORED: list[str] = []


def fake_score_shard(items, **kwargs) -> pd.DataFrame:
    """Stands in for the CHGNet/SevenNet shard function: records what it was asked to score."""
    SCORED.extend(i for i, _ in items)
    return pd.DataFrame({"id": [i for i, _ in items], "ef_chgnet": [float(len(s)) for _, s in items],
                         "core_seconds_per_item": 1.0})


def test_identical_inputs_are_scored_once_and_copied(monkeypatch, tmp_path):
    """A structure both decoders produce is relaxed once; its twin gets a copy of the row, untimed."""
    from distributed import Client

    from matdiscovery.params import load_params
    from matdiscovery.params.stability import ScreeningParams
    from matdiscovery.stability import study

    monkeypatch.setattr(study, "score_shard", fake_score_shard)
    p = ScreeningParams.model_construct(**(load_params("02_stability_screening") | {"shard_dir": str(tmp_path), "shard_size": 2}))
    a = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    b = Structure(Lattice.cubic(5.0), ["K", "Br", "K", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0.5]])
    SCORED.clear()
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        frame, info = study._score(client, p, ["pg-1", "pg-2", "snap-1", "snap-2"], [a, b, a.copy(), b.copy()],
                                   relax=True, name="generated", progress=False)
    assert sorted(SCORED) == ["pg-1", "pg-2"] and info["duplicates_copied"] == 2
    rows = frame.set_index("id")
    assert rows.loc["snap-1", "ef_chgnet"] == 2.0 and rows.loc["snap-2", "ef_chgnet"] == 4.0
    assert np.isnan(rows.loc["snap-1", "core_seconds_per_item"]) and rows.loc["pg-1", "core_seconds_per_item"] == 1.0


def test_decoders_sampled_apart_and_interleaved_equal_one_sample_call():
    """The screen samples each decoder on its own Dask worker: merged, the rows equal one call's."""
    from distributed import Client
    from test_generator import tiny_model

    from matdiscovery.generator.sampling import sample
    from matdiscovery.stability.study import interleave_decoders

    model = tiny_model()
    whole = sample(model, 7, seed=3, decoders=("pgcgm", "snap"), progress=False)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        parts = client.gather([client.submit(sample, model, 7, seed=3, decoders=(d,), progress=False, pure=False)
                               for d in ("pgcgm", "snap")])
    merged = interleave_decoders(parts)
    assert list(merged["material_id"]) == list(whole["material_id"])
    assert list(merged["cif"]) == list(whole["cif"])
    with pytest.raises(ValueError, match="differ in length"):
        interleave_decoders([parts[0], parts[1].iloc[:3]])
