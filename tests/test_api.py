"""The public Python API of the foundation, pinned on the real ML-100k."""

import polars as pl
import pytest

import recsys
from recsys.evaluation.metrics import USER_METRICS


def test_ml100k_loads_with_features(ml100k) -> None:
    assert (len(ml100k), ml100k.n_users, ml100k.n_items) == (100_000, 943, 1682)
    assert ml100k.has_rating and ml100k.has_timestamp
    assert {"title", "year", "genres"} <= set(ml100k.item_features.columns)
    assert {"age", "gender", "occupation"} <= set(ml100k.user_features.columns)
    assert ml100k.item_features.height == 1682 and ml100k.user_features.height == 943
    toy_story = ml100k.item_features.filter(pl.col("item") == ml100k.items.encode(pl.Series([1]))[0])
    assert toy_story["title"][0] == "Toy Story" and toy_story["year"][0] == 1995


def test_documented_pipeline_reaches_itemknn_target(ml100k) -> None:
    train, valid, test = recsys.splits.per_user_random(ml100k, (0.8, 0.1, 0.1), seed=2026)
    model = recsys.baselines.ItemKNN(k=100).fit(train)
    ev = recsys.evaluate(model, test, exclude=[train, valid], k=(10, 20))
    expected = {f"{m}@{k}" for m in USER_METRICS for k in (10, 20)}
    assert expected <= set(ev.summary)
    assert ev.summary["ndcg@10"] >= 0.28  # RecBole 1.2.1's ItemKNN: 0.2834 (mean of 3 seeds)
    assert isinstance(ev.per_user, pl.DataFrame)
    assert ev.per_user.height == 943 and ev.per_user["user"].dtype == pl.Int64
    assert set(ev.per_user["user"].to_list()) <= set(ml100k.users.ids.to_list())
    assert ev.per_user["ndcg@10"].mean() == pytest.approx(ev.summary["ndcg@10"])


def test_bring_your_own_recommendations_match_the_model_path(ml100k) -> None:
    train, valid, test = recsys.splits.per_user_random(ml100k, (0.8, 0.1, 0.1), seed=2026)
    model = recsys.baselines.EASE().fit(train)
    ev_model = recsys.evaluate(model, test, exclude=[train, valid], k=(10,))
    run = model.recommend(k=40)  # raw ids; training items already left out
    test_raw = test.decoded().select("user", "item")
    ev_run = recsys.evaluate(run.select("user", "item", "score"), test_raw, exclude=[train, valid], k=(10,))
    assert ev_run.summary["ndcg@10"] == pytest.approx(ev_model.summary["ndcg@10"], abs=1e-9)


def test_lazy_top_level_attributes() -> None:
    assert recsys.Interactions.__name__ == "Interactions"
    with pytest.raises(AttributeError):
        recsys.no_such_thing  # noqa: B018
