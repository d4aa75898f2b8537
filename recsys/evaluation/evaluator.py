"""`evaluate`: full-ranking (or, when asked, sampled) top-K evaluation of a `Recommender` or of an external
run of recommendations, with per-user results kept for significance tests and slicing."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from recsys.data.csr import binary_csr
from recsys.data.interactions import Interactions, Vocabulary
from recsys.data.validation import DataError
from recsys.data.sequences import Sequences
from recsys.evaluation.metrics import CATALOGUE_METRICS, USER_METRICS, catalogue_metrics, user_metrics
from recsys.ranking import NonFiniteScoreError, ScoreFn, top_k
from recsys.recommender import Recommender

if TYPE_CHECKING:
    from recsys.mnar.propensity import Propensity

log = logging.getLogger(__name__)

Relevance = Interactions | pl.DataFrame


@dataclass(frozen=True)
class Sampling:
    """Sampled ranking: each user's test items are ranked against ``n`` sampled negatives per test item.

    Negatives are drawn from items that are neither test nor excluded items of the user, ``uniform``ly or in
    proportion to training ``popularity``. Every output of a sampled evaluation is labelled ``sampled_*``.
    """

    n: int = 100
    distribution: Literal["uniform", "popularity"] = "uniform"
    seed: int = 2026

    @property
    def label(self) -> str:
        return f"sampled:{self.distribution}:{self.n}"


@dataclass(frozen=True)
class Evaluation:
    """Result of `evaluate`.

    Attributes:
        summary: metric name → mean over evaluated users (plus catalogue metrics); keys are prefixed
            ``sampled_`` under sampled evaluation.
        per_user: one row per evaluated user: raw ``user`` id, ``n_relevant`` and every per-user metric.
        ks: cut-offs.
        mode: ``"full"`` or e.g. ``"sampled:uniform:100"``.
        skipped_users: test users the model cannot score (unknown to its training data), reported not hidden.
        unknown_items: test interactions with items unknown to the model (counted as relevant, never hit).
        duplicate_rows: rows of a run frame that repeat a (user, item) pair; each pair keeps its highest score.
        seconds: wall time of the evaluation.
    """

    summary: dict[str, float]
    per_user: pl.DataFrame
    ks: tuple[int, ...]
    mode: str = "full"
    skipped_users: int = 0
    unknown_items: int = 0
    duplicate_rows: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, metric: str) -> float:
        return self.summary[metric]


def evaluate(
    model: Recommender | pl.DataFrame,
    test: Relevance,
    *,
    exclude: Sequence[Relevance] = (),
    k: Sequence[int] = (10, 20),
    sampling: Sampling | None = None,
    batch_size: int = 1024,
    progress: bool = False,
    users: np.ndarray | None = None,
    propensity: Propensity | None = None,
    history: Sequences | None = None,
) -> Evaluation:
    """Evaluate a recommender, or a run frame ``user, item, score`` of raw ids, against ``test``.

    Args:
        model: a fitted `Recommender`, or a polars frame of an external system's scored recommendations.
        test: relevant items: an `Interactions` (codes of the same dataset) or a frame ``user, item`` of raw ids.
        exclude: interactions never to be recommended nor counted (train, valid); same types as ``test``.
        k: cut-offs.
        sampling: rank against sampled negatives instead of the full catalogue (models only).
        batch_size: users scored per chunk.
        progress: show a progress bar.
        users: evaluate only these user codes (models only; used to split users across ranks). Repeated
            codes are ranked again and reported once per occurrence.
        propensity: a `recsys.mnar.Propensity` (fitted on the model's training data when not fitted yet): adds
            IPS- and self-normalised-IPS-weighted metrics (``ips_dcg@K``, ``snips_recall@K``, …; models only;
            see `recsys.evaluation.unbiased`).
        history: what a sequential model (``model.uses_history``) scores from. By default it is the excluded
            interactions in time order — what the user did before the test: train for validation, train + valid
            for a leave-one-out test — and the training sequences when nothing is excluded.

    Users with no test items are not evaluated. Test users a model cannot score are counted in
    ``skipped_users`` and logged; test items unknown to a model count as relevant but can never be hit.
    """
    started = time.perf_counter()
    ks = tuple(sorted({int(x) for x in k}))
    if not ks or ks[0] < 1:
        raise DataError(f"cut-offs must be positive integers, got {tuple(k)}")
    if isinstance(model, pl.DataFrame):
        if users is not None:
            raise ValueError("users= selects model users by code; filter the run frame instead")
        if sampling is not None:
            raise ValueError("sampled evaluation needs a model that scores every item, not a fixed run")
        if propensity is not None:
            raise ValueError("propensity-weighted evaluation needs a model (its codes), not a fixed run")
        result = _evaluate_run(model, test, exclude, ks)
    elif isinstance(model, Recommender):
        score = model.score
        if model.uses_history:
            known = _query_history(model, exclude) if history is None else history
            score = functools.partial(model.score, history=known)
        result = _evaluate_model(model, score, test, exclude, ks, sampling, batch_size, progress, users)
    else:
        raise TypeError(f"evaluate() takes a Recommender or a polars run frame, not {type(model).__name__}")
    evaluation = _finish(*result, ks=ks, sampling=sampling, seconds=time.perf_counter() - started)
    if propensity is not None:
        from recsys.evaluation.unbiased import with_propensity_metrics

        test_codes = _as_codes(test, model.train_data.users, model.train_data.items, "test")[0]
        users_, _, items, _, hits = result[:5]
        evaluation = with_propensity_metrics(evaluation, model, test_codes, users_, items, hits, propensity, ks)
    return evaluation


# ------------------------------------------------------------------------------------------------ model path
def _query_history(model: Recommender, exclude: Sequence[Relevance]) -> Sequences | None:
    """The history a sequential model is evaluated from: the excluded splits (train, valid) joined in time order."""
    if not exclude:
        return None
    train = model.train_data
    if not all(isinstance(p, Interactions) and p.users == train.users and p.items == train.items for p in exclude):
        raise ValueError("a sequential model's history comes from the excluded splits, which must be Interactions of "
                         "the model's dataset; pass history= explicitly otherwise")  # fmt: skip
    return Sequences.from_interactions(*exclude)  # type: ignore[arg-type]


def _evaluate_model(
    model: Recommender,
    score: ScoreFn,
    test: Relevance,
    exclude: Sequence[Relevance],
    ks: tuple[int, ...],
    sampling: Sampling | None,
    batch_size: int,
    progress: bool,
    subset: np.ndarray | None,
):
    train = model.train_data
    test_codes, skipped, unknown_items, n_unknown_per_user = _as_codes(test, train.users, train.items, "test")
    excluded = [_as_codes(part, train.users, train.items, "exclude")[0] for part in exclude]
    exclude_csr = _relevance_csr(exclude, excluded, train) if excluded else None
    test_csr = _relevance_csr([test], [test_codes], train)
    n_rel = np.diff(test_csr.indptr) + n_unknown_per_user
    users = np.flatnonzero(n_rel > 0)
    if subset is not None:
        users = np.asarray(subset, dtype=np.int64)[n_rel[np.asarray(subset, dtype=np.int64)] > 0]
    popularity = _popularity(excluded, train)
    candidates = None
    if sampling is not None:
        candidates = _sample_candidates(test_csr, exclude_csr, users, sampling, popularity)
    items, scores = top_k(
        score, users, min(ks[-1], train.n_items), exclude=exclude_csr, candidates=candidates,
        batch_size=batch_size, progress=progress, labels=train.users.decode,
    )  # fmt: skip
    hits = _hits(items, scores, users, test_csr)
    return users, train.users, items, scores, hits, n_rel[users], popularity, skipped, unknown_items, 0


def _as_codes(part: Relevance, users: Vocabulary, items: Vocabulary, what: str):
    """Frame of (user, item) codes in the model's vocabularies, plus counts of what could not be coded."""
    if isinstance(part, Interactions):
        if part.users == users and part.items == items:
            return part.frame.select("user", "item"), 0, 0, np.zeros(len(users), dtype=np.int64)
        part = part.decoded()
    _require_user_item(part, what)
    coded = pl.DataFrame(
        {
            "user": users.encode(part["user"], strict=False),
            "item": items.encode(part["item"], strict=False),
            "raw_item": part["item"],
        }
    )
    no_user = coded["user"].is_null()
    skipped = int(part.filter(no_user)["user"].n_unique()) if no_user.any() else 0
    if skipped:
        log.warning("%s: %d user(s) unknown to the model are not evaluated", what, skipped)
    coded = coded.filter(~no_user)
    no_item = coded["item"].is_null()
    # distinct unknown items per user, as known test items are counted once (duplicated rows must not inflate R_u)
    unknown = coded.filter(no_item).unique(["user", "raw_item"])
    per_user = np.bincount(unknown["user"].to_numpy(), minlength=len(users))
    if no_item.any():
        log.warning("%s: %d interaction(s) with items unknown to the model (relevant, never hit)", what, int(no_item.sum()))
    return coded.filter(~no_item).select("user", "item"), skipped, int(no_item.sum()), per_user


def _require_user_item(frame: pl.DataFrame, what: str) -> None:
    missing = [c for c in ("user", "item") if c not in frame.columns]
    if missing:
        raise DataError(f"{what} frame lacks column(s) {missing}; it needs raw-id columns 'user' and 'item'")


def _relevance_csr(parts: Sequence[Relevance], coded: Sequence[pl.DataFrame], train: Interactions) -> sp.csr_matrix:
    """Binary CSR of ``parts`` (as ``coded`` by `_as_codes`). A single `Interactions` in the model's vocabularies
    brings its own, built once: validation every epoch reuses the same matrices."""
    part = parts[0]
    if len(parts) == 1 and isinstance(part, Interactions) and part.users == train.users and part.items == train.items:
        return part.binary_csr()
    return _csr(coded, train.n_users, train.n_items)


def _csr(parts: Sequence[pl.DataFrame], n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary users × items CSR of the ``user, item`` rows of ``parts``; a pair listed twice counts once."""
    users = np.concatenate([p["user"].to_numpy() for p in parts])
    items = np.concatenate([p["item"].to_numpy() for p in parts])
    return binary_csr(users, items, (n_users, n_items))


def _hits(items: np.ndarray, scores: np.ndarray, users: np.ndarray, test: sp.csr_matrix) -> np.ndarray:
    """``[U, K]`` bool: is the ranked item a test item of the user (and a real, finite-scored slot)?"""
    n_items = test.shape[1]
    keys = users[:, None].astype(np.int64) * n_items + items
    rows = np.repeat(np.arange(test.shape[0], dtype=np.int64), np.diff(test.indptr))
    test_keys = rows * n_items + test.indices  # ascending: rows in order, sorted indices within a row
    if len(test_keys) == 0:
        return np.zeros(keys.shape, dtype=bool)
    at = np.searchsorted(test_keys, keys).clip(max=len(test_keys) - 1)  # a binary search beats np.isin's sort
    return (test_keys[at] == keys) & np.isfinite(scores)


def _popularity(excluded: Sequence[pl.DataFrame], train: Interactions) -> np.ndarray:
    """Training-interaction count per item: of the excluded interactions (train + valid) when given."""
    source = pl.concat(excluded) if excluded else train.frame
    return np.bincount(source["item"].to_numpy(), minlength=train.n_items).astype(np.float64)


def _sample_candidates(
    test: sp.csr_matrix, exclude: sp.csr_matrix | None, users: np.ndarray, sampling: Sampling, popularity: np.ndarray
) -> sp.csr_matrix:
    """Per user: its test items plus ``n`` negatives per test item, drawn without the user's positives."""
    rng = np.random.default_rng(sampling.seed)
    n_items = test.shape[1]
    if sampling.distribution == "popularity":
        p = popularity + 1e-12
        p = p / p.sum()
    else:
        p = None
    forbidden = test if exclude is None else (test + exclude).tocsr()
    rows, cols = [], []
    for user in users:
        positives = test.indices[test.indptr[user] : test.indptr[user + 1]]
        banned = forbidden.indices[forbidden.indptr[user] : forbidden.indptr[user + 1]]
        want = sampling.n * len(positives)
        allowed = np.setdiff1d(np.arange(n_items), banned, assume_unique=True)
        weights = None if p is None else p[allowed] / p[allowed].sum()
        negatives = rng.choice(allowed, size=min(want, len(allowed)), replace=False, p=weights)
        chosen = np.concatenate([positives, negatives])
        rows.append(np.full(len(chosen), user))
        cols.append(chosen)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=test.shape)


# ------------------------------------------------------------------------------------------------ run path
def _evaluate_run(run: pl.DataFrame, test: Relevance, exclude: Sequence[Relevance], ks: tuple[int, ...]):
    """Rank an external run (raw ids, higher score first; ties by item code; a pair listed twice keeps its highest
    score; null, NaN or +inf scores refused) and compute hits by joining."""
    missing = [c for c in ("user", "item", "score") if c not in run.columns]
    if missing:
        raise DataError(f"run frame lacks column(s) {missing}; it needs 'user', 'item', 'score' (raw ids)")
    test_raw = test.decoded() if isinstance(test, Interactions) else test
    _require_user_item(test_raw, "test")
    exclude_raw = [p.decoded() if isinstance(p, Interactions) else p for p in exclude]
    frames = [run, test_raw, *exclude_raw]
    users = Vocabulary.from_values(pl.concat([f.select("user") for f in frames], how="vertical_relaxed")["user"])
    items = Vocabulary.from_values(pl.concat([f.select("item") for f in frames], how="vertical_relaxed")["item"])

    def code(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(users.encode(frame["user"]).alias("user"), items.encode(frame["item"]).alias("item"))

    ranked = code(run.select("user", "item", "score"))
    bad = ranked.filter(pl.col("score").is_null() | pl.col("score").is_nan() | (pl.col("score") == float("inf")))
    if bad.height:
        raise NonFiniteScoreError(
            f"run: {bad.height} row(s) have a null, NaN or +inf score, e.g. user "
            f"{users.decode([bad['user'][0]])[0]!r}, item {items.decode([bad['item'][0]])[0]!r}"
        )
    # A pair listed twice keeps its highest score (the documented rule), whatever the order of the rows.
    duplicates = ranked.height - ranked.select("user", "item").n_unique()
    if duplicates:
        log.warning("run: %d row(s) repeat a (user, item) pair; each pair keeps its highest score", duplicates)
        ranked = ranked.group_by("user", "item").agg(pl.col("score").max())
    if exclude_raw:
        banned = pl.concat([code(p.select("user", "item")) for p in exclude_raw]).unique()
        ranked = ranked.join(banned, on=["user", "item"], how="anti")
    k_max = min(ks[-1], len(items))  # a cut-off past the catalogue ranks the whole catalogue
    ranked = (
        ranked.sort(["user", "score", "item"], descending=[False, True, False])
        .with_columns(pl.int_range(pl.len()).over("user").alias("rank"))
        .filter(pl.col("rank") < k_max)
    )
    test_codes = code(test_raw.select("user", "item")).unique()
    test_csr = _csr([test_codes], len(users), len(items))
    n_rel = np.diff(test_csr.indptr)
    eval_users = np.flatnonzero(n_rel > 0)
    row_of = np.full(len(users), -1, dtype=np.int64)
    row_of[eval_users] = np.arange(len(eval_users))
    ranked = ranked.filter(pl.col("user").is_in(eval_users.tolist()))
    item_matrix = np.zeros((len(eval_users), k_max), dtype=np.int64)
    score_matrix = np.full((len(eval_users), k_max), -np.inf, dtype=np.float32)
    r = row_of[ranked["user"].to_numpy()]
    c = ranked["rank"].to_numpy()
    item_matrix[r, c] = ranked["item"].to_numpy()
    score_matrix[r, c] = ranked["score"].to_numpy()
    hits = _hits(item_matrix, score_matrix, eval_users, test_csr)
    popularity = np.bincount(
        pl.concat([code(p.select("user", "item")) for p in exclude_raw])["item"].to_numpy() if exclude_raw else [],
        minlength=len(items),
    ).astype(np.float64)
    return eval_users, users, item_matrix, score_matrix, hits, n_rel[eval_users], popularity, 0, 0, duplicates


# ------------------------------------------------------------------------------------------------ summary
def _finish(
    users: np.ndarray,
    vocab: Vocabulary,
    items: np.ndarray,
    scores: np.ndarray,
    hits: np.ndarray,
    n_rel: np.ndarray,
    popularity: np.ndarray,
    skipped: int,
    unknown_items: int,
    duplicate_rows: int,
    *,
    ks: tuple[int, ...],
    sampling: Sampling | None,
    seconds: float,
) -> Evaluation:
    if len(users) == 0:
        raise DataError("no user has a test item: nothing to evaluate")
    per = user_metrics(torch.from_numpy(hits), torch.from_numpy(n_rel), ks)
    prefix = "sampled_" if sampling else ""
    summary = {f"{prefix}{name}": float(values.mean()) for name, values in per.items()}
    for k in ks:
        shown = np.isfinite(scores[:, :k])
        counts = np.bincount(items[:, :k][shown], minlength=len(popularity))
        summary.update({f"{prefix}{n}": v for n, v in catalogue_metrics(counts, popularity, k).items()})
    per_user = pl.DataFrame(
        {
            "user": vocab.decode(users),
            "n_relevant": n_rel.astype(np.int64),
            **{f"{prefix}{name}": values.numpy() for name, values in per.items()},
        }
    )
    return Evaluation(
        summary=summary,
        per_user=per_user,
        ks=ks,
        mode=sampling.label if sampling else "full",
        skipped_users=skipped,
        unknown_items=unknown_items,
        duplicate_rows=duplicate_rows,
        seconds=seconds,
    )


__all__ = ["Evaluation", "Sampling", "evaluate", "USER_METRICS", "CATALOGUE_METRICS"]
