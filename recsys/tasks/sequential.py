"""`SequentialTask`: next-item training of a sequence model (SASRec) on whole sequences with a causal mask, every
position predicting its next item, with cross-entropy over all items or BCE against sampled negatives.

Batches are the data module's sequence windows (``InteractionsDataModule(sequence_length=model.max_len)``):
one pass over them visits every training transition once, where RecBole trains on each prefix as a separate
sample. The task is a `SequentialRecommender`: it scores a user from the history it is conditioned on
(training sequences for validation; training + validation for the test, see `test_step`). The same module is
DEALRec's surrogate (BCE, one negative per position).
"""

from __future__ import annotations

from typing import Any, Literal, Self, Sequence

import torch
import torch.nn.functional as F

from recsys.baselines.tgh import TGH
from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.data.sequences import IGNORE
from recsys.models.sasrec import SASRec
from recsys.sequential import SequentialRecommender
from recsys.tasks.base import RecommenderTask


class SequentialTask(RecommenderTask, SequentialRecommender):
    """Sequence model + next-item objective + optimiser.

    Args:
        model: the sequence model (`SASRec`).
        loss: ``ce`` (softmax cross-entropy over every item, RecBole's default) or ``bce`` (``negatives``
            uniform negatives per position, resampled when one hits the position's target; DEALRec's surrogate).
        negatives: negatives per position for ``bce``.
        lr, weight_decay, optimizer, eval_k, eval_batch_size, seed: as `RecommenderTask`.
    """

    def __init__(
        self,
        model: SASRec,
        loss: Literal["ce", "bce"] = "ce",
        negatives: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "sgd"] = "adam",
        eval_k: Sequence[int] = (10, 20),
        eval_batch_size: int = 1024,
        seed: int = 2026,
    ) -> None:
        if loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {loss!r}")
        if negatives < 1:
            raise ValueError(f"negatives must be >= 1, got {negatives}")
        super().__init__(model, lr=lr, weight_decay=weight_decay, optimizer=optimizer, eval_k=eval_k,  # type: ignore[arg-type]
                         eval_batch_size=eval_batch_size, seed=seed)  # fmt: skip
        self.loss_name, self.negatives = loss, negatives

    # ------------------------------------------------------------------------------------------ set-up
    def attach(self, data: InteractionsDataModule) -> None:
        if data.sequence_length != self.model.max_len:
            raise ValueError(
                f"data.sequence_length ({data.sequence_length}) must equal the model's max_len ({self.model.max_len}): "
                "set `data: {sequence_length: ...}` in the config"
            )
        self.model.build(data.train.n_items)
        self._remember(data.train)
        self.valid_, self.test_ = data.valid, data.test

    # ------------------------------------------------------------------------------------------ training
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean next-item loss over the non-padded positions of ``input`` / ``target`` ``[B, L]``."""
        hidden = self.model(batch["input"])  # [B, L, d]
        real = batch["target"] != IGNORE
        states, targets = hidden[real], batch["target"][real]  # [P, d], [P]
        if self.loss_name == "ce":
            return F.cross_entropy(states @ self.model.item_vectors().T, targets)
        negatives = torch.randint(0, self.n_items, (len(targets), self.negatives), generator=self.generator())
        clash = negatives == targets[:, None]
        negatives[clash] = (negatives[clash] + 1) % self.n_items  # never the position's own target
        negatives = negatives.to(states.device)
        vectors = self.model.embed_items(torch.cat([targets[:, None], negatives], dim=1))  # [P, 1 + k, d]
        logits = (vectors * states[:, None, :]).sum(-1)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(targets)

    # ------------------------------------------------------------------------------------------ scoring
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]``: the last hidden state of each user's (conditioned) history · every item vector."""
        inputs = torch.from_numpy(self.history.padded(users.cpu().numpy(), self.model.max_len)).to(self.device)
        with torch.no_grad():
            return self.model.last_state(inputs) @ self.model.item_vectors().T

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Test on the test split with the history extended by the validation items (leave-one-out)."""
        assert self.valid_ is not None
        with self.conditioned_on(self.train_data, self.valid_):
            super().test_step(batch, batch_idx)

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
        """Train on ``train``'s sequence windows; with ``valid``, early-stop on validation NDCG@10 (history =
        train) and keep the best epoch's weights. The history is ``train`` afterwards."""
        from recsys.tasks.training import fit_task

        return fit_task(
            self, train, valid, max_epochs=max_epochs, patience=patience, batch_size=batch_size,
            sequence_length=self.model.max_len, progress=progress, **trainer_kwargs,
        )  # fmt: skip


class TGHTask(RecommenderTask, SequentialRecommender):
    """TGH as a Lightning module with no training step: `setup` builds the transition graph from the data module's
    training split, and validation / test run the shared evaluator (test history = train + valid), so
    ``recsys test --config experiments/ml-100k/tgh-1.yaml`` evaluates it like any trained model.

    Args:
        model: the heuristic (`recsys.baselines.tgh.TGH`).
        eval_k, eval_batch_size: as `RecommenderTask`.
    """

    def __init__(self, model: TGH, eval_k: Sequence[int] = (10, 20), eval_batch_size: int = 1024) -> None:
        super().__init__(model, eval_k=eval_k, eval_batch_size=eval_batch_size, seed=model.seed)  # type: ignore[arg-type]

    def attach(self, data: InteractionsDataModule) -> None:
        self.model.fit(data.train)
        self._remember(data.train)
        self.valid_, self.test_ = data.valid, data.test

    def configure_optimizers(self) -> None:
        return None

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise TypeError("TGH has no training objective: evaluate it with `recsys test` / `recsys validate`")

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """The heuristic's scores from this module's current history."""
        return self.model.condition_on(self.history).score(users)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        assert self.valid_ is not None
        with self.conditioned_on(self.train_data, self.valid_):
            super().test_step(batch, batch_idx)

    def fit(self, train: Interactions, valid: Interactions | None = None, **_: Any) -> Self:
        """No training: build the graph from ``train``."""
        self.model.fit(train, valid)
        self._remember(train)
        self.valid_ = valid
        return self
