"""Each filter against small cases worked by hand: rows kept, provenance recorded and the result re-coded."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.filters import deduplicate, k_core, min_history, rating_threshold
from recsys.data.interactions import FilterStep, Interactions
from recsys.data.validation import DataError


def _data(rows: list[tuple], columns: list[str], **kwargs) -> Interactions:
    frame = pl.DataFrame(rows, schema=columns, orient="row")
    return Interactions.from_frame(frame, **kwargs)


def _pairs(data: Interactions) -> list[tuple]:
    """(raw user, raw item) of each row, in frame order."""
    return data.decoded().select("user", "item").rows()


# ------------------------------------------------------------------------------------------------ rating_threshold
RATED = [("u1", "a", 5.0), ("u1", "b", 3.0), ("u2", "a", 4.0), ("u3", "c", 1.0), ("u2", "c", 3.5)]


def test_rating_threshold_keeps_ratings_at_or_above_and_compacts():
    data = _data(RATED, ["user", "item", "r"], rating_col="r", name="toy")
    kept = rating_threshold(data, 4.0)
    assert _pairs(kept) == [("u1", "a"), ("u2", "a")]  # 4.0 is kept (>=), 3.5 is not
    assert kept.frame["rating"].to_list() == [5.0, 4.0]
    # u3, item b and item c are gone from the vocabularies; codes are dense again.
    assert kept.users.ids.to_list() == ["u1", "u2"]
    assert kept.items.ids.to_list() == ["a"]
    assert kept.frame["user"].to_list() == [0, 1] and kept.frame["item"].to_list() == [0, 0]
    assert kept.provenance == (FilterStep("rating_threshold", removed=3, remaining=2, reason="rating < 4.0"),)
    assert data.provenance == ()  # the input is untouched
    assert kept.name == "toy"


def test_rating_threshold_binarise_drops_the_rating_column():
    data = _data(RATED, ["user", "item", "r"], rating_col="r")
    kept = rating_threshold(data, 3.5, binarise=True)
    assert not kept.has_rating
    assert kept.frame.columns == ["user", "item"]
    assert _pairs(kept) == [("u1", "a"), ("u2", "a"), ("u2", "c")]
    assert kept.items.ids.to_list() == ["a", "c"]
    assert kept.provenance[-1].removed == 2 and kept.provenance[-1].remaining == 3


def test_rating_threshold_needs_ratings():
    data = _data([(1, 2)], ["user", "item"], name="implicit")
    with pytest.raises(DataError, match="implicit: rating_threshold needs a rating column"):
        rating_threshold(data, 3.0)


def test_filter_logs_what_it_removed(caplog):
    data = _data(RATED, ["user", "item", "r"], rating_col="r")
    with caplog.at_level(logging.INFO, logger="recsys.data.filters"):
        rating_threshold(data, 4.0)
    assert "rating_threshold: removed 3 of 5 rows (rating < 4.0)" in caplog.text


# ------------------------------------------------------------------------------------------------ deduplicate
# (u1, a) appears four times: ts 5 (rid 0), 3 (rid 1), 5 (rid 3), 3 (rid 6); (u2, b) twice: ts 1 (rid 2), 0 (rid 5).
DUPS = [
    ("u1", "a", 5, 0),
    ("u1", "a", 3, 1),
    ("u2", "b", 1, 2),
    ("u1", "a", 5, 3),
    ("u2", "c", 2, 4),
    ("u2", "b", 0, 5),
    ("u1", "a", 3, 6),
]


def _dups(timestamp: bool = True) -> Interactions:
    data = _data(DUPS, ["user", "item", "ts", "rid"], timestamp_col="ts" if timestamp else None)
    if not timestamp:
        data = data.with_frame(data.frame.drop("ts"))
    return data


def test_deduplicate_keep_last_by_time_file_order_for_ties():
    kept = deduplicate(_dups(), "keep_last")
    # (u1, a): latest ts 5 is shared by rids 0 and 3 → the later in the file (3). (u2, b): ts 1 → rid 2.
    assert kept.frame["rid"].to_list() == [2, 3, 4]  # survivors stay in file order
    assert _pairs(kept) == [("u2", "b"), ("u1", "a"), ("u2", "c")]
    assert kept.provenance == (
        FilterStep("deduplicate", removed=4, remaining=3, reason="repeated (user, item) pair, keep_last"),
    )


def test_deduplicate_keep_first_by_time_file_order_for_ties():
    kept = deduplicate(_dups(), "keep_first")
    # (u1, a): earliest ts 3 is shared by rids 1 and 6 → the earlier in the file (1). (u2, b): ts 0 → rid 5.
    assert kept.frame["rid"].to_list() == [1, 4, 5]
    assert kept.frame["timestamp"].to_list() == [3, 2, 0]
    assert kept.provenance[-1].reason == "repeated (user, item) pair, keep_first"
    assert kept.provenance[-1].removed == 4


@pytest.mark.parametrize("policy", ["keep_last", "keep_first"])
def test_deduplicate_tie_break_holds_on_a_large_frame(policy):
    # Large enough that an unstable (parallel) sort would scramble tied rows.
    n = 60_000
    rng = np.random.default_rng(0)
    users, items, stamps = (rng.integers(0, high, n).tolist() for high in (10, 10, 3))
    rows = list(zip(users, items, stamps, range(n)))
    data = _data(rows, ["user", "item", "ts", "rid"], timestamp_col="ts")
    best: dict[tuple[int, int], tuple[int, int]] = {}
    for user, item, ts, rid in rows:
        key = (ts, rid) if policy == "keep_last" else (-ts, -rid)
        if (user, item) not in best or key > best[(user, item)]:
            best[(user, item)] = key
    expected = sorted(abs(rid) for _, rid in best.values())
    assert deduplicate(data, policy).frame["rid"].to_list() == expected


def test_deduplicate_without_timestamp_uses_file_order():
    assert deduplicate(_dups(timestamp=False), "keep_last").frame["rid"].to_list() == [4, 5, 6]
    assert deduplicate(_dups(timestamp=False), "keep_first").frame["rid"].to_list() == [0, 2, 4]


def test_deduplicate_compacts_the_result():
    data = _data([(1, 10, 0), (1, 10, 1), (2, 20, 2)], ["user", "item", "ts"], timestamp_col="ts")
    kept = deduplicate(data, "keep_first")
    assert kept.users == data.users and kept.items == data.items  # nobody vanished: same vocabularies
    assert kept.frame["timestamp"].to_list() == [0, 2]


def test_deduplicate_error_names_row_user_and_item():
    data = _data([("u1", "a"), ("u2", "b"), ("u1", "c"), ("u2", "b"), ("u2", "b")], ["user", "item"], name="toy")
    message = r"toy: 3 rows repeat a \(user, item\) pair; first at row 2 \(user 'u2', item 'b'\)"
    with pytest.raises(DataError, match=message):
        deduplicate(data, "error")


def test_deduplicate_error_passes_clean_data_through():
    data = _data([("u1", "a"), ("u1", "b"), ("u2", "a")], ["user", "item"])
    assert deduplicate(data, "error") is data
    kept = deduplicate(data, "keep_last")
    assert kept.frame.equals(data.frame)
    assert kept.provenance[-1].removed == 0 and kept.provenance[-1].remaining == 3


# ------------------------------------------------------------------------------------------------ k_core
# 2-core: item w has one user (D) → round 1 drops it; then D holds only z → round 2 drops D, leaving z with one
# user (C) → dropped; round 3: C holds only y → dropped. A and B with x and y remain.
CHAIN = [("A", "x"), ("A", "y"), ("B", "x"), ("B", "y"), ("C", "y"), ("C", "z"), ("D", "z"), ("D", "w")]


def test_k_core_is_iterative():
    data = _data(CHAIN, ["user", "item"])
    core = k_core(data, user_k=2, item_k=2)
    assert sorted(_pairs(core)) == [("A", "x"), ("A", "y"), ("B", "x"), ("B", "y")]
    assert core.users.ids.to_list() == ["A", "B"]
    assert core.items.ids.to_list() == ["x", "y"]
    assert core.n_users == 2 and core.n_items == 2
    assert core.provenance == (
        FilterStep(
            "k_core", removed=4, remaining=4, reason="user with < 2 or item with < 2 interactions"
        ),
    )
    # The case needs the iteration: one pass (users, then items) only drops the (D, w) row.
    single = data.frame.filter(pl.len().over("user") >= 2).filter(pl.len().over("item") >= 2)
    assert single.height == 7


def test_k_core_user_only_and_item_only():
    data = _data(CHAIN + [("E", "x")], ["user", "item"])
    users_only = k_core(data, user_k=2, item_k=1)
    assert "E" not in users_only.users.ids.to_list()
    assert len(users_only) == 8 and users_only.items == data.items  # no item filter: w and z stay
    items_only = k_core(data, user_k=1, item_k=3)
    # x (A, B, E) and y (A, B, C) have 3 users; z and w do not → D loses every row, C keeps y.
    assert sorted(_pairs(items_only)) == [("A", "x"), ("A", "y"), ("B", "x"), ("B", "y"), ("C", "y"), ("E", "x")]
    assert items_only.users.ids.to_list() == ["A", "B", "C", "E"]


def test_k_core_that_empties_everything_and_round_limit():
    data = _data(CHAIN, ["user", "item"])
    assert len(k_core(data, user_k=3, item_k=3)) == 0
    with pytest.raises(RuntimeError, match="did not converge in 2 rounds"):
        k_core(data, user_k=2, item_k=2, max_rounds=2)


def _reference_core(pairs: list[tuple[int, int]], user_k: int, item_k: int) -> list[tuple[int, int]]:
    """The k-core by removing one violating user or item at a time (the core does not depend on the order)."""
    rows = list(pairs)
    while True:
        users: dict[int, int] = {}
        items: dict[int, int] = {}
        for u, i in rows:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        bad_items = sorted(i for i, n in items.items() if n < item_k)
        bad_users = sorted(u for u, n in users.items() if n < user_k)
        if bad_items:
            rows = [r for r in rows if r[1] != bad_items[0]]
        elif bad_users:
            rows = [r for r in rows if r[0] != bad_users[0]]
        else:
            return rows


@settings(max_examples=50, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=60),
    user_k=st.integers(1, 4),
    item_k=st.integers(1, 4),
)
def test_k_core_matches_one_at_a_time_reference(pairs, user_k, item_k):
    data = _data(pairs, ["user", "item"])
    core = k_core(data, user_k=user_k, item_k=item_k)
    assert sorted(_pairs(core)) == sorted(_reference_core(pairs, user_k, item_k))
    assert core.n_users == len(set(core.frame["user"].to_list()))  # compacted
    assert core.n_items == len(set(core.frame["item"].to_list()))
    step = core.provenance[-1]
    assert (step.removed, step.remaining) == (len(pairs) - len(core), len(core))


# ------------------------------------------------------------------------------------------------ min_history
def test_min_history_is_one_pass_and_leaves_items_alone():
    rows = [("A", "x"), ("A", "y"), ("A", "z"), ("B", "x"), ("B", "y"), ("C", "z"), ("D", "w")]
    data = _data(rows, ["user", "item"])
    kept = min_history(data, 2)
    assert _pairs(kept) == [("A", "x"), ("A", "y"), ("A", "z"), ("B", "x"), ("B", "y")]
    # z now has one user (A) but stays: items are not re-filtered. w had only D → gone from the vocabulary.
    assert kept.items.ids.to_list() == ["x", "y", "z"]
    assert kept.users.ids.to_list() == ["A", "B"]
    assert kept.provenance == (FilterStep("min_history", removed=2, remaining=5, reason="user history shorter than 2"),)
    assert len(min_history(data, 3)) == 3
    assert len(min_history(data, 1)) == 7


def test_provenance_accumulates_over_a_chain_of_filters():
    rows = [
        ("A", "x", 5.0),
        ("A", "x", 4.0),
        ("A", "y", 2.0),
        ("A", "z", 4.0),
        ("B", "x", 5.0),
        ("B", "y", 4.0),
        ("C", "y", 5.0),
    ]
    data = _data(rows, ["user", "item", "r"], rating_col="r")
    out = min_history(deduplicate(rating_threshold(data, 4.0), "keep_first"), 2)
    assert [(s.step, s.removed, s.remaining) for s in out.provenance] == [
        ("rating_threshold", 1, 6),  # (A, y, 2.0)
        ("deduplicate", 1, 5),  # the second (A, x)
        ("min_history", 1, 4),  # C, left with one row
    ]
    assert _pairs(out) == [("A", "x"), ("A", "z"), ("B", "x"), ("B", "y")]
    assert out.frame["rating"].to_list() == [5.0, 4.0, 5.0, 4.0]
    assert out.users.ids.to_list() == ["A", "B"]
