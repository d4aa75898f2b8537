"""`recsys.load` of what `recsys fit` writes: a Lightning checkpoint, or the run folder itself (its best checkpoint,
or the ``model/`` of a ``recommender:`` run), scoring exactly as the run's own test did; one clear error for bad
input; ``SomeTask.load_from_checkpoint`` the same way."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import torch

import recsys
from recsys.baselines import Popularity
from recsys.cli import main
from recsys.data.modules import InteractionsDataModule
from recsys.errors import RunError
from recsys.tasks import BPRTask, SequentialTask

EXPERIMENTS = {
    "mf-bpr": """model:
  class_path: recsys.tasks.BPRTask
  init_args:
    model: {class_path: recsys.models.MF, init_args: {embedding_dim: 8}}
    seed: 7
data: {dataset: tiny, protocol: user-811, seed: 7, batch_size: 64}
""",
    "sasrec": """model:
  class_path: recsys.tasks.SequentialTask
  init_args:
    model: {class_path: recsys.models.SASRec, init_args: {hidden_size: 8, layers: 1, heads: 1, inner_size: 16, max_len: 10}}
    seed: 7
data: {dataset: tiny, protocol: loo, seed: 7, batch_size: 32}
""",
    "pop": "recommender: {class_path: recsys.baselines.Popularity}\ndata: {dataset: tiny, protocol: user-811, seed: 7}\n",
}
TASKS = {"mf-bpr": BPRTask, "sasrec": SequentialTask}
FAST = ["--seed_everything", "7", "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny_dataset_module) -> Iterator[dict[str, Path]]:
    """One `recsys fit` run folder per experiment, fitted once (experiments/trainer.yaml's callbacks: a
    ``best-epochNNN.ckpt`` and ``last.ckpt``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECSYS_RUNS_DIR", str(tiny_dataset_module / "runs"))
        for name, text in EXPERIMENTS.items():
            path = tiny_dataset_module / f"{name}.yaml"
            path.write_text(text)
            assert main(["fit", "--config", str(path), *([] if name == "pop" else FAST)]) == 0
        yield {name: tiny_dataset_module / "runs" / "tiny" / name / "version_0" for name in EXPERIMENTS}


def record_of(run: Path) -> dict:
    """The run's record: the checkpoint its test loaded and the test metrics."""
    return json.loads((run / "results.json").read_text())[0]


def scores(model) -> torch.Tensor:
    return model.score(torch.arange(model.n_users))


@pytest.mark.parametrize("name", ["mf-bpr", "sasrec"])
def test_a_checkpoint_and_its_run_folder_score_as_the_run_tested(runs, name, caplog) -> None:
    run, record = runs[name], record_of(runs[name])
    best = Path(record["checkpoint"])
    assert best.parent == run / "checkpoints" and best.name.startswith("best-epoch")
    from_checkpoint = recsys.load(best)
    with caplog.at_level(logging.INFO, logger="recsys.tasks.checkpoints"):
        from_run = recsys.load(run)
    assert f"loading {best.name} (the best validation epoch)" in caplog.text
    assert type(from_checkpoint) is type(from_run) is TASKS[name] and not from_run.training
    state = torch.load(best, weights_only=True)["state_dict"]
    assert from_run.state_dict().keys() == state.keys()
    assert all(torch.equal(tensor, state[key]) for key, tensor in from_run.state_dict().items())
    assert torch.equal(scores(from_checkpoint), scores(from_run))
    data = InteractionsDataModule(dataset="tiny", protocol="loo" if name == "sasrec" else "user-811", seed=7)
    data.setup()
    assert from_run.judge(data.test, [data.train, data.valid]).summary == pytest.approx(record["metrics"], rel=0, abs=1e-12)
    task = TASKS[name].load_from_checkpoint(best, map_location="cpu")  # Lightning's documented way, the same task
    assert torch.equal(scores(task), scores(from_run))


def test_a_run_folder_without_a_best_checkpoint_loads_its_last(runs, tmp_path, caplog) -> None:
    run = shutil.copytree(runs["mf-bpr"], tmp_path / "run")
    (best,) = run.glob("checkpoints/best-*.ckpt")
    shutil.copy(best, run / "checkpoints" / "best-epoch009.ckpt")
    with pytest.raises(RunError, match="several best checkpoints .*best-epoch009.ckpt.*: load one of them by name"):
        recsys.load(run)
    for path in run.glob("checkpoints/best-*.ckpt"):
        path.unlink()
    with caplog.at_level(logging.INFO, logger="recsys.tasks.checkpoints"):
        model = recsys.load(run)
    assert "loading last.ckpt (no best checkpoint: the last epoch)" in caplog.text
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(tensor, last[key]) for key, tensor in model.state_dict().items())


def test_a_recommender_run_folder_loads_its_model(runs) -> None:
    model = recsys.load(runs["pop"])
    assert type(model) is Popularity
    assert torch.equal(scores(model), scores(recsys.load(runs["pop"] / "model")))


def test_bad_checkpoints_are_one_error_naming_the_file(runs, tmp_path) -> None:
    mf, sasrec = runs["mf-bpr"] / "checkpoints" / "last.ckpt", runs["sasrec"] / "checkpoints" / "last.ckpt"
    with pytest.raises(RunError, match=f"{tmp_path / 'gone.ckpt'}: no such file or folder"):
        recsys.load(tmp_path / "gone.ckpt")
    alone = shutil.copy(mf, tmp_path / "alone.ckpt")
    with pytest.raises(RunError, match=f"{alone}: no config.yaml in {tmp_path}"):
        recsys.load(alone)
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(RunError, match="junk.ckpt: not a readable Lightning checkpoint"):
        recsys.load(tmp_path / "junk.ckpt")
    run = shutil.copytree(runs["mf-bpr"], tmp_path / "run")
    shutil.copy(sasrec, run / "checkpoints" / "sasrec.ckpt")
    with pytest.raises(RunError, match="sasrec.ckpt is a checkpoint of recsys.tasks.SequentialTask, but .*config.yaml "
                       "describes recsys.tasks.BPRTask"):  # fmt: skip
        recsys.load(run / "checkpoints" / "sasrec.ckpt")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("embedding_dim: 8", "embedding_dim: 16"))
    with pytest.raises(RunError, match="last.ckpt: its weights do not fit the model .*config.yaml describes: .*size mismatch"):
        recsys.load(run / "checkpoints" / "last.ckpt")
    config.write_text(config.read_text().replace("dataset: tiny", "dataset: gone"))
    with pytest.raises(RunError, match="config.yaml: data: the training split cannot be made again: unknown dataset 'gone'"):
        recsys.load(run)
    with pytest.raises(RunError, match="holds a SequentialTask, not a BPRTask"):
        BPRTask.load_from_checkpoint(sasrec)
    with pytest.raises(RunError, match="no recommender.json .* no model/ and no checkpoints/"):
        recsys.load(tmp_path)
