"""`RecommenderTask`: the contract of a trained recommender. A task is a LightningModule that owns its model's
objective, its training examples, its optimiser, what it monitors and how it is judged, and presents the
`Recommender` interface, so the shared evaluator ranks its scores during training, in benchmarks and in tests.

A subclass says four things: `build` (make the model for the data), `training_examples` (what one epoch iterates,
built from the training split), `losses` (one loss per example of a batch) and `score`. Pair models
(`PairModelTask`) and sequence models (`recsys.tasks.sequential.SequentialTask`) fill them in differently.
"""

from __future__ import annotations

import difflib
import logging
from abc import abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, Sequence

import lightning as L
import numpy as np
import polars as pl
import torch
import torch.distributed as dist

from recsys.data.features import feature_space
from recsys.data.interactions import Interactions
from recsys.data.modules import Examples, InteractionsDataModule, count, take
from recsys.data.selection import Selection
from recsys.data.sequences import Sequences
from recsys.embeddings.tables import FUSED_ROWS, EmbeddingTables, FusedOptimizer, FusedUpdates
from recsys.errors import RunError
from recsys.evaluation.evaluator import Evaluation, evaluate
from recsys.evaluation.metrics import CATALOGUE_METRICS, USER_METRICS
from recsys.models.base import PairModel, State
from recsys.recommender import Fitted, NotSupportedError, Recommender, fold_in
from recsys.tasks.checkpoints import load_checkpoint
from recsys.tasks.training import SharedThreads, fit_task

Batch = dict[str, torch.Tensor]
log = logging.getLogger(__name__)


class RecommenderTask(L.LightningModule, Recommender):
    """Model + objective + training examples + optimiser + judge.

    Validation runs the shared full-ranking evaluator on the validation split (training items excluded) and logs
    ``val/<metric>``; the task's ``monitor`` (``val/ndcg@10`` unless a task says otherwise) drives early stopping
    and checkpoint selection. Test does the same on the test split with training and validation items excluded and
    keeps the `Evaluation` in ``test_evaluation_``. Validate every N epochs with the trainer's
    ``check_val_every_n_epoch``; ``val_users`` ranks a fixed seeded sample of validation users instead of all.

    Args:
        lr: learning rate of the task's own optimiser (the default when the CLI's ``--optimizer`` is not given).
        weight_decay: L2 penalty of that optimiser.
        optimizer: ``adam`` or ``sgd``.
        eval_k: cut-offs logged during validation and test.
        eval_batch_size: users per scoring chunk.
        seed: seed of negative sampling and of the validation-user sample (each batch's generator is derived from
            it and the global step, so a resumed run samples what an uninterrupted one would).
        batches_per_step: training batches handed to one Lightning step as a list, one optimiser step each by
            hand (spares Lightning's ~2.5 ms per step, as long as a whole MF-BPR step).
        val_users: validate on this many validation users, drawn once from ``seed`` (all when None); the
            sample size is logged as ``val/users``.
    """

    monitor: ClassVar[str] = "val/ndcg@10"
    """The validation metric that early stopping and checkpoint selection follow."""
    monitor_mode: ClassVar[Literal["max", "min"]] = "max"
    point_metric_names: ClassVar[tuple[str, ...]] = ()
    """What `point_metrics` reports (so a monitored name can be checked before training)."""
    predict_k: int | None = None
    """How many items `predict_step` recommends per user (``recsys predict --k``); the largest ``eval_k`` if None."""
    predict_users: list | None = None
    """The raw user ids `predict_step` recommends for (``recsys predict --users``); every training user if None."""

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "sgd"] = "adam",
        eval_k: Sequence[int] = (10, 20),
        eval_batch_size: int = 1024,
        seed: int = 2026,
        batches_per_step: int = 1,
        val_users: int | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam' or 'sgd'")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if batches_per_step < 1:
            raise ValueError(f"batches_per_step must be >= 1, got {batches_per_step}")
        if val_users is not None and val_users < 1:
            raise ValueError(f"val_users must be >= 1 (or None for all), got {val_users}")
        if not eval_k or min(eval_k) < 1:
            raise ValueError(f"eval_k must be positive cut-offs, got {eval_k}")
        self.lr, self.weight_decay, self.optimizer_name = lr, weight_decay, optimizer
        self.eval_k, self.eval_batch_size, self.seed = tuple(eval_k), eval_batch_size, seed
        self.batches_per_step, self.val_users = batches_per_step, val_users
        self.valid_: Interactions | None = None
        self.test_: Interactions | None = None
        self.test_evaluation_: Evaluation | None = None
        self.threads_used_: tuple[int, ...] = ()
        self._optimizer_config: tuple[dict[str, Any], dict[str, Any] | None] | None = None

    # ------------------------------------------------------------------------------------------ the contract
    @abstractmethod
    def build(self, data: InteractionsDataModule) -> None:
        """Make the model for the data module's splits (feature space, vocabulary sizes); called once in `setup`."""

    @abstractmethod
    def training_examples(self, train: Interactions) -> Examples:
        """What one training epoch iterates over, built from the training split."""

    def collate(self, batch: Any) -> Any:
        """Turn a batch of examples into the step's input (identity for aligned tensors; pads variable-length
        samples where a task has them)."""
        return batch

    @abstractmethod
    def losses(self, batch: Batch) -> torch.Tensor:
        """``[B]`` the objective of each example of a batch (DEALRec and other data-pruning scores read these)."""

    def loss(self, batch: Batch) -> torch.Tensor:
        """The scalar that one optimiser step minimises: the mean of `losses` unless a task weighs them."""
        return self.losses(batch).mean()

    def validation_metrics(self) -> set[str]:
        """Every ``val/…`` name validation logs: the ranking metrics at ``eval_k``, the point metrics, ``val/users``."""
        ranking = {f"{m}@{k}" for m in (*USER_METRICS, *CATALOGUE_METRICS) for k in self.eval_k}
        return {f"val/{name}" for name in (*ranking, *self.point_metric_names, "users")}

    def check_monitor(self, monitor: str) -> None:
        """Refuse, before any training, a monitored name that validation never logs (a typo would otherwise
        fail only after the first epoch)."""
        known = self.validation_metrics()
        if monitor not in known:
            close = difflib.get_close_matches(monitor, sorted(known), n=3) or sorted(known)[:6]
            raise RunError(f"monitor {monitor!r} is not a metric {type(self).__name__} logs in validation "
                           f"(eval_k {list(self.eval_k)}); did you mean {close}?")  # fmt: skip

    def point_metrics(self, part: Interactions) -> dict[str, float]:
        """Metrics of the split's own (user, item) rows that `judge` adds to the ranking metrics (RMSE, AUC)."""
        return {}

    # ------------------------------------------------------------------------------------------ set-up
    def configure_callbacks(self) -> list[L.Callback]:
        """`SharedThreads`: every fit trains with this process's share of the cores (`recsys.threads`)."""
        return [SharedThreads()]

    def thread_timings(self) -> dict[str, float]:
        """``threads_min`` / ``threads_max`` of a run record's timings: the fewest and most torch threads the last
        fit trained with (they differ when the automatic policy changed them under contention)."""
        if not self.threads_used_:
            return {}
        return {"threads_min": float(min(self.threads_used_)), "threads_max": float(max(self.threads_used_))}

    def setup(self, stage: str) -> None:
        data: InteractionsDataModule = self.trainer.datamodule
        data.setup(stage)
        self.attach(data)
        # Lists of batches (`batches_per_step` > 1) are stepped by hand in `training_step`, one optimiser step each.
        self.automatic_optimization = self.steps_per_lightning_step() == 1

    def steps_per_lightning_step(self) -> int:
        """``batches_per_step``, except 1 under several processes: stepping by hand would bypass the data-parallel
        gradient all-reduce of the dense layers (the same optimiser steps either way)."""
        if self.batches_per_step > 1 and self.trainer.world_size > 1:
            log.info("%d processes: one batch per Lightning step, so dense gradients are all-reduced", self.trainer.world_size)
            return 1
        return self.batches_per_step

    def attach(self, data: InteractionsDataModule) -> None:
        """Build the model for the data and remember its splits."""
        self._remember(data.train)
        self.valid_, self.test_ = data.valid, data.test
        self.build(data)

    def restore(self, train: Interactions) -> None:
        """Build the model for ``train`` without training, so that a saved state dict loads into it."""
        self.attach(InteractionsDataModule.from_splits(train, seed=self.seed))

    def fitted_state(self) -> dict[str, Fitted]:
        """The state dict (CPU tensors; tied weights, e.g. an LM head and its word embeddings, as separate copies,
        since safetensors refuses shared memory)."""
        _ = self.train_data  # raises NotFittedError
        state, seen = {}, set()
        for name, tensor in self.state_dict().items():
            tensor = tensor.detach().contiguous().cpu()
            pointer = tensor.data_ptr()
            state[name] = tensor.clone() if pointer in seen and tensor.numel() else tensor
            seen.add(pointer)
        return state

    def load_fitted_state(self, state: dict[str, Fitted]) -> None:
        """Load the state dict and switch to eval mode."""
        self.load_state_dict(state)
        self.eval()

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]  # Lightning's hparams_file, strict, ... do not apply
        cls, checkpoint_path: str | Path, map_location: str | torch.device | None = None,
    ) -> Self:
        """The task a `recsys fit` checkpoint holds, ready to score: `recsys.tasks.checkpoints.load_checkpoint`, as
        `recsys.load` does (Lightning's own loader cannot rebuild it: the model is built for the data, which a
        checkpoint lacks), moved to ``map_location`` when given."""
        task = load_checkpoint(checkpoint_path)
        if not isinstance(task, cls):
            raise RunError(f"{checkpoint_path} holds a {type(task).__name__}, not a {cls.__name__}")
        return task if map_location is None else task.to(map_location)

    def train_dataloader(self) -> Any:
        data: InteractionsDataModule = self.trainer.datamodule
        examples = self.training_examples(data.train)
        if data.selection_ is not None:
            examples = self.selected_examples(examples, data.selection_)
        return data.loader(examples, self.steps_per_lightning_step(), self.collate)

    def selected_examples(self, examples: Examples, selection: Selection) -> Examples:
        """The training examples a sample selection (``data.selection``) names; tasks whose samples data pruning
        selects (`recsys.tasks.LLMTask`) say which, every other task refuses one."""
        raise RunError(f"{type(self).__name__} cannot train on a sample selection (data.selection {selection.path}): "
                       "selections name the LLM recommender's samples (recsys prune)")  # fmt: skip

    def use_optimizer(self, optimizer: dict[str, Any], lr_scheduler: dict[str, Any] | None = None) -> None:
        """Train with this optimiser (and scheduler) instead of the task's own: ``{class_path, init_args}`` as
        LightningCLI's ``--optimizer`` / ``--lr_scheduler`` give them. They are built in `configure_optimizers`,
        once `build` has made the parameters."""
        self._optimizer_config = (optimizer, lr_scheduler)

    def configure_optimizers(self) -> Any:
        if self._optimizer_config is not None:
            from lightning.pytorch.cli import LightningCLI, instantiate_class

            optimizer_init, scheduler_init = self._optimizer_config
            optimizer = instantiate_class(self.dense_parameters(), optimizer_init)
            scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
            return LightningCLI.configure_optimizers(self, optimizer, scheduler)
        if self.optimizer_name == "adam":
            # The fused kernel (one pass over all parameters) saves ~20% of an MF-BPR step; sharded tables stay
            # with the reference implementation, whose per-shard state `recsys.distributed` gathers.
            fused = not (dist.is_available() and dist.is_initialized())
            return torch.optim.Adam(self.dense_parameters(), lr=self.lr, weight_decay=self.weight_decay, fused=fused)
        return torch.optim.SGD(self.dense_parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def dense_parameters(self) -> list[torch.nn.Parameter]:
        """What the task's optimiser steps: every parameter but those of tables that update themselves in backward
        (`EmbeddingTables` with fused updates, sharded or not)."""
        fused = {id(p) for m in self.modules() if isinstance(m, EmbeddingTables) and m.fused for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in fused]

    def generator(self) -> torch.Generator:
        """Sampling generator of the current step (derived from ``seed`` and the global step)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_step)

    # ------------------------------------------------------------------------------------------ training
    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> torch.Tensor | None:
        """One optimiser step on a batch (automatic optimisation), or one per batch of a list (by hand)."""
        if self.automatic_optimization:
            return self._tracked_loss(batch)  # type: ignore[arg-type]
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

    def epoch_loss(self) -> float | None:
        """The mean training loss of this epoch's examples so far (None before its first batch)."""
        return float(self._loss_sum / self._loss_rows) if getattr(self, "_loss_rows", 0) else None

    def on_train_epoch_end(self) -> None:
        if self._loss_rows:
            self.log("train/loss", self._loss_sum / self._loss_rows, prog_bar=True)
        if not self.automatic_optimization:  # Lightning steps schedulers only under automatic optimisation
            for scheduler in self.trainer.lr_scheduler_configs:
                if scheduler.interval != "epoch" or scheduler.monitor:
                    raise ValueError("with batches_per_step > 1 only epoch-interval schedulers without a monitor "
                                     "are stepped; set batches_per_step: 1 for this scheduler")  # fmt: skip
                scheduler.scheduler.step()

    def example_losses(self, part: Interactions, batch_size: int = 4096) -> torch.Tensor:
        """``[N]`` `losses` of every training example built from ``part``, in order, in eval mode, no gradient."""
        examples = self.training_examples(part)
        was_training = self.training
        self.eval()
        out = []
        with torch.no_grad():
            for index in torch.arange(count(examples)).split(batch_size):
                batch = self.collate(take(examples, index))
                if isinstance(batch, dict):
                    batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
                out.append(self.losses(batch).cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    # ------------------------------------------------------------------------------------------ judging
    def judge(self, part: Interactions, exclude: list[Interactions], k: Sequence[int] | None = None,
              users: np.ndarray | None = None) -> Evaluation:  # fmt: skip
        """The one judge of a trained task: the shared evaluator's ranking metrics on ``part`` (``exclude`` never
        ranked) plus the task's `point_metrics`, in one `Evaluation`. Under data parallelism each rank ranks an
        equal share of the users and the per-user results are gathered, so every rank returns the same result."""
        was_training = self.training
        self.eval()
        try:
            ks = tuple(k or self.eval_k)
            world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
            if world == 1:
                ev = evaluate(self, part, exclude=exclude, k=ks, batch_size=self.eval_batch_size, users=users)
            else:
                ev = self._evaluate_distributed(part, exclude, ks, world, users)
            extra = self.point_metrics(part)
            return replace(ev, summary={**ev.summary, **extra}) if extra else ev
        finally:
            self.train(was_training)

    def _evaluate_distributed(self, part: Interactions, exclude: list[Interactions], ks, world: int,
                              subset: np.ndarray | None) -> Evaluation:  # fmt: skip
        users = np.unique(part.frame["user"].to_numpy()) if subset is None else np.unique(subset)
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

    def validation_user_sample(self) -> np.ndarray | None:
        """The fixed validation users of ``val_users`` (codes, drawn once from ``seed``), or None for all."""
        if self.val_users is None:
            return None
        assert self.valid_ is not None
        users = np.unique(self.valid_.frame["user"].to_numpy())
        if self.val_users >= len(users):
            return None
        return np.sort(np.random.default_rng(self.seed).choice(users, self.val_users, replace=False))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        assert self.valid_ is not None
        sample = self.validation_user_sample()
        ev = self.judge(self.valid_, [self.train_data], users=sample)
        shown = {self.monitor, "val/ndcg@10", "val/recall@10"}
        for name, value in ev.summary.items():
            self.log(f"val/{name}", value, prog_bar=f"val/{name}" in shown, batch_size=1)
        if sample is not None:
            self.log("val/users", float(len(sample)), batch_size=1)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        assert self.valid_ is not None and self.test_ is not None
        ev = self.judge(self.test_, [self.train_data, self.valid_])
        self.test_evaluation_ = ev
        self.log_dict({f"test/{k}": v for k, v in ev.summary.items()}, batch_size=1)

    def predict_step(self, batch: Any, batch_idx: int) -> pl.DataFrame:
        return self.recommend(self.predict_users, k=self.predict_k or max(self.eval_k), batch_size=self.eval_batch_size)

    # ------------------------------------------------------------------------------------------ Python API
    def fit(
        self,
        train: Interactions,
        valid: Interactions | None = None,
        *,
        max_epochs: int = 300,
        patience: int = 10,
        batch_size: int = 2048,
        progress: bool = False,
        **trainer_kwargs: Any,
    ) -> Self:
        """Train on ``train``; with ``valid``, early-stop on the task's ``monitor`` and keep the best epoch's weights.

        A convenience over Lightning for the Python API and `recsys benchmark`; `recsys fit` runs the same
        module through LightningCLI. ``trainer_kwargs`` go to the `lightning.Trainer` (e.g.
        ``check_val_every_n_epoch``, ``strategy``). Afterwards ``best_weights_`` records the best validation value
        and epoch, and ``epochs_trained_`` the epochs run."""
        self.best_weights_, self.epochs_trained_ = fit_task(
            self, train, valid, max_epochs=max_epochs, patience=patience, batch_size=batch_size, progress=progress,
            **trainer_kwargs,
        )  # fmt: skip
        return self

    def params(self) -> dict:
        return {"task": type(self).__name__, **dict(self.hparams)}


class PairModelTask(RecommenderTask):
    """A task over a `PairModel` (MF, NeuMF, FM, DeepFM): the model is built against the data's feature space
    (with side features when the model uses them) and scores every item from one item encoding per evaluation.

    Embedding tables of at least ``fused_rows`` rows in all update themselves inside backward, on the rows each
    batch touched (TorchRec's fused optimiser over FBGEMM kernels, see `FusedUpdates`); the task's optimiser (``lr``,
    ``optimizer``, or the CLI's ``--optimizer``) then steps the dense layers only, and learning-rate schedulers act
    on those alone. Smaller tables stay dense: the task's optimiser steps them with the rest.

    Args:
        model: the scoring module.
        batches_per_step: as `RecommenderTask`; 16 by default, which halves an MF-BPR epoch (the same optimiser
            steps on the same batches as one batch a step, tested). Set 1 for Lightning's per-step features
            (gradient clipping or accumulation, step-interval schedulers).
        fused_rows: total table rows from which the tables train fused (None: never; 0: always).
        fused_optimizer: the fused tables' optimiser, ``rowwise_adagrad``, ``adagrad`` or ``sgd`` (FBGEMM's CPU
            kernels have no Adam and ignore weight decay: ``weight_decay`` then applies to the dense layers only).
        fused_lr: its learning rate (0.03: MF-BPR's best validation NDCG@10 on ML-100k, `mf-bpr-fused.yaml`).
        kwargs: `RecommenderTask`'s other training and judging arguments (``lr``, ``seed``, …).
    """

    def __init__(self, model: PairModel, batches_per_step: int = 16, fused_rows: int | None = FUSED_ROWS,
                 fused_optimizer: FusedOptimizer = "rowwise_adagrad", fused_lr: float = 0.03, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(batches_per_step=batches_per_step, **kwargs)
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.fused = None if fused_rows is None else FusedUpdates(fused_optimizer, fused_lr, fused_rows)
        self._item_cache: tuple[tuple[int, int], State] | None = None

    def build(self, data: InteractionsDataModule) -> None:
        self.model.build(feature_space(data.train, side_features=self.model.uses_side_features), self.fused)
        tables = self.model.embeddings
        if self.weight_decay and isinstance(tables, EmbeddingTables) and tables.fused is not None:
            log.warning("fused embedding tables train without weight decay (FBGEMM's CPU kernels ignore it); "
                        "weight_decay %g applies to the dense layers only", self.weight_decay)  # fmt: skip

    # ------------------------------------------------------------------------------------------ scoring
    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        """``[B, n_items]`` scores; item states are encoded once per parameter version and reused across chunks."""
        with torch.no_grad():
            items = self._item_state()
            return self.model.all_scores(self.model.encode("user", users.to(self.device)), items)

    def score_history(self, items: np.ndarray) -> torch.Tensor:
        """Fold-in: the user vector solved by ridge regression against the frozen item vectors (`fold_in`)."""
        vectors = self.item_vectors()
        return vectors @ fold_in(vectors, items)

    def item_vectors(self) -> torch.Tensor:
        """``[n_items, d]`` the model's `dot_vectors` (models whose scores are a dot product: MF, FM)."""
        with torch.no_grad():
            vectors = self.model.dot_vectors(self._item_state())
        if vectors is None:
            raise NotSupportedError(f"{type(self).__name__}({type(self.model).__name__}) scores through a nonlinear "
                                    "head: it has no item vectors to fold a history into or compare "
                                    "(recommend_for_history and similar_items are not available)")  # fmt: skip
        return vectors

    def _item_state(self) -> State:
        version = (self.global_step, id(self.model.embeddings))
        if self._item_cache is None or self._item_cache[0] != version or self.training:
            ids = torch.arange(self.n_items, device=self.device)
            self._item_cache = (version, self.model.encode("item", ids))
        return self._item_cache[1]

    def judge(self, part: Interactions, exclude: list[Interactions], k: Sequence[int] | None = None,
              users: np.ndarray | None = None) -> Evaluation:  # fmt: skip
        self._item_cache = None  # a judgement encodes the items afresh, and keeps no cache after
        try:
            return super().judge(part, exclude, k, users)
        finally:
            self._item_cache = None

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

    def params(self) -> dict:
        model_params = {k: v for k, v in vars(self.model).items() if not k.startswith("_") and isinstance(v, (int, float, str, bool, tuple))}
        return {"task": type(self).__name__, "model": type(self.model).__name__, **model_params, **dict(self.hparams)}
