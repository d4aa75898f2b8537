"""Propensity models, the semi-synthetic generator, and the MNAR-train / MAR-test split on real-format fixtures."""

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data.formats import PARSERS
from recsys.data.interactions import Interactions
from recsys.data.mnar import binarize, mnar_mar_split
from recsys.data.semisynthetic import SemiSynthetic
from recsys.mnar.semisynthetic import GeneratorConfig, fit_ground_truth, generate, sample
from recsys.data.splits import split
from recsys.data.validation import DataError
from recsys.mnar.propensity import KnownPropensity, LogisticMFPropensity, PopularityPropensity

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = GeneratorConfig(dim=4, iters=60, batch_size=64, seed=3)


@pytest.fixture(scope="module")
def ratings() -> Interactions:
    """25 users × 15 items, 6 ratings each (1-5)."""
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}", float(rng.integers(1, 6))) for u in range(25) for i in rng.choice(15, 6, replace=False)]
    return Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "rating"], orient="row"), rating_col="rating")


# ------------------------------------------------------------------------------------------------ propensity
def counts_data() -> Interactions:
    """Item a: 4 interactions (two rated ≥ 4), b: 1, c: 1 rated 2."""
    rows = [("u1", "a", 5.0), ("u2", "a", 4.0), ("u3", "a", 1.0), ("u4", "a", 2.0), ("u1", "b", 3.0), ("u2", "c", 2.0)]
    return Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "rating"], orient="row"), rating_col="rating")


def test_popularity_propensity_by_hand() -> None:
    data = counts_data()
    items = torch.tensor(data.items.encode(pl.Series(["a", "b", "c"])).to_list())
    prop = PopularityPropensity(eta=0.5).fit(data)
    torch.testing.assert_close(prop.pairs(torch.zeros(3, dtype=torch.long), items), torch.tensor([1.0, 0.5, 0.5]))
    prop = PopularityPropensity(eta=1.0, threshold=4.0, floor=0.1).fit(data)  # positives: a twice, b and c never
    torch.testing.assert_close(prop.pairs(torch.zeros(3, dtype=torch.long), items), torch.tensor([1.0, 0.1, 0.1]))
    assert prop.frame().sort("item")["theta"].to_list() == pytest.approx([1.0, 0.1, 0.1])


def test_known_propensity_aligns_raw_ids_and_refuses_gaps(tmp_path) -> None:
    data = counts_data()
    table = pl.DataFrame({"user": ["u1", "u2"], "item": ["b", "a"], "theta": [0.25, 0.5]})
    table.write_parquet(tmp_path / "theta.parquet")
    prop = KnownPropensity(path=str(tmp_path / "theta.parquet")).fit(data)
    users = torch.tensor(data.users.encode(pl.Series(["u1", "u2"])).to_list())
    items = torch.tensor(data.items.encode(pl.Series(["b", "a"])).to_list())
    torch.testing.assert_close(prop.pairs(users, items), torch.tensor([0.25, 0.5]))
    with pytest.raises(KeyError, match="no known propensity"):
        prop.pairs(users, items.flip(0))
    with pytest.raises(DataError, match=r"theta must be in \(0, 1\]"):
        KnownPropensity(table=table.with_columns(pl.lit(0.0).alias("theta"))).fit(data)
    per_item = KnownPropensity(table=pl.DataFrame({"item": ["a", "b", "c"], "theta": [0.9, 0.3, 0.2]})).fit(data)
    torch.testing.assert_close(per_item.pairs(users, items), torch.tensor([0.3, 0.9]))


def test_logistic_mf_propensity_learns_exposure(ratings) -> None:
    prop = LogisticMFPropensity(dim=4, lr=0.05, iters=300, batch_size=128, seed=0).fit(ratings)
    frame = prop.frame()
    assert frame.height == ratings.n_users * ratings.n_items and frame["theta"].is_between(0, 1).all()
    observed = prop.pairs(torch.from_numpy(ratings.frame["user"].to_numpy().astype(np.int64)),
                          torch.from_numpy(ratings.frame["item"].to_numpy().astype(np.int64)))  # fmt: skip
    assert float(observed.mean()) > float(frame["theta"].mean())  # observed pairs look more exposed


def test_unfitted_propensity_refuses() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        PopularityPropensity().pairs(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))


# ------------------------------------------------------------------------------------------------ generator
def test_generator_shapes_ranges_and_draws(ratings) -> None:
    data = generate(ratings, eps=5.0, power=2.0, config=TINY)
    assert data.shape == (ratings.n_users, ratings.n_items)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert data.gamma.min() >= sig(-4) - 1e-12 and data.gamma.max() <= sig(0) + 1e-12  # R̂ clipped to [1, 5], ε = 5
    assert (data.theta > 0).all() and (data.theta <= 1).all()
    assert np.array_equal(data.click, data.exposure * data.relevance)
    assert set(np.unique(data.relevance)) <= {0, 1} and set(np.unique(data.exposure)) <= {0, 1}


def test_generator_is_seeded_and_theta_is_a_power(ratings) -> None:
    truth = fit_ground_truth(ratings, TINY)
    again = fit_ground_truth(ratings, TINY)
    assert np.array_equal(truth.exposure_hat, again.exposure_hat) and np.array_equal(truth.ratings_hat, again.ratings_hat)
    other = fit_ground_truth(ratings, GeneratorConfig(dim=4, iters=60, batch_size=64, seed=4))
    assert not np.array_equal(truth.exposure_hat, other.exposure_hat)
    low, high = sample(truth, power=1.0, seed=1), sample(truth, power=3.0, seed=1)
    np.testing.assert_allclose(high.theta, truth.exposure_hat**3)
    assert np.array_equal(low.relevance, high.relevance)  # R shared across p for one seed
    assert not np.array_equal(sample(truth, power=1.0, seed=2).relevance, low.relevance)


def test_semisynthetic_parquet_round_trip(ratings, tmp_path) -> None:
    data = generate(ratings, power=0.5, config=TINY)
    path = data.save(tmp_path / "sys.parquet")
    frame = pl.read_parquet(path)
    assert frame.columns == ["user", "item", "Y", "O", "R", "theta", "gamma", "eps", "power"]
    back = SemiSynthetic.load(path)
    assert np.array_equal(back.click, data.click) and np.allclose(back.theta, data.theta) and back.power == 0.5


# ------------------------------------------------------------------------------------------------ MNAR / MAR
def load_fixture(fmt: str, files: dict[str, Path]) -> Interactions:
    tables = PARSERS[fmt](files)
    return Interactions.from_frame(tables.interactions, rating_col="rating", name=fmt)


YAHOO = {"train": FIXTURES / "yahoo-r3" / "ydata-ymusic-rating-study-v1_0-train.txt",
         "test": FIXTURES / "yahoo-r3" / "ydata-ymusic-rating-study-v1_0-test.txt"}  # fmt: skip
COAT = {"train": FIXTURES / "coat" / "train.ascii", "test": FIXTURES / "coat" / "test.ascii"}


@pytest.mark.parametrize("fmt, files", [("yahoo-r3", YAHOO), ("coat", COAT)])
def test_mnar_mar_split_on_real_format_fixtures(fmt, files) -> None:
    data = load_fixture(fmt, files)
    train, valid, test = mnar_mar_split(data, valid_fraction=0.0)
    assert len(valid) == 0
    assert (train.frame["partition"] == "train").all() and (test.frame["partition"] == "test").all()
    assert len(train) + len(test) == len(data)
    assert train.items == test.items  # shared vocabularies: MAR-only items keep codes
    by_protocol = split(data, "mnar-mar", seed=3)
    assert sum(len(p) for p in by_protocol) == len(data) and (by_protocol[2].frame["partition"] == "test").all()
    assert (binarize(train).frame["rating"] >= 4).all()


def test_mnar_mar_split_on_the_yahoo_fixture_rows() -> None:
    train, _, test = mnar_mar_split(load_fixture("yahoo-r3", YAHOO), valid_fraction=0.0)
    decoded = test.decoded().select("user", "item").rows()
    assert decoded == [(1, 5), (1, 14), (2, 12), (3, 40)]
    assert len(train) == 5


def test_mnar_mar_split_needs_partitions(ratings) -> None:
    with pytest.raises(DataError, match="partition"):
        mnar_mar_split(ratings)


def test_original_exposure_loss_is_the_2019_generator(ratings) -> None:
    fixed = fit_ground_truth(ratings, TINY)
    original = fit_ground_truth(ratings, GeneratorConfig(dim=4, iters=60, batch_size=64, seed=3, exposure_loss="original"))
    assert np.isfinite(original.exposure_hat).all()
    np.testing.assert_array_equal(original.ratings_hat, fixed.ratings_hat)  # only the exposure model differs
    assert original.exposure_hat.mean() < fixed.exposure_hat.mean()  # −log(1 − s) keeps pushing negatives down
