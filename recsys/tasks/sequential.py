"""`SequentialTask`: next-item training of a sequence model (SASRec) on whole sequences with a causal mask, every
position predicting its next item, with cross-entropy over all items or BCE against sampled negatives.

The task's training examples are per-user sequence windows of the model's ``max_len``: one pass over them visits
every training transition once, where RecBole trains on each prefix as a separate sample. The task is a
`SequentialRecommender`: it scores a user from the query's history, which the evaluator passes (training sequences
for validation; training + validation for the test). The same module is DEALRec's surrogate (BCE, one negative per
position).
"""

from __future__ import annotations

from typing import Any, Literal, Self

import torch
import torch.nn.functional as F

from recsys.data.examples import sequence_windows
from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.data.sequences import IGNORE, Sequences
from recsys.models.sasrec import SASRec
from recsys.sequential import SequentialRecommender
from recsys.tasks.base import Batch, RecommenderTask


class SequentialTask(RecommenderTask, SequentialRecommender):
    """Sequence model + next-item objective + optimiser.

    Args:
        model: the sequence model (`SASRec`).
        loss: ``ce`` (softmax cross-entropy over every item, RecBole's default) or ``bce`` (``negatives``
            uniform negatives per position, resampled when one hits the position's target; DEALRec's surrogate).
        negatives: negatives per position for ``bce``.
        kwargs: `RecommenderTask`'s training and judging arguments (``lr``, ``seed``, ``val_users``, …).
    """

    def __init__(self, model: SASRec, loss: Literal["ce", "bce"] = "ce", negatives: int = 1, **kwargs: Any) -> None:
        if loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {loss!r}")
        if negatives < 1:
            raise ValueError(f"negatives must be >= 1, got {negatives}")
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.loss_name, self.negatives = loss, negatives

    # ------------------------------------------------------------------------------------------ set-up
    def build(self, data: InteractionsDataModule) -> None:
        self.model.build(data.train.n_items)

    def training_examples(self, train: Interactions) -> dict[str, torch.Tensor]:
        """Sequence windows ``input``, ``target`` ``[W, max_len]`` of the training sequences."""
        return sequence_windows(train, self.model.max_len)

    # ------------------------------------------------------------------------------------------ training
    def position_losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The next-item loss of every non-padded position ``[P]``, and the mask ``[B, L]`` that picked them. A
        batch may carry its BCE ``negatives`` ``[B, L, k]``; otherwise they are drawn from the step's generator."""
        hidden = self.model(batch["input"])  # [B, L, d]
        real = batch["target"] != IGNORE
        states, targets = hidden[real], batch["target"][real]  # [P, d], [P]
        if self.loss_name == "ce":
            return F.cross_entropy(states @ self.model.item_vectors().T, targets, reduction="none"), real
        if "negatives" in batch:  # fixed by the caller (data-pruning scores: a deterministic loss per sample)
            negatives = batch["negatives"][real]  # [P, k]
        else:
            negatives = torch.randint(0, self.n_items, (len(targets), self.negatives), generator=self.generator())
        negatives = negatives.to(states.device)
        clash = negatives == targets[:, None]
        negatives[clash] = (negatives[clash] + 1) % self.n_items  # never the position's own target
        vectors = self.model.embed_items(torch.cat([targets[:, None], negatives], dim=1))  # [P, 1 + k, d]
        logits = (vectors * states[:, None, :]).sum(-1)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(1), real

    def losses(self, batch: Batch) -> torch.Tensor:
        """``[B]`` each window's mean next-item loss over its real positions."""
        per_position, real = self.position_losses(batch)
        grid = torch.zeros(real.shape, dtype=per_position.dtype, device=per_position.device)
        grid[real] = per_position  # [B, L], zero at padding
        return grid.sum(1) / real.sum(1).clamp(min=1)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean next-item loss over all real positions of the batch (a long window weighs more than a short one)."""
        return self.position_losses(batch)[0].mean()

    # ------------------------------------------------------------------------------------------ scoring
    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        """``[B, n_items]``: the last hidden state of each user's history (the query's, else the training
        sequences) · every item vector."""
        known = self.history_or_training(history)
        inputs = torch.from_numpy(known.padded(users.cpu().numpy(), self.model.max_len)).to(self.device)
        with torch.no_grad():
            return self.model.last_state(inputs) @ self.model.item_vectors().T

    def item_vectors(self) -> torch.Tensor:
        """``[n_items, d]`` the item table's rows (what every hidden state is scored against)."""
        with torch.no_grad():
            return self.model.item_vectors()

    # ------------------------------------------------------------------------------------------ Python API
    def fit(
        self,
        train: Interactions,
        valid: Interactions | None = None,
        *,
        max_epochs: int = 200,
        patience: int = 10,
        batch_size: int = 128,
        progress: bool = False,
        **trainer_kwargs: Any,
    ) -> Self:
        """`RecommenderTask.fit` with RecBole's sequential defaults (batch 128, at most 200 epochs); validation
        scores from the training history."""
        return super().fit(train, valid, max_epochs=max_epochs, patience=patience, batch_size=batch_size,
                           progress=progress, **trainer_kwargs)  # fmt: skip
