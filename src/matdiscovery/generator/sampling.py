"""Generation API, PGCGM post-processing and CDVAE-style validity metrics.

- :func:`generate` — one structure for (elements, space group, noise ``z``).
- :func:`sample` — N structures with a seed (conditions drawn like PGCGM: space group from the
  training-set frequency; elements from the training set's per-position element frequencies).
- :func:`postprocess` — symmetry expansion, PGCGM merging of same-element atoms closer than
  0.6× then 1.5× the atomic radius, and validity flags.
- :func:`validity_metrics` — structural / compositional validity, uniqueness, novelty.
"""

from __future__ import annotations

import itertools
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from tqdm.auto import tqdm

from matdiscovery.generator.data import Record, canonical_order, record_structure
from matdiscovery.generator.model import CrystalGAN
from matdiscovery.generator.symmetry import _radius, expand_orbits, lattice_for, merge_close_atoms

MERGE_FACTORS = (0.6, 1.5)


@dataclass
class Generated:
    """A generated crystal with its inputs, raw outputs and validity flags."""

    structure: Structure
    elements: tuple[str, str, str]
    spacegroup: int
    lengths: np.ndarray        # tied lattice lengths (Å)
    frac: np.ndarray           # basis fractional coordinates (3, 3)
    provenance: np.ndarray     # (n_sites, 2): basis index and operation index of each site
    flags: dict


def structural_valid(structure: Structure, cutoff: float = 0.5) -> bool:
    """CDVAE structural validity: every interatomic distance (periodic) > ``cutoff`` Å
    (a lone atom's distance to its own image counts)."""
    if len(structure) == 1:
        return min(structure.lattice.abc) > cutoff
    d = structure.distance_matrix
    np.fill_diagonal(d, np.inf)
    return bool(d.min() > cutoff) and min(structure.lattice.abc) > cutoff


@lru_cache(maxsize=None)
def _oxidation_states(symbol: str) -> tuple[int, ...]:
    el = Element(symbol)
    return tuple(sorted({int(o) for o in (*el.common_oxidation_states, *el.icsd_oxidation_states) if o != 0}))


@lru_cache(maxsize=65536)
def compositional_valid(formula: str) -> bool:
    """SMACT-style charge neutrality as CDVAE/DiffCSP count it: some assignment of one common
    oxidation state per element (pymatgen's common ∪ ICSD states) is neutral for the reduced
    formula *and* passes the Pauling test (every cation less electronegative than every anion);
    all-metal compositions (alloys, intermetallics) count as valid. An element without known
    oxidation states (noble gases) makes a non-metallic composition invalid."""
    comp = Composition(formula).reduced_composition
    elements = [el for el in comp.elements]
    if all(el.is_metal for el in elements):
        return True
    counts = [int(round(comp[el])) for el in elements]
    states = [_oxidation_states(el.symbol) for el in elements]
    if any(not s for s in states):
        return False
    chi = [el.X if el.X == el.X else None for el in elements]
    for combo in itertools.product(*states):
        if sum(n * o for n, o in zip(counts, combo)) != 0:
            continue
        cations = [x for x, o in zip(chi, combo) if o > 0 and x is not None]
        anions = [x for x, o in zip(chi, combo) if o < 0 and x is not None]
        if not cations or not anions or max(cations) < min(anions):
            return True
    return False


def pgcgm_distance_ok(structure: Structure, factor: float = 0.75) -> bool:
    """PGCGM filter: every pair distance > ``factor`` × (r_i + r_j) (atomic radii, Å)."""
    r = np.array([_radius(s.specie.Z) for s in structure])
    d = structure.distance_matrix
    np.fill_diagonal(d, np.inf)
    return bool((d > factor * (r[:, None] + r[None, :])).all())


def spacegroup_of(structure: Structure, symprec: float = 0.1) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:  # noqa: BLE001
        return 0


def postprocess(elements: list[str], spacegroup: int, lengths: np.ndarray, frac: np.ndarray,
                merge_factors: tuple[float, ...] = MERGE_FACTORS, check_symmetry: bool = True) -> Generated:
    """Expand basis atoms with the space group, merge as PGCGM did, and compute validity flags."""
    coords, owner, opidx = expand_orbits(frac, spacegroup)
    lattice = lattice_for(lengths, spacegroup)
    structure = Structure(lattice, [elements[k] for k in owner], coords)
    prov = np.stack([owner, opidx], 1)
    for f in merge_factors:
        structure, prov = merge_close_atoms(structure, f, prov)
    flags = {
        "n_atoms": len(structure),
        "structural_valid": structural_valid(structure),
        "compositional_valid": compositional_valid(structure.composition.reduced_formula),
        "pgcgm_distance_ok": pgcgm_distance_ok(structure),
        "all_elements_kept": len(structure.composition.elements) == 3,
    }
    if check_symmetry:
        found = spacegroup_of(structure)
        flags["spacegroup_found"] = found
        flags["spacegroup_match"] = found == spacegroup
        flags["pgcgm_valid"] = flags["spacegroup_match"] and flags["pgcgm_distance_ok"]
    return Generated(structure, tuple(elements), int(spacegroup), np.asarray(lengths), np.asarray(frac), prov, flags)


def raw_batch(model: CrystalGAN, elements: list[list[str]], spacegroups: list[int], z: torch.Tensor
              ) -> tuple[list[list[str]], np.ndarray, np.ndarray, np.ndarray]:
    """Canonical elements, tied lengths (B, 3) Å, basis frac (B, 3, 3) and raw outputs for a batch."""
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


def _noise(model: CrystalGAN, z: np.ndarray | torch.Tensor | None, seed: int | None) -> torch.Tensor:
    if z is None:
        z = torch.randn(1, model.noise_dim, generator=torch.Generator().manual_seed(seed or 0))
    z = torch.as_tensor(np.asarray(z, dtype=np.float32)).reshape(-1, model.noise_dim)
    return z


_DEFAULT_MODEL: dict[str, CrystalGAN] = {}


def default_generator(variant: str = "default") -> CrystalGAN:
    """The checkpoint ``models/generator/<variant>.pt`` written by the ``train_generator`` stage."""
    from matdiscovery.generator.train import load_generator
    from matdiscovery.paths import models_dir

    if variant not in _DEFAULT_MODEL:
        _DEFAULT_MODEL[variant] = load_generator(models_dir() / "generator" / f"{variant}.pt")
    return _DEFAULT_MODEL[variant]


def generate(elements: list[str], spacegroup: int, z: np.ndarray | torch.Tensor | None = None,
             model: CrystalGAN | None = None, seed: int | None = None, full: bool = False) -> Structure | Generated:
    """Generate one crystal of three ``elements`` in ``spacegroup`` from noise ``z`` (``noise_dim``
    floats; drawn from ``seed`` when ``None``). ``model`` defaults to the trained ``default``
    checkpoint. Returns the post-processed :class:`Structure` (Å), or :class:`Generated` with
    ``full=True``. Raises ``ValueError`` for unknown elements, fewer/more than three distinct
    elements, space groups outside 1–230 or not supported by the model.
    """
    from matdiscovery.generator.symmetry import check_spacegroup

    check_spacegroup(spacegroup)
    if model is None:
        model = default_generator()
    els, lengths, frac, _ = raw_batch(model, [list(elements)], [spacegroup], _noise(model, z, seed)[:1])
    out = postprocess(els[0], spacegroup, lengths[0], frac[0])
    return out if full else out.structure


def sample_conditions(model: CrystalGAN, n: int, rng: np.random.Generator,
                      records: list[Record] | None = None) -> tuple[list[list[str]], list[int]]:
    """``n`` (elements, space group) pairs: space group by training frequency, each of the three
    canonical positions by the training set's element frequency there (distinct, re-sorted)."""
    records = records or model.training_records
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


def sample(model: CrystalGAN, n: int, seed: int = 0, variant: str = "default", batch_size: int = 256,
           progress: bool = True) -> pd.DataFrame:
    """``n`` post-processed samples: columns ``material_id, cif, spacegroup, elements, variant``
    (the CDVAE layout), the validity flags, and ``structure``."""
    rng = np.random.default_rng(seed)
    elements, groups = sample_conditions(model, n, rng)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.noise_dim, generator=gen)
    rows = []
    for start in tqdm(range(0, n, batch_size), desc=f"sample {variant}", disable=not progress):
        sl = slice(start, start + batch_size)
        els, lengths, frac, _ = raw_batch(model, elements[sl], groups[sl], z[sl])
        for i, (e, sg) in enumerate(zip(els, groups[sl])):
            g = postprocess(e, sg, lengths[i], frac[i])
            rows.append({"material_id": f"gen-{variant}-{seed}-{start + i}", "cif": g.structure.to(fmt="cif"),
                         "spacegroup": sg, "elements": " ".join(e), "variant": variant,
                         "formula": g.structure.composition.reduced_formula, **g.flags, "structure": g.structure})
    return pd.DataFrame(rows)


def _matcher() -> StructureMatcher:
    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)


def unique_mask(structures: list[Structure]) -> np.ndarray:
    """True for the first structure of each StructureMatcher-equivalence class (grouped by formula)."""
    sm = _matcher()
    keep = np.zeros(len(structures), dtype=bool)
    by_formula: dict[str, list[int]] = {}
    for i, s in enumerate(structures):
        by_formula.setdefault(s.composition.reduced_formula, []).append(i)
    for idx in by_formula.values():
        reps: list[Structure] = []
        for i in idx:
            if not any(sm.fit(structures[i], r) for r in reps):
                reps.append(structures[i])
                keep[i] = True
    return keep


def novel_mask(structures: list[Structure], reference: list[Structure]) -> np.ndarray:
    """True where no reference structure of the same reduced formula matches (StructureMatcher)."""
    sm = _matcher()
    ref: dict[str, list[Structure]] = {}
    for s in reference:
        ref.setdefault(s.composition.reduced_formula, []).append(s)
    return np.array([not any(sm.fit(s, r) for r in ref.get(s.composition.reduced_formula, []))
                     for s in structures], dtype=bool)


def validity_metrics(samples: pd.DataFrame, training: list[Record]) -> dict[str, float]:
    """CDVAE/DiffCSP-style metrics of a :func:`sample` frame.

    ``validity_structural`` / ``validity_compositional``: fractions of all samples;
    ``uniqueness``: distinct (StructureMatcher) / structurally valid samples; ``novelty``:
    fraction of unique valid samples matching no training structure; ``validity_pgcgm``:
    PGCGM's filter (space group recovered at symprec 0.1 and distances > 0.75 (r_i + r_j)).
    """
    n = len(samples)
    valid = samples[samples["structural_valid"]]
    structs = list(valid["structure"])
    uniq = unique_mask(structs) if structs else np.array([], bool)
    unique_structs = [s for s, u in zip(structs, uniq) if u]
    ref = [record_structure(r) for r in training]
    novel = novel_mask(unique_structs, ref) if unique_structs else np.array([], bool)
    out = {
        "validity_structural": samples["structural_valid"].mean(),
        "validity_compositional": samples["compositional_valid"].mean(),
        "uniqueness": uniq.mean() if len(uniq) else 0.0,
        "novelty": novel.mean() if len(novel) else 0.0,
        "n_samples": n,
    }
    if "pgcgm_valid" in samples:
        out["validity_pgcgm"] = samples["pgcgm_valid"].mean()
        out["spacegroup_match"] = samples["spacegroup_match"].mean()
    return {k: float(v) for k, v in out.items()}


def write_samples_csv(frames: list[pd.DataFrame], path: str | Path) -> Path:
    """Write samples in the CDVAE layout (plus flags) readable by ``datasets.load_structure_csv``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["material_id", "cif", "spacegroup", "elements", "variant", "formula", "n_atoms",
            "structural_valid", "compositional_valid", "pgcgm_distance_ok", "spacegroup_found",
            "spacegroup_match", "pgcgm_valid"]
    pd.concat(frames, ignore_index=True)[cols].to_csv(path, index=False)
    return path
