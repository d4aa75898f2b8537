"""Unbiased evaluation: IPS metrics by hand and their unbiasedness under simulated exposure, the MAR-test protocol,
and the semi-synthetic study's ranking metrics (standard and the authors' rank-2 quirk)."""

import math

import numpy as np
import polars as pl
import pytest
import torch

import recsys
from recsys.baselines import Popularity
from recsys.data.interactions import Interactions
from recsys.data.mnar import mnar_mar_split
from recsys.evaluation.unbiased import mar_evaluate, mar_metrics, propensity_metrics
from recsys.mnar.propensity import KnownPropensity, PopularityPropensity
from recsys.mnar.study import ranking_metrics

L3 = 1 / math.log2(3)


def test_propensity_metrics_by_hand() -> None:
    hits = np.array([[True, False, True]])
    theta = np.array([[0.5, 0.9, 0.25]])
    out = propensity_metrics(hits, theta, np.array([10.0]), ks=(1, 3))
    assert out["ips_hits@1"][0] == pytest.approx(2.0)
    assert out["ips_hits@3"][0] == pytest.approx(6.0)
    assert out["ips_dcg@3"][0] == pytest.approx(2.0 + 4.0 / 2.0)  # rank 3 discount 1/log2(4) = 1/2
    assert out["snips_recall@3"][0] == pytest.approx(0.6)
    assert out["naive_dcg@3"][0] == pytest.approx(1.5)


def simulated_case(seed: int = 0):
    """30 users × 40 items: train history, the full relevant set of each user, and popularity-linked exposure."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 30, 40
    weights = np.linspace(3, 0.2, n_items)
    train_rows, relevant_rows = [], []
    for u in range(n_users):
        picked = rng.choice(n_items, 16, replace=False, p=weights / weights.sum())
        train_rows += [(u, int(i)) for i in picked[:6]]
        relevant_rows += [(u, int(i)) for i in picked[6:]]
    everything = pl.DataFrame(train_rows + relevant_rows, schema=["user", "item"], orient="row")
    data = Interactions.from_frame(everything.with_columns(pl.arange(0, everything.height).alias("row")))
    train = data.with_frame(data.frame.filter(pl.col("row") < len(train_rows)))
    relevant = data.with_frame(data.frame.filter(pl.col("row") >= len(train_rows)))
    theta = np.clip(np.linspace(0.95, 0.05, n_items), 0.05, 1.0)  # popular items are seen far more often
    theta_table = pl.DataFrame({"item": data.items.decode(np.arange(n_items)), "theta": theta[data.items.decode(np.arange(n_items)).to_numpy()]})
    return train, relevant, theta_table


def test_ips_metric_is_unbiased_over_simulated_exposure() -> None:
    train, relevant, theta_table = simulated_case()
    model = Popularity().fit(train)
    propensity = KnownPropensity(table=theta_table).fit(train)
    full = recsys.evaluate(model, relevant, exclude=[train], k=(10,), propensity=propensity)
    truth = full.per_user["naive_dcg@10"].sum() / train.n_users  # full information: every relevant item seen
    theta_of_row = propensity.pairs(
        torch.from_numpy(relevant.frame["user"].to_numpy().astype(np.int64)),
        torch.from_numpy(relevant.frame["item"].to_numpy().astype(np.int64)),
    ).numpy()
    rng = np.random.default_rng(1)
    ips, naive = [], []
    for _ in range(200):
        shown = rng.random(len(relevant)) < theta_of_row
        observed = relevant.with_frame(relevant.frame.filter(pl.Series(shown)))
        ev = recsys.evaluate(model, observed, exclude=[train], k=(10,), propensity=propensity)
        ips.append(ev.per_user["ips_dcg@10"].sum() / train.n_users)
        naive.append(ev.per_user["naive_dcg@10"].sum() / train.n_users)
    assert abs(np.mean(ips) / truth - 1) < 0.02
    assert abs(np.mean(naive) / truth - 1) > 0.10


def test_evaluate_takes_an_unfitted_propensity_and_refuses_runs() -> None:
    train, relevant, _ = simulated_case()
    model = Popularity().fit(train)
    ev = recsys.evaluate(model, relevant, exclude=[train], k=(5,), propensity=PopularityPropensity(eta=0.5, floor=0.01))
    assert {"ips_dcg@5", "snips_recall@5", "naive_hits@5"} <= set(ev.summary) and "ips_dcg@5" in ev.per_user.columns
    run = model.recommend(k=5).select("user", "item", "score")
    with pytest.raises(ValueError, match="needs a model"):
        recsys.evaluate(run, relevant.decoded(), k=(5,), propensity=PopularityPropensity())


def test_zero_propensity_of_a_test_item_is_named() -> None:
    rows = [("u1", "a"), ("u2", "a"), ("u1", "b"), ("u2", "c")]
    data = Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item"], orient="row"))
    train = data.with_frame(data.frame.filter(pl.col("item") != data.items.encode(pl.Series(["c"]))[0]))
    test = data.with_frame(data.frame.filter(pl.col("item") == data.items.encode(pl.Series(["c"]))[0]))
    model = Popularity().fit(train)
    with pytest.raises(ValueError, match=r"item 'c'.*propensity 0"):
        recsys.evaluate(model, test, exclude=[train], k=(1,), propensity=PopularityPropensity())


def test_mar_metrics_by_hand() -> None:
    relevance = np.array([[1.0, 0.001, 1.0, 0.0]])
    valid = np.array([[True, True, True, False]])
    out = mar_metrics(relevance, valid, ks=(1, 3))
    assert out["dcg@1"][0] == pytest.approx(1.0)
    assert out["dcg@3"][0] == pytest.approx(1.0 + 0.001 * L3 + 0.5)
    assert out["recall@1"][0] == pytest.approx(1.0 / 2.001)
    assert out["map@3"][0] == pytest.approx(1.0 * 1.0 + 0.001 * (1.001 / 2) + 1.0 * (2.001 / 3))


def test_mar_evaluate_on_the_coat_fixture() -> None:
    from tests.test_mnar_data import COAT, load_fixture

    train, _, test = mnar_mar_split(load_fixture("coat", COAT), valid_fraction=0.0)
    model = Popularity().fit(train)
    out = mar_evaluate(model, test, k=(1, 3), rare_threshold=0)
    assert out["users"] == test.frame["user"].n_unique()
    assert 0 <= out["recall@3"] <= 1 and out["dcg@3"] >= out["dcg@1"]
    assert any(key.startswith("rare_") for key in out)


def test_study_ranking_metrics_by_hand_with_the_rank_two_quirk() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.5, -1.0]])
    relevant = np.array([[True, True, False, False, False]])
    valid = np.array([[True, True, True, True, False]])
    items = np.array([[3, 8, 1, 5, 0]])
    out = ranking_metrics(scores, items, relevant, valid, ks=(1, 2, 3))
    assert out["dcg@2"] == pytest.approx((1 + L3) / 2)  # standard: rank 2 discounted by 1/log2(3)
    assert out["dcg_repo@2"] == pytest.approx((1 + 1) / 2)  # authors' code: rank 2 weighs 1
    assert out["recall@1"] == pytest.approx(0.5) and out["map@2"] == pytest.approx(1.0)
    swapped = ranking_metrics(np.array([[0.9, 0.6, 0.8, 0.5, 2.0]]), items, relevant, valid, ks=(3,))  # hits at 1 and 3
    assert swapped["map@3"] == pytest.approx((1 + 2 / 3) / 2)
    assert swapped["dcg@3"] == pytest.approx((1 + 0.5) / 2) and swapped["dcg_repo@3"] == pytest.approx((1 + 1 / math.log2(3)) / 2)


def test_study_ranking_breaks_ties_by_item_code_not_by_list_position() -> None:
    # positives listed first used to win every tie; now the lower item code does, as in the evaluator
    scores = np.array([[0.5, 0.5]])
    relevant = np.array([[True, False]])
    valid = np.array([[True, True]])
    assert ranking_metrics(scores, np.array([[7, 2]]), relevant, valid, ks=(1,))["recall@1"] == 0.0
    assert ranking_metrics(scores, np.array([[2, 7]]), relevant, valid, ks=(1,))["recall@1"] == 1.0
