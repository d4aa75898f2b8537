"""Evaluation without missing-not-at-random bias: propensity-weighted ranking metrics, and ranking on a randomly
exposed (MAR) test set.

**IPS metrics** (``recsys.evaluate(model, test, propensity=...)``). The observed test items of a user are the
relevant items she happened to be exposed to, with probability θ. Weighting each observed hit by 1/θ makes the
per-user sums unbiased for their full-information values (every relevant item, exposed or not); with
``hit_r`` the observed hit at rank r and ``S_u`` the user's observed test items:

- ``ips_hits@K`` = Σ_{r ≤ K} hit_r / θ_r              (relevant items in the top K)
- ``ips_dcg@K``  = Σ_{r ≤ K} hit_r / (θ_r·log2(r + 1)) (DCG with binary relevance, not normalised)
- ``snips_recall@K`` = ips_hits@K / Σ_{i ∈ S_u} 1/θ_i   (self-normalised: consistent, not unbiased)
- ``snips_dcg@K``    = ips_dcg@K / Σ_{i ∈ S_u} 1/θ_i    (DCG per relevant item)

The naive counterparts (θ ≡ 1) are ``dcg@K``/``hits@K`` prefixed ``naive_``. Summary values are means over the
evaluated users (users with an observed test item), as for every other metric.

**MAR test** (`mar_evaluate`): where a test set was shown at random (Yahoo! R3, Coat), each user's MAR test items
are ranked among themselves, as the Rel-MF authors' real-data evaluation: relevance ``ε + (1 − ε)·1{rating ≥
threshold}``; DCG@K and MAP@K not normalised, Recall@K over the user's total relevance; users without a relevant
test item are kept. A rare-item slice repeats it on the test pairs whose item has at most ``rare_threshold``
positive training ratings.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import numpy as np
import polars as pl
import torch

from recsys.data.interactions import Interactions
from recsys.evaluation.metrics import dcg, precision_weighted
from recsys.ranking import rank_candidates
from recsys.recommender import Recommender

if TYPE_CHECKING:
    from recsys.evaluation.evaluator import Evaluation
    from recsys.mnar.propensity import Propensity


def propensity_metrics(
    hits: np.ndarray, theta_ranked: np.ndarray, theta_sum_inverse: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user IPS, SNIPS and naive metrics (see the module docstring).

    Args:
        hits: ``[U, K]`` bool, observed test hits by rank.
        theta_ranked: ``[U, K]`` propensities of the ranked items (only read where ``hits``).
        theta_sum_inverse: ``[U]`` Σ 1/θ over each user's observed test items.
        ks: cut-offs (≤ K).
    """
    hit = hits.astype(np.float64)
    weight = np.where(hits, 1.0 / np.where(hits, theta_ranked, 1.0), 0.0)  # [U, K]
    ips_dcg, naive_dcg = dcg(weight, ks), dcg(hit, ks)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        ips_hits = weight[:, :k].sum(1)
        out[f"ips_hits@{k}"] = ips_hits
        out[f"ips_dcg@{k}"] = ips_dcg[k]
        out[f"snips_recall@{k}"] = ips_hits / theta_sum_inverse
        out[f"snips_dcg@{k}"] = ips_dcg[k] / theta_sum_inverse
        out[f"naive_hits@{k}"] = hit[:, :k].sum(1)
        out[f"naive_dcg@{k}"] = naive_dcg[k]
    return out


def with_propensity_metrics(
    evaluation: Evaluation,
    model: Recommender,
    test_codes: pl.DataFrame,
    users: np.ndarray,
    items: np.ndarray,
    hits: np.ndarray,
    propensity: Propensity,
    ks: Sequence[int],
) -> Evaluation:
    """``evaluation`` with the per-user and summary IPS / SNIPS metrics added.

    ``test_codes`` are the test pairs in the model's codes; ``users`` ``[U]``, ``items`` and ``hits`` ``[U, K]``
    the evaluator's ranked lists. An unfitted ``propensity`` is fitted on the model's training data.
    """
    if not propensity.fitted:
        propensity.fit(model.train_data)
    test_codes = test_codes.unique(["user", "item"])
    test_users = torch.from_numpy(test_codes["user"].to_numpy().astype(np.int64))
    test_items = torch.from_numpy(test_codes["item"].to_numpy().astype(np.int64))
    theta_test = propensity.pairs(test_users, test_items).double().numpy()
    if (theta_test <= 0).any():
        bad = int(np.flatnonzero(theta_test <= 0)[0])
        raise ValueError(
            f"test pair (user {model.train_data.users.decode([int(test_users[bad])])[0]!r}, item "
            f"{model.train_data.items.decode([int(test_items[bad])])[0]!r}) has propensity {theta_test[bad]:g}: IPS "
            "weights need θ > 0 (give the propensity model a floor, e.g. PopularityPropensity(floor=1e-3))"
        )
    inverse_sum = np.bincount(test_users.numpy(), weights=1.0 / theta_test, minlength=model.n_users)[users]
    k_max = hits.shape[1]
    ranked_users = torch.from_numpy(np.repeat(users, k_max).astype(np.int64))
    theta_ranked = propensity.pairs(ranked_users, torch.from_numpy(items.reshape(-1).astype(np.int64)))
    per_user = propensity_metrics(hits, theta_ranked.double().numpy().reshape(hits.shape), inverse_sum, ks)
    summary = {**evaluation.summary, **{name: float(values.mean()) for name, values in per_user.items()}}
    frame = evaluation.per_user.with_columns(*[pl.Series(name, values) for name, values in per_user.items()])
    return replace(evaluation, summary=summary, per_user=frame, notes=[*evaluation.notes, f"propensity: {type(propensity).__name__}"])


# ------------------------------------------------------------------------------------------------ MAR test
def mar_metrics(relevance: np.ndarray, valid: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user DCG, Recall and MAP at each K of ranked lists (the Rel-MF authors' real-data definitions).

    Args:
        relevance: ``[U, C]`` graded relevance of each user's test items, sorted by descending score.
        valid: ``[U, C]`` False on padding.
        ks: cut-offs.

    DCG@K = Σ_{r ≤ K} rel_r / log2(r + 1); Recall@K = Σ_{r ≤ K} rel_r / Σ_r rel_r; MAP@K = Σ_{r ≤ K} rel_r ·
    (Σ_{j ≤ r} rel_j / r). DCG and MAP are not normalised (as in the authors' code).
    """
    rel = np.where(valid, relevance, 0.0)
    total = rel.sum(1)
    discounted, precision = dcg(rel, ks), precision_weighted(rel, ks)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        top = rel[:, :k].sum(1)
        out[f"dcg@{k}"] = discounted[k]
        out[f"recall@{k}"] = np.divide(top, total, out=np.zeros_like(total), where=total > 0)
        out[f"map@{k}"] = precision[k]
    return out


def mar_evaluate(
    model: Recommender,
    test: Interactions,
    *,
    k: Sequence[int] = (1, 3, 5),
    threshold: float = 4.0,
    eps: float = 0.001,
    rare_threshold: int | None = None,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Rank each user's randomly exposed test items by the model's scores; summary of `mar_metrics`.

    Args:
        model: a fitted recommender over the same vocabularies as ``test``.
        test: the MAR test interactions with ratings (e.g. ``partition == "test"`` of Yahoo! R3 or Coat).
        k: cut-offs.
        threshold: ratings ≥ threshold are relevant.
        eps: relevance of a non-relevant item (0.001 in the authors' code; 0 for binary relevance).
        rare_threshold: also report ``rare_*`` metrics on the test pairs whose item has at most this many
            relevant training ratings (500 for Yahoo! R3 in the authors' code).

    Returns:
        ``{"dcg@1": …, "recall@1": …, "map@1": …, …, "users": n}`` plus ``rare_…`` keys with ``rare_threshold``.
    """
    if not test.has_rating:
        raise ValueError(f"{test.name}: MAR evaluation needs the test ratings")
    train = model.train_data
    if test.users != train.users or test.items != train.items:
        raise ValueError("the MAR test set must share the model's vocabularies (split one dataset into train and test)")
    frame = test.frame.select("user", "item", "rating")
    summary = _mar_summary(model, frame, k, threshold, eps, batch_size)
    if rare_threshold is not None:
        positives = train.frame.filter(pl.col("rating") >= threshold) if train.has_rating else train.frame
        counts = np.bincount(positives["item"].to_numpy(), minlength=train.n_items)
        rare = frame.filter(pl.Series(counts[frame["item"].to_numpy()] <= rare_threshold))
        if rare.height:
            summary.update({f"rare_{name}": v for name, v in _mar_summary(model, rare, k, threshold, eps, batch_size).items()})
    return summary


def _mar_summary(model: Recommender, frame: pl.DataFrame, ks, threshold: float, eps: float, batch_size: int) -> dict[str, float]:
    grouped = frame.group_by("user", maintain_order=True).agg("item", "rating").sort("user")
    users = grouped["user"].to_numpy().astype(np.int64)
    width = int(grouped["item"].list.len().max())
    items = np.zeros((len(users), width), dtype=np.int64)
    relevance = np.zeros((len(users), width))
    valid = np.zeros((len(users), width), dtype=bool)
    for row, (its, ratings) in enumerate(zip(grouped["item"].to_list(), grouped["rating"].to_list())):
        items[row, : len(its)] = its
        relevance[row, : len(its)] = eps + (1.0 - eps) * (np.asarray(ratings) >= threshold)
        valid[row, : len(its)] = True
    scores = np.concatenate([
        np.take_along_axis(model.score(torch.from_numpy(users[s : s + batch_size])).numpy(), items[s : s + batch_size], axis=1)
        for s in range(0, len(users), batch_size)
    ])  # fmt: skip
    order = rank_candidates(scores, items, valid)
    per_user = mar_metrics(np.take_along_axis(relevance, order, 1), np.take_along_axis(valid, order, 1), ks)
    return {**{name: float(v.mean()) for name, v in per_user.items()}, "users": float(len(users))}
