"""Choosing a training subset from per-sample scores: min-max normalisation, DEALRec's combined score and
coverage-enhanced selection (CCS's stratified sampling over equal-width score bins, smallest bin first, the
unspent budget spread again over the bins left), plus the top-score and uniform choices the baselines use."""

from __future__ import annotations

import numpy as np

from recsys.errors import RunError


def budget_of(ratio: float, n_samples: int) -> int:
    """The number of samples a ``ratio`` in (0, 1] keeps: ``round(ratio · n)``, at least 1."""
    if not 0.0 < ratio <= 1.0:
        raise RunError(f"ratio must be in (0, 1], got {ratio!r}")
    return max(1, min(n_samples, int(round(ratio * n_samples))))


def min_max(values: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)`` (all zeros when every value is equal)."""
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min() if len(values) else 0.0
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def combined_score(influence: np.ndarray, effort: np.ndarray, lam: float) -> np.ndarray:
    """DEALRec's overall score: min-max normalised influence + λ · min-max normalised effort (the authors' code)."""
    return min_max(influence) + lam * min_max(effort)


def score_bins(scores: np.ndarray, bins: int) -> np.ndarray:
    """``[N]`` bin of each score among ``bins`` equal-width bins over ``[min, max]``: the first bin whose upper edge
    is ≥ the score (the authors' rule; the minimum falls in bin 0)."""
    low, high = float(scores.min()), float(scores.max())
    if high == low:
        return np.zeros(len(scores), dtype=np.int64)
    width = (high - low) / bins
    return np.clip(np.ceil((scores - low) / width).astype(np.int64) - 1, 0, bins - 1)


def coverage_select(scores: np.ndarray, budget: int, bins: int, hard_prune: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Coverage-enhanced selection (DEALRec Alg. 2 as the authors' code runs it).

    Drop the ``hard_prune`` fraction of highest scores (at most what leaves ``budget`` samples), cut the rest into
    ``bins`` equal-width score bins, then from the smallest non-empty bin up draw ``min(|bin|, ⌊m / bins left⌋)``
    samples uniformly, ``m`` being the budget not yet spent. Returns the chosen sample indices (sorted) and every
    sample's bin (``-1`` for the hard-pruned).
    """
    n = len(scores)
    if budget < bins:
        raise RunError(f"a budget of {budget} samples is smaller than the {bins} score bins of coverage selection: "
                       "raise the ratio or lower bins")  # fmt: skip
    if budget > n:
        raise RunError(f"a budget of {budget} samples exceeds the {n} samples")
    dropped = min(int(np.floor(hard_prune * n)), n - budget)
    order = np.argsort(-scores, kind="stable")
    pool = np.sort(order[dropped:])
    assignment = np.full(n, -1, dtype=np.int64)
    assignment[pool] = score_bins(scores[pool], bins)
    groups = [pool[assignment[pool] == b] for b in range(bins)]
    groups = sorted((g for g in groups if len(g)), key=len)  # smallest first (ties: lower bin first, sort is stable)
    chosen, left = [], budget
    for position, group in enumerate(groups):
        take = min(len(group), left // (len(groups) - position))
        chosen.append(rng.choice(group, size=take, replace=False))
        left -= take
    selected = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    assert len(selected) == budget, (len(selected), budget)  # the last bin takes all that is left, ≥ it by the pool size
    return selected, assignment


def top_scores(scores: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` highest scores' indices (sorted; ties by index)."""
    return np.sort(np.argsort(-scores, kind="stable")[:budget])


def uniform(n_samples: int, budget: int, rng: np.random.Generator) -> np.ndarray:
    """``budget`` indices drawn uniformly without replacement (sorted)."""
    return np.sort(rng.choice(n_samples, size=budget, replace=False))
