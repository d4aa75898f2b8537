"""Independent plain-Python reference implementations of the evaluation metrics, written from their definitions.

Nothing here imports recsys: each metric is computed per user from a ranked list of item ids and a set of relevant
ids, with explicit loops, so that the vectorised code in ``recsys.evaluation`` can be checked against it.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Iterable, Mapping, Sequence

Item = Hashable


def _top(ranked: Sequence[Item], k: int) -> list[Item]:
    if k < 1:
        raise ValueError("k must be positive")
    return list(ranked)[:k]


def hits_in_top(ranked: Sequence[Item], relevant: set, k: int) -> int:
    """Number of relevant items among the first ``k`` ranked ones."""
    return sum(1 for item in _top(ranked, k) if item in relevant)


def recall(ranked: Sequence[Item], relevant: set, k: int) -> float:
    """Relevant items retrieved in the top ``k`` over all relevant items."""
    return hits_in_top(ranked, relevant, k) / len(relevant)


def precision(ranked: Sequence[Item], relevant: set, k: int) -> float:
    """Relevant items retrieved in the top ``k`` over ``k`` (a short list is not rewarded)."""
    return hits_in_top(ranked, relevant, k) / k


def hit(ranked: Sequence[Item], relevant: set, k: int) -> float:
    """1 when at least one relevant item is in the top ``k``."""
    return 1.0 if hits_in_top(ranked, relevant, k) > 0 else 0.0


def mrr(ranked: Sequence[Item], relevant: set, k: int) -> float:
    """Reciprocal of the (1-based) rank of the first relevant item within the top ``k``; 0 if none."""
    for rank, item in enumerate(_top(ranked, k), start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def dcg(ranked: Sequence[Item], relevant: set, k: int) -> float:
    total = 0.0
    for rank, item in enumerate(_top(ranked, k), start=1):
        if item in relevant:
            total += 1.0 / math.log2(rank + 1)
    return total


def ndcg(ranked: Sequence[Item], relevant: set, k: int) -> float:
    """DCG of the list over the DCG of the best possible list (all relevant items first, at most ``k``)."""
    ideal = 0.0
    for rank in range(1, min(len(relevant), k) + 1):
        ideal += 1.0 / math.log2(rank + 1)
    return dcg(ranked, relevant, k) / ideal


def average_precision(ranked: Sequence[Item], relevant: set, k: int) -> float:
    """Sum of precision@r at every relevant rank r ≤ k, over min(|relevant|, k)."""
    found = 0
    total = 0.0
    for rank, item in enumerate(_top(ranked, k), start=1):
        if item in relevant:
            found += 1
            total += found / rank
    return total / min(len(relevant), k)


PER_USER = {
    "ndcg": ndcg,
    "recall": recall,
    "precision": precision,
    "hit": hit,
    "mrr": mrr,
    "map": average_precision,
}


def all_user_metrics(ranked: Sequence[Item], relevant: Iterable[Item], ks: Iterable[int]) -> dict[str, float]:
    """``{"ndcg@10": ..., ...}`` for one user."""
    relevant = set(relevant)
    if not relevant:
        raise ValueError("a user needs at least one relevant item")
    return {f"{name}@{k}": fn(ranked, relevant, k) for k in ks for name, fn in PER_USER.items()}


# ------------------------------------------------------------------------------------------- catalogue metrics
def recommendation_counts(lists: Iterable[Sequence[Item]], k: int) -> Counter:
    """How many times each item appears in the users' top-``k`` lists."""
    counts: Counter = Counter()
    for ranked in lists:
        for item in _top(ranked, k):
            counts[item] += 1
    return counts


def coverage(lists: Iterable[Sequence[Item]], catalogue: Iterable[Item], k: int) -> float:
    """Distinct items recommended in some top-``k`` list over the catalogue size."""
    catalogue = set(catalogue)
    shown = set(recommendation_counts(lists, k))
    return len(shown & catalogue) / len(catalogue)


def mean_popularity(lists: Iterable[Sequence[Item]], popularity: Mapping[Item, float], k: int) -> float:
    """Mean popularity over every (user, slot) recommendation in the top-``k`` lists."""
    values = [popularity.get(item, 0.0) for ranked in lists for item in _top(ranked, k)]
    return sum(values) / len(values) if values else 0.0


def gini(values: Sequence[float]) -> float:
    """Gini coefficient via the mean absolute difference: Σ_i Σ_j |x_i − x_j| / (2 n² mean)."""
    n = len(values)
    total = float(sum(values))
    if n < 2 or total == 0:
        return 0.0
    mean = total / n
    diff = 0.0
    for a in values:
        for b in values:
            diff += abs(a - b)
    return diff / (2 * n * n * mean)


def catalogue_gini(lists: Iterable[Sequence[Item]], catalogue: Iterable[Item], k: int) -> float:
    """Gini of how often each catalogue item (including never-shown ones, count 0) is recommended."""
    counts = recommendation_counts(lists, k)
    return gini([counts.get(item, 0) for item in catalogue])
