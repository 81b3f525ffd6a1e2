"""Formula style: what a formula looks like regardless of which elements it holds.

The provenance shortcut of a candidate pool is measured and removed here:

* :func:`formula_style_features`: stoichiometry norms, element count, atoms per formula unit,
  extreme fractions, integer-ness, all functions of the amounts alone (never of element identity);
* :func:`formula_style_scores` / :func:`formula_style_auc`: ROC-AUC of a classifier that tells
  SuperCon-derived from JARVIS-derived rows from those features (0.5 = indistinguishable);
* :func:`match_formula_style`: draws JARVIS negatives with exactly the anonymized formulas
  (``AB2C2``…) of the SuperCon-derived pool rows, ``ratio`` per row, so every formula-style
  feature has the same distribution on both sides.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Composition
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from matdiscovery.superconductors.compounds import INTEGER_TOL

#: Stoichiometry norms (Ward et al. 2016) used as style features; p = 0 is the element count.
STYLE_NORMS = (2, 3, 5, 7, 10)
STYLE_FEATURES = ("n_elements", *(f"norm_{p}" for p in STYLE_NORMS), "atoms_per_formula", "max_fraction",
                  "min_fraction", "integer_as_written")


def formula_style_features(compositions: Sequence[Composition]) -> np.ndarray:
    """``(n, len(STYLE_FEATURES))`` style features of compositions as written (see module doc)."""
    if len(compositions) == 0:
        raise ValueError("formula_style_features got no compositions")
    out = np.empty((len(compositions), len(STYLE_FEATURES)))
    for i, comp in enumerate(compositions):
        amounts = np.array(list(comp.values()), dtype=float)
        if amounts.size == 0 or amounts.sum() <= 0:
            raise ValueError(f"composition {i} ({comp}) is empty")
        frac = amounts / amounts.sum()
        norms = [float((frac**p).sum() ** (1.0 / p)) for p in STYLE_NORMS]
        integer = float(np.all(np.abs(amounts - np.round(amounts)) < INTEGER_TOL))
        out[i] = [len(amounts), *norms, amounts.sum(), frac.max(), frac.min(), integer]
    return out


def anonymized_formulas(compositions: Sequence[Composition]) -> np.ndarray:
    """pymatgen anonymized reduced formulas (``Nb3Sn`` → ``AB3``, ``BaFe2As2`` → ``AB2C2``)."""
    return np.array([c.anonymized_formula for c in compositions], dtype=object)


def formula_style_scores(features: np.ndarray, is_supercon: np.ndarray, seed: int = 0, n_folds: int = 5) -> np.ndarray:
    """Out-of-fold P(SuperCon-derived) of every compound from an extremely-randomised-trees
    classifier on style ``features`` alone, trained on the whole (unmatched) compound table.

    The ROC-AUC of these scores over a pool's rows (:func:`formula_style_auc`) measures how well
    provenance can be read off a pool's formulas. Cross-validating *within* an exactly matched
    pool would be biased below 0.5: holding out a row leaves the opposite label imbalance in its
    stratum of the training fold.
    """
    y = np.asarray(is_supercon, dtype=int)
    if len(y) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(y)} labels")
    if min(y.sum(), (1 - y).sum()) < n_folds:
        raise ValueError(f"each class needs ≥ {n_folds} rows for {n_folds}-fold scores")
    clf = ExtraTreesClassifier(n_estimators=100, min_samples_leaf=5, random_state=seed, n_jobs=2)
    return cross_val_predict(clf, features, y, cv=StratifiedKFold(n_folds, shuffle=True, random_state=seed),
                             method="predict_proba")[:, 1]


def formula_style_auc(scores: np.ndarray, is_supercon: np.ndarray, rows: np.ndarray | None = None) -> float:
    """ROC-AUC of :func:`formula_style_scores` over ``rows`` (all rows by default): 0.5 means a
    formula's style does not tell where it came from; NaN if ``rows`` hold one class only."""
    y = np.asarray(is_supercon, dtype=int)
    sc = np.asarray(scores, dtype=float)
    if rows is not None:
        y, sc = y[rows], sc[rows]
    return float(roc_auc_score(y, sc)) if 0 < y.sum() < len(y) else float("nan")


def match_formula_style(supercon_style: np.ndarray, jarvis_style: np.ndarray, ratio: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Exact matching on anonymized formulas.

    For every anonymized formula ``a`` with ``n_s`` SuperCon rows and ``n_j`` JARVIS rows, keep
    ``m = min(n_s, n_j // ratio)`` SuperCon rows and ``ratio · m`` JARVIS rows, both drawn at
    random (never by label). Returns positions into the two inputs (kept SuperCon, drawn JARVIS).
    """
    if ratio < 1:
        raise ValueError(f"ratio must be ≥ 1 JARVIS row per SuperCon row, got {ratio}")
    s = pd.Series(np.arange(len(supercon_style))).groupby(np.asarray(supercon_style, dtype=object))
    j_groups = pd.Series(np.arange(len(jarvis_style))).groupby(np.asarray(jarvis_style, dtype=object)).indices
    keep_s, keep_j = [], []
    for anon, rows in sorted(s.indices.items()):
        j_rows = j_groups.get(anon, np.array([], dtype=np.int64))
        m = min(len(rows), len(j_rows) // ratio)
        if m == 0:
            continue
        keep_s.append(rng.choice(rows, size=m, replace=False))
        keep_j.append(rng.choice(j_rows, size=ratio * m, replace=False))
    if not keep_s:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    return np.sort(np.concatenate(keep_s)), np.sort(np.concatenate(keep_j))
