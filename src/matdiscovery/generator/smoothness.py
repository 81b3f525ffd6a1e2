"""Smoothness of the generator's input space: interpolation, one-at-a-time sweeps, Lipschitz ratios.

The generator's input is ``x = (z, c)``: ``z`` the standard-normal noise (``noise_dim``), ``c``
the conditioning (three z-scored 23-d element-feature vectors, then the space-group one-hot).
A point is decoded to a crystal exactly as :func:`~matdiscovery.generator.sampling.generate`
does (network → lengths + basis → symmetry expansion → PGCGM merging). The output is compared
between two inputs by

- the lattice lengths ``a, b, c`` (Å, Euclidean change);
- an RDF fingerprint (Gaussian-smeared radial distribution function ``g(r)``,
  :func:`rdf_fingerprint`; RMS difference, dimensionless);
- discrete descriptors: number of atoms, reduced formula and the space group spglib finds
  (symprec 0.1). A change of any of them is a *jump* (a discontinuity: it cannot shrink
  continuously with the step);
- optionally pymatgen ``StructureMatcher`` equivalence and a property model's prediction
  (e.g. the composition judge's formation energy, eV/atom).

Local Lipschitz ratio = output change / input step (Euclidean norm in input units: the noise
and the element features are both standardised, so their ratios are comparable; the
space-group step mixes the one-hot towards another group's one-hot, step norm ``√2·t``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from tqdm.auto import tqdm

from matdiscovery.generator.data import canonical_order
from matdiscovery.generator.model import CrystalGAN
from matdiscovery.generator.sampling import Generated, _matcher, postprocess

#: Maps structures to one number each (e.g. a predicted formation energy, eV/atom).
PropertyFn = Callable[[list[Structure]], np.ndarray]

#: input groups of the one-at-a-time sweeps
GROUPS = ("noise", "elements", "spacegroup")


@dataclass
class InputPoint:
    """A generator input: noise ``z`` (noise_dim,), conditioning ``cond`` (cond_dim,), the species
    of the three basis atoms and the space group whose operations expand them."""

    z: np.ndarray
    cond: np.ndarray
    elements: tuple[str, str, str]
    spacegroup: int

    def with_input(self, z: np.ndarray | None = None, cond: np.ndarray | None = None) -> "InputPoint":
        return InputPoint(self.z if z is None else z, self.cond if cond is None else cond, self.elements, self.spacegroup)


def input_point(model: CrystalGAN, elements: Sequence[str], spacegroup: int, z: np.ndarray | None = None,
                seed: int = 0) -> InputPoint:
    """The input point of (elements, space group, ``z``); ``z`` drawn from ``seed`` when ``None``."""
    cond, _, _ = model.condition(list(elements), spacegroup)
    if z is None:
        z = torch.randn(model.noise_dim, generator=torch.Generator().manual_seed(seed)).numpy()
    z = np.asarray(z, dtype=np.float32).reshape(model.noise_dim)
    return InputPoint(z, cond.numpy(), tuple(canonical_order(list(elements))), int(spacegroup))


def decode(model: CrystalGAN, points: Sequence[InputPoint], check_symmetry: bool = True) -> list[Generated]:
    """Decode input points to post-processed crystals (one forward pass for the batch)."""
    if not points:
        return []
    z = torch.as_tensor(np.stack([p.z for p in points]), dtype=torch.float32)
    cond = torch.as_tensor(np.stack([p.cond for p in points]), dtype=torch.float32)
    sg = torch.tensor([model.sg_index(p.spacegroup) for p in points])
    with torch.no_grad():
        lengths, frac = model(z, cond, sg)
    lengths, frac = lengths.numpy().astype(float), frac.numpy().astype(float)
    return [postprocess(list(p.elements), p.spacegroup, lengths[i], frac[i], check_symmetry=check_symmetry)
            for i, p in enumerate(points)]


def rdf_fingerprint(structure: Structure, r_max: float = 6.0, n_bins: int = 60, sigma: float = 0.15) -> np.ndarray:
    """Gaussian-smeared radial distribution function ``g(r)`` on ``n_bins`` points in (0, r_max] Å.

    ``g(r) = Σ_pairs N(r; d_ij, σ) / (N · ρ · 4πr²)`` with ρ the number density (Å⁻³): ≈ 1 at
    large r for any structure, so fingerprints of different cells are comparable.
    """
    r = np.linspace(r_max / n_bins, r_max, n_bins)
    n = len(structure)
    _, _, _, dist = structure.get_neighbor_list(r_max + 3 * sigma)
    dist = dist[dist > 1e-8]
    if len(dist) == 0:
        return np.zeros(n_bins)
    dens = np.exp(-0.5 * ((r[:, None] - dist[None, :]) / sigma) ** 2).sum(1) / (sigma * np.sqrt(2 * np.pi))
    rho = n / structure.volume
    return dens / (n * rho * 4 * np.pi * r**2)


def fingerprint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference of two RDF fingerprints (dimensionless, like ``g``)."""
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


@dataclass
class Descriptor:
    """What we compare between outputs."""

    lengths: np.ndarray
    fingerprint: np.ndarray
    n_atoms: int
    formula: str
    spacegroup_found: int
    structural_valid: bool
    prop: float


def describe(gens: Sequence[Generated], property_fn: PropertyFn | None = None, **fp_kw) -> list[Descriptor]:
    """Descriptors of decoded crystals (``prop`` is NaN without a property model)."""
    props = property_fn([g.structure for g in gens]) if property_fn is not None and gens else np.full(len(gens), np.nan)
    return [Descriptor(np.asarray(g.lengths, float), rdf_fingerprint(g.structure, **fp_kw), len(g.structure),
                       g.structure.composition.reduced_formula, int(g.flags.get("spacegroup_found", 0)),
                       bool(g.flags["structural_valid"]), float(p)) for g, p in zip(gens, props)]


def compare(a: Descriptor, b: Descriptor) -> dict[str, float | bool]:
    """Output change between two descriptors: lattice (Å), fingerprint, jump flags, property change."""
    jump_atoms = a.n_atoms != b.n_atoms
    jump_formula = a.formula != b.formula
    jump_sg = a.spacegroup_found != b.spacegroup_found
    return {"d_lattice_A": float(np.linalg.norm(a.lengths - b.lengths)),
            "d_fingerprint": fingerprint_distance(a.fingerprint, b.fingerprint),
            "jump_atoms": jump_atoms, "jump_formula": jump_formula, "jump_spacegroup": jump_sg,
            "jump": jump_atoms or jump_formula or jump_sg,
            "d_prop": abs(a.prop - b.prop)}


def _match(sm: StructureMatcher, a: Structure, b: Structure) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(sm.fit(a, b))


def log_steps(min_step: float, max_step: float, n: int) -> np.ndarray:
    """``n`` step sizes on a log grid from ``min_step`` to ``max_step`` (input units)."""
    if not 0 < min_step < max_step or n < 2:
        raise ValueError(f"need 0 < min_step < max_step and n >= 2, got {min_step}, {max_step}, {n}")
    return np.geomspace(min_step, max_step, n)


def perturb(model: CrystalGAN, base: InputPoint, group: str, dim: int, step: float) -> tuple[InputPoint, float]:
    """``base`` moved by ``step`` along input ``dim`` of ``group``; returns (point, step norm).

    ``noise``: ``z[dim] += step``; ``elements``: conditioning feature ``dim`` (0 … 68: element
    position ``dim // 23``, feature ``dim % 23``) ``+= step``; ``spacegroup``: the one-hot moves a
    fraction ``t = min(step, 1)`` towards the one-hot of the model's space group ``dim`` (the
    symmetry operations stay those of ``base``), step norm ``√2·t``.
    """
    if group == "noise":
        z = base.z.copy()
        z[dim] += step
        return base.with_input(z=z), float(step)
    n_feat = model.cond_dim - model.n_sg
    if group == "elements":
        if not 0 <= dim < n_feat:
            raise ValueError(f"element-feature index must be in 0..{n_feat - 1}, got {dim}")
        c = base.cond.copy()
        c[dim] += step
        return base.with_input(cond=c), float(step)
    if group == "spacegroup":
        t = min(float(step), 1.0)
        c = base.cond.copy()
        target = np.zeros(model.n_sg, dtype=c.dtype)
        target[dim] = 1.0
        c[n_feat:] = (1 - t) * c[n_feat:] + t * target
        return base.with_input(cond=c), float(np.sqrt(2.0) * t)
    raise ValueError(f"unknown input group {group!r}; choose from {GROUPS}")


def base_points(model: CrystalGAN, n: int, seed: int = 0) -> list[InputPoint]:
    """``n`` seeded base inputs: conditions drawn like :func:`~matdiscovery.generator.sampling.sample`."""
    from matdiscovery.generator.sampling import sample_conditions

    rng = np.random.default_rng(seed)
    elements, groups = sample_conditions(model, n, rng)
    z = torch.randn(n, model.noise_dim, generator=torch.Generator().manual_seed(seed)).numpy()
    return [input_point(model, e, g, z[i]) for i, (e, g) in enumerate(zip(elements, groups))]


def sweep(model: CrystalGAN, bases: Sequence[InputPoint], steps: Sequence[float], n_noise_dims: int | None = 16,
          n_element_dims: int | None = 16, n_spacegroups: int | None = 4, seed: int = 0,
          property_fn: PropertyFn | None = None, matcher: bool = True, progress: bool = True) -> pd.DataFrame:
    """One-at-a-time perturbation sweeps around each base input.

    For each base, ``n_noise_dims`` noise dimensions, ``n_element_dims`` element-feature
    dimensions and ``n_spacegroups`` other space groups (seeded choice; ``None`` = all) are each
    perturbed by every step in ``steps``. One row per (base, group, dim, step) with the
    :func:`compare` columns, ``lip_fingerprint`` / ``lip_lattice`` (change / step norm), the
    StructureMatcher verdict ``matches_base`` and ``base_valid`` (base structurally valid).
    """
    rng = np.random.default_rng(seed)
    n_feat = model.cond_dim - model.n_sg
    sm = _matcher() if matcher else None
    rows = []
    for b, base in enumerate(tqdm(bases, desc="sweeps", disable=not progress)):
        dims = {
            "noise": _choose(rng, model.noise_dim, n_noise_dims),
            "elements": _choose(rng, n_feat, n_element_dims),
            "spacegroup": [d for d in _choose(rng, model.n_sg, n_spacegroups if n_spacegroups is None else n_spacegroups + 1)
                           if d != model.sg_index(base.spacegroup)][: n_spacegroups or model.n_sg],
        }
        jobs, points = [], [base]
        for group, ds in dims.items():
            for d in ds:
                for h in steps:
                    p, norm = perturb(model, base, group, int(d), float(h))
                    points.append(p)
                    jobs.append((group, int(d), float(h), norm))
        gens = decode(model, points)
        desc = describe(gens, property_fn)
        for (group, d, h, norm), g, dsc in zip(jobs, gens[1:], desc[1:]):
            cmp = compare(desc[0], dsc)
            row = {"base": b, "group": group, "dim": d, "step": h, "step_norm": norm, **cmp,
                   "lip_fingerprint": cmp["d_fingerprint"] / norm, "lip_lattice": cmp["d_lattice_A"] / norm,
                   "lip_prop": cmp["d_prop"] / norm, "base_valid": desc[0].structural_valid,
                   "valid": dsc.structural_valid}
            if sm is not None:
                row["matches_base"] = _match(sm, gens[0].structure, g.structure)
            rows.append(row)
    return pd.DataFrame(rows)


def _choose(rng: np.random.Generator, n: int, k: int | None) -> list[int]:
    if k is None or k >= n:
        return list(range(n))
    return sorted(rng.choice(n, size=k, replace=False).tolist())


def slerp(z0: np.ndarray, z1: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between noise vectors (falls back to linear when parallel)."""
    a, b = np.asarray(z0, float), np.asarray(z1, float)
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def interpolate(model: CrystalGAN, start: InputPoint, z_end: np.ndarray, n_steps: int = 32, kind: str = "linear",
                property_fn: PropertyFn | None = None) -> tuple[pd.DataFrame, list[Generated]]:
    """Decode ``n_steps`` points on a straight (``linear``) or great-circle (``slerp``) path in noise
    space from ``start.z`` to ``z_end`` (conditioning fixed). Rows: ``t``, lengths (Å), n_atoms,
    formula, validity, property, and the change from the previous point (``compare`` columns,
    ``lip_fingerprint`` per unit of noise-space path length)."""
    if kind not in ("linear", "slerp"):
        raise ValueError(f"interpolation kind must be 'linear' or 'slerp', got {kind!r}")
    if n_steps < 2:
        raise ValueError(f"n_steps must be >= 2, got {n_steps}")
    ts = np.linspace(0.0, 1.0, n_steps)
    zs = [(1 - t) * start.z + t * np.asarray(z_end) if kind == "linear" else slerp(start.z, z_end, t) for t in ts]
    points = [start.with_input(z=np.asarray(z, dtype=np.float32)) for z in zs]
    gens = decode(model, points)
    desc = describe(gens, property_fn)
    rows = []
    for i, (t, d) in enumerate(zip(ts, desc)):
        row = {"t": t, "kind": kind, "a": d.lengths[0], "b": d.lengths[1], "c": d.lengths[2], "n_atoms": d.n_atoms,
               "formula": d.formula, "spacegroup_found": d.spacegroup_found, "valid": d.structural_valid, "prop": d.prop}
        if i:
            cmp = compare(desc[i - 1], d)
            step = float(np.linalg.norm(zs[i] - zs[i - 1]))
            row.update(cmp, step_norm=step, lip_fingerprint=cmp["d_fingerprint"] / step,
                       lip_lattice=cmp["d_lattice_A"] / step)
        rows.append(row)
    return pd.DataFrame(rows), gens


def summarise(sweeps: pd.DataFrame, small_step: float | None = None) -> dict[str, float]:
    """Headline smoothness numbers of a :func:`sweep` frame.

    ``lipschitz_median_<group>``: median fingerprint Lipschitz ratio over all steps of the group
    (``conditioning`` = element features and space group together); ``jump_rate``: fraction of
    all perturbation steps with a discrete jump (atom count, formula or space group changed);
    ``jump_rate_<group>``; ``lipschitz_p95_<group>``; ``match_rate``: fraction of steps whose
    output StructureMatcher-matches the base. ``small_step``: also the same restricted to steps
    ≤ ``small_step`` (suffix ``_small``), where a continuous map has ratios bounded and no jumps.
    """
    out: dict[str, float] = {}
    groups = {"noise": ["noise"], "elements": ["elements"], "spacegroup": ["spacegroup"],
              "conditioning": ["elements", "spacegroup"]}
    frames = {"": sweeps}
    if small_step is not None:
        frames["_small"] = sweeps[sweeps["step"] <= small_step]
    for suffix, f in frames.items():
        out[f"jump_rate{suffix}"] = float(f["jump"].mean()) if len(f) else float("nan")
        for name, members in groups.items():
            g = f[f["group"].isin(members)]
            out[f"lipschitz_median_{name}{suffix}"] = float(g["lip_fingerprint"].median()) if len(g) else float("nan")
            out[f"lipschitz_p95_{name}{suffix}"] = float(g["lip_fingerprint"].quantile(0.95)) if len(g) else float("nan")
            out[f"jump_rate_{name}{suffix}"] = float(g["jump"].mean()) if len(g) else float("nan")
        if "matches_base" in f and len(f):
            out[f"match_rate{suffix}"] = float(f["matches_base"].mean())
    return out


def bisect_jump(model: CrystalGAN, p0: InputPoint, p1: InputPoint, width: float = 1e-6, max_iter: int = 60
                ) -> dict[str, float | bool]:
    """Shrink a jumping segment ``p0 → p1`` (discrete descriptors differ at its ends) by bisection
    to input width ≤ ``width`` and measure the output change across it.

    A continuous map's change vanishes with the width; a discontinuity keeps a finite change, so
    ``lip_fingerprint`` (fingerprint change / final width) grows like 1/width. Returns the final
    width, the fingerprint and lattice changes across it, their ratios and whether the discrete
    descriptors still differ (``confirmed``; ``False`` when the ends stopped differing, e.g. a
    spglib tolerance flicker rather than a boundary).
    """
    a_z, a_c = p0.z.astype(np.float64), p0.cond.astype(np.float64)
    b_z, b_c = p1.z.astype(np.float64), p1.cond.astype(np.float64)

    def point(z: np.ndarray, c: np.ndarray) -> InputPoint:
        return p0.with_input(z=z.astype(np.float32), cond=c.astype(np.float32))

    da, db = describe(decode(model, [point(a_z, a_c), point(b_z, b_c)]))
    if not compare(da, db)["jump"]:
        raise ValueError("the segment's ends do not differ in atom count, formula or space group")
    w = float(np.sqrt(np.sum((b_z - a_z) ** 2) + np.sum((b_c - a_c) ** 2)))
    for _ in range(max_iter):
        if w <= width:
            break
        m_z, m_c = (a_z + b_z) / 2, (a_c + b_c) / 2
        (dm,) = describe(decode(model, [point(m_z, m_c)]))
        if compare(da, dm)["jump"]:
            b_z, b_c, db = m_z, m_c, dm
        else:
            a_z, a_c, da = m_z, m_c, dm
        w = float(np.sqrt(np.sum((b_z - a_z) ** 2) + np.sum((b_c - a_c) ** 2)))
    w = max(w, 1e-12)   # float32 inputs: the narrowest representable segment
    cmp = compare(da, db)
    return {"width": w, "d_fingerprint": cmp["d_fingerprint"], "d_lattice_A": cmp["d_lattice_A"],
            "lip_fingerprint": cmp["d_fingerprint"] / w, "lip_lattice": cmp["d_lattice_A"] / w,
            "d_prop": cmp["d_prop"], "jump_atoms": cmp["jump_atoms"], "jump_formula": cmp["jump_formula"],
            "jump_spacegroup": cmp["jump_spacegroup"], "confirmed": bool(cmp["jump"])}


def bisect_sweep_jumps(model: CrystalGAN, bases: Sequence[InputPoint], sweeps: pd.DataFrame, max_jumps: int = 20,
                       width: float = 1e-6, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """:func:`bisect_jump` on up to ``max_jumps`` (seeded choice) jumping rows of a :func:`sweep`
    frame (the same ``bases``); one row per refined jump with its group and original step."""
    jumps = sweeps[sweeps["jump"]]
    if len(jumps) > max_jumps:
        jumps = jumps.sample(n=max_jumps, random_state=seed)
    rows = []
    for _, r in tqdm(list(jumps.iterrows()), desc="bisect jumps", disable=not progress):
        base = bases[int(r["base"])]
        p1, _ = perturb(model, base, r["group"], int(r["dim"]), float(r["step"]))
        rows.append({"base": int(r["base"]), "group": r["group"], "dim": int(r["dim"]), "step": float(r["step"]),
                     **bisect_jump(model, base, p1, width=width)})
    return pd.DataFrame(rows)
