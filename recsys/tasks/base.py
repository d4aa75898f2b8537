"""`RecommenderTask`: a LightningModule that owns a `PairModel`'s objective and optimisation and presents the
`Recommender` interface, so the shared evaluator ranks its scores during training and in benchmarks."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Literal, Self, Sequence

import lightning as L
import numpy as np
import polars as pl
import torch
import torch.distributed as dist

import recsys.distributed  # noqa: F401  (registers Trainer(strategy="torchrec"), e.g. for --trainer.strategy)
from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.evaluation.evaluator import Evaluation, evaluate
from recsys.models.base import PairModel, State
from recsys.recommender import Recommender

Batch = dict[str, torch.Tensor]


class RecommenderTask(L.LightningModule, Recommender):
    """Model + objective + optimiser. Subclasses implement `loss`.

    Validation runs the foundation's full-ranking evaluator on the validation split (training items excluded)
    and logs ``val/<metric>`` for early stopping and checkpoint selection; test does the same on the test split
    with training and validation items excluded and keeps the `Evaluation` in ``test_evaluation_``.

    Args:
        model: the scoring module (built against the data's feature space in `setup`).
        lr: learning rate.
        weight_decay: L2 penalty of the optimiser.
        optimizer: ``adam`` or ``sgd``.
        eval_k: cut-offs logged during validation and test.
        eval_batch_size: users per scoring chunk.
        seed: seed of negative sampling (each batch's generator is derived from it and the global step, so
            a resumed run samples what an uninterrupted one would).
    """

    def __init__(
        self,
        model: PairModel,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "sgd"] = "adam",
        eval_k: Sequence[int] = (10, 20),
        eval_batch_size: int = 1024,
        seed: int = 2026,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.lr, self.weight_decay, self.optimizer_name = lr, weight_decay, optimizer
        self.eval_k, self.eval_batch_size, self.seed = tuple(eval_k), eval_batch_size, seed
        self.valid_: Interactions | None = None
        self.test_evaluation_: Evaluation | None = None
        self._item_cache: tuple[int, State] | None = None

    # ------------------------------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        data: InteractionsDataModule = self.trainer.datamodule
        data.setup(stage)
        self.attach(data)
        # Lists of batches (`batches_per_step` > 1) are stepped by hand in `training_step`, one optimiser step each.
        self.automatic_optimization = data.batches_per_step == 1

    def attach(self, data: InteractionsDataModule) -> None:
        """Build the model for the data's feature space and remember the splits."""
        self.model.build(data.features)
        self._remember(data.train)
        self.valid_, self.test_ = data.valid, data.test

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "adam":
            # The fused kernel (one pass over all parameters) saves ~20% of an MF-BPR step; sharded tables stay
            # with the reference implementation, whose per-shard state `recsys.distributed` gathers.
            fused = not (dist.is_available() and dist.is_initialized())
            return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay, fused=fused)
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        raise ValueError(f"unknown optimizer {self.optimizer_name!r}; use 'adam' or 'sgd'")

    def generator(self) -> torch.Generator:
        """Sampling generator of the current step (derived from ``seed`` and the global step)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_step)

    # ------------------------------------------------------------------------------------------ training
    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The objective on one training batch (``user``, ``item`` and, where present, ``rating``/``label``)."""

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> torch.Tensor | None:
        """One optimiser step on a batch (automatic optimisation), or one per batch of a list (by hand)."""
        if self.automatic_optimization:
            return self._tracked_loss(batch)
        optimizer = self.optimizers()
        for part in batch:
            loss = self._tracked_loss(part)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
        return None

    def _tracked_loss(self, batch: Batch) -> torch.Tensor:
        loss = self.loss(batch)
        # Summed here and logged once per epoch: `self.log` on every step costs about 1 ms, a tenth of a step.
        rows = len(next(iter(batch.values())))
        self._loss_sum = self._loss_sum + loss.detach() * rows
        self._loss_rows += rows
        return loss

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_rows = torch.zeros((), device=self.device), 0

    def on_train_epoch_end(self) -> None:
        if self._loss_rows:
            self.log("train/loss", self._loss_sum / self._loss_rows, prog_bar=True)

    # ------------------------------------------------------------------------------------------ scoring
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]`` scores; item states are encoded once per parameter version and reused across chunks."""
        with torch.no_grad():
            items = self._item_state()
            return self.model.all_scores(self.model.encode("user", users.to(self.device)), items)

    def _item_state(self) -> State:
        version = (self.global_step, id(self.model.embeddings))
        if self._item_cache is None or self._item_cache[0] != version or self.training:
            ids = torch.arange(self.n_items, device=self.device)
            self._item_cache = (version, self.model.encode("item", ids))
        return self._item_cache[1]

    def observed_scores(self, part: Interactions, chunk: int = 65536) -> np.ndarray:
        """``[len(part)]`` float64 scores of a split's own (user, item) rows, in eval mode and chunks."""
        was_training = self.training
        self.eval()
        users = torch.from_numpy(part.frame["user"].to_numpy().copy()).to(self.device)
        items = torch.from_numpy(part.frame["item"].to_numpy().copy()).to(self.device)
        with torch.no_grad():
            scores = [self.model.score_pairs(u, i) for u, i in zip(users.split(chunk), items.split(chunk))]
        self.train(was_training)
        return torch.cat(scores).cpu().numpy().astype(np.float64)

    def evaluate_split(self, part: Interactions, exclude: list[Interactions], k: Sequence[int] | None = None) -> Evaluation:
        """The shared evaluator on ``part``; under data parallelism each rank ranks an equal share of the users
        and the per-user results are gathered, so every rank returns the same `Evaluation`."""
        was_training = self.training
        self.eval()
        self._item_cache = None
        try:
            ks = tuple(k or self.eval_k)
            world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
            if world == 1:
                return evaluate(self, part, exclude=exclude, k=ks, batch_size=self.eval_batch_size)
            return self._evaluate_distributed(part, exclude, ks, world)
        finally:
            self._item_cache = None
            self.train(was_training)

    def _evaluate_distributed(self, part: Interactions, exclude: list[Interactions], ks, world: int) -> Evaluation:
        users = np.unique(part.frame["user"].to_numpy())
        shares = np.array_split(users, world)
        mine = shares[dist.get_rank()]
        size = max(len(s) for s in shares)
        # Sharded lookups are collective: every rank must score the same number of chunks, so short shares are
        # padded with their own first user (dropped again below).
        padded = np.concatenate([mine, np.repeat(mine[:1], size - len(mine))]) if len(mine) else np.repeat(users[:1], size)
        local = evaluate(self, part, exclude=exclude, k=ks, batch_size=self.eval_batch_size, users=padded)
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, local.per_user)
        per_user = pl.concat(gathered).unique("user", keep="first").sort("user")
        summary = {m: float(per_user[m].mean()) for m in per_user.columns if m not in ("user", "n_relevant")}
        # Catalogue metrics (coverage, popularity, Gini) need every rank's top-K lists, which are not gathered:
        # they are left out of a distributed evaluation rather than reported from one rank's share of users.
        notes = ["catalogue metrics omitted: users were ranked on separate processes"]
        return Evaluation(summary=summary, per_user=per_user, ks=local.ks, mode=local.mode, notes=notes)

    # ------------------------------------------------------------------------------------------ evaluation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        assert self.valid_ is not None
        ev = self.evaluate_split(self.valid_, [self.train_data])
        shown = {f"val/{k}" for k in ("ndcg@10", "recall@10") if k in ev.summary}
        for name, value in ev.summary.items():
            self.log(f"val/{name}", value, prog_bar=f"val/{name}" in shown, batch_size=1)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        assert self.valid_ is not None
        ev = self.evaluate_split(self.test_, [self.train_data, self.valid_])
        self.test_evaluation_ = ev
        self.log_dict({f"test/{k}": v for k, v in ev.summary.items()}, batch_size=1)

    def predict_step(self, batch: Any, batch_idx: int) -> pl.DataFrame:
        return self.recommend(k=max(self.eval_k), batch_size=self.eval_batch_size)

    # ------------------------------------------------------------------------------------------ Python API
    def fit(
        self,
        train: Interactions,
        valid: Interactions | None = None,
        *,
        max_epochs: int = 300,
        patience: int = 10,
        batch_size: int = 2048,
        batches_per_step: int = 16,
        progress: bool = False,
        **trainer_kwargs: Any,
    ) -> Self:
        """Train on ``train``; with ``valid``, early-stop on validation NDCG@10 and keep the best epoch's weights.

        A convenience over Lightning for the Python API and `recsys benchmark`; `recsys fit` runs the same
        module through LightningCLI. ``batches_per_step`` batches share one Lightning step (one optimiser step
        each), which halves an MF-BPR epoch.
        """
        from recsys.tasks.training import fit_task

        return fit_task(
            self, train, valid, max_epochs=max_epochs, patience=patience, batch_size=batch_size,
            batches_per_step=batches_per_step, progress=progress, **trainer_kwargs,
        )  # fmt: skip

    def params(self) -> dict:
        model_params = {k: v for k, v in vars(self.model).items() if not k.startswith("_") and isinstance(v, (int, float, str, bool, tuple))}
        return {"task": type(self).__name__, "model": type(self.model).__name__, **model_params, **dict(self.hparams)}
