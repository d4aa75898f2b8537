"""Careless or hostile input: each case gets one clear error naming the problem, and nothing outside the data
folder changes (the hostile-input suite of the hardening issue; more cases join it as they are handled)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys.cli import main
from recsys.data.registry import import_file, load
from recsys.data.validation import DataError
from recsys.ranking import NonFiniteScoreError


def snapshot(root: Path) -> dict[str, float]:
    """Every file under ``root`` with its modification time (what a write outside the data folder would change)."""
    return {str(p): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def csv(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "cache"))
    path = tmp_path / "good.csv"
    pl.DataFrame({"u": [1, 1, 2, 3], "i": [10, 11, 10, 12]}).write_csv(path)
    return path


@pytest.mark.parametrize("name", ["../../etc", "/some/dir", "..", "a/b", ".hidden", "x\\\\y", "a b"])
def test_a_dataset_name_with_a_path_in_it_is_refused_and_nothing_is_written(csv, tmp_path, name, capsys) -> None:
    before = snapshot(tmp_path)
    code = main(["data", "import", str(csv), "--name", name, "--user-col", "u", "--item-col", "i"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("recsys: error: dataset name") and "plain name" in err
    assert snapshot(tmp_path) == before


def test_a_file_named_dotdot_csv_or_an_empty_name_does_not_import_into_the_cache_root(csv, tmp_path) -> None:
    odd = tmp_path / "..csv"
    odd.write_text(csv.read_text())
    for name in (odd.stem, ""):
        with pytest.raises(DataError, match="plain name"):
            import_file(odd, name=name, user_col="u", item_col="i")
    assert not (tmp_path / "cache").exists()


def test_an_existing_dataset_is_replaced_only_with_force_and_the_message_says_what_exists(csv, tmp_path, capsys) -> None:
    args = ["data", "import", str(csv), "--name", "shop", "--user-col", "u", "--item-col", "i"]
    assert main(args) == 0
    folder = tmp_path / "cache" / "shop"
    (folder / "items.parquet").write_bytes(b"stale")  # a feature file of the old dataset
    before = snapshot(folder)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "4 interactions" in err and "--force" in err and str(csv) in err
    assert snapshot(folder) == before  # nothing lost or overwritten
    other = tmp_path / "other.csv"
    pl.DataFrame({"u": [7], "i": [70]}).write_csv(other)
    assert main(["data", "import", str(other), "--name", "shop", "--user-col", "u", "--item-col", "i", "--force"]) == 0
    assert load("shop").frame.height == 1 and not (folder / "items.parquet").exists()


def test_nan_scores_raise_naming_the_user_instead_of_ranking_first() -> None:
    from recsys.evaluation import evaluate
    from recsys.recommender import Recommender
    from recsys.testing import two_communities

    class Broken(Recommender):
        def fit(self, train, valid=None):
            self._remember(train)
            return self

        def score(self, users, history=None):
            scores = torch.rand(len(users), self.n_items, generator=torch.Generator().manual_seed(0))
            scores[users == bad, 5] = torch.nan
            return scores

    train, test = two_communities()
    bad = int(train.users.encode(pl.Series(["u3"]))[0])
    model = Broken().fit(train)
    with pytest.raises(NonFiniteScoreError, match=r"nan for user 'u3'"):
        evaluate(model, test, exclude=[train])
    with pytest.raises(NonFiniteScoreError, match=r"user 'u3'"):
        model.recommend(["u3"], k=3)
    assert np.isfinite(model.recommend(["u2"], k=3)["score"].to_numpy()).all()


def test_an_import_may_not_take_a_built_in_cards_name_silently(csv) -> None:
    with pytest.raises(DataError, match="built-in dataset card"):
        import_file(csv, name="ml-100k", user_col="u", item_col="i")


def _run_case():
    test = pl.DataFrame({"user": ["a", "b"], "item": ["x", "y"]})
    run = pl.DataFrame({"user": ["a", "a", "a", "b", "b"], "item": ["z", "x", "x", "w", "y"],
                        "score": [0.5, 0.1, 0.9, 0.8, 0.7]})  # fmt: skip
    return run, test


def test_a_run_that_lists_a_pair_twice_keeps_its_highest_score_whatever_the_order() -> None:
    from recsys.evaluation import evaluate

    run, test = _run_case()  # a's hit x is listed low first, then high
    forward = evaluate(run, test, k=(1,))
    backward = evaluate(run.reverse(), test, k=(1,))
    assert forward.summary == backward.summary and forward["hit@1"] == 0.5  # a: x (0.9) first; b: w first
    assert forward.duplicate_rows == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_a_run_with_non_finite_scores_is_refused_naming_the_row(bad) -> None:
    from recsys.evaluation import evaluate

    run, test = _run_case()
    run = run.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(bad).otherwise(pl.col("score")).alias("score"))
    with pytest.raises(NonFiniteScoreError, match=r"user 'b', item 'w'"):
        evaluate(run, test, k=(1,))


def test_recommend_takes_a_list_of_ids_and_never_rounds_one() -> None:
    from recsys.baselines import Popularity

    frame = pl.DataFrame({"user": [1, 1, 2, 12], "item": [5, 6, 5, 7]})
    from recsys.data.interactions import Interactions

    model = Popularity().fit(Interactions.from_frame(frame))
    with pytest.raises(TypeError, match="list of user ids"):
        model.recommend("12", k=1)  # would have been users 1 and 2
    with pytest.raises(KeyError, match=r"not in the vocabulary.*1\.7"):
        model.recommend([1.7], k=1)  # would have been user 1
    assert model.recommend([12.0], k=1)["user"].to_list() == [12]  # an exact float id is that id


@pytest.fixture()
def prepared(csv) -> Path:
    """An imported dataset ``shop`` and its folder."""
    import_file(csv, name="shop", user_col="u", item_col="i")
    return csv.parent / "cache" / "shop"


def test_a_flipped_bit_in_the_cache_is_caught_at_load_naming_the_file_and_the_fix(prepared) -> None:
    path = prepared / "interactions.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"interactions\.parquet: checksum differs.*--force"):
        load("shop")


def test_a_deleted_cache_file_or_a_garbage_meta_json_is_an_error_not_a_success(prepared, capsys) -> None:
    (prepared / "interactions.parquet").unlink()
    with pytest.raises(DataError, match=r"interactions\.parquet: missing"):
        load("shop")
    (prepared / "meta.json").write_text("{not json")
    assert main(["data", "describe", "shop"]) == 2
    assert "meta.json: not a readable record" in capsys.readouterr().err


def test_a_built_in_cache_that_is_damaged_makes_prepare_fail_instead_of_report_success(tmp_path, monkeypatch) -> None:
    from recsys.data.registry import prepare

    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text('{"source": "recbole-wheel", "files": {"interactions.parquet": "sha256:00"}}')
    with pytest.raises(DataError, match=r"missing.*recsys data prepare ml-100k --force"):
        prepare("ml-100k")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k", "0"], "cut-offs must be positive integers"),
        (["--k", "10,1000000"], None),  # a cut-off past the catalogue: the whole list, no MemoryError
        (["--drop-score"], "missing column(s) ['score']"),  # the file and the flag that names it: --score-col
    ],
)
def test_recsys_evaluate_errors_are_one_line_and_a_huge_k_is_fine(tmp_path, capsys, args, message) -> None:
    run, test = _run_case()
    if "--drop-score" in args:
        run, args = run.drop("score"), []
    run.write_csv(tmp_path / "run.csv")
    test.write_csv(tmp_path / "test.csv")
    code = main(["evaluate", "--run", str(tmp_path / "run.csv"), "--test", str(tmp_path / "test.csv"), *args])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0 and "error" not in err  # (the duplicate pair's warning may be logged)
    else:
        assert code == 2 and err.startswith("recsys: error: ") and message in err and "Traceback" not in err


def test_an_empty_yaml_names_the_file(tmp_path, capsys) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["fit", "--config", str(empty)]) == 2
    assert main(["benchmark", "--config", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"recsys: error: {empty}") == 2 and "empty file" in err


def test_a_monitor_typo_fails_before_training() -> None:
    from recsys.errors import RunError
    from recsys.models import MF
    from recsys.tasks import BPRTask
    from recsys.testing import two_communities

    train, test = two_communities()
    with pytest.raises(RunError, match=r"'val/ndgc@10' is not a metric BPRTask logs.*val/ndcg@10"):
        BPRTask(MF(4)).fit(train, test, max_epochs=50, monitor="val/ndgc@10")


@pytest.mark.parametrize(
    "ids, message",
    [
        (["a", "   ", "b"], "blank id(s); first at data row 2"),
        ([1.0, float("nan"), 2.0], "NaN id(s); first at data row 2"),
        ([1.0, 2.5, 3.0], "fractional part; first at data row 2"),
        ([[1], [2], [3]], "holds List"),
        ([1, None, 2], "null id(s); first at data row 2"),
    ],
)
def test_bad_ids_are_errors_naming_the_column_and_row(ids, message) -> None:
    from recsys.data.interactions import Interactions

    frame = pl.DataFrame({"customer": ids, "sku": ["x", "y", "z"]}, strict=False)
    with pytest.raises(DataError, match=rf"shop.csv: column 'customer'.*{message.replace('(', '.').replace(')', '.')}"):
        Interactions.from_frame(frame, user_col="customer", item_col="sku", source="shop.csv")


def test_float_ids_without_a_fraction_are_the_integer_ids() -> None:
    from recsys.data.interactions import Interactions

    data = Interactions.from_frame(pl.DataFrame({"user": [1.0, 2.0], "item": [5, 6]}))
    assert data.users.dtype == pl.Int64 and data.decoded()["user"].to_list() == [1, 2]


@pytest.mark.parametrize(
    "override, message",
    [
        (["--data.batch_size", "-5"], "batch_size must be >= 1, got -5"),
        (["--model.init_args.model.init_args.embedding_dim", "0"], "embedding_dim must be a positive integer, got 0"),
    ],
)
def test_out_of_range_config_values_fail_before_training_in_one_line(tiny_dataset, capsys, override, message) -> None:
    config = tiny_dataset / "bad.yaml"
    config.write_text(
        "model:\n  class_path: recsys.tasks.BPRTask\n  init_args:\n    model: {class_path: recsys.models.MF}\n"
        "data: {dataset: tiny, protocol: user-811}\ntrainer: {logger: false, enable_checkpointing: false, callbacks: []}\n"
    )  # fmt: skip
    assert main(["fit", "--config", str(config), *override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tiny_dataset / "runs").exists()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("latin.csv", b"u,i\n1,\xff\xfe\n", r"latin.csv: line 2 is not utf-8 text"),
        ("fake.parquet", b"not parquet", r"fake.parquet: not a readable Parquet file"),
        ("folder", None, r"folder: is a folder, not a file"),
    ],
)
def test_unreadable_files_are_one_clear_error(tmp_path, monkeypatch, name, content, message) -> None:
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "cache"))
    path = tmp_path / name
    path.mkdir() if content is None else path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        import_file(path, name="x", user_col="u", item_col="i")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("header", [b"\xef\xbb\xbfu,i\n", b'"u","i"\n'])  # a byte-order mark, quoted names
def test_a_bom_or_quoted_header_names_the_columns_as_written(tmp_path, monkeypatch, header) -> None:
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "cache"))
    path = tmp_path / "ok.csv"
    path.write_bytes(header + b"1,2\n3,4\n")
    import_file(path, name="ok", user_col="u", item_col="i")
    assert load("ok").decoded()["user"].to_list() == [1, 3]


def test_a_short_line_is_named_not_reported_as_a_null_id(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "cache"))
    path = tmp_path / "ragged.csv"
    path.write_text("u,i\n1,2\n3\n5,6\n")
    with pytest.raises(DataError, match=r"ragged.csv: line 3 has 1 field\(s\), expected 2"):
        import_file(path, name="r", user_col="u", item_col="i")


def test_a_yaml_tag_in_a_study_spec_is_refused_in_one_line(tmp_path, capsys) -> None:
    spec = tmp_path / "tag.yaml"
    spec.write_text("lightning: experiments/ml-100k/mf-bpr.yaml\nmetric: !!python/object:os.system ndcg@10\n")
    assert main(["tune", "--config", str(spec)]) == 2
    assert "not a plain YAML study spec" in capsys.readouterr().err


def test_recsys_threads_sets_the_training_threads_and_refuses_nonsense(monkeypatch, tmp_path) -> None:
    from recsys.processes import Registry
    from recsys.threads import THREADS_ENV, TrainingThreads

    before = torch.get_num_threads()
    monkeypatch.setenv(THREADS_ENV, "1")
    with TrainingThreads(Registry(tmp_path)):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    for nonsense in ("zero", "0", "-2", "1.5"):
        monkeypatch.setenv(THREADS_ENV, nonsense)
        with pytest.raises(ValueError, match="RECSYS_THREADS must be a positive integer"):
            TrainingThreads(Registry(tmp_path))
