"""Decoding throughput of the PGCGM-style generator on CPU (structures/s), ours vs PGCGM's route.

Both decode the same generator outputs (the trained checkpoint if present) with PGCGM's merging
rule (same-element single linkage at 2 × 0.6 × radius, again at 2 × 1.5 × radius above 100 atoms):

- ours (:func:`matdiscovery.generator.sampling.decode_crystal`, ``flags="symmetry"``): batched
  orbit expansion with cached affine operations, merging on arrays with pymatgen's cython
  neighbour list and scipy's connected components, one ``Structure`` at the end, spglib;
- baseline, the route of PGCGM's scripts: ``Structure.from_spacegroup`` for the expansion,
  ``distance_matrix`` + ``scipy.cluster.hierarchy`` single-linkage clustering per element and
  running cluster means (as ``merge_valid.py``), then ``get_space_group_info``.

Prints the median of ``--repeats`` runs of each, the ratio, and how many atom counts agree.

    python benchmarks/bench_generator.py [--n 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch


def pgcgm_route(elements, number, lengths, frac):
    """The baseline: PGCGM's post-processing expressed with pymatgen and scipy."""
    from pymatgen.core import Structure
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    from matdiscovery.generator.symmetry import atomic_radius, lattice_for

    s = Structure.from_spacegroup(number, lattice_for(lengths, number), list(elements), frac, tol=1e-3)

    def merge(structure, prop):
        species, coords = [], []
        for el in sorted({site.specie.symbol for site in structure}):
            sites = [site for site in structure if site.specie.symbol == el]
            if len(sites) == 1:
                species.append(el)
                coords.append(sites[0].frac_coords)
                continue
            f = np.array([site.frac_coords for site in sites])
            d = structure.lattice.get_all_distances(f, f)
            np.fill_diagonal(d, 0)
            labels = fcluster(linkage(squareform((d + d.T) / 2)), atomic_radius(el) * 2 * prop, "distance")
            for c in np.unique(labels):
                idx = np.nonzero(labels == c)[0]
                ref = f[idx[0]].copy()
                for n, i in enumerate(idx[1:]):
                    off = f[i] - ref
                    ref = ref + (off - np.round(off)) / (n + 2)
                species.append(el)
                coords.append(ref % 1.0)
        return Structure(structure.lattice, species, coords)

    s = merge(s, 0.6)
    if len(s) > 100:
        s = merge(s, 1.5)
    s.get_space_group_info(symprec=0.1)
    return s


def main() -> None:
    from matdiscovery.generator.model import load_generator
    from matdiscovery.generator.sampling import decode_crystal, raw_batch, sample_conditions
    from matdiscovery.paths import models_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="structures decoded per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*fractional coordinates.*", category=UserWarning)

    path = models_dir() / "generator" / "generator.pt"
    if path.exists():
        model, label = load_generator(path), f"trained checkpoint {path}"
    else:
        from matdiscovery.generator.model import CrystalGAN

        model, label = CrystalGAN([221, 225, 123, 194], 1.4, 0.2), "UNTRAINED model (no checkpoint; run `dvc repro train_generator`)"
    elements, groups = sample_conditions(model, args.n, np.random.default_rng(0), "pgcgm")
    z = torch.randn(args.n, model.noise_dim, generator=torch.Generator().manual_seed(0))
    els, lengths, frac, _ = raw_batch(model, elements, groups, z)
    jobs = list(zip(els, groups, lengths, frac))

    times = {"ours": [], "baseline": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = [decode_crystal(e, g, ln, f, "pgcgm", flags="symmetry").structure for e, g, ln, f in jobs]
        times["ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        base = [pgcgm_route(e, g, ln, f) for e, g, ln, f in jobs]
        times["baseline"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    agree = np.mean([len(a) == len(b) for a, b in zip(ours, base)])
    print(f"model: {label}; {args.n} structures, {args.repeats} repeats, torch threads {args.threads}")
    for k in ("ours", "baseline"):
        print(f"{k:9s}: median {args.n / med[k]:7.1f} structures/s (runs: {', '.join(f'{args.n / t:.1f}' for t in times[k])})")
    print(f"ratio ours/baseline: {med['baseline'] / med['ours']:.1f}x; atom counts agree on {100 * agree:.0f} % of structures")


if __name__ == "__main__":
    main()
