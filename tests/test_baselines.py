"""Every baseline passes the shared `Recommender` contract; baseline-specific checks against hand-computed cases."""

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from recsys.baselines import ALS, BPR, EASE, ItemKNN, Popularity
from recsys.data.interactions import Interactions
from recsys.testing import RecommenderContract


class TestPopularity(RecommenderContract):
    personalised = False
    unsupported = frozenset({"similar_items"})

    def make_model(self):
        return Popularity()


class TestItemKNN(RecommenderContract):
    def make_model(self):
        return ItemKNN(k=10, shrink=1.0)


class TestEASE(RecommenderContract):
    def make_model(self):
        return EASE(reg=10.0)


class TestALS(RecommenderContract):
    def make_model(self):
        return ALS(factors=8, regularization=1.0, iterations=15, seed=1, threads=1)


class TestBPR(RecommenderContract):
    def make_model(self):
        return BPR(factors=8, learning_rate=0.05, iterations=200, seed=1, threads=1)


def _small() -> Interactions:
    frame = pl.DataFrame({"user": [0, 0, 1, 1, 1, 2, 2, 3], "item": [0, 1, 0, 1, 2, 1, 2, 3]})
    return Interactions.from_frame(frame)


def test_popularity_counts_true_training_interactions() -> None:
    model = Popularity().fit(_small())
    assert model.score(torch.tensor([0]))[0].tolist() == [2.0, 3.0, 2.0, 1.0]


def test_itemknn_matches_dense_cosine_reference() -> None:
    data = _small()
    x = data.to_csr().toarray()
    norms = np.linalg.norm(x, axis=0)
    shrink = 0.5
    sim = (x.T @ x) / (np.outer(norms, norms) + shrink + 1e-6)
    np.fill_diagonal(sim, 0.0)
    k = 2
    w = np.zeros_like(sim)
    for target in range(sim.shape[1]):  # keep the k most similar items j of each target item i
        top = np.argsort(-sim[:, target], kind="stable")[:k]
        w[top, target] = sim[top, target]
    model = ItemKNN(k=k, shrink=shrink, block_size=3).fit(data)
    expected = x @ w
    np.testing.assert_allclose(model.score(torch.arange(4)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_ease_matches_closed_form_and_zero_diagonal() -> None:
    data = _small()
    x = data.to_csr().toarray()
    reg = 2.0
    p = np.linalg.inv(x.T @ x + reg * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    model = EASE(reg=reg).fit(data)
    np.testing.assert_allclose(np.diag(model.weights_.numpy()), 0.0, atol=1e-6)
    np.testing.assert_allclose(model.score(torch.arange(4)).numpy(), x @ b, rtol=1e-4, atol=1e-5)


def test_implicit_wrapper_uses_implicits_factors() -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    data = _small()
    ours = ALS(factors=4, regularization=0.1, alpha=1.0, iterations=5, seed=3, threads=1).fit(data)
    theirs = AlternatingLeastSquares(factors=4, regularization=0.1, alpha=1.0, iterations=5, random_state=3, num_threads=1)
    theirs.fit(sp.csr_matrix(data.to_csr()), show_progress=False)
    expected = theirs.user_factors @ theirs.item_factors.T
    np.testing.assert_allclose(ours.score(torch.arange(4)).numpy(), expected, rtol=1e-4, atol=1e-5)
