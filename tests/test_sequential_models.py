"""SASRec + SequentialTask: causal encoder, objectives, history conditioning, the benchmark hook, the contract and
the two synthetic-data targets (TGH wins on low-branching smooth data, SASRec on high-branching rough data)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

import recsys
from recsys.baselines.tgh import TGH
from recsys.benchmark import run_benchmark
from recsys.data.sequences import Sequences
from recsys.data.splits import leave_k_out
from recsys.data.synthetic import synthetic_sequences
from recsys.models.sasrec import SASRec
from recsys.sequential import SequentialRecommender
from recsys.tasks.sequential import SequentialTask
from recsys.testing import RecommenderContract


class QuickSASRec(SequentialTask):
    """Few epochs on tiny data (the contract calls ``fit(train)`` with defaults)."""

    def fit(self, train, valid=None, **kwargs):
        return super().fit(train, valid, **{"max_epochs": 25, "batch_size": 16, **kwargs})


def small_sasrec(**kwargs) -> SASRec:
    return SASRec(**{"hidden_size": 16, "heads": 2, "inner_size": 32, "max_len": 10, "dropout": 0.1,
                     "attention_dropout": 0.1, **kwargs})  # fmt: skip


def test_encoder_is_causal_and_ignores_padding() -> None:
    torch.manual_seed(0)
    model = small_sasrec(max_len=6)
    model.build(20)
    model.eval()
    x = torch.tensor([[20, 20, 3, 4, 5, 6]])
    changed = x.clone()
    changed[0, -1] = 9
    torch.testing.assert_close(model(x)[:, :-1], model(changed)[:, :-1])  # the future never leaks back
    other_pad = torch.tensor([[20, 20, 3, 4, 5, 6]])
    other_pad[0, 0] = 20
    assert torch.isfinite(model(other_pad)).all()
    longer = torch.tensor([[7, 8, 3, 4, 5, 6]])  # the same last 4 items after real (not padded) older ones
    assert not torch.allclose(model(longer)[:, -1], model(x)[:, -1])
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 7, dtype=torch.long))


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_both_objectives_learn_a_deterministic_cycle(loss) -> None:
    # every user walks the cycle 0 → 1 → … → 9 → 0 from a random start: the next item is always last + 1
    rng = np.random.default_rng(0)
    rows = [(u, int((s + t) % 10), t) for u, s in enumerate(rng.integers(0, 10, 60)) for t in range(8)]
    data = recsys.Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "ts"], orient="row"), timestamp_col="ts")
    train, valid, test = leave_k_out(data, 1)
    task = SequentialTask(small_sasrec(), loss=loss, negatives=3, lr=0.02, seed=1)
    task.fit(train, None, max_epochs=20, batch_size=32)
    history = Sequences.from_interactions(train, valid)
    assert recsys.evaluate(task, test, k=(1,), history=history)["hit@1"] >= 0.9


def test_history_travels_with_the_query_and_leaves_no_state() -> None:
    data = synthetic_sequences(n_users=40, n_items=30, length=6, branching=3, seed=2)
    train, valid, test = leave_k_out(data, 1)
    task = QuickSASRec(small_sasrec(), seed=0).fit(train, max_epochs=2)
    users = torch.arange(5)
    after_fit = task.score(users)
    assert isinstance(task, SequentialRecommender) and task.uses_history
    longer = Sequences.from_interactions(train, valid)
    assert longer.lengths.tolist()[:5] == [5] * 5
    assert not torch.allclose(task.score(users, longer), after_fit)
    torch.testing.assert_close(task.score(users), after_fit)  # nothing was left behind
    torch.testing.assert_close(task.score(users, Sequences.from_interactions(train)), after_fit)
    with pytest.raises(ValueError, match="history covers"):
        task.score(users, Sequences.from_interactions(synthetic_sequences(n_users=3, n_items=5, length=3, branching=2, seed=1)))
    # the evaluator passes the excluded splits as the history: the same numbers as passing them by hand
    by_default = recsys.evaluate(task, test, exclude=[train, valid], k=(5,))
    by_hand = recsys.evaluate(task, test, exclude=[train, valid], k=(5,), history=longer)
    assert by_default.summary == by_hand.summary


def test_benchmark_conditions_sequential_models_on_train_and_valid() -> None:
    data = synthetic_sequences(n_users=30, n_items=25, length=6, branching=2, seed=4)
    seen: dict[str, int] = {}

    class Probe(TGH):
        def score(self, users, history=None):
            seen["history"] = int(history.lengths[0])
            return super().score(users, history)

    run_benchmark(data, protocol="loo", models={"probe": lambda seed: Probe(encoder="features")}, seeds=(1,), ks=(5,),
                  progress=False)  # fmt: skip
    assert seen["history"] == 5  # 6 items: 4 train + 1 valid as history, 1 test


def test_bad_configuration_errors_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="hidden_size"):
        SASRec(hidden_size=10, heads=3)
    with pytest.raises(ValueError, match="loss"):
        SequentialTask(SASRec(), loss="mse")  # type: ignore[arg-type]


class TestSASRecContract(RecommenderContract):
    def make_model(self):
        return QuickSASRec(small_sasrec(max_len=12), lr=0.01, seed=3)


# ---------------------------------------------------------------------------------------------- synthetic targets
def _tgh_and_sasrec_ndcg(data, epochs: int) -> tuple[float, float]:
    train, valid, test = leave_k_out(data, 1)
    tgh = TGH("tgh-1", encoder="features").fit(train)
    sasrec = SequentialTask(SASRec(hidden_size=32, max_len=20, dropout=0.2, attention_dropout=0.2), lr=5e-3, seed=0)
    sasrec.fit(train, None, max_epochs=epochs, batch_size=64)
    # the authors' protocol: full ranking, history not masked (synthetic walks may revisit items)
    history = Sequences.from_interactions(train, valid)
    return tuple(recsys.evaluate(m, test, k=(10,), history=history)["ndcg@10"] for m in (tgh, sasrec))  # type: ignore[return-value]


def test_tgh_beats_sasrec_on_low_branching_feature_smooth_sequences() -> None:
    data = synthetic_sequences(n_users=200, n_items=300, length=10, branching=2, smoothness=1.0, seed=0)
    tgh, sasrec = _tgh_and_sasrec_ndcg(data, epochs=15)
    assert tgh > sasrec + 0.05, (tgh, sasrec)


def test_sasrec_beats_tgh_on_high_branching_rough_sequences() -> None:
    data = synthetic_sequences(n_users=300, n_items=30, length=25, branching=12, smoothness=0.0, groups=3, seed=0)
    tgh, sasrec = _tgh_and_sasrec_ndcg(data, epochs=15)
    assert sasrec > tgh + 0.05, (tgh, sasrec)


def test_per_window_losses_are_each_windows_mean_over_its_real_positions() -> None:
    data = synthetic_sequences(n_users=12, n_items=15, length=6, branching=2, seed=3)
    task = QuickSASRec(small_sasrec(dropout=0.0, attention_dropout=0.0), seed=0).fit(data, max_epochs=1).eval()
    batch = task.training_examples(data)
    batch["target"][0, :-2] = -100  # a window with only its last two positions real
    with torch.no_grad():
        per_position, real = task.position_losses(batch)
        per_window = task.losses(batch)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), real.sum(1).cumsum(0)])
    for row in range(len(real)):
        expected = per_position[offsets[row] : offsets[row + 1]].mean()
        torch.testing.assert_close(per_window[row], expected)
    assert int(real[0].sum()) == 2
