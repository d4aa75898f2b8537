"""`evaluate` end to end: ranking, exclusion, chunking, run frames, unknown ids, sampling, catalogue metrics, `compare`."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch
from scipy import stats

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.evaluation import Sampling, compare, evaluate
from recsys.evaluation.evaluator import _csr, _sample_candidates
from recsys.evaluation.metrics import USER_METRICS
from recsys.ranking import top_k
from recsys.recommender import Recommender

_spec = importlib.util.spec_from_file_location("recsys_tests_evaluation_reference", Path(__file__).with_name("reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

TOL = 1e-9


# ------------------------------------------------------------------------------------------------ helpers
class FixedScores(Recommender):
    """Scores from a table ``{raw user: {raw item: score}}``; records the user batches it is asked to score."""

    def __init__(self, table: dict[str, dict[str, float]]):
        self.table = table
        self.calls: list[np.ndarray] = []

    def fit(self, train: Interactions) -> FixedScores:
        self._remember(train)
        users, items = train.users.ids.to_list(), train.items.ids.to_list()
        self.matrix_ = torch.tensor([[self.table[u][i] for i in items] for u in users], dtype=torch.float32)
        return self

    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        self.calls.append(users.numpy().copy())
        return self.matrix_[users].clone()


def split(rows: list[tuple[str, str, str]]) -> tuple[Interactions, Interactions]:
    """(user, item, "train" | "test") rows → train and test `Interactions` sharing one vocabulary."""
    data = Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "split"], orient="row"))
    part = lambda name: data.with_frame(data.frame.filter(pl.col("split") == name).drop("split"))  # noqa: E731
    return part("train"), part("test")


def raw(frame_rows: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(frame_rows, schema=["user", "item"], orient="row")


def random_case(seed: int, n_users: int = 9, n_items: int = 12, max_train: int = 7, max_test: int = 3):
    """Random train/test (test items may repeat a training item) and a model with distinct random scores."""
    rng = np.random.default_rng(seed)
    users = [f"u{j:02d}" for j in range(n_users)]
    items = [f"i{j:02d}" for j in range(n_items)]
    rows = [(users[0], item, "train") for item in items]  # every item and user in the shared vocabulary
    for u in users[1:]:
        rows += [(u, items[j], "train") for j in rng.choice(n_items, rng.integers(0, max_train + 1), replace=False)]
        rows += [(u, items[j], "test") for j in rng.choice(n_items, rng.integers(0, max_test + 1), replace=False)]
    if not any(r[2] == "test" for r in rows):
        rows.append((users[1], items[0], "test"))
    values = rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(float)
    table = {u: {i: values[a, b] for b, i in enumerate(items)} for a, u in enumerate(users)}
    train, test = split(rows)
    return train, test, FixedScores(table).fit(train), table


def reference_evaluation(train: Interactions, test: Interactions, table, ks, extra_exclude=(), candidates=None):
    """Per-user reference metrics and catalogue metrics by plain sorting (train + extra_exclude items excluded)."""
    train_raw, test_raw = train.decoded(), test.decoded()
    banned: dict[str, set] = {}
    for row in list(train_raw.iter_rows(named=True)) + list(raw(list(extra_exclude)).iter_rows(named=True)):
        banned.setdefault(row["user"], set()).add(row["item"])
    relevant: dict[str, set] = {}
    for row in test_raw.iter_rows(named=True):
        relevant.setdefault(row["user"], set()).add(row["item"])
    catalogue = train.items.ids.to_list()
    per_user, lists = {}, []
    for user in sorted(relevant):
        pool = [i for i in catalogue if i not in banned.get(user, set())]
        if candidates is not None:
            pool = [i for i in pool if i in candidates[user]]
        ranked = sorted(pool, key=lambda i: -table[user][i])
        per_user[user] = ref.all_user_metrics(ranked, relevant[user], ks)
        lists.append(ranked)
    popularity = {}  # documented: interaction counts of everything excluded (train + valid), rows not deduplicated
    for item in train_raw["item"].to_list() + [item for _, item in extra_exclude]:
        popularity[item] = popularity.get(item, 0) + 1
    catalogue_values = {}
    for k in ks:
        catalogue_values[f"coverage@{k}"] = ref.coverage(lists, catalogue, k)
        catalogue_values[f"popularity@{k}"] = ref.mean_popularity(lists, popularity, k)
        catalogue_values[f"gini@{k}"] = ref.catalogue_gini(lists, catalogue, k)
    return per_user, catalogue_values


def assert_matches_reference(ev, per_user, catalogue, ks, prefix=""):
    assert ev.per_user["user"].to_list() == sorted(per_user)
    for row in ev.per_user.iter_rows(named=True):
        for name, value in per_user[row["user"]].items():
            assert row[prefix + name] == pytest.approx(value, abs=TOL), (row["user"], name)
    for name in (f"{m}@{k}" for m in USER_METRICS for k in ks):
        mean = sum(v[name] for v in per_user.values()) / len(per_user)
        assert ev.summary[prefix + name] == pytest.approx(mean, abs=TOL), name
    for name, value in catalogue.items():
        assert ev.summary[prefix + name] == pytest.approx(value, abs=TOL), name


# ------------------------------------------------------------------------------------------------ hand case
# Items a..f; u4 only trains (no test item) and so is never evaluated.
#   train: u1 {a, d}   u2 {b}   u3 {c, e, f}   u4 {a, b, c}     → training counts a2 b2 c2 d1 e1 f1
#   test:  u1 {e, f}   u2 {a}   u3 {d}
HAND_ROWS = (
    [("u1", "a", "train"), ("u1", "d", "train"), ("u2", "b", "train")]
    + [("u3", i, "train") for i in "cef"]
    + [("u4", i, "train") for i in "abc"]
    + [("u1", "e", "test"), ("u1", "f", "test"), ("u2", "a", "test"), ("u3", "d", "test")]
)
#          a    b    c    d    e    f
HAND_SCORES = {
    "u1": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # minus train {a, d} → ranking b, c, e, f
    "u2": [0.1, 0.9, 0.2, 0.8, 0.3, 0.7],  # minus train {b}    → ranking d, f, e, c, a
    "u3": [0.5, 0.4, 0.9, 0.3, 0.8, 0.2],  # minus train {c,e,f} → ranking a, b, d
    "u4": [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
}
HAND_TABLE = {u: dict(zip("abcdef", s)) for u, s in HAND_SCORES.items()}
HAND_RANKINGS = {"u1": list("bcef"), "u2": list("dfeca"), "u3": list("abd")}
HAND_RELEVANT = {"u1": {"e", "f"}, "u2": {"a"}, "u3": {"d"}}
L3 = 1 / math.log2(3)
# At K = 3:
#   u1 top-3 [b, c, e]: hit at rank 3 → recall 1/2, precision 1/3, hit 1, mrr 1/3,
#       ndcg = (1/log2 4) / (1 + 1/log2 3) = 0.5 / 1.6309298 = 0.3065736, map = P@3 / min(2, 3) = (1/3)/2 = 1/6
#   u2 top-3 [d, f, e]: a is only at rank 5 → all 0
#   u3 top-3 [a, b, d]: hit at rank 3 → recall 1, precision 1/3, hit 1, mrr 1/3, ndcg = 0.5 / 1 = 0.5, map = 1/3
# At K = 1 nobody has a hit: all 0.
HAND_AT_3 = {
    "u1": {"recall@3": 1 / 2, "precision@3": 1 / 3, "hit@3": 1.0, "mrr@3": 1 / 3, "ndcg@3": 0.5 / (1 + L3), "map@3": 1 / 6},
    "u2": {"recall@3": 0.0, "precision@3": 0.0, "hit@3": 0.0, "mrr@3": 0.0, "ndcg@3": 0.0, "map@3": 0.0},
    "u3": {"recall@3": 1.0, "precision@3": 1 / 3, "hit@3": 1.0, "mrr@3": 1 / 3, "ndcg@3": 0.5, "map@3": 1 / 3},
}  # fmt: skip
# Catalogue, popularity = training counts (a2 b2 c2 d1 e1 f1):
#   K = 1: lists [b], [d], [a] → counts a1 b1 d1, c/e/f 0: coverage 3/6 = 0.5; popularity (2 + 1 + 2)/3 = 5/3;
#          gini of [1,1,0,1,0,0]: 9 ordered pairs ×2 with |diff| 1 = 18; 18 / (2·36·0.5) = 0.5
#   K = 3: lists [b,c,e], [d,f,e], [a,b,d] → counts a1 b2 c1 d2 e2 f1: coverage 1;
#          popularity (1·2 + 2·2 + 1·2 + 2·1 + 2·1 + 1·1)/9 = 13/9; gini of [1,2,1,2,2,1]: 18 / (2·36·1.5) = 1/6
HAND_CATALOGUE = {
    "coverage@1": 0.5, "popularity@1": 5 / 3, "gini@1": 0.5,
    "coverage@3": 1.0, "popularity@3": 13 / 9, "gini@3": 1 / 6,
}  # fmt: skip


@pytest.fixture
def hand():
    train, test = split(HAND_ROWS)
    return train, test, FixedScores(HAND_TABLE).fit(train)


def test_hand_case_end_to_end(hand):
    train, test, model = hand
    ev = evaluate(model, test, exclude=[train], k=(3, 1))
    assert ev.ks == (1, 3) and ev.mode == "full" and ev.skipped_users == 0 and ev.unknown_items == 0
    assert ev.per_user["user"].to_list() == ["u1", "u2", "u3"]  # u4 has no test item
    assert ev.per_user["n_relevant"].to_list() == [2, 1, 1]
    for row in ev.per_user.iter_rows(named=True):
        for name, value in HAND_AT_3[row["user"]].items():
            assert row[name] == pytest.approx(value, abs=TOL), (row["user"], name)
        for metric in USER_METRICS:
            assert row[f"{metric}@1"] == 0.0
    for name in HAND_AT_3["u1"]:
        assert ev[name] == pytest.approx(sum(HAND_AT_3[u][name] for u in HAND_AT_3) / 3, abs=TOL)
    assert ev["recall@3"] == pytest.approx(0.5, abs=TOL)
    assert ev["hit@3"] == pytest.approx(2 / 3, abs=TOL)
    for name, value in HAND_CATALOGUE.items():
        assert ev[name] == pytest.approx(value, abs=TOL), name


def test_hand_case_rankings(hand):
    _, _, model = hand
    recs = model.recommend(k=6)
    for user, ranking in HAND_RANKINGS.items():
        assert recs.filter(pl.col("user") == user)["item"].to_list() == ranking


def test_hand_case_matches_reference_including_cut_offs_beyond_the_catalogue(hand):
    # k = 10 exceeds the 6 items: lists are shorter than K, precision still divides by K (e.g. u1: 2/10)
    train, test, model = hand
    ks = (1, 2, 3, 5, 10)
    ev = evaluate(model, test, exclude=[train], k=ks)
    per_user, catalogue = reference_evaluation(train, test, HAND_TABLE, ks)
    for user, ranking in HAND_RANKINGS.items():
        assert per_user[user] == ref.all_user_metrics(ranking, HAND_RELEVANT[user], ks)
    assert per_user["u1"]["precision@10"] == pytest.approx(2 / 10)
    assert per_user["u1"]["recall@10"] == 1.0
    assert_matches_reference(ev, per_user, catalogue, ks)


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_match_reference(seed):
    train, test, model, table = random_case(seed)
    ks = (1, 3, 5, 10, 15)
    ev = evaluate(model, test, exclude=[train], k=ks)
    per_user, catalogue = reference_evaluation(train, test, table, ks)
    assert_matches_reference(ev, per_user, catalogue, ks)


# ------------------------------------------------------------------------------------------------ exclusion
def test_excluded_test_items_are_relevant_but_never_hit(hand):
    train, test, model = hand
    extra = [("u1", "e")]  # a test item of u1
    ev = evaluate(model, test, exclude=[train, raw(extra)], k=(3, 10))
    u1 = ev.per_user.filter(pl.col("user") == "u1").row(0, named=True)
    # u1 ranks b, c, f: f is hit at rank 3, e can never be → recall stays 1/2 even at K = 10, R_u stays 2
    assert u1["n_relevant"] == 2
    assert u1["recall@10"] == pytest.approx(0.5, abs=TOL)
    assert u1["mrr@10"] == pytest.approx(1 / 3, abs=TOL)
    per_user, catalogue = reference_evaluation(train, test, HAND_TABLE, (3, 10), extra_exclude=extra)
    assert_matches_reference(ev, per_user, catalogue, (3, 10))
    # the run path agrees
    run = evaluate(model.recommend(k=6, exclude_seen=False), test.decoded(), exclude=[train.decoded(), raw(extra)], k=(3, 10))
    assert run.per_user.equals(ev.per_user)


def test_item_excluded_for_everyone_is_never_ranked(hand):
    train, test, model = hand
    everyone_b = raw([(u, "b") for u in ["u1", "u2", "u3", "u4"]])
    ev = evaluate(model, test, exclude=[train, everyone_b], k=(6,))
    full = evaluate(model, test, exclude=[train], k=(6,))
    # b was shown (to u1 and u3) before; now 5 of 6 items at most can be shown
    assert full["coverage@6"] == 1.0
    assert ev["coverage@6"] == pytest.approx(5 / 6, abs=TOL)


def test_top_k_never_returns_excluded_items():
    rng = np.random.default_rng(3)
    n_users, n_items, k = 20, 15, 15
    scores = torch.from_numpy(rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(np.float32))
    exclude = sp.random(n_users, n_items, density=0.4, format="csr", random_state=4, dtype=np.float32)
    exclude.data[:] = 1
    items, values = top_k(lambda u: scores[u].clone(), np.arange(n_users), k, exclude=exclude, batch_size=4)
    dense = exclude.toarray() > 0
    for u in range(n_users):
        finite = np.isfinite(values[u])
        shown = items[u][finite]
        assert not dense[u, shown].any()
        allowed = np.flatnonzero(~dense[u])
        expected = allowed[np.argsort(-scores[u].numpy()[allowed], kind="stable")]
        assert shown.tolist() == expected.tolist()
        assert np.all(np.diff(values[u][finite]) < 0)


# ------------------------------------------------------------------------------------------------ chunking / memory
@pytest.mark.parametrize("seed", range(3))
def test_chunking_invariance(seed):
    train, test, model, _ = random_case(seed, n_users=11)
    results = [evaluate(model, test, exclude=[train], k=(1, 5, 10), batch_size=b) for b in (1, 3, 1000)]
    for other in results[1:]:
        assert other.per_user.equals(results[0].per_user)
        assert other.summary == results[0].summary


@pytest.mark.parametrize("batch_size", [1, 2, 4, 100])
def test_score_never_called_with_more_than_batch_size_users(batch_size):
    train, test, model, _ = random_case(5, n_users=11)
    evaluated = np.unique(test.frame["user"].to_numpy())
    model.calls.clear()
    evaluate(model, test, exclude=[train], k=(5,), batch_size=batch_size)
    assert model.calls and all(len(c) <= batch_size for c in model.calls)
    assert sorted(np.concatenate(model.calls).tolist()) == evaluated.tolist()  # each evaluated user scored once
    model.calls.clear()
    top_k(model.score, np.arange(model.n_users), 4, batch_size=batch_size)
    assert all(len(c) <= batch_size for c in model.calls)
    assert len(model.calls) == math.ceil(model.n_users / batch_size)
    model.calls.clear()
    model.recommend(k=3, batch_size=batch_size)
    assert all(len(c) <= batch_size for c in model.calls)


# ------------------------------------------------------------------------------------------------ run frames
@pytest.mark.parametrize("seed", range(4))
def test_run_frame_from_recommend_equals_model_path(seed):
    train, test, model, _ = random_case(seed)
    ks = (1, 5, 10)
    direct = evaluate(model, test, exclude=[train], k=ks)
    run = model.recommend(k=max(ks))  # exclude_seen: the training items
    from_run = evaluate(run, test.decoded().select("user", "item"), exclude=[train.decoded()], k=ks)
    assert from_run.per_user.equals(direct.per_user)
    assert from_run.summary == pytest.approx(direct.summary, abs=TOL)


@pytest.mark.parametrize("seed", range(4))
def test_run_frame_full_score_dump_equals_model_path(seed):
    train, test, model, table = random_case(seed)
    ks = (1, 5, 10)
    direct = evaluate(model, test, exclude=[train], k=ks)
    dump = pl.DataFrame(
        [(u, i, s) for u, row in table.items() for i, s in row.items()], schema=["user", "item", "score"], orient="row"
    ).sample(fraction=1.0, shuffle=True, seed=seed)  # order of the run's rows must not matter
    from_run = evaluate(dump, test.decoded(), exclude=[train.decoded()], k=ks)
    assert from_run.per_user.equals(direct.per_user)
    assert from_run.summary == pytest.approx(direct.summary, abs=TOL)


def test_test_as_raw_frame_equals_test_as_interactions(hand):
    train, test, model = hand
    as_interactions = evaluate(model, test, exclude=[train], k=(1, 3, 5))
    as_frame = evaluate(model, test.decoded().select("user", "item"), exclude=[train.decoded()], k=(1, 3, 5))
    own_vocabulary = Interactions.from_frame(test.decoded().select("user", "item"))  # different codes, same ids
    as_other = evaluate(model, own_vocabulary, exclude=[train], k=(1, 3, 5))
    for other in (as_frame, as_other):
        assert other.per_user.equals(as_interactions.per_user)
        assert other.summary == as_interactions.summary


# ------------------------------------------------------------------------------------------------ unknown ids
def test_unknown_users_skipped_and_unknown_items_relevant_never_hit(hand):
    train, test, model = hand
    rows = test.decoded().select("user", "item").rows()
    extra = [("zz", "a"), ("zz", "b"), ("yy", "x"), ("u1", "x"), ("u1", "x"), ("u2", "y"), ("u4", "w")]
    ev = evaluate(model, raw(rows + extra), exclude=[train], k=(3, 10))
    assert ev.skipped_users == 2  # zz, yy
    assert ev.unknown_items == 4  # (u1, x) twice, (u2, y), (u4, w): interactions
    assert ev.per_user["user"].to_list() == ["u1", "u2", "u3", "u4"]
    got = {r["user"]: r for r in ev.per_user.iter_rows(named=True)}
    # u1 relevant {e, f, x} (the duplicated row counts once): both known items found by K = 10, x never
    assert got["u1"]["n_relevant"] == 3
    assert got["u1"]["recall@10"] == pytest.approx(2 / 3, abs=TOL)
    assert got["u1"]["recall@3"] == pytest.approx(1 / 3, abs=TOL)
    # u2 relevant {a, y}: a at rank 5
    assert got["u2"]["n_relevant"] == 2 and got["u2"]["recall@10"] == pytest.approx(0.5, abs=TOL)
    # u4's only test item is unknown: evaluated, relevant, never hit
    assert got["u4"]["n_relevant"] == 1
    assert all(got["u4"][f"{m}@{k}"] == 0.0 for m in USER_METRICS for k in (3, 10))
    # u3 is untouched
    assert got["u3"]["recall@3"] == 1.0


def test_duplicated_test_rows_do_not_change_results(hand):
    train, test, model = hand
    rows = test.decoded().select("user", "item").rows() + [("u1", "x")]
    once = evaluate(model, raw(rows), exclude=[train], k=(3,))
    twice = evaluate(model, raw(rows + rows), exclude=[train], k=(3,))
    assert twice.per_user.equals(once.per_user)


def test_users_without_test_items_are_not_evaluated(hand):
    train, test, model = hand
    ev = evaluate(model, test, exclude=[train], k=(3,))
    assert "u4" not in ev.per_user["user"].to_list()
    only_u3 = evaluate(model, raw([("u3", "d")]), exclude=[train], k=(3,))
    assert only_u3.per_user["user"].to_list() == ["u3"]
    assert only_u3["recall@3"] == 1.0


# ------------------------------------------------------------------------------------------------ sampling
def _sampling_inputs(seed: int):
    train, test, model, table = random_case(seed, n_users=10, n_items=40, max_train=12, max_test=4)
    test_csr = _csr([test.frame], train.n_users, train.n_items)
    exclude_csr = _csr([train.frame], train.n_users, train.n_items)
    users = np.flatnonzero(np.diff(test_csr.indptr) > 0)
    popularity = train.item_counts().astype(np.float64)
    return train, test, model, table, test_csr, exclude_csr, users, popularity


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
@pytest.mark.parametrize("n", [1, 3])
def test_sample_candidates_structure(distribution, n):
    *_, test_csr, exclude_csr, users, popularity = _sampling_inputs(0)
    sampling = Sampling(n=n, distribution=distribution, seed=7)
    cand = _sample_candidates(test_csr, exclude_csr, users, sampling, popularity)
    again = _sample_candidates(test_csr, exclude_csr, users, sampling, popularity)
    assert (cand != again).nnz == 0  # reproducible with the seed
    other = _sample_candidates(test_csr, exclude_csr, users, dataclasses.replace(sampling, seed=8), popularity)
    assert (cand != other).nnz > 0
    n_items = test_csr.shape[1]
    for u in range(test_csr.shape[0]):
        chosen = set(cand[u].indices.tolist())
        positives = set(test_csr[u].indices.tolist())
        excluded = set(exclude_csr[u].indices.tolist())
        if u not in users:
            assert not chosen
            continue
        assert positives <= chosen
        negatives = chosen - positives
        assert not negatives & excluded and not negatives & positives
        allowed = n_items - len(positives | excluded)
        assert len(negatives) == min(n * len(positives), allowed)
        if distribution == "popularity":  # items nobody trained on are (almost surely) never drawn
            assert all(popularity[i] > 0 for i in negatives)


def test_sampled_evaluation_labels_and_reproducibility():
    train, test, model, *_ = _sampling_inputs(1)
    for distribution in ("uniform", "popularity"):
        sampling = Sampling(n=2, distribution=distribution, seed=11)
        ev = evaluate(model, test, exclude=[train], k=(1, 5), sampling=sampling)
        assert ev.mode == f"sampled:{distribution}:2"
        assert ev.summary and all(key.startswith("sampled_") for key in ev.summary)
        metric_columns = [c for c in ev.per_user.columns if c not in ("user", "n_relevant")]
        assert metric_columns and all(c.startswith("sampled_") for c in metric_columns)
        again = evaluate(model, test, exclude=[train], k=(1, 5), sampling=sampling)
        assert again.per_user.equals(ev.per_user) and again.summary == ev.summary


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_sampled_evaluation_ranks_only_the_candidates(distribution):
    train, test, model, table, test_csr, exclude_csr, users, popularity = _sampling_inputs(2)
    sampling = Sampling(n=2, distribution=distribution, seed=5)
    ks = (1, 3, 10)
    ev = evaluate(model, test, exclude=[train], k=ks, sampling=sampling)
    cand = _sample_candidates(test_csr, exclude_csr, users, sampling, popularity)
    names = train.items.ids.to_list()
    candidates = {train.users.ids[int(u)]: {names[i] for i in cand[u].indices} for u in users}
    per_user, catalogue = reference_evaluation(train, test, table, ks, candidates=candidates)
    assert_matches_reference(ev, per_user, catalogue, ks, prefix="sampled_")


def test_sampling_with_every_negative_equals_full_ranking():
    train, test, model, *_ = _sampling_inputs(3)
    full = evaluate(model, test, exclude=[train], k=(1, 5, 10))
    sampled = evaluate(model, test, exclude=[train], k=(1, 5, 10), sampling=Sampling(n=1000, seed=1))
    renamed = sampled.per_user.rename({c: c.removeprefix("sampled_") for c in sampled.per_user.columns})
    assert renamed.equals(full.per_user)


# ------------------------------------------------------------------------------------------------ compare
def test_compare_identical_evaluations():
    train, test, model, _ = random_case(0, n_users=30, n_items=20)
    a = evaluate(model, test, exclude=[train], k=(5,))
    result = compare(a, a, "ndcg@5")
    assert result.t_pvalue == 1.0 and result.wilcoxon_pvalue == 1.0
    assert result.mean_difference == 0.0 and result.n_users == a.per_user.height


def test_compare_matches_scipy_on_aligned_users():
    train, test, model_a, _ = random_case(1, n_users=40, n_items=20)
    _, _, model_b, _ = random_case(2, n_users=40, n_items=20)  # the same ids, other scores
    model_b = FixedScores(model_b.table).fit(train)
    a = evaluate(model_a, test, exclude=[train], k=(10,))
    b = evaluate(model_b, test, exclude=[train], k=(10,))
    b = dataclasses.replace(b, per_user=b.per_user.reverse())  # alignment must be by user, not by row
    for metric in ("ndcg@10", "recall@10", "mrr@10"):
        joined = a.per_user.join(b.per_user, on="user", suffix="_b").sort("user")
        x, y = joined[metric].to_numpy(), joined[f"{metric}_b"].to_numpy()
        assert not np.allclose(x, y)
        result = compare(a, b, metric)
        t = stats.ttest_rel(x, y)
        w = stats.wilcoxon(x, y)
        assert result.n_users == len(x)
        assert result.mean_a == pytest.approx(x.mean(), abs=TOL)
        assert result.mean_difference == pytest.approx((x - y).mean(), abs=TOL)
        assert result.t_statistic == pytest.approx(t.statistic, abs=TOL)
        assert result.t_pvalue == pytest.approx(t.pvalue, abs=TOL)
        assert result.wilcoxon_statistic == pytest.approx(w.statistic, abs=TOL)
        assert result.wilcoxon_pvalue == pytest.approx(w.pvalue, abs=TOL)


# ------------------------------------------------------------------------------------------------ errors
def test_run_frame_missing_column(hand):
    train, test, model = hand
    run = model.recommend(k=3)
    with pytest.raises(ValueError, match="score"):
        evaluate(run.drop("score"), test.decoded(), k=(3,))
    with pytest.raises(ValueError, match="item"):
        evaluate(run.drop("item"), test.decoded(), k=(3,))


def test_test_frame_missing_column(hand):
    train, test, model = hand
    with pytest.raises(ValueError, match="item"):
        evaluate(model, test.decoded().select("user"), k=(3,))


def test_sampling_with_run_frame_rejected(hand):
    train, test, model = hand
    with pytest.raises(ValueError, match="sampled"):
        evaluate(model.recommend(k=3), test.decoded(), k=(3,), sampling=Sampling(n=2))


@pytest.mark.parametrize("k", [(0,), (), (-1, 5)])
def test_bad_cut_offs_rejected(hand, k):
    train, test, model = hand
    with pytest.raises(ValueError, match="cut-off"):
        evaluate(model, test, exclude=[train], k=k)


# ------------------------------------------------------------------------------------------------ ties
def test_popularity_metric_does_not_depend_on_the_other_cut_offs_asked_for(ml100k) -> None:
    from recsys.baselines import Popularity
    from recsys.data.splits import per_user_random

    train, valid, test = per_user_random(ml100k, (0.8, 0.1, 0.1), seed=2026)
    model = Popularity().fit(train)
    values = {ks: evaluate(model, test, exclude=[train, valid], k=ks).summary["ndcg@10"]
              for ks in [(10,), (10, 20), (1, 5, 10, 20, 50)]}  # fmt: skip
    assert len(set(values.values())) == 1, values


def test_recommend_returns_the_evaluators_lists(ml100k) -> None:
    from recsys.baselines import ItemKNN
    from recsys.data.splits import per_user_random

    train, _, _ = per_user_random(ml100k, (0.8, 0.1, 0.1), seed=2026)
    model = ItemKNN(k=20).fit(train)  # sparse similarities: many tied zero scores
    users = np.arange(train.n_users)
    items, _ = top_k(model.score, users, 10, exclude=train.binary_csr())
    recs = model.recommend(k=10)
    assert recs["rank"].max() == 10
    got = train.items.encode(recs["item"]).to_numpy().reshape(train.n_users, 10)
    np.testing.assert_array_equal(got, items)
    assert model.recommend(k=5)["item"].to_list() == recs.filter(pl.col("rank") <= 5)["item"].to_list()
