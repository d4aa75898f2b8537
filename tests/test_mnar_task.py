"""`RelMFTask` (every estimator) and `ExpoMF` in the recommender contract; the Rel-MF YAML config parses."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.baselines import ExpoMF
from recsys.data.examples import all_pairs
from recsys.data.modules import InteractionsDataModule
from recsys.mnar.propensity import KnownPropensity, PopularityPropensity
from recsys.models import MF
from recsys.tasks.mnar import RelMFTask
from recsys.testing import RecommenderContract, two_communities

ROOT = Path(__file__).resolve().parents[1]


class QuickRelMF(RelMFTask):
    """Few epochs and a low rank (dim 2 generalises from the two communities instead of memorising)."""

    def fit(self, train, valid=None, **kwargs):
        return super().fit(train, valid, max_epochs=25, batch_size=256, **kwargs)


class TestRelMFClippedIPS(RecommenderContract):
    def make_model(self):
        return QuickRelMF(MF(2), estimator="clipped_ips", propensity=PopularityPropensity(0.5), clip=0.1, lr=0.05, seed=3)


class TestExpoMF(RecommenderContract):
    def make_model(self):
        return ExpoMF(n_components=8, max_iter=10, lambda_theta=1.0, lambda_beta=1.0, seed=3)


@pytest.mark.parametrize("estimator, loss", [("naive", "log"), ("ips", "log"), ("wmf", "squared")])
def test_other_estimators_train_and_lower_their_loss(estimator, loss) -> None:
    train, _ = two_communities()
    task = RelMFTask(MF(8), estimator=estimator, propensity=PopularityPropensity(0.5), positive_weight=4.0, loss=loss,
                     lr=0.05, seed=1)  # fmt: skip
    data = InteractionsDataModule.from_splits(train, batch_size=256)
    task.attach(data)
    batch = all_pairs(train)
    before = float(task.loss(batch))
    task.fit(train, max_epochs=10, batch_size=256)
    assert float(task.loss(batch)) < before


def test_relmf_trains_on_the_all_pairs_grid_and_needs_a_propensity() -> None:
    train, _ = two_communities()
    with pytest.raises(ValueError, match="needs a propensity"):
        RelMFTask(MF(4), estimator="ips")
    task = RelMFTask(MF(4), estimator="naive")
    task.attach(InteractionsDataModule.from_splits(train))
    examples = task.training_examples(train)
    assert len(examples["user"]) == train.n_users * train.n_items
    losses = task.example_losses(train)  # one weighted local loss per pair of the grid
    assert losses.shape == (train.n_users * train.n_items,) and bool((losses > 0).all())


def test_ips_refuses_a_click_of_zero_propensity() -> None:
    train, _ = two_communities()
    decoded = train.decoded()
    table = pl.DataFrame({"item": decoded["item"].unique().sort(), "theta": 0.5})
    first = decoded["item"][0]
    task = RelMFTask(MF(4), estimator="ips", propensity=KnownPropensity(table=table))
    task.propensity.fit(train)
    task.propensity.grid_[0, train.items.encode(pl.Series([first]))[0]] = 0.0
    with pytest.raises(ValueError, match="propensity 0"):
        task.attach(InteractionsDataModule.from_splits(train))


def test_all_pairs_labels_the_training_interactions() -> None:
    train, _ = two_communities()
    grid = all_pairs(train)
    assert len(grid["user"]) == train.n_users * train.n_items
    assert int(grid["label"].sum()) == train.frame.select("user", "item").unique().height
    codes = train.frame["user"].to_numpy() * train.n_items + train.frame["item"].to_numpy()
    assert grid["label"].numpy()[codes].all()


def test_relmf_config_parses(capsys) -> None:
    from recsys.lightning_cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / "experiments/ml-100k/relmf.yaml"), "--print_config"])
    printed = capsys.readouterr().out
    assert "recsys.tasks.mnar.RelMFTask" in printed and "PopularityPropensity" in printed and "batches_per_step: 1000000" in printed


def test_expomf_exposure_posterior_by_hand() -> None:
    model = ExpoMF(lambda_y=1.0)
    import torch

    y = torch.tensor([[1.0, 0.0]])
    theta, beta = torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    mu = torch.tensor([0.5, 0.5], dtype=torch.float64)
    posterior = model._posterior(y.double(), theta, beta, mu)
    density = np.exp(-2.0) / np.sqrt(2 * np.pi)  # N(0 | mean 2, variance 1)
    assert posterior[0, 0] == 1.0 and float(posterior[0, 1]) == pytest.approx(0.5 * density / (0.5 * density + 0.5))
