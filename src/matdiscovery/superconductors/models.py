"""Tc models on Magpie-style composition features: a tree-ensemble classifier for
``Tc ≥ threshold`` with per-tree uncertainty, a Tc regressor, calibration, and cross-validation
with random and family-grouped splits; a Roost network evaluated the same way.

Why trees in the loop: one closed loop refits the classifier every cycle (4 cycles × 3
acquisition functions × ≥ 30 seeds, open-loop baselines included) with 2 CPU cores. An
extremely-randomised-trees forest fits in well under a second and its trees are the ensemble
whose spread gives the uncertainty for UCB; a Roost ensemble would take minutes per fit. Roost
is trained once per split in cross-validation (:func:`roost_cross_validate`) for comparison.

Uncertainty: fully grown trees vote 0 or 1, so a spread over single trees is exactly
``sqrt(m (1 − m))`` of the mean ``m`` and UCB is a fixed re-ranking. The ensemble here is a
bootstrap ensemble of small forests: each member sees its own resample of the training data, so
the spread over members measures how much the prediction depends on the data drawn, which the
mean does not determine (:func:`spread_is_bernoulli`, :func:`spread_explained_by_mean` check
exactly that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from joblib import Parallel, delayed
from pymatgen.core import Composition
from sklearn.base import BaseEstimator, ClassifierMixin
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


class TcClassifierEnsemble(ClassifierMixin, BaseEstimator):
    """``P(Tc ≥ threshold)`` from a bootstrap ensemble of small extremely-randomised-trees forests.

    Member ``b`` is a forest of ``trees_per_member`` trees fitted on its own bootstrap resample
    of the training rows (as sample weights); :meth:`predict_dist` gives the mean and the standard
    deviation over members, the spread UCB acquisition uses. A scikit-learn classifier (so
    :class:`~sklearn.calibration.CalibratedClassifierCV` can wrap it); members are fitted in
    ``n_jobs`` threads. Trained on feature matrices (see :func:`featurize`).
    """

    def __init__(self, n_members: int = 8, trees_per_member: int = 8, min_samples_leaf: int = 3,
                 max_features: str | float = "sqrt", seed: int = 0, n_jobs: int = 2):
        self.n_members = n_members
        self.trees_per_member = trees_per_member
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.seed = seed
        self.n_jobs = n_jobs

    def _member(self, b: int, X: np.ndarray, y: np.ndarray) -> ExtraTreesClassifier:
        rng = np.random.default_rng([self.seed, b])
        weight = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(float)
        forest = ExtraTreesClassifier(
            n_estimators=self.trees_per_member, min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
            bootstrap=False, class_weight="balanced", random_state=self.seed * 1009 + b, n_jobs=1,
        )
        return forest.fit(X, y, sample_weight=weight)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "TcClassifierEnsemble":
        if self.n_members < 2:
            raise ValueError(f"an ensemble needs n_members ≥ 2, got {self.n_members}")
        if self.trees_per_member < 1 or self.min_samples_leaf < 1:
            raise ValueError(f"trees_per_member and min_samples_leaf must be ≥ 1, got "
                             f"{self.trees_per_member} and {self.min_samples_leaf}")
        y = np.asarray(y)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        if set(np.unique(y)) != {0, 1}:
            raise ValueError("training labels must hold both classes 0 and 1 (Tc < T and Tc ≥ T)")
        self.classes_ = np.array([0, 1])
        self.members_ = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(self._member)(b, X, y) for b in range(self.n_members))
        return self

    def _per_member(self, X: np.ndarray) -> np.ndarray:
        return np.stack([m.predict_proba(X)[:, list(m.classes_).index(1)] for m in self.members_])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, 2)`` class probabilities (column 1: P(Tc ≥ T)), mean over members."""
        p = self._per_member(X).mean(axis=0)
        return np.column_stack([1 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    def predict_dist(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of P(Tc ≥ T) over the members."""
        per = self._per_member(X)
        return per.mean(axis=0), per.std(axis=0)


@dataclass(frozen=True)
class EnsembleConfig:
    """Size of the :class:`TcClassifierEnsemble` used by the loop, the CV and the case study."""

    n_members: int
    trees_per_member: int
    min_samples_leaf: int
    n_jobs: int

    def make(self, seed: int) -> TcClassifierEnsemble:
        return TcClassifierEnsemble(n_members=self.n_members, trees_per_member=self.trees_per_member,
                                    min_samples_leaf=self.min_samples_leaf, seed=seed, n_jobs=self.n_jobs)


def spread_is_bernoulli(mean: np.ndarray, std: np.ndarray, atol: float = 1e-6) -> bool:
    """True if the ensemble spread is the Bernoulli ``sqrt(m (1 − m))`` of the mean everywhere
    (trees voting 0/1: the spread then carries no information beyond the mean)."""
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    return bool(np.allclose(std, np.sqrt(np.clip(mean * (1 - mean), 0, None)), atol=atol))


def spread_explained_by_mean(mean: np.ndarray, std: np.ndarray, n_bins: int = 20) -> float:
    """R² of the spread explained by the mean: ``std`` against its average in ``n_bins`` quantile
    bins of ``mean`` (1 = the spread is a function of the mean)."""
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    if mean.shape != std.shape or mean.size < 2 * n_bins:
        raise ValueError(f"need ≥ {2 * n_bins} equal-shaped mean/std values, got {mean.shape} and {std.shape}")
    edges = np.unique(np.quantile(mean, np.linspace(0, 1, n_bins + 1)))
    b = np.clip(np.searchsorted(edges, mean, side="right") - 1, 0, len(edges) - 2)
    fitted = (np.bincount(b, weights=std) / np.bincount(b))[b]
    total = ((std - std.mean()) ** 2).sum()
    return float(1 - ((std - fitted) ** 2).sum() / total) if total > 0 else 1.0


def calibrated_classifier(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, model: EnsembleConfig, seed: int,
                          n_folds: int = 3) -> CalibratedClassifierCV:
    """The ensemble with isotonic calibration fitted on ``n_folds`` group folds (a calibration
    learnt within families would be over-confident on new ones)."""
    folds = list(GroupKFold(n_folds).split(X, y, groups=groups))
    return CalibratedClassifierCV(model.make(seed), method="isotonic", cv=folds).fit(X, y)


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
    X: np.ndarray, tc_K: np.ndarray, groups: np.ndarray, threshold_K: float, *, model: EnsembleConfig,
    split: str = "grouped", n_folds: int = 5, regressor_trees: int = 64, seed: int = 0, calibrate: bool = True,
) -> CVResult:
    """K-fold CV of the classifier (ROC-AUC, accuracy at 0.5, Brier; isotonic calibration fitted
    by an inner 3-fold CV, grouped like the outer one) and the regressor (R² of Tc in K and of
    log(1+Tc)).

    ``split='grouped'`` keeps each group in one fold (:class:`GroupKFold`): the honest estimate
    for discovering new families. AUC/R² are over the pooled out-of-fold predictions.
    """
    tc = np.asarray(tc_K, dtype=float)
    y = labels(tc, threshold_K)
    n = len(y)
    proba, proba_cal, tc_pred = np.zeros(n), np.zeros(n), np.zeros(n)
    fold_auc = []
    for k, (tr, te) in enumerate(_splits(split, n_folds, n, groups, seed)):
        clf = model.make(seed + k).fit(X[tr], y[tr])
        proba[te] = clf.predict_proba(X[te])[:, 1]
        if calibrate:
            inner = groups[tr] if split == "grouped" else np.arange(len(tr))
            cal = calibrated_classifier(X[tr], y[tr], inner, model=model, seed=seed + k)
            proba_cal[te] = cal.predict_proba(X[te])[:, 1]
        else:
            proba_cal[te] = proba[te]
        reg = TcRegressor(n_estimators=regressor_trees, seed=seed + k, n_jobs=model.n_jobs).fit(X[tr], tc[tr])
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
