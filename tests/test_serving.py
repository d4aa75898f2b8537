"""Serving-style use of a trained model beyond the shared contract: histories outside training score as the same
history inside it, ALS folds in with its own solve, ridge fold-in is exact where it can be, unknown users of any id
type get the popular items, and each model's fitted state lands in the safe file it belongs in."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

import recsys
from recsys.baselines import ALS, EASE, TGH, ItemKNN, Popularity
from recsys.data.interactions import Interactions
from recsys.recommender import fold_in
from recsys.tasks.sequential import SequentialTask
from recsys.testing import two_communities
from test_sequential_models import small_sasrec


@pytest.fixture(scope="module")
def train() -> Interactions:
    return two_communities()[0]


def history_of(train: Interactions, user: str) -> list[str]:
    return train.decoded().filter(pl.col("user") == user).sort("timestamp")["item"].to_list()


@pytest.mark.parametrize("make", [lambda: ItemKNN(k=10), lambda: EASE(reg=10.0), lambda: TGH("tgh-1", encoder="tfidf", filter_history=True),
                                  lambda: SequentialTask(small_sasrec(), lr=0.01, seed=3)],
                         ids=["itemknn", "ease", "tgh", "sasrec"])  # fmt: skip
def test_a_history_outside_training_ranks_as_the_same_history_inside(train, make) -> None:
    model = make()
    model = model.fit(train, max_epochs=2, batch_size=16) if isinstance(model, SequentialTask) else model.fit(train)
    # u0 is user code 0, the slot a sequential model scores an outside history in (TGH pads from seed + user)
    inside = model.recommend(["u0"], k=6).drop("user")
    outside = model.recommend_for_history(history_of(train, "u0"), k=6)
    assert outside["item"].to_list() == inside["item"].to_list()
    np.testing.assert_allclose(outside["score"].to_numpy(), inside["score"].to_numpy(), rtol=1e-5, atol=1e-6)


def test_als_folds_a_history_in_with_its_own_least_squares(train) -> None:
    model = ALS(factors=8, regularization=1.0, iterations=30, seed=1, threads=1).fit(train)
    code = int(train.users.encode(pl.Series(["u3"]))[0])
    scores = model.score_history(train.items.encode(pl.Series(history_of(train, "u3"))).to_numpy())
    trained = model.score(torch.tensor([code]))[0]  # the last sweep solved users against nearly the final items
    assert torch.corrcoef(torch.stack([scores, trained]))[0, 1] > 0.99


def test_ridge_fold_in_recovers_a_user_the_vectors_span() -> None:
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # y = [1, 0, 1] is vectors @ [1, 0]
    torch.testing.assert_close(fold_in(vectors, np.array([0, 2]), ridge=0.0), torch.tensor([1.0, 0.0]))
    assert fold_in(vectors, np.array([0, 2]), ridge=1.0).norm() < 1.0  # the penalty shrinks it


def test_unknown_users_of_another_id_type_get_popular_items() -> None:
    data = Interactions.from_frame(pl.DataFrame({"user": [1, 1, 2, 3], "item": [10, 11, 10, 12]}))
    model = Popularity().fit(data)
    recs = model.recommend([1, 4], k=2, unknown="popular")  # user 1 has seen 10 and 11; 4 is new
    assert recs["user"].to_list() == [1, 4, 4] and recs["item"].to_list() == [12, 10, 11]
    assert model.recommend(["new"], k=1, unknown="popular")["user"].to_list() == ["new"]  # kept as given
    with pytest.raises(KeyError, match="not in the vocabulary"):
        model.recommend(["new"])


def test_exclusion_frames_need_user_and_item_columns(train) -> None:
    model = Popularity().fit(train)
    with pytest.raises(ValueError, match="missing \\['user'\\]"):
        model.recommend(["u0"], exclude=pl.DataFrame({"item": ["i1"]}))
    with pytest.raises(TypeError, match="list of item ids"):
        model.recommend(["u0"], items="i1")
    with pytest.raises(ValueError, match="at least one item"):
        model.recommend_for_history([])


@pytest.mark.parametrize("make, files", [(lambda: ItemKNN(k=10), ["sparse/similarity_.npz"]),
                                         (lambda: TGH("tgh-1", encoder="tfidf"), ["arrays.npz"]),
                                         (lambda: EASE(reg=10.0), ["weights.safetensors"])],
                         ids=["itemknn", "tgh", "ease"])  # fmt: skip
def test_fitted_state_goes_to_its_safe_format(train, tmp_path, make, files) -> None:
    folder = recsys.save(make().fit(train), tmp_path / "m")
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.parent.name != "train")
    assert written == sorted(["recommender.json", *files])
