"""`SequentialRecommender`: a `Recommender` that scores a user from their item history, which evaluation sets
explicitly.

After ``fit(train)`` the history is the training sequences (what validation needs). For a leave-one-out test
the history must also hold the validation item, so evaluation calls ``model.condition_on(train, valid)`` first
(`recsys benchmark` does); ``with model.conditioned_on(...)`` does it temporarily. Non-sequential recommenders
have no history and are unaffected.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Self

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.recommender import NotFittedError, Recommender


class SequentialRecommender(Recommender):
    """Base of recommenders whose scores depend on each user's ordered history (SASRec, TGH)."""

    history_: Sequences | None = None

    def _remember(self, train: Interactions) -> None:
        super()._remember(train)
        self.history_ = Sequences.from_interactions(train)

    @property
    def history(self) -> Sequences:
        """The sequences the model currently conditions on (training sequences after ``fit``)."""
        if self.history_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(train) first")
        return self.history_

    def condition_on(self, *parts: Interactions | Sequences) -> Self:
        """Score from now on from these histories: splits of the training dataset (joined in time order, e.g.
        ``train, valid`` for a leave-one-out test) or a ready `Sequences` (e.g. truncated)."""
        if not parts:
            raise ValueError("condition_on needs at least one split (or a Sequences)")
        if isinstance(parts[0], Sequences):
            history = parts[0]
        else:
            for part in parts:
                if not isinstance(part, Interactions) or part.users != self.train_data.users or part.items != self.train_data.items:
                    raise ValueError("condition_on takes splits with the training data's user and item vocabularies")
            history = Sequences.from_interactions(*parts)  # type: ignore[arg-type]
        if history.n_users != self.n_users or history.n_items != self.n_items:
            raise ValueError(
                f"history covers {history.n_users} users × {history.n_items} items; the model has "
                f"{self.n_users} × {self.n_items}"
            )
        self.history_ = history
        return self

    @contextmanager
    def conditioned_on(self, *parts: Interactions | Sequences) -> Iterator[Self]:
        """`condition_on` for the duration of a ``with`` block; the previous history is restored after."""
        previous = self.history
        self.condition_on(*parts)
        try:
            yield self
        finally:
            self.history_ = previous
