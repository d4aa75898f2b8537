"""Tables that update themselves in backward (`FusedUpdates`: TorchRec's `FusedEmbeddingBagCollection`, FBGEMM's
row-wise Adagrad on the rows a batch touched): lookups, the update rule, the switch point, the task's optimiser
split, saving, and the FBGEMM CPU limits that shape them (no Adam, no weight decay, no inference mode)."""

import polars as pl
import pytest
import torch
from torchrec import EmbeddingBagCollection

import recsys
from recsys.data.features import feature_space
from recsys.data.interactions import Interactions
from recsys.embeddings.tables import EmbeddingTables, FusedUpdates, TableSpec
from recsys.models import FM, MF, NeuMF
from recsys.tasks import BCETask, BPRTask


ALWAYS = FusedUpdates(lr=0.1, min_rows=0)


def fused_fm(rich: Interactions) -> FM:
    torch.manual_seed(0)
    model = FM(5)  # 5 + 1 columns: padded to 8 for FBGEMM
    model.build(feature_space(rich, side_features=True), ALWAYS)
    return model


def test_tables_are_fused_from_the_switch_point_and_dense_below() -> None:
    specs = [TableSpec("user", 600, 9, scalars=1), TableSpec("item", 400, 9, scalars=1)]
    assert isinstance(EmbeddingTables(specs, fused=FusedUpdates(min_rows=1001)).collection, EmbeddingBagCollection)
    assert EmbeddingTables(specs, fused=FusedUpdates(min_rows=1001)).fused is None
    fused = EmbeddingTables(specs, fused=FusedUpdates(min_rows=1000))
    assert fused.fused is not None and fused.local_weight("item") is None  # models take the lookup path
    shapes = {k: tuple(v.shape) for k, v in fused.state_dict().items()}
    assert shapes == {"collection.user.embedding_bags.user.weight": (600, 12), "collection.user.embedding_bags.user.momentum1": (600,),
                      "collection.item.embedding_bags.item.weight": (400, 12), "collection.item.embedding_bags.item.momentum1": (400,)}  # fmt: skip
    weight = fused.state_dict()["collection.user.embedding_bags.user.weight"]
    assert not weight[:, 9:].any() and weight[:, :9].std() > 0  # zero padding, normal initialisation
    with pytest.raises(ValueError, match="unknown fused optimizer"):
        FusedUpdates("adam")  # type: ignore[arg-type]


@pytest.mark.parametrize("sides", [("user", "item"), ("user",), ("item",)])
def test_fused_lookup_equals_the_collections_kjt_forward(rich, sides) -> None:
    """The kernel call without a KJT, and the no-gradient row gathers of evaluation, give the fused collections'
    own KJT forward: id fields, side features, the multi-valued genre bag with an empty bag, a side left out."""
    model = fused_fm(rich)
    entities = {side: torch.tensor([0, 3, 2, 3, 1]) for side in sides}
    via_kjt = model.embeddings(model.features(users=entities.get("user"), items=entities.get("item")))
    with torch.no_grad():
        gathered = model.lookup(entities)
    direct = model.lookup(entities)
    assert direct.keys() == via_kjt.keys() == gathered.keys() == set(model.field_names)
    for name in direct:
        assert direct[name].shape == (5, model.embeddings.specs[name].dim)
        torch.testing.assert_close(direct[name], via_kjt[name], rtol=0, atol=1e-7)
        torch.testing.assert_close(gathered[name], via_kjt[name], rtol=0, atol=1e-7)


def test_a_fused_step_is_row_wise_adagrad_on_the_touched_rows_only() -> None:
    """G_r += mean over the row's (padded) columns of g²; w_r −= lr · g_r / (√G_r + ε), for the rows the batch
    read; every other row and the padding columns stay as they were."""
    space = feature_space(Interactions.from_frame(pl.DataFrame({"user": list(range(30)), "item": [i % 7 for i in range(30)]})))
    torch.manual_seed(0)
    model = MF(6)  # 7 columns, padded to 8
    model.build(space, ALWAYS)
    before = {k: v.clone() for k, v in model.embeddings.state_dict().items()}
    users, items = torch.tensor([3, 5, 3]), torch.tensor([1, 2, 6])
    leaf = {name: before[f"collection.{name}.embedding_bags.{name}.weight"][:, :7].clone().requires_grad_() for name in ("user", "item")}
    for step in range(2):  # the second step divides by the accumulated sum
        scores = model.score_pairs(users, items)
        (scores * torch.tensor([1.0, -2.0, 0.5])).sum().backward()
        ref_scores = (leaf["user"][users, :6] * leaf["item"][items, :6]).sum(-1) + leaf["item"][items, 6] + leaf["user"][users, 6]
        grads = torch.autograd.grad((ref_scores * torch.tensor([1.0, -2.0, 0.5])).sum(), [leaf["user"], leaf["item"]])
        with torch.no_grad():
            for (name, weight), grad in zip(leaf.items(), grads):
                key = f"collection.{name}.embedding_bags.{name}.momentum1"
                before[key] += (grad**2).sum(1) / 8  # the mean over all 8 columns, the zero padding included
                touched = before[key] > 0
                weight[touched] -= 0.1 * grad[touched] / (before[key][touched].sqrt()[:, None] + 1e-8)
    after = model.embeddings.state_dict()
    for name, weight in leaf.items():
        fused = after[f"collection.{name}.embedding_bags.{name}.weight"]
        torch.testing.assert_close(fused[:, :7], weight.detach(), rtol=1e-5, atol=1e-6)
        assert not fused[:, 7:].any()
        torch.testing.assert_close(after[f"collection.{name}.embedding_bags.{name}.momentum1"], before[f"collection.{name}.embedding_bags.{name}.momentum1"])
    untouched = [u for u in range(30) if u not in (3, 5)]
    torch.testing.assert_close(after["collection.user.embedding_bags.user.weight"][untouched],
                               before["collection.user.embedding_bags.user.weight"][untouched], rtol=0, atol=0)  # fmt: skip


def test_the_task_steps_only_the_dense_layers_when_tables_are_fused(rich) -> None:
    task = BCETask(NeuMF(4, 4, hidden=(8,)), fused_rows=0, lr=0.01)
    task.fit(rich, max_epochs=2, batch_size=16)
    tables = {id(p) for p in task.model.embeddings.parameters()}
    stepped = {id(p) for group in task.configure_optimizers().param_groups for p in group["params"]}
    assert stepped and not stepped & tables
    assert stepped == {id(p) for n, p in task.named_parameters() if not n.startswith("model.embeddings.")}
    dense = BCETask(NeuMF(4, 4, hidden=(8,)), lr=0.01)  # the default switch point: these tables are small
    dense.fit(rich, max_epochs=1, batch_size=16)
    assert dense.model.embeddings.fused is None and len(dense.dense_parameters()) == len(list(dense.parameters()))


def test_fused_training_learns_and_saves_with_its_optimiser_state(rich, tmp_path) -> None:
    """A fused BPR fit (validation under Lightning's inference mode included) moves the touched rows and only
    those, and `recsys.save` / `recsys.load` round-trip it, the accumulators included."""
    torch.manual_seed(0)
    task = BPRTask(MF(8), fused_rows=0, fused_lr=0.05, seed=3)
    task.fit(rich, rich, max_epochs=3, batch_size=16)
    state = task.model.embeddings.state_dict()
    assert state["collection.user.embedding_bags.user.momentum1"].gt(0).sum() == rich.frame["user"].n_unique()
    loaded = recsys.load(recsys.save(task, tmp_path / "saved"))
    for key, value in state.items():
        torch.testing.assert_close(loaded.model.embeddings.state_dict()[key], value, rtol=0, atol=0)
    users = torch.arange(5)
    torch.testing.assert_close(loaded.score(users), task.score(users), rtol=0, atol=0)


def test_fbgemm_cpu_limits_that_shape_the_fused_tables() -> None:
    """Why the fused optimiser is row-wise Adagrad without weight decay and why evaluation leaves inference mode:
    FBGEMM's CPU kernels (fbgemm-gpu-cpu 1.8) have no Adam, ignore weight decay (a column without gradient does
    not move) and are registered for autograd only. When one of these fails, the restriction can go."""
    from fbgemm_gpu.split_table_batched_embeddings_ops_training import WeightDecayMode
    from torchrec import EmbeddingBagConfig, KeyedJaggedTensor
    from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
    from torchrec.optim import RowWiseAdagrad

    config = EmbeddingBagConfig(name="t", embedding_dim=8, num_embeddings=4, feature_names=["t"])
    with pytest.raises(AssertionError, match="adam is not supported in CPU mode"):
        FusedEmbeddingBagCollection([config], optimizer_type=torch.optim.Adam, optimizer_kwargs={"lr": 0.1})
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=["t"], values=torch.tensor([1]), lengths=torch.ones(1, dtype=torch.int32))
    decayed = FusedEmbeddingBagCollection([config], optimizer_type=RowWiseAdagrad,
                                          optimizer_kwargs={"lr": 0.1, "weight_decay": 0.5, "weight_decay_mode": WeightDecayMode.L2})  # fmt: skip
    weight = decayed.embedding_bags["t"].weight
    start = weight.detach().clone()
    (decayed(kjt)["t"] * torch.arange(8.0)).sum().backward()  # column 0 has no gradient: only decay could move it
    assert weight[1, 0] == start[1, 0] != 0 and weight[1, 1] != start[1, 1]
    with torch.inference_mode(), pytest.raises(NotImplementedError, match="CPU"):
        decayed(kjt)
    tables = EmbeddingTables([TableSpec("t", 4, 8)], fused=ALWAYS)
    with torch.inference_mode():
        assert tables(kjt)["t"].shape == (1, 8)  # our forward steps out of inference mode


@pytest.mark.parametrize("biases", [True, False])
def test_mf_margins_over_fused_tables_equal_the_generic_margins_and_step_alike(rich, biases) -> None:
    """MF's margins over fused tables (each item looked up once) are the generic s(u, i) − s(u, j), and their
    backward makes the same fused update."""
    from recsys.models.base import PairModel

    generator = torch.Generator().manual_seed(3)
    users = torch.randint(rich.n_users, (9,), generator=generator)
    positives = torch.randint(rich.n_items, (9,), generator=generator)
    negatives = torch.randint(rich.n_items, (9, 4), generator=generator)
    results = []
    for margins in (MF.score_margins, PairModel.score_margins):
        torch.manual_seed(0)
        model = MF(6, biases=biases)
        model.build(feature_space(rich), ALWAYS)
        values = margins(model, users, positives, negatives)
        (values * torch.arange(1.0, 5.0)).sum().backward()  # unequal weights per negative
        results.append((values.detach(), model.embeddings.state_dict()))
    (fast, fast_state), (generic, generic_state) = results
    assert fast.shape == (9, 4)
    torch.testing.assert_close(fast, generic)
    for key, value in generic_state.items():
        torch.testing.assert_close(fast_state[key], value, msg=key)
