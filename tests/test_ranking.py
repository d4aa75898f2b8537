"""The ranking kernel: ties by item code whatever k, exactly a stable sort; non-finite scores refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.ranking import NonFiniteScoreError, rank_candidates, top_k, top_k_block


def stable_top(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("k", [1, 3, 5, 10, 30])
def test_top_k_block_equals_a_stable_sort_with_ties_and_excluded_items(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 4, size=(200, 30)).astype(np.float32)  # many ties, across the k-th place too
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    values, columns = top_k_block(torch.from_numpy(scores), k)
    expected = stable_top(scores, k)
    finite = np.isfinite(np.take_along_axis(scores, expected, axis=1))
    np.testing.assert_array_equal(np.where(finite, columns.numpy(), -1), np.where(finite, expected, -1))
    np.testing.assert_array_equal(values.numpy(), np.take_along_axis(scores, expected, axis=1))


def test_a_shorter_list_is_a_prefix_of_a_longer_one() -> None:
    scores = torch.from_numpy(np.random.default_rng(1).integers(0, 3, size=(50, 100)).astype(np.float32))
    long = top_k_block(scores, 50)[1]
    for k in (1, 5, 10, 20):
        assert torch.equal(top_k_block(scores, k)[1], long[:, :k])


def test_float_scores_without_ties_match_torch_topk() -> None:
    scores = torch.randn(64, 500, generator=torch.Generator().manual_seed(0))
    values, columns = top_k_block(scores, 10)
    expected = torch.topk(scores, 10, dim=1)
    assert torch.equal(values, expected.values) and torch.equal(columns, expected.indices)


def test_top_k_refuses_nan_and_positive_infinity_naming_the_user() -> None:
    scores = torch.zeros(4, 6)
    scores[2, 3] = torch.nan
    with pytest.raises(NonFiniteScoreError, match=r"nan for user 'u2'.*1 of 4 users"):
        top_k(lambda u: scores[u].clone(), np.arange(4), 2, labels=lambda codes: [f"u{c}" for c in codes])
    scores[2, 3] = torch.inf
    with pytest.raises(NonFiniteScoreError, match=r"inf for user 2 "):
        top_k(lambda u: scores[u].clone(), np.arange(4), 2)


def test_negative_infinity_means_never_recommended() -> None:
    scores = torch.tensor([[0.0, -torch.inf, 1.0]])
    items, values = top_k(lambda u: scores[u].clone(), np.arange(1), 3)
    assert items[0, :2].tolist() == [2, 0] and values[0, 2] == -np.inf


def test_rank_candidates_orders_valid_then_score_then_item_code() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 3.0]])
    items = np.array([[9, 4, 2, 1]])
    valid = np.array([[True, True, True, False]])
    assert rank_candidates(scores, items, valid)[0].tolist() == [1, 2, 0, 3]


def test_a_nan_or_inf_anywhere_in_a_row_is_caught_by_checking_only_the_top_values() -> None:
    rng = torch.Generator().manual_seed(3)
    for bad in (torch.nan, torch.inf):
        scores = torch.randn(8, 300, generator=rng)
        scores[5, 217] = bad
        with pytest.raises(NonFiniteScoreError, match=r"for user 5 \(item code 217\)"):
            top_k(lambda u: scores[u].clone(), np.arange(8), 3)
