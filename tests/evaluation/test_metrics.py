"""Per-user and catalogue metrics agree with an independent reference, scikit-learn, torchmetrics and hand arithmetic."""

from __future__ import annotations

import importlib.util
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score
from torchmetrics.functional.retrieval import (
    retrieval_hit_rate,
    retrieval_precision,
    retrieval_recall,
    retrieval_reciprocal_rank,
)
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalPrecision, RetrievalRecall

from recsys.evaluation.metrics import USER_METRICS, catalogue_metrics, gini, user_metrics

# Loaded by path under a unique name: test folders have no __init__.py, so a bare `import reference` could pick up
# another folder's module of the same name.
_spec = importlib.util.spec_from_file_location("recsys_tests_evaluation_reference", Path(__file__).with_name("reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

TOL = 1e-9


def ranked_and_relevant(row: list[bool], n_relevant: int) -> tuple[list[str], set[str]]:
    """A ranked list of ids whose hit pattern is ``row`` and a relevant set of ``n_relevant`` ids containing the hits
    (the others are relevant items that were never ranked)."""
    ranked = [f"rel{r}" if h else f"miss{r}" for r, h in enumerate(row)]
    relevant = {item for item in ranked if item.startswith("rel")}
    relevant |= {f"unranked{j}" for j in range(n_relevant - len(relevant))}
    assert len(relevant) == n_relevant
    return ranked, relevant


def ours_from_scores(scores: np.ndarray, relevance: np.ndarray, ks: list[int]) -> dict[str, np.ndarray]:
    """recsys metrics of full score vectors ``[B, n]`` with binary ``relevance`` (ranking = descending score)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = np.take_along_axis(relevance, order, axis=1).astype(bool)
    out = user_metrics(torch.from_numpy(hits), torch.from_numpy(relevance.sum(1)), ks)
    return {name: v.numpy() for name, v in out.items()}


def random_scores(seed: int, n_users: int, n_items: int, p_rel: float) -> tuple[np.ndarray, np.ndarray]:
    """Distinct scores (a random permutation) and binary relevance with at least one relevant item per user."""
    rng = np.random.default_rng(seed)
    scores = np.stack([rng.permutation(n_items) for _ in range(n_users)]).astype(np.float64) + rng.random((n_users, 1))
    relevance = (rng.random((n_users, n_items)) < p_rel).astype(np.int64)
    empty = relevance.sum(1) == 0
    relevance[empty, rng.integers(n_items, size=int(empty.sum()))] = 1
    return scores, relevance


# ------------------------------------------------------------------------------------------- reference, hypothesis
@st.composite
def hit_matrices(draw):
    k_max = draw(st.integers(1, 20))
    n_users = draw(st.integers(1, 6))
    rows = draw(st.lists(st.lists(st.booleans(), min_size=k_max, max_size=k_max), min_size=n_users, max_size=n_users))
    n_relevant = []
    for row in rows:
        n_hits = sum(row)
        # at least the hits, at least one, and often more than k_max (users with more relevant items than K)
        n_relevant.append(draw(st.integers(max(1, n_hits), n_hits + 25)))
    ks = draw(st.lists(st.integers(1, k_max), min_size=1, max_size=4, unique=True))
    return rows, n_relevant, sorted(ks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hit_matrices())
def test_user_metrics_equal_reference(case):
    rows, n_relevant, ks = case
    ours = user_metrics(torch.tensor(rows, dtype=torch.bool), torch.tensor(n_relevant), ks)
    assert set(ours) == {f"{m}@{k}" for m in USER_METRICS for k in ks}
    for u, (row, n_rel) in enumerate(zip(rows, n_relevant)):
        ranked, relevant = ranked_and_relevant(row, n_rel)
        expected = ref.all_user_metrics(ranked, relevant, ks)
        for name, value in expected.items():
            assert ours[name][u].dtype == torch.float64
            assert abs(float(ours[name][u]) - value) <= TOL, (name, row, n_rel)


def test_user_metrics_with_more_relevant_than_k():
    # 30 relevant items, K = 5, all five ranked items relevant: recall 5/30, everything else perfect.
    ours = user_metrics(torch.ones(1, 5, dtype=torch.bool), torch.tensor([30]), [5])
    assert float(ours["recall@5"][0]) == pytest.approx(5 / 30, abs=TOL)
    for name in ("ndcg@5", "precision@5", "hit@5", "mrr@5", "map@5"):
        assert float(ours[name][0]) == pytest.approx(1.0, abs=TOL), name


def test_cut_off_beyond_ranked_items_counts_the_missing_slots_as_misses():
    # (it used to raise; the evaluator padded the hit matrix with misses instead, which a huge K cannot afford)
    hits = torch.tensor([[False, True, False], [True, False, True]])
    n_rel = torch.tensor([2, 3])
    short = user_metrics(hits, n_rel, [3, 4, 1_000_000])
    padded = user_metrics(torch.nn.functional.pad(hits, (0, 1)), n_rel, [3, 4])
    for name, values in padded.items():
        torch.testing.assert_close(short[name], values, msg=name)
    assert float(short["precision@1000000"][1]) == pytest.approx(2 / 1_000_000)


# ------------------------------------------------------------------------------------------- hand computation
# ranked [a, b, c, d, e], relevant {b, e, z} (z is relevant but never ranked): hits at ranks 2 and 5, R = 3.
# log2(3) = 1.5849625, log2(4) = 2, log2(6) = 2.5849625 → 1/log2(3) = 0.6309298, 1/log2(6) = 0.3868528.
HAND_RANKED = ["a", "b", "c", "d", "e"]
HAND_RELEVANT = {"b", "e", "z"}
HAND_HITS = [False, True, False, False, True]
L3, L6 = 1 / math.log2(3), 1 / math.log2(6)
HAND = {
    # K = 1: [a] holds no relevant item; everything is 0.
    "ndcg@1": 0.0, "recall@1": 0.0, "precision@1": 0.0, "hit@1": 0.0, "mrr@1": 0.0, "map@1": 0.0,
    # K = 2: [a, b], one hit at rank 2.
    #   recall 1/3, precision 1/2, hit 1, mrr 1/2
    #   DCG = 1/log2(3); IDCG over min(3, 2) = 2 hits = 1 + 1/log2(3) → 0.6309298 / 1.6309298 = 0.3868528
    #   MAP = P@2 / min(3, 2) = (1/2) / 2 = 1/4
    "ndcg@2": L3 / (1 + L3), "recall@2": 1 / 3, "precision@2": 1 / 2, "hit@2": 1.0, "mrr@2": 1 / 2, "map@2": 1 / 4,
    # K = 3: [a, b, c], one hit at rank 2.
    #   recall 1/3, precision 1/3, hit 1, mrr 1/2
    #   IDCG over min(3, 3) = 3 hits = 1 + 1/log2(3) + 1/2 = 2.1309298 → NDCG = 0.6309298 / 2.1309298 = 0.2960819
    #   MAP = P@2 / 3 = (1/2) / 3 = 1/6
    "ndcg@3": L3 / (1 + L3 + 0.5), "recall@3": 1 / 3, "precision@3": 1 / 3, "hit@3": 1.0, "mrr@3": 1 / 2,
    "map@3": 1 / 6,
    # K = 5: hits at ranks 2 and 5.
    #   recall 2/3, precision 2/5, hit 1, mrr 1/2 (the first hit still decides)
    #   DCG = 1/log2(3) + 1/log2(6) = 1.0177826; IDCG (3 hits) = 2.1309298 → NDCG = 0.4776237
    #   MAP = (P@2 + P@5) / min(3, 5) = (1/2 + 2/5) / 3 = 0.9 / 3 = 0.3
    "ndcg@5": (L3 + L6) / (1 + L3 + 0.5), "recall@5": 2 / 3, "precision@5": 2 / 5, "hit@5": 1.0, "mrr@5": 1 / 2,
    "map@5": 0.3,
}  # fmt: skip


def test_hand_computed_case_numbers():
    # the closed forms above, as decimals worked out by hand
    assert HAND["ndcg@2"] == pytest.approx(0.3868528, abs=1e-7)
    assert HAND["ndcg@3"] == pytest.approx(0.2960819, abs=1e-7)
    assert HAND["ndcg@5"] == pytest.approx(0.4776237, abs=1e-7)


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_computed_case_reference(name):
    metric, k = name.split("@")
    assert ref.PER_USER[metric](HAND_RANKED, HAND_RELEVANT, int(k)) == pytest.approx(HAND[name], abs=TOL)


def test_hand_computed_case_recsys():
    ours = user_metrics(torch.tensor([HAND_HITS]), torch.tensor([len(HAND_RELEVANT)]), [1, 2, 3, 5])
    assert set(ours) == set(HAND)
    for name, value in HAND.items():
        assert float(ours[name][0]) == pytest.approx(value, abs=TOL), name


def test_hand_computed_catalogue_metrics():
    # 4 items recommended [2, 1, 0, 1] times (4 slots), training popularity [10, 5, 1, 0]:
    #   coverage = 3 shown / 4 = 0.75
    #   popularity = (2·10 + 1·5 + 0·1 + 1·0) / 4 slots = 25/4 = 6.25
    #   gini: sorted [0, 1, 1, 2], n = 4, total 4; Σ|x_i − x_j| over ordered pairs = 2·(1+2+1+1+0+1) = 12;
    #         12 / (2 · 4² · mean 1) = 0.375
    counts = np.array([2, 1, 0, 1])
    out = catalogue_metrics(counts, np.array([10.0, 5.0, 1.0, 0.0]), 7)
    assert out == pytest.approx({"coverage@7": 0.75, "popularity@7": 6.25, "gini@7": 0.375}, abs=TOL)
    lists = [["i0", "i1"], ["i0", "i3"]]  # the same counts as top-2 lists of two users
    catalogue = ["i0", "i1", "i2", "i3"]
    assert ref.coverage(lists, catalogue, 2) == pytest.approx(0.75, abs=TOL)
    assert ref.mean_popularity(lists, {"i0": 10, "i1": 5, "i2": 1, "i3": 0}, 2) == pytest.approx(6.25, abs=TOL)
    assert ref.catalogue_gini(lists, catalogue, 2) == pytest.approx(0.375, abs=TOL)


def test_catalogue_metrics_nothing_shown():
    out = catalogue_metrics(np.zeros(5, dtype=np.int64), np.arange(5.0), 3)
    assert out == {"coverage@3": 0.0, "popularity@3": 0.0, "gini@3": 0.0}


# ------------------------------------------------------------------------------------------- gini
@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_gini_known_values(n):
    assert gini(np.full(n, 4)) == pytest.approx(0.0, abs=TOL)
    assert gini(np.zeros(n)) == 0.0
    concentrated = np.zeros(n)
    concentrated[n // 2] = 9
    assert gini(concentrated) == pytest.approx((n - 1) / n, abs=TOL)
    assert ref.gini(list(concentrated)) == pytest.approx((n - 1) / n, abs=TOL)


def test_gini_single_item_is_zero():
    assert gini(np.array([5])) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=30))
def test_gini_equals_reference(values):
    assert gini(np.array(values)) == pytest.approx(ref.gini(values), abs=TOL)
    assert 0.0 <= gini(np.array(values)) < 1.0


# ------------------------------------------------------------------------------------------- scikit-learn
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("k", [1, 5, 10, 20])
def test_ndcg_matches_sklearn(seed, k):
    n_items = 20 + seed * 5
    scores, relevance = random_scores(seed, n_users=40, n_items=n_items, p_rel=0.15)
    ours = ours_from_scores(scores, relevance, [k])[f"ndcg@{k}"]
    for u in range(len(scores)):
        expected = ndcg_score(relevance[u : u + 1], scores[u : u + 1], k=k)
        assert ours[u] == pytest.approx(expected, abs=TOL)
    assert ours.mean() == pytest.approx(ndcg_score(relevance, scores, k=k), abs=TOL)


# ------------------------------------------------------------------------------------------- torchmetrics
def _flat(scores: np.ndarray, relevance: np.ndarray):
    n_users, n_items = scores.shape
    indexes = torch.arange(n_users).repeat_interleave(n_items)
    return torch.from_numpy(scores).flatten(), torch.from_numpy(relevance).flatten().bool(), indexes


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 10, 20])
def test_recall_precision_hit_match_torchmetrics(seed, k):
    # torchmetrics 1.0.3 with the full score vector of each user (n_items >= k, at least one relevant item):
    #   retrieval_recall    = relevant in the top_k / all relevant                 — same as Recall@K
    #   retrieval_precision = relevant in the top_k / top_k (adaptive_k=False)     — same as Precision@K
    #   retrieval_hit_rate  = 1 if any relevant in the top_k                       — same as Hit@K
    scores, relevance = random_scores(100 + seed, n_users=30, n_items=25, p_rel=0.2)
    ours = ours_from_scores(scores, relevance, [k])
    functional = {"recall": retrieval_recall, "precision": retrieval_precision, "hit": retrieval_hit_rate}
    for name, fn in functional.items():
        for u in range(len(scores)):
            expected = fn(torch.from_numpy(scores[u]), torch.from_numpy(relevance[u]).bool(), top_k=k)
            assert ours[f"{name}@{k}"][u] == pytest.approx(float(expected), abs=1e-6), (name, u)
    preds, target, indexes = _flat(scores, relevance)
    classes = {"recall": RetrievalRecall, "precision": RetrievalPrecision, "hit": RetrievalHitRate}
    for name, cls in classes.items():
        expected = cls(top_k=k)(preds, target, indexes=indexes)
        assert ours[f"{name}@{k}"].mean() == pytest.approx(float(expected), abs=1e-6), name


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_mrr_matches_torchmetrics_where_definitions_agree(seed, k):
    # torchmetrics 1.0.3's RetrievalMRR / retrieval_reciprocal_rank take no top_k: they return 1 / rank of the first
    # relevant item anywhere in the full list. recsys' MRR@K is truncated: 0 when that rank exceeds K. The two agree
    # exactly for K = n_items, and for smaller K once the truncation is applied to torchmetrics' value.
    assert "top_k" not in inspect.signature(RetrievalMRR.__init__).parameters
    assert "top_k" not in inspect.signature(retrieval_reciprocal_rank).parameters
    n_items = 25
    scores, relevance = random_scores(200 + seed, n_users=30, n_items=n_items, p_rel=0.08)
    ours = ours_from_scores(scores, relevance, [k, n_items])
    for u in range(len(scores)):
        rr = float(retrieval_reciprocal_rank(torch.from_numpy(scores[u]), torch.from_numpy(relevance[u]).bool()))
        assert ours[f"mrr@{n_items}"][u] == pytest.approx(rr, abs=1e-6)
        truncated = rr if 1.0 / rr <= k + 1e-6 else 0.0
        assert ours[f"mrr@{k}"][u] == pytest.approx(truncated, abs=1e-6)
    preds, target, indexes = _flat(scores, relevance)
    assert ours[f"mrr@{n_items}"].mean() == pytest.approx(float(RetrievalMRR()(preds, target, indexes=indexes)), abs=1e-6)


def test_the_shared_dcg_and_precision_kernels_by_hand() -> None:
    from recsys.evaluation.metrics import dcg, precision_weighted

    gains = np.array([[1.0, 0.0, 2.0]])  # graded: 1 at rank 1, 2 at rank 3
    out = dcg(gains, (1, 3, 5))
    assert out[1][0] == pytest.approx(1.0)
    assert out[3][0] == pytest.approx(1.0 + 2.0 / 2.0)  # log2(3 + 1) = 2
    assert out[5][0] == out[3][0]  # a cut-off past the list sums the whole list
    assert dcg(gains, (3,), np.array([1.0, 1.0, 1.0]))[3][0] == pytest.approx(3.0)  # the discount is the caller's
    binary = np.array([[1.0, 0.0, 1.0]])
    assert precision_weighted(binary, (3,))[3][0] == pytest.approx(1.0 + 2.0 / 3.0)  # AP numerator: P@1 + P@3
