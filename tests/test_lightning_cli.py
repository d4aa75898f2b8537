"""`recsys fit | test | predict` through LightningCLI: run-folder artefacts, key checking, exact resume."""

import json
import logging
from pathlib import Path

import polars as pl
import pytest

from recsys.cli import main


@pytest.fixture()
def config(tiny_dataset) -> Path:
    """A small imported dataset and an MF-BPR config over it (no early stopping: fixed epochs)."""
    tmp_path = tiny_dataset
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"""seed_everything: 7
trainer:
  max_epochs: 4
  accelerator: cpu
  num_sanity_val_steps: 0
  enable_progress_bar: false
  enable_model_summary: false
  logger: {{class_path: lightning.pytorch.loggers.CSVLogger, init_args: {{save_dir: {tmp_path / 'runs'}, name: tiny}}}}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{monitor: val/ndcg@10, mode: max, save_top_k: 1}}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{save_top_k: 1, filename: last}}
model:
  class_path: recsys.tasks.BPRTask
  init_args:
    model: {{class_path: recsys.models.MF, init_args: {{embedding_dim: 8}}}}
    lr: 0.01
    seed: 7
data: {{dataset: tiny, protocol: user-811, seed: 7, batch_size: 64}}
"""
    )
    return path


@pytest.fixture()
def bare_config(config) -> Path:
    """The same experiment without a logger of its own: it logs as experiments/trainer.yaml says."""
    path = config.with_name("bare.yaml")
    path.write_text("".join(line for line in config.read_text().splitlines(keepends=True) if "logger:" not in line))
    return path


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty working directory for a run that must write nothing into it."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())[0]


def test_fit_writes_the_run_folder(config, tmp_path) -> None:
    main(["fit", "--config", str(config)])
    run = tmp_path / "runs" / "tiny" / "version_0"
    for name in ("config.yaml", "metrics.csv", "results.json", "per_user.parquet", "versions.json", "checkpoints/last.ckpt",
                 "learning_curve.png", "report.md"):  # fmt: skip
        assert (run / name).exists(), name
    report = (run / "report.md").read_text()
    assert "- epochs: 4" in report and "- best epoch: " in report and "| ndcg@10 |" in report
    assert "learning_curve.png" in report and "`checkpoints/`" in report
    record = _results(run)
    assert {"dataset", "protocol", "model", "seed", "params", "metrics", "versions"} <= set(record)
    assert record["dataset"] == "tiny" and record["seed"] == 7
    assert record["model"] == config.stem  # the experiment file's name, as `recsys benchmark` names its runs
    assert 0.0 <= record["metrics"]["ndcg@10"] <= 1.0
    assert pl.read_parquet(run / "per_user.parquet")["ndcg@10"].mean() == pytest.approx(record["metrics"]["ndcg@10"])


def test_a_typo_in_a_config_key_names_the_key(config, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--model.init_args.lrr", "0.1"])
    assert "lrr" in capsys.readouterr().err


def test_same_config_and_seed_give_the_same_numbers(config, tmp_path) -> None:
    main(["fit", "--config", str(config)])
    main(["fit", "--config", str(config)])
    runs = tmp_path / "runs" / "tiny"
    assert _results(runs / "version_0")["metrics"] == _results(runs / "version_1")["metrics"]


@pytest.mark.parametrize("tables", [[], ["--model.init_args.fused_rows", "0"]], ids=["dense", "fused"])
def test_resuming_a_stopped_run_reaches_the_uninterrupted_result(config, tmp_path, tables) -> None:
    """Exact resume, with dense tables (Adam's moments in the optimiser state) and with fused ones (row-wise
    Adagrad's accumulators in the module's state dict: restarting them would change every later step)."""
    main(["fit", "--config", str(config), *tables])  # version_0: 4 epochs straight
    main(["fit", "--config", str(config), "--trainer.max_epochs", "2", *tables])  # version_1: stopped after 2
    last = tmp_path / "runs" / "tiny" / "version_1" / "checkpoints" / "last.ckpt"
    main(["fit", "--config", str(config), "--ckpt_path", str(last), *tables])  # resumes epochs 3-4 in version_1
    runs = tmp_path / "runs" / "tiny"
    assert not (runs / "version_2").exists()
    assert len(list((runs / "version_1").glob("metrics.until-*.csv"))) == 1  # the interrupted part's log is kept
    assert "- epochs: 4" in (runs / "version_1" / "report.md").read_text()  # the learning curve resumes with it
    straight, resumed = _results(runs / "version_0")["metrics"], _results(runs / "version_1")["metrics"]
    assert resumed == pytest.approx(straight, rel=1e-6, abs=1e-9)
    import torch

    final = [torch.load(runs / v / "checkpoints" / "last.ckpt", weights_only=False) for v in ("version_0", "version_1")]
    assert final[0]["global_step"] == final[1]["global_step"] == 32
    assert ("model.embeddings.collection.user.embedding_bags.user.momentum1" in final[0]["state_dict"]) == bool(tables)
    for name, tensor in final[0]["state_dict"].items():
        torch.testing.assert_close(final[1]["state_dict"][name], tensor, rtol=0, atol=0)


def test_test_and_predict_write_beside_the_checkpoint_run(config, tmp_path, workdir) -> None:
    main(["fit", "--config", str(config)])
    run = tmp_path / "runs" / "tiny" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    main(["test", "--config", str(config), "--ckpt_path", str(last)])
    assert _results(run / "test-last")["checkpoint"] == str(last)
    assert (run / "test-last" / "config.yaml").exists() and (run / "test-last" / "report.md").exists()
    main(["predict", "--config", str(config), "--ckpt_path", str(last)])
    recs = pl.read_parquet(run / "predict-last" / "recommendations.parquet")
    assert recs.columns == ["user", "item", "score", "rank"] and recs["user"].n_unique() == 50
    assert recs.group_by("user").len()["len"].max() == 20  # the task's largest eval_k
    (tmp_path / "users.txt").write_text("3\n7\n")
    main(["predict", "--config", str(config), "--ckpt_path", str(last), "--k", "4", "--users", str(tmp_path / "users.txt")])
    recs = pl.read_parquet(run / "predict-last" / "recommendations.parquet")
    assert sorted(recs["user"].unique().to_list()) == [3, 7] and recs.group_by("user").len()["len"].to_list() == [4, 4]
    main(["predict", "--config", str(config), "--ckpt_path", str(last), "--k", "2", "--users", "5,9"])
    assert pl.read_parquet(run / "predict-last" / "recommendations.parquet").shape[0] == 4
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir()) == ["version_0"]  # no new version_N
    assert list(workdir.iterdir()) == []


def test_an_unknown_predict_user_is_a_one_line_error(config, tmp_path, capsys) -> None:
    main(["fit", "--config", str(config), "--trainer.max_epochs", "1"])
    last = tmp_path / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    assert main(["predict", "--config", str(config), "--ckpt_path", str(last), "--users", "3,nobody"]) == 2
    assert "recsys: error: 1 user(s) not in the vocabulary, e.g. ['nobody']" in capsys.readouterr().err


def test_the_run_root_moves_every_run_folder(bare_config, tmp_path, workdir, monkeypatch) -> None:
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "env-root"))
    main(["fit", "--config", str(bare_config), "--trainer.max_epochs", "1"])
    assert _results(tmp_path / "env-root" / "tiny" / "bare" / "version_0")["dataset"] == "tiny"
    main(["fit", "--config", str(bare_config), "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "flag")])
    run = tmp_path / "flag" / "tiny" / "bare" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").exists() and _results(run)["model"] == "bare"
    assert list(workdir.iterdir()) == []


def test_fast_dev_run_writes_nothing(bare_config, tmp_path, workdir, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "root"))
    main(["fit", "--config", str(bare_config), "--trainer.fast_dev_run", "true"])
    assert "fast_dev_run: nothing written" in capsys.readouterr().out
    assert list(workdir.iterdir()) == [] and not (tmp_path / "root").exists()


def test_tensorboard_logger_out_of_the_box(bare_config, tmp_path, workdir, monkeypatch) -> None:
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "root"))
    main(["fit", "--config", str(bare_config), "--trainer.max_epochs", "2", "--trainer.logger",
          "lightning.pytorch.loggers.TensorBoardLogger"])  # fmt: skip
    run = tmp_path / "root" / "tiny" / "bare" / "version_0"
    assert list(run.glob("events.out.tfevents.*")) and (run / "learning_curve.png").exists() and _results(run)
    assert list(workdir.iterdir()) == []


def test_mlflow_logger_with_a_local_store(bare_config, tmp_path, workdir, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "root"))
    main(["fit", "--config", str(bare_config), "--trainer.max_epochs", "2", "--trainer.logger",
          "lightning.pytorch.loggers.MLFlowLogger"])  # fmt: skip
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'root' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny/bare")
    (found,) = client.search_runs([experiment.experiment_id])
    assert {"train/loss", "val/ndcg10", "test/ndcg10"} <= set(found.data.metrics)  # MLflow drops the "@"
    run = tmp_path / "root" / "tiny" / "bare" / "version_0"  # recsys' CSV run folder beside MLflow's store
    assert _results(run)["metrics"]["ndcg@10"] == pytest.approx(found.data.metrics["test/ndcg10"])
    assert (run / "learning_curve.png").exists() and (run / "checkpoints" / "last.ckpt").exists()
    assert list(workdir.iterdir()) == []


def test_load_experiment_builds_what_fit_would_without_running(config, tmp_path) -> None:
    from recsys.lightning_cli import load_experiment
    from recsys.models import MF
    from recsys.tasks import BPRTask

    task, data, trainer = load_experiment(config, ["--model.init_args.seed", "11", "--model.init_args.model.init_args.embedding_dim", "4"])
    assert isinstance(task, BPRTask) and isinstance(task.model, MF) and task.model.embedding_dim == 4
    assert task.hparams.seed == 11 and task.hparams.lr == 0.01 and (data.batch_size, data.protocol) == (64, "user-811")
    assert trainer.max_epochs == 4 and load_experiment(config).patience is None  # the config has no EarlyStopping
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
    with pytest.raises(SystemExit):
        load_experiment(config, ["--model.init_args.learning_rate", "0.1"])



def test_experiment_fit_trains_with_the_yaml_settings(config) -> None:
    from recsys.lightning_cli import load_experiment

    experiment = load_experiment(config)
    experiment.data.setup()
    task = experiment.fit(experiment.data.train, experiment.data.valid)
    assert task is experiment.task and task.epochs_trained_ == 4  # max_epochs 4, no EarlyStopping in the YAML
    again = load_experiment(config).fit(experiment.data.train, experiment.data.valid, max_epochs=2)
    assert again.epochs_trained_ == 2  # an override wins over the YAML


EXPERIMENT_CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "experiments").glob("*/*.yaml")
                            if "\nmodel:" in "\n" + p.read_text() and not p.name.startswith("tune-"))  # fmt: skip


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_experiment_config_builds(path: Path) -> None:
    from recsys.lightning_cli import load_experiment

    import yaml

    config = yaml.safe_load(path.read_text())
    task, data, _ = load_experiment(path)
    assert type(task).__name__ == config["model"]["class_path"].rsplit(".", 1)[1]
    assert type(task.model).__name__ == config["model"]["init_args"]["model"]["class_path"].rsplit(".", 1)[1]
    assert (data.dataset, data.protocol) == (config["data"]["dataset"], config["data"]["protocol"])


RECOMMENDER_CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "experiments").glob("*/*.yaml")
                             if "\nrecommender:" in "\n" + p.read_text() and not p.name.startswith("tune-"))  # fmt: skip


@pytest.mark.parametrize("path", RECOMMENDER_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_recommender_run_builds(path: Path) -> None:
    from recsys.runs import named_run
    from recsys.specs import build_recommender

    run = named_run(path)
    model = build_recommender(run.config["recommender"], seed=3)
    assert type(model).__name__ == run.config["recommender"]["class_path"].rsplit(".", 1)[1]
    assert run.name == path.stem and named_run(path.stem).path.name == path.name



@pytest.mark.parametrize("per_step", [1, 4])  # automatic optimisation, and batches stepped by hand
def test_lightning_optimizer_and_scheduler_options_train_the_task(config, tmp_path, per_step) -> None:
    main(["fit", "--config", str(config), "--trainer.max_epochs", "2", "--optimizer", "AdamW", "--optimizer.lr", "0.02",
          "--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "1", "--lr_scheduler.gamma", "0.5",
          "--model.init_args.batches_per_step", str(per_step)])  # fmt: skip
    run = tmp_path / "runs" / "tiny" / "version_0"
    checkpoint = __import__("torch").load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.02 * 0.5**2)
    assert "weight_decay" in checkpoint["optimizer_states"][0]["param_groups"][0]  # AdamW's, from the CLI
    saved = (run / "config.yaml").read_text()
    assert "torch.optim.AdamW" in saved and "StepLR" in saved


def test_the_cli_silences_lightning_start_up_notices(config, caplog) -> None:
    caplog.set_level(logging.INFO)
    main(["fit", "--config", str(config), "--trainer.max_epochs", "1"])
    notices = [r.getMessage() for r in caplog.records if r.name.startswith("lightning")]
    assert not [m for m in notices if "GPU available" in m or "Seed set" in m or "Tip" in m], notices
