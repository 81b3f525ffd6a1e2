"""Loaders on the real (pulled) data and on small hand-written bad files."""

import gzip
import warnings

import pandas as pd
import pytest
from pymatgen.core import Composition, Element, Structure

from matdiscovery import datasets
from matdiscovery.datasets import (
    DataMissingError,
    MalformedFileError,
    MalformedRowError,
)

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
    with pytest.raises(DataMissingError) as info:
        datasets.load_supercon_nims()
    message = str(info.value)
    # names the file and the command that works in a working clone (plain `dvc pull` fails there)
    assert "supercon_nims.tsv" in message
    assert "`make data`" in message and "`dvc pull data.dvc`" in message


def _csv_with_cif(path, cif):
    pd.DataFrame({"material_id": ["mp-1", "mp-2", "mp-3"], "cif": [ROCKSALT_CIF, cif, ROCKSALT_CIF]}).to_csv(path, index=False)
    return path


# each probe of issue 10: (CIF of row 1, the reason the error must give)
BAD_CIFS = {
    # pymatgen reads an unknown symbol as a dummy species 'Xx0+'
    "unknown_element": (ROCKSALT_CIF.replace("  Cl  Cl1", "  Xx  Xx1"), r"unknown element symbol\(s\) \['Xx'\]"),
    # pymatgen takes |b| and builds a left-handed (mirrored) cell
    "negative_length": (ROCKSALT_CIF.replace("_cell_length_b   5.64", "_cell_length_b   -5.64"),
                        r"CIF field _cell_length_b = -5.64 is not a positive length"),
    "zero_angle": (ROCKSALT_CIF.replace("_cell_angle_gamma   90", "_cell_angle_gamma   0"),
                   r"CIF field _cell_angle_gamma = 0 is not an angle in \(0, 180\)"),
    # cut inside the atom-site loop header: was "ZeroDivisionError: integer modulo by zero"
    "truncated_loop": (ROCKSALT_CIF[:ROCKSALT_CIF.index("_atom_site_occupancy")],
                       r"truncated or malformed CIF: a loop_ whose values do not fill its columns"),
    "truncated_row": (ROCKSALT_CIF[:ROCKSALT_CIF.index("0.5  0.5  0.5") + 5],
                      r"truncated or malformed CIF: a loop_ whose values do not fill its columns"),
    "truncated_cell": (ROCKSALT_CIF[:ROCKSALT_CIF.index("_cell_angle_gamma")], r"CIF has no _cell_angle_gamma \(truncated\?\)"),
    "no_sites": (ROCKSALT_CIF[:ROCKSALT_CIF.index("loop_\n _atom_site")], r"CIF has no atom-site coordinates"),
    # was "Invalid CIF file with no structures!"
    "coincident_atoms": (ROCKSALT_CIF.replace("0.5  0.5  0.5", "0.0  0.0  0.0"), r"atoms on the same position \(shortest interatomic distance 0\.000 Å"),
}


@pytest.mark.parametrize("case", sorted(BAD_CIFS))
def test_structure_csv_bad_cif_names_row_column_and_reason(tmp_path, case):
    cif, reason = BAD_CIFS[case]
    path = _csv_with_cif(tmp_path / f"{case}.csv", cif)
    with pytest.raises(MalformedRowError, match=rf"{case}.csv, row 1, column 'cif': ValueError: {reason}"):
        datasets.load_structure_csv(path)
    with pytest.warns(UserWarning, match=rf"{case}.csv: skipped 1 malformed row"):
        frame = datasets.load_structure_csv(path, on_error="skip")
    assert list(frame["material_id"]) == ["mp-1", "mp-3"]
    assert [b.row for b in frame.attrs["skipped"]] == [1]


def test_structure_csv_cif_cut_at_a_row_boundary(tmp_path):
    """A CIF cut between two atom rows still parses (with fewer sites): the declared formula catches it."""
    whole = ROCKSALT_CIF.replace("_symmetry_Int_Tables_number   1\n",
                                 "_symmetry_Int_Tables_number   1\n_chemical_formula_sum   'Na1 Cl1'\n_cell_formula_units_Z   1\n")
    assert datasets.load_structure_csv(_csv_with_cif(tmp_path / "whole.csv", whole))["formula"].tolist() == ["NaCl"] * 3
    cut = whole[:whole.index("  Cl  Cl1")]
    with pytest.raises(MalformedRowError, match=r"row 1, column 'cif': .*sites read \(Na1\) differ from _chemical_formula_sum 'Na1 Cl1'"):
        datasets.load_structure_csv(_csv_with_cif(tmp_path / "cut.csv", cut))


def test_structure_csv_close_atoms_are_read_not_rejected(tmp_path):
    """Atoms 0.06 Å apart are physically wrong but readable: the validity checks judge them, not the loader."""
    close = ROCKSALT_CIF.replace("0.5  0.5  0.5", "0.01  0.0  0.0")
    frame = datasets.load_structure_csv(_csv_with_cif(tmp_path / "close.csv", close))
    assert len(frame) == 3 and frame["formula"].iloc[1] == "NaCl"


def test_structure_csv_empty_and_binary_files_name_the_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(MalformedFileError, match=r"Cannot read .*empty.csv: the file is empty"):
        datasets.load_structure_csv(empty)
    binary = tmp_path / "binary.csv"  # e.g. a pickle or image saved under a .csv name
    binary.write_bytes(b"material_id,cif\n" + bytes(range(256)) * 8)
    with pytest.raises(MalformedFileError, match=r"Cannot read .*binary.csv: binary content \(byte \d+: invalid start byte\)"):
        datasets.load_structure_csv(binary)
    compressed = tmp_path / "gz.csv"
    compressed.write_bytes(gzip.compress(b"material_id,cif\n"))
    with pytest.raises(MalformedFileError, match=r"gz.csv: gzip-compressed"):
        datasets.load_structure_csv(compressed)
    cut = tmp_path / "cut.csv"  # a file cut inside a quoted CIF
    _csv_with_cif(cut, ROCKSALT_CIF)
    cut.write_text(cut.read_text()[:-200])
    with pytest.raises(MalformedFileError, match=r"cut.csv: not a readable CSV \(ParserError: .*EOF inside string"):
        datasets.load_structure_csv(cut)


@pytest.mark.parametrize("limit", [0, -5, 2.5, "many", True])
def test_structure_csv_bad_limit_names_the_parameter(tmp_path, limit):
    path = _csv_with_cif(tmp_path / "x.csv", ROCKSALT_CIF)
    with pytest.raises(ValueError, match=r"limit must be a positive integer or None"):
        datasets.load_structure_csv(path, limit=limit)


def test_supercon_isotopes_and_huge_amounts_are_counted_not_lost():
    """SuperCon's deuterides/tritides and its amount typos are skipped rows with their reason."""
    frame = datasets.load_supercon_nims(on_error="skip")
    reasons = [b.reason for b in frame.attrs["skipped"]]
    isotope = [r for r in reasons if "isotope symbol" in r]
    assert sum("'D' (deuterium)" in r for r in isotope) == 26 and sum("'T' (tritium)" in r for r in isotope) == 4
    assert any("D3S1" in r for r in isotope)  # deuterated H3S (Tc differs from H3S)
    huge = [r for r in reasons if "too many atoms" in r]
    assert len(huge) == 2 and any("Y1Ba2Cu3O6050" in r for r in huge)
    assert not frame["formula"].str.contains("O6050").any()


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
