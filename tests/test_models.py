"""Latent-factor models: full-ranking decomposition equals pair scoring, FM equals its brute-force definition,
and every task passes the shared Recommender contract."""

import itertools

import numpy as np
import pytest
import torch

from recsys.data.features import feature_space
from recsys.models import FM, MF, DeepFM, NeuMF
from recsys.tasks import BCETask, BPRTask, MSETask
from recsys.testing import RecommenderContract


MODELS = {
    "mf": lambda: MF(6),
    "mf-nobias": lambda: MF(6, biases=False),
    "neumf": lambda: NeuMF(4, 5, hidden=(8, 4), dropout=0.3),
    "fm": lambda: FM(5),
    "deepfm": lambda: DeepFM(5, hidden=(8, 6), dropout=0.3),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_all_scores_equal_pair_scores(rich, name) -> None:
    torch.manual_seed(0)
    model = MODELS[name]()
    model.build(feature_space(rich, side_features=True))
    model.eval()
    users, items = torch.arange(rich.n_users), torch.arange(rich.n_items)
    with torch.no_grad():
        full = model.all_scores(model.encode("user", users), model.encode("item", items))
        grid_u, grid_i = torch.cartesian_prod(users, items).T
        pairs = model.score_pairs(grid_u, grid_i).view(rich.n_users, rich.n_items)
    assert full.shape == (rich.n_users, rich.n_items)
    torch.testing.assert_close(full, pairs, rtol=1e-5, atol=1e-5)


def test_fm_equals_its_brute_force_definition(rich) -> None:
    torch.manual_seed(1)
    model = FM(4)
    space = feature_space(rich, side_features=True)
    model.build(space)
    assert model.field_names == ("user", "age", "gender", "occupation", "item", "genres", "year")
    with torch.no_grad():
        model.global_bias.fill_(0.3)
        u, i = torch.tensor([3, 7]), torch.tensor([1, 3])  # item code 3 has an empty genre bag
        pooled = model.embeddings(model.features(u, i))
        expected = []
        for row in range(2):
            vectors = [pooled[f][row, :4] for f in model.field_names]
            linear = sum(pooled[f][row, 4] for f in model.field_names)
            pairwise = sum((a * b).sum() for a, b in itertools.combinations(vectors, 2))
            expected.append(0.3 + linear + pairwise)
        torch.testing.assert_close(model.score_pairs(u, i), torch.stack(expected))


def test_mf_score_is_dot_product_plus_biases(rich) -> None:
    model = MF(3)
    model.build(feature_space(rich))
    weights = {n: t.weight for n, t in model.embeddings.collection.embedding_bags.items()}
    with torch.no_grad():
        model.global_bias.fill_(0.5)
        expected = weights["user"][2, :3] @ weights["item"][4, :3] + weights["user"][2, 3] + weights["item"][4, 3] + 0.5
        torch.testing.assert_close(model.score_pairs(torch.tensor([2]), torch.tensor([4]))[0], expected)


@pytest.mark.parametrize("biases", [True, False])
def test_mf_margins_equal_score_differences_with_the_same_gradients(rich, biases) -> None:
    """MF's weighted-bag margins are the generic s(u, i) − s(u, j), in value and in every parameter's gradient."""
    from recsys.models.base import PairModel

    model = MF(6, biases=biases)
    model.build(feature_space(rich))
    generator = torch.Generator().manual_seed(3)
    users = torch.randint(rich.n_users, (9,), generator=generator)
    positives = torch.randint(rich.n_items, (9,), generator=generator)
    negatives = torch.randint(rich.n_items, (9, 4), generator=generator)

    def margins_and_grads(margins):
        model.zero_grad()
        values = margins(model, users, positives, negatives)
        (values * torch.arange(1.0, 5.0)).sum().backward()  # unequal weights per negative
        grads = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
        return values.detach(), grads

    fast, fast_grads = margins_and_grads(MF.score_margins)
    generic, generic_grads = margins_and_grads(PairModel.score_margins)
    assert fast.shape == (9, 4)
    torch.testing.assert_close(fast, generic)
    for name in generic_grads:
        torch.testing.assert_close(fast_grads[name], generic_grads[name])


def test_models_use_torchrec_tables(rich) -> None:
    from torchrec import EmbeddingBagCollection

    model = NeuMF(4, 4)
    model.build(feature_space(rich))
    assert isinstance(model.embeddings.collection, EmbeddingBagCollection)
    assert not [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]


@pytest.mark.parametrize("sides", [("user", "item"), ("user",), ("item",)])
def test_direct_lookup_equals_the_collections_kjt_forward(rich, sides) -> None:
    """The unsharded fast path (no KJT) gives the collection's own pooled values and gradients, for id fields,
    single-valued side features, the multi-valued genre bag with an empty bag, and a side left out."""
    torch.manual_seed(0)
    model = FM(4)
    model.build(feature_space(rich))
    entities = {side: torch.tensor([0, 3, 2, 3, 1]) for side in sides}
    direct = model.lookup(entities)
    via_kjt = model.embeddings(model.features(users=entities.get("user"), items=entities.get("item")))
    assert direct.keys() == via_kjt.keys() == set(model.field_names)
    for name in direct:
        torch.testing.assert_close(direct[name], via_kjt[name], rtol=0, atol=0)
    grads = []
    for pooled in (direct, via_kjt):
        model.zero_grad()
        sum((value * torch.arange(value.numel()).view_as(value)).sum() for value in pooled.values()).backward()
        grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.embeddings.parameters()])
    for direct_grad, kjt_grad in zip(*grads):
        torch.testing.assert_close(direct_grad, kjt_grad)


class _Quick:
    """Short training for the contract's tiny data."""

    def fit(self, train, valid=None):
        return super().fit(train, valid, max_epochs=30, batch_size=64)


class QuickBPR(_Quick, BPRTask):
    pass


class QuickBCE(_Quick, BCETask):
    pass


class TestMFBPR(RecommenderContract):
    def make_model(self):
        return QuickBPR(MF(8), lr=0.02, seed=3)


class TestNeuMFBCE(RecommenderContract):
    unsupported = frozenset({"recommend_for_history", "similar_items"})  # a nonlinear head: no item vectors

    def make_model(self):
        return QuickBCE(NeuMF(8, 8, hidden=(16, 8), dropout=0.0), lr=0.01, negatives=2, seed=3)


class TestDeepFMBPR(RecommenderContract):
    personalised = True
    unsupported = frozenset({"recommend_for_history", "similar_items"})  # a nonlinear head: no item vectors

    def make_model(self):
        return QuickBPR(DeepFM(8, hidden=(16,), dropout=0.0), lr=0.02, seed=3)


def test_click_and_rating_metrics_match_sklearn_on_the_observed_pairs(rich) -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    from recsys.data.modules import InteractionsDataModule
    from recsys.tasks import ClickTask

    data = InteractionsDataModule.from_splits(rich, rich)
    click, mse = ClickTask(FM(4), label_threshold=3.0), MSETask(MF(4))
    for task in (click, mse):
        task.attach(data)
    with torch.no_grad():
        logits = click.model.score_pairs(torch.from_numpy(rich.frame["user"].to_numpy()), torch.from_numpy(rich.frame["item"].to_numpy()))
        ratings = mse.model.score_pairs(torch.from_numpy(rich.frame["user"].to_numpy()), torch.from_numpy(rich.frame["item"].to_numpy()))
    labels = (rich.frame["rating"].to_numpy() >= 3.0).astype(float)
    probs = torch.sigmoid(logits).double().numpy()
    metrics = click.point_metrics(rich)
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, probs))
    assert metrics["logloss"] == pytest.approx(log_loss(labels, probs))
    expected_rmse = float(np.sqrt(np.mean((ratings.double().numpy() - rich.frame["rating"].to_numpy()) ** 2)))
    assert mse.point_metrics(rich)["rmse"] == pytest.approx(expected_rmse)
    judged = click.judge(rich, [], k=(5,))  # one Evaluation: ranking metrics and the click metrics together
    assert judged["auc"] == metrics["auc"] and "ndcg@5" in judged.summary


def test_several_batches_per_lightning_step_train_exactly_as_one(rich) -> None:
    """Stepping a list of batches by hand (manual optimisation) takes the same optimiser steps, on the same
    batches and negatives, as Lightning's automatic optimisation one batch at a time."""
    weights = []
    for per_step in (1, 3):
        task = BPRTask(MF(4), lr=0.05, seed=5, batches_per_step=per_step)
        task.fit(rich, max_epochs=2, batch_size=8)
        assert task.automatic_optimization == (per_step == 1)
        assert task.global_step == 2 * -(-len(rich) // 8)
        weights.append({k: v.clone() for k, v in task.state_dict().items()})
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], msg=name)


@pytest.mark.parametrize("objective", ["bpr", "bce", "mse", "click"])
def test_recsys_fit_trains_every_objective_and_early_stops_on_its_monitor(rich, objective) -> None:
    import recsys

    task = recsys.fit(FM(4), rich, rich, objective=objective, max_epochs=3, batch_size=16)
    assert task.best_weights_.monitor == {"click": "val/auc", "mse": "val/rmse"}.get(objective, "val/ndcg@10")
    assert task.best_weights_.best is not None and task.epochs_trained_ == 3
    losses = task.example_losses(rich)  # one loss per training example, the mean of which the step minimises
    assert losses.shape == (len(rich),) and bool(torch.isfinite(losses).all())


def test_validation_every_n_epochs_on_a_fixed_sample_of_users(rich) -> None:
    seen: list[np.ndarray | None] = []

    class Recording(BPRTask):
        def judge(self, part, exclude, k=None, users=None):
            seen.append(users)
            return super().judge(part, exclude, k, users)

    task = Recording(MF(4), seed=3, val_users=4)
    task.fit(rich, rich, max_epochs=4, batch_size=16, check_val_every_n_epoch=2)
    assert len(seen) == 2  # epochs 2 and 4
    assert all(len(users) == 4 for users in seen) and np.array_equal(seen[0], seen[1])  # the same seeded sample
    assert np.array_equal(seen[0], Recording(MF(4), seed=3, val_users=4).fit(rich, rich, max_epochs=1, batch_size=16)
                          .validation_user_sample())  # fmt: skip
