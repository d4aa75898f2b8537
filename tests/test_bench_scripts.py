"""The benchmark scripts' own data handling (reading another framework's split back into `Interactions`) and the
experiment configs they race."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest
import yaml

from recsys.data.interactions import Interactions

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_vs_recbole.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_vs_recbole", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def data(small_frame: pl.DataFrame) -> Interactions:
    return Interactions.from_frame(small_frame, user_col="uid", item_col="iid", rating_col="stars")


def write_split(path: Path, data: Interactions, parts: list[str]) -> Path:
    raw = data.decoded()
    pl.DataFrame({"user": raw["user"].cast(pl.String), "item": raw["item"].cast(pl.String), "part": parts}).write_csv(path)
    return path


def test_split_from_file_puts_every_interaction_in_its_listed_part(bench, data, tmp_path):
    n = len(data.frame)
    parts = ["train" if i % 10 < 8 else "valid" if i % 10 == 8 else "test" for i in range(n)]
    train, valid, test = bench.split_from_file(data, write_split(tmp_path / "split.csv", data, parts))
    assert (len(train.frame), len(valid.frame), len(test.frame)) == (parts.count("train"), parts.count("valid"), parts.count("test"))
    raw = data.decoded().with_row_index("row")
    for part, split in (("train", train), ("valid", valid), ("test", test)):
        expected = raw.filter(pl.Series(parts) == part).select("user", "item").sort("user", "item")
        assert split.decoded().select("user", "item").sort("user", "item").equals(expected)
    assert train.n_items == data.n_items and train.n_users == data.n_users  # same codes as the full data


def test_split_from_file_refuses_a_split_that_misses_interactions(bench, data, tmp_path):
    path = write_split(tmp_path / "split.csv", data, ["train"] * len(data.frame))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # drop the last interaction
    with pytest.raises(SystemExit, match="split.csv"):
        bench.split_from_file(data, path)


def test_click_configs_build_the_task_and_model_their_yaml_names(bench):
    from recsys.models import FM, DeepFM
    from recsys.tasks import ClickTask

    for name in bench.CLICK_CONFIGS:
        experiment, described = bench.experiment_task(name, seed=7)
        task, batch_size = experiment.task, experiment.data.batch_size
        config = yaml.safe_load((SCRIPT.parents[1] / "experiments" / "ml-100k" / f"{name}.yaml").read_text())
        task_args, model_args = config["model"]["init_args"], config["model"]["init_args"]["model"]["init_args"]
        assert isinstance(task, ClickTask) and batch_size == config["data"]["batch_size"]
        assert type(task.model) is (DeepFM if name.startswith("deepfm") else FM)
        assert task.model.embedding_dim == model_args["embedding_dim"] and task.hparams.lr == task_args["lr"]
        assert task.hparams.seed == 7 and described.startswith(type(task.model).__name__)
