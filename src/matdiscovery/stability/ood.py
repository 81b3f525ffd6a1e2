"""How far materials are from the composition judge's training data.

- embedding distance: mean Euclidean distance from a material's Roost embedding to its ``k``
  nearest training materials (same embedding);
- element coverage: the number of training formulas containing the material's rarest element
  (0 = an element the judge never saw).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from pymatgen.core import Composition
from sklearn.neighbors import NearestNeighbors


class EmbeddingDomain:
    """Nearest-neighbour distances in the composition judge's embedding space.

    ``judge`` is a :class:`~matdiscovery.stability.composition_judge.CompositionJudge`; the
    reference set is its ``train_formulas`` (or ``reference`` compositions if given).
    """

    def __init__(self, judge, k: int = 5, reference: Sequence[Composition] | None = None):
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        self.judge, self.k = judge, k
        comps = list(reference) if reference is not None else [Composition(f) for f in judge.train_formulas]
        if len(comps) < k:
            raise ValueError(f"need at least k={k} reference materials, got {len(comps)}")
        self.reference_formulas = {Composition(c).reduced_formula for c in comps}
        self.nn = NearestNeighbors(n_neighbors=k).fit(judge.embed(comps))

    def distance(self, compositions: Sequence[Composition]) -> np.ndarray:
        """Mean distance to the ``k`` nearest reference embeddings (embedding units)."""
        if len(compositions) == 0:
            return np.empty(0)
        d, _ = self.nn.kneighbors(self.judge.embed(list(compositions)))
        return d.mean(axis=1)


def element_counts(formulas: Sequence[str]) -> Counter:
    """How many of ``formulas`` contain each element symbol."""
    counts: Counter = Counter()
    for f in formulas:
        counts.update(el.symbol for el in Composition(f).elements)
    return counts


def element_coverage(compositions: Sequence[Composition], counts: Counter) -> np.ndarray:
    """For each composition, the training count of its rarest element (0 = unseen element)."""
    return np.array([min(counts.get(el.symbol, 0) for el in Composition(c).elements) for c in compositions], dtype=float)
