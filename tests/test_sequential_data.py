"""Per-user sequences, training windows, item text and the synthetic generator."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data.interactions import Interactions
from recsys.data.sequences import IGNORE, Sequences, first_targets
from recsys.data.splits import leave_k_out
from recsys.data.synthetic import synthetic_sequences
from recsys.data.text import item_texts
from recsys.embeddings.text import item_vectors


@pytest.fixture()
def tiny() -> Interactions:
    # user a: items 10, 11, 12, 13 (shuffled in the file, ordered by time); user b: 14, 15; user c: 16
    frame = pl.DataFrame({"user": ["a", "a", "a", "a", "b", "b", "c"], "item": [13, 10, 11, 12, 14, 15, 16],
                          "timestamp": [9, 1, 2, 3, 1, 2, 5]})  # fmt: skip
    return Interactions.from_frame(frame, timestamp_col="timestamp")


def test_sequences_follow_time_then_file_order(tiny) -> None:
    seqs = Sequences.from_interactions(tiny)
    assert seqs.of(0).tolist() == [0, 1, 2, 3] and seqs.of(1).tolist() == [4, 5] and seqs.of(2).tolist() == [6]
    a, b = seqs.transitions()
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1), (1, 2), (2, 3), (4, 5)]
    assert seqs.truncated(2).of(0).tolist() == [2, 3] and seqs.truncated(2).of(2).tolist() == [6]


def test_padded_and_last_items_are_right_aligned(tiny) -> None:
    seqs = Sequences.from_interactions(tiny)
    pad = seqs.pad
    assert seqs.padded(np.array([0, 1, 2]), 3).tolist() == [[1, 2, 3], [pad, 4, 5], [pad, pad, 6]]
    assert seqs.last_items(np.array([2, 0]), 2).tolist() == [[-1, 6], [2, 3]]


def test_windows_predict_every_next_item_exactly_once(tiny) -> None:
    inputs, targets = Sequences.from_interactions(tiny).windows(2)
    pad = tiny.n_items
    # user a: targets 1, 2, 3 with inputs 0, 1, 2 → windows [(1→2), (2→3)] and [(pad), (0→1)]; user b: (4→5)
    assert inputs.tolist() == [[1, 2], [pad, 0], [pad, 4]]
    assert targets.tolist() == [[2, 3], [IGNORE, 1], [IGNORE, 5]]
    assert (targets != IGNORE).sum() == len(tiny) - tiny.n_users


def test_training_windows_never_see_validation_or_test_items() -> None:
    data = synthetic_sequences(n_users=30, n_items=40, length=8, branching=3, seed=1)
    train, valid, test = leave_k_out(data, 1)
    inputs, targets = Sequences.from_interactions(train).windows(4)
    seqs = Sequences.from_interactions(data)
    # per user: the training windows hold exactly the user's first n - 2 items
    train_seqs = Sequences.from_interactions(train)
    for user in range(data.n_users):
        assert train_seqs.of(user).tolist() == seqs.of(user)[:-2].tolist()
    users, items = first_targets(test)
    assert items.tolist() == [seqs.of(u)[-1] for u in users]
    assert (targets != IGNORE).sum() == len(train) - train.n_users
    real = targets != IGNORE  # the (input, target) pairs are exactly the training transitions
    a, b = Sequences.from_interactions(train).transitions()
    assert sorted(zip(inputs[real].tolist(), targets[real].tolist())) == sorted(zip(a.tolist(), b.tolist()))


def test_item_text_uses_title_and_genres() -> None:
    frame = pl.DataFrame({"user": [1, 1], "item": [7, 8]})
    features = pl.DataFrame({"item": [7, 8], "title": ["Heat", "Up"], "genres": [["Crime", "Drama"], ["Animation"]],
                             "year": [1995, 2009]})  # fmt: skip
    data = Interactions.from_frame(frame, item_features=features)
    assert item_texts(data) == ["Title: Heat; Genres: Crime, Drama", "Title: Up; Genres: Animation"]
    assert item_texts(data, ["year"]) == ["Year: 1995", "Year: 2009"]
    with pytest.raises(KeyError, match="plot"):
        item_texts(data, ["plot"])
    bare = Interactions.from_frame(frame)
    assert item_texts(bare) == ["Item: 7", "Item: 8"]


def test_tfidf_vectors_are_unit_and_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    frame = pl.DataFrame({"user": [1, 1, 2], "item": [7, 8, 9]})
    features = pl.DataFrame({"item": [7, 8, 9], "title": ["Heat", "Heat Two", "Up"], "genres": [["Crime"], ["Crime"], ["Kids"]]})
    data = Interactions.from_frame(frame, item_features=features, name="tiny")
    vecs = item_vectors(data, "tfidf")
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]
    assert len(list((tmp_path / "tiny" / "item-vectors").glob("tfidf-*.npy"))) == 1
    with pytest.raises(FileNotFoundError, match="sentence-transformers"):
        item_vectors(data, "/no/such/model")


def test_synthetic_generator_controls_branching_and_smoothness() -> None:
    low = synthetic_sequences(n_users=200, n_items=100, length=10, branching=2, smoothness=1.0, seed=3)
    high = synthetic_sequences(n_users=200, n_items=100, length=10, branching=20, smoothness=0.0, seed=3)
    for data, degree in ((low, 2), (high, 20)):
        a, b = Sequences.from_interactions(data).transitions()
        out_degree = np.bincount(np.unique(a * data.n_items + b) // data.n_items)
        assert out_degree.max() <= degree
    vec_low, vec_high = item_vectors(low, "features"), item_vectors(high, "features")
    a, b = Sequences.from_interactions(low).transitions()
    smooth = float((vec_low[a] * vec_low[b]).sum(1).mean())
    a, b = Sequences.from_interactions(high).transitions()
    rough = float((vec_high[a] * vec_high[b]).sum(1).mean())
    assert smooth > 0.5 > abs(rough)
    again = synthetic_sequences(n_users=200, n_items=100, length=10, branching=2, smoothness=1.0, seed=3)
    assert again.frame.equals(low.frame)
    with pytest.raises(ValueError, match="smoothness"):
        synthetic_sequences(smoothness=2.0)
