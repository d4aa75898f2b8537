"""The Optuna objective: every trial is a real fit scored on the validation split — never the test split.

Lightning studies build model, data and trainer from the base experiment config plus the trial's values through
the project's LightningCLI (`RecsysCLI`, ``run=False``), so every key is checked by the typed constructors as in
``recsys fit``; the `PyTorchLightningPruningCallback` reports each epoch's validation metric to the pruner.
Recommender studies construct the class with the trial's values, fit on train and evaluate on validation.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

from recsys.data.interactions import Interactions
from recsys.evaluation.evaluator import Evaluation, evaluate
from recsys.recommender import Recommender
from recsys.tuning.spec import Param, SpecError, StudySpec, get_dotted, set_dotted

log = logging.getLogger(__name__)

CHECKPOINT_CALLBACKS = ("ModelCheckpoint", "BestCheckpointOnTask")


# ---------------------------------------------------------------------------------------------- values
def sample(space: tuple[Param, ...], trial: Any) -> dict[str, Any]:
    """Config values ``{key: value}`` of one trial: the active parameters of ``space``, sampled in order."""
    by_name: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for param in space:
        if param.active(by_name):
            by_name[param.name] = param.suggest(trial)
            values[param.key] = by_name[param.name]
    return values


def values_of(space: tuple[Param, ...], params: dict[str, Any]) -> dict[str, Any]:
    """Config values ``{key: value}`` of a finished trial's Optuna ``params`` (by parameter name)."""
    return {p.key: p.decode(params[p.name]) for p in space if p.name in params}


# ---------------------------------------------------------------------------------------------- Lightning
def lightning_config(spec: StudySpec, values: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """The base experiment config with the spec's fixed overrides, then ``values`` (dotted keys), then ``seed``
    as ``seed_everything`` and the task's sampling seed: a config ``recsys fit --config`` runs as is."""
    from recsys.lightning_cli import trainer_defaults

    assert spec.lightning is not None
    config = copy.deepcopy(spec.base)
    trainer = config.setdefault("trainer", {})
    for key, value in trainer_defaults().items():  # the shared defaults, spelled out so overrides can index them
        trainer.setdefault(key, value)
    for key, value in {**spec.overrides, **values}.items():
        set_dotted(config, key, value, what=str(spec.path))
    seed = seed if seed is not None else spec.seed
    if seed is not None:
        config["seed_everything"] = seed
        set_dotted(config, "model.init_args.seed", seed, what=str(spec.path))
    return config


def trial_trainer(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` whose trainer writes nothing: no logger, no checkpoints, no progress bar (trials keep
    the config's other callbacks, e.g. early stopping)."""
    config = copy.deepcopy(config)
    trainer = config.setdefault("trainer", {})
    trainer.update(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    callbacks = trainer.get("callbacks") or []
    trainer["callbacks"] = [c for c in callbacks if not str(c.get("class_path", "")).endswith(CHECKPOINT_CALLBACKS)]
    return config


def build_cli(config: dict[str, Any], what: str = "config") -> Any:
    """`RecsysCLI` over ``config`` with classes instantiated and nothing run; a rejected key raises `SpecError`."""
    from recsys.data.modules import InteractionsDataModule
    from recsys.lightning_cli import RecsysCLI
    from recsys.tasks.base import RecommenderTask
    from recsys.tasks.training import quiet_lightning

    with quiet_lightning(), warnings.catch_warnings():
        # LightningCLI warns that ``args`` is given while sys.argv holds `recsys tune`'s own flags: intended here.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        try:
            return RecsysCLI(
                RecommenderTask, InteractionsDataModule, subclass_mode_model=True, run=False, args=config,
                save_config_callback=None, parser_kwargs={"exit_on_error": False, "prog": "recsys tune"},
            )  # fmt: skip
        except argparse.ArgumentError as err:
            raise SpecError(f"{what}: {_last_lines(str(err))}") from err


@dataclass
class LightningFit:
    """A fitted Lightning trial or retrain: the task (a `Recommender`), its data module, the best validation value
    and epoch, the epochs run and the fit's wall time."""

    task: Any
    data: Any
    best_value: float
    best_epoch: int
    epochs: int
    fit_s: float


def fit_lightning(
    config: dict[str, Any], monitor: str, direction: str, *, callbacks: Sequence[Any] = (), keep_test: bool = False,
) -> LightningFit:
    """Fit the experiment ``config`` silently through the engine's fit (`recsys.lightning_cli.Experiment.fit`: the
    YAML's epochs, patience and batch size), early-stopping on and keeping the best epoch by ``monitor``.

    Only train and validation reach the fit, so nothing in a trial can read the test split; ``keep_test`` keeps
    the data module's test split for the report's retrains (otherwise it is emptied)."""
    from recsys.lightning_cli import Experiment

    cli = build_cli(trial_trainer(config))
    experiment = Experiment(cli.model, cli.datamodule, cli.trainer)
    data = experiment.data
    data.prepare_data()
    data.setup("fit")
    if not keep_test:
        data.test = data.train.with_frame(data.train.frame.clear())
    started = time.perf_counter()
    task = experiment.fit(data.train, data.valid, callbacks=list(callbacks), monitor=monitor,
                          monitor_mode="max" if direction == "maximize" else "min")  # fmt: skip
    best = task.best_weights_
    if best.best is None:
        raise SpecError(f"validation never logged {monitor!r}; check 'metric' and eval_k")
    return LightningFit(task, data, best.best, int(best.best_epoch or 0), task.epochs_trained_,
                        time.perf_counter() - started)  # fmt: skip


# ---------------------------------------------------------------------------------------------- recommenders
def recommender_class(class_path: str) -> type[Recommender]:
    """The engine's `recsys.specs.recommender_class`, its error as a `SpecError` of the study."""
    from recsys.errors import RunError
    from recsys.specs import recommender_class as resolve

    try:
        return resolve(class_path)
    except RunError as err:
        raise SpecError(str(err)) from err


def recommender_args(spec: StudySpec, values: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """Constructor arguments: the spec's ``init_args``, fixed overrides, trial values, and ``seed`` when the
    class takes one."""
    assert spec.recommender is not None
    args = {**spec.recommender["init_args"], **spec.overrides, **values}
    seed = seed if seed is not None else spec.seed
    if seed is not None and "seed" in inspect.signature(recommender_class(spec.recommender["class_path"])).parameters:
        args["seed"] = seed
    return args


def build_recommender(spec: StudySpec, values: dict[str, Any], seed: int | None = None) -> Recommender:
    """The study's recommender with a trial's values, built by the engine's typed builder (as `recsys fit`)."""
    from recsys.specs import build_recommender as build

    assert spec.recommender is not None
    init = {"class_path": spec.recommender["class_path"], "init_args": recommender_args(spec, values, seed)}
    return build(init, what=str(spec.path))


def splits(spec: StudySpec) -> tuple[Interactions, Interactions, Interactions]:
    """Train, validation and test of a recommender study's data (the protocol's split at the data seed)."""
    from recsys.data.registry import load
    from recsys.data.splits import split

    data = load(spec.data["dataset"])
    return split(data, spec.data["protocol"], seed=int(spec.data["seed"]))


# ---------------------------------------------------------------------------------------------- the default
def default_config(spec: StudySpec) -> dict[str, Any]:
    """The untuned configuration's value of each search-space key: the base config as its typed constructors fill
    it in (Lightning), or the recommender's constructor defaults, ``init_args`` and overrides; unset keys are absent."""
    keys = {p.key for p in spec.space}
    if spec.kind == "lightning":
        config = build_cli(lightning_config(spec, {}), what=f"{spec.path}: overrides").config.as_dict()
        found = {}
        for key in keys:
            try:
                found[key] = get_dotted(config, key)
            except KeyError:
                continue
        return found
    assert spec.recommender is not None
    signature = inspect.signature(recommender_class(spec.recommender["class_path"]).__init__).parameters.values()
    merged = {p.name: p.default for p in signature if p.default is not inspect.Parameter.empty} | recommender_args(spec, {})
    return {key: merged[key] for key in keys if key in merged}


def default_params(spec: StudySpec) -> dict[str, Any] | None:
    """The default configuration as one trial's Optuna parameters (to enqueue as the study's first trial), or None
    when a default lies outside the search space (logged: the study cannot try the default then)."""
    values = default_config(spec)
    sampled: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for param in spec.space:
        if not param.active(sampled):
            continue
        if param.key not in values or not param.contains(values[param.key]):
            log.warning("%s: the default %s = %r is outside the search space, so the study does not try the default "
                        "configuration", spec.path, param.name, values.get(param.key, "(unset)"))  # fmt: skip
            return None
        sampled[param.name] = values[param.key]
        params[param.name] = param.encode(values[param.key])
    return params


def seeded(spec: StudySpec) -> bool:
    """Whether a fit depends on its training seed: a Lightning task always; a recommender when it takes a ``seed``
    (ItemKNN, EASE and popularity do not: one split gives one model, so retraining over seeds repeats it)."""
    if spec.kind == "lightning":
        return True
    assert spec.recommender is not None
    return "seed" in inspect.signature(recommender_class(spec.recommender["class_path"])).parameters


# ---------------------------------------------------------------------------------------------- checks
def validate(spec: StudySpec) -> None:
    """Check every search-space key (one at a time, so the error names it) and the fixed overrides against the
    base config's typed constructors or the recommender's signature, before any trial runs."""
    if spec.kind == "recommender":
        assert spec.recommender is not None
        cls = recommender_class(spec.recommender["class_path"])
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        given = [(p.name, p.key) for p in spec.space] + [("overrides", k) for k in [*spec.overrides, *spec.recommender["init_args"]]]
        for name, key in given:
            if key not in accepted:
                raise SpecError(f"{spec.path}: {name}: {cls.__name__} has no parameter {key!r}; it takes {sorted(accepted)}")
        return
    build_cli(lightning_config(spec, {}), what=f"{spec.path}: overrides")
    for param in spec.space:
        build_cli(lightning_config(spec, {param.key: param.example()}),
                  what=f"{spec.path}: space.{param.name} (key {param.key!r}) is not accepted by {spec.lightning}")  # fmt: skip


def _last_lines(text: str, n: int = 8) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:n])


# ---------------------------------------------------------------------------------------------- objective
class Objective:
    """``objective(trial) -> validation metric``: samples the space, fits, and records seeds, epochs and timings
    as the trial's user attributes. A trial whose parameters equal a completed trial's reuses its value instead
    of fitting again (user attribute ``duplicate_of``)."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self._splits: tuple[Interactions, Interactions] | None = None

    def __call__(self, trial: Any) -> float:
        import optuna

        values = sample(self.spec.space, trial)
        for done in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if done.params == trial.params and done.number != trial.number:
                trial.set_user_attr("duplicate_of", done.number)
                return float(done.value)  # type: ignore[arg-type]
        if self.spec.kind == "lightning":
            return self._lightning(trial, values)
        return self._recommender(trial, values)

    def _lightning(self, trial: Any, values: dict[str, Any]) -> float:
        from optuna_integration import PyTorchLightningPruningCallback

        config = lightning_config(self.spec, values)
        trial.set_user_attr("seeds", _seeds(config))
        monitor = f"val/{self.spec.metric}"
        fit = fit_lightning(config, monitor, self.spec.direction,
                            callbacks=[PyTorchLightningPruningCallback(trial, monitor=monitor)])  # fmt: skip
        trial.set_user_attr("best_epoch", fit.best_epoch)
        trial.set_user_attr("epochs", fit.epochs)
        trial.set_user_attr("fit_s", fit.fit_s)
        return fit.best_value

    def _recommender(self, trial: Any, values: dict[str, Any]) -> float:
        if self._splits is None:
            train, valid, _ = splits(self.spec)  # the test split is never kept
            self._splits = (train, valid)
        train, valid = self._splits
        model = build_recommender(self.spec, values)
        trial.set_user_attr("seeds", {"seed": recommender_args(self.spec, values).get("seed"), "split_seed": self.spec.data["seed"]})
        started = time.perf_counter()
        model.fit(train, valid)
        trial.set_user_attr("fit_s", time.perf_counter() - started)
        k = int(self.spec.metric.rsplit("@", 1)[1]) if "@" in self.spec.metric else 10
        ev = evaluate(model, valid, exclude=[train], k=(k,))
        if self.spec.metric not in ev.summary:
            raise SpecError(f"{self.spec.path}: metric {self.spec.metric!r} unknown; the evaluator reports {sorted(ev.summary)}")
        return float(ev.summary[self.spec.metric])


def _seeds(config: dict[str, Any]) -> dict[str, Any]:
    """The seeds a Lightning config fixes: training (``seed_everything``), negative sampling, and the split."""
    task = (config.get("model") or {}).get("init_args") or {}
    return {"seed_everything": config.get("seed_everything"), "task_seed": task.get("seed"),
            "split_seed": (config.get("data") or {}).get("seed")}  # fmt: skip


def retrain_and_test(spec: StudySpec, values: dict[str, Any], seed: int) -> tuple[Evaluation, dict[str, Any]]:
    """Retrain the config with ``values`` at training seed ``seed`` on train (early-stopped on validation) and
    evaluate it on the test split: for reports only, never inside a trial. Returns the test evaluation and the
    record's params, timings and best validation value."""
    if spec.kind == "lightning":
        config = lightning_config(spec, values, seed=seed)
        fit = fit_lightning(config, f"val/{spec.metric}", spec.direction, keep_test=True)
        ev = fit.task.judge(fit.data.test, [fit.data.train, fit.data.valid], k=spec.eval_k)
        params = fit.task.params()
        timings = {"fit_s": fit.fit_s, "evaluate_s": ev.seconds, "epochs": fit.epochs, **fit.task.thread_timings()}
        return ev, {"params": params, "timings": timings, "validation": {spec.metric: fit.best_value}}
    train, valid, test = splits(spec)
    model = build_recommender(spec, values, seed=seed)
    started = time.perf_counter()
    model.fit(train, valid)
    fit_s = time.perf_counter() - started
    ev = evaluate(model, test, exclude=[train, valid], k=spec.eval_k)
    validation = evaluate(model, valid, exclude=[train], k=spec.eval_k).summary.get(spec.metric)
    params = model.params()
    return ev, {"params": params, "timings": {"fit_s": fit_s, "evaluate_s": ev.seconds},
                "validation": {spec.metric: validation}}
