"""Where the roughness lives: smoothness of each stage of the generator's map, with controls.

The map from an input ``x = (z, c)`` (noise, conditioning) to a crystal has three stages,
each measured on its own scale:

- ``raw``: the network's raw output (:data:`~matdiscovery.generator.model.RAW_DIM` numbers);
  change = Euclidean norm;
- ``premerge``: the expanded cell before merging: every symmetry image of the three basis atoms
  (no duplicate removal, so its size is fixed by the group); change = RMS difference of a
  Gaussian-smeared radial distribution (:func:`premerge_fingerprint`), a continuous function of
  the lengths and basis coordinates (a compact smooth kernel, no histogram bins);
- ``final``: the decoded crystal (a decoder of :data:`~matdiscovery.generator.sampling.DECODERS`);
  change = RMS difference of the same fingerprint (:func:`rdf_fingerprint`) plus the total-variation
  distance of the compositions (:func:`crystal_distance`), and a discrete *jump* when the atom
  count, the reduced formula or spglib's space group (symprec 0.1) changes.

Local Lipschitz ratio = change / input step. Each jump gets one cause (:data:`CAUSES`, the
first that applies): the requested space group changed (a switch), the species changed
(composition change: an element switch), the orbits of the expansion changed (orbit collapse:
a basis atom reached a special position within 10⁻³), the merging (or Wyckoff snapping) left a
different atom count or formula (merging), or only the spglib label changed.

Perturbations (:class:`Path`) stay on the data manifold: noise steps along one coordinate;
element steps along the segment from a basis element's feature vector to a real element's
(species: the nearer endpoint); element and space-group *switches* (discrete, no Lipschitz
ratio). Segments are bisected (:func:`bisect_paths`) down to an input width: a stage whose
bisected change stays finite is discontinuous there. :func:`stage_verdict` is the verdict rule;
:func:`linear_control` and :func:`rough_control` build the controls it must tell apart.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure
from pymatgen.optimization.neighbors import find_points_in_spheres
from torch import nn

from matdiscovery.composition import ELEMENT_FEATURE_DIM, element_features
from matdiscovery.generator.data import PGCGM_ELEMENTS, canonical_order
from matdiscovery.generator.model import CrystalGAN
from matdiscovery.generator.sampling import Generated, decode_crystal, sample_conditions
from matdiscovery.generator.symmetry import identity_index, lattice_for, symmetry_operations
from matdiscovery.progress import progress_bar

STAGES = ("raw", "premerge", "final")
CAUSES = ("spacegroup_change", "composition_change", "orbit_collapse", "merging", "spglib_label_only")
#: causes that are the input's doing (a categorical element or group switched), not the decoding's
INPUT_CAUSES = ("spacegroup_change", "composition_change")
CONTINUOUS_GROUPS = ("noise", "elements")
SWITCH_GROUPS = ("element_switch", "spacegroup_switch")
#: where a bisected jump's discontinuity sits: the first stage whose ratio across the final
#: segment is rough (network = raw output, expansion = pre-merge cell, decoding = after it)
LOCI = {"raw": "network", "premerge": "expansion", "final": "decoding"}

#: fingerprint grid (Å): n_bins points in (0, R_MAX]; smearing kernel half-width H (Å)
R_MAX, N_BINS, H = 5.0, 50, 0.45


def _smear(dist: np.ndarray, r_max: float, n_bins: int, h: float) -> tuple[np.ndarray, np.ndarray]:
    """``Σ_pairs K(r − d)`` on the grid, with the triweight kernel ``K(x) = 35/(32h)·(1 − (x/h)²)³``
    for ``|x| < h`` (standard deviation h/3): twice continuously differentiable with compact
    support, so the sum is continuous in every distance; each grid point sums only the sorted
    distances within ``h`` of it."""
    r = (r_max / n_bins) * np.arange(1, n_bins + 1)
    d = np.sort(np.asarray(dist, dtype=float))
    lo, hi = np.searchsorted(d, r - h), np.searchsorted(d, r + h)
    dens = np.zeros(n_bins)
    for j in range(n_bins):
        u = (r[j] - d[lo[j]:hi[j]]) / h
        dens[j] = ((1 - u * u) ** 3).sum()
    return r, dens * 35 / (32 * h)


def rdf_fingerprint(structure: Structure, r_max: float = R_MAX, n_bins: int = N_BINS, h: float = H) -> np.ndarray:
    """Smeared radial distribution function ``g(r)`` on ``n_bins`` points in (0, r_max] Å.

    ``g(r) = Σ_pairs K(r − d_ij) / (N · ρ · 4πr²)`` (kernel of :func:`_smear`) with ρ the number
    density (Å⁻³): ≈ 1 at large r for any structure, so fingerprints of different cells are comparable.
    """
    mat = structure.lattice.matrix
    cart = structure.cart_coords
    *_, dist = find_points_in_spheres(cart, cart, r_max + h, np.ones(3, dtype=np.int64), mat, tol=1e-8)
    dist = dist[dist > 1e-8]
    r, dens = _smear(dist, r_max, n_bins, h)
    rho = len(structure) / structure.volume
    return dens / (len(structure) * rho * 4 * np.pi * r**2)


def premerge_fingerprint(lengths: np.ndarray, frac: np.ndarray, spacegroup: int, r_max: float = R_MAX,
                         n_bins: int = N_BINS, h: float = H) -> np.ndarray:
    """:func:`rdf_fingerprint` of the expanded cell before merging: all ``M`` images of each basis
    atom (none removed, coincident ones included), seen from the basis atoms (every image of an
    atom has the same surroundings). Continuous in ``lengths`` (Å) and ``frac``."""
    ops = symmetry_operations(spacegroup)
    frac = np.asarray(frac, dtype=float) % 1.0
    img = (np.einsum("mij,kj->kmi", ops[:, :3, :3], frac) + ops[None, :, :3, 3]) % 1.0     # (k, M, 3)
    lattice = lattice_for(lengths, spacegroup)
    mat = lattice.matrix
    k, m = img.shape[:2]
    centers, points, _, dist = find_points_in_spheres(img.reshape(-1, 3) @ mat, frac @ mat, r_max + h,
                                                      np.ones(3, dtype=np.int64), mat, tol=1e-8)
    own = points == centers * m + identity_index(spacegroup)
    keep = ~(own & (dist < 1e-9))
    r, dens = _smear(dist[keep], r_max, n_bins, h)
    rho = k * m / lattice.volume
    return dens / (k * rho * 4 * np.pi * r**2)


def fingerprint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference of two fingerprints (dimensionless, like ``g``)."""
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def composition_distance(a: dict[str, float], b: dict[str, float]) -> float:
    """Total-variation distance of two compositions given as atomic fractions (0 to 1)."""
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


# ---------------------------------------------------------------------------- inputs and paths
@dataclass
class InputPoint:
    """A generator input: noise ``z``, conditioning ``cond``, the species of the three basis atoms
    and the space group whose operations expand them."""

    z: np.ndarray
    cond: np.ndarray
    elements: tuple[str, str, str]
    spacegroup: int


def input_point(model: CrystalGAN, elements: Sequence[str], spacegroup: int, z: np.ndarray) -> InputPoint:
    cond, _, _ = model.condition(list(elements), spacegroup)
    return InputPoint(np.asarray(z, dtype=np.float64).reshape(model.noise_dim), cond.numpy().astype(np.float64),
                      tuple(canonical_order(list(elements))), int(spacegroup))


def base_points(model: CrystalGAN, n: int, *, seed: int, conditions: str = "pgcgm") -> list[InputPoint]:
    """``n`` seeded base inputs, conditions drawn like :func:`~matdiscovery.generator.sampling.sample`."""
    rng = np.random.default_rng(seed)
    elements, groups = sample_conditions(model, n, rng, conditions)
    z = torch.randn(n, model.noise_dim, generator=torch.Generator().manual_seed(seed)).numpy()
    return [input_point(model, e, g, z[i]) for i, (e, g) in enumerate(zip(elements, groups))]


@dataclass
class Path:
    """A straight input segment ``t ∈ [0, 1]`` from ``base`` (``length`` in input units).

    ``group``: ``noise`` (coordinate ``dim``), ``elements`` (basis position ``dim`` moving towards
    ``partner``'s feature vector; the species is the nearer endpoint, so it flips at ``t =
    switch_t``), ``element_switch`` (the whole way to ``partner``) or ``spacegroup_switch`` (to
    ``target_sg``: one-hot and operations switch at ``t = 1``; not a continuous segment).
    """

    base: InputPoint
    group: str
    dim: int
    step: float
    length: float
    dz: np.ndarray
    dcond: np.ndarray
    partner: str | None = None
    switch_t: float = np.inf
    target: InputPoint | None = None

    def point(self, t: float) -> InputPoint:
        if self.target is not None:
            return self.target if t >= 1.0 else self.base
        elements = self.base.elements
        if self.partner is not None and t >= self.switch_t:
            elements = tuple(self.partner if i == self.dim else e for i, e in enumerate(elements))
        return InputPoint(self.base.z + t * self.dz, self.base.cond + t * self.dcond, elements, self.base.spacegroup)


def noise_path(base: InputPoint, dim: int, step: float) -> Path:
    dz = np.zeros_like(base.z)
    dz[dim] = step
    return Path(base, "noise", dim, float(step), float(step), dz, np.zeros_like(base.cond))


def element_path(base: InputPoint, position: int, partner: str, step: float | None) -> Path:
    """``step`` input units along the segment to ``partner`` (``None``: the whole way, a switch)."""
    delta = (element_features([partner])[0] - element_features([base.elements[position]])[0]).astype(np.float64)
    full = float(np.linalg.norm(delta))
    t_max = 1.0 if step is None else min(float(step) / full, 1.0)
    dcond = np.zeros_like(base.cond)
    sl = slice(position * ELEMENT_FEATURE_DIM, (position + 1) * ELEMENT_FEATURE_DIM)
    dcond[sl] = t_max * delta
    group = "element_switch" if step is None else "elements"
    return Path(base, group, position, full if step is None else float(step), t_max * full, np.zeros_like(base.z),
                dcond, partner, 0.5 / t_max)


def spacegroup_path(model: CrystalGAN, base: InputPoint, target_sg: int) -> Path:
    target = input_point(model, base.elements, target_sg, base.z)
    dcond = target.cond - base.cond
    return Path(base, "spacegroup_switch", model.sg_index(target_sg), float("nan"), float(np.linalg.norm(dcond)),
                np.zeros_like(base.z), dcond, target=target)


def element_partners(elements: tuple[str, str, str], position: int, n: int) -> list[str]:
    """The ``n`` real elements (PGCGM's 63) nearest in feature space to ``elements[position]`` that
    keep canonical position ``position`` when substituted (the conditioning stays canonical)."""
    own = element_features([elements[position]])[0]
    cands = []
    for e in sorted(PGCGM_ELEMENTS - set(elements)):
        new = list(elements)
        new[position] = e
        if canonical_order(new)[position] == e:
            cands.append((float(np.linalg.norm(element_features([e])[0] - own)), e))
    return [e for _, e in sorted(cands)[:n]]


# ---------------------------------------------------------------------------- evaluation
@dataclass
class Final:
    """What the final stage is compared on."""

    fingerprint: np.ndarray
    composition: dict[str, float]
    n_atoms: int
    formula: str
    spacegroup_found: int
    requested: int
    species: tuple[str, ...]
    orbit_sizes: tuple[int, ...]
    generated: Generated

    def key(self) -> tuple:
        return (self.n_atoms, self.formula, self.spacegroup_found)


@dataclass
class Evaluation:
    raw: np.ndarray
    premerge: np.ndarray | None
    final: dict[str, Final] = field(default_factory=dict)


def evaluate(model: CrystalGAN, points: Sequence[InputPoint], decoders: Sequence[str] = (), premerge: bool = True
             ) -> list[Evaluation]:
    """Every stage of ``points`` (one forward pass in the model's dtype; :func:`run_smoothness`
    uses float64 so that bisection to 1e-6 is not limited by float32 resolution): raw output,
    pre-merge fingerprint (if ``premerge``) and, per decoder in ``decoders``, the final crystal's
    descriptors."""
    if not points:
        return []
    dtype = next(model.parameters()).dtype
    z = torch.as_tensor(np.stack([p.z for p in points]), dtype=dtype)
    cond = torch.as_tensor(np.stack([p.cond for p in points]), dtype=dtype)
    sg = torch.tensor([model.sg_index(p.spacegroup) for p in points])
    with torch.no_grad():
        raw = model.raw(z, cond)
        lengths, frac = model.decode(raw, sg)
    raw, lengths, frac = raw.numpy().astype(float), lengths.numpy().astype(float), frac.numpy().astype(float)
    out = []
    for i, p in enumerate(points):
        ev = Evaluation(raw[i], premerge_fingerprint(lengths[i], frac[i], p.spacegroup) if premerge else None)
        for decoder in decoders:
            g = decode_crystal(p.elements, p.spacegroup, lengths[i], frac[i], decoder, flags="symmetry")
            s = g.structure
            fractions = {el.symbol: float(x) for el, x in s.composition.fractional_composition.items()}
            ev.final[decoder] = Final(rdf_fingerprint(s), fractions, len(s), s.composition.reduced_formula,
                                      int(g.flags["spacegroup_found"]), p.spacegroup, tuple(p.elements), g.orbit_sizes, g)
        out.append(ev)
    return out


def jump_cause(a: Final, b: Final) -> str | None:
    """The cause of a discrete change between two final crystals (:data:`CAUSES`, first that
    applies), or ``None`` when atom count, formula and spglib label all agree."""
    if a.key() == b.key():
        return None
    if a.requested != b.requested:
        return "spacegroup_change"
    if a.species != b.species:
        return "composition_change"
    if a.orbit_sizes != b.orbit_sizes:
        return "orbit_collapse"
    if a.n_atoms != b.n_atoms or a.formula != b.formula:
        return "merging"
    return "spglib_label_only"


def crystal_distance(a: Final, b: Final) -> float:
    """Final-stage change: RDF fingerprint RMS difference + composition total-variation distance
    (so a change of species or stoichiometry is seen, not only of geometry)."""
    return fingerprint_distance(a.fingerprint, b.fingerprint) + composition_distance(a.composition, b.composition)


def compare(a: Evaluation, b: Evaluation, decoder: str | None) -> dict:
    """Stage changes between two evaluations (raw: norm; fingerprints: RMS) and the jump cause."""
    out = {"d_raw": float(np.linalg.norm(a.raw - b.raw))}
    if a.premerge is not None and b.premerge is not None:
        out["d_premerge"] = fingerprint_distance(a.premerge, b.premerge)
    if decoder is not None:
        fa, fb = a.final[decoder], b.final[decoder]
        cause = jump_cause(fa, fb)
        out.update(d_final=crystal_distance(fa, fb), jump=cause is not None, cause=cause,
                   spacegroup_recovered=fb.spacegroup_found == fb.requested)
    return out


# ---------------------------------------------------------------------------- sweeps
def make_paths(model: CrystalGAN, base: InputPoint, *, steps: Sequence[float], n_noise_dims: int,
               n_element_partners: int, n_sg_switches: int, rng: np.random.Generator) -> list[Path]:
    """The perturbations of one base: ``n_noise_dims`` seeded noise coordinates and the nearest
    ``n_element_partners`` per basis position, each at every step; one element switch per
    partner; ``n_sg_switches`` seeded switches to other supported groups."""
    paths = []
    for d in sorted(rng.choice(model.noise_dim, size=min(n_noise_dims, model.noise_dim), replace=False).tolist()):
        paths += [noise_path(base, d, h) for h in steps]
    for k in range(3):
        for partner in element_partners(base.elements, k, n_element_partners):
            paths += [element_path(base, k, partner, h) for h in steps]
            paths.append(element_path(base, k, partner, None))
    others = [s for s in model.spacegroups if s != base.spacegroup]
    for s in rng.choice(others, size=min(n_sg_switches, len(others)), replace=False).tolist():
        paths.append(spacegroup_path(model, base, int(s)))
    return paths


def sweep(model: CrystalGAN, bases: Sequence[InputPoint], *, decoders: Sequence[str], steps: Sequence[float],
          n_noise_dims: int, n_element_partners: int, n_sg_switches: int, seed: int, progress: bool = True
          ) -> tuple[pd.DataFrame, list[Path]]:
    """One row per (path, decoder): group, dim, step, input length, stage changes
    (:func:`compare`), Lipschitz ratios ``lip_<stage>`` (change / length; NaN for switches) and
    the jump cause. Also returns the paths (row ``path`` indexes them)."""
    rng = np.random.default_rng(seed)
    rows, all_paths = [], []
    for b, base in enumerate(progress_bar(bases, desc="sweep", progress=progress)):
        paths = make_paths(model, base, steps=steps, n_noise_dims=n_noise_dims, n_element_partners=n_element_partners,
                           n_sg_switches=n_sg_switches, rng=rng)
        evs = evaluate(model, [base] + [p.point(1.0) for p in paths], decoders)
        for path, ev in zip(paths, evs[1:]):
            idx = len(all_paths)
            all_paths.append(path)
            for decoder in decoders:
                cmp = compare(evs[0], ev, decoder)
                row = {"path": idx, "base": b, "group": path.group, "dim": path.dim, "step": path.step,
                       "length": path.length, "decoder": decoder, "partner": path.partner,
                       "requested": path.point(1.0).spacegroup, **cmp}
                cont = path.group in CONTINUOUS_GROUPS
                for stage in STAGES:
                    row[f"lip_{stage}"] = cmp[f"d_{stage}"] / path.length if cont else np.nan
                rows.append(row)
    return pd.DataFrame(rows), all_paths


# ---------------------------------------------------------------------------- bisection
def bisect_paths(model: CrystalGAN, paths: Sequence[Path], *, stage: str, decoder: str | None, width: float,
                 max_iter: int = 64) -> pd.DataFrame:
    """Halve each path's segment until it is ``width`` input units wide, keeping the half where
    ``stage`` changes: for ``final`` the half across which the discrete jump persists, for
    ``raw``/``premerge`` the half with the larger change. One row per path: final width, the
    change of every stage across the last segment and its ratio (``lip_<stage>`` = change /
    width), the jump cause there (``final``) and whether the jump persisted."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {STAGES}")
    if stage == "final" and decoder is None:
        raise ValueError("bisecting the final stage needs a decoder")
    decs = (decoder,) if decoder is not None else ()
    pre = stage == "premerge"
    lo = np.zeros(len(paths))
    hi = np.ones(len(paths))
    ev_lo = evaluate(model, [p.point(0.0) for p in paths], decs if stage == "final" else (), pre)
    ev_hi = evaluate(model, [p.point(1.0) for p in paths], decs if stage == "final" else (), pre)
    lengths = np.array([p.length for p in paths])
    for _ in range(max_iter):
        active = np.nonzero((hi - lo) * lengths > width)[0]
        if not len(active):
            break
        mid = (lo[active] + hi[active]) / 2
        evs = evaluate(model, [paths[i].point(t) for i, t in zip(active, mid)], decs if stage == "final" else (), pre)
        for i, t, ev in zip(active, mid, evs):
            if stage == "final":
                left = ev_lo[i].final[decoder].key() != ev.final[decoder].key()
            else:
                key = f"d_{stage}"
                left = compare(ev_lo[i], ev, None)[key] >= compare(ev, ev_hi[i], None)[key]
            if left:
                hi[i], ev_hi[i] = t, ev
            else:
                lo[i], ev_lo[i] = t, ev
    # every stage (and the decoder's crystal, if given) at the end points of the last segments
    ev_lo = evaluate(model, [p.point(t) for p, t in zip(paths, lo)], decs, True)
    ev_hi = evaluate(model, [p.point(t) for p, t in zip(paths, hi)], decs, True)
    rows = []
    for i, p in enumerate(paths):
        w = max((hi[i] - lo[i]) * p.length, 1e-12)
        cmp = compare(ev_lo[i], ev_hi[i], decoder)
        row = {"stage": stage, "decoder": decoder, "group": p.group, "dim": p.dim, "step": p.step, "width": w, **cmp}
        for s in STAGES:
            if f"d_{s}" in cmp:
                row[f"lip_{s}"] = cmp[f"d_{s}"] / w
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- controls
class Staircase(nn.Module):
    """Rounds activations to multiples of ``step``: the identity up to ``step``/2, but
    discontinuous at every half-step (the positive control's rough layer)."""

    def __init__(self, step: float):
        super().__init__()
        self.step = float(step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x / self.step) * self.step


def rough_control(model: CrystalGAN, step: float) -> CrystalGAN:
    """A copy of ``model`` with a :class:`Staircase` after its first hidden activation."""
    rough = copy.deepcopy(model)
    layers = list(rough.generator)
    rough.generator = nn.Sequential(*layers[:2], Staircase(step), *layers[2:])
    return rough


def linear_control(model: CrystalGAN, *, n_fit: int, seed: int, conditions: str = "pgcgm") -> CrystalGAN:
    """A copy of ``model`` whose generator is one ``nn.Linear``: the least-squares fit of
    ``model``'s raw outputs on ``n_fit`` seeded inputs (a perfectly smooth network with outputs in
    the same range, decoded the same way)."""
    pts = base_points(model, n_fit, seed=seed, conditions=conditions)
    x = np.stack([np.concatenate([p.z, p.cond]) for p in pts]).astype(np.float64)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        y = model.generator(torch.as_tensor(x, dtype=dtype)).numpy().astype(np.float64)
    coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    lin = nn.Linear(x.shape[1], y.shape[1]).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(coef[:-1].T, dtype=dtype))
        lin.bias.copy_(torch.as_tensor(coef[-1], dtype=dtype))
    out = copy.deepcopy(model)
    out.generator = lin
    return out


# ---------------------------------------------------------------------------- verdict
def stage_verdict(sweep_ratios: np.ndarray, bisected_ratios: np.ndarray, *, factor: float) -> dict:
    """The verdict rule for one stage.

    Reference slope = median Lipschitz ratio of the sweep's largest steps (``sweep_ratios``).
    A bisected segment is *steep* when its ratio (change / final width) exceeds ``factor`` ×
    the reference: a Lipschitz map keeps ratios within the spread of its slopes at every scale
    (measured: < 100 × the median here), a discontinuity gives change / width → ∞ (a jump the
    size of a unit step, bisected to 1e-6, is 10⁶ × the reference); ``factor`` = 1000 sits between.
    The stage is ``rough`` when at least half of its bisected segments are steep; with no
    bisected segment (no jump to refine) it is smooth.
    """
    ref = float(np.median(sweep_ratios)) if len(sweep_ratios) else float("nan")
    b = np.asarray(bisected_ratios, dtype=float)
    steep = b > factor * ref if np.isfinite(ref) else np.zeros(len(b), dtype=bool)
    frac = float(steep.mean()) if len(b) else 0.0
    return {"reference_ratio": ref, "bisected": int(len(b)), "bisected_ratio_median": float(np.median(b)) if len(b) else float("nan"),
            "steep_fraction": frac, "rough": bool(len(b) and frac >= 0.5)}


def jump_locus(row: pd.Series, references: dict[str, float], factor: float) -> str:
    """Where a bisected final-stage jump's discontinuity sits (:data:`LOCI`): the first stage
    whose ratio across the last segment exceeds ``factor`` × that stage's reference."""
    for stage in STAGES:
        if row.get(f"lip_{stage}", 0.0) > factor * references[stage]:
            return LOCI[stage]
    return LOCI["final"]


def _rate(x: pd.Series) -> float:
    return float(x.mean()) if len(x) else float("nan")


@dataclass
class SmoothnessResult:
    """Sweeps and bisections of several generators (ours and controls) and decoders.

    ``perturbations``: :func:`sweep` rows with a ``generator`` column; ``bisections``:
    :func:`bisect_paths` rows with ``generator``; ``factor``: the verdict factor;
    ``small_step``: jump rates are also given for steps up to it.
    """

    perturbations: pd.DataFrame
    bisections: pd.DataFrame
    factor: float
    small_step: float
    largest_step: float

    def references(self, generator: str, decoder: str) -> dict[str, float]:
        """Median Lipschitz ratio per stage at the largest step (continuous groups)."""
        sw = self._sweep(generator, decoder)
        big = sw[np.isclose(sw["step"], self.largest_step)]
        return {s: float(big[f"lip_{s}"].median()) for s in STAGES}

    def _sweep(self, generator: str, decoder: str) -> pd.DataFrame:
        f = self.perturbations
        return f[(f["generator"] == generator) & (f["decoder"] == decoder) & f["group"].isin(CONTINUOUS_GROUPS)]

    def verdicts(self, generator: str, decoder: str) -> dict[str, dict]:
        """:func:`stage_verdict` per stage. ``raw``/``premerge`` use their own bisections (the
        network is the same for every decoder), ``final`` the bisected discrete jumps."""
        refs = self.references(generator, decoder)
        sw = self._sweep(generator, decoder)
        big = sw[np.isclose(sw["step"], self.largest_step)]
        b = self.bisections[self.bisections["generator"] == generator]
        out = {}
        for stage in STAGES:
            rows = b[(b["stage"] == stage) & ((b["decoder"] == decoder) if stage == "final" else True)]
            out[stage] = stage_verdict(big[f"lip_{stage}"].to_numpy(), rows[f"lip_{stage}"].to_numpy(), factor=self.factor)
            out[stage]["reference_ratio"] = refs[stage]
        return out

    def loci(self, generator: str, decoder: str) -> dict[str, int]:
        """Counts of bisected final-stage jumps per :data:`LOCI` value."""
        refs = self.references(generator, decoder)
        b = self.bisections
        rows = b[(b["generator"] == generator) & (b["stage"] == "final") & (b["decoder"] == decoder)]
        counts = {v: 0 for v in LOCI.values()}
        for _, r in rows.iterrows():
            counts[jump_locus(r, refs, self.factor)] += 1
        return counts

    def summary(self, generator: str, decoder: str) -> dict:
        """Headline numbers of one (generator, decoder)."""
        sw = self._sweep(generator, decoder)
        small = sw[sw["step"] <= self.small_step]
        jumps = sw[sw["jump"]]
        verdicts = self.verdicts(generator, decoder)
        first = next((s for s in STAGES if verdicts[s]["rough"]), "none")
        f = self.perturbations
        sgs = f[(f["generator"] == generator) & (f["decoder"] == decoder) & (f["group"] == "spacegroup_switch")]
        els = f[(f["generator"] == generator) & (f["decoder"] == decoder) & (f["group"] == "element_switch")]
        fin = self.bisections[(self.bisections["generator"] == generator) & (self.bisections["stage"] == "final")
                              & (self.bisections["decoder"] == decoder)]
        return {
            "lipschitz_raw_median": float(sw["lip_raw"].median()), "lipschitz_raw_p95": float(sw["lip_raw"].quantile(0.95)),
            "lipschitz_premerge_median": float(sw["lip_premerge"].median()),
            "lipschitz_premerge_p95": float(sw["lip_premerge"].quantile(0.95)),
            "lipschitz_final_median": float(sw["lip_final"].median()),
            "lipschitz_final_p95": float(sw["lip_final"].quantile(0.95)),
            "jump_rate": _rate(sw["jump"]), "jump_rate_small_steps": _rate(small["jump"]),
            "jump_rate_decoding": _rate(sw["jump"] & ~sw["cause"].isin(INPUT_CAUSES)),
            "jump_rate_noise": _rate(sw[sw["group"] == "noise"]["jump"]),
            "jump_rate_elements": _rate(sw[sw["group"] == "elements"]["jump"]),
            "n_perturbations": int(len(sw)),
            "jump_cause": {c: int((jumps["cause"] == c).sum()) for c in CAUSES},
            "rough": {s: verdicts[s]["rough"] for s in STAGES},
            "bisected_ratio_median": {s: verdicts[s]["bisected_ratio_median"] for s in STAGES},
            "reference_ratio": {s: verdicts[s]["reference_ratio"] for s in STAGES},
            "roughness_enters_at": first,
            "jump_locus": self.loci(generator, decoder),
            "bisected_jump_raw_change_max": float(fin["d_raw"].max()) if len(fin) else float("nan"),
            "bisected_jump_premerge_change_max": float(fin["d_premerge"].max()) if len(fin) else float("nan"),
            "bisected_jump_final_change_median": float(fin["d_final"].median()) if len(fin) else float("nan"),
            "spacegroup_switch_recovery": _rate(sgs["spacegroup_recovered"]),
            "spacegroup_switch_raw_change_median": float(sgs["d_raw"].median()) if len(sgs) else float("nan"),
            "element_switch_jump_rate": _rate(els["jump"]),
        }

    def verdict_table(self, combos: Sequence[tuple[str, str]]) -> pd.DataFrame:
        """One row per (generator, decoder): smooth/rough per stage and where roughness enters."""
        rows = []
        for g, d in combos:
            s = self.summary(g, d)
            rows.append({"generator": g, "decoder": d,
                         **{f"{st} (median ratio)": f"{'rough' if s['rough'][st] else 'smooth'} "
                            f"({s['reference_ratio'][st]:.3g})" for st in STAGES},
                         "jump rate": s["jump_rate"], "roughness enters at": s["roughness_enters_at"]})
        return pd.DataFrame(rows).set_index(["generator", "decoder"])


def run_smoothness(generators: dict[str, tuple[CrystalGAN, Sequence[str]]], bases: Sequence[InputPoint], *,
                   steps: Sequence[float], n_noise_dims: int, n_element_partners: int, n_sg_switches: int,
                   max_bisect: int, bisect_width: float, factor: float, small_step: float, seed: int,
                   progress: bool = True) -> SmoothnessResult:
    """Sweeps of every generator (name → (model, decoders)) around the same ``bases`` and their
    bisections: per network, the ``max_bisect`` steepest continuous segments of the raw output and
    of the pre-merge cell (at the largest step); per decoder, up to ``max_bisect`` seeded jumping
    segments of the final crystal whose cause is the decoding's (not :data:`INPUT_CAUSES`)."""
    steps = sorted(float(s) for s in steps)
    frames, bis = [], []
    for name, (model, decoders) in generators.items():
        sw, paths = sweep(model, bases, decoders=decoders, steps=steps, n_noise_dims=n_noise_dims,
                          n_element_partners=n_element_partners, n_sg_switches=n_sg_switches, seed=seed, progress=progress)
        frames.append(sw.assign(generator=name))
        cont = sw[sw["group"].isin(CONTINUOUS_GROUPS) & (sw["decoder"] == decoders[0])]
        big = cont[np.isclose(cont["step"], steps[-1])]
        for stage in ("raw", "premerge"):
            top = big.nlargest(max_bisect, f"lip_{stage}")["path"].tolist()
            bis.append(bisect_paths(model, [paths[i] for i in top], stage=stage, decoder=None, width=bisect_width)
                       .assign(generator=name))
        for decoder in decoders:   # jumps made by the decoding, not by a switched species or group
            jumps = sw[sw["group"].isin(CONTINUOUS_GROUPS) & (sw["decoder"] == decoder) & sw["jump"]
                       & ~sw["cause"].isin(INPUT_CAUSES)]
            if len(jumps) > max_bisect:
                jumps = jumps.sample(n=max_bisect, random_state=seed)
            if len(jumps):
                bis.append(bisect_paths(model, [paths[i] for i in jumps["path"]], stage="final", decoder=decoder,
                                        width=bisect_width).assign(generator=name))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The behavior of DataFrame concatenation with empty", category=FutureWarning)
        bisections = pd.concat(bis, ignore_index=True)
    return SmoothnessResult(pd.concat(frames, ignore_index=True), bisections, factor, small_step, steps[-1])
