"""Shortcut diagnostics on cases with hand-computed answers, and the audit report end to end on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.data.splits import leave_k_out
from recsys.data.synthetic import synthetic_sequences
from recsys.diagnostics import bootstrap_difference, bootstrap_mean, branching, smoothness
from recsys.diagnostics.audit import run_audit


def walks(seqs: dict[str, list[int]]) -> Interactions:
    rows = [(user, item, t) for user, items in seqs.items() for t, item in enumerate(items)]
    return Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "ts"], orient="row"), timestamp_col="ts")


def test_bootstrap_mean_of_a_constant_and_a_known_spread() -> None:
    flat = bootstrap_mean(np.full(50, 0.3))
    assert (flat.value, flat.low, flat.high, flat.n) == (pytest.approx(0.3), pytest.approx(0.3), pytest.approx(0.3), 50)
    coin = bootstrap_mean(np.tile([0.0, 1.0], 500), seed=1)
    assert coin.value == 0.5 and coin.low < 0.5 < coin.high
    assert coin.high - coin.low == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(1000), rel=0.2)  # normal approximation
    diff = bootstrap_difference(np.ones(10), np.zeros(10))
    assert diff.value == 1.0


def test_branching_counts_out_degree_and_ring_coverage() -> None:
    # train walks (first n-2 items): a: 0 1 2 | b: 0 3 4 | c: 1 2 0; valid/test items follow
    data = walks({"a": [0, 1, 2, 9, 1], "b": [0, 3, 4, 9, 0], "c": [1, 2, 0, 9, 9]})
    train, valid, test = leave_k_out(data, 1)
    history = Sequences.from_interactions(train, valid)
    out = branching(train, history, test)
    # edges 0→1, 1→2, 0→3, 3→4, 2→0: out-degrees 0:2, 1:1, 2:1, 3:1 → mean 5/4
    assert out["mean_out_degree"].value == pytest.approx(1.25)
    # transitions by source: 0 (twice, degree 2), 1 (twice: a and c, degree 1), 3 (1), 2 (1) → (2+2+1+1+1+1)/6
    assert out["traffic_weighted_out_degree"].value == pytest.approx(8 / 6)
    # every user's last history item is 9 (the validation item), which has no out-edges: no target is covered
    assert out["target_in_ring1"].value == 0.0 and out["target_in_rings_le2"].value == 0.0


def test_ring_coverage_of_targets_next_to_the_last_item() -> None:
    data = walks({"a": [0, 1, 2, 0, 1], "b": [2, 0, 1, 2, 3], "c": [0, 1, 2, 1, 2]})
    train, valid, test = leave_k_out(data, 1)
    history = Sequences.from_interactions(train, valid)
    out = branching(train, history, test)
    # graph 0→1, 1→2, 2→0. a: last 0, target 1 (ring 1); b: last 2, target 3 (nowhere); c: last 1, target 2 (ring 1)
    assert out["target_in_ring1"].value == pytest.approx(2 / 3)
    assert out["target_in_rings_le2"].value == pytest.approx(2 / 3)


def test_smoothness_compares_consecutive_with_shuffled_pairs() -> None:
    data = walks({"a": [0, 1, 0, 1, 0, 1], "b": [2, 3, 2, 3, 2, 3]})
    train, valid, test = leave_k_out(data, 1)
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)  # pairs (0,1) and (2,3) identical
    out = smoothness(train, Sequences.from_interactions(train, valid), test, vectors, seed=0)
    assert out["consecutive_cosine"].value == pytest.approx(1.0)
    assert out["random_pair_cosine"].value < 1.0
    assert out["test_last_to_target_cosine"].value == pytest.approx(1.0)


def test_audit_writes_report_json_and_plots(tmp_path) -> None:
    data = synthetic_sequences(n_users=60, n_items=40, length=8, branching=2, smoothness=1.0, seed=5)
    record = run_audit(data, tmp_path, encoder="features", max_epochs=2, patience=2,
                       sasrec_kwargs={"hidden_size": 16, "max_len": 8})  # fmt: skip
    for name in ("report.md", "audit.json", "models.png", "smoothness.png", "history.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert set(saved["models"]) == {"sasrec", "tgh-1", "tgh-2"}
    assert set(saved["diagnostics"]["history_dependence"]) >= {"ndcg@10_last_1", "ndcg@10_last_all", "history_dependence"}
    assert saved["diagnostics"]["branching"]["mean_out_degree"]["value"] <= 2.0
    assert "Verdict" in (tmp_path / "report.md").read_text()
    assert record["verdict"].startswith("inconclusive: SASRec is under-trained (it trained 2 epoch(s), fewer than 20)")
    assert saved["sasrec_under_trained"] and saved["sasrec_epochs"] == 2


def test_sasrec_is_under_trained_when_short_or_still_improving() -> None:
    from recsys.diagnostics.audit import under_training, verdict

    assert under_training(5, 1, patience=10) is not None  # too few epochs, whatever validation did
    assert "still improving (best epoch 195 of 200)" in under_training(200, 195, patience=10)  # the cap cut it off
    assert under_training(60, 49, patience=10) is None  # early stopping fired 10 epochs after the best
    gap = {"gap": {"tgh-1_minus_sasrec_ndcg@10": bootstrap_difference(np.full(50, 0.3), np.full(50, 0.3), seed=0)}}
    assert verdict(gap).startswith("shortcut-competitive") and verdict(gap, "a reason").startswith("inconclusive")
