"""`recsys.tuning.spec` and the checks made before any trial: parsing, defaults, every error case, parameter
names checked against the config or constructor, storage URLs, conditional spaces and the shipped specs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from recsys.tuning.objective import sample, validate, values_of
from recsys.tuning.spec import SpecError, load_spec, parse_spec, set_dotted
from recsys.tuning.study import StorageError, open_storage

BASE = Path("experiments/ml-100k/mf-bpr.yaml")


def lightning_spec(base: Path = BASE, **extra) -> dict:
    return {"lightning": str(base),
            "space": {"model.init_args.lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
                      "model.init_args.model.init_args.embedding_dim": {"type": "categorical", "choices": [4, 8, 16]}},
            **extra}  # fmt: skip


def knn_spec(**extra) -> dict:
    return {"recommender": {"class_path": "recsys.baselines.ItemKNN"}, "data": {"dataset": "tiny"},
            "space": {"k": {"type": "int", "low": 2, "high": 40}}, **extra}  # fmt: skip


def test_spec_defaults() -> None:
    spec = parse_spec(lightning_spec())
    assert spec.kind == "lightning" and spec.metric == "ndcg@10" and spec.direction == "maximize"
    assert spec.sampler == {"name": "tpe"} and spec.pruner == {"name": "median"} and spec.n_trials == 30
    lr = spec.space[0]
    assert (lr.name, lr.key, lr.type, lr.low, lr.high, lr.log) == ("model.init_args.lr", "model.init_args.lr", "float", 1e-3, 5e-2, True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"space": {}}, "search space is empty"),
        ({"spaces": {}}, "unknown key(s) ['spaces']"),
        ({"space": {"x": {"type": "normal", "low": 0, "high": 1}}}, "type must be float, int or categorical"),
        ({"space": {"x": {"type": "float", "low": 2, "high": 1}}}, "low 2.0 is above high 1.0"),
        ({"space": {"x": {"type": "float", "low": 0, "high": 1, "log": True}}}, "log-scale range needs low > 0"),
        ({"space": {"x": {"type": "categorical", "choices": []}}}, "non-empty 'choices'"),
        ({"space": {"x": {"type": "int", "low": 1, "high": 2, "when": {"y": 1}}}}, "not an earlier parameter"),
        ({"sampler": "grid"}, "unknown sampler 'grid'"),
        ({"pruner": {"name": "asha"}}, "unknown pruner 'asha'"),
        ({"n_trials": 0}, "n_trials must be a positive integer"),
        ({"lightning": "nowhere.yaml"}, "base config 'nowhere.yaml' not found"),
        ({"recommender": {"class_path": "recsys.baselines.EASE"}}, "exactly one of 'lightning'"),
    ],
)
def test_spec_errors_name_the_problem(change, message) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({**lightning_spec(), **change})
    assert message in str(err.value)


def test_unknown_parameter_names_are_caught_before_any_trial() -> None:
    spec = parse_spec(lightning_spec(BASE, space={"model.init_args.lrr": {"type": "float", "low": 0.1, "high": 1}}))
    with pytest.raises(SpecError, match=r"space\.model\.init_args\.lrr .*lrr"):
        validate(spec)
    knn = parse_spec(knn_spec(space={"neighbours": {"type": "int", "low": 1, "high": 3}}))
    with pytest.raises(SpecError, match="ItemKNN has no parameter 'neighbours'"):
        validate(knn)
    with pytest.raises(SpecError, match="not a recsys Recommender"):
        validate(parse_spec(knn_spec(recommender={"class_path": "collections.OrderedDict"})))


@pytest.mark.parametrize("url", ["sqlite:////no/such/folder/studies.db", "nosuchdb://host/db"])
def test_unreachable_storage_is_a_clear_error(url) -> None:
    with pytest.raises(StorageError, match="cannot open storage"):
        open_storage(url)


def test_conditional_parameters_are_sampled_only_when_their_condition_holds() -> None:
    spec = parse_spec({
        "recommender": {"class_path": "recsys.baselines.EASE"},
        "space": {
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
            "adam_lr": {"key": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "when": {"optimizer": "adam"}},
            "sgd_lr": {"key": "lr", "type": "float", "low": 0.1, "high": 1.0, "when": {"optimizer": ["sgd"]}},
            "hidden": {"type": "categorical", "choices": [[8], [16, 8]]},
        },
    })  # fmt: skip
    adam = sample(spec.space, optuna.trial.FixedTrial({"optimizer": "adam", "adam_lr": 1e-3, "hidden": "[16, 8]"}))
    assert adam == {"optimizer": "adam", "lr": 1e-3, "hidden": [16, 8]}
    sgd = sample(spec.space, optuna.trial.FixedTrial({"optimizer": "sgd", "sgd_lr": 0.5, "hidden": "[8]"}))
    assert sgd == {"optimizer": "sgd", "lr": 0.5, "hidden": [8]}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = sample(spec.space, trial)
        assert set(trial.params) == {"optimizer", "hidden", f"{values['optimizer']}_lr"}
        assert (0.1 <= values["lr"]) == (values["optimizer"] == "sgd")
        assert values_of(spec.space, trial.params) == values
        study.tell(trial, 0.0)


def test_set_dotted_walks_mappings_and_list_indices() -> None:
    config = {"trainer": {"callbacks": [{"init_args": {"patience": 10}}]}}
    set_dotted(config, "trainer.callbacks.0.init_args.patience", 3)
    set_dotted(config, "model.init_args.lr", 0.1)
    assert config == {"trainer": {"callbacks": [{"init_args": {"patience": 3}}]}, "model": {"init_args": {"lr": 0.1}}}
    with pytest.raises(SpecError, match="has no entry '5'"):
        set_dotted(config, "trainer.callbacks.5.init_args", 1)


def test_every_shipped_study_spec_is_valid() -> None:
    specs = sorted(Path("experiments").glob("*/tune-*.yaml"))
    assert specs
    for path in specs:
        validate(load_spec(path))
