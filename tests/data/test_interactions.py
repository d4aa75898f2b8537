"""`Interactions` and `Vocabulary`: encoding, views (CSR, sequences, describe), compaction, concat and input errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data.interactions import Interactions, Vocabulary, concat
from recsys.data.splits import per_user_random
from recsys.data.validation import DataError


def _string_ids() -> Interactions:
    raw = pl.DataFrame(
        {
            "uid": ["carol", "alice", "bob", "alice", "carol"],
            "iid": ["z", "x", "y", "y", "x"],
            "stars": ["4", "5", " 3 ", "1", "2.5"],
            "when": [30, 10, 20, 10, 5],
            "src": ["a", "b", "c", "d", "e"],
        }
    )
    return Interactions.from_frame(raw, user_col="uid", item_col="iid", rating_col="stars", timestamp_col="when")


# ------------------------------------------------------------------------------------------------ encoding
def test_codes_follow_sorted_string_ids():
    data = _string_ids()
    assert data.users.ids.to_list() == ["alice", "bob", "carol"]
    assert data.items.ids.to_list() == ["x", "y", "z"]
    assert data.frame.columns == ["user", "item", "rating", "timestamp", "src"]
    assert data.frame["user"].to_list() == [2, 0, 1, 0, 2]
    assert data.frame["item"].to_list() == [2, 0, 1, 1, 0]
    assert data.frame["user"].dtype == pl.Int64 and data.frame["item"].dtype == pl.Int64
    assert data.frame["rating"].dtype == pl.Float64
    assert data.frame["rating"].to_list() == [4.0, 5.0, 3.0, 1.0, 2.5]
    assert data.frame["timestamp"].dtype == pl.Int64
    assert data.frame["src"].to_list() == ["a", "b", "c", "d", "e"]  # extra columns ride along
    assert (data.n_users, data.n_items, len(data)) == (3, 3, 5)
    assert data.has_rating and data.has_timestamp


def test_codes_follow_numeric_order_of_int_ids():
    # Numeric, not lexicographic: 9 < 10 < 100.
    raw = pl.DataFrame({"user": [100, 9, 10, 9], "item": [7, 3, 7, 1000]})
    data = Interactions.from_frame(raw)
    assert data.users.ids.to_list() == [9, 10, 100]
    assert data.items.ids.to_list() == [3, 7, 1000]
    assert data.frame["user"].to_list() == [2, 0, 1, 0]
    assert data.frame["item"].to_list() == [1, 0, 1, 2]
    assert not data.has_rating and not data.has_timestamp


def test_same_id_set_gives_same_codes_whatever_the_order():
    a = Interactions.from_frame(pl.DataFrame({"user": [3, 1, 2], "item": [1, 1, 1]}))
    b = Interactions.from_frame(pl.DataFrame({"user": [2, 3, 1], "item": [1, 1, 1]}))
    assert a.users == b.users
    assert a.decoded()["user"].to_list() == [3, 1, 2]
    assert b.decoded()["user"].to_list() == [2, 3, 1]


def test_timestamps_round_and_large_integers_stay_exact():
    raw = pl.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "t": ["10", "11.6", "12"]})
    assert Interactions.from_frame(raw, timestamp_col="t").frame["timestamp"].to_list() == [10, 12, 12]
    ns = [1_700_000_000_123_456_789, 1_700_000_000_123_456_790, 1_700_000_000_123_456_791]
    raw = pl.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "t": ns})
    assert Interactions.from_frame(raw, timestamp_col="t").frame["timestamp"].to_list() == ns


def test_vocab_encode_decode_round_trip():
    data = _string_ids()
    raw = pl.Series("u", ["carol", "alice", "bob", "bob"])
    codes = data.users.encode(raw)
    assert codes.to_list() == [2, 0, 1, 1]
    assert codes.name == "u"
    assert data.users.decode(codes).to_list() == raw.to_list()
    assert data.users.decode(np.array([1, 2])).to_list() == ["bob", "carol"]
    assert data.users.decode([0]).to_list() == ["alice"]
    # decode(encode(all ids)) is the identity, and decoded() restores the raw frame's ids.
    assert data.items.decode(data.items.encode(data.items.ids)).to_list() == data.items.ids.to_list()
    decoded = data.decoded()
    assert decoded["user"].to_list() == ["carol", "alice", "bob", "alice", "carol"]
    assert decoded["item"].to_list() == ["z", "x", "y", "y", "x"]


def test_vocab_unknown_ids_raise_when_strict_else_null():
    vocab = Vocabulary.from_values(pl.Series([5, 1, 3, 1, None]))
    assert vocab.ids.to_list() == [1, 3, 5] and len(vocab) == 3
    with pytest.raises(KeyError, match=r"1 id\(s\) not in the vocabulary.*\[4\]"):
        vocab.encode(pl.Series([1, 4, 5]))
    assert vocab.encode(pl.Series([1, 4, 5]), strict=False).to_list() == [0, None, 2]
    strings = Vocabulary.from_values(pl.Series(["b", "a"]))
    with pytest.raises(KeyError, match="user"):
        strings.encode(pl.Series(["a", "zz"]), what="user")
    assert strings.encode(pl.Series(["zz", "b"]), strict=False).to_list() == [None, 1]


def test_vocab_rejects_nulls_and_duplicates():
    with pytest.raises(ValueError, match="null"):
        Vocabulary(pl.Series([1, None]))
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(pl.Series([1, 1]))


def test_interactions_requires_int64_codes():
    with pytest.raises(ValueError, match="item"):
        Interactions(pl.DataFrame({"user": [0]}), Vocabulary(pl.Series([1])), Vocabulary(pl.Series([1])))
    with pytest.raises(TypeError, match="user"):
        frame = pl.DataFrame({"user": pl.Series([0], dtype=pl.Int32), "item": [0]})
        Interactions(frame, Vocabulary(pl.Series([1])), Vocabulary(pl.Series([1])))


# ------------------------------------------------------------------------------------------------ views
def test_to_csr_shape_values_and_duplicate_sums():
    data = _string_ids()
    ones = data.to_csr()
    assert ones.shape == (3, 3) and ones.dtype == np.float32
    np.testing.assert_array_equal(ones.toarray(), [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    ratings = data.to_csr("rating", dtype=np.float64)
    assert ratings.dtype == np.float64
    np.testing.assert_array_equal(ratings.toarray(), [[5.0, 1.0, 0], [0, 3.0, 0], [2.5, 0, 4.0]])

    dup = Interactions.from_frame(
        pl.DataFrame({"user": [1, 1, 1, 2], "item": [7, 7, 8, 7], "r": [2.0, 3.0, 1.0, 4.0]}), rating_col="r"
    )
    counts = dup.to_csr()
    assert counts.nnz == 3  # the repeated (1, 7) is one stored entry
    np.testing.assert_array_equal(counts.toarray(), [[2, 1], [1, 0]])
    np.testing.assert_array_equal(dup.to_csr("rating").toarray(), [[5.0, 1.0], [4.0, 0]])


def test_to_csr_keeps_shape_of_vocabulary_for_a_split_part():
    data = _string_ids()
    part = data.with_frame(data.frame.filter(pl.col("user") == 0))
    matrix = part.to_csr()
    assert matrix.shape == (3, 3)
    assert matrix.nnz == 2 and matrix[1:].nnz == 0


def test_sequences_time_order_with_file_order_ties():
    raw = pl.DataFrame(
        {
            "user": [1, 2, 1, 1, 1, 2, 1],
            "item": [10, 50, 20, 30, 40, 60, 50],
            "ts": [5, 1, 3, 3, 9, 1, 3],
        }
    )
    data = Interactions.from_frame(raw, timestamp_col="ts")
    seq = data.sequences()
    assert seq["user"].to_list() == [0, 1]
    decoded = {
        int(data.users.decode([u])[0]): data.items.decode(items).to_list()
        for u, items in zip(seq["user"], seq["items"])
    }
    # user 1: ts 3,3,3 in file order (20, 30, 50), then 5 (10), then 9 (40); user 2: tie at 1 → file order.
    assert decoded == {1: [20, 30, 50, 10, 40], 2: [50, 60]}


def test_sequences_file_order_ties_hold_on_a_large_frame():
    # Large enough that an unstable (parallel) sort would scramble tied rows.
    n = 60_000
    rng = np.random.default_rng(0)
    raw = pl.DataFrame({"user": rng.integers(0, 3, n), "item": np.arange(n), "ts": rng.integers(0, 3, n)})
    data = Interactions.from_frame(raw, timestamp_col="ts")
    expected: dict[int, list[tuple[int, int]]] = {}
    for user, item, ts in raw.rows():
        expected.setdefault(user, []).append((ts, item))
    seq = data.sequences()
    for user, items in zip(seq["user"], seq["items"]):
        assert items.to_list() == [item for _, item in sorted(expected[user])]


def test_sequences_without_timestamp_use_file_order():
    data = Interactions.from_frame(pl.DataFrame({"user": [2, 1, 2, 1], "item": [3, 2, 1, 9]}))
    seq = data.sequences()
    assert seq["user"].to_list() == [0, 1]
    assert [data.items.decode(s).to_list() for s in seq["items"]] == [[2, 9], [3, 1]]


def test_describe():
    data = _string_ids()
    stats = data.describe()
    assert stats == {
        "name": "interactions",
        "interactions": 5,
        "users": 3,
        "items": 3,
        "active_users": 3,
        "active_items": 3,
        "density": pytest.approx(5 / 9),
        "history_min": 1,
        "history_median": 2.0,
        "history_mean": pytest.approx(5 / 3),
        "history_max": 2,
        "rating_mean": pytest.approx(15.5 / 5),
        "timestamp_min": 5,
        "timestamp_max": 30,
    }
    # A part keeps the vocabulary sizes but counts only its active users and items.
    part = data.with_frame(data.frame.filter(pl.col("user") == 0)).describe()
    assert (part["users"], part["items"], part["active_users"], part["active_items"]) == (3, 3, 1, 2)
    assert part["density"] == pytest.approx(2 / 9)
    implicit = Interactions.from_frame(pl.DataFrame({"user": [1], "item": [1]}), name="x").describe()
    assert implicit["name"] == "x" and "rating_mean" not in implicit and "timestamp_min" not in implicit


# ------------------------------------------------------------------------------------------------ compact
def test_compact_after_removing_rows_shrinks_vocab_and_rekeys_features():
    raw = pl.DataFrame({"user": ["u1", "u2", "u3", "u2"], "item": [10, 20, 30, 30], "rid": [0, 1, 2, 3]})
    user_features = pl.DataFrame({"user": ["u3", "u1", "u2", "ghost"], "age": [30, 10, 20, 99]})
    item_features = pl.DataFrame({"item": [30, 20, 10], "genre": ["c", "b", "a"]})
    data = Interactions.from_frame(raw, user_features=user_features, item_features=item_features)
    # Feature frames are keyed by codes and sorted; the id without interactions is dropped.
    assert data.user_features.to_dict(as_series=False) == {"user": [0, 1, 2], "age": [10, 20, 30]}
    assert data.item_features.to_dict(as_series=False) == {"item": [0, 1, 2], "genre": ["a", "b", "c"]}

    assert data.compact() is data  # nothing to drop

    # Drop u1 (and with it item 10) → u2, u3 and items 20, 30 remain.
    smaller = data.with_frame(data.frame.filter(pl.col("rid") != 0)).compact()
    assert smaller.users.ids.to_list() == ["u2", "u3"]
    assert smaller.items.ids.to_list() == [20, 30]
    assert smaller.frame["user"].to_list() == [0, 1, 0]
    assert smaller.frame["item"].to_list() == [0, 1, 1]
    assert smaller.frame["rid"].to_list() == [1, 2, 3]
    assert smaller.decoded().select("user", "item").rows() == [("u2", 20), ("u3", 30), ("u2", 30)]
    assert smaller.user_features.to_dict(as_series=False) == {"user": [0, 1], "age": [20, 30]}
    assert smaller.item_features.to_dict(as_series=False) == {"item": [0, 1], "genre": ["b", "c"]}
    assert smaller.to_csr().shape == (2, 2)


def test_compact_drops_only_items_when_users_all_remain():
    data = Interactions.from_frame(pl.DataFrame({"user": [1, 1, 2], "item": [5, 6, 6]}))
    smaller = data.with_frame(data.frame.filter(pl.col("item") != 0)).compact()
    assert smaller.users == data.users
    assert smaller.items.ids.to_list() == [6]
    assert smaller.frame["item"].to_list() == [0, 0]


# ------------------------------------------------------------------------------------------------ concat
def test_concat_of_splits_restores_the_rows():
    raw = pl.DataFrame(
        {
            "user": np.repeat(np.arange(10), 6),
            "item": np.tile(np.arange(6), 10),
            "rid": np.arange(60),
        }
    )
    data = Interactions.from_frame(raw)
    train, valid, test = per_user_random(data, (0.6, 0.2, 0.2), seed=1)
    whole = concat([train, valid, test])
    assert whole.users == data.users and whole.items == data.items
    assert sorted(whole.frame.rows()) == sorted(data.frame.rows())
    train_valid = concat([train, valid])
    assert len(train_valid) == len(train) + len(valid)
    assert train_valid.frame.rows() == train.frame.rows() + valid.frame.rows()


def test_concat_refuses_different_vocabularies():
    a = Interactions.from_frame(pl.DataFrame({"user": [1], "item": [1]}))
    b = Interactions.from_frame(pl.DataFrame({"user": [2], "item": [1]}))
    with pytest.raises(ValueError, match="different vocabularies"):
        concat([a, b])


# ------------------------------------------------------------------------------------------------ errors
def test_missing_column_is_named():
    raw = pl.DataFrame({"user": [1], "movie": [2]})
    with pytest.raises(DataError, match=r"ratings\.csv: missing column\(s\) \['item'\]; found \['user', 'movie'\]"):
        Interactions.from_frame(raw, source="ratings.csv")
    with pytest.raises(DataError, match=r"missing column\(s\) \['stamp'\]"):
        Interactions.from_frame(raw, item_col="movie", timestamp_col="stamp", source="ratings.csv")


def test_single_column_hints_at_the_delimiter():
    raw = pl.DataFrame({"user;item": ["1;2"]})
    with pytest.raises(DataError, match="delimiter is probably wrong"):
        Interactions.from_frame(raw, source="x.csv")


def test_null_user_id_names_column_and_data_row():
    raw = pl.DataFrame({"uid": ["a", "b", None, None], "iid": [1, 2, 3, 4]})
    with pytest.raises(DataError, match=r"f\.csv: column 'uid' has 2 null id\(s\); first at data row 3"):
        Interactions.from_frame(raw, user_col="uid", item_col="iid", source="f.csv")
    raw = pl.DataFrame({"user": [1, 2], "item": [None, 4]})
    with pytest.raises(DataError, match=r"column 'item' has 1 null id\(s\); first at data row 1"):
        Interactions.from_frame(raw, source="f.csv")


def test_non_numeric_rating_names_column_row_and_value():
    raw = pl.DataFrame({"user": [1, 2, 3, 4], "item": [1, 2, 3, 4], "stars": ["5", "4.5", "four", "x"]})
    with pytest.raises(DataError, match=r"f\.csv: column 'stars' must be numeric; data row 3 holds 'four' \(2 bad"):
        Interactions.from_frame(raw, rating_col="stars", source="f.csv")


@pytest.mark.parametrize("bad", ["", "nan", "inf", "1e30"])
def test_non_numeric_timestamp_names_column_row_and_value(bad: str):
    raw = pl.DataFrame({"user": [1, 2], "item": [1, 2], "t": ["100", bad]})
    with pytest.raises(DataError, match=rf"column 't' must be numeric; data row 2 holds '{bad}'"):
        Interactions.from_frame(raw, timestamp_col="t", source="f.csv")


def test_null_rating_is_an_error():
    raw = pl.DataFrame({"user": [1, 2], "item": [1, 2], "r": [4.0, None]})
    with pytest.raises(DataError, match=r"column 'r' must be numeric; data row 2 holds None"):
        Interactions.from_frame(raw, rating_col="r", source="f.csv")


def test_empty_frame_is_an_error():
    with pytest.raises(DataError, match=r"empty\.csv: no interactions"):
        Interactions.from_frame(pl.DataFrame({"user": [], "item": []}), source="empty.csv")


def test_columns_that_would_be_shadowed_are_an_error() -> None:
    frame = pl.DataFrame({"uid": [1, 2], "item": [3, 4], "user": ["a", "b"], "rating": ["x", "y"]})
    with pytest.raises(DataError, match=r"\['user', 'rating'\] would be shadowed"):
        Interactions.from_frame(frame, user_col="uid", item_col="item")


def test_to_pandas_gives_raw_ids():
    raw = pl.DataFrame({"user": ["u2", "u1", "u2"], "item": [30, 10, 10], "rating": [1.0, 4.0, 5.0]})
    frame = Interactions.from_frame(raw, rating_col="rating").to_pandas()
    assert type(frame).__module__.startswith("pandas")
    assert frame["user"].tolist() == ["u2", "u1", "u2"] and frame["item"].tolist() == [30, 10, 10]
    assert frame["rating"].tolist() == [1.0, 4.0, 5.0]
