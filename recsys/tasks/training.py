"""`fit_task`: train a `RecommenderTask` on given splits with early stopping on its monitor and best-epoch weights,
in memory (the Python API and `recsys benchmark`; `recsys fit` runs the same task through LightningCLI)."""

from __future__ import annotations

import copy
import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch

from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.threads import TrainingThreads


class BestWeights(L.Callback):
    """Keeps a copy of the weights of the best validation epoch and restores them when training ends."""

    def __init__(self, monitor: str, mode: str = "max") -> None:
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        value = float(value)
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


class EpochTimer(L.Callback):
    """Wall seconds of each training epoch (first batch fetched to last step done), for benchmark scripts."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._started)


class LearningCurve(L.Callback):
    """Records each epoch's training loss and the task's monitored validation metric (absent in epochs without
    validation) as ``rows``; kept in checkpoints, so a resumed run's curve covers every epoch."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float | None]] = []
        self._validation: float | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            value = trainer.callback_metrics.get(module.monitor)
            self._validation = None if value is None else float(value)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # Runs after the epoch's validation and before the task's own hook logs train/loss, so it asks the task.
        self.rows.append({"epoch": trainer.current_epoch, "train/loss": module.epoch_loss(), module.monitor: self._validation})
        self._validation = None

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])


class SharedThreads(L.Callback):
    """Trains with this process's share of the cores (`recsys.threads.TrainingThreads`): registers when a fit is
    set up, follows the share before every training and validation batch, unregisters when the fit ends or fails,
    and leaves the thread counts it trained with in the task's ``threads_used_``."""

    def __init__(self) -> None:
        self.threads: TrainingThreads | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.threads = TrainingThreads()
            self.threads.open()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.threads is not None:
            self.threads.recheck()

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        if self.threads is not None:
            self.threads.recheck()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._close(pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close(pl_module)  # Lightning skips teardown when a fit raises

    def _close(self, module: L.LightningModule) -> None:
        if self.threads is not None:
            self.threads.close()
            module.threads_used_ = tuple(sorted(self.threads.used))
            self.threads = None


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up notices (GPU/TPU availability, tips) while a helper trains in the background, and
    two warnings that do not apply here: a sized `IterableDataset` (we load in the main process, so its length is
    exact) and Lightning's use of a `LeafSpec` check that newer torch deprecates."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def fit_task(
    task: Any,
    train: Interactions,
    valid: Interactions | None,
    *,
    max_epochs: int = 300,
    patience: int = 10,
    batch_size: int = 2048,
    progress: bool = False,
    callbacks: list[L.Callback] | None = None,
    monitor: str | None = None,
    monitor_mode: str | None = None,
    selection: str | Path | None = None,
    **trainer_kwargs: Any,
) -> tuple[BestWeights, int]:
    """Seed, train and (with ``valid``) early-stop ``task`` (a `RecommenderTask`) on its ``monitor``; the best
    validation epoch's weights are restored. Returns the `BestWeights` record and the epochs run.

    ``callbacks`` are appended after the early-stopping and best-weights callbacks; ``monitor`` / ``monitor_mode``
    replace the task's (a study tuning another validation metric); ``selection`` trains on a sample selection
    (``recsys prune``'s ``selection.parquet``); ``trainer_kwargs`` go to the `lightning.Trainer` (e.g.
    ``check_val_every_n_epoch``)."""
    L.seed_everything(task.seed, verbose=False)
    data = InteractionsDataModule.from_splits(train, valid, batch_size=batch_size, seed=task.seed, selection=selection)
    metric, mode = monitor or task.monitor, monitor_mode or task.monitor_mode
    task.check_monitor(metric)
    own: list[L.Callback] = []
    best = BestWeights(metric, mode)
    if valid is not None:
        own = [L.pytorch.callbacks.EarlyStopping(metric, mode=mode, patience=patience), best]
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=max_epochs,
            callbacks=[*own, *(callbacks or [])],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=1.0 if valid is not None else 0,
            accelerator=trainer_kwargs.pop("accelerator", "cpu"),
            **trainer_kwargs,
        )
        trainer.fit(task, datamodule=data)
    task.eval()
    return best, trainer.current_epoch


class EarlyStoppingOnTask(L.pytorch.callbacks.EarlyStopping):
    """`EarlyStopping` on the metric the task declares (``task.monitor`` / ``monitor_mode``), so one shared trainer
    config serves tasks that monitor different metrics (NDCG@10, AUC)."""

    def __init__(self, patience: int = 10, min_delta: float = 0.0) -> None:
        super().__init__(monitor="val/ndcg@10", mode="max", patience=patience, min_delta=min_delta)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.monitor, self.mode = pl_module.monitor, pl_module.monitor_mode
        self.best_score = torch.tensor(-torch.inf if self.mode == "max" else torch.inf)
        super().setup(trainer, pl_module, stage)


class BestCheckpointOnTask(L.pytorch.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` of the best epochs by the metric the task declares (see `EarlyStoppingOnTask`)."""

    def __init__(self, save_top_k: int = 1, filename: str | None = None, auto_insert_metric_name: bool = True) -> None:
        super().__init__(monitor="val/ndcg@10", mode="max", save_top_k=save_top_k, filename=filename,
                         auto_insert_metric_name=auto_insert_metric_name)  # fmt: skip

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.monitor = pl_module.monitor
        # ModelCheckpoint keeps its mode's sentinels (kth_value, best score) in a private initialiser; redo it.
        self._ModelCheckpoint__init_monitor_mode(pl_module.monitor_mode)
        super().setup(trainer, pl_module, stage)
