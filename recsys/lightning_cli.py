"""`recsys fit | validate | test | predict`: LightningCLI over `RecommenderTask` subclasses and the data module.

Every key of a YAML config is checked against the typed constructors (a typo fails naming the key). After
``fit`` the best checkpoint (by the monitored validation metric) is tested and the run folder gets
``results.json`` (the benchmark record schema), ``per_user.parquet``, ``versions.json`` beside Lightning's
``config.yaml``, ``metrics.csv`` and ``checkpoints/``. ``predict`` writes ``recommendations.parquet``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import polars as pl
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningCLI

import recsys.distributed  # noqa: F401  (registers Trainer(strategy="torchrec") for --trainer.strategy torchrec)
from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.records import RunRecord
from recsys.resources import experiments_dir
from recsys.tasks.base import RecommenderTask
from recsys.tasks.training import BestCheckpointOnTask, EarlyStoppingOnTask, quiet_lightning


def trainer_defaults() -> dict[str, Any]:
    """The shared ``trainer:`` block (``experiments/trainer.yaml``) that every experiment starts from."""
    return yaml.safe_load((experiments_dir() / "trainer.yaml").read_text(encoding="utf-8"))["trainer"]


class RecsysCLI(LightningCLI):
    """LightningCLI with recsys' shared trainer defaults and run-folder artefacts; resuming ``fit`` continues in the
    checkpoint's run folder."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.set_defaults({f"trainer.{key}": value for key, value in trainer_defaults().items()})

    def _config(self) -> Any:
        """The parsed config of the subcommand (the whole config when built with ``run=False``)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self._config()
        logger = config.trainer.get("logger")
        if logger is not None and not isinstance(logger, bool) and "init_args" in logger:
            if logger.init_args.get("name") in (None, "lightning_logs"):  # the logger's default: name it by the run
                logger.init_args["name"] = f"{config.data.dataset}/{self.run_name()}"
        if self.subcommand != "fit":
            return
        ckpt = config.get("ckpt_path")
        if not ckpt or not isinstance(ckpt, str) or Path(ckpt).parent.name != "checkpoints":
            return
        # <save_dir>/<name>/<version>/checkpoints/x.ckpt: log into the same version, so the checkpoint
        # callback finds its own folder and keeps its best-so-far state across the interruption.
        if logger is not None and not isinstance(logger, bool) and "init_args" in logger:
            run = Path(ckpt).parent.parent
            logger.init_args["version"] = run.name
            # CSVLogger deletes an existing metrics.csv; keep the interrupted part's log beside the new one.
            if (run / "metrics.csv").exists():
                parts = sum(1 for _ in run.glob("metrics.until-*.csv"))  # a later resume keeps the earlier parts
                suffix = f"-{parts + 1}" if parts else ""
                (run / "metrics.csv").rename(run / f"metrics.until-{Path(ckpt).stem}{suffix}.csv")

    def before_fit(self) -> None:
        """Check every monitored name of the trainer's callbacks against what the task logs, before training."""
        for callback in self.trainer.callbacks:
            monitor = getattr(callback, "monitor", None)
            if monitor and not isinstance(callback, (EarlyStoppingOnTask, BestCheckpointOnTask)):
                self.model.check_monitor(monitor)

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """``--optimizer`` / ``--lr_scheduler`` for a task whose parameters exist only after `setup` (LightningCLI
        would build the optimiser now, over no parameters): the task builds them in `configure_optimizers`."""
        config = self.config_init[subcommand] if subcommand else self.config_init
        optimizer, scheduler = config.get("optimizer"), config.get("lr_scheduler")
        if optimizer:
            self.model.use_optimizer(optimizer, scheduler)
        elif scheduler:
            raise ValueError("--lr_scheduler needs --optimizer (the task's own optimiser takes no scheduler)")

    def after_fit(self) -> None:
        callback = self.trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") if callback is not None else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
        self._write_results(checkpoint=best)

    def after_test(self) -> None:
        self._write_results(checkpoint=self.config_init[self.subcommand].get("ckpt_path") or "")

    def after_predict(self) -> None:
        frames = [f for f in (self.trainer.predict_loop.predictions or []) if isinstance(f, pl.DataFrame)]
        if frames:
            path = self.run_dir() / "recommendations.parquet"
            pl.concat(frames).write_parquet(path)
            print(f"wrote {path}")

    def run_dir(self) -> Path:
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def run_name(self) -> str:
        """The run's name in its record: the stem of the last ``--config`` file (the experiment), as
        `recsys benchmark` names it; ``<model>-<task>`` of the classes when no file was given."""
        config = self._config()
        if config.get("config"):
            return Path(str(config["config"][-1])).stem
        task = str(config.model.class_path).rsplit(".", 1)[-1].removesuffix("Task").lower()
        model = str(config.model.init_args.model.class_path).rsplit(".", 1)[-1].lower()
        return f"{model}-{task}"

    def _write_results(self, checkpoint: str) -> None:
        folder = self.run_dir()  # trainer.log_dir is a collective broadcast: every rank must ask
        if not self.trainer.is_global_zero:
            return
        task: RecommenderTask = self.model
        data: InteractionsDataModule = self.datamodule
        evaluation = task.test_evaluation_
        metrics = dict(evaluation.summary) if evaluation else {}
        record = RunRecord(
            data.dataset, data.protocol, self.run_name(), self.config_init[self.subcommand].get("seed_everything"),
            task.params(), metrics, {"epochs": self.trainer.current_epoch, **task.thread_timings()},
            evaluation.mode if evaluation else "full", extra={"checkpoint": checkpoint},
        )  # fmt: skip
        (folder / "results.json").write_text(json.dumps([record.to_json()], indent=2))
        (folder / "versions.json").write_text(json.dumps(record.versions, indent=2))
        if evaluation is not None:
            evaluation.per_user.write_parquet(folder / "per_user.parquet")
        print(f"test: {json.dumps({k: round(v, 4) for k, v in metrics.items() if '@' not in k or k.endswith('@10')})}")
        print(f"wrote {folder}/results.json")


class Experiment(NamedTuple):
    """An experiment YAML built but not run: the task (its model inside), the data module and the trainer."""

    task: RecommenderTask
    data: InteractionsDataModule
    trainer: Trainer

    @property
    def patience(self) -> int | None:
        """The early-stopping patience of the trainer's `EarlyStopping` callback (None without one)."""
        return next((c.patience for c in self.trainer.callbacks if isinstance(c, EarlyStopping)), None)

    def fit(self, train: Interactions, valid: Interactions | None = None, **overrides: Any) -> RecommenderTask:
        """Train the task through its own ``fit`` with the YAML's epochs, early-stopping patience and batch size
        (everything else is the task's own); ``overrides`` replace any of them or add ``fit`` arguments
        (``callbacks=[...]``)."""
        settings = {
            "max_epochs": self.trainer.max_epochs, "patience": self.patience or self.trainer.max_epochs,
            "batch_size": self.data.batch_size,
        }  # fmt: skip
        return self.task.fit(train, valid, **{**settings, **overrides})


def load_experiment(config: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Check and build an experiment YAML exactly as ``recsys fit`` does, without running it: for scripts that
    train several seeds through the task's own ``fit``.

    ``overrides`` are CLI arguments, e.g. ``["--model.init_args.seed", "7", "--data.seed", "7"]``.
    """
    # Quiet: the trainer it builds would print Lightning's hardware notices once per experiment; and `args`
    # replaces the calling script's own command line, as intended here.
    with quiet_lightning(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = RecsysCLI(
            RecommenderTask, InteractionsDataModule, subclass_mode_model=True, run=False,
            args=["--config", str(config), *overrides], parser_kwargs={"prog": "recsys"},
        )  # fmt: skip
    return Experiment(cli.model, cli.datamodule, cli.trainer)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a Lightning subcommand: ``argv`` starts with ``fit``, ``validate``, ``test`` or ``predict`` (``None``:
    the process's command line)."""
    RecsysCLI(
        RecommenderTask,
        InteractionsDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        args=None if argv is None else list(argv),
        parser_kwargs={"prog": "recsys"},
    )
