"""Most-popular baseline by true training counts."""

from __future__ import annotations

from typing import Self

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.recommender import Recommender


class Popularity(Recommender):
    """Scores every item by its number of training interactions (the same list for every user).

    Unlike RecBole's ``Pop`` (which adds at most one per item per training batch and also counts sampled
    negatives), the counts here are the true interaction counts of the training split. A history outside training
    gets the same counts.
    """

    fitted_attributes = ("counts_",)

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        self._remember(train)
        self.counts_ = torch.from_numpy(train.item_counts().astype(np.float32))
        return self

    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        return self.counts_.unsqueeze(0).repeat(len(users), 1)

    def score_history(self, items: np.ndarray) -> torch.Tensor:
        return self.counts_.clone()
