"""Generation API, decoding of raw outputs into crystals, and per-sample validity flags.

Decoders (:data:`DECODERS`) turn tied lengths (Å) and three basis points into a crystal:

- ``pgcgm``: PGCGM's post-processing (MilesZhao/PGCGM ``merge_valid.py``): expand the basis
  with every operation of the group (exact duplicates removed), merge same-element atoms by
  single-linkage clustering at 2 × 0.6 × the atomic radius (cluster mean), and again at
  2 × 1.5 × radius when more than 100 atoms remain;
- ``pgcgm_rounded``: the same after rounding coordinates to 0.01, as PGCGM's ``create_cif.py``
  writes them;
- ``snap`` (our remedy, no merging): each basis point is projected onto the special (Wyckoff)
  position of the site symmetry its near images define
  (:func:`~matdiscovery.generator.symmetry.snap_to_wyckoff`, same distance thresholds), then
  expanded exactly: the cell keeps the requested group's symmetry by construction.

Validity flags (:func:`validity_flags`) follow CDVAE/DiffCSP: structural (every interatomic
distance, self-images included, > 0.5 Å), compositional (SMACT charge neutrality + Pauling test
with SMACT's 2014 oxidation states, all-metal compositions valid, as CDVAE's ``smact_validity``),
plus space-group recovery (spglib, symprec 0.1, finds the requested group) and PGCGM's filter.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import spglib
import torch
from pymatgen.core import Element, Structure

from matdiscovery.generator.data import PGCGM_ELEMENTS, PGCGM_SPACEGROUPS, Record, canonical_order
from matdiscovery.generator.model import CrystalGAN
from matdiscovery.generator.symmetry import (
    atomic_radius,
    check_spacegroup,
    expand_orbits,
    lattice_for,
    merge_clusters,
    snap_to_wyckoff,
)
from matdiscovery.geometry import min_interatomic_distance
from matdiscovery.progress import progress_bar

DECODERS = ("pgcgm", "pgcgm_rounded", "snap")
#: PGCGM's merge ratios: first merge, then a further merge when more than FURTHER_MERGE_ABOVE atoms remain
MERGE_FACTORS = (0.6, 1.5)
FURTHER_MERGE_ABOVE = 100
#: CDVAE structural validity: every interatomic distance above this (Å)
STRUCTURAL_CUTOFF = 0.5
#: PGCGM's distance filter: every pair farther apart than this × (r_i + r_j)
PGCGM_DIST_RATIO = 0.75
SYMPREC = 0.1
#: generate() refuses noise components beyond ±MAX_ABS_NOISE (10 σ of the standard normal it was
#: trained on; a draw that large has probability ~1e-23)
MAX_ABS_NOISE = 10.0
#: columns of models/generator/samples.csv (the CDVAE layout plus flags; read by notebook 02)
SAMPLE_COLUMNS = ["material_id", "cif", "spacegroup", "elements", "variant", "formula", "n_atoms",
                  "n_atoms_premerge", "structural_valid", "compositional_valid", "pgcgm_distance_ok",
                  "all_elements_kept", "spacegroup_found", "spacegroup_match", "pgcgm_valid", "valid_combined"]


@dataclass
class Generated:
    """A decoded crystal with its inputs, the atom count before merging and validity flags."""

    structure: Structure
    elements: tuple[str, str, str]
    spacegroup: int
    lengths: np.ndarray        # tied lattice lengths (Å)
    frac: np.ndarray           # basis fractional coordinates (3, 3), before decoding
    decoder: str
    orbit_sizes: tuple[int, ...]   # sites per basis atom after exact-duplicate removal, before merging
    flags: dict


def spacegroup_of(structure: Structure, symprec: float = SYMPREC) -> int:
    """spglib's space-group number of ``structure`` (0 when spglib finds none)."""
    cell = (structure.lattice.matrix, structure.frac_coords, [s.specie.Z for s in structure])
    data = spglib.get_symmetry_dataset(cell, symprec=symprec)
    return 0 if data is None else int(data.number)


def structural_valid(structure: Structure, cutoff: float = STRUCTURAL_CUTOFF) -> bool:
    """CDVAE structural validity: the shortest interatomic distance (periodic images, an atom's
    own images included; :func:`matdiscovery.geometry.min_interatomic_distance`) exceeds ``cutoff`` Å."""
    return min_interatomic_distance(structure) > cutoff


@lru_cache(maxsize=65536)
def compositional_valid(formula: str) -> bool:
    """CDVAE's compositional validity: ``smact.screening.smact_validity`` with the Pauling test,
    alloys valid, and SMACT's 2014 oxidation states (the set CDVAE's SMACT version used)."""
    from smact.screening import smact_validity

    return bool(smact_validity(formula, use_pauling_test=True, include_alloys=True, oxidation_states_set="smact14"))


def pgcgm_distance_ok(structure: Structure, ratio: float = PGCGM_DIST_RATIO) -> bool:
    """PGCGM's filter: every pair of distinct sites farther apart than ``ratio`` × (r_i + r_j) Å."""
    if len(structure) < 2:
        return True
    r = np.array([atomic_radius(s.specie.Z) for s in structure])
    d = structure.distance_matrix
    iu = np.triu_indices(len(structure), 1)
    return bool((d[iu] > ratio * (r[:, None] + r[None, :])[iu]).all())


def validity_flags(structure: Structure, spacegroup: int) -> dict:
    """Per-sample flags: ``n_atoms``, ``structural_valid``, ``compositional_valid``,
    ``pgcgm_distance_ok``, ``all_elements_kept``, ``spacegroup_found``, ``spacegroup_match``,
    ``pgcgm_valid`` (match and distance filter) and ``valid_combined`` (structural,
    compositional and space group)."""
    flags = {
        "n_atoms": len(structure),
        "structural_valid": structural_valid(structure),
        "compositional_valid": compositional_valid(structure.composition.reduced_formula),
        "pgcgm_distance_ok": pgcgm_distance_ok(structure),
        "all_elements_kept": len(structure.composition.elements) == 3,
    }
    found = spacegroup_of(structure)
    flags["spacegroup_found"] = found
    flags["spacegroup_match"] = found == spacegroup
    flags["pgcgm_valid"] = flags["spacegroup_match"] and flags["pgcgm_distance_ok"]
    flags["valid_combined"] = flags["spacegroup_match"] and flags["structural_valid"] and flags["compositional_valid"]
    return flags


def decode_crystal(elements: list[str] | tuple[str, ...], spacegroup: int, lengths: np.ndarray, frac: np.ndarray,
                   decoder: str = "pgcgm", flags: str = "all") -> Generated:
    """Decode tied ``lengths`` (Å) and basis ``frac`` (3 × 3) of ``elements`` (basis order) in
    ``spacegroup`` into a crystal with one of :data:`DECODERS` (module docstring).
    ``orbit_sizes``: sites per basis atom after exact-duplicate removal (tolerance 10⁻³,
    fractional), before merging or snapping (after rounding for ``pgcgm_rounded``). ``flags``:
    ``"all"`` (:func:`validity_flags`) or ``"symmetry"`` (only ``spacegroup_found``, for sweeps)."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose from {DECODERS}")
    elements = [str(e) for e in elements]
    frac = np.asarray(frac, dtype=float) % 1.0
    lattice = lattice_for(lengths, spacegroup)
    numbers = np.array([Element(e).Z for e in elements])
    start = np.round(frac, 2) % 1.0 if decoder == "pgcgm_rounded" else frac
    coords, owner, _ = expand_orbits(start, spacegroup)
    sizes = tuple(int((owner == k).sum()) for k in range(len(frac)))
    if decoder == "snap":
        radii = np.array([atomic_radius(e) for e in elements])
        snapped = frac
        for factor in MERGE_FACTORS:
            snapped = np.array([snap_to_wyckoff(f, spacegroup, lattice.matrix, 2 * factor * r)[0]
                                for f, r in zip(snapped, radii)])
            coords, owner, _ = expand_orbits(snapped, spacegroup)
            if len(coords) <= FURTHER_MERGE_ABOVE:
                break
        nums = numbers[owner]
    else:
        coords, nums, _ = merge_clusters(coords, numbers[owner], lattice, MERGE_FACTORS[0])
        if len(coords) > FURTHER_MERGE_ABOVE:
            coords, nums, _ = merge_clusters(coords, nums, lattice, MERGE_FACTORS[1])
    structure = Structure(lattice, [int(z) for z in nums], coords)
    if flags == "all":
        found = validity_flags(structure, spacegroup)
    elif flags == "symmetry":
        found = {"spacegroup_found": spacegroup_of(structure)}
    else:
        raise ValueError(f"flags must be 'all' or 'symmetry', got {flags!r}")
    found["n_atoms_premerge"] = int(sum(sizes))
    return Generated(structure, tuple(elements), int(spacegroup), np.asarray(lengths, float), frac, decoder, sizes, found)


def raw_batch(model: CrystalGAN, elements: list[list[str]], spacegroups: list[int], z: torch.Tensor
              ) -> tuple[list[list[str]], np.ndarray, np.ndarray, np.ndarray]:
    """Canonical elements, tied lengths (B, 3) Å, basis frac (B, 3, 3) and raw outputs for a batch
    (float32 forward pass, no autocast)."""
    conds, sgs, ordered = [], [], []
    for els, sg in zip(elements, spacegroups):
        c, k, _ = model.condition(list(els), sg)
        conds.append(c)
        sgs.append(k)
        ordered.append(canonical_order(list(els)))
    with torch.no_grad():
        raw = model.raw(z, torch.stack(conds))
        lengths, frac = model.decode(raw, torch.tensor(sgs))
    return ordered, lengths.numpy().astype(float), frac.numpy().astype(float), raw.numpy()


def check_noise(z: np.ndarray | torch.Tensor, noise_dim: int) -> torch.Tensor:
    """One noise vector as a ``(1, noise_dim)`` float32 tensor; raises ``ValueError`` naming the
    problem for a wrong length, more than one row, NaN/inf, or a component beyond ±MAX_ABS_NOISE."""
    arr = np.asarray(z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else z, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] != 1:
        raise ValueError(f"noise z has {arr.shape[0]} rows: generate() makes one crystal from one noise vector "
                         f"of length {noise_dim}; use sample() for batches")
    if arr.ndim > 2 or arr.size != noise_dim:
        raise ValueError(f"noise z must have {noise_dim} components (the model's noise_dim), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"noise z has {int((~np.isfinite(arr)).sum())} NaN/inf components")
    if np.abs(arr).max() > MAX_ABS_NOISE:
        raise ValueError(f"noise z has a component {arr.ravel()[np.abs(arr).argmax()]:.3g} beyond ±{MAX_ABS_NOISE} "
                         "(the generator was trained on standard-normal noise)")
    return torch.as_tensor(arr.reshape(1, noise_dim), dtype=torch.float32)


_DEFAULT_MODEL: dict[str, CrystalGAN] = {}


def default_generator() -> CrystalGAN:
    """The checkpoint ``models/generator/generator.pt`` written by the ``train_generator`` stage."""
    from matdiscovery.generator.model import load_generator
    from matdiscovery.paths import models_dir

    if "default" not in _DEFAULT_MODEL:
        _DEFAULT_MODEL["default"] = load_generator(models_dir() / "generator" / "generator.pt")
    return _DEFAULT_MODEL["default"]


def generate(elements: list[str], spacegroup: int, z: np.ndarray | torch.Tensor | None = None, *,
             model: CrystalGAN | None = None, seed: int | None = None, decoder: str = "pgcgm",
             full: bool = False) -> Structure | Generated:
    """Generate one crystal of three ``elements`` in ``spacegroup`` from noise ``z`` (``noise_dim``
    floats within ±MAX_ABS_NOISE; drawn from ``seed`` when ``None``) with a decoder of
    :data:`DECODERS`. ``model`` defaults to the trained checkpoint. Returns the
    :class:`Structure` (Å), or :class:`Generated` with ``full=True``. Raises ``ValueError`` for
    bad noise (:func:`check_noise`), unknown elements, fewer/more than three distinct elements,
    space groups outside 1–230 or not supported by the model, and unknown decoders.
    """
    check_spacegroup(spacegroup)
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose from {DECODERS}")
    if model is None:
        model = default_generator()
    if z is None:
        z = torch.randn(1, model.noise_dim, generator=torch.Generator().manual_seed(seed or 0))
    els, lengths, frac, _ = raw_batch(model, [list(elements)], [spacegroup], check_noise(z, model.noise_dim))
    out = decode_crystal(els[0], spacegroup, lengths[0], frac[0], decoder)
    return out if full else out.structure


CONDITION_MODES = ("pgcgm", "training", "records")


def sample_conditions(model: CrystalGAN, n: int, rng: np.random.Generator, mode: str = "pgcgm",
                      records: list[Record] | None = None) -> tuple[list[list[str]], list[int]]:
    """``n`` (elements, space group) pairs in canonical order.

    ``pgcgm`` (as PGCGM's ``create_cif.py``): three distinct elements uniformly from its 63, the
    space group by PGCGM's training frequency renormalised over the model's groups.
    ``training``: the space group by the model's training frequency, each canonical position by
    the training set's element frequency there (distinct, re-sorted).
    ``records``: the elements and group of ``records`` in turn (those in the model's groups),
    e.g. the held-out crystals, so samples can be compared with them.
    """
    if mode == "records":
        usable = [r for r in records or [] if r.spacegroup in model.spacegroups]
        if not usable:
            raise ValueError("conditions='records' needs records in the model's space groups")
        return ([list(usable[i % len(usable)].elements) for i in range(n)],
                [usable[i % len(usable)].spacegroup for i in range(n)])
    if mode == "pgcgm":
        pool = sorted(PGCGM_ELEMENTS)
        sgs = np.array(model.spacegroups)
        p_sg = np.array([PGCGM_SPACEGROUPS.get(s, 0.0) for s in sgs])
        if p_sg.sum() == 0:
            p_sg = np.ones(len(sgs))
        elements = [canonical_order(list(rng.choice(pool, size=3, replace=False))) for _ in range(n)]
        groups = [int(g) for g in rng.choice(sgs, size=n, p=p_sg / p_sg.sum())]
        return elements, groups
    if mode != "training":
        raise ValueError(f"unknown condition mode {mode!r}; choose from {CONDITION_MODES}")
    records = getattr(model, "training_records", None)
    if not records:
        raise ValueError("the model carries no training records to draw conditions from")
    sg_counts = Counter(r.spacegroup for r in records if r.spacegroup in model.spacegroups)
    sgs = np.array(list(sg_counts))
    p_sg = np.array([sg_counts[s] for s in sgs], dtype=float)
    pos = [Counter(r.elements[i] for r in records) for i in range(3)]
    elements, groups = [], []
    while len(elements) < n:
        els = [rng.choice(list(c), p=np.array(list(c.values()), float) / sum(c.values())) for c in pos]
        if len(set(els)) < 3:
            continue
        elements.append(canonical_order([str(e) for e in els]))
        groups.append(int(rng.choice(sgs, p=p_sg / p_sg.sum())))
    return elements, groups


def sample(model: CrystalGAN, n: int, *, seed: int, decoders: tuple[str, ...] | list[str] = ("pgcgm",),
           conditions: str = "pgcgm", records: list[Record] | None = None, batch_size: int = 256,
           progress: bool = True) -> pd.DataFrame:
    """``n`` samples decoded with each of ``decoders`` (the same conditions and noise for all;
    conditions from :func:`sample_conditions`): one row per (sample, decoder) with
    :data:`SAMPLE_COLUMNS` (``variant`` = decoder) and ``structure``."""
    rng = np.random.default_rng(seed)
    elements, groups = sample_conditions(model, n, rng, conditions, records)
    z = torch.randn(n, model.noise_dim, generator=torch.Generator().manual_seed(seed))
    rows = []
    for start in progress_bar(range(0, n, batch_size), desc="sample", progress=progress):
        sl = slice(start, start + batch_size)
        els, lengths, frac, _ = raw_batch(model, elements[sl], groups[sl], z[sl])
        for i, (e, sg) in enumerate(zip(els, groups[sl])):
            for decoder in decoders:
                g = decode_crystal(e, sg, lengths[i], frac[i], decoder)
                rows.append({"material_id": f"gen-{decoder}-{seed}-{start + i}", "cif": g.structure.to(fmt="cif"),
                             "spacegroup": sg, "elements": " ".join(e), "variant": decoder,
                             "formula": g.structure.composition.reduced_formula, **g.flags, "structure": g.structure})
    return pd.DataFrame(rows)


def write_samples(frame: pd.DataFrame, folder: str | Path) -> Path:
    """Write ``samples.csv`` (the CDVAE layout plus flags, :data:`SAMPLE_COLUMNS`, readable by
    ``datasets.load_structure_csv``; pymatgen cannot re-read the CIF of a cell with coincident
    atoms) and ``samples_structures.json.gz`` (every structure exactly, by ``material_id``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame[SAMPLE_COLUMNS].to_csv(folder / "samples.csv", index=False)
    with gzip.open(folder / "samples_structures.json.gz", "wt") as fh:
        json.dump({mid: s.as_dict() for mid, s in zip(frame["material_id"], frame["structure"])}, fh)
    return folder


def read_samples(folder: str | Path) -> pd.DataFrame:
    """The samples written by :func:`write_samples`, with exact ``structure`` objects."""
    folder = Path(folder)
    frame = pd.read_csv(folder / "samples.csv", dtype={"material_id": str})
    with gzip.open(folder / "samples_structures.json.gz", "rt") as fh:
        structures = json.load(fh)
    frame["structure"] = [Structure.from_dict(structures[mid]) for mid in frame["material_id"]]
    return frame
