"""Named runs and the one engine that fits and judges them, for `recsys fit`, `recsys benchmark`, `recsys tune` and
the scripts alike.

A named run is one YAML, ``experiments/<dataset>/<name>.yaml``, of one of two kinds:

- a LightningCLI config (``model:`` / ``data:`` / ``trainer:``) of a `RecommenderTask`;
- ``recommender: {class_path, init_args}`` (a baseline, a heuristic, your own `Recommender`), with an optional
  ``data: {dataset, protocol, seed}`` for `recsys fit`.

Either way every key is checked against the typed constructors before anything is fitted, and the run's name
is the file's stem, so a record from `recsys fit` joins one from `recsys benchmark`.
"""

from __future__ import annotations

import importlib
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from recsys.data.interactions import Interactions
from recsys.errors import RunError
from recsys.evaluation.evaluator import Evaluation, evaluate
from recsys.recommender import Recommender
from recsys.resources import experiment, experiments

RECOMMENDER_KEYS = {"recommender", "data"}


@dataclass(frozen=True)
class NamedRun:
    """A run YAML: its name (the file's stem), where it is and what it holds; ``fit_kwargs`` replace the YAML's
    epochs, patience or batch size of a Lightning run (e.g. a script's epoch cap), and are recorded with its params."""

    name: str
    path: Path
    config: dict[str, Any]
    fit_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> Literal["lightning", "recommender"]:
        return "recommender" if "recommender" in self.config else "lightning"


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, with one clear error for a missing, unreadable or non-mapping file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RunError(f"{path}: no such file") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: not a readable YAML file: {err}") from err
    if not isinstance(raw, dict) or not raw:
        raise RunError(f"{path}: expected a mapping of config keys, got {type(raw).__name__ if raw is not None else 'an empty file'}")
    return raw


REFERENCE_DATASET = "ml-100k"
"""Whose shipped experiments name the runs of a dataset that has none of its own (an imported one)."""


def named_run(ref: str | Path, dataset: str = REFERENCE_DATASET) -> NamedRun:
    """The run ``ref`` names: a path to a YAML file, or the name of a shipped experiment
    (``mf-bpr`` → ``experiments/<dataset>/mf-bpr.yaml``, else ``experiments/ml-100k/mf-bpr.yaml``)."""
    path = Path(ref)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        shipped = set(experiments())
        folder = dataset if f"{dataset}/{ref}" in shipped else REFERENCE_DATASET
        if f"{folder}/{ref}" not in shipped:
            names = sorted(n.split("/", 1)[1] for n in shipped if n.startswith(f"{folder}/") and "/tune-" not in n)
            raise RunError(f"unknown model {str(ref)!r}: no such run YAML; give a path or one of {names}")
        path = experiment(f"{folder}/{ref}")
    config = read_yaml(path)
    run = NamedRun(path.stem, path, config)
    if run.kind == "recommender":
        extra = sorted(set(config) - RECOMMENDER_KEYS)
        if extra:
            raise RunError(f"{path}: unknown key(s) {extra} beside 'recommender'; allowed: {sorted(RECOMMENDER_KEYS)}")
    return run


def build_recommender(spec: dict[str, Any], *, seed: int | None = None, what: str = "recommender") -> Recommender:
    """Instantiate ``{class_path, init_args}`` through jsonargparse, so every argument is checked against the
    class's typed constructor; ``seed`` replaces the ``seed`` argument of classes that take one."""
    from jsonargparse import ArgumentParser

    if not isinstance(spec, dict) or "class_path" not in spec:
        raise RunError(f"{what}: needs a class_path (and optional init_args)")
    spec = {"class_path": spec["class_path"], "init_args": dict(spec.get("init_args") or {})}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(Recommender, "recommender", required=True)
    try:
        config = parser.parse_object({"recommender": spec})
        if seed is not None and "seed" in inspect.signature(recommender_class(config.recommender.class_path)).parameters:
            config.recommender.init_args.seed = seed
        return parser.instantiate_classes(config).recommender
    except Exception as err:  # jsonargparse reports type and key errors as several exception types
        raise RunError(f"{what}: {str(err).strip()}") from err


def recommender_class(class_path: str) -> type[Recommender]:
    """Import ``package.module.Class`` and check that it is a `Recommender`."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise RunError(f"recommender class {class_path!r} cannot be imported: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise RunError(f"{class_path!r} is not a recsys Recommender")
    return cls


@dataclass
class FittedRun:
    """A run fitted on one split: the recommender (a task for Lightning runs) and its timings."""

    model: Recommender
    timings: dict[str, float]


def fit_run(run: NamedRun, train: Interactions, valid: Interactions | None, seed: int) -> FittedRun:
    """Build the run for ``seed`` (training and sampling seed; the split is the caller's) and fit it on ``train``,
    early-stopping on ``valid`` where the run trains."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if run.kind == "recommender":
        model = build_recommender(run.config["recommender"], seed=seed, what=str(run.path))
        model.fit(train, valid)
    else:
        from recsys.lightning_cli import load_experiment

        built = load_experiment(run.path, ["--seed_everything", str(seed), "--model.init_args.seed", str(seed)])
        model = built.fit(train, valid, **run.fit_kwargs)
        timings.update(epochs=float(model.epochs_trained_), **model.thread_timings())
    timings["fit_s"] = time.perf_counter() - started
    return FittedRun(model, timings)


def judge(model: Recommender, test: Interactions, exclude: list[Interactions], k: tuple[int, ...]) -> Evaluation:
    """The one judge: a task's own (ranking metrics plus its point metrics), the shared evaluator otherwise."""
    from recsys.tasks.base import RecommenderTask

    if isinstance(model, RecommenderTask):
        return model.judge(test, exclude, k=k)
    return evaluate(model, test, exclude=exclude, k=k)


def run_recommender(run: NamedRun, root: Path = Path("runs")) -> Path:
    """`recsys fit` of a ``recommender:`` run: split its ``data`` (default ml-100k, user-811, seed 2026), fit on
    train (+ valid), judge on test with train and valid excluded, and write ``<root>/<dataset>/<name>/version_N/``
    with ``config.yaml``, ``results.json`` (a `RunRecord`), ``per_user.parquet`` and ``versions.json``."""
    import json

    from recsys.data.registry import load
    from recsys.data.splits import split
    from recsys.records import RunRecord

    data_spec = {"dataset": "ml-100k", "protocol": "user-811", "seed": 2026, **(run.config.get("data") or {})}
    extra = sorted(set(data_spec) - {"dataset", "protocol", "seed"})
    if extra:
        raise RunError(f"{run.path}: data: unknown key(s) {extra}; allowed: dataset, protocol, seed")
    seed = int(data_spec["seed"])
    data = load(data_spec["dataset"])
    train, valid, test = split(data, data_spec["protocol"], seed=seed)
    fitted = fit_run(run, train, valid, seed=_seed_of(run.config["recommender"], seed))
    model = fitted.model
    ev = judge(model, test, [train, valid], (10, 20))
    record = RunRecord(data.name, data_spec["protocol"], run.name, seed, model.params(), ev.summary,
                       {**fitted.timings, "evaluate_s": ev.seconds}, ev.mode)  # fmt: skip
    parent = root / data.name / run.name
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.removeprefix("version_")) for p in parent.glob("version_*") if p.name[8:].isdigit()]
    folder = parent / f"version_{max(taken, default=-1) + 1}"  # the next free version, as Lightning's loggers
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(run.config, sort_keys=False))
    (folder / "results.json").write_text(json.dumps([record.to_json()], indent=2))
    (folder / "versions.json").write_text(json.dumps(record.versions, indent=2))
    ev.per_user.write_parquet(folder / "per_user.parquet")
    print(f"test: {json.dumps({k: round(v, 4) for k, v in ev.summary.items() if k.endswith('@10')})}")
    print(f"wrote {folder}/results.json")
    return folder


def _seed_of(spec: dict[str, Any], default: int) -> int:
    """The recommender's own ``seed`` argument where the YAML sets one (a fit keeps it), else the data seed."""
    return int((spec.get("init_args") or {}).get("seed", default))
