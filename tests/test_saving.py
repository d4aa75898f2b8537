"""`recsys.save` / `recsys.load`: a fitted task (every pair model and objective), SASRec, DNIS and
MixedDimensions come back from safe files and score exactly as before."""

from __future__ import annotations

import pytest
import torch

import recsys
from recsys.baselines import EASE, Popularity
from recsys.errors import RunError
from recsys.models import MF, FM, DeepFM, NeuMF
from recsys.tasks import BCETask, BPRTask, ClickTask, MSETask
from recsys.tasks.dnis import DNIS, MixedDimensions
from test_dnis import rated, split_train


def fitted_cases(data):
    train, valid = split_train(data)
    return {
        "mf-bpr": lambda: BPRTask(MF(6), seed=1, batches_per_step=1).fit(train, valid, max_epochs=2, batch_size=32),
        "neumf-bce": lambda: BCETask(NeuMF(4, 4, hidden=(8, 4)), seed=1).fit(train, valid, max_epochs=2, batch_size=32),
        "fm-click": lambda: ClickTask(FM(4), label_threshold=3.0, seed=1).fit(train, valid, max_epochs=2, batch_size=32),
        "deepfm-mse": lambda: MSETask(DeepFM(4, hidden=(8,)), seed=1).fit(train, valid, max_epochs=2, batch_size=32),
        "dnis": lambda: DNIS(MSETask(MF(6), batches_per_step=1), blocks=3, budget=0.5, warm_start_epochs=1,
                             search_epochs=1, batch_size=32, seed=2).fit(train, valid),
        "mde": lambda: MixedDimensions(ClickTask(FM(4), label_threshold=3.0), rule="mde", blocks=2, budget=0.5,
                                       epochs=1, batch_size=32, seed=2).fit(train, valid),
    }


@pytest.mark.parametrize("case", ["mf-bpr", "neumf-bce", "fm-click", "deepfm-mse", "dnis", "mde"])
def test_saved_recommenders_load_and_score_identically(rich, tmp_path, case) -> None:
    model = fitted_cases(rich)[case]()
    users = torch.arange(model.n_users)
    before = model.score(users)
    folder = recsys.save(model, tmp_path / "saved")
    assert sorted(p.suffix for p in folder.rglob("*") if p.is_file()) == [".json", *[".parquet"] * len(list(folder.glob("train/*"))), ".safetensors"]
    assert loaded_vocabularies_equal(recsys.load(folder), model)
    loaded = recsys.load(folder)
    assert type(loaded) is type(model)
    torch.testing.assert_close(loaded.score(users), before, rtol=0, atol=1e-6)
    raw = model.train_data.users.decode([0, 1]).to_list()
    assert loaded.recommend(raw, k=3).equals(model.recommend(raw, k=3))
    if case == "dnis":
        assert loaded.report_["embedding_params"] == model.report_["embedding_params"]
        assert loaded.task.model.embeddings.embedding_params() == model.report_["embedding_params"]


def loaded_vocabularies_equal(loaded, model) -> bool:
    return loaded.train_data.users == model.train_data.users and loaded.train_data.items == model.train_data.items


def test_an_item_without_training_rows_keeps_its_code(tmp_path) -> None:
    data = rated()
    train = data.with_frame(data.frame.filter(data.frame["item"] != 0))  # item code 0 only outside training
    task = MSETask(MF(4), seed=1).fit(train, None, max_epochs=1, batch_size=64)
    loaded = recsys.load(recsys.save(task, tmp_path / "m"))
    assert loaded.train_data.items == train.items and loaded.n_items == train.n_items
    torch.testing.assert_close(loaded.score(torch.arange(3)), task.score(torch.arange(3)), rtol=0, atol=1e-6)


def test_a_column_major_tensor_loads_column_major(tmp_path) -> None:
    """EASE's weights come column-major from `torch.linalg.inv`; loaded row-major, they would be multiplied by
    another kernel, whose last bits differ."""
    model = EASE(reg=10.0).fit(rated())
    assert not model.weights_.is_contiguous()
    loaded = recsys.load(recsys.save(model, tmp_path / "ease"))
    assert loaded.weights_.stride() == model.weights_.stride() and torch.equal(loaded.weights_, model.weights_)


class Counts(Popularity):
    """A user's model that does not declare what it learned."""

    fitted_attributes = None


def test_save_refuses_a_non_empty_folder_and_unsupported_models(tmp_path) -> None:
    data = rated()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    task = MSETask(MF(4)).fit(data, None, max_epochs=1, batch_size=64)
    with pytest.raises(RunError, match="not empty"):
        recsys.save(task, tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(RunError, match="Counts cannot be saved: it lists no fitted_attributes"):
        recsys.save(Counts().fit(data), tmp_path / "counts")
    assert not (tmp_path / "counts").exists()  # refused before anything is written
    with pytest.raises(RunError, match="no recommender.json"):
        recsys.load(tmp_path / "taken")
