"""Training objectives of pair models as tasks: pairwise BPR, pointwise BCE with sampled negatives, MSE on explicit
ratings, and BCE on click-style labels (judged by AUC and log loss beside the ranking metrics)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from recsys.data.examples import observed_pairs
from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.data.sampling import NegativeSampler
from recsys.models.base import PairModel
from recsys.tasks.base import Batch, PairModelTask


class SampledNegativesTask(PairModelTask):
    """Shared by objectives that contrast observed items with sampled unobserved ones.

    Args:
        model: the scoring module.
        negatives: sampled negatives per positive.
        negative_distribution: ``uniform`` or in proportion to training ``popularity``.
        kwargs: `RecommenderTask`'s training and judging arguments.
    """

    def __init__(
        self,
        model: PairModel,
        negatives: int = 1,
        negative_distribution: Literal["uniform", "popularity"] = "uniform",
        **kwargs: Any,
    ) -> None:
        if negatives < 1:
            raise ValueError(f"negatives must be >= 1, got {negatives}")
        super().__init__(model, **kwargs)
        self.negatives, self.negative_distribution = negatives, negative_distribution

    def build(self, data: InteractionsDataModule) -> None:
        super().build(data)
        self.sampler = NegativeSampler(self.seen(), distribution=self.negative_distribution)

    def training_examples(self, train: Interactions) -> dict[str, torch.Tensor]:
        """The observed training pairs; negatives are drawn per batch."""
        return observed_pairs(train)

    def sample(self, users: torch.Tensor) -> torch.Tensor:
        """``[B, negatives]`` items the users did not interact with in training."""
        return self.sampler.sample(users.cpu(), self.negatives, self.generator()).to(users.device)


class BPRTask(SampledNegativesTask):
    """Bayesian personalised ranking: −log σ(s(u, i) − s(u, j)) with ``negatives`` sampled j per positive."""

    def losses(self, batch: Batch) -> torch.Tensor:
        """``[B]``: each positive's BPR loss, averaged over its negatives."""
        users, items = batch["user"], batch["item"]
        return -F.logsigmoid(self.model.score_margins(users, items, self.sample(users))).mean(1)  # margins [B, k]


class BCETask(SampledNegativesTask):
    """Pointwise binary cross-entropy: observed pairs labelled 1, ``negatives`` sampled pairs per positive 0."""

    def losses(self, batch: Batch) -> torch.Tensor:
        """``[B]``: the mean BCE of each positive and its negatives."""
        users, items = batch["user"], batch["item"]
        candidates = torch.cat([items[:, None], self.sample(users)], dim=1)
        scores = self.model.score_candidates(users, candidates)  # [B, 1 + negatives], the positive first
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(scores, labels, reduction="none").mean(1)


class MSETask(PairModelTask):
    """Squared error on explicit ratings of observed pairs; monitored and judged by RMSE (``val/rmse``) beside the
    ranking metrics."""

    monitor: ClassVar[str] = "val/rmse"
    monitor_mode: ClassVar[Literal["max", "min"]] = "min"
    point_metric_names: ClassVar[tuple[str, ...]] = ("rmse",)

    def __init__(self, model: PairModel, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.started_at_mean = False

    def build(self, data: InteractionsDataModule) -> None:
        """Build the model and, before its first training, start its scores at the mean training rating (else a
        few hundred Adam steps go to moving the output bias from 0 to ~3.5 on a 1–5 scale)."""
        super().build(data)
        if not self.started_at_mean and data.train.has_rating and not data.train.frame.is_empty():
            self.model.start_at(float(data.train.frame["rating"].mean()))
            self.started_at_mean = True

    def training_examples(self, train: Interactions) -> dict[str, torch.Tensor]:
        if not train.has_rating:
            raise ValueError(f"MSETask needs a dataset with ratings; {train.name} has none")
        return observed_pairs(train)

    def losses(self, batch: Batch) -> torch.Tensor:
        return (self.model.score_pairs(batch["user"], batch["item"]) - batch["rating"]) ** 2

    def point_metrics(self, part: Interactions) -> dict[str, float]:
        """Root mean squared error of the predicted ratings of a split's observed pairs."""
        if part.frame.is_empty() or not part.has_rating:
            return {}
        predicted = self.observed_scores(part)
        return {"rmse": float(np.sqrt(np.mean((predicted - part.frame["rating"].to_numpy()) ** 2)))}


class ClickTask(PairModelTask):
    """Binary cross-entropy on click-style labels of observed pairs (rating ≥ ``label_threshold`` → 1), monitored
    by validation AUC; the judge reports AUC and log loss over the split's labelled pairs beside the ranking
    metrics.

    Args:
        model: the scoring module.
        label_threshold: ratings at or above it are clicks (RecBole's labeled protocol uses 4 on ML-100k).
        kwargs: `RecommenderTask`'s training and judging arguments.
    """

    monitor: ClassVar[str] = "val/auc"
    point_metric_names: ClassVar[tuple[str, ...]] = ("auc", "logloss")

    def __init__(self, model: PairModel, label_threshold: float = 4.0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.label_threshold = label_threshold

    def training_examples(self, train: Interactions) -> dict[str, torch.Tensor]:
        return observed_pairs(train, label_threshold=self.label_threshold)

    def losses(self, batch: Batch) -> torch.Tensor:
        logits = self.model.score_pairs(batch["user"], batch["item"])
        return F.binary_cross_entropy_with_logits(logits, batch["label"], reduction="none")

    def point_metrics(self, part: Interactions) -> dict[str, float]:
        """AUC and log loss of the model's click probabilities on a labelled split."""
        from sklearn.metrics import log_loss, roc_auc_score

        if part.frame.is_empty():
            return {}
        labels = observed_pairs(part, label_threshold=self.label_threshold)["label"].numpy().astype(np.float64)
        probs = 1.0 / (1.0 + np.exp(-self.observed_scores(part)))
        return {"auc": float(roc_auc_score(labels, probs)), "logloss": float(log_loss(labels, probs, labels=[0, 1]))}


OBJECTIVES: dict[str, type[PairModelTask]] = {"bpr": BPRTask, "bce": BCETask, "mse": MSETask, "click": ClickTask}
"""The objectives `fit` knows by name (a user's own task class is passed as ``objective`` itself)."""


def fit(
    model: PairModel,
    train: Interactions,
    valid: Interactions | None = None,
    *,
    objective: str | type[PairModelTask] = "bpr",
    seed: int = 2026,
    task_kwargs: dict[str, Any] | None = None,
    **fit_kwargs: Any,
) -> PairModelTask:
    """Train a pair model with an objective (``bpr``, ``bce``, ``mse``, ``click`` or a task class); returns the
    fitted task, a `Recommender`. ``recsys.fit(recsys.models.MF(64), train, valid)`` is MF-BPR with early stopping
    on validation NDCG@10; ``objective="click"`` early-stops on validation AUC.

    Args:
        task_kwargs: the task's own arguments (``negatives``, ``lr``, ``label_threshold``, …).
        fit_kwargs: `RecommenderTask.fit`'s (``max_epochs``, ``patience``, ``batch_size``, trainer arguments).
    """
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise KeyError(f"unknown objective {objective!r}; choose one of {sorted(OBJECTIVES)} or pass a task class")
        objective = OBJECTIVES[objective]
    task = objective(model, seed=seed, **(task_kwargs or {}))
    return task.fit(train, valid, **fit_kwargs)
