"""Space-group symmetry: affine operations, lattices from tied lengths, orbit expansion, merging.

Operations come from pymatgen's :class:`~pymatgen.symmetry.groups.SpaceGroup` (conventional
setting, lattice centring included, hexagonal setting for R groups), as 4×4 affine matrices
acting on fractional coordinates. Only space groups with fixed cell angles are supported
(cubic, tetragonal, orthorhombic, trigonal/hexagonal), as in PGCGM: the generator predicts
three lengths (Å) tied by a per-crystal-system pattern.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure
from pymatgen.symmetry.groups import SpaceGroup
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: length tie pattern (which raw length feeds a, b, c) and fixed angles (deg) per crystal system
CRYSTAL_SYSTEMS: dict[str, tuple[tuple[int, int, int], tuple[float, float, float]]] = {
    "cubic": ((0, 0, 0), (90.0, 90.0, 90.0)),
    "tetragonal": ((0, 0, 2), (90.0, 90.0, 90.0)),
    "orthorhombic": ((0, 1, 2), (90.0, 90.0, 90.0)),
    "hexagonal": ((0, 0, 2), (90.0, 90.0, 120.0)),
    "trigonal": ((0, 0, 2), (90.0, 90.0, 120.0)),
}


def check_spacegroup(number: int) -> int:
    """Return ``number`` as int if it is an international space-group number 1–230, else raise."""
    try:
        n = int(number)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"space group must be an integer 1-230, got {number!r}") from exc
    if n != number or not 1 <= n <= 230:
        raise ValueError(f"space group must be an integer 1-230, got {number!r}")
    return n


@lru_cache(maxsize=None)
def crystal_system(number: int) -> str:
    return SpaceGroup.from_int_number(check_spacegroup(number)).crystal_system


def is_supported(number: int) -> bool:
    """True when the space group has fixed cell angles (the generator can build its lattice)."""
    return crystal_system(number) in CRYSTAL_SYSTEMS


@lru_cache(maxsize=None)
def symmetry_operations(number: int) -> np.ndarray:
    """``(M, 4, 4)`` affine matrices (fractional coordinates) of space group ``number``."""
    sg = SpaceGroup.from_int_number(check_spacegroup(number))
    return np.array([op.affine_matrix for op in sg.symmetry_ops], dtype=float)


def tied_lengths(raw: np.ndarray, number: int) -> np.ndarray:
    """Apply the crystal-system tie pattern to raw lengths ``(..., 3)`` (Å)."""
    system = crystal_system(number)
    if system not in CRYSTAL_SYSTEMS:
        raise ValueError(f"space group {number} is {system}: cell angles are free; only "
                         f"{sorted(CRYSTAL_SYSTEMS)} systems are supported")
    idx, _ = CRYSTAL_SYSTEMS[system]
    return np.asarray(raw)[..., list(idx)]


def lattice_for(lengths: np.ndarray, number: int) -> Lattice:
    """pymatgen Lattice of space group ``number`` from raw lengths (Å), ties and angles applied."""
    a, b, c = tied_lengths(np.asarray(lengths, dtype=float), number)
    _, angles = CRYSTAL_SYSTEMS[crystal_system(number)]
    return Lattice.from_parameters(a, b, c, *angles)


def lattice_matrix_torch(lengths: torch.Tensor, gamma_deg: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` row-vector lattice matrices (Å) for α = β = 90°, γ given per sample (deg).

    ``lengths`` is ``(B, 3)`` (already tied). Differentiable in the lengths.
    """
    g = torch.deg2rad(gamma_deg)
    a, b, c = lengths[:, 0], lengths[:, 1], lengths[:, 2]
    zero = torch.zeros_like(a)
    row_a = torch.stack([a, zero, zero], dim=-1)
    row_b = torch.stack([b * torch.cos(g), b * torch.sin(g), zero], dim=-1)
    row_c = torch.stack([zero, zero, c], dim=-1)
    return torch.stack([row_a, row_b, row_c], dim=1)


def expand_orbits(frac: np.ndarray, number: int, tol: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply every operation of space group ``number`` to basis points ``frac`` ``(k, 3)``.

    Returns ``(coords (n, 3) in [0, 1), basis index (n,), operation index (n,))`` with exact
    duplicates removed within each orbit: an image is dropped when an earlier image of the same
    basis point is within ``tol`` (fractional, periodic, every coordinate).
    """
    ops = symmetry_operations(number)
    frac = np.atleast_2d(np.asarray(frac, dtype=float))
    img = (np.einsum("mij,kj->kmi", ops[:, :3, :3], frac) + ops[None, :, :3, 3]) % 1.0       # (k, M, 3)
    d = img[:, :, None] - img[:, None]
    close = (np.abs(d - np.round(d)) < tol).all(-1)                                       # (k, M, M)
    earlier = np.tril(close, -1).any(axis=2)                                              # a duplicate of an earlier image
    owner, opidx = np.nonzero(~earlier)
    return img[owner, opidx] % 1.0, owner, opidx


def build_structure(species: list[str], frac: np.ndarray, lengths: np.ndarray, number: int, tol: float = 1e-3) -> Structure:
    """Structure from basis atoms (one species per basis point) expanded by space group ``number``
    (exact duplicates only are merged; see :func:`merge_close_atoms` for PGCGM's merging)."""
    lattice = lattice_for(lengths, number)
    coords, owner, _ = expand_orbits(frac, number, tol)
    return Structure(lattice, [species[k] for k in owner], coords)


@lru_cache(maxsize=None)
def atomic_radius(element: str | int) -> float:
    """pymatgen atomic radius (Å) of an element (symbol or Z); raises for elements without one."""
    el = Element.from_Z(element) if isinstance(element, (int, np.integer)) else Element(element)
    if el.atomic_radius is None:
        raise ValueError(f"element {el.symbol} has no atomic radius in pymatgen; it cannot be generated")
    return float(el.atomic_radius)


@lru_cache(maxsize=None)
def identity_index(number: int) -> int:
    """Index of the identity among :func:`symmetry_operations` of space group ``number``."""
    ops = symmetry_operations(number)
    idx = np.nonzero(np.all(np.abs(ops - np.eye(4)) < 1e-9, axis=(1, 2)))[0]
    return int(idx[0])


def _op_codes(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """One integer per affine operation: rotation entries (in -2..2) and translation mod 1 in
    units of 1/24 (every crystallographic translation is a multiple of 1/24)."""
    digits = np.concatenate([rot.reshape(len(rot), 9) + 2, np.rint((trans % 1.0) * 24).astype(int) % 24], axis=1)
    bases = np.array([5] * 9 + [24] * 3, dtype=np.int64)
    weights = np.concatenate([[1], np.cumprod(bases[:-1])])
    return (digits.astype(np.int64) * weights).sum(axis=1)


@lru_cache(maxsize=None)
def multiplication_table(number: int) -> np.ndarray:
    """``(M, M)`` table: ``table[a, b]`` is the index of operation ``a ∘ b`` (translations mod 1)."""
    ops = symmetry_operations(number)
    rot = np.rint(ops[:, :3, :3]).astype(int)
    trans = ops[:, :3, 3]
    codes = _op_codes(rot, trans)
    order = np.argsort(codes)
    comp_rot = np.einsum("aij,bjk->abik", rot, rot).reshape(-1, 3, 3)
    comp_trans = (np.einsum("aij,bj->abi", rot, trans) + trans[:, None, :]).reshape(-1, 3)
    comp = _op_codes(comp_rot, comp_trans)
    pos = np.searchsorted(codes[order], comp)
    if not np.array_equal(codes[order][np.clip(pos, 0, len(codes) - 1)], comp):
        raise RuntimeError(f"space group {number}: operations are not closed under composition")
    return order[pos].reshape(len(ops), len(ops))


def closure(members: np.ndarray, number: int) -> np.ndarray:
    """Boolean mask of the subgroup of space group ``number`` generated by ``members`` (mask)."""
    table = multiplication_table(number)
    h = np.asarray(members, dtype=bool).copy()
    h[identity_index(number)] = True
    while True:
        idx = np.nonzero(h)[0]
        new = h.copy()
        new[table[np.ix_(idx, idx)].ravel()] = True
        if new.sum() == h.sum():
            return h
        h = new


def snap_to_wyckoff(frac: np.ndarray, number: int, lattice: np.ndarray, tol: float, max_iter: int = 8
                    ) -> tuple[np.ndarray, int]:
    """Project one basis point onto the special (Wyckoff) position of its approximate site symmetry.

    The site-symmetry group ``H`` is the subgroup generated by the operations that move ``frac``
    by less than ``tol`` Å (nearest periodic image; ``lattice`` rows in Å); the point is replaced
    by the average of its images under ``H`` (the projection onto ``H``'s fixed subspace, exact
    when ``H`` is a group), repeated until ``H`` stops growing. Returns ``(point in [0, 1)³,
    |H|)``; the orbit of the snapped point then has exactly ``M / |H|`` distinct sites. Inside a
    region of fixed ``H`` the result is affine (continuous) in ``frac``.
    """
    ops = symmetry_operations(number)
    p = np.asarray(frac, dtype=float) % 1.0
    h = np.zeros(len(ops), dtype=bool)
    for _ in range(max_iter):
        img = np.einsum("mij,j->mi", ops[:, :3, :3], p) + ops[:, :3, 3]
        delta = img - p
        delta -= np.round(delta)
        near = np.linalg.norm(delta @ lattice, axis=1) < tol
        new = closure(near | h, number)
        if new.sum() == h.sum() and (new == h).all():
            break
        h = new
        p = (p + delta[h].mean(axis=0)) % 1.0
    p[np.isclose(p, 1.0, atol=1e-9)] = 0.0
    return p, int(h.sum())


def merge_clusters(frac: np.ndarray, numbers: np.ndarray, lattice: Lattice, factor: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PGCGM's ``merge_same_element(prop=factor)`` on arrays: same-element atoms closer than
    ``2 · factor ·`` atomic radius (Å, minimum image) are clustered by single linkage and each
    cluster is replaced by its periodic mean. Returns ``(frac, numbers, index of each cluster's
    first site)``; clusters are ordered by their lowest site index."""
    from pymatgen.optimization.neighbors import find_points_in_spheres

    frac = np.asarray(frac, dtype=float)
    numbers = np.asarray(numbers)
    n = len(frac)
    if n <= 1:
        return frac, numbers, np.arange(n)
    radius = np.array([atomic_radius(int(z)) for z in numbers])
    cart = frac @ lattice.matrix
    i, j, _, d = find_points_in_spheres(cart, cart, float(2 * factor * radius.max()) + 1e-8,
                                        np.ones(3, dtype=np.int64), lattice.matrix, tol=1e-12)
    keep = (i != j) & (numbers[i] == numbers[j]) & (d <= 2 * factor * radius[i])
    graph = coo_matrix((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(n, n))
    n_clusters, labels = connected_components(graph, directed=False)
    if n_clusters == n:
        return frac, numbers, np.arange(n)
    first = np.full(n_clusters, n)
    np.minimum.at(first, labels, np.arange(n))
    order = np.argsort(first)                                   # clusters by their lowest site index
    rank = np.empty(n_clusters, dtype=int)
    rank[order] = np.arange(n_clusters)
    lab = rank[labels]
    ref = frac[first[order]][lab]
    delta = frac - ref
    delta -= np.round(delta)
    sums = np.zeros((n_clusters, 3))
    np.add.at(sums, lab, delta)
    counts = np.bincount(lab, minlength=n_clusters)[:, None]
    new = (frac[first[order]] + sums / counts) % 1.0
    return new, numbers[first[order]], first[order]


def merge_close_atoms(structure: Structure, factor: float, provenance: np.ndarray | None = None
                      ) -> tuple[Structure, np.ndarray | None]:
    """:func:`merge_clusters` on a :class:`Structure`; ``provenance`` (one row per site) is
    reduced to each cluster's first site."""
    numbers = np.array([s.specie.Z for s in structure])
    frac, nums, first = merge_clusters(structure.frac_coords, numbers, structure.lattice, factor)
    if len(first) == len(structure):
        return structure, provenance
    merged = Structure(structure.lattice, [int(z) for z in nums], frac)
    return merged, (None if provenance is None else provenance[first])
