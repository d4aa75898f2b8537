"""`RelMFTask`: pointwise learning over every user–item pair with a missing-not-at-random estimator (Rel-MF).

The task's training examples are the whole users × items grid, labelled 1 where a training interaction exists;
each optimiser step weighs its pairs' local losses by the chosen estimator (`recsys.mnar.estimators`): naive,
WMF, IPS (Rel-MF, Saito et al. 2020) or clipped IPS, with propensities from a `Propensity` model.

With ``batches_per_step`` set to cover an epoch (the default), the task steps the optimiser by hand through the
epoch's batches inside one Lightning step, so Lightning's per-step overhead (about as long as a whole step at
batch 4096) is paid once per epoch (`scripts/bench_mnar.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import torch

from recsys.data.examples import all_pairs
from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.mnar.estimators import ESTIMATORS, LOCAL_LOSSES, estimator_loss, local_losses, pair_weights
from recsys.mnar.propensity import Propensity
from recsys.models.base import PairModel
from recsys.tasks.base import Batch, PairModelTask


class RelMFTask(PairModelTask):
    """MF (or any `PairModel`) trained on all pairs with a naive, WMF, IPS or clipped-IPS pointwise loss.

    Args:
        model: the scoring module (``recsys.models.MF`` in the paper).
        estimator: ``naive`` | ``wmf`` | ``ips`` | ``clipped_ips``.
        propensity: exposure model for ``ips`` / ``clipped_ips`` (fitted on the training split when not
            fitted yet); its propensities are written to the run folder as ``propensity.parquet``.
        clip: M of ``clipped_ips`` (θ ← max(θ, M)).
        positive_weight: c of ``wmf``.
        loss: local loss, ``log`` (cross-entropy) or ``squared`` (as the authors' real-data code).
        batches_per_step: as `RecommenderTask`; by default a whole epoch in one Lightning step.
        kwargs: `RecommenderTask`'s other training and judging arguments.
    """

    def __init__(
        self,
        model: PairModel,
        estimator: Literal["naive", "wmf", "ips", "clipped_ips"] = "ips",
        propensity: Propensity | None = None,
        clip: float = 0.0,
        positive_weight: float = 1.0,
        loss: Literal["log", "squared"] = "log",
        batches_per_step: int = 1_000_000,
        **kwargs: Any,
    ) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if loss not in LOCAL_LOSSES:
            raise ValueError(f"loss must be one of {LOCAL_LOSSES}, got {loss!r}")
        if estimator in ("ips", "clipped_ips") and propensity is None:
            raise ValueError(f"estimator {estimator!r} needs a propensity model (e.g. PopularityPropensity(eta=0.5))")
        super().__init__(model, batches_per_step=batches_per_step, **kwargs)
        self.save_hyperparameters(ignore=["model", "propensity"])
        self.estimator, self.propensity, self.clip = estimator, propensity, clip
        self.positive_weight, self.local_loss = positive_weight, loss
        self.theta_: torch.Tensor | None = None

    def build(self, data: InteractionsDataModule) -> None:
        super().build(data)
        if self.propensity is not None and self.estimator in ("ips", "clipped_ips"):
            if not self.propensity.fitted:
                self.propensity.fit(data.train)
            grid = all_pairs(data.train)
            self.theta_ = self.propensity.pairs(grid["user"], grid["item"]).to(torch.float32)  # [U·I]
            if self.estimator == "ips" and bool((grid["label"][self.theta_ <= 0] > 0).any()):
                raise ValueError("a training interaction has propensity 0: IPS would divide by zero (use clipped_ips)")

    def training_examples(self, train: Interactions) -> dict[str, torch.Tensor]:
        """Every user × item pair of the training grid, labelled by the training interactions."""
        return all_pairs(train)

    def on_fit_start(self) -> None:
        if self.propensity is not None and self.trainer.loggers and self.trainer.is_global_zero:
            self.propensity.save(Path(self.trainer.log_dir) / "propensity.parquet")

    def _weighted(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        users, items = batch["user"], batch["item"]
        logits = self.model.score_pairs(users, items)  # [B]
        theta = None if self.theta_ is None else self.theta_.to(users.device)[users * self.n_items + items]
        return logits, theta

    def losses(self, batch: Batch) -> torch.Tensor:
        """``[B]`` each pair's estimator-weighted local loss w1·δ1 + w0·δ0."""
        logits, theta = self._weighted(batch)
        w1, w0 = pair_weights(batch["label"], theta, self.estimator, positive_weight=self.positive_weight, clip=self.clip)
        d1, d0 = local_losses(logits, self.local_loss)
        return w1 * d1 + w0 * d0

    def loss(self, batch: Batch) -> torch.Tensor:
        """The estimator's normalised batch loss (`estimator_loss`: WMF divides by its weighted count)."""
        logits, theta = self._weighted(batch)
        return estimator_loss(
            logits, batch["label"], theta, self.estimator, loss=self.local_loss,
            positive_weight=self.positive_weight, clip=self.clip,
        )  # fmt: skip

    def fit(self, train: Interactions, valid: Interactions | None = None, *, batch_size: int = 4096, **kwargs: Any) -> Self:
        """`RecommenderTask.fit` over all pairs of ``train``'s grid (an epoch per Lightning step by default)."""
        return super().fit(train, valid, batch_size=batch_size, **kwargs)
