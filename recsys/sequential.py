"""`SequentialRecommender`: a `Recommender` that scores a user from their time-ordered item history, which comes
with each query (`score(users, history)`, `recommend(..., history=...)`, `evaluate`), as LensKit puts it in the
query; without one it scores from the training sequences.

The evaluator passes the history once, for every sequential model alike: the user's excluded interactions, i.e.
the training sequences for validation and training + validation for a leave-one-out test.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.recommender import NotFittedError, Recommender


class SequentialRecommender(Recommender):
    """Base of recommenders whose scores depend on each user's ordered history (SASRec, TGH)."""

    uses_history: ClassVar[bool] = True
    train_sequences_: Sequences | None = None

    def _remember(self, train: Interactions) -> None:
        super()._remember(train)
        self.train_sequences_ = Sequences.from_interactions(train)

    def history_or_training(self, history: Sequences | None) -> Sequences:
        """``history`` checked against the model's vocabularies, or the training sequences when None."""
        if history is None:
            if self.train_sequences_ is None:
                raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(train) first")
            return self.train_sequences_
        if history.n_users != self.n_users or history.n_items != self.n_items:
            raise ValueError(
                f"history covers {history.n_users} users × {history.n_items} items; the model has "
                f"{self.n_users} × {self.n_items}"
            )
        return history

    def score_history(self, items: np.ndarray) -> torch.Tensor:
        """Scores of the sequence ``items`` (codes, oldest first) as the history of user slot 0 (every other user's
        history empty), so a user outside training is scored exactly as a training user with that history."""
        indptr = np.concatenate([[0], np.full(self.n_users, len(items))]).astype(np.int64)
        history = Sequences(indptr=indptr, items=np.asarray(items, dtype=np.int64), n_items=self.n_items)
        return self.score(torch.zeros(1, dtype=torch.int64), history)[0]
