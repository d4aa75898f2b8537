"""`recsys fit | validate | test | predict`: LightningCLI over `RecommenderTask` subclasses and the data module.

Every key of a YAML config is checked against the typed constructors (a typo fails naming the key). After
``fit`` the best checkpoint (by the monitored validation metric) is tested and the run folder gets
``results.json`` (the benchmark record schema), ``per_user.parquet``, ``versions.json``, ``learning_curve.png`` and
``report.md`` beside Lightning's ``config.yaml``, ``metrics.csv`` and ``checkpoints/``. ``predict`` writes
``recommendations.parquet``. Where run folders go: `recsys.outputs`; Lightning's start-up notices are silenced as in
the Python API (`recsys.tasks.training.quiet_lightning`).
"""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import polars as pl
import yaml
from jsonargparse import Namespace
from jsonargparse.typing import PositiveInt
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

import recsys.distributed  # noqa: F401  (registers Trainer(strategy="torchrec") for --trainer.strategy torchrec)
from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.outputs import (DEFAULT_RUNS, LEARNING_CURVE, checkpoint_run, next_version, plot_learning_curve, runs_root,
                            write_results, write_run_report)  # fmt: skip
from recsys.records import RunRecord
from recsys.resources import experiments_dir
from recsys.tasks.base import RecommenderTask
from recsys.tasks.training import BestCheckpointOnTask, EarlyStoppingOnTask, LearningCurve, quiet_lightning


def trainer_defaults() -> dict[str, Any]:
    """The shared ``trainer:`` block (``experiments/trainer.yaml``) that every experiment starts from."""
    return yaml.safe_load((experiments_dir() / "trainer.yaml").read_text(encoding="utf-8"))["trainer"]


FILE_LOGGERS = (CSVLogger, TensorBoardLogger)
"""Loggers whose ``log_dir`` (``<save_dir>/<name>/version_N``) is the run folder."""
DEFAULT_SAVE_DIRS = (DEFAULT_RUNS, "./mlruns")
"""A logger ``save_dir`` nobody chose (trainer.yaml's, MLFlowLogger's own): the run root replaces it."""


def run_loggers(logger: Any, root: Path, name: str) -> Any:
    """The trainer's ``logger`` setting with the run filled in: a ``save_dir`` nobody chose → the run root, the
    default name → ``name`` (``<dataset>/<experiment>``); an MLflow logger without a tracking URI gets a local SQLite
    store and artifact folder in the run root (MLflow 3 refuses a plain folder as its store). When the first logger
    keeps no run folder of its own (MLflow), recsys' CSV logger goes first, so every run's folder, ``metrics.csv``
    and checkpoints are in the same place."""
    entries = [e for e in (logger if isinstance(logger, list) else [logger]) if isinstance(e, Namespace)]
    for entry in entries:
        args = entry.get("init_args")
        if args is None:
            continue
        if "save_dir" in args and str(args["save_dir"]) in DEFAULT_SAVE_DIRS:
            args["save_dir"] = str(root)
        for key in ("name", "experiment_name"):  # the file loggers' and MLflow's
            if key in args and args[key] in (None, "lightning_logs"):
                args[key] = name
        if "tracking_uri" in args and not args["tracking_uri"]:
            store = Path(args["save_dir"]).resolve()
            store.mkdir(parents=True, exist_ok=True)
            args["tracking_uri"] = f"sqlite:///{store / 'mlflow.db'}"
            args["artifact_location"] = args.get("artifact_location") or str(store / "mlartifacts")
    if not entries or issubclass(_class(entries[0].class_path), FILE_LOGGERS):
        return logger
    csv = Namespace(class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace(save_dir=str(root), name=name))
    return [csv, *entries]


def _class(class_path: str) -> type:
    """The class a (jsonargparse-checked, so importable) ``class_path`` names."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class RecsysCLI(LightningCLI):
    """LightningCLI with recsys' shared trainer defaults and run folders: ``fit`` writes under the run root
    (`recsys.outputs`), resuming continues in the checkpoint's run folder, and ``test`` / ``predict`` of a
    checkpoint write into ``test-<checkpoint>/`` / ``predict-<checkpoint>/`` of its run folder; ``fast_dev_run``
    writes nothing. ``predict`` takes ``--k`` and ``--users``."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.set_defaults({f"trainer.{key}": value for key, value in trainer_defaults().items()})
        parser.set_defaults({"trainer.default_root_dir": str(runs_root())})

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> Any:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument("--k", type=Optional[PositiveInt], default=None,
                                help="items per user (default: the task's largest eval_k)")  # fmt: skip
            parser.add_argument("--users", type=Optional[str], default=None,
                                help="raw user ids, comma-separated, or a file of one id per line (default: all)")  # fmt: skip
        return parser

    def _config(self) -> Any:
        """The parsed config of the subcommand (the whole config when built with ``run=False``)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    def checkpoint(self) -> Path | None:
        """The ``--ckpt_path`` file of the subcommand, if one was given."""
        ckpt = self._config().get("ckpt_path") if self.subcommand else None
        return Path(ckpt) if isinstance(ckpt, str) and ckpt not in ("best", "last", "hpc", "registry") else None

    def before_instantiate_classes(self) -> None:
        config = self._config()
        checkpoint = self.checkpoint()
        if self.subcommand in ("test", "predict") and checkpoint is not None:
            # Beside the checkpoint's run, in a folder of its own (config.yaml, results); no logger: no new version_N.
            config.trainer.logger = False
            config.trainer.default_root_dir = str(checkpoint_run(checkpoint) / f"{self.subcommand}-{checkpoint.stem}")
            return
        logger = config.trainer.logger = run_loggers(config.trainer.get("logger"), Path(config.trainer.default_root_dir),
                                                     f"{config.data.dataset}/{self.run_name()}")  # fmt: skip
        if self.subcommand != "fit" or checkpoint is None or checkpoint.parent.name != "checkpoints":
            return
        # <save_dir>/<name>/<version>/checkpoints/x.ckpt: log into the same version, so the checkpoint
        # callback finds its own folder and keeps its best-so-far state across the interruption.
        if isinstance(logger, Namespace):
            run = checkpoint_run(checkpoint)
            logger.init_args["version"] = run.name
            # CSVLogger deletes an existing metrics.csv; keep the interrupted part's log beside the new one.
            if (run / "metrics.csv").exists():
                parts = sum(1 for _ in run.glob("metrics.until-*.csv"))  # a later resume keeps the earlier parts
                suffix = f"-{parts + 1}" if parts else ""
                (run / "metrics.csv").rename(run / f"metrics.until-{checkpoint.stem}{suffix}.csv")

    def before_fit(self) -> None:
        """Check every monitored name of the trainer's callbacks against what the task logs, before training."""
        for callback in self.trainer.callbacks:
            monitor = getattr(callback, "monitor", None)
            if monitor and not isinstance(callback, (EarlyStoppingOnTask, BestCheckpointOnTask)):
                self.model.check_monitor(monitor)

    def _run_subcommand(self, subcommand: str) -> None:
        with warnings.catch_warnings():
            # Testing or predicting from a checkpoint saves none, so its checkpoint callbacks' folder does not matter.
            warnings.filterwarnings("ignore", message="The dirpath has changed from")
            super()._run_subcommand(subcommand)

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
        curve = next(c for c in self.trainer.callbacks if isinstance(c, LearningCurve))
        rows = list(curve.rows)  # testing the best checkpoint restores the curve as it was at that epoch
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
        self._write_results(checkpoint=best, curve=rows)

    def after_test(self) -> None:
        self._write_results(checkpoint=str(self.checkpoint() or ""), curve=None)

    def before_predict(self) -> None:
        config = self._config()
        self.model.predict_k = config.get("k")
        self.model.predict_users = _user_ids(config["users"]) if config.get("users") else None

    def after_predict(self) -> None:
        frames = [f for f in (self.trainer.predict_loop.predictions or []) if isinstance(f, pl.DataFrame)]
        folder = self.run_dir()
        if frames and folder is not None:
            path = folder / "recommendations.parquet"
            pl.concat(frames).write_parquet(path)
            print(f"wrote {path}")

    def run_dir(self) -> Path | None:
        """The folder this run writes into, created: none under ``fast_dev_run`` (Lightning writes nothing then);
        the file logger's ``log_dir``; without a logger, ``default_root_dir`` (test / predict of a checkpoint: a
        folder beside it) or, for a fit, the next ``<root>/<dataset>/<experiment>/version_N``."""
        log_dir = self.trainer.log_dir  # a collective broadcast: every rank must ask
        if self.trainer.fast_dev_run:
            return None
        if isinstance(self.trainer.logger, FILE_LOGGERS):
            folder = Path(log_dir)
        elif self.subcommand == "fit":
            folder = next_version(Path(self.trainer.default_root_dir) / self.datamodule.dataset / self.run_name())
        else:
            folder = Path(self.trainer.default_root_dir)
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

    def _write_results(self, checkpoint: str, curve: list[dict[str, Any]] | None) -> None:
        """The run folder's results, per-user values and report (and, after a fit, its ``curve`` as a plot)."""
        folder = self.run_dir()
        if not self.trainer.is_global_zero:
            return
        task: RecommenderTask = self.model
        data: InteractionsDataModule = self.datamodule
        evaluation = task.test_evaluation_
        metrics = dict(evaluation.summary) if evaluation else {}
        print(f"test: {json.dumps({k: round(v, 4) for k, v in metrics.items() if '@' not in k or k.endswith('@10')})}")
        if folder is None:
            print("fast_dev_run: nothing written")
            return
        record = RunRecord(
            data.dataset, data.protocol, self.run_name(), self.config_init[self.subcommand].get("seed_everything"),
            task.params(), metrics, {"epochs": self.trainer.current_epoch, **task.thread_timings()},
            evaluation.mode if evaluation else "full", extra={"checkpoint": checkpoint, **data.provenance()},
        )  # fmt: skip
        write_results(folder, record)
        if evaluation is not None:
            evaluation.per_user.write_parquet(folder / "per_user.parquet")
        details = {"task": type(task).__name__, "model": type(getattr(task, "model", task)).__name__,
                   "data": f"{data.dataset}, {data.protocol}, seed {data.seed}", "checkpoint": f"`{checkpoint}`"}  # fmt: skip
        if data.selection_ is not None:
            details["selection"] = f"`{data.selection_.path}` ({len(data.selection_)} samples, sha256 {data.selection_.sha256[:12]})"
        if curve is not None:
            details.update(self._learning_curve(folder, curve))
        config = self._config().get("config")
        write_run_report(folder, title=self.run_name(), config=Path(str(config[-1])) if config else None,
                         details=details, metrics=metrics)  # fmt: skip
        print(f"wrote {folder}/results.json, report.md")

    def _learning_curve(self, folder: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Plot the fit's learning curve (`LearningCurve` rows) into ``folder``; the report's lines on epochs and
        the best epoch."""
        monitor = self.model.monitor
        scored = [r for r in rows if r.get(monitor) is not None]
        sign = 1 if self.model.monitor_mode == "max" else -1
        best = max(scored, key=lambda r: sign * r[monitor]) if scored else None
        plotted = plot_learning_curve(rows, monitor, folder / LEARNING_CURVE, best["epoch"] if best else None)
        return {
            "epochs": len(rows),
            "best epoch": f"{best['epoch']} ({monitor} {best[monitor]:.4f})" if best else "none (no validation)",
            "learning curve": f"`{LEARNING_CURVE}`" if plotted else "none (no epoch logged a loss or validation)",
        }


def _user_ids(text: str) -> list[str]:
    """``--users``: a file of one raw id per line, else comma-separated ids (ids are cast to the vocabulary's type
    when they are looked up)."""
    path = Path(text)
    values = path.read_text(encoding="utf-8").splitlines() if path.is_file() else text.split(",")
    return [value.strip() for value in values if value.strip()]


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
    with quiet_lightning():
        RecsysCLI(
            RecommenderTask,
            InteractionsDataModule,
            subclass_mode_model=True,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [LearningCurve()]},  # every run, so a checkpoint's curve state loads
            args=None if argv is None else list(argv),
            parser_kwargs={"prog": "recsys"},
        )
