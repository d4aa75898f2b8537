"""The one interface every evaluated model presents: fit on `Interactions`, score users, recommend top-K."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Iterable, Self

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.ranking import top_k


class NotFittedError(RuntimeError):
    """A recommender was asked to score before `fit`."""


class Recommender(ABC):
    """Base of all recommenders (baselines, Lightning models, heuristics, LLM recommenders).

    Subclasses implement `fit` (which must call `_remember(train)` first) and `score`. Everything else —
    top-K recommendation, evaluation, benchmarks — is built on those two.
    """

    train_: Interactions | None = None

    @abstractmethod
    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """Learn from ``train`` (models that early-stop or select checkpoints use ``valid``); returns ``self``."""

    uses_history: ClassVar[bool] = False
    """Whether `score` reads the ``history`` of the query (sequential recommenders); the evaluator builds one only
    for those."""

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

    def recommend(
        self,
        users: Iterable | pl.Series | None = None,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        batch_size: int = 1024,
        history: Sequences | None = None,
    ) -> pl.DataFrame:
        """Top-``k`` items for raw user ids (all training users when ``None``), scored from ``history`` (see
        `score`).

        Returns a frame ``user, item, score, rank`` in raw ids, ``k`` rows per user (fewer only when the
        user has fewer unseen items), ranks starting at 1, ties by item code: the evaluator's lists.
        """
        train = self.train_data
        if isinstance(users, (str, bytes)):
            raise TypeError(f"recommend takes a list of user ids, not one string ({users!r}): use [{users!r}]")
        if users is None:
            codes = np.arange(train.n_users, dtype=np.int64)
        else:
            codes = train.users.encode(pl.Series("user", list(users)), what="user").to_numpy()
        exclude = self.seen() if exclude_seen else None
        items, scores = top_k(
            lambda u: self.score(u, history), codes, min(k, train.n_items), exclude=exclude, batch_size=batch_size, labels=train.users.decode
        )
        shown = np.isfinite(scores).ravel()  # excluded slots of users with fewer than k rankable items
        rows = np.repeat(np.arange(len(codes)), items.shape[1])[shown]
        ranks = np.tile(np.arange(1, items.shape[1] + 1), len(codes))[shown]
        return pl.DataFrame(
            {
                "user": train.users.decode(codes[rows]),
                "item": train.items.decode(items.ravel()[shown]),
                "score": scores.ravel()[shown].astype(np.float32),
                "rank": ranks.astype(np.int64),
            }
        )

    def params(self) -> dict:
        """Constructor parameters, for result records (override where ``__init__`` args differ from attrs)."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}
