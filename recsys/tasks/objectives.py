"""Training objectives as `RecommenderTask`s: pairwise BPR, pointwise BCE with sampled negatives, MSE on explicit
ratings, and BCE on click-style labels (evaluated by AUC and log loss)."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.data.sampling import NegativeSampler
from recsys.models.base import PairModel
from recsys.tasks.base import RecommenderTask


class _SampledNegatives(RecommenderTask):
    """Shared by objectives that contrast observed items with sampled unobserved ones."""

    def __init__(
        self,
        model: PairModel,
        negatives: int = 1,
        negative_distribution: Literal["uniform", "popularity"] = "uniform",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "sgd"] = "adam",
        eval_k: Sequence[int] = (10, 20),
        eval_batch_size: int = 1024,
        seed: int = 2026,
    ) -> None:
        super().__init__(model, lr, weight_decay, optimizer, eval_k, eval_batch_size, seed)
        self.negatives, self.negative_distribution = negatives, negative_distribution

    def attach(self, data: InteractionsDataModule) -> None:
        super().attach(data)
        self.sampler = NegativeSampler(self.seen(), distribution=self.negative_distribution)

    def sample(self, users: torch.Tensor) -> torch.Tensor:
        """``[B, negatives]`` items the users did not interact with in training."""
        return self.sampler.sample(users.cpu(), self.negatives, self.generator()).to(users.device)

    def candidate_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, 1 + negatives]`` scores: each positive followed by its sampled negatives."""
        users, items = batch["user"], batch["item"]
        candidates = torch.cat([items[:, None], self.sample(users)], dim=1)
        return self.model.score_candidates(users, candidates)


class BPRTask(_SampledNegatives):
    """Bayesian personalised ranking: −log σ(s(u, i) − s(u, j)) with ``negatives`` sampled j per positive."""

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, items = batch["user"], batch["item"]
        return -F.logsigmoid(self.model.score_margins(users, items, self.sample(users))).mean()  # margins [B, k]


class BCETask(_SampledNegatives):
    """Pointwise binary cross-entropy: observed pairs labelled 1, ``negatives`` sampled pairs per positive 0."""

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        scores = self.candidate_scores(batch)  # [B, 1 + negatives], the positive first
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(scores, labels)


class MSETask(RecommenderTask):
    """Squared error on explicit ratings of observed pairs; validation logs RMSE beside the ranking metrics."""

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "rating" not in batch:
            raise ValueError("MSETask needs a dataset with ratings")
        return F.mse_loss(self.model.score_pairs(batch["user"], batch["item"]), batch["rating"])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self.log("val/rmse", self.rmse(self.valid_), batch_size=1)

    def rmse(self, part: Interactions) -> float:
        """Root mean squared error of the predicted ratings of a split's observed pairs."""
        predicted = self.observed_scores(part)
        return float(np.sqrt(np.mean((predicted - part.frame["rating"].to_numpy()) ** 2)))


class ClickTask(RecommenderTask):
    """Binary cross-entropy on click-style labels of observed pairs (e.g. rating ≥ 4 → 1).

    Validation and test report AUC and log loss over the split's labelled pairs (``val/auc``, ``test/auc``)."""

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "label" not in batch:
            raise ValueError("ClickTask needs labels: set the data module's label_threshold")
        return F.binary_cross_entropy_with_logits(self.model.score_pairs(batch["user"], batch["item"]), batch["label"])

    def attach(self, data: InteractionsDataModule) -> None:
        super().attach(data)
        self.label_threshold = data.label_threshold

    def click_metrics(self, part: Interactions) -> dict[str, float]:
        """AUC and log loss of the model's click probabilities on a labelled split."""
        from sklearn.metrics import log_loss, roc_auc_score

        labels = (part.frame["rating"].to_numpy() >= self.label_threshold).astype(np.float64)
        probs = 1.0 / (1.0 + np.exp(-self.observed_scores(part)))
        return {"auc": float(roc_auc_score(labels, probs)), "logloss": float(log_loss(labels, probs, labels=[0, 1]))}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log_dict({f"val/{k}": v for k, v in self.click_metrics(self.valid_).items()}, prog_bar=True, batch_size=1)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        metrics = self.click_metrics(self.test_)
        self.test_metrics_ = metrics
        self.log_dict({f"test/{k}": v for k, v in metrics.items()}, batch_size=1)
