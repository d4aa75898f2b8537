"""The `recsys` command: fast start-up, data import/describe, benchmark outputs, external-run evaluation."""

import json
import subprocess
import sys

import polars as pl
import pytest

from recsys.cli import main


def test_cli_start_up_imports_no_heavy_library() -> None:
    code = "import sys, recsys.cli; print(sorted(m for m in ('torch', 'polars', 'lightning', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_commands(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("data", "benchmark", "evaluate"))


@pytest.fixture()
def imported(tmp_path, monkeypatch, small_frame) -> str:
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "cache"))
    path = tmp_path / "mine.csv"
    small_frame.write_csv(path)
    args = ["data", "import", str(path), "--name", "mine", "--user-col", "uid", "--item-col", "iid"]
    assert main([*args, "--rating-col", "stars", "--timestamp-col", "ts"]) == 0
    return "mine"


def test_import_and_describe(imported, capsys, small_frame) -> None:
    assert main(["data", "describe", imported]) == 0
    out = capsys.readouterr().out
    assert f"interactions     {small_frame.height}" in out
    assert "users            60" in out


def test_import_error_names_the_column(tmp_path, monkeypatch, capsys, small_frame) -> None:
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "cache"))
    path = tmp_path / "mine.csv"
    small_frame.write_csv(path)
    assert main(["data", "import", str(path), "--user-col", "customer", "--item-col", "iid"]) == 2
    err = capsys.readouterr().err
    assert "customer" in err and "mine.csv" in err


def test_benchmark_writes_every_artefact(imported, tmp_path, capsys) -> None:
    out = tmp_path / "bench"
    args = ["benchmark", "--dataset", imported, "--models", "pop,itemknn", "--seeds", "1,2", "--k", "5,10"]
    assert main([*args, "--output", str(out), "--no-progress"]) == 0
    assert "| itemknn |" in capsys.readouterr().out
    for name in ("results.json", "per_user.parquet", "leaderboard.csv", "ndcg_at_k.png", "report.md"):
        assert (out / name).exists(), name
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 4
    assert {"dataset", "protocol", "model", "seed", "params", "metrics", "timings", "versions"} <= set(records[0])
    assert {"fit_s", "evaluate_s"} == set(records[0]["timings"])
    per_user = pl.read_parquet(out / "per_user.parquet")
    assert {"model", "seed", "user", "ndcg@10"} <= set(per_user.columns)
    report = (out / "report.md").read_text()
    assert "Significance" in report and "ndcg_at_k.png" in report


def test_unknown_model_is_a_clear_error(imported, capsys) -> None:
    assert main(["benchmark", "--dataset", imported, "--models", "nope", "--no-progress"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_evaluate_external_run(tmp_path, capsys) -> None:
    run = pl.DataFrame({"user": ["a", "a", "b", "b"], "item": ["x", "y", "x", "z"], "score": [2.0, 1.0, 1.0, 3.0]})
    test = pl.DataFrame({"user": ["a", "b"], "item": ["y", "x"]})
    run.write_parquet(tmp_path / "run.parquet")
    test.write_csv(tmp_path / "test.csv")
    args = ["evaluate", "--run", str(tmp_path / "run.parquet"), "--test", str(tmp_path / "test.csv"), "--k", "2"]
    assert main([*args, "--output", str(tmp_path / "ev")]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["hit@2"] == 1.0 and summary["mrr@2"] == pytest.approx(0.5)


def test_benchmark_config_file_with_flag_override(imported, tmp_path) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(f"dataset: {imported}\nmodels: [pop]\nseeds: [3]\nk: [5]\noutput: {tmp_path / 'from-config'}\n")
    assert main(["benchmark", "--config", str(config), "--seeds", "4,5", "--no-progress"]) == 0
    records = json.loads((tmp_path / "from-config" / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in records] == [("pop", 4), ("pop", 5)]


def test_benchmark_config_rejects_unknown_keys(tmp_path, capsys) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text("dataset: ml-100k\nmodel: [pop]\n")
    assert main(["benchmark", "--config", str(config)]) == 2
    assert "unknown key(s) ['model']" in capsys.readouterr().err


def test_cli_default_models_match_the_benchmarks() -> None:
    from recsys.benchmark import DEFAULT_MODELS
    from recsys.cli import BENCHMARK_DEFAULTS
    from recsys.runs import named_run

    assert tuple(BENCHMARK_DEFAULTS["models"]) == DEFAULT_MODELS  # the CLI keeps a copy to start fast
    assert [named_run(name).name for name in DEFAULT_MODELS] == list(DEFAULT_MODELS)  # each a shipped YAML


def test_lightning_models_run_in_the_benchmark(imported, tmp_path) -> None:
    from recsys.benchmark import run_benchmark
    from recsys.models import MF
    from recsys.tasks import BPRTask

    class ShortBPR(BPRTask):
        def fit(self, train, valid=None):
            return super().fit(train, valid, max_epochs=3, batch_size=64)

    result = run_benchmark(imported, models={"short-mf-bpr": lambda seed: ShortBPR(MF(8), seed=seed)}, seeds=(1,),
                           ks=(10,), progress=False)  # fmt: skip
    record = result.records[0]
    assert record["model"] == "short-mf-bpr" and record["params"]["model"] == "MF"
    assert 0.0 <= record["metrics"]["ndcg@10"] <= 1.0


def test_version_and_a_data_list_with_a_header_and_imported_datasets(imported, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("recsys ")
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["dataset", "prepared", "sources"]
    assert any(line.split()[:3] == [imported, "yes", "imported"] for line in lines)


def test_a_recommender_run_goes_to_the_run_root_however_its_config_is_named(tiny_dataset, tmp_path, monkeypatch) -> None:
    path = tiny_dataset / "knn.yaml"
    path.write_text("recommender: {class_path: recsys.baselines.ItemKNN, init_args: {k: 5}}\ndata: {dataset: tiny}\n")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "root"))
    for words in (["--config", str(path)], [f"--config={path}"], ["-c", str(path)]):  # LightningCLI's spellings
        assert main(["fit", *words]) == 0
    runs = tmp_path / "root" / "tiny" / "knn"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1", "version_2"]
    report = (runs / "version_0" / "report.md").read_text()
    assert "recsys.baselines.ItemKNN" in report and "| ndcg@10 |" in report and "`results.json`" in report
    assert list(workdir.iterdir()) == []
    with pytest.raises(SystemExit, match="is a recommender run"):
        main(["fit", f"--config={path}", "--trainer.max_epochs", "3"])


def test_a_single_seed_leaderboard_shows_no_spread() -> None:
    from recsys.benchmark import format_leaderboard, leaderboard

    def record(model: str, seed: int, ndcg: float) -> dict:
        return {"model": model, "seed": seed, "metrics": {"ndcg@10": ndcg}, "timings": {"fit_s": 1.0, "evaluate_s": 0.1}}

    one = format_leaderboard(leaderboard([record("pop", 1, 0.2)]))
    assert "| pop | 0.2000 ± n/a |" in one and "0.0000" not in one
    two = format_leaderboard(leaderboard([record("pop", 1, 0.2), record("pop", 2, 0.3)]))
    assert "| pop | 0.2500 ± 0.0707 |" in two


def test_evaluate_reads_the_columns_it_is_told(tmp_path, capsys) -> None:
    run = pl.DataFrame({"uid": ["a", "a", "b", "b"], "iid": ["x", "y", "x", "z"], "pred": [2.0, 1.0, 1.0, 3.0]})
    run.write_csv(tmp_path / "run.csv")
    pl.DataFrame({"uid": ["a", "b"], "iid": ["y", "x"]}).write_parquet(tmp_path / "test.parquet")
    files = ["--run", str(tmp_path / "run.csv"), "--test", str(tmp_path / "test.parquet"), "--k", "2"]
    assert main(["evaluate", *files, "--user-col", "uid", "--item-col", "iid", "--score-col", "pred"]) == 0
    assert json.loads(capsys.readouterr().out)["mrr@2"] == pytest.approx(0.5)
    assert main(["evaluate", *files]) == 2  # the default names: user, item, score
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"recsys: error: {tmp_path / 'run.csv'}: missing column(s) ['user'")
    assert "--user-col" in err
    assert main(["evaluate", *files, "--user-col", "uid", "--item-col", "iid", "--score-col", "iid"]) == 2
    assert "the score column 'iid' holds String, not numbers" in capsys.readouterr().err
