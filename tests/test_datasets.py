"""Loaders on the real (pulled) data and on small hand-written bad files."""

import warnings

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Element, Structure

from matdiscovery import datasets
from matdiscovery.datasets import DataMissingError, MalformedRowError

ROCKSALT_CIF = """data_NaCl
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   5.64
_cell_length_b   5.64
_cell_length_c   5.64
_cell_angle_alpha   90
_cell_angle_beta   90
_cell_angle_gamma   90
_symmetry_Int_Tables_number   1
loop_
 _symmetry_equiv_pos_as_xyz
  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_symmetry_multiplicity
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Na  Na0  1  0.0  0.0  0.0  1
  Cl  Cl1  1  0.5  0.5  0.5  1
"""


def test_supercon_real_file():
    frame = datasets.load_supercon_nims(on_error="skip")
    skipped = frame.attrs["skipped"]
    assert len(frame) + len(skipped) == 26_321  # every data row is either loaded or accounted for
    assert frame["tc_K"].between(0, 400).all()
    assert isinstance(frame["composition"].iloc[0], Composition)
    assert frame["oxygen_variable"].any() and frame["family"].notna().any()
    assert all(b.column == "element" for b in skipped)


def test_supercon_raise_names_row_and_column():
    with pytest.raises(MalformedRowError, match=r"row \d+, column 'element'"):
        datasets.load_supercon_nims(on_error="raise")


def test_jarvis_dft_units_and_missing_values():
    frame = datasets.load_jarvis_dft()
    assert len(frame) == 75_993
    assert frame["mbj_bandgap"].notna().sum() == 19_805  # 'na' read as missing, not malformed
    assert (frame["nelements"] == 3).sum() == 42_867
    assert frame["formation_energy_per_atom"].between(-6, 6).all()


def test_crystals_parse_structures():
    frame = datasets.load_crystals("perov_5", "val", limit=20)
    assert len(frame) == 20
    assert all(isinstance(s, Structure) for s in frame["structure"])
    assert {"heat_all", "heat_ref", "dir_gap", "ind_gap"} <= set(frame.columns)
    assert (frame["structure"].map(len) == 5).all()


def test_crystals_unknown_split_is_clear():
    with pytest.raises(ValueError, match="perov_5 has no split 'train' offline"):
        datasets.load_crystals("perov_5", "train")
    with pytest.raises(ValueError, match="unknown crystal dataset"):
        datasets.load_crystals("mp_20", "train")


def test_structure_csv_bad_cif_raise_and_skip(tmp_path):
    path = tmp_path / "mp20_like.csv"
    pd.DataFrame({
        "material_id": ["mp-1", "mp-2", "mp-3"],
        "cif": [ROCKSALT_CIF, "data_broken\n_cell_length_a 3\nloop_\n garbage", ROCKSALT_CIF],
        "formation_energy_per_atom": [-2.1, 0.0, -2.1],
    }).to_csv(path, index=False)
    with pytest.raises(MalformedRowError, match=r"mp20_like.csv, row 1, column 'cif'"):
        datasets.load_structure_csv(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = datasets.load_structure_csv(path, on_error="skip")
    assert list(frame["material_id"]) == ["mp-1", "mp-3"]
    assert len(frame.attrs["skipped"]) == 1 and frame.attrs["skipped"][0].row == 1
    assert any("skipped 1 malformed" in str(w.message) for w in caught)
    assert frame["formula"].iloc[0] == "NaCl"


def test_structure_csv_missing_column(tmp_path):
    path = tmp_path / "x.csv"
    pd.DataFrame({"id": [1], "cif": [ROCKSALT_CIF]}).to_csv(path, index=False)
    with pytest.raises(MalformedRowError, match="missing column 'material_id'"):
        datasets.load_structure_csv(path)


def test_missing_file_names_path_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MATDISCOVERY_DATA", str(tmp_path))
    with pytest.raises(DataMissingError, match=r"supercon_nims.tsv.*dvc pull"):
        datasets.load_supercon_nims()


def test_bad_on_error_value():
    with pytest.raises(ValueError, match="on_error"):
        datasets.load_jarvis_dft(on_error="ignore")


def test_formula_tc_table_bad_tc_and_formula(tmp_path):
    path = tmp_path / "stanev.csv"
    path.write_text("name,Tc\nMgB2,39\nNb3Sn,abc\nQq2O,5\nYBa2Cu3O7-X,92\n")
    frame = datasets.load_stanev2018(path, on_error="skip")
    assert list(frame["formula"]) == ["MgB2", "YBa2Cu3O7-X"]
    reasons = {b.column: b.reason for b in frame.attrs["skipped"]}
    assert "Tc" in reasons and "name" in reasons and "Qq" in reasons["name"]


def test_qm8_real_and_handwritten(tmp_path):
    real = datasets.load_qm8()
    assert len(real) == 21_786
    assert list(real.columns) == ["smiles", *datasets.QM8_TARGETS]
    header = "smiles,E1-CC2,E2-CC2,f1-CC2,f2-CC2,E1-PBE0,E2-PBE0,f1-PBE0,f2-PBE0,E1-PBE0,E2-PBE0,f1-PBE0,f2-PBE0,E1-CAM,E2-CAM,f1-CAM,f2-CAM"
    rows = ["C,0.43,0.43,0.25,0.25,0.43,0.43,0.18,0.18,0.43,0.43,0.18,0.18,0.41,0.41,0.18,0.18",
            "O,0.28,0.36,0.03,0,0.29,0.36,0.02,0,0.29,0.36,0.02,0,0.28,0.33,0.05,0.02",
            "N,bad,0.36,0.03,0,0.29,0.36,0.02,0,0.29,0.36,0.02,0,0.28,0.33,0.05,0.02"]
    path = tmp_path / "qm8.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(MalformedRowError, match="row 2, column 'E1-CC2'"):
        datasets.load_qm8(path)
    frame = datasets.load_qm8(path, on_error="skip")
    assert list(frame["smiles"]) == ["C", "O"] and frame["E1-CC2"].iloc[0] == pytest.approx(0.43)


def test_qm9_from_wheel():
    frame = datasets.load_qm9(limit=50)
    assert len(frame) == 50
    first = frame.iloc[0]
    assert first["smiles"] == "C" and first["elements"] == ["C", "H", "H", "H", "H"]
    assert first["positions"].shape == (5, 3)
    assert frame["gap_Ha"].between(0, 1).all()


def test_references_and_ids():
    refs = datasets.load_mp_elemental_references()
    assert len(refs) == 89 and Element("O") in refs
    assert refs[Element("Si")].energy_per_atom < -5  # PBE Si is about -5.4 eV/atom
    ids = datasets.load_pgcgm_training_ids()
    assert ids["source"].value_counts().to_dict() == {"oqmd": 22064, "mp": 7432, "icsd": 4041, "other": 112}


def test_3dsc_structures_limit():
    frame = datasets.load_3dsc_structures(limit=5)
    assert len(frame) == 5 and all(isinstance(s, Structure) for s in frame["structure"])
    assert frame["mp_id"].str.startswith("mp-").all()
