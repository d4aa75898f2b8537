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
from recsys.specs import build_recommender

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
    if "pruning" in config:
        raise RunError(f"{path} is a data-pruning run (recsys prune --config {path}), not a model")
    run = NamedRun(path.stem, path, config)
    if run.kind == "recommender":
        extra = sorted(set(config) - RECOMMENDER_KEYS)
        if extra:
            raise RunError(f"{path}: unknown key(s) {extra} beside 'recommender'; allowed: {sorted(RECOMMENDER_KEYS)}")
    return run


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
    """The one judge: a recommender's own ``judge`` where it has one (a task's ranking metrics plus its point
    metrics, such as RMSE or AUC), the shared evaluator otherwise."""
    own = getattr(model, "judge", None)
    if callable(own):
        return own(test, exclude, k=k)
    return evaluate(model, test, exclude=exclude, k=k)


def run_recommender(run: NamedRun, root: Path | None = None) -> Path:
    """`recsys fit` of a ``recommender:`` run: split its ``data`` (default ml-100k, user-811, seed 2026), fit on
    train (+ valid), judge on test with train and valid excluded, and write ``<root>/<dataset>/<name>/version_N/``
    (``root``: the run root, `recsys.outputs.runs_root`) with ``config.yaml``, ``results.json`` (a `RunRecord`),
    ``per_user.parquet``, ``versions.json`` and ``report.md``."""
    import json

    from recsys.data.registry import load
    from recsys.data.splits import split
    from recsys.outputs import next_version, runs_root, write_results, write_run_report
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
    folder = next_version((root or runs_root()) / data.name / run.name)
    (folder / "config.yaml").write_text(yaml.safe_dump(run.config, sort_keys=False))
    write_results(folder, record)
    ev.per_user.write_parquet(folder / "per_user.parquet")
    write_report = getattr(model, "write_report", None)
    if callable(write_report):  # a recommender's own report files (DNIS: the dimension allocation and sizes)
        write_report(folder)
    from recsys.saving import save, supports

    if supports(model):  # the fitted model itself, for recsys.load
        save(model, folder / "model")
    write_run_report(folder, title=run.name, config=run.path, metrics=ev.summary, details={
        "recommender": run.config["recommender"]["class_path"], "data": f"{data.name}, {data_spec['protocol']}, seed {seed}",
        "learning curve": "none (no training epochs)",
    })  # fmt: skip
    print(f"test: {json.dumps({k: round(v, 4) for k, v in ev.summary.items() if k.endswith('@10')})}")
    print(f"wrote {folder}/results.json")
    return folder


def _seed_of(spec: dict[str, Any], default: int) -> int:
    """The recommender's own ``seed`` argument where the YAML sets one (a fit keeps it), else the data seed."""
    return int((spec.get("init_args") or {}).get("seed", default))
