"""`recsys.tuning` at work: the objective (Lightning with pruning, plain recommenders; never reading test),
resumable storage, parallel workers, reports and `recsys tune` (spec checks: test_tuning_spec.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from recsys.cli import main
from recsys.tuning.objective import Objective
from recsys.tuning.report import write_report
from recsys.tuning.spec import parse_spec
from recsys.tuning.study import open_study, run_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

LIGHTNING_BASE = """seed_everything: 7
trainer:
  max_epochs: 4
  accelerator: cpu
  num_sanity_val_steps: 0
  logger: {{class_path: lightning.pytorch.loggers.CSVLogger, init_args: {{save_dir: {runs}, name: tiny}}}}
  callbacks:
    - class_path: lightning.pytorch.callbacks.EarlyStopping
      init_args: {{monitor: val/ndcg@10, mode: max, patience: 10}}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{monitor: val/ndcg@10, mode: max, save_top_k: 1}}
model:
  class_path: recsys.tasks.BPRTask
  init_args:
    model: {{class_path: recsys.models.MF, init_args: {{embedding_dim: 8}}}}
    lr: 0.01
    seed: 7
data: {{dataset: tiny, protocol: user-811, seed: 7, batch_size: 64}}
"""


@pytest.fixture()
def tiny(tiny_dataset) -> Path:
    """A 50-user × 60-item dataset imported as ``tiny`` and a 4-epoch MF-BPR experiment config over it."""
    tmp_path = tiny_dataset
    path = tmp_path / "tiny.yaml"
    path.write_text(LIGHTNING_BASE.format(runs=tmp_path / "runs"))
    return path


def lightning_spec(base: Path, **extra) -> dict:
    return {"lightning": str(base),
            "space": {"model.init_args.lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
                      "model.init_args.model.init_args.embedding_dim": {"type": "categorical", "choices": [4, 8, 16]}},
            **extra}  # fmt: skip


def knn_spec(**extra) -> dict:
    return {"recommender": {"class_path": "recsys.baselines.ItemKNN"}, "data": {"dataset": "tiny"},
            "space": {"k": {"type": "int", "low": 2, "high": 40}}, "sampler": {"name": "random", "seed": 3}, **extra}  # fmt: skip


def write(tmp_path: Path, spec: dict, name: str = "tune-x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


class Poisoned:
    """A test split that fails the moment anything reads it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the objective read the test split ({name})")


def poison_test_split(monkeypatch, module: str) -> None:
    from recsys.data import splits

    real = splits.split

    def split(data, protocol, *, seed=2026):
        train, valid, _ = real(data, protocol, seed=seed)
        return train, valid, Poisoned()

    monkeypatch.setattr(f"{module}.split", split)


# ------------------------------------------------------------------------------------------------ objectives
def test_lightning_trials_fit_record_seeds_and_never_read_test(tiny, monkeypatch) -> None:
    poison_test_split(monkeypatch, "recsys.data.modules")
    spec = parse_spec(lightning_spec(tiny, overrides={"trainer.max_epochs": 2}, sampler={"name": "tpe", "seed": 1}))
    study = run_study(spec, n_trials=2)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for trial in trials:
        assert 0.0 < trial.value <= 1.0
        assert trial.user_attrs["seeds"] == {"seed_everything": 7, "task_seed": 7, "split_seed": 7}
        assert trial.user_attrs["epochs"] == 2 and set(trial.intermediate_values) == {0, 1}


class PruneFromEpoch(optuna.pruners.BasePruner):
    """Deterministic: prune every trial once it has reported epoch ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def prune(self, study, trial) -> bool:
        return trial.last_step is not None and trial.last_step >= self.epoch


def test_pruning_callback_stops_the_fit(tiny) -> None:
    spec = parse_spec(lightning_spec(tiny))  # 4 epochs unless pruned
    study = optuna.create_study(direction="maximize", pruner=PruneFromEpoch(1))
    study.optimize(Objective(spec), n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [0, 1]  # reported epochs 0 and 1, then stopped


def test_recommender_trials_never_read_test(tiny, monkeypatch) -> None:
    poison_test_split(monkeypatch, "recsys.data.splits")
    study = run_study(parse_spec(knn_spec()), n_trials=3)
    values = [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values)


def test_recommender_seed_is_set_and_recorded(tiny) -> None:
    spec = parse_spec({"recommender": {"class_path": "recsys.baselines.ALS", "init_args": {"iterations": 2}},
                       "data": {"dataset": "tiny"}, "seed": 11,
                       "space": {"factors": {"type": "categorical", "choices": [2, 4]}}})  # fmt: skip
    study = run_study(spec, n_trials=1)
    assert study.trials[0].user_attrs["seeds"] == {"seed": 11, "split_seed": 2026}


def test_a_repeated_parameter_set_reuses_the_completed_value(tiny) -> None:
    spec = parse_spec(knn_spec(space={"k": {"type": "categorical", "choices": [5]}}))
    study = run_study(spec, n_trials=3)
    first, *rest = study.trials
    assert "duplicate_of" not in first.user_attrs
    assert [t.user_attrs["duplicate_of"] for t in rest] == [0, 0] and {t.value for t in rest} == {first.value}


# ------------------------------------------------------------------------------------------------ storage
def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("storage", ["sqlite:///{}/studies.db", "journal:{}/studies.log"])
def test_resume_fails_the_interrupted_trial_and_completes_the_budget(tiny, tmp_path, storage) -> None:
    spec = parse_spec(knn_spec())
    url = storage.format(tmp_path)
    run_study(spec, storage=url, name="knn", n_trials=2)
    # A killed worker leaves its trial RUNNING in storage.
    study = open_study(spec, url, "knn")
    trial = study.ask()
    trial.set_user_attr("worker", {"host": os.uname().nodename, "pid": _dead_pid(), "index": 0})
    resumed = run_study(spec, storage=url, name="knn", n_trials=4)
    states = [t.state for t in resumed.trials]
    assert states[trial.number] == TrialState.FAIL
    assert states.count(TrialState.COMPLETE) == 4 and len(states) == 5


def test_a_running_trial_of_a_live_worker_is_left_alone(tiny, tmp_path) -> None:
    spec = parse_spec(knn_spec())
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = open_study(spec, url, "knn")
    trial = study.ask()
    live = subprocess.Popen(["sleep", "30"])
    try:
        trial.set_user_attr("worker", {"host": os.uname().nodename, "pid": live.pid, "index": 1})
        resumed = run_study(spec, storage=url, name="knn", n_trials=1)
        assert resumed.trials[trial.number].state == TrialState.RUNNING
    finally:
        live.kill()
        live.wait()


@pytest.mark.slow
def test_two_worker_processes_share_the_study_without_duplicates(tiny, tmp_path) -> None:
    spec = parse_spec(knn_spec())
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = run_study(spec, storage=url, name="knn", n_trials=8, n_jobs=2)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert 8 <= len(complete) <= 9  # a worker may finish the trial it had started when the budget was reached
    assert len({t.number for t in complete}) == len(complete)
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) == 2
    fitted = [t for t in complete if "duplicate_of" not in t.user_attrs]
    assert len({tuple(t.params.items()) for t in fitted}) == len(fitted)


# ------------------------------------------------------------------------------------------------ reports, CLI
def test_report_retrains_best_and_default_and_compares_them(tiny, tmp_path) -> None:
    spec = parse_spec(knn_spec())
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    run_study(spec, storage=url, name="knn", n_trials=4)
    report = write_report(spec, url, "knn", tmp_path / "report", seeds=(1, 2))
    out = tmp_path / "report"
    for name in ("report.md", "best.yaml", "results.json", "per_user.parquet", "trials.csv", "optimization_history.png",
                 "param_importances.png", "parallel_coordinate.png"):  # fmt: skip
        assert (out / name).exists(), name
    records = json.loads((out / "results.json").read_text())
    # ItemKNN takes no seed: one retrain per config, since a second seed would fit the same model on the same split
    assert [(r["config"], r["seed"]) for r in records] == [("best", 1), ("default", 1)]
    assert {"dataset", "protocol", "model", "seed", "params", "metrics", "timings", "versions"} <= set(records[0])
    assert records[0]["params"]["k"] == report.best.params["k"] and records[1]["params"]["k"] == 100
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["recommender"]["init_args"] == {"k": report.best.params["k"]}
    assert report.comparisons["ndcg@10"].mean_a == pytest.approx(records[0]["metrics"]["ndcg@10"])
    text = (out / "report.md").read_text()
    assert "Paired tests" in text and "trained once" in text and "± n/a" in text and "± 0.0000" not in text
    assert "Default configuration: not tried" in text and "**Warning: the default configuration was never tried" in text


def test_the_default_configuration_is_the_first_trial(tiny, tmp_path) -> None:
    knn = run_study(parse_spec(knn_spec(space={"k": {"type": "int", "low": 2, "high": 200}})), n_trials=2)
    assert knn.trials[0].params == {"k": 100} and knn.trials[0].user_attrs["config"] == "default"  # ItemKNN's own k
    spec = parse_spec(lightning_spec(tiny, overrides={"trainer.max_epochs": 1}))
    first = run_study(spec, n_trials=1).trials[0]
    assert first.params == {"model.init_args.lr": 0.01, "model.init_args.model.init_args.embedding_dim": 8}  # tiny.yaml's
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    run_study(parse_spec(knn_spec(space={"k": {"type": "int", "low": 2, "high": 200}})), storage=url, name="k", n_trials=2)
    resumed = run_study(parse_spec(knn_spec(space={"k": {"type": "int", "low": 2, "high": 200}})), storage=url, name="k",
                        n_trials=3)  # fmt: skip
    assert [t.params["k"] for t in resumed.trials].count(100) == 1  # a resumed study does not enqueue it again


def test_every_shipped_study_tries_its_default() -> None:
    from recsys.tuning.objective import default_params
    from recsys.tuning.spec import load_spec

    specs = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*/tune-*.yaml"))
    assert specs and all(default_params(load_spec(path)) is not None for path in specs)


def test_a_best_worse_than_the_default_is_flagged(tiny) -> None:
    from recsys.tuning.report import warnings_of

    spec = parse_spec(knn_spec())
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={"k": 7}, distributions={"k": optuna.distributions.IntDistribution(2, 40)},
                                              value=0.3, user_attrs={"config": "default"}))  # fmt: skip
    records = [{"config": "best", "validation": {"ndcg@10": 0.21}}, {"config": "default", "validation": {"ndcg@10": 0.22}}]
    (warning,) = warnings_of(spec, study, records)
    assert "WORSE than the default" in warning and "0.2100 vs 0.2200" in warning
    better = [{"config": "best", "validation": {"ndcg@10": 0.23}}, records[1]]
    assert warnings_of(spec, study, better) == []


@pytest.mark.slow
def test_lightning_best_yaml_runs_with_recsys_fit(tiny, tmp_path) -> None:
    spec_path = write(tmp_path, lightning_spec(tiny, overrides={"trainer.max_epochs": 2}))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert main(["tune", "--config", str(spec_path), "--n-trials", "2", "--storage", url]) == 0
    assert main(["tune", "--show", "--config", str(spec_path), "--storage", url, "--seeds", "1",
                 "--output", str(tmp_path / "report")]) == 0  # fmt: skip
    main(["fit", "--config", str(tmp_path / "report" / "best.yaml")])
    assert (tmp_path / "runs" / "tiny" / "version_0" / "results.json").exists()


def test_cli_tune_resumes_by_name_and_reports_errors(tiny, tmp_path, capsys) -> None:
    spec_path = write(tmp_path, knn_spec(), name="tune-knn.yaml")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert main(["tune", "--config", str(spec_path), "--n-trials", "2", "--storage", url]) == 0
    assert main(["tune", "--config", str(spec_path), "--n-trials", "3", "--storage", url]) == 0
    study = optuna.load_study(study_name="tune-knn", storage=url)  # default name: the spec file's
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert main(["tune", "--show", "--no-retrain", "--config", str(spec_path), "--storage", url,
                 "--output", str(tmp_path / "r")]) == 0  # fmt: skip
    assert "best trial #" in capsys.readouterr().out
    assert main(["tune", "--config", str(spec_path), "--storage", "sqlite:////no/such/dir/x.db"]) == 2
    assert "cannot open storage" in capsys.readouterr().err
    assert main(["tune", "--show", "--config", str(spec_path), "--storage", url, "--study-name", "nope"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err
    assert main(["tune", "--show", "--config", str(spec_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsys: error: a report reads a stored study: give the --storage") and "None" not in err


def test_recommender_best_yaml_runs_with_recsys_fit(tiny, tmp_path, monkeypatch) -> None:
    spec_path = write(tmp_path, knn_spec(), name="tune-knn.yaml")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert main(["tune", "--config", str(spec_path), "--n-trials", "2", "--storage", url]) == 0
    assert main(["tune", "--show", "--no-retrain", "--config", str(spec_path), "--storage", url,
                 "--output", str(tmp_path / "report")]) == 0  # fmt: skip
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    assert main(["fit", f"--config={tmp_path / 'report' / 'best.yaml'}"]) == 0
    assert (tmp_path / "runs" / "tiny" / "best" / "version_0" / "results.json").exists()
