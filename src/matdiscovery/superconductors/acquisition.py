"""Acquisition functions: which ``k`` candidates the lab tests next.

All take the ensemble's mean ``P(Tc ≥ T)`` and its spread over ensemble members and return
positions into those arrays, best first. Ties are broken by a seeded random order.
"""

from __future__ import annotations

import numpy as np

ACQUISITIONS = ("greedy", "ucb", "diverse")


def _order(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    tie = rng.random(len(score))
    return np.lexsort((tie, -np.asarray(score, dtype=float)))


def _check(mean: np.ndarray, std: np.ndarray, k: int) -> None:
    if mean.shape != std.shape:
        raise ValueError(f"mean {mean.shape} and std {std.shape} differ in shape")
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if k > len(mean):
        raise ValueError(f"asked for k={k} picks from only {len(mean)} candidates")


def greedy(mean: np.ndarray, std: np.ndarray, k: int, rng: np.random.Generator, **_) -> np.ndarray:
    """Exploit: the ``k`` highest mean probabilities."""
    _check(mean, std, k)
    return _order(mean, rng)[:k]


def ucb(mean: np.ndarray, std: np.ndarray, k: int, rng: np.random.Generator, beta: float = 1.0, **_) -> np.ndarray:
    """Upper confidence bound: the ``k`` highest ``mean + beta · std`` (std over ensemble members)."""
    _check(mean, std, k)
    if beta < 0:
        raise ValueError(f"beta must be ≥ 0, got {beta}")
    return _order(mean + beta * std, rng)[:k]


def diverse(mean: np.ndarray, std: np.ndarray, k: int, rng: np.random.Generator, beta: float = 1.0,
            systems: np.ndarray | None = None, max_per_system: int = 1, **_) -> np.ndarray:
    """UCB order, at most ``max_per_system`` picks per chemical system in one batch (a lab
    tests different systems rather than a doping series); topped up in UCB order if the pool
    has too few systems."""
    _check(mean, std, k)
    if systems is None or len(systems) != len(mean):
        raise ValueError("diverse acquisition needs one chemical system per candidate")
    order = _order(mean + beta * std, rng)
    counts: dict[str, int] = {}
    chosen: list[int] = []
    for i in order:
        s = systems[i]
        if counts.get(s, 0) < max_per_system:
            counts[s] = counts.get(s, 0) + 1
            chosen.append(int(i))
            if len(chosen) == k:
                return np.array(chosen)
    taken = set(chosen)
    chosen += [int(i) for i in order if i not in taken][: k - len(chosen)]
    return np.array(chosen)


def acquire(name: str, mean: np.ndarray, std: np.ndarray, k: int, rng: np.random.Generator, **kwargs) -> np.ndarray:
    """Dispatch to :func:`greedy`, :func:`ucb` or :func:`diverse` by ``name``."""
    funcs = {"greedy": greedy, "ucb": ucb, "diverse": diverse}
    if name not in funcs:
        raise ValueError(f"unknown acquisition {name!r}; choose from {ACQUISITIONS}")
    return funcs[name](np.asarray(mean), np.asarray(std), k, rng, **kwargs)
