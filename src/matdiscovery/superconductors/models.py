"""Tc models on Magpie-style composition features: a tree-ensemble classifier for
``Tc ≥ threshold`` with per-tree uncertainty, a Tc regressor, calibration, and cross-validation
with random and family-grouped splits; a Roost network evaluated the same way.

Why trees in the loop: one closed loop refits the classifier every cycle (4 cycles × 3
acquisition functions × ≥ 10 seeds, open-loop baselines included) on ~15k compositions with 2
CPU cores. An extremely-randomised-trees forest fits in ~1 s and its trees are the ensemble
whose spread gives the uncertainty for UCB; a Roost ensemble would take minutes per fit. Roost
is trained once per split in cross-validation (:func:`roost_cross_validate`) for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pymatgen.core import Composition
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.metrics import accuracy_score, brier_score_loss, r2_score, roc_auc_score
from sklearn.model_selection import GroupKFold, KFold

from matdiscovery.composition import magpie_features


def featurize(compositions: Sequence[Composition]) -> np.ndarray:
    """Magpie-style statistics ``(n, 144)`` of ``compositions`` (see :mod:`matdiscovery.composition`)."""
    if len(compositions) == 0:
        raise ValueError("featurize got no compositions")
    return magpie_features(list(compositions))


def labels(tc_K: np.ndarray, threshold_K: float) -> np.ndarray:
    """``1`` where ``tc_K ≥ threshold_K`` (K), else ``0``; NaN Tc is an error."""
    tc = np.asarray(tc_K, dtype=float)
    if np.isnan(tc).any():
        raise ValueError(f"{int(np.isnan(tc).sum())} NaN Tc value(s): give 0 K for known non-superconductors")
    if threshold_K <= 0:
        raise ValueError(f"threshold_K must be > 0 K, got {threshold_K}")
    return (tc >= threshold_K).astype(np.int64)


class TcClassifierEnsemble:
    """``P(Tc ≥ threshold)`` from an extremely-randomised-trees forest (bootstrap samples).

    :meth:`predict_dist` gives the mean and the standard deviation over trees (the ensemble
    spread used by UCB acquisition). Trained on feature matrices (see :func:`featurize`).
    """

    def __init__(self, n_estimators: int = 100, min_samples_leaf: int = 1, max_features: str | float = "sqrt",
                 seed: int = 0, n_jobs: int = 2):
        if n_estimators < 2:
            raise ValueError(f"an ensemble needs n_estimators ≥ 2, got {n_estimators}")
        self.forest = ExtraTreesClassifier(
            n_estimators=n_estimators, min_samples_leaf=min_samples_leaf, max_features=max_features,
            bootstrap=True, class_weight="balanced_subsample", random_state=seed, n_jobs=n_jobs,
        )

    def fit(self, X: np.ndarray, y: np.ndarray) -> "TcClassifierEnsemble":
        y = np.asarray(y)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        if len(np.unique(y)) < 2:
            raise ValueError("training labels hold a single class; need both Tc ≥ T and Tc < T examples")
        self.forest.fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Mean over trees of P(Tc ≥ T), shape ``(n,)``."""
        return self.forest.predict_proba(X)[:, 1]

    def predict_dist(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of P(Tc ≥ T) over the trees."""
        col = list(self.forest.classes_).index(1)
        per_tree = np.stack([t.predict_proba(X)[:, col] for t in self.forest.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)


class TcRegressor:
    """Tc (K) regressor: extremely-randomised trees on ``log(1 + Tc)``; predictions in K."""

    def __init__(self, n_estimators: int = 100, min_samples_leaf: int = 1, seed: int = 0, n_jobs: int = 2):
        self.forest = ExtraTreesRegressor(
            n_estimators=n_estimators, min_samples_leaf=min_samples_leaf, max_features=0.3,
            random_state=seed, n_jobs=n_jobs,
        )

    def fit(self, X: np.ndarray, tc_K: np.ndarray) -> "TcRegressor":
        tc = np.asarray(tc_K, dtype=float)
        if (tc < 0).any() or np.isnan(tc).any():
            raise ValueError("Tc must be finite and ≥ 0 K")
        self.forest.fit(X, np.log1p(tc))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted Tc in K."""
        return np.expm1(self.forest.predict(X))


@dataclass
class CVResult:
    """Out-of-fold predictions and scores of one split kind (``random`` or ``grouped``)."""

    split: str
    proba: np.ndarray
    proba_calibrated: np.ndarray
    tc_pred_K: np.ndarray
    roc_auc: float
    roc_auc_calibrated: float
    accuracy: float
    brier: float
    brier_calibrated: float
    tc_r2: float
    tc_r2_log: float
    fold_roc_auc: list[float]


def _splits(split: str, n_folds: int, n: int, groups: np.ndarray | None, seed: int):
    if split == "random":
        return list(KFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(n)))
    if split == "grouped":
        if groups is None:
            raise ValueError("grouped split needs groups")
        return list(GroupKFold(n_folds).split(np.zeros(n), groups=groups))
    raise ValueError(f"split must be 'random' or 'grouped', got {split!r}")


def cross_validate(
    X: np.ndarray, tc_K: np.ndarray, groups: np.ndarray, threshold_K: float, split: str = "grouped",
    n_folds: int = 5, n_estimators: int = 100, seed: int = 0, calibrate: bool = True, n_jobs: int = 2,
) -> CVResult:
    """K-fold CV of the classifier (ROC-AUC, accuracy at 0.5, Brier; isotonic calibration
    fitted by an inner 3-fold CV) and the regressor (R² of Tc in K and of log(1+Tc)).

    ``split='grouped'`` keeps each family group in one fold (:class:`GroupKFold`): the honest
    estimate for discovering new families. AUC/R² are over the pooled out-of-fold predictions.
    """
    tc = np.asarray(tc_K, dtype=float)
    y = labels(tc, threshold_K)
    n = len(y)
    proba, proba_cal, tc_pred = np.zeros(n), np.zeros(n), np.zeros(n)
    fold_auc = []
    for k, (tr, te) in enumerate(_splits(split, n_folds, n, groups, seed)):
        clf = TcClassifierEnsemble(n_estimators=n_estimators, seed=seed + k, n_jobs=n_jobs).fit(X[tr], y[tr])
        proba[te] = clf.predict_proba(X[te])
        if calibrate:
            cal = CalibratedClassifierCV(
                TcClassifierEnsemble(n_estimators=n_estimators, seed=seed + k, n_jobs=n_jobs).forest,
                method="isotonic", cv=3,
            ).fit(X[tr], y[tr])
            proba_cal[te] = cal.predict_proba(X[te])[:, 1]
        else:
            proba_cal[te] = proba[te]
        reg = TcRegressor(n_estimators=n_estimators, seed=seed + k, n_jobs=n_jobs).fit(X[tr], tc[tr])
        tc_pred[te] = reg.predict(X[te])
        if len(np.unique(y[te])) == 2:
            fold_auc.append(float(roc_auc_score(y[te], proba[te])))
    return CVResult(
        split=split, proba=proba, proba_calibrated=proba_cal, tc_pred_K=tc_pred,
        roc_auc=float(roc_auc_score(y, proba)), roc_auc_calibrated=float(roc_auc_score(y, proba_cal)),
        accuracy=float(accuracy_score(y, proba >= 0.5)),
        brier=float(brier_score_loss(y, proba)), brier_calibrated=float(brier_score_loss(y, proba_cal)),
        tc_r2=float(r2_score(tc, tc_pred)), tc_r2_log=float(r2_score(np.log1p(tc), np.log1p(tc_pred))),
        fold_roc_auc=fold_auc,
    )


def roost_cross_validate(
    compositions: Sequence[Composition], tc_K: np.ndarray, groups: np.ndarray, threshold_K: float,
    split: str = "grouped", n_folds: int = 5, folds_to_run: int = 1, epochs: int = 20, dim: int = 32,
    n_layers: int = 2, seed: int = 0, max_train: int | None = None, max_test: int | None = None,
) -> dict:
    """Train a Roost regressor on ``log(1 + Tc)`` for ``folds_to_run`` of the ``n_folds`` CV
    folds; returns ``roc_auc`` (predicted Tc as the score for Tc ≥ T), ``tc_r2`` (K) and
    ``tc_r2_log`` over the evaluated test folds and ``test_idx`` (rows scored, so tree models can be
compared on the same rows). ``max_train``/``max_test`` subsample the folds (seeded; speed).
    """
    import torch

    from matdiscovery.composition import composition_graph
    from matdiscovery.models import Roost, fit, predict

    compositions = list(compositions)
    tc = np.asarray(tc_K, dtype=float)
    y = labels(tc, threshold_K)
    log_tc = np.log1p(tc)

    def graphs(rows: np.ndarray) -> list:
        return [composition_graph(compositions[i], y=[log_tc[i]]) for i in rows]

    rng = np.random.default_rng(seed)
    all_te, all_pred = [], []
    for k, (tr, te) in enumerate(_splits(split, n_folds, len(y), groups, seed)[:folds_to_run]):
        if max_train is not None and len(tr) > max_train:
            tr = rng.choice(tr, size=max_train, replace=False)
        if max_test is not None and len(te) > max_test:
            te = np.sort(rng.choice(te, size=max_test, replace=False))
        torch.manual_seed(seed + k)
        model = Roost(n_targets=1, dim=dim, n_layers=n_layers)
        ys = np.log1p(tc[tr])
        scale = (torch.tensor([ys.mean()], dtype=torch.float32), torch.tensor([ys.std()], dtype=torch.float32))
        fit(model, graphs(tr), epochs=epochs, lr=3e-3, batch_size=256, seed=seed + k,
            loss="l1", target_scale=scale, progress=False)
        all_pred.append(np.expm1(predict(model, graphs(te), target_scale=scale)[:, 0]).clip(min=0))
        all_te.append(te)
    te = np.concatenate(all_te)
    pred = np.concatenate(all_pred)
    return {
        "roc_auc": float(roc_auc_score(y[te], pred)) if len(np.unique(y[te])) == 2 else float("nan"),
        "tc_r2": float(r2_score(tc[te], pred)),
        "tc_r2_log": float(r2_score(np.log1p(tc[te]), np.log1p(pred))),
        "n_test": int(len(te)),
        "test_idx": te,
    }
