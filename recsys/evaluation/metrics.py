"""Top-K ranking metrics with binary relevance, computed from a hit matrix.

Definitions (``hits[u, r]`` is 1 when the item ranked ``r+1`` for user ``u`` is relevant; ``R_u`` the number of
relevant test items of ``u``; ranks start at 1):

- Recall@K    = (hits in the top K) / R_u
- Precision@K = (hits in the top K) / K
- Hit@K       = 1 if any hit in the top K, else 0
- MRR@K       = 1 / (rank of the first hit), 0 if none in the top K
- NDCG@K      = DCG@K / IDCG@K, DCG = Σ_{r ≤ K} hit_r / log2(r + 1), IDCG over min(R_u, K) hits at the top
- MAP@K       = (Σ over hits at rank r ≤ K of Precision@r) / min(R_u, K)

Catalogue metrics over all evaluated users' top-K lists:

- Coverage@K   = distinct recommended items / catalogue size
- Popularity@K = mean training-interaction count of the recommended items
- Gini@K       = Gini coefficient of how often each catalogue item is recommended (0 equal, → 1 concentrated)

The independent reference implementations in ``tests/evaluation`` cross-check these.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

USER_METRICS = ("ndcg", "recall", "precision", "hit", "mrr", "map")
CATALOGUE_METRICS = ("coverage", "popularity", "gini")


def log2_discounts(n: int) -> np.ndarray:
    """``[n]`` float64 standard DCG discounts 1 / log2(r + 1) of ranks r = 1 … n."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def dcg(gains: np.ndarray, ks: Sequence[int], discounts: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """The ranking-metric kernel every evaluation path shares: Σ_{r ≤ K} gain_r · discount_r per user at each K.

    Args:
        gains: ``[U, K_max]`` gain of each ranked slot (hits, 1/θ weights, graded relevance), best rank first.
        ks: cut-offs; one past ``K_max`` sums the whole list (a candidate list shorter than K).
        discounts: ``[K_max]`` per-rank discounts; `log2_discounts` when None.
    """
    discounts = log2_discounts(gains.shape[1]) if discounts is None else discounts
    return _at(np.cumsum(gains * discounts, axis=1), ks)


def precision_weighted(gains: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Σ_{r ≤ K} gain_r · (Σ_{j ≤ r} gain_j) / r per user at each K: the numerator of (mean) average precision,
    for binary or graded ``gains`` ``[U, K_max]``."""
    ranks = np.arange(1, gains.shape[1] + 1, dtype=np.float64)
    return _at(np.cumsum(gains * (np.cumsum(gains, axis=1) / ranks), axis=1), ks)


def _at(cumulative: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Column K of running sums ``[U, K_max]`` per cut-off (the last column for K past the list)."""
    if cumulative.shape[1] == 0:
        return {k: np.zeros(len(cumulative)) for k in ks}
    return {k: cumulative[:, min(k, cumulative.shape[1]) - 1] for k in ks}


def user_metrics(hits: torch.Tensor, n_relevant: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-user metrics at each K.

    Args:
        hits: ``[B, K_max]`` bool, ranked hit indicators; a cut-off past ``K_max`` (a catalogue shorter than K)
            counts the slots past the list as misses, without materialising them.
        n_relevant: ``[B]`` number of relevant items per user (> 0).
        ks: cut-offs.

    Returns:
        ``{"ndcg@10": Tensor[B], ...}`` in float64.
    """
    gains = hits.numpy().astype(np.float64)
    n_rel = n_relevant.numpy().astype(np.float64)
    depth = int(min(max(ks), n_rel.max(initial=1)))
    ideal = np.cumsum(log2_discounts(depth))  # ideal[i] = IDCG with i+1 relevant items at the top
    n_hits = _at(np.cumsum(gains, axis=1), ks)
    first_hit = np.where(gains.any(1), gains.argmax(1) + 1.0, np.inf)
    discounted, precision = dcg(gains, ks), precision_weighted(gains, ks)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        capped = np.minimum(n_rel, k)
        out[f"ndcg@{k}"] = discounted[k] / ideal[capped.astype(np.int64) - 1]
        out[f"recall@{k}"] = n_hits[k] / n_rel
        out[f"precision@{k}"] = n_hits[k] / k
        out[f"hit@{k}"] = (n_hits[k] > 0).astype(np.float64)
        out[f"mrr@{k}"] = np.where(first_hit <= k, 1.0 / first_hit, 0.0)
        out[f"map@{k}"] = precision[k] / capped
    return {name: torch.from_numpy(values) for name, values in out.items()}


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (0 when all equal or all zero)."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    total = values.sum()
    if total == 0 or len(values) < 2:
        return 0.0
    n = len(values)
    index = np.arange(1, n + 1)
    return float(((2 * index - n - 1) * values).sum() / (n * total))


def catalogue_metrics(rec_counts: np.ndarray, popularity: np.ndarray, k: int) -> dict[str, float]:
    """Coverage, mean popularity and Gini at ``k`` from how often each item was recommended (``[n_items]``)."""
    shown = rec_counts.sum()
    return {
        f"coverage@{k}": float((rec_counts > 0).mean()),
        f"popularity@{k}": float((rec_counts * popularity).sum() / shown) if shown else 0.0,
        f"gini@{k}": gini(rec_counts),
    }
