"""Hidden groups closed under chemical similarity.

A family hidden from training must not leave a near-duplicate behind: the **components** used
for hiding (and for grouped cross-validation) are the connected components of a graph over the
SuperCon-derived compounds whose edges join

* compounds with the same family label (:func:`~matdiscovery.superconductors.cleaning.family_group`:
  the chemical class for cuprates, iron-based, hydrides, fullerenes, bismuthates, else the SuperCon
  structure label, else the chemical system), and
* **near-duplicates**: the same chemical system and composition L1 distance < ``near_l1``.

So no hidden compound has a visible compound of the same chemical system within L1 < ``near_l1``
(:func:`near_duplicate_fraction` measures exactly that and is 0 by construction).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Composition
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from matdiscovery.superconductors.compounds import within_l1


def similarity_components(compositions: Sequence[Composition], labels: Sequence[str] | None = None,
                          near_l1: float = 0.1) -> np.ndarray:
    """Component name for each compound: the most frequent label in its component.

    Rows sharing a label, and near-duplicates (same chemical system, L1 < ``near_l1``), end up in
    one component; a label names exactly one component, so the most frequent one is a unique name.
    Without ``labels`` only near-duplicates are joined (labels = reduced formulas).
    """
    compositions = list(compositions)
    if labels is None:
        labels = [c.reduced_formula for c in compositions]
    labels = np.asarray(labels, dtype=object)
    if len(compositions) != len(labels):
        raise ValueError(f"{len(compositions)} compositions but {len(labels)} labels")
    n = len(compositions)
    codes, uniques = pd.factorize(labels)
    pairs = np.array(within_l1(compositions, compositions, near_l1, same_system=True), dtype=np.int64).reshape(-1, 2)
    # nodes: compounds 0..n-1, then one node per label
    rows = np.concatenate([np.arange(n), pairs[:, 0]])
    cols = np.concatenate([n + codes, pairs[:, 1]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n + len(uniques),) * 2)
    _, comp = connected_components(graph, directed=False)
    frame = pd.DataFrame({"comp": comp[:n], "label": labels})
    name = frame.groupby("comp")["label"].agg(lambda s: s.value_counts().sort_index(kind="stable").idxmax())
    return name.loc[comp[:n]].to_numpy(object)


def near_duplicate_fraction(query: Sequence[Composition], reference: Sequence[Composition], near_l1: float = 0.1) -> float:
    """Fraction of ``query`` compositions with a ``reference`` composition of the same chemical
    system within L1 < ``near_l1`` (e.g. hidden positives vs training positives)."""
    query = list(query)
    if not query:
        return 0.0
    pairs = within_l1(query, list(reference), near_l1, same_system=True)
    return len({i for i, _ in pairs}) / len(query)
