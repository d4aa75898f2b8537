"""README "Your own model", end to end: one model class, one YAML, the shipped contract test, then the benchmark."""

from __future__ import annotations

import json

import torch

from recsys import Recommender
from recsys.cli import main
from recsys.testing import RecommenderContract


class Cooccurrence(Recommender):
    """Scores items by how often they co-occur with the user's training items (the README's example)."""

    fitted_attributes = ("item_item_",)  # what fit learns: recsys.save writes it, recsys.load sets it again

    def __init__(self, damping: float = 1.0) -> None:
        self.damping = damping

    def fit(self, train, valid=None):
        self._remember(train)
        seen = train.to_csr()
        counts = torch.from_numpy(seen.sum(0).A1 + self.damping).float()
        self.item_item_ = torch.from_numpy((seen.T @ seen).toarray()).float() / counts
        return self

    def score(self, users, history=None):
        return torch.from_numpy(self.seen()[users.numpy()].toarray()).float() @ self.item_item_


class TestCooccurrence(RecommenderContract):
    unsupported = frozenset({"recommend_for_history", "similar_items"})

    def make_model(self):
        return Cooccurrence()


def test_own_yaml_is_fitted_and_benchmarked_beside_shipped_runs(tiny_dataset, monkeypatch, capsys) -> None:
    path = tiny_dataset / "cooc.yaml"
    path.write_text("recommender:\n  class_path: tests.test_own_model.Cooccurrence\n  init_args: {damping: 2.0}\n"
                    "data: {dataset: tiny, protocol: user-811, seed: 7}\n")  # fmt: skip
    monkeypatch.chdir(tiny_dataset)
    assert main(["fit", "--config", str(path)]) == 0
    out = tiny_dataset / "bench"
    assert main(["benchmark", "--dataset", "tiny", "--models", f"pop,{path}", "--seeds", "7", "--k", "5,10",
                 "--output", str(out), "--no-progress"]) == 0  # fmt: skip
    records = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in records] == ["pop", "cooc"] and records[1]["params"] == {"damping": 2.0}
    fitted = json.loads((tiny_dataset / "runs" / "tiny" / "cooc" / "version_0" / "results.json").read_text())[0]
    assert (fitted["model"], fitted["dataset"], fitted["seed"], fitted["params"]) == ("cooc", "tiny", 7, {"damping": 2.0})
    assert fitted["metrics"]["ndcg@10"] == records[1]["metrics"]["ndcg@10"]  # one engine: the same number
    path.write_text("recommender: {class_path: tests.test_own_model.Cooccurrence, init_args: {dampingg: 2.0}}\n")
    assert main(["fit", "--config", str(path)]) == 2  # a typo'd argument: one error line naming it
    assert "dampingg" in capsys.readouterr().err
