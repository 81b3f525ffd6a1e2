"""One typed loader per dataset of the team's data catalog (``../shared/data/README.md``).

Every loader

- reads from :func:`matdiscovery.paths.data_dir` unless given a ``path``;
- raises :class:`DataMissingError` naming the file and the fix (``make data``, i.e.
  ``dvc pull data.dvc``) when it is absent;
- raises :class:`MalformedFileError` naming the file when it is empty, binary or not a CSV;
- on a malformed row (bad CIF, unparsable formula, non-numeric target) raises
  :class:`MalformedRowError` naming file, row and column, or with ``on_error="skip"`` drops
  the row, records it in ``frame.attrs["skipped"]`` (a list of :class:`BadRow`) and warns with
  the count: nothing is lost silently.

Units: energies in eV/atom, band gaps in eV, Tc in K, coordinates in Å. QM8 excitation
energies are in Hartree (as in MoleculeNet); QM9 orbital energies in Hartree.
"""

from __future__ import annotations

import codecs
import gzip
import importlib.util
import json
import math
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd
from pymatgen.core import Composition, DummySpecies, Element, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry
from pymatgen.io.cif import CifParser, str2float

from matdiscovery.chemistry import OxygenUnknownError, parse_formula
from matdiscovery.geometry import min_interatomic_distance
from matdiscovery.paths import data_dir

OnError = Literal["raise", "skip"]

CRYSTAL_DATASETS: dict[str, tuple[str, ...]] = {
    "perov_5": ("val", "test"),
    "carbon_24": ("val", "test"),
    "jarvis_epc": ("train", "val", "test"),
}
CRYSTAL_TARGETS: dict[str, tuple[str, ...]] = {
    "perov_5": ("heat_all", "heat_ref", "dir_gap", "ind_gap"),
    "carbon_24": ("energy_per_atom",),
    "jarvis_epc": ("prop",),
}
QM8_TARGETS = (
    "E1-CC2", "E2-CC2", "f1-CC2", "f2-CC2",
    "E1-PBE0", "E2-PBE0", "f1-PBE0", "f2-PBE0",
    "E1-CAM", "E2-CAM", "f1-CAM", "f2-CAM",
)


DATA_PULL_HINT = (
    "Run `make data` (= `dvc pull data.dvc`) in the project root: it fetches the raw data from "
    "the DVC remote 'team' (../shared/dvc-store beside the clone, see .dvc/config). A plain "
    "`dvc pull` also tries the pipeline outputs, which are not in the remote, and fails."
)


class DataMissingError(FileNotFoundError):
    """A raw data file is not on disk."""

    def __init__(self, path: Path, hint: str | None = None):
        self.path = Path(path)
        super().__init__(f"Data file not found: {self.path}. {hint or DATA_PULL_HINT}")


class MalformedFileError(ValueError):
    """A data file cannot be read as a table at all (empty, binary, not CSV); names the file."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"Cannot read {self.path}: {reason}")


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read: where it is and why."""

    file: str
    row: int  # 0-based data row (header rows not counted)
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}, row {self.row}, column {self.column!r}: {self.reason} (value {self.value[:60]!r})"


class MalformedRowError(ValueError):
    """A row of a data file is malformed; ``.bad`` says which and why."""

    def __init__(self, bad: BadRow):
        self.bad = bad
        super().__init__(f"Malformed row in {bad}. Pass on_error='skip' to drop and count such rows.")


_SNIFF_BYTES = 1 << 16


def _read_csv(file: Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` whose failures name the file: an empty, binary (or not UTF-8) or
    untokenisable file raises :class:`MalformedFileError`."""
    with open(file, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head.strip():
        raise MalformedFileError(file, "the file is empty (expected a CSV with a header row)")
    if head.startswith(b"\x1f\x8b"):
        raise MalformedFileError(file, "gzip-compressed, not a text CSV (decompress it first)")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        if b"\x00" in head:
            raise UnicodeDecodeError("utf-8", head, head.index(b"\x00"), head.index(b"\x00") + 1, "NUL byte")
    except UnicodeDecodeError as exc:
        raise MalformedFileError(
            file, f"binary content (byte {exc.start}: {exc.reason}), not a UTF-8 text CSV"
        ) from None
    try:
        return pd.read_csv(file, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MalformedFileError(file, f"not a readable CSV ({type(exc).__name__}: {exc})") from exc


def _require(path: Path) -> Path:
    if not path.exists():
        raise DataMissingError(path)
    return path


def _resolve(path: str | Path | None, relative: str) -> Path:
    return _require(Path(path) if path is not None else data_dir() / relative)


def _convert_column(
    frame: pd.DataFrame,
    source: str,
    target: str,
    convert: Callable[[object], object],
    file: Path,
    on_error: OnError,
    skipped: list[BadRow],
) -> pd.DataFrame:
    """Apply ``convert`` to each value of ``source``; bad values raise or are skipped and recorded."""
    values, keep = [], []
    for i, value in zip(frame.index, frame[source]):
        try:
            values.append(convert(value))
            keep.append(True)
        except Exception as exc:  # noqa: BLE001 - any parse failure becomes a BadRow
            bad = BadRow(file.name, int(i), source, str(value), f"{type(exc).__name__}: {exc}")
            if on_error == "raise":
                raise MalformedRowError(bad) from exc
            skipped.append(bad)
            values.append(None)
            keep.append(False)
    frame = frame.assign(**{target: values})
    return frame.loc[keep]


def _finish(frame: pd.DataFrame, file: Path, skipped: list[BadRow]) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame.attrs["source"] = str(file)
    frame.attrs["skipped"] = skipped
    if skipped:
        warnings.warn(
            f"{file.name}: skipped {len(skipped)} malformed row(s); first: {skipped[0]}. "
            "See frame.attrs['skipped'].",
            stacklevel=3,
        )
    return frame


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def _numeric(value: object) -> float:
    out = float(value)  # raises on text
    return out


# --------------------------------------------------------------------------- superconductors


def load_supercon_nims(path: str | Path | None = None, on_error: OnError = "raise",
                       keep_oxygen_unknown: bool = False) -> pd.DataFrame:
    """NIMS SuperCon export: one row per measurement.

    Columns: ``num`` (SuperCon data number), ``name`` (common formula), ``formula`` (chemical
    formula as written), ``composition`` (:class:`Composition`, oxygen-variable rule of
    :mod:`matdiscovery.chemistry`), ``oxygen_variable`` (bool), ``oxygen_unknown`` (bool),
    ``family`` (structure family, e.g. ``Y123``; ``None`` when blank), ``tc_K`` (float, K),
    ``journal``, ``year`` (publication year read from ``journal``, :data:`SUPERCON_YEAR`; NA if none).

    Rows whose oxygen amount is a variable (``Y1Ba2Cu3Oz``) are malformed by default; with
    ``keep_oxygen_unknown`` they are kept with ``oxygen_unknown=True`` and ``composition`` = the
    cation part only (no oxygen), for a caller that supplies a nominal oxygen content.
    """
    _check_on_error(on_error)
    file = _resolve(path, "superconductors/supercon_nims.tsv")
    raw = pd.read_csv(file, sep="\t", skiprows=[0, 1], dtype=str, keep_default_na=False)
    expected = ["num", "name", "element", "str3", "utc", "tc", "journal"]
    if list(raw.columns) != expected:
        raise MalformedRowError(BadRow(file.name, -1, "header", ",".join(raw.columns), f"expected columns {expected}"))
    skipped: list[BadRow] = []
    frame = _convert_column(raw, "tc", "tc_K", _numeric, file, on_error, skipped)

    def parse(formula: str) -> tuple[Composition, bool, bool]:
        try:
            return (*parse_formula(formula), False)
        except OxygenUnknownError as exc:
            if not keep_oxygen_unknown or exc.cations is None:
                raise
            return exc.cations, False, True

    frame = _convert_column(frame, "element", "parsed", parse, file, on_error, skipped)
    frame = frame.assign(
        composition=[p[0] for p in frame["parsed"]],
        oxygen_variable=[p[1] for p in frame["parsed"]],
        oxygen_unknown=[p[2] for p in frame["parsed"]],
        family=frame["str3"].str.strip().replace("", None),
        num=frame["num"].astype(int),
        year=supercon_year(frame["journal"]),
    ).rename(columns={"element": "formula"})
    frame = frame[["num", "name", "formula", "composition", "oxygen_variable", "oxygen_unknown", "family", "tc_K",
                   "journal", "year"]]
    return _finish(frame, file, skipped)


#: Publication years accepted from SuperCon's ``journal`` field.
SUPERCON_YEAR = (1900, 2025)


def supercon_year(journal: pd.Series) -> pd.Series:
    """Publication year from SuperCon ``journal`` strings (``'Phys.Rev.B,46(1992)11019'`` → 1992).

    A year in parentheses wins; otherwise the first free-standing four-digit number in
    :data:`SUPERCON_YEAR` (``'PRENUM PRESS 1973'``). Returns nullable integers (NA if none).
    """
    text = journal.astype(str)
    paren = text.str.extract(r"\((\d{4})\)", expand=False)
    loose = text.str.extract(r"(?<!\d)(\d{4})(?!\d)", expand=False)
    year = pd.to_numeric(paren, errors="coerce")
    year = year.where(year.between(*SUPERCON_YEAR))
    fallback = pd.to_numeric(loose, errors="coerce")
    year = year.fillna(fallback.where(fallback.between(*SUPERCON_YEAR)))
    return year.astype("Int64")


def _formula_tc_table(file: Path, formula_col: str, tc_col: str, on_error: OnError) -> pd.DataFrame:
    raw = _read_csv(file, dtype=str, keep_default_na=False)
    skipped: list[BadRow] = []
    frame = _convert_column(raw, tc_col, "tc_K", _numeric, file, on_error, skipped)
    frame = _convert_column(frame, formula_col, "composition", lambda f: parse_formula(f)[0], file, on_error, skipped)
    frame = frame.rename(columns={formula_col: "formula"})[["formula", "composition", "tc_K"]]
    return _finish(frame, file, skipped)


def load_jarvis_supercon_chem(path: str | Path | None = None, on_error: OnError = "raise") -> pd.DataFrame:
    """JARVIS ``supercon_chem``: ``formula``, ``composition``, ``tc_K`` (K) for SuperCon compositions."""
    _check_on_error(on_error)
    return _formula_tc_table(_resolve(path, "superconductors/jarvis_supercon_chem.csv"), "formula", "tc", on_error)


def load_stanev2018(path: str | Path | None = None, on_error: OnError = "raise") -> pd.DataFrame:
    """Stanev et al. (2018) SuperCon list: ``formula``, ``composition``, ``tc_K`` (K)."""
    _check_on_error(on_error)
    return _formula_tc_table(_resolve(path, "superconductors/supercon_stanev2018.csv"), "name", "Tc", on_error)


def load_jarvis_supercon_3d(path: str | Path | None = None, on_error: OnError = "raise") -> pd.DataFrame:
    """JARVIS DFT electron-phonon (BCS) Tc: ``jid``, ``tc_K`` (K). Other columns are empty upstream."""
    _check_on_error(on_error)
    file = _resolve(path, "superconductors/jarvis_supercon_3d.csv")
    raw = _read_csv(file, dtype=str, keep_default_na=False)
    skipped: list[BadRow] = []
    frame = _convert_column(raw, "tc", "tc_K", _numeric, file, on_error, skipped)
    return _finish(frame[["jid", "tc_K"]], file, skipped)


# --------------------------------------------------------------------------- JARVIS-DFT


JARVIS_DFT_TARGETS = ("formation_energy_per_atom", "optb88vdw_bandgap", "mbj_bandgap", "ehull")


def load_jarvis_dft(path: str | Path | None = None, on_error: OnError = "raise") -> pd.DataFrame:
    """JARVIS-DFT 3D (OptB88vdW) property table.

    Columns: ``jid``, ``formula``, ``composition``, ``formation_energy_per_atom`` (eV/atom),
    ``optb88vdw_bandgap`` (eV), ``mbj_bandgap`` (eV, NaN where not computed), ``ehull``
    (eV/atom), ``nelements``. The upstream spacegroup/natoms/volume/moduli columns are empty and
    dropped. ``na`` is read as missing (not malformed).
    """
    _check_on_error(on_error)
    file = _resolve(path, "jarvis/jarvis_dft_3d_properties.csv")
    raw = _read_csv(file, dtype=str, keep_default_na=False)
    skipped: list[BadRow] = []
    frame = raw
    for col in JARVIS_DFT_TARGETS:
        frame = _convert_column(
            frame, col, col, lambda v: np.nan if v in ("na", "") else float(v), file, on_error, skipped
        )
    frame = _convert_column(frame, "formula", "composition", lambda f: parse_formula(f)[0], file, on_error, skipped)
    frame = frame.assign(nelements=[len(c.elements) for c in frame["composition"]])
    frame = frame[["jid", "formula", "composition", *JARVIS_DFT_TARGETS, "nelements"]]
    for col in JARVIS_DFT_TARGETS:
        frame[col] = frame[col].astype(float)
    return _finish(frame, file, skipped)


# --------------------------------------------------------------------------- crystal structures


_CELL_LENGTHS = ("_cell_length_a", "_cell_length_b", "_cell_length_c")
_CELL_ANGLES = ("_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
_FRACT = ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z")
_CARTN = ("_atom_site_Cartn_x", "_atom_site_Cartn_y", "_atom_site_Cartn_z")
COINCIDENT_SITES_A = 0.01  # Å: two sites closer than this are "the same position" in error messages


def _cif_number(data: dict, key: str) -> float:
    if key not in data:
        raise ValueError(f"CIF has no {key} (truncated?)")
    try:
        return float(str2float(data[key]))
    except (TypeError, ValueError):
        raise ValueError(f"CIF field {key} = {data[key]!r} is not a number") from None


def _check_cif_block(data: dict) -> None:
    """The cell and atom-site fields of one CIF data block, checked before pymatgen reads them."""
    for key in _CELL_LENGTHS:
        value = _cif_number(data, key)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"CIF field {key} = {data[key]} is not a positive length (Å)")
    for key in _CELL_ANGLES:
        value = _cif_number(data, key)
        if not 0 < value < 180:
            raise ValueError(f"CIF field {key} = {data[key]} is not an angle in (0, 180) degrees")
    if not (all(k in data for k in _FRACT) or all(k in data for k in _CARTN)):
        raise ValueError("CIF has no atom-site coordinates (_atom_site_fract_x/y/z; truncated?)")


def _coincident_sites(data: dict) -> str | None:
    """The reason a CIF pymatgen rejected failed when two listed sites coincide, else ``None``."""
    try:
        lattice = Lattice.from_parameters(*(_cif_number(data, k) for k in (*_CELL_LENGTHS, *_CELL_ANGLES)))
        coords = np.array([[str2float(v) for v in data[k]] for k in _FRACT]).T
        raw = Structure(lattice, ["H"] * len(coords), coords)  # only the positions matter here
        shortest = min_interatomic_distance(raw)
    except Exception:  # noqa: BLE001 - only a diagnosis: pymatgen's own reason is reported instead
        return None
    if shortest >= COINCIDENT_SITES_A:
        return None
    return f"atoms on the same position (shortest interatomic distance {shortest:.3f} Å among the listed sites)"


def _parse_cif(text: object) -> Structure:
    """One :class:`Structure` from CIF text, or ``ValueError`` saying what is wrong with the CIF.

    Rejected with a reason: text that is not a CIF, a truncated CIF (a ``loop_`` whose values do
    not fill its columns, missing cell or atom-site fields), a non-positive cell length or an
    angle outside (0, 180)°, atoms on the same position, an unknown element symbol (pymatgen would
    read ``Xx`` as a dummy species) and a CIF without atoms. Sites that merely sit close together
    are read (generated structures are judged by the validity checks, not here).
    """
    if not isinstance(text, str) or "_cell_length_a" not in text:
        raise ValueError("not a CIF (no _cell_length_a)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pymatgen's parser notes; its failures are kept below
        try:
            parser = CifParser.from_str(text)
        except (ValueError, ZeroDivisionError, IndexError, KeyError) as exc:
            raise ValueError(
                f"truncated or malformed CIF: a loop_ whose values do not fill its columns "
                f"(pymatgen: {type(exc).__name__}: {exc})"
            ) from exc
        blocks = [b for b in parser.as_dict().values() if any(k in b for k in _CELL_LENGTHS)]
        for block in blocks:
            _check_cif_block(block)
        try:
            structure = parser.parse_structures(primitive=False)[0]
        except ValueError as exc:
            why = next(filter(None, map(_coincident_sites, blocks)), None)
            notes = "; ".join(dict.fromkeys(w.strip().replace("\n", ": ") for w in parser.warnings))
            raise ValueError(why or f"pymatgen could not build a structure ({notes or exc})") from exc
    unknown = sorted({sp.symbol for sp in structure.composition if isinstance(sp, DummySpecies)})
    if unknown:
        raise ValueError(f"unknown element symbol(s) {unknown} (pymatgen would read them as dummy species)")
    if len(structure) == 0:
        raise ValueError("CIF has no atoms")
    if len(blocks) == 1:
        _check_declared_formula(blocks[0], structure)
    return structure


def _check_declared_formula(data: dict, structure: Structure) -> None:
    """A CIF cut at a row boundary still parses, with fewer sites: compare the sites read with
    ``_chemical_formula_sum`` (the cell content, as pymatgen writes it, or × ``_cell_formula_units_Z``)."""
    declared = data.get("_chemical_formula_sum")
    if not isinstance(declared, str) or not declared.strip():
        return
    try:
        formula_sum = Composition(declared)
        z = _cif_number(data, "_cell_formula_units_Z") if "_cell_formula_units_Z" in data else 1.0
    except ValueError:
        return  # an unreadable declaration is pymatgen's warning, not a reason to drop the row
    read = structure.composition.element_composition
    if not any(read.almost_equals(formula_sum * n, rtol=0, atol=0.01) for n in (1, z)):
        raise ValueError(
            f"sites read ({read.formula}) differ from _chemical_formula_sum '{declared}' "
            f"(Z = {z:g}): atom-site rows missing (truncated CIF?) or extra"
        )


def load_structure_csv(
    path: str | Path,
    on_error: OnError = "raise",
    id_column: str = "material_id",
    cif_column: str = "cif",
    limit: int | None = None,
) -> pd.DataFrame:
    """A CDVAE / MP-20 style CSV (``material_id, cif, <properties>``) with parsed structures.

    Returns the file's columns plus ``structure`` (:class:`Structure`, Å) and ``formula``
    (reduced formula). ``limit`` reads only the first rows (for quick interactive runs).
    Use this for MP-20 (``material_id, cif, formation_energy_per_atom, band_gap, ...``) when you have it.
    """
    _check_on_error(on_error)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    file = _require(Path(path))
    raw = _read_csv(file, nrows=limit)
    raw = raw.drop(columns=[c for c in raw.columns if c.startswith("Unnamed")])
    for col in (id_column, cif_column):
        if col not in raw.columns:
            raise MalformedRowError(BadRow(file.name, -1, col, ",".join(raw.columns), f"missing column {col!r}"))
    skipped: list[BadRow] = []
    frame = _convert_column(raw, cif_column, "structure", _parse_cif, file, on_error, skipped)
    frame = frame.drop(columns=[cif_column])
    frame = frame.assign(formula=[s.composition.reduced_formula for s in frame["structure"]])
    return _finish(frame, file, skipped)


def load_crystals(
    dataset: str, split: str, on_error: OnError = "raise", limit: int | None = None
) -> pd.DataFrame:
    """Crystal structures of ``perov_5`` (val/test), ``carbon_24`` (val/test) or ``jarvis_epc``
    (train/val/test), with their targets (see :data:`CRYSTAL_TARGETS`; perov_5 heats in eV/atom,
    gaps in eV; carbon_24 energy_per_atom in eV/atom; jarvis_epc ``prop`` = DFT Tc in K).
    """
    if dataset not in CRYSTAL_DATASETS:
        raise ValueError(f"unknown crystal dataset {dataset!r}; choose from {sorted(CRYSTAL_DATASETS)}")
    if split not in CRYSTAL_DATASETS[dataset]:
        raise ValueError(
            f"{dataset} has no split {split!r} offline; available: {CRYSTAL_DATASETS[dataset]}"
        )
    frame = load_structure_csv(data_dir() / "crystals" / f"{dataset}_{split}.csv", on_error=on_error, limit=limit)
    frame.insert(0, "split", split)
    return frame


def load_3dsc_structures(
    path: str | Path | None = None, on_error: OnError = "raise", limit: int | None = None,
    include_doped: bool = True, select: Callable[[str], bool] | None = None,
) -> pd.DataFrame:
    """3DSC: SuperCon entries matched to Materials Project structures.

    Columns: ``file``, ``supercon_formula`` (from the file name), ``mp_id``, ``structure``.
    Join Tc from :func:`load_stanev2018` on ``supercon_formula`` (= its ``formula``).
    ``include_doped=False`` skips the ``synth_doped`` variants (partial occupancies) before
    parsing, leaving the undoped Materials Project crystals; ``select`` (a predicate on the
    SuperCon formula of the file name) skips the files it rejects before parsing.
    """
    _check_on_error(on_error)
    file = _resolve(path, "superconductors/3dsc_mp_cifs.tar.gz")
    rows = []
    with tarfile.open(file, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".cif"):
                continue
            if not include_doped and "-synth_doped" in member.name:
                continue
            name = Path(member.name).stem
            formula, _, rest = name.partition("-MP-")
            if select is not None and not select(formula):
                continue
            text = tar.extractfile(member).read().decode()
            rows.append({"file": Path(member.name).name, "supercon_formula": formula,
                         "mp_id": rest.split("-synth")[0], "cif": text})
            if limit is not None and len(rows) >= limit:
                break
    raw = pd.DataFrame(rows)
    skipped: list[BadRow] = []
    frame = _convert_column(raw, "cif", "structure", _parse_cif, file, on_error, skipped).drop(columns=["cif"])
    return _finish(frame, file, skipped)


# --------------------------------------------------------------------------- references


def load_mp_elemental_references(path: str | Path | None = None) -> dict[Element, ComputedEntry]:
    """Materials Project lowest-energy elemental reference entries (energies in eV per cell,
    MP-compatible PBE/PBE+U), keyed by :class:`Element`."""
    file = _resolve(path, "references/mp_elemental_ref_entries.json.gz")
    with gzip.open(file, "rt") as fh:
        data = json.load(fh)
    items = data.values() if isinstance(data, dict) else data
    refs: dict[Element, ComputedEntry] = {}
    for d in items:
        entry = ComputedEntry.from_dict(d)
        el = entry.composition.elements[0]
        if el not in refs or entry.energy_per_atom < refs[el].energy_per_atom:
            refs[el] = entry
    return refs


def load_pgcgm_training_ids(path: str | Path | None = None) -> pd.DataFrame:
    """PGCGM's training-set ids (provenance only): ``id`` and ``source`` (oqmd/mp/icsd/other)."""
    file = _resolve(path, "references/pgcgm_training_ids.csv")
    ids = pd.read_csv(file, header=None, names=["id"], dtype=str)["id"].str.strip()
    prefix = ids.str.extract(r"^([a-zA-Z]+)", expand=False).str.lower()
    source = prefix.where(prefix.isin(["oqmd", "mp", "icsd"]), "other")
    return pd.DataFrame({"id": ids, "source": source})


# --------------------------------------------------------------------------- molecules


def load_qm8(path: str | Path | None = None, on_error: OnError = "raise") -> pd.DataFrame:
    """QM8 in the MoleculeNet layout: ``smiles`` plus the 12 distinct targets of
    :data:`QM8_TARGETS` (excitation energies E in Hartree, oscillator strengths f unitless).
    MoleculeNet's file repeats the PBE0 block; the duplicate is checked equal and dropped.
    """
    _check_on_error(on_error)
    file = _resolve(path, "molecules/qm8.csv")
    raw = pd.read_csv(file, dtype=str, keep_default_na=False)
    raw.columns = [c.split(".")[0] for c in raw.columns]
    if "smiles" not in raw.columns:
        raise MalformedRowError(BadRow(file.name, -1, "header", ",".join(raw.columns), "no 'smiles' column"))
    missing = [t for t in QM8_TARGETS if t not in raw.columns]
    if missing:
        raise MalformedRowError(BadRow(file.name, -1, "header", ",".join(raw.columns), f"missing targets {missing}"))
    raw = raw.loc[:, ~raw.columns.duplicated()]
    skipped: list[BadRow] = []
    frame = raw
    for col in QM8_TARGETS:
        frame = _convert_column(frame, col, col, float, file, on_error, skipped)
    frame = _convert_column(frame, "smiles", "smiles", _check_smiles, file, on_error, skipped)
    frame = frame[["smiles", *QM8_TARGETS]].copy()
    for col in QM8_TARGETS:
        frame[col] = frame[col].astype(float)
    return _finish(frame, file, skipped)


def _check_smiles(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or " " in value.strip():
        raise ValueError("empty or malformed SMILES")
    return value.strip()


QM9_COLUMNS = {
    "Dipole_debye": "mu_D",
    "Polarizability_bohr3": "alpha_bohr3",
    "HOMO_au": "homo_Ha",
    "LUMO_au": "lumo_Ha",
    "HOMO_LUMO_gap_au": "gap_Ha",
    "R2_bohr2": "r2_bohr2",
    "ZPVE_au": "zpve_Ha",
    "InternalEnergy_0K_au": "u0_Ha",
    "Heatcapacity_Cv_cal_mol_K": "cv_cal_mol_K",
}


def load_qm9(limit: int | None = None, on_error: OnError = "raise") -> pd.DataFrame:
    """QM9 from the installed ``qm9pack`` wheel (no download).

    Columns: ``index``, ``smiles``, ``n_atoms``, ``elements`` (list of symbols), ``positions``
    (``(n_atoms, 3)`` array, Å) and targets renamed with units (:data:`QM9_COLUMNS`).
    """
    _check_on_error(on_error)
    # Locate the package without importing it: qm9pack's __init__ needs pkg_resources,
    # which current setuptools no longer ships.
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DataMissingError(Path("qm9pack/data"), "Install the project (`make env`): QM9 ships inside the qm9pack wheel.")
    pkg = Path(list(spec.submodule_search_locations)[0]) / "data"
    parts = sorted(pkg.glob("qm9_part*.csv"))
    if not parts:
        raise DataMissingError(pkg, "The qm9pack wheel has no qm9_part*.csv; reinstall qm9pack==1.0.3.")
    frames, remaining = [], limit
    for part in parts:
        df = pd.read_csv(part, nrows=remaining)
        frames.append(df)
        if remaining is not None:
            remaining -= len(df)
            if remaining <= 0:
                break
    raw = pd.concat(frames, ignore_index=True)
    file = parts[0].with_name("qm9_part*.csv")
    skipped: list[BadRow] = []
    frame = _convert_column(raw, "Elements", "elements", _symbols, file, on_error, skipped)
    frame = _convert_column(frame, "XYZ_Ang", "positions", _positions, file, on_error, skipped)
    bad_len = [i for i, (e, p) in zip(frame.index, zip(frame["elements"], frame["positions"])) if len(e) != len(p)]
    if bad_len:
        bad = BadRow(file.name, int(bad_len[0]), "XYZ_Ang", "", "number of positions differs from number of elements")
        if on_error == "raise":
            raise MalformedRowError(bad)
        skipped.extend(BadRow(file.name, int(i), "XYZ_Ang", "", bad.reason) for i in bad_len)
        frame = frame.drop(index=bad_len)
    out = frame.rename(columns={"Index": "index", "SMILES": "smiles", "N_atoms": "n_atoms", **QM9_COLUMNS})
    out = out[["index", "smiles", "n_atoms", "elements", "positions", *QM9_COLUMNS.values()]]
    return _finish(out, file, skipped)


def _symbols(value: object) -> list[str]:
    text = str(value).strip("[]() ")
    symbols = [s.strip(" '\"") for s in text.replace(";", ",").split(",") if s.strip(" '\"")]
    if not symbols:
        raise ValueError("no elements")
    for s in symbols:
        if not Element.is_valid_symbol(s):
            raise ValueError(f"unknown element symbol {s!r}")
    return symbols


def _positions(value: object) -> np.ndarray:
    nums = np.array([float(x) for x in str(value).replace("[", " ").replace("]", " ").replace(",", " ").split()])
    if nums.size == 0 or nums.size % 3 or not np.isfinite(nums).all():
        raise ValueError("coordinates are not a finite list of (x, y, z)")
    return nums.reshape(-1, 3)
