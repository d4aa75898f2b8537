"""Contract tests every `Recommender` must pass, shipped with the library so that user-written models can prove
they behave too. Subclass `RecommenderContract` in a pytest module and implement `make_model`::

    class TestMyModel(RecommenderContract):
        def make_model(self):
            return MyModel(dim=8)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data.interactions import Interactions
from recsys.errors import RunError
from recsys.evaluation.evaluator import evaluate
from recsys.recommender import NotFittedError, NotSupportedError, Recommender
from recsys.saving import load, save


def two_communities(
    n_users: int = 40, n_items: int = 30, per_user: int = 10, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """Users of two halves each interact only with items of their own half; one item per user is held out.

    Any personalised model should recommend a user's own half; popularity cannot tell the halves apart.
    Raw ids are strings (``u0``, ``i0``) so that code paths never confuse raw ids with codes.
    """
    rng = np.random.default_rng(seed)
    rows = []
    half_users, half_items = n_users // 2, n_items // 2
    for user in range(n_users):
        offset = 0 if user < half_users else half_items
        chosen = rng.choice(half_items, size=per_user + 1, replace=False) + offset
        rows += [(f"u{user}", f"i{item}", int(t), i == per_user) for i, (item, t) in enumerate(zip(chosen, rng.permutation(100)))]
    frame = pl.DataFrame(rows, schema=["user", "item", "timestamp", "held_out"], orient="row")
    data = Interactions.from_frame(frame, timestamp_col="timestamp", name="two-communities")
    train = data.with_frame(data.frame.filter(~pl.col("held_out")).drop("held_out"))
    test = data.with_frame(data.frame.filter(pl.col("held_out")).drop("held_out"))
    return train, test


class RecommenderContract:
    """Behaviour every recommender shares. Set ``personalised = False`` for non-personalised models, and list in
    ``unsupported`` the optional capabilities a model lacks (``save``, ``recommend_for_history``,
    ``similar_items``): those must then be refused with an error naming the model."""

    personalised: bool = True
    unsupported: frozenset[str] = frozenset()

    def make_model(self) -> Recommender:
        raise NotImplementedError("return a fresh, unfitted recommender")

    @pytest.fixture(scope="class")
    @classmethod
    def split(cls) -> tuple[Interactions, Interactions]:
        return two_communities()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, split) -> Recommender:
        return cls().make_model().fit(split[0])

    def test_is_recommender_and_fit_returns_self(self, split) -> None:
        model = self.make_model()
        assert isinstance(model, Recommender)
        assert model.fit(split[0]) is model

    def test_unfitted_model_refuses_to_recommend(self) -> None:
        with pytest.raises(NotFittedError):
            self.make_model().recommend(k=3)

    def test_score_shape_and_dtype(self, fitted, split) -> None:
        scores = fitted.score(torch.tensor([0, 3, 7]))
        assert scores.shape == (3, split[0].n_items)
        assert scores.dtype == torch.float32
        assert torch.isfinite(scores).all()

    def test_batch_scores_match_single_scores(self, fitted) -> None:
        users = torch.tensor([5, 1, 9])
        batch = fitted.score(users)
        single = torch.cat([fitted.score(users[i : i + 1]) for i in range(len(users))])
        torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-6)

    def test_scoring_returns_a_fresh_tensor(self, fitted) -> None:
        users = torch.tensor([0, 1])
        first = fitted.score(users)
        first.fill_(-1.0)  # the evaluator masks scores in place; that must not corrupt the model
        assert not torch.equal(fitted.score(users), first)

    def test_recommend_excludes_seen_and_is_sorted(self, fitted, split) -> None:
        train = split[0]
        recs = fitted.recommend(["u0", "u25"], k=5)
        assert recs.columns == ["user", "item", "score", "rank"]
        assert recs.group_by("user").len()["len"].to_list() == [5, 5]
        seen = train.decoded().select("user", "item")
        assert recs.join(seen, on=["user", "item"], how="inner").height == 0
        for _, group in recs.group_by("user"):
            assert group["rank"].to_list() == [1, 2, 3, 4, 5]
            assert group["score"].is_sorted(descending=True)

    def test_recommend_with_seen_items_allowed(self, fitted) -> None:
        recs = fitted.recommend(["u0"], k=12, exclude_seen=False)
        assert recs.height == 12

    def test_unknown_user_is_an_error(self, fitted) -> None:
        with pytest.raises(KeyError, match="not in the vocabulary"):
            fitted.recommend(["nobody"], k=3)

    def test_fit_does_not_change_the_training_data(self, split) -> None:
        before = split[0].frame.clone()
        self.make_model().fit(split[0])
        assert split[0].frame.equals(before)

    def test_same_configuration_gives_same_scores(self, split, fitted) -> None:
        again = self.make_model().fit(split[0])
        users = torch.arange(split[0].n_users)
        torch.testing.assert_close(again.score(users), fitted.score(users), rtol=1e-5, atol=1e-6)

    def test_evaluates_through_the_shared_evaluator(self, fitted, split) -> None:
        ev = evaluate(fitted, split[1], exclude=[split[0]], k=(5,))
        assert 0.0 <= ev["ndcg@5"] <= 1.0
        assert ev.per_user.height == split[0].n_users

    def test_recommends_the_users_own_community(self, fitted, split) -> None:
        if not self.personalised:
            pytest.skip("not a personalised model")
        recs = fitted.recommend(k=5)
        user_half = recs["user"].str.slice(1).cast(pl.Int64) >= split[0].n_users // 2
        item_half = recs["item"].str.slice(1).cast(pl.Int64) >= split[0].n_items // 2
        assert (user_half == item_half).mean() >= 0.9

    # ------------------------------------------------------------------------------------------ using a trained model
    def refuses(self, capability: str, fitted: Recommender, attempt: Callable[[], object]) -> bool:
        """Whether ``capability`` is listed in ``unsupported``; if so, checks that ``attempt`` refuses it with an
        error naming the model."""
        if capability not in self.unsupported:
            return False
        with pytest.raises((NotSupportedError, RunError), match=type(fitted).__name__):
            attempt()
        return True

    def test_save_and_load_score_identically(self, fitted, split, tmp_path) -> None:
        if self.refuses("save", fitted, lambda: save(fitted, tmp_path / "refused")):
            return
        loaded = load(save(fitted, tmp_path / "saved"))
        assert type(loaded) is type(fitted)
        users = torch.arange(split[0].n_users)
        assert torch.equal(loaded.score(users), fitted.score(users))
        assert loaded.recommend(["u0", "u25"], k=5).equals(fitted.recommend(["u0", "u25"], k=5))

    def test_recommend_ranks_only_the_candidates(self, fitted) -> None:
        candidates = [f"i{i}" for i in range(0, 30, 2)] + ["not-an-item"]  # unknown ids are ignored
        recs = fitted.recommend(["u0", "u25"], k=5, items=candidates, exclude_seen=False)
        assert set(recs["item"]) <= set(candidates) and recs.height == 10
        full = fitted.recommend(["u0"], k=30, exclude_seen=False)
        kept = full.filter(pl.col("item").is_in(candidates))["item"].head(5)
        assert recs.filter(pl.col("user") == "u0")["item"].to_list() == kept.to_list()  # the same order, filtered

    def test_recommend_adds_exclusions_for_everyone_or_per_user(self, fitted) -> None:
        first = fitted.recommend(["u0", "u25"], k=2)
        banned = first["item"].to_list()
        again = fitted.recommend(["u0", "u25"], k=5, exclude=banned)
        assert not set(again["item"]) & set(banned) and again.height == 10
        pairs = first.filter(pl.col("user") == "u0").select("user", "item")
        per_user = fitted.recommend(["u0", "u25"], k=2, exclude=pairs)
        assert not set(per_user.filter(pl.col("user") == "u0")["item"]) & set(pairs["item"])
        assert per_user.filter(pl.col("user") == "u25").equals(first.filter(pl.col("user") == "u25"))

    def test_unknown_users_can_get_the_popular_items(self, fitted, split) -> None:
        recs = fitted.recommend(["nobody", "u0"], k=5, unknown="popular")
        assert recs["user"].to_list() == ["nobody"] * 5 + ["u0"] * 5
        counts = split[0].item_counts()
        popular = split[0].items.decode(np.lexsort((np.arange(len(counts)), -counts))[:5]).to_list()  # ties by code
        assert recs.filter(pl.col("user") == "nobody")["item"].to_list() == popular
        assert recs.filter(pl.col("user") == "u0").equals(fitted.recommend(["u0"], k=5))
        with pytest.raises(ValueError, match="unknown must be"):
            fitted.recommend(["u0"], unknown="skip")  # type: ignore[arg-type]

    def test_recommends_for_a_history_outside_training(self, fitted, split) -> None:
        if self.refuses("recommend_for_history", fitted, lambda: fitted.recommend_for_history(["i0"])):
            return
        history = split[0].decoded().filter(pl.col("user") == "u0").sort("timestamp")["item"].to_list()[:5]
        recs = fitted.recommend_for_history(history, k=5)
        assert recs.columns == ["item", "score", "rank"] and recs["rank"].to_list() == [1, 2, 3, 4, 5]
        assert not set(recs["item"]) & set(history) and recs["score"].is_sorted(descending=True)
        if self.personalised:  # u0's history is of the first half's items (10 more of them are left to rank)
            assert (recs["item"].str.slice(1).cast(pl.Int64) < split[0].n_items // 2).mean() >= 0.8
        with pytest.raises(KeyError, match="not in the vocabulary"):
            fitted.recommend_for_history(["not-an-item"])

    def test_similar_items(self, fitted, split) -> None:
        if self.refuses("similar_items", fitted, lambda: fitted.similar_items(["i0"])):
            return
        similar = fitted.similar_items(["i0", "i20"], k=4)
        assert similar.columns == ["item", "similar", "score", "rank"] and similar.height == 8
        assert similar["item"].to_list() == ["i0"] * 4 + ["i20"] * 4
        assert not (similar["item"] == similar["similar"]).any()
        for _, group in similar.group_by("item"):
            assert group["score"].is_sorted(descending=True)
        if self.personalised:  # items of one half co-occur only with each other
            same_half = (similar["item"].str.slice(1).cast(pl.Int64) >= 15) == (similar["similar"].str.slice(1).cast(pl.Int64) >= 15)
            assert same_half.mean() >= 0.75
