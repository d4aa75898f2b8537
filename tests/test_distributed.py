"""Sharding from outside the model (`recsys.distributed`): 2-process gloo runs on CPU, for the bag models (MF, NeuMF:
`EmbeddingBagCollection`, or fused `FusedEmbeddingBagCollection`s) and SASRec (an `EmbeddingCollection`).

Each test spawns two ranks (`recsys.distributed.spawn`); the ranks write what they measured to ``tmp_path`` and
the assertions run here, so a failure names the sharding and the quantity that differs.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from recsys.data.features import feature_space
from recsys.data.interactions import Interactions
from recsys.embeddings.tables import FusedUpdates
from recsys.distributed import (
    SHARDINGS,
    full_optimizer_state,
    full_state_dict,
    load_full_state_dict,
    plan_for,
    shard,
    spawn,
)
from recsys.models.mf import MF
from recsys.models.neumf import NeuMF
from recsys.models.sasrec import SASRec

WORLD = 2
TOL = 1e-5
EC_SHARDINGS = ("table_wise", "column_wise", "data_parallel")  # row_wise is refused on CPU (see `plan_for`)


@pytest.fixture(scope="module", autouse=True)
def _preloaded_ranks() -> None:
    """Ranks start from a fork server that imported torch, TorchRec, Lightning and this module once (~1 s a
    launch instead of ~15 s of imports in every rank)."""
    import multiprocessing

    multiprocessing.set_forkserver_preload(["recsys.distributed", "recsys.tasks", "lightning.pytorch", __name__])


def run_ranks(fn, out: Path) -> list:
    """``fn(rank, WORLD, out)`` in ``WORLD`` processes; what each rank wrote to ``out/rank<r>.json``."""
    spawn(fn, WORLD, str(out), start_method="forkserver")
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(WORLD)]


def tiny_data(n_users: int = 30, n_items: int = 22, seed: int = 3) -> Interactions:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        for item in rng.choice(n_items, size=int(rng.integers(5, 10)), replace=False):
            rows.append((f"u{user}", f"i{item}", float(rng.integers(1, 6)), int(rng.integers(0, 1000))))
    frame = pl.DataFrame(rows, schema=["user", "item", "rating", "ts"], orient="row")
    return Interactions.from_frame(frame, rating_col="rating", timestamp_col="ts", name="tiny")


def models() -> dict[str, torch.nn.Module]:
    return {"mf": MF(8), "neumf": NeuMF(mf_dim=4, mlp_dim=6, hidden=(8, 4), dropout=0.0)}


def tiny_sasrec(hidden_size: int = 8, n_items: int | None = 13) -> SASRec:
    """SASRec of one layer, no dropout, sequences of 6; built over ``n_items`` items (plus padding) unless None."""
    torch.manual_seed(0)
    model = SASRec(hidden_size=hidden_size, layers=1, heads=2, inner_size=12, max_len=6, dropout=0.0,
                   attention_dropout=0.0)  # fmt: skip
    if n_items is not None:
        model.build(n_items)
    return model


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max(float((torch.as_tensor(a[k]).float() - torch.as_tensor(b[k]).float()).abs().max()) for k in a)


def _gather_bool(flag: bool) -> list[bool]:
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, flag)
    return out


def _bpr(forward, model, users, positives, negatives, targets) -> torch.Tensor:
    """BPR on (user, positive, negative) triples; ``forward`` is the model or the DMP around it."""
    scores = forward(model.features(torch.cat([users, users]), torch.cat([positives, negatives])))
    return -F.logsigmoid(scores[: len(users)] - scores[len(users) :]).mean()


def _mse(forward, model, users, positives, negatives, targets) -> torch.Tensor:
    """Squared error of the (user, positive) scores; unlike BPR it gives every bias a gradient, which Adam needs
    here: it scales a gradient of rounding noise (a bias that cancels in BPR) up to a full ``lr`` step."""
    return F.mse_loss(forward(model.features(users, positives)), targets)


# ---------------------------------------------------------------------------------------------- plans
def test_plans_use_the_dense_kernel_and_spread_tables() -> None:
    model = NeuMF(mf_dim=4, mlp_dim=5, hidden=(8,))
    model.build(feature_space(tiny_data(), side_features=False))
    for sharding in SHARDINGS:
        plan = plan_for(model, sharding, world_size=2, device_type="cpu").plan["embeddings.collection"]
        assert {p.compute_kernel for p in plan.values()} == {"dense"}, sharding
        assert {p.sharding_type for p in plan.values()} == {sharding}, sharding
    table = plan_for(model, "table_wise", world_size=2, device_type="cpu").plan["embeddings.collection"]
    assert [table[name].ranks for name in ("user", "item")] == [[0], [1]]
    column = plan_for(model, "column_wise", world_size=2, device_type="cpu").plan["embeddings.collection"]
    widths = [s.shard_sizes[1] for s in column["user"].sharding_spec.shards]
    assert widths == [5, 4] and column["user"].ranks == [0, 1]  # 9 columns, split unevenly
    with pytest.raises(ValueError, match="unknown sharding"):
        plan_for(model, "diagonal", world_size=2, device_type="cpu")


def test_fused_tables_shard_table_wise_with_the_fused_kernel_and_refuse_other_plans() -> None:
    model = MF(8)
    model.build(feature_space(tiny_data(), side_features=False), FusedUpdates(min_rows=0))
    plan = plan_for(model, "table_wise", world_size=2, device_type="cpu").plan
    assert list(plan) == ["embeddings.collection.user", "embeddings.collection.item"]
    assert [(p.compute_kernel, p.ranks) for path in plan for p in plan[path].values()] == [("fused", [0]), ("fused", [1])]
    for sharding in ("row_wise", "column_wise", "data_parallel"):
        with pytest.raises(ValueError, match=f"plan '{sharding}' is not supported here: fused tables"):
            plan_for(model, sharding, world_size=2, device_type="cpu")


def test_sasrec_plans_shard_its_embedding_collection_and_refuse_what_torchrec_cannot_run() -> None:
    model = tiny_sasrec()
    for sharding in EC_SHARDINGS:
        plan = plan_for(model, sharding, world_size=2, device_type="cpu").plan
        assert list(plan) == ["item_table"], sharding
        assert plan["item_table"]["item"].sharding_type == sharding
        assert plan["item_table"]["item"].compute_kernel == "dense"
    column = plan_for(model, "column_wise", world_size=2, device_type="cpu").plan["item_table"]["item"]
    assert [s.shard_sizes for s in column.sharding_spec.shards] == [[14, 4], [14, 4]]
    with pytest.raises(ValueError, match="table item_table.item: plan 'row_wise' is not supported here: fbgemm"):
        plan_for(model, "row_wise", world_size=2, device_type="cpu")
    with pytest.raises(ValueError, match="table item_table.item: plan 'column_wise' .* 10 columns do not split"):
        plan_for(tiny_sasrec(hidden_size=10), "column_wise", world_size=4, device_type="cpu")


def test_fbgemm_cpu_dense_kernel_still_returns_a_row_per_bag() -> None:
    """Why row-wise `EmbeddingCollection`s are refused on CPU (and why `rows` sends one id per bag): the unpooled
    dense kernel sums each bag, and an empty bag (its id on another rank) still yields a row. When this fails,
    fbgemm returns a row per id and the refusal in `recsys.distributed._unsupported` can go."""
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import PoolingMode
    from fbgemm_gpu.split_table_batched_embeddings_ops_training import DenseTableBatchedEmbeddingBagsCodegen

    kernel = DenseTableBatchedEmbeddingBagsCodegen([(14, 4)], pooling_mode=PoolingMode.NONE, use_cpu=True)
    out = kernel(torch.tensor([1, 2, 3]), torch.tensor([0, 2, 2, 3]))  # bags [1, 2], [], [3]
    weight = kernel.weights.detach().view(14, 4)
    assert out.shape == (3, 4)
    assert torch.allclose(out[0], weight[1] + weight[2]) and not out[1].any()


# ---------------------------------------------------------------------------------------------- equivalence
def _equivalence_rank(rank: int, world: int, out: str) -> None:
    dist.init_process_group("gloo", rank=rank, world_size=world)
    space = feature_space(tiny_data(), side_features=False)
    results: dict[str, float | bool] = {}
    gen = torch.Generator().manual_seed(11)
    users = torch.randint(0, space.n_users, (12,), generator=gen)
    positives = torch.randint(0, space.n_items, (12,), generator=gen)
    negatives = torch.randint(0, space.n_items, (12,), generator=gen)
    targets = torch.rand(12, generator=gen) * 4 + 1
    mine = slice(rank * 6, (rank + 1) * 6)  # each rank takes its half of the global batch
    for model_name, fresh in models().items():
        for sharding in SHARDINGS:
            case = f"{model_name}/{sharding}"
            torch.manual_seed(0)
            reference = fresh.__class__(**_kwargs(fresh))
            reference.build(space)
            model = copy.deepcopy(reference)
            dmp = shard(model, sharding, "cpu", keep_weights=False)
            load_full_state_dict(model, reference.state_dict())
            results[f"{case}/sharded"] = type(model.embeddings.collection).__name__ == "ShardedEmbeddingBagCollection"
            results[f"{case}/copy"] = _max_diff(full_state_dict(model), reference.state_dict())

            # (a) forward on this rank's rows, through the DMP, and full-catalogue scoring through encode
            kjt = model.features(users[mine], positives[mine])
            results[f"{case}/forward"] = float((dmp(kjt) - reference(kjt)).abs().max())
            with torch.no_grad():
                items = torch.arange(space.n_items)
                got = model.all_scores(model.encode("user", users[mine]), model.encode("item", items))
                want = reference.all_scores(reference.encode("user", users[mine]), reference.encode("item", items))
            results[f"{case}/all_scores"] = float((got - want).abs().max())

            # (b) one SGD step on BPR (scale-sensitive: catches a wrong gradient division), then two Adam steps on
            # MSE. The sharded model trains through the DMP (its DDP all-reduces dense gradients) on this rank's
            # half of the batch with the mean loss; the reference on the whole batch.
            for name, make, loss, steps in (("sgd", lambda p: torch.optim.SGD(p, lr=0.5), _bpr, 1),
                                            ("adam", lambda p: torch.optim.Adam(p, lr=0.05), _mse, 2)):  # fmt: skip
                opt_ref, opt = make(reference.parameters()), make(model.parameters())
                for step in range(steps):
                    roll = torch.roll(torch.arange(12), step)
                    batch = users[roll], positives[roll], negatives[roll], targets[roll]
                    opt_ref.zero_grad()
                    loss(reference, reference, *batch).backward()
                    opt_ref.step()
                    opt.zero_grad()
                    loss(dmp, model, *(x[mine] for x in batch)).backward()
                    opt.step()
                results[f"{case}/{name}_step"] = _max_diff(full_state_dict(model), reference.state_dict())
            # Adam's moments, gathered, equal the unsharded optimiser's (matched by parameter name)
            state, state_ref = full_optimizer_state(model, opt)["state"], opt_ref.state_dict()["state"]
            names = [n for n, _ in model.named_parameters()]
            assert names == [n for n, _ in reference.named_parameters()]
            results[f"{case}/adam_state"] = max(
                _max_diff({k: v for k, v in state[i].items() if k != "step"},
                          {k: v for k, v in state_ref[i].items() if k != "step"})
                for i in range(len(names))
            )  # fmt: skip

            # keep_weights: sharding a model starts the shards from rank 0's weights
            other = copy.deepcopy(reference)
            shard(other, sharding, "cpu", keep_weights=True)
            results[f"{case}/keep_weights"] = _max_diff(full_state_dict(other), reference.state_dict())
            dist.barrier()
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


def _kwargs(model) -> dict:
    if isinstance(model, NeuMF):
        return dict(mf_dim=model.mf_dim, mlp_dim=model.mlp_dim, hidden=model.hidden, dropout=model.dropout)
    return dict(embedding_dim=model.embedding_dim, biases=model.biases)


def _fused_rank(rank: int, world: int, out: str) -> None:
    """Fused tables sharded table-wise against the same fused tables unsharded: forward, full ranking (also under
    inference mode, as Lightning validates), one fused-SGD step on BPR (scale-sensitive: catches a wrong gradient
    division) and two row-wise Adagrad steps, accumulators included, and the gathered state loaded unsharded."""
    dist.init_process_group("gloo", rank=rank, world_size=world)
    space = feature_space(tiny_data(), side_features=False)
    gen = torch.Generator().manual_seed(11)
    users, positives, negatives = (torch.randint(0, n, (12,), generator=gen) for n in (space.n_users, space.n_items, space.n_items))
    mine = slice(rank * 6, (rank + 1) * 6)
    results: dict[str, float | bool] = {}
    for model_name, fresh in models().items():
        for optimizer, lr, steps in (("sgd", 0.5, 1), ("rowwise_adagrad", 0.1, 2)):
            case = f"{model_name}/{optimizer}"
            fused = FusedUpdates(optimizer, lr, min_rows=0)  # type: ignore[arg-type]
            built = []
            for _ in range(2):
                torch.manual_seed(0)
                built.append(fresh.__class__(**_kwargs(fresh)))
                built[-1].build(space, fused)
            reference, model = built
            dmp = shard(model, "table_wise", "cpu")
            results[f"{case}/sharded"] = type(model.embeddings.collection["user"]).__name__ == "ShardedFusedEmbeddingBagCollection"
            results[f"{case}/copy"] = _max_diff(full_state_dict(model), reference.state_dict())
            kjt = model.features(users[mine], positives[mine])
            results[f"{case}/forward"] = float((dmp(kjt) - reference(kjt)).abs().max())
            items = torch.arange(space.n_items)
            for mode, context in (("no_grad", torch.no_grad), ("inference", torch.inference_mode)):
                with context():
                    got = model.all_scores(model.encode("user", users[mine]), model.encode("item", items))
                    want = reference.all_scores(reference.encode("user", users[mine]), reference.encode("item", items))
                results[f"{case}/all_scores_{mode}"] = float((got - want).abs().max())
            dense = lambda m: [p for n, p in m.named_parameters() if not n.startswith("embeddings.")]  # noqa: E731
            opt_ref, opt = torch.optim.SGD(dense(reference), lr=0.5), torch.optim.SGD(dense(model), lr=0.5)
            start = {k: v.clone() for k, v in reference.state_dict().items()}
            for step in range(steps):
                roll = torch.roll(torch.arange(12), step)
                batch = users[roll], positives[roll], negatives[roll], None
                opt_ref.zero_grad()
                _bpr(reference, reference, *batch).backward()
                opt_ref.step()
                opt.zero_grad()
                _bpr(dmp, model, *(x[mine] for x in batch[:3]), None).backward()
                opt.step()
            gathered = full_state_dict(model)
            results[f"{case}/steps"] = _max_diff(gathered, reference.state_dict())
            results[f"{case}/moved"] = _max_diff(gathered, start) > 1e-3  # the steps did update the tables
            unsharded = fresh.__class__(**_kwargs(fresh))
            unsharded.build(space, fused)
            unsharded.load_state_dict(gathered)  # strict: weights and accumulators
            with torch.no_grad():
                results[f"{case}/loaded_scores"] = float((unsharded(kjt) - reference(kjt)).abs().max())
            dist.barrier()
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


def test_fused_sharded_steps_match_fused_unsharded_steps(tmp_path) -> None:
    failures = []
    for rank, results in enumerate(run_ranks(_fused_rank, tmp_path)):
        assert len(results) == 2 * 2 * 8
        for key, value in results.items():
            bad = (value is not True) if isinstance(value, bool) else not (value <= TOL)
            if bad:
                failures.append(f"rank {rank} {key}: {value}")
    assert not failures, "\n".join(failures)


def test_sharded_models_match_unsharded_forward_and_steps(tmp_path) -> None:
    failures = []
    for rank, results in enumerate(run_ranks(_equivalence_rank, tmp_path)):
        assert len(results) == 2 * len(SHARDINGS) * 8
        for key, value in results.items():
            bad = (value is not True) if isinstance(value, bool) else not (value <= TOL)
            if bad:
                failures.append(f"rank {rank} {key}: {value}")
    assert not failures, "\n".join(failures)


def _next_item_ce(forward, model: SASRec, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over all items at every position of ``inputs``/``targets`` ``[B, L]``, as
    `SequentialTask`'s ``ce`` loss; ``forward`` is the model or the DMP around it."""
    hidden = forward(inputs)  # [B, L, d]
    return F.cross_entropy(hidden.reshape(-1, hidden.shape[-1]) @ model.item_vectors().T, targets.reshape(-1))


def _sasrec_rank(rank: int, world: int, out: str) -> None:
    dist.init_process_group("gloo", rank=rank, world_size=world)
    gen = torch.Generator().manual_seed(5)
    inputs = torch.randint(0, 13, (4, 6), generator=gen)
    inputs[0, :3] = inputs[3, :1] = 13  # left padding
    targets = torch.randint(0, 13, (4, 6), generator=gen)
    mine = slice(rank * 2, (rank + 1) * 2)  # each rank takes its half of the global batch (equal positions)
    results: dict[str, float | bool] = {}
    for sharding in EC_SHARDINGS:
        reference = tiny_sasrec()
        model = copy.deepcopy(reference)
        dmp = shard(model, sharding, "cpu")
        results[f"{sharding}/sharded"] = type(model.item_table).__name__ == "ShardedEmbeddingCollection"
        results[f"{sharding}/copy"] = _max_diff(full_state_dict(model), reference.state_dict())
        results[f"{sharding}/forward"] = float((dmp(inputs[mine]) - reference(inputs[mine])).abs().max())
        with torch.no_grad():
            results[f"{sharding}/item_vectors"] = float((model.item_vectors() - reference.item_vectors()).abs().max())

        # an SGD step (catches a wrong gradient division), then an Adam step, on this rank's half with the mean loss
        for name, make in (("sgd", lambda p: torch.optim.SGD(p, lr=0.5)),
                           ("adam", lambda p: torch.optim.Adam(p, lr=0.05))):  # fmt: skip
            opt_ref, opt = make(reference.parameters()), make(model.parameters())
            opt_ref.zero_grad()
            _next_item_ce(reference, reference, inputs, targets).backward()
            opt_ref.step()
            opt.zero_grad()
            _next_item_ce(dmp, model, inputs[mine], targets[mine]).backward()
            opt.step()
            results[f"{sharding}/{name}_step"] = _max_diff(full_state_dict(model), reference.state_dict())
        state, state_ref = full_optimizer_state(model, opt)["state"], opt_ref.state_dict()["state"]
        results[f"{sharding}/adam_state"] = max(
            _max_diff({k: v for k, v in state[i].items() if k != "step"},
                      {k: v for k, v in state_ref[i].items() if k != "step"})
            for i in state_ref
        )  # fmt: skip

        # round trip: the gathered state dict loads strictly into an unsharded SASRec, which scores as the reference
        unsharded = tiny_sasrec()
        unsharded.load_state_dict(full_state_dict(model))
        with torch.no_grad():
            results[f"{sharding}/unsharded_forward"] = float((unsharded(inputs) - reference(inputs)).abs().max())
        dist.barrier()
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


def test_sharded_sasrec_matches_unsharded_forward_steps_and_state(tmp_path) -> None:
    failures = []
    for rank, results in enumerate(run_ranks(_sasrec_rank, tmp_path)):
        assert len(results) == len(EC_SHARDINGS) * 8
        for key, value in results.items():
            bad = (value is not True) if isinstance(value, bool) else not (value <= TOL)
            if bad:
                failures.append(f"rank {rank} {key}: {value}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------- Lightning
def _trainer(max_epochs: int, strategy="torchrec", **kwargs):
    import lightning as L

    return L.Trainer(
        strategy=strategy, devices=WORLD, accelerator="cpu", max_epochs=max_epochs, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kwargs,
    )  # fmt: skip


def _data_module(batch_size: int = 32):
    from recsys.data.modules import InteractionsDataModule
    from recsys.data.splits import per_user_random

    train, valid, test = per_user_random(tiny_data(), (0.7, 0.15, 0.15), seed=1)
    return InteractionsDataModule.from_splits(train, valid, test, batch_size=batch_size, seed=5)


def _trainer_rank(rank: int, world: int, out: str) -> None:
    import lightning as L

    from recsys.tasks.objectives import BPRTask

    L.seed_everything(0, verbose=False)
    task = BPRTask(MF(8), lr=0.05)
    trainer = _trainer(2, enable_checkpointing=False)
    trainer.fit(task, datamodule=_data_module())
    collection = task.model.embeddings.collection
    record = {
        "strategy": type(trainer.strategy).__name__,
        "sharded": type(collection).__name__,
        "local_rows": {n: list(p.shape) for n, p in collection.named_parameters()},
        "ndcg": float(trainer.callback_metrics["val/ndcg@10"]),
        "steps": trainer.global_step,
    }
    test = trainer.test(task, datamodule=_data_module(), verbose=False)[0]
    record["test_ndcg"] = test["test/ndcg@10"]

    # dense layers stay replicated: DDP inside the DMP all-reduces their gradients (NeuMF's MLP)
    neumf = BPRTask(NeuMF(mf_dim=4, mlp_dim=4, hidden=(8,), dropout=0.0), lr=0.05)
    before = None

    class Snapshot(L.Callback):
        def on_train_start(self, trainer, module) -> None:
            nonlocal before
            before = module.model.first.weight.detach().clone()

    _trainer(1, enable_checkpointing=False, limit_val_batches=0, callbacks=[Snapshot()]).fit(
        neumf, datamodule=_data_module()
    )
    record["dense"] = neumf.model.first.weight.detach().flatten().tolist()
    record["dense_moved"] = float((neumf.model.first.weight.detach() - before).abs().max())
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))


def test_trainer_strategy_trains_and_ranks_agree(tmp_path) -> None:
    records = run_ranks(_trainer_rank, tmp_path)
    for rank, record in enumerate(records):
        assert record["strategy"] == "TorchRecStrategy"
        assert record["sharded"] == "ShardedEmbeddingBagCollection"
        assert record["steps"] > 0
        # table-wise: the user table lives on rank 0, the item table on rank 1 (the other rank holds no rows)
        rows = record["local_rows"]
        held = [name.split(".")[1] for name, shape in rows.items() if math.prod(shape) > 0]
        assert held == [["user"], ["item"]][rank], rows
        assert 0.0 < record["ndcg"] <= 1.0 and 0.0 < record["test_ndcg"] <= 1.0
    assert records[0]["ndcg"] == records[1]["ndcg"]
    assert records[0]["test_ndcg"] == records[1]["test_ndcg"]
    assert min(r["dense_moved"] for r in records) > 1e-3
    assert records[0]["dense"] == records[1]["dense"]  # ranks saw different batches: gradients were all-reduced


def _sasrec_trainer_rank(rank: int, world: int, out: str) -> None:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from recsys.distributed import TorchRecStrategy
    from recsys.tasks.sequential import SequentialTask

    records = {}
    for sharding in EC_SHARDINGS:
        L.seed_everything(0, verbose=False)
        task = SequentialTask(tiny_sasrec(n_items=None), lr=0.01, seed=0)
        saver = ModelCheckpoint(dirpath=out, filename=sharding)  # the last epoch's
        trainer = _trainer(2, strategy=TorchRecStrategy(sharding=sharding), callbacks=[saver])
        trainer.fit(task, datamodule=_data_module(8))
        records[sharding] = {
            "sharded": type(task.model.item_table).__name__,
            "steps": trainer.global_step,
            "ndcg": float(trainer.callback_metrics["val/ndcg@10"]),
        }
    Path(out, f"rank{rank}.json").write_text(json.dumps(records))


def test_sasrec_trains_under_the_strategy_and_its_checkpoint_loads_unsharded(tmp_path) -> None:
    from recsys.tasks.sequential import SequentialTask

    records = run_ranks(_sasrec_trainer_rank, tmp_path)
    data = _data_module(8)
    for sharding in EC_SHARDINGS:
        for record in records:
            assert record[sharding]["sharded"] == "ShardedEmbeddingCollection", sharding
            assert record[sharding]["steps"] > 0, sharding
        assert records[0][sharding]["ndcg"] == records[1][sharding]["ndcg"], sharding
        # the checkpoint holds the full item table and its Adam moments: it loads into an unsharded task, which
        # ranks the validation users as the sharded run did (its users split over two ranks)
        checkpoint = torch.load(tmp_path / f"{sharding}.ckpt", weights_only=False)
        task = SequentialTask(tiny_sasrec(n_items=None))
        task.attach(data)
        task.load_state_dict(checkpoint["state_dict"])
        optimizer = task.configure_optimizers()
        optimizer.load_state_dict(checkpoint["optimizer_states"][0])
        table = task.model.item_table.embeddings["item"].weight
        assert optimizer.state[table]["exp_avg"].shape == table.shape == (data.train.n_items + 1, 8), sharding
        unsharded = task.judge(data.valid, [data.train]).summary["ndcg@10"]
        assert abs(unsharded - records[0][sharding]["ndcg"]) <= 1e-6, sharding


# ---------------------------------------------------------------------------------------------- checkpoints
def _checkpoint_rank(rank: int, world: int, out: str) -> None:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from recsys.distributed import TorchRecStrategy
    from recsys.tasks.objectives import MSETask

    def run(sharding: str, epochs: int, ckpt: str | None = None, callbacks=()):
        # MSE, not BPR: under BPR the bias columns get gradients of rounding noise, which Adam scales up to full
        # steps, so runs differing only in summation order (other shardings) would differ by ~lr.
        L.seed_everything(0, verbose=False)
        task = MSETask(MF(8), lr=0.05)
        trainer = _trainer(epochs, strategy=TorchRecStrategy(sharding=sharding), callbacks=list(callbacks),
                           enable_checkpointing=bool(callbacks), limit_val_batches=0)  # fmt: skip
        trainer.fit(task, datamodule=_data_module(), ckpt_path=ckpt)
        optimizer = trainer.strategy.optimizers[0]
        return trainer, task, full_state_dict(task), full_optimizer_state(task, optimizer)

    saver = ModelCheckpoint(dirpath=out, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    _, _, straight, straight_opt = run("row_wise", 2, callbacks=[saver])
    first = str(Path(out, "epoch=0.ckpt"))
    results = {}
    for sharding in ("row_wise", "column_wise", "table_wise"):  # resume under the same and under other shardings
        trainer, task, resumed, resumed_opt = run(sharding, 2, ckpt=first)
        results[f"{sharding}/steps"] = trainer.global_step
        results[f"{sharding}/weights"] = _max_diff(resumed, straight)
        results[f"{sharding}/adam"] = max(
            _max_diff(resumed_opt["state"][i], straight_opt["state"][i]) for i in straight_opt["state"]
        )
    if rank == 0:
        saved = torch.load(Path(out, "epoch=1.ckpt"), weights_only=False)
        results["saved_vs_final"] = _max_diff(saved["state_dict"], straight)
        results["saved_adam_vs_final"] = max(
            _max_diff(saved["optimizer_states"][0]["state"][i], straight_opt["state"][i]) for i in straight_opt["state"]
        )
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))


def _fused_trainer_rank(rank: int, world: int, out: str) -> None:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from recsys.distributed import TorchRecStrategy
    from recsys.tasks.objectives import BPRTask

    def run(epochs: int, ckpt: str | None = None, callbacks=()):
        L.seed_everything(0, verbose=False)
        task = BPRTask(MF(8), lr=0.05, fused_rows=0, fused_lr=0.1, seed=0)
        trainer = _trainer(epochs, strategy=TorchRecStrategy(sharding="table_wise"), callbacks=list(callbacks),
                           enable_checkpointing=bool(callbacks))  # fmt: skip
        trainer.fit(task, datamodule=_data_module(), ckpt_path=ckpt)
        return trainer, task, full_state_dict(task)

    saver = ModelCheckpoint(dirpath=out, filename="fused-{epoch}", save_top_k=-1, every_n_epochs=1)
    trainer, task, straight = run(2, callbacks=[saver])
    _, _, resumed = run(2, ckpt=str(Path(out, "fused-epoch=0.ckpt")))
    record = {"sharded": type(task.model.embeddings.collection["user"]).__name__, "steps": trainer.global_step,
              "ndcg": float(trainer.callback_metrics["val/ndcg@10"]), "resumed": _max_diff(resumed, straight),
              "accumulated": float(straight["model.embeddings.collection.user.embedding_bags.user.momentum1"].sum())}  # fmt: skip
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))


def test_fused_tables_train_under_the_strategy_resume_exactly_and_load_unsharded(tmp_path) -> None:
    """Fused tables under ``strategy="torchrec"`` (validation included), resumed from a checkpoint of the first
    epoch: the accumulators, held by their shard's rank, are gathered into the checkpoint and restored, so the
    resumed run ends where the straight one did; the checkpoint loads into an unsharded fused task as is."""
    from recsys.tasks.objectives import BPRTask

    records = run_ranks(_fused_trainer_rank, tmp_path)
    for record in records:
        assert record["sharded"] == "ShardedFusedEmbeddingBagCollection" and record["steps"] > 0
        assert record["resumed"] <= TOL and record["accumulated"] > 0
    assert records[0]["ndcg"] == records[1]["ndcg"]
    checkpoint = torch.load(tmp_path / "fused-epoch=1.ckpt", weights_only=False)
    data = _data_module()
    task = BPRTask(MF(8), fused_rows=0)
    task.attach(data)
    task.load_state_dict(checkpoint["state_dict"])  # strict: weights and accumulators of both tables
    assert float(task.model.embeddings.state_dict()["collection.user.embedding_bags.user.momentum1"].sum()) == pytest.approx(records[0]["accumulated"])
    assert abs(task.judge(data.valid, [data.train]).summary["ndcg@10"] - records[0]["ndcg"]) <= 1e-6


def test_checkpoint_round_trip_under_sharding(tmp_path) -> None:
    failures = []
    for rank, results in enumerate(run_ranks(_checkpoint_rank, tmp_path)):
        for key, value in results.items():
            if key.endswith("/steps"):
                continue
            if not value <= TOL:
                failures.append(f"rank {rank} {key}: {value}")
        steps = {v for k, v in results.items() if k.endswith("/steps")}
        assert len(steps) == 1, results
    assert not failures, "\n".join(failures)
    # the checkpoint holds full tables: it loads into an unsharded task as is
    from recsys.tasks.objectives import MSETask

    checkpoint = torch.load(tmp_path / "epoch=1.ckpt", weights_only=False)
    task = MSETask(MF(8))
    data = _data_module()
    task.attach(data)
    task.load_state_dict(checkpoint["state_dict"])
    optimizer = task.configure_optimizers()
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    shapes = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    assert shapes["model.embeddings.collection.embedding_bags.user.weight"] == (data.train.n_users, 9)
    moments = optimizer.state_dict()["state"]
    assert {tuple(v["exp_avg"].shape) for v in moments.values()} == {(1,), (data.train.n_users, 9), (data.train.n_items, 9)}
