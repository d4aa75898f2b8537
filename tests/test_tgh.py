"""TGH on tiny hand-built graphs whose rings, scores and lists are worked out by hand, plus the shared contract."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest
import torch

from recsys.baselines.tgh import TGH, assemble
from recsys.data.graph import edge_bonus, hop_rings, transition_counts
from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.testing import RecommenderContract


def sequences(seqs: dict[str, list[int]], n_items: int | None = None) -> Interactions:
    """Users' item sequences (items are integers, so raw id i has code i when every id 0..n-1 occurs)."""
    rows = [(user, item, t) for user, items in seqs.items() for t, item in enumerate(items)]
    frame = pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row")
    return Interactions.from_frame(frame, timestamp_col="timestamp")


def vectors_2d(angles_deg: list[float]) -> np.ndarray:
    radians = np.deg2rad(np.asarray(angles_deg))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------- graph parts
def test_rings_are_exact_shortest_distance_layers() -> None:
    # 0→1, 0→2, 1→3, 2→3, 3→4, 4→0 (a cycle back to the source), 1→0
    a = np.array([0, 0, 1, 2, 3, 4, 1])
    b = np.array([1, 2, 3, 3, 4, 0, 0])
    rings = hop_rings(transition_counts(a, b, 5), depth=3)
    assert sorted(rings[0][0].indices) == [1, 2]
    assert sorted(rings[1][0].indices) == [3]  # 0 (via 1→0) is the source: removed
    assert sorted(rings[2][0].indices) == [4]
    assert sorted(rings[1][3].indices) == [0]  # 3→4→0
    assert sorted(rings[2][3].indices) == [1, 2]  # 3 itself (0→…→3) is removed


def test_edge_bonus_is_log_count_over_row_max() -> None:
    a = np.array([0, 0, 0, 0, 1])
    b = np.array([1, 1, 1, 2, 2])  # c(0→1) = 3, c(0→2) = 1, c(1→2) = 1
    bonus = edge_bonus(transition_counts(a, b, 3)).toarray()
    assert bonus[0, 1] == pytest.approx(1.0)
    assert bonus[0, 2] == pytest.approx(np.log(2) / np.log(4))
    assert bonus[1, 2] == pytest.approx(1.0)
    assert bonus[2].sum() == 0.0


def test_assemble_tops_up_short_rings_from_earlier_overflow_then_pads() -> None:
    rng = random.Random(0)
    used: set[int] = set()
    # ring 1 has 4 picks (budget 2 → overflow [12, 13]); ring 2 has 1 pick (budget 3 → 2 from overflow first)
    picks = [np.array([10, 11, 12, 13]), np.array([20, -1, -1, -1]), np.array([-1, -1, -1, -1])]
    out = assemble(picks, [2, 3, 1], 6, np.arange(100), rng, used)
    assert out[:5] == [10, 11, 12, 13, 20]  # ring 1 block, the overflow that tops up ring 2, then ring 2's own
    assert out[5] not in {10, 11, 12, 13, 20} and len(set(out)) == 6  # one random pad
    expected_pad = random.Random(0).sample([x for x in range(100) if x not in {10, 11, 12, 13, 20}], 1)
    assert out[5] == expected_pad[0]
    assert used == set(out)


def test_assemble_appends_leftover_overflow_before_padding() -> None:
    out = assemble([np.array([5, 6, 7]), np.array([-1, -1])], [1, 1], 3, np.arange(10), random.Random(1), set())
    assert out == [5, 6, 7]  # ring 2 empty: topped up with 6, then leftover 7 fills the list


# ---------------------------------------------------------------------------------------------- TGH lists
@pytest.fixture()
def star() -> tuple[Interactions, np.ndarray]:
    """Item 0 leads to 1 (3 times), 2 and 3; 1 → 4; 4 → 5; item 6 is isolated from 0's graph (6 → 7).

    Vectors (angles): 0 at 0°, 1 at 80°, 2 at 10°, 3 at 30°, 4 at 5°, 5 at 0°, 6 at 90°, 7 at 45°.
    """
    seqs = {"a": [0, 1, 4, 5], "b": [0, 1, 7], "c": [0, 1, 6], "d": [0, 2], "e": [0, 3], "f": [6, 7], "g": [2, 0]}
    return sequences(seqs), vectors_2d([0, 80, 10, 30, 5, 0, 90, 45])


def test_tgh1_ring_order_dominates_and_bonus_applies_to_ring_one(star) -> None:
    data, vecs = star
    model = TGH("tgh-1", budgets=(2, 1, 1), alpha=0.5, seed=7).fit(data, vectors=vecs)
    # user g's last item is 0. Ring 1 = {1, 2, 3}: cos 0.17+0.5·1 (c=3 is the row max), 0.98+0.5·log2/log4,
    # 0.87+0.5·log2/log4 → 1 (0.674) < 3 (1.116) < 2 (1.235): order 2, 3 | ring 2 = {4, 6, 7}: 4 (cos 5° ≈ 1)
    # | ring 3 = {5} (0 →1 →4 →5).
    user = data.users.encode(pl.Series(["g"])).to_numpy()
    assert model.rank_lists(user)[0].tolist() == [2, 3, 4, 5]
    scores = model.score(torch.tensor(user))[0]
    assert scores[[2, 3, 4, 5]].tolist() == [5.0, 4.0, 3.0, 2.0]  # list positions, best first
    assert (scores[[0, 1, 6, 7]] < 0).all()  # everything else below the list (anchor cosine − 2)


def test_without_bonus_the_ring_is_ordered_by_cosine(star) -> None:
    data, vecs = star
    model = TGH("tgh-1", budgets=(3,), alpha=0.0).fit(data, vectors=vecs)
    user = data.users.encode(pl.Series(["g"])).to_numpy()
    assert model.rank_lists(user)[0].tolist() == [2, 3, 1]


def test_tgh1_overflow_and_seeded_random_padding(star) -> None:
    data, vecs = star
    model = TGH("tgh-1", budgets=(1, 5, 1), seed=3).fit(data, vectors=vecs)
    user = data.users.encode(pl.Series(["g"])).to_numpy()
    out = model.rank_lists(user)[0].tolist()
    # ring 1 top-1 = 2, overflow [3, 1]; ring 2 (3 items: 4, 7, 6 by cosine) is 2 short → tops up 3, 1 first
    assert out[:6] == [2, 3, 1, 4, 7, 6]
    # ring 3 = {5}; list full at 7
    assert out[6] == 5
    again = TGH("tgh-1", budgets=(1, 5, 1), seed=3).fit(data, vectors=vecs).rank_lists(user)[0].tolist()
    assert again == out


def test_padding_uses_random_seed_plus_user(star) -> None:
    data, vecs = star
    model = TGH("tgh-1", budgets=(7, 2, 1), seed=42).fit(data, vectors=vecs)
    user = int(data.users.encode(pl.Series(["f"])).to_numpy()[0])  # last item 7 has no out-edges: all padding
    out = model.rank_lists(np.array([user]))[0].tolist()
    nodes = sorted({0, 1, 2, 3, 4, 5, 6, 7})
    assert out == random.Random(42 + user).sample(nodes, 8) + [-1, -1]  # 8 graph nodes for 10 slots


def test_history_is_kept_by_default_and_removed_on_request(star) -> None:
    data, vecs = star
    user = data.users.encode(pl.Series(["g"])).to_numpy()  # history 2, 0
    kept = TGH("tgh-1", budgets=(2, 1, 1)).fit(data, vectors=vecs).rank_lists(user)[0].tolist()
    assert 2 in kept
    filtered = TGH("tgh-1", budgets=(2, 1, 1), filter_history=True).fit(data, vectors=vecs).rank_lists(user)[0]
    assert 2 not in filtered.tolist() and 0 not in filtered.tolist()
    assert filtered.tolist()[:2] == [3, 1]


def test_tgh2_second_source_excludes_the_first_blocks_items(star) -> None:
    data, vecs = star
    # user a: history 0, 1, 4, 5 → source A = 5 (no out-edges: its block is padding), B = 4 → ring 1 {5}, ring 2 {}
    model = TGH("tgh-2", budgets=(1, 1), second_budgets=(1, 1), seed=0).fit(data, vectors=vecs)
    user = data.users.encode(pl.Series(["g"])).to_numpy()
    # user g: A = 0 → ring 1 best 2 (1 slot), ring 2 best 4; B = 2 → ring 1 {0}, ring 2 {1, 2→…}: 0, then 1 or 3
    out = model.rank_lists(user)[0].tolist()
    assert out[:2] == [2, 4]
    assert out[2] == 0
    assert len(set(out)) == 4
    assert out[3] == 3  # ring 2 of 2 = {1, 3} minus taken; 3 (30°) is closer to 2 (10°) than 1 (80°)


def test_tgh2_with_one_item_history_pads_the_second_block(star) -> None:
    data, vecs = star
    single = sequences({"x": [0, 1, 4], "y": [3]})  # y has one item: no second source
    model = TGH("tgh-2", seed=5).fit(single, vectors=vectors_2d([0, 80, 5, 30]))
    user = int(single.users.encode(pl.Series(["y"])).to_numpy()[0])
    out = model.rank_lists(np.array([user]))[0]
    assert (out[out >= 0] >= 0).all() and len(set(out[out >= 0].tolist())) == int((out >= 0).sum())


def test_default_budgets_match_the_paper() -> None:
    assert TGH("tgh-1").budgets == (7, 2, 1) and TGH("tgh-1").list_length == 10
    two = TGH("tgh-2")
    assert two.budgets == (5, 1) and two.second_budgets == (3, 1) and two.list_length == 10
    with pytest.raises(ValueError, match="variant"):
        TGH("tgh-3")  # type: ignore[arg-type]


def test_a_longer_history_moves_the_source_to_the_newest_item(star) -> None:
    data, vecs = star
    model = TGH("tgh-1", budgets=(1,)).fit(data, vectors=vecs)
    user = data.users.encode(pl.Series(["d"])).to_numpy()  # history 0, 2 → source 2 → ring 1 {0}
    assert model.rank_lists(user)[0].tolist() == [0]
    extra = data.with_frame(pl.DataFrame({"user": user, "item": [1], "timestamp": [99]}))
    longer = Sequences.from_interactions(data, extra)  # newest item 1 (80°) → ring 1 {4, 6, 7}, equal bonus → 6 (90°)
    assert model.rank_lists(user, longer)[0].tolist() == [6]
    assert model.rank_lists(user)[0].tolist() == [0]  # the query's history leaves no state behind


# ---------------------------------------------------------------------------------------------- contract
class TestTGH1(RecommenderContract):
    def make_model(self):
        return TGH("tgh-1", encoder="tfidf", filter_history=True)


class TestTGH1AuthorsDefaults(RecommenderContract):
    # History stays in the 10-slot list (as the authors); once `recommend` masks those seen items, the rest comes
    # from the anchor-cosine fallback, and this fixture's item texts ("Item: i3") carry no community signal.
    personalised = False

    def make_model(self):
        return TGH("tgh-1", encoder="tfidf")


class TestTGH2(RecommenderContract):
    def make_model(self):
        return TGH("tgh-2", encoder="tfidf", filter_history=True)


@pytest.mark.slow
def test_tgh_lists_every_ml100k_user_in_under_two_seconds(ml100k) -> None:
    import time

    from recsys.data.splits import leave_k_out

    train, valid, _ = leave_k_out(ml100k, 1)
    for variant in ("tgh-1", "tgh-2"):
        model = TGH(variant, encoder="tfidf").fit(train)  # vectors computed (and cached) here
        history = Sequences.from_interactions(train, valid)
        started = time.perf_counter()
        model.score(torch.arange(train.n_users), history)
        assert time.perf_counter() - started < 2.0
