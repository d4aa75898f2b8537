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


def user_metrics(hits: torch.Tensor, n_relevant: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-user metrics at each K.

    Args:
        hits: ``[B, K_max]`` bool, ranked hit indicators (``K_max >= max(ks)``).
        n_relevant: ``[B]`` number of relevant items per user (> 0).
        ks: cut-offs.

    Returns:
        ``{"ndcg@10": Tensor[B], ...}`` in float64.
    """
    hits = hits.to(torch.float64)
    n_rel = n_relevant.to(torch.float64)
    k_max = hits.shape[1]
    ranks = torch.arange(1, k_max + 1, dtype=torch.float64)
    discounts = 1.0 / torch.log2(ranks + 1.0)
    ideal = torch.cumsum(discounts, 0)  # ideal[i] = IDCG with i+1 relevant items at the top
    cum_hits = torch.cumsum(hits, 1)
    precision_at_r = cum_hits / ranks
    first_hit = torch.where(hits.any(1), hits.argmax(1).to(torch.float64) + 1.0, torch.inf)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        if k > k_max:
            raise ValueError(f"cut-off {k} exceeds the {k_max} ranked items available")
        h = hits[:, :k]
        n_hits = cum_hits[:, k - 1]
        capped = torch.clamp(n_rel, max=k)
        out[f"ndcg@{k}"] = (h * discounts[:k]).sum(1) / ideal[capped.long() - 1]
        out[f"recall@{k}"] = n_hits / n_rel
        out[f"precision@{k}"] = n_hits / k
        out[f"hit@{k}"] = (n_hits > 0).to(torch.float64)
        out[f"mrr@{k}"] = torch.where(first_hit <= k, 1.0 / first_hit, torch.zeros_like(first_hit))
        out[f"map@{k}"] = (precision_at_r[:, :k] * h).sum(1) / capped
    return out


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
