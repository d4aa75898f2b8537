"""The one interface every evaluated model presents: fit on `Interactions`, score users, recommend top-K; and what a
trained model offers past the benchmark: its fitted state for `recsys.save`, serving-style recommendation (candidate
filters, extra exclusions, popular items for unknown users), lists for a history outside training and similar items.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterable, Literal, Self

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from recsys.data.interactions import Interactions, Vocabulary
from recsys.data.sequences import Sequences
from recsys.ranking import ScoreFn, top_k

Fitted = torch.Tensor | np.ndarray | sp.csr_matrix | dict | list | str | int | float | bool | None
"""One value of a fitted state: a tensor or array (safetensors / ``.npz``), a sparse matrix (``.npz``) or JSON."""

FOLD_IN_RIDGE = 0.01
"""λ of `fold_in` relative to the item vectors' mean squared norm per dimension (tr(VᵀV) / d)."""


class NotFittedError(RuntimeError):
    """A recommender was asked to score before `fit`."""


class NotSupportedError(NotImplementedError):
    """A recommender lacks an optional capability (saving, scoring a new history, similar items); the message names
    the model and the capability."""


def fold_in(vectors: torch.Tensor, items: np.ndarray, ridge: float = FOLD_IN_RIDGE) -> torch.Tensor:
    """``[d]`` the vector u of a user outside training among frozen item vectors ``V [n_items, d]``: the ridge
    solution of ‖V u − y‖² + λ‖u‖² with y = 1 on the history ``items`` (codes) and 0 elsewhere, λ = ``ridge`` ·
    tr(VᵀV) / d so that the penalty follows the vectors' scale. Scores are then ``V u``."""
    v = vectors.detach().to(torch.float64)
    gram = v.T @ v
    penalty = ridge * gram.trace() / v.shape[1]
    target = torch.zeros(len(v), dtype=v.dtype, device=v.device)
    target[torch.from_numpy(np.array(items, dtype=np.int64)).to(v.device)] = 1.0
    user = torch.linalg.solve(gram + penalty * torch.eye(v.shape[1], dtype=v.dtype, device=v.device), v.T @ target)
    return user.to(vectors.dtype)


class Recommender(ABC):
    """Base of all recommenders (baselines, Lightning models, heuristics, LLM recommenders).

    Subclasses implement `fit` (which must call `_remember(train)` first) and `score`. Everything else —
    top-K recommendation, evaluation, benchmarks — is built on those two.

    Optional capabilities, each refused with a `NotSupportedError` naming the model where it does not apply:

    - saving (`recsys.save` / `recsys.load`): `fitted_state` returns what `fit` learned, by name; `restore` rebuilds
      what `fit` derives from the training data alone (vocabularies, graphs, model shapes) and `load_fitted_state`
      puts the learned part back. A model whose learned part is a few attributes just lists them in
      ``fitted_attributes``.
    - `recommend_for_history` (a user outside training) ranks `score_history`.
    - `similar_items` ranks `item_similarity`: the cosine of `item_vectors` unless a model has its own similarities.
    """

    train_: Interactions | None = None

    @abstractmethod
    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """Learn from ``train`` (models that early-stop or select checkpoints use ``valid``); returns ``self``."""

    uses_history: ClassVar[bool] = False
    """Whether `score` reads the ``history`` of the query (sequential recommenders); the evaluator builds one only
    for those."""

    fitted_attributes: ClassVar[tuple[str, ...] | None] = None
    """The attributes `fit` learns (``weights_``, …), each a `Fitted` value: what `fitted_state` returns and
    `load_fitted_state` sets by default. None: the model cannot be saved unless it overrides both."""

    @abstractmethod
    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        """Scores of every item for a batch of users.

        Args:
            users: ``[B]`` int64 user codes of the training vocabulary.
            history: the users' time-ordered item histories to score from (sequential recommenders; the training
                sequences when None); recommenders that do not read histories ignore it.

        Returns:
            ``[B, n_items]`` float32 scores; higher is better.
        """

    # ------------------------------------------------------------------------------------------ shared
    def _remember(self, train: Interactions) -> None:
        self.train_ = train
        self._seen: sp.csr_matrix | None = None

    @property
    def train_data(self) -> Interactions:
        if self.train_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(train) first")
        return self.train_

    @property
    def n_users(self) -> int:
        return self.train_data.n_users

    @property
    def n_items(self) -> int:
        return self.train_data.n_items

    def seen(self) -> sp.csr_matrix:
        """Users × items CSR of the training interactions (cached)."""
        if getattr(self, "_seen", None) is None:
            self._seen = self.train_data.to_csr()
        return self._seen

    # ------------------------------------------------------------------------------------------ saving
    def fitted_state(self) -> dict[str, Fitted]:
        """What `fit` learned, by name (the ``fitted_attributes`` unless overridden): `recsys.save` writes tensors and
        arrays to safetensors / ``.npz``, sparse matrices to ``.npz`` and the rest as JSON, never a pickle."""
        _ = self.train_data  # raises NotFittedError
        return {name: getattr(self, name) for name in self._saved_attributes()}

    def restore(self, train: Interactions) -> None:
        """Prepare this unfitted recommender (rebuilt from its saved spec) for ``train`` without learning: what
        `fit` derives from the data alone, so that `load_fitted_state` can put the learned part back."""
        self._remember(train)

    def load_fitted_state(self, state: dict[str, Fitted]) -> None:
        """Put back what `fitted_state` returned (after `restore`)."""
        for name in self._saved_attributes():
            setattr(self, name, state[name])

    def _saved_attributes(self) -> tuple[str, ...]:
        if self.fitted_attributes is None:
            raise NotSupportedError(f"{type(self).__name__} cannot be saved: it lists no fitted_attributes and does "
                                    "not implement fitted_state / load_fitted_state")  # fmt: skip
        return self.fitted_attributes

    # ------------------------------------------------------------------------------------------ serving hooks
    def score_history(self, items: np.ndarray) -> torch.Tensor:
        """``[n_items]`` scores for one user outside training whose history is ``items`` (``[H]`` item codes, oldest
        first): what `recommend_for_history` ranks (fold-in, neighbourhood or sequence scoring)."""
        raise NotSupportedError(f"{type(self).__name__} cannot score a history outside training "
                                "(recommend_for_history is not available)")  # fmt: skip

    def item_vectors(self) -> torch.Tensor:
        """``[n_items, d]`` the vectors the model scores items with (the cosine of two is their similarity)."""
        raise NotSupportedError(f"{type(self).__name__} has neither item vectors nor item similarities "
                                "(similar_items is not available)")  # fmt: skip

    def item_similarity(self, items: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]`` similarity of each of ``items`` (``[B]`` codes) to every item: the cosine of
        `item_vectors`, unless a model has similarities of its own (ItemKNN, EASE)."""
        vectors = torch.nn.functional.normalize(self.item_vectors().detach().to(torch.float32), dim=1)
        return vectors[items.to(vectors.device)] @ vectors.T

    # ------------------------------------------------------------------------------------------ recommending
    def recommend(
        self,
        users: Iterable | pl.Series | None = None,
        k: int = 10,
        *,
        items: Iterable | None = None,
        exclude: Iterable | pl.DataFrame | None = None,
        exclude_seen: bool = True,
        unknown: Literal["error", "popular"] = "error",
        batch_size: int = 1024,
        history: Sequences | None = None,
    ) -> pl.DataFrame:
        """Top-``k`` items for raw user ids (all training users when ``None``), scored from ``history`` (see
        `score`).

        Args:
            items: raw item ids: rank only these (candidates), for every user.
            exclude: raw item ids never recommended to any user, or a frame of ``user, item`` raw-id pairs never
                recommended to that user; added to the training items (``exclude_seen``).
            exclude_seen: leave out each user's training items.
            unknown: a user not in training is an error (``"error"``, a `KeyError` naming it) or gets the most
                popular training items (``"popular"``; their score is the item's training count).

        Item ids of ``items`` and ``exclude`` unknown to the model are ignored: they cannot be recommended anyway.

        Returns:
            A frame ``user, item, score, rank`` in raw ids, users in query order, ``k`` rows per user (fewer when
            the user has fewer rankable items), ranks starting at 1, ties by item code: the evaluator's lists.
        """
        train = self.train_data
        if isinstance(users, (str, bytes)):
            raise TypeError(f"recommend takes a list of user ids, not one string ({users!r}): use [{users!r}]")
        if unknown not in ("error", "popular"):
            raise ValueError(f"unknown must be 'error' or 'popular', got {unknown!r}")
        raw = train.users.ids.rename("user") if users is None else pl.Series("user", list(users))
        found = train.users.encode(raw, strict=unknown == "error", what="user")
        known = found.is_not_null().to_numpy()
        codes = found.fill_null(0).to_numpy()  # unknown users' rows are scored by popularity below
        ids = train.users.decode(codes) if known.all() else _query_ids(raw, train.users)
        popular = torch.from_numpy(train.item_counts().astype(np.float32))

        def score(rows: torch.Tensor) -> torch.Tensor:
            picked = rows.numpy()
            mine = known[picked]
            if mine.all():
                return self.score(torch.from_numpy(codes[picked]), history)
            block = popular.repeat(len(picked), 1)
            if mine.any():
                block[torch.from_numpy(mine)] = self.score(torch.from_numpy(codes[picked[mine]]), history).to(block)
            return block

        excluded = _pairs_csr(self._excluded_pairs(raw, codes, known, exclude, exclude_seen), len(raw), train.n_items)
        allowed = None if items is None else _mask(train.items, items, train.n_items)
        if exclude is not None and not isinstance(exclude, pl.DataFrame):
            allowed = ~_mask(train.items, exclude, train.n_items) & (True if allowed is None else allowed)
        rows, item_codes, scores, ranks = self._ranked(score, len(raw), k, excluded, allowed, ids.to_numpy(),
                                                       batch_size)  # fmt: skip
        return pl.DataFrame({"user": ids.gather(rows), "item": train.items.decode(item_codes), "score": scores,
                             "rank": ranks})  # fmt: skip

    def recommend_for_history(self, items: Iterable, k: int = 10, *, exclude_seen: bool = True) -> pl.DataFrame:
        """Top-``k`` items for a user outside training whose history is ``items`` (raw item ids, oldest first),
        from `score_history`: fold-in for factor models, neighbourhoods for ItemKNN / EASE, the sequence for SASRec
        and TGH, the counts for Popularity.

        Args:
            exclude_seen: leave out the history's items.

        Returns:
            A frame ``item, score, rank`` (raw ids), ranked as `recommend`.
        """
        train = self.train_data
        codes = _item_codes(train, items, "recommend_for_history")
        if not len(codes):
            raise ValueError("recommend_for_history needs at least one item; for a user without history use "
                             "recommend([...], unknown='popular')")  # fmt: skip
        scores = self.score_history(codes).detach().to(torch.float32).reshape(1, -1)
        excluded = history_csr(codes, train.n_items) if exclude_seen else None
        _, item_codes, values, ranks = self._ranked(lambda rows: scores.clone(), 1, k, excluded, None,
                                                    np.array(["history"]))  # fmt: skip
        return pl.DataFrame({"item": train.items.decode(item_codes), "score": values, "rank": ranks})

    def similar_items(self, items: Iterable, k: int = 10, *, batch_size: int = 1024) -> pl.DataFrame:
        """The ``k`` items most similar to each of ``items`` (raw ids) by `item_similarity` (cosine of item vectors,
        or ItemKNN's / EASE's item-item weights), an item never its own neighbour.

        Returns:
            A frame ``item, similar, score, rank`` (raw ids), queried items in order, ranked as `recommend`.
        """
        train = self.train_data
        codes = _item_codes(train, items, "similar_items")
        excluded = _pairs_csr((np.arange(len(codes)), codes), len(codes), train.n_items)
        query = train.items.decode(codes)

        def score(rows: torch.Tensor) -> torch.Tensor:
            return self.item_similarity(torch.from_numpy(codes[rows.numpy()]))

        rows, item_codes, values, ranks = self._ranked(score, len(codes), k, excluded, None, query.to_numpy(),
                                                       batch_size)  # fmt: skip
        return pl.DataFrame({"item": query.gather(rows), "similar": train.items.decode(item_codes), "score": values,
                             "rank": ranks})  # fmt: skip

    def _excluded_pairs(self, raw: pl.Series, codes: np.ndarray, known: np.ndarray, exclude: Any,
                        exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(query row, item code) pairs never recommended: known users' training items and ``exclude``'s pairs."""
        rows, cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        if exclude_seen and known.any():
            local = np.flatnonzero(known)
            seen = self.seen()[codes[local]].tocoo()
            rows.append(local[seen.row])
            cols.append(seen.col.astype(np.int64))
        if isinstance(exclude, pl.DataFrame):
            missing = {"user", "item"} - set(exclude.columns)
            if missing:
                raise ValueError(f"exclude frame needs columns user and item (raw ids); missing {sorted(missing)}")
            query = pl.DataFrame({"user": raw, "row": np.arange(len(raw), dtype=np.int64)})
            pairs = exclude.select(pl.col("user").cast(raw.dtype, strict=False),
                                   self.train_data.items.encode(exclude["item"], strict=False).alias("code"))  # fmt: skip
            matched = pairs.drop_nulls().join(query, on="user", how="inner")
            rows.append(matched["row"].to_numpy())
            cols.append(matched["code"].to_numpy())
        return np.concatenate(rows), np.concatenate(cols)

    def _ranked(
        self, score: ScoreFn, n_rows: int, k: int, excluded: sp.csr_matrix | None, allowed: np.ndarray | None,
        labels: np.ndarray, batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Rank ``n_rows`` query rows (``score`` maps ``[B]`` row indices to ``[B, n_items]``) through `top_k`:
        ``(row, item code, score, rank)`` of every shown slot, slots without a rankable item left out."""
        items, scores = top_k(score, np.arange(n_rows, dtype=np.int64), min(k, self.n_items), exclude=excluded,
                              allowed=allowed, batch_size=batch_size, labels=lambda rows: labels[rows])  # fmt: skip
        shown = np.isfinite(scores).ravel()  # excluded slots of rows with fewer than k rankable items
        rows = np.repeat(np.arange(n_rows), items.shape[1])[shown]
        ranks = np.tile(np.arange(1, items.shape[1] + 1), n_rows)[shown]
        return rows, items.ravel()[shown], scores.ravel()[shown].astype(np.float32), ranks.astype(np.int64)

    def params(self) -> dict:
        """Constructor parameters, for result records (override where ``__init__`` args differ from attrs)."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}


def history_csr(items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """``[1, n_items]`` CSR of one history (``[H]`` item codes): each item's count, as `Interactions.to_csr` counts."""
    matrix = _pairs_csr((np.zeros(len(items), dtype=np.int64), np.asarray(items, dtype=np.int64)), 1, n_items)
    matrix.sum_duplicates()
    return matrix


def _query_ids(raw: pl.Series, vocabulary: Vocabulary) -> pl.Series:
    """Queried user ids in the vocabulary's type where they convert (unknown ones included), else as given."""
    cast = raw.cast(vocabulary.dtype, strict=False)
    return raw if cast.null_count() > raw.null_count() else cast


def _item_codes(train: Interactions, items: Iterable, what: str) -> np.ndarray:
    """Codes of raw item ids (a `KeyError` names unknown ones)."""
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{what} takes a list of item ids, not one string ({items!r}): use [{items!r}]")
    return train.items.encode(pl.Series("item", list(items)), what="item").to_numpy().astype(np.int64)


def _mask(vocabulary: Vocabulary, items: Iterable, n_items: int) -> np.ndarray:
    """``[n_items]`` bool: True at the codes of raw ``items`` (unknown ids ignored)."""
    if isinstance(items, (str, bytes)):
        raise TypeError(f"give a list of item ids, not one string ({items!r}): use [{items!r}]")
    codes = vocabulary.encode(pl.Series("item", list(items)), strict=False).drop_nulls().to_numpy()
    mask = np.zeros(n_items, dtype=bool)
    mask[codes] = True
    return mask


def _pairs_csr(pairs: tuple[np.ndarray, np.ndarray], n_rows: int, n_items: int) -> sp.csr_matrix:
    """``[n_rows, n_items]`` CSR with a one at each (row, item code) pair (duplicates allowed)."""
    rows, cols = pairs
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_rows, n_items))
