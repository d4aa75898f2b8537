"""DNIS (`recsys.embeddings.{blocks,selection,mixed,allocation}`, `recsys.tasks.dnis`): frequency blocks and soft
selection against hand-computed cases, masks on every lookup path, pruning and export that keep predictions and
meet the budget, the fixed-rule baselines, the pipeline, and the exported tables under sharding."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from recsys.data.features import feature_space
from recsys.embeddings.allocation import fixed_layouts, full_params, layout_params, pruned_layouts, vector_budget
from recsys.embeddings.blocks import FrequencyBlocks, field_counts
from recsys.embeddings.mixed import FieldLayout, MixedDimTables, SearchedTables
from recsys.embeddings.selection import SoftSelection
from recsys.embeddings.tables import TableSpec
from recsys.models import FM, MF, NeuMF
from recsys.tasks import BPRTask, ClickTask, MSETask
from recsys.tasks.dnis import DNIS, MixedDimensions
from recsys.testing import RecommenderContract, two_communities

TOL = 1e-5


def built(model, data):
    torch.manual_seed(0)
    space = feature_space(data, side_features=model.uses_side_features)
    model.build(space)
    specs = list(model.embeddings.specs.values())
    counts = field_counts(space, data, [s.name for s in specs])
    return space, specs, {n: FrequencyBlocks.from_counts(c, 4) for n, c in counts.items()}


def all_scores(model, n_users: int, n_items: int) -> torch.Tensor:
    with torch.no_grad():
        return model.all_scores(model.encode("user", torch.arange(n_users)), model.encode("item", torch.arange(n_items)))


# ---------------------------------------------------------------------------------------------- blocks, selection
def test_frequency_blocks_sort_ids_by_count_and_cut_by_fraction() -> None:
    blocks = FrequencyBlocks.from_counts(np.array([1, 5, 3, 0, 9, 2, 2]), 3)
    # by count: id4 (9), id1 (5), id2 (3), id5 (2), id6 (2, after id5), id0 (1), id3 (0); cut at round(7/3), round(14/3)
    assert blocks.sizes == (2, 3, 2)
    assert [blocks.ids(b).tolist() for b in range(3)] == [[1, 4], [2, 5, 6], [0, 3]]  # rows in id order
    assert blocks.position.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert blocks.block_of.tolist() == [2, 0, 1, 2, 0, 1, 1]
    assert np.allclose(blocks.mass, (14 / 22, 7 / 22, 1 / 22))
    uneven = FrequencyBlocks.from_counts(np.arange(10), [0.1, 0.2, 0.7])
    assert uneven.sizes == (1, 2, 7) and uneven.ids(0).tolist() == [9]
    assert blocks.block_of.dtype == np.int8
    with pytest.raises(ValueError, match="fractions summing to 1"):
        FrequencyBlocks.from_counts(np.arange(10), [0.5, 0.2])


def test_soft_selection_modes_match_the_authors_formulas() -> None:
    free = SoftSelection(2, 3, "free")
    assert torch.equal(free.weights(), torch.ones(2, 3))
    feature = SoftSelection(3, 2, "feature_block")
    with torch.no_grad():
        feature.alpha.copy_(torch.tensor([1.5, 2.0]))
    # W[b, j] = clamp(alpha_j - b, 0, 1)
    assert torch.allclose(feature.weights(), torch.tensor([[1.0, 1.0], [0.5, 1.0], [0.0, 0.0]]))
    counted = SoftSelection(2, 4, "embedding_block")
    with torch.no_grad():
        counted.alpha.copy_(torch.tensor([2.5, 1.0]))
    # W[b, j] = clamp(alpha_b - j, 0, 1): 2.5 → 1, 1, .5, 0; 1 → 1, 0, 0, 0
    assert torch.allclose(counted.weights(), torch.tensor([[1.0, 1.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]]))
    with torch.no_grad():
        free.alpha.copy_(torch.tensor([[1.7, -0.2, 0.4], [0.0, 2.0, 0.5]]))
    free.clamp_()
    assert torch.allclose(free.alpha, torch.tensor([[1.0, 0.0, 0.4], [0.0, 1.0, 0.5]]))
    free.alpha.grad = torch.tensor([[2.0, -4.0, 6.0], [0.1, 0.1, -0.1]])
    free.normalise_grad_()  # each block row divided by its mean |g|: 4 and 0.1
    assert torch.allclose(free.alpha.grad, torch.tensor([[0.5, -1.0, 1.5], [1.0, 1.0, -1.0]]), atol=1e-6)


def test_dimension_ranks_take_every_group_in_proportion() -> None:
    spec = TableSpec("item", 5, 6, groups=(2, 4))
    ranks = spec.dimension_ranks()
    # relative positions: group 1 at .25, .75; group 2 at .125, .375, .625, .875
    assert ranks.tolist() == [1, 4, 0, 2, 3, 5]
    with pytest.raises(ValueError, match="scalars"):
        TableSpec("x", 3, 2, scalars=2)


# ---------------------------------------------------------------------------------------------- every lookup path
@pytest.fixture(scope="module")
def data():
    return two_communities()[0]


@pytest.mark.parametrize("make", [lambda: MF(6), lambda: FM(4), lambda: NeuMF(4, 4, hidden=(8, 4), dropout=0.0)])
def test_searched_tables_at_full_weight_score_as_the_dense_model(data, make) -> None:
    model = make()
    _, _, blocks = built(model, data)
    model.eval()
    before = all_scores(model, data.n_users, data.n_items)
    model.embeddings = SearchedTables(model.embeddings, blocks)
    assert torch.allclose(all_scores(model, data.n_users, data.n_items), before, atol=TOL)


def test_the_mask_reaches_mf_bprs_margin_path_and_changes_training(data) -> None:
    """MF's fast margin path reads the raw item table; under a selection it must take the masked lookup."""
    model = MF(6)
    _, _, blocks = built(model, data)
    users, positives, negatives = torch.arange(8), torch.arange(8), torch.arange(8, 24).view(8, 2)
    dense_margins = model.score_margins(users, positives, negatives)
    model.embeddings = searched = SearchedTables(model.embeddings, blocks)
    assert torch.allclose(model.score_margins(users, positives, negatives), dense_margins, atol=TOL)
    with torch.no_grad():
        searched.selections["item"].alpha[:, :3] = 0.0
    masked = model.score_margins(users, positives, negatives)
    assert not torch.allclose(masked, dense_margins, atol=1e-3)
    # the margins equal the masked full scores' differences
    scores = model.score_candidates(users, torch.cat([positives[:, None], negatives], 1))
    assert torch.allclose(masked, scores[:, :1] - scores[:, 1:], atol=TOL)

    def trained(alpha_zero: bool) -> torch.Tensor:
        task = BPRTask(MF(6), lr=0.05, seed=1, batches_per_step=1)
        _, _, blocks = built(task.model, data)
        task.model.embeddings = tables = SearchedTables(task.model.embeddings, blocks)
        if alpha_zero:
            with torch.no_grad():
                tables.selections["item"].alpha[:, :3] = 0.0
        task.fit(data, None, max_epochs=2, batch_size=64)
        return tables.weight("user").detach().clone()

    assert not torch.allclose(trained(False), trained(True), atol=1e-4)


# ---------------------------------------------------------------------------------------------- pruning and export
@pytest.mark.parametrize("make", [lambda: MF(6), lambda: FM(4), lambda: NeuMF(4, 4, hidden=(8, 4), dropout=0.0)])
def test_export_scores_as_the_pruned_search_and_stores_only_the_budget(data, make) -> None:
    model = make()
    _, specs, blocks = built(model, data)
    model.eval()
    model.embeddings = searched = SearchedTables(model.embeddings, blocks)
    with torch.no_grad():
        for s in searched.selections.values():
            s.alpha.uniform_(0.0, 1.0, generator=torch.Generator().manual_seed(2))
    layouts = pruned_layouts(searched.column_magnitudes(), specs, blocks, budget=0.4)
    searched.prune_(layouts)
    pruned = all_scores(model, data.n_users, data.n_items)
    exported = searched.export(layouts)
    model.embeddings = exported
    assert torch.allclose(all_scores(model, data.n_users, data.n_items), pruned, atol=TOL)
    stored = sum(p.numel() for p in exported.collection.parameters())
    assert stored == exported.embedding_params() == layout_params(specs, layouts)
    kept = stored - sum(s.num_embeddings * s.scalars for s in specs)  # short of the budget by less than one column
    assert vector_budget(specs, 0.4) - max(max(blocks[s.name].sizes) for s in specs) < kept <= vector_budget(specs, 0.4)
    assert stored <= 0.4 * full_params(specs)


def test_magnitude_pruning_keeps_the_largest_columns_within_the_budget() -> None:
    spec = TableSpec("item", 4, 3, scalars=1)  # 2 vector dims + a bias
    blocks = FrequencyBlocks.from_counts(np.array([4, 3, 2, 1]), 2)  # two blocks of 2 rows
    magnitudes = {"item": np.array([[0.9, 0.1], [0.5, 0.3]])}
    # budget 0.5 of 12 entries = 6; biases take 4; 2 left = one column of one block: the 0.9 one
    layouts = pruned_layouts(magnitudes, [spec], {"item": blocks}, budget=0.5)
    assert [c.tolist() for c in layouts["item"].columns] == [[0], []]
    # thresholds are in units of the field's mean magnitude (.45 here): 2, .22 / 1.11, .67
    layouts = pruned_layouts(magnitudes, [spec], {"item": blocks}, threshold=0.6, nested=False)
    assert [c.tolist() for c in layouts["item"].columns] == [[0], [0, 1]]
    # nested: one dimension order (by rows · magnitude: dim 0 = 2·.9 + 2·.2, dim 1 = 2·.1 + 2·.3), prefixes of it;
    # each block keeps as many as it has columns over the threshold (.8 for block 1's best), but from the order
    magnitudes = {"item": np.array([[0.9, 0.1], [0.2, 0.3]])}
    layouts = pruned_layouts(magnitudes, [spec], {"item": blocks}, threshold=0.6)
    assert [c.tolist() for c in layouts["item"].columns] == [[0], [0]]
    free = pruned_layouts(magnitudes, [spec], {"item": blocks}, threshold=0.6, nested=False)
    assert [c.tolist() for c in free["item"].columns] == [[0], [1]]
    # fields compete on magnitudes relative to their own mean: a table at ten times the scale gains nothing
    user = TableSpec("user", 4, 3, scalars=1)
    both = pruned_layouts({"item": magnitudes["item"], "user": 10 * magnitudes["item"]}, [spec, user],
                          {"item": blocks, "user": blocks}, budget=0.5, nested=False)  # fmt: skip
    assert both["item"].dims == both["user"].dims
    with pytest.raises(ValueError, match="scalar columns"):
        pruned_layouts(magnitudes, [spec], {"item": blocks}, budget=0.2)


def test_fixed_rules_meet_their_budget_and_mde_favours_frequent_blocks(data) -> None:
    model = MF(16)
    _, specs, blocks = built(model, data)
    for rule in ("uniform", "mde", "random"):
        for budget in (1.0, 0.5, 0.25):
            layouts = fixed_layouts(rule, specs, blocks, budget, seed=3)
            assert layout_params(specs, layouts) <= budget * full_params(specs)
            if budget == 1.0:
                assert layout_params(specs, layouts) == full_params(specs)
    mde = fixed_layouts("mde", specs, blocks, 0.25)
    assert all(np.all(np.diff(mde[s.name].dims) <= 0) for s in specs)  # block 0 is the most frequent
    random = fixed_layouts("random", specs, blocks, 0.25, seed=3)
    assert all(np.all(np.diff(random[s.name].dims) <= 0) for s in specs)
    assert any(fixed_layouts("random", specs, blocks, 0.25, seed=s)["item"].dims != random["item"].dims for s in (4, 5, 6))
    uniform = fixed_layouts("uniform", specs, blocks, 0.5)
    assert len({d for s in specs for d in uniform[s.name].dims}) == 1


def test_mixed_tables_of_a_multi_valued_field_pool_like_the_dense_table(rich) -> None:
    """A genre bag whose ids fall in different blocks is averaged over the whole bag, not per block."""
    data = rich
    model = FM(4)
    _, specs, blocks = built(model, data)
    assert data.n_items and "genres" in model.embeddings.specs
    model.eval()
    model.embeddings = searched = SearchedTables(model.embeddings, blocks)
    before = all_scores(model, data.n_users, data.n_items)
    full = {s.name: FieldLayout(blocks[s.name], tuple(np.arange(s.vector_dim) for _ in blocks[s.name].sizes)) for s in specs}
    model.embeddings = searched.export(full)
    assert torch.allclose(all_scores(model, data.n_users, data.n_items), before, atol=TOL)


# ---------------------------------------------------------------------------------------------- the pipeline
def rated(n_users: int = 40, n_items: int = 30, seed: int = 3):
    """Users rate 12 random items 1–5, higher for items of their own half (so ratings are learnable)."""
    import polars as pl

    from recsys.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, 12, replace=False):
            own = (u < n_users // 2) == (i < n_items // 2)
            rows.append((f"u{u}", f"i{i}", float(np.clip(rng.normal(4.0 if own else 2.0, 0.7), 1, 5).round())))
    return Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "rating"], orient="row"), rating_col="rating")


def split_train(data):
    import polars as pl

    frame = data.frame.with_row_index("row")
    valid = frame.filter(pl.col("row") % 5 == 0).drop("row")
    return data.with_frame(frame.filter(pl.col("row") % 5 != 0).drop("row")), data.with_frame(valid)


def test_dnis_searches_prunes_exports_and_reports(tmp_path) -> None:
    train, valid = split_train(rated())
    dnis = DNIS(MSETask(MF(8), lr=0.01, batches_per_step=1), blocks=3, budget=0.5, warm_start_epochs=2,
                search_epochs=2, retrain_epochs=1, batch_size=64, seed=5)  # fmt: skip
    dnis.fit(train, valid)
    assert isinstance(dnis.task.model.embeddings, MixedDimTables)
    report = dnis.report_
    assert report["embedding_params"] <= 0.5 * report["full_params"]
    assert report["embedding_bytes"] == 4 * report["embedding_params"]
    assert len(report["search"]) == 2 and all(np.isfinite(r["val_loss"]) for r in report["search"])
    assert any(not np.allclose(w, 1.0) for w in dnis.selection_.values()), "the search did not move alpha"
    ev = dnis.judge(valid, [train])
    assert "rmse" in ev.summary and np.isfinite(ev.summary["rmse"])
    files = dnis.write_report(tmp_path)
    assert all(f.exists() and f.stat().st_size > 0 for f in files)
    assert json.loads((tmp_path / "embeddings.json").read_text())["embedding_params"] == report["embedding_params"]
    rec = dnis.recommend([train.users.decode(np.array([0]))[0]], k=3)
    assert len(rec) == 3


def test_dnis_holds_out_a_validation_share_and_refuses_both_or_neither_budget(data) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        DNIS(MSETask(MF(4)), budget=None, threshold=None)
    with pytest.raises(ValueError, match="budget"):
        MixedDimensions(MSETask(MF(4)), budget=1.5)
    held = DNIS(BPRTask(MF(4), batches_per_step=1), warm_start_epochs=1, search_epochs=0, seed=1).fit(data, None)
    assert held.task.train_data.frame.height == data.frame.height - round(0.1 * data.frame.height)
    assert held.train_data is data  # recommendations still exclude every training item


def test_second_order_search_runs_and_moves_alpha_differently() -> None:
    train, valid = split_train(rated())

    def alphas(second: bool) -> np.ndarray:
        dnis = DNIS(ClickTask(MF(4), lr=0.01, label_threshold=1.0, batches_per_step=1), blocks=2, budget=1.0,
                    warm_start_epochs=0, search_epochs=1, batch_size=64, seed=2, second_order=second, lr_alpha=0.1)  # fmt: skip
        dnis.fit(train, valid)
        return dnis.selection_["item"]

    first, second = alphas(False), alphas(True)
    assert np.isfinite(second).all() and not np.allclose(first, second)


class TestMixedDimensionsContract(RecommenderContract):
    def make_model(self):
        return MixedDimensions(BPRTask(MF(8), lr=0.02, batches_per_step=1), rule="mde", blocks=3, budget=0.5,
                               epochs=15, batch_size=64, seed=3)  # fmt: skip


class TestDNISContract(RecommenderContract):
    def make_model(self):
        return DNIS(BPRTask(MF(8), lr=0.02, batches_per_step=1), blocks=3, budget=0.5, warm_start_epochs=15,
                    search_epochs=1, batch_size=64, seed=3)  # fmt: skip


# ---------------------------------------------------------------------------------------------- sharding
def _sharded_rank(rank: int, world: int, out: str) -> None:
    from recsys.distributed import full_state_dict, shard

    dist.init_process_group("gloo", rank=rank, world_size=world)
    train = two_communities()[0]
    results: dict[str, float | bool] = {}
    for sharding in ("table_wise", "column_wise", "row_wise", "data_parallel"):
        reference = MF(6)
        _, specs, blocks = built(reference, train)
        torch.manual_seed(1)
        reference.embeddings = MixedDimTables(specs, fixed_layouts("mde", specs, blocks, 0.5))
        model = copy.deepcopy(reference)
        shard(model, sharding, "cpu")
        results[f"{sharding}/sharded"] = type(model.embeddings.collection).__name__ != "EmbeddingBagCollection"
        users, items = torch.arange(rank * 10, rank * 10 + 10), torch.arange(10)
        results[f"{sharding}/scores"] = float((model.score_pairs(users, items) - reference.score_pairs(users, items)).abs().max())
        state = full_state_dict(model)
        results[f"{sharding}/state"] = max(float((state[k] - v).abs().max()) for k, v in reference.state_dict().items())
        dist.barrier()
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


def test_exported_mixed_tables_shard_and_score_as_unsharded(tmp_path) -> None:
    from recsys.distributed import spawn

    spawn(_sharded_rank, 2, str(tmp_path), start_method="forkserver")
    failures = []
    for rank in range(2):
        for key, value in json.loads((tmp_path / f"rank{rank}.json").read_text()).items():
            if (value is not True) if isinstance(value, bool) else not value <= TOL:
                failures.append(f"rank {rank} {key}: {value}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------- the command
def test_recsys_fit_of_a_dnis_yaml_writes_the_allocation_report_and_a_loadable_model(tmp_path, monkeypatch) -> None:
    import yaml

    import recsys
    from recsys.cli import main

    from recsys.resources import experiment

    config = yaml.safe_load(experiment("ml-100k/dnis-mf-rating").read_text())
    args = config["recommender"]["init_args"]
    args["task"]["init_args"]["model"]["init_args"]["embedding_dim"] = 8
    args.update(warm_start_epochs=1, search_epochs=1, retrain_epochs=1, budget=0.25)
    path = tmp_path / "dnis-tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    assert main(["fit", "--config", str(path)]) == 0
    (folder,) = (tmp_path / "runs" / "ml-100k" / "dnis-tiny").glob("version_*")
    for name in ("allocation.csv", "allocation.png", "embeddings.json", "results.json", "report.md"):
        assert (folder / name).stat().st_size > 0, name
    sizes = json.loads((folder / "embeddings.json").read_text())
    assert sizes["embedding_params"] <= 0.25 * sizes["full_params"]
    loaded = recsys.load(folder / "model")
    assert loaded.task.model.embeddings.embedding_params() == sizes["embedding_params"]
    rmse = json.loads((folder / "results.json").read_text())[0]["metrics"]["rmse"]
    from recsys.data.splits import split

    train, valid, test = split(recsys.datasets.load("ml-100k"), "global-721", seed=2026)
    assert loaded.judge(test, [train, valid]).summary["rmse"] == pytest.approx(rmse, abs=1e-6)


def _strategy_rank(rank: int, world: int, out: str) -> None:
    import lightning as L

    from test_distributed import _data_module, _trainer

    L.seed_everything(0, verbose=False)
    data = _data_module()
    task = BPRTask(MF(8), lr=0.05)
    _, specs, blocks = built(task.model, data.train)
    task.model.embeddings = MixedDimTables(specs, fixed_layouts("mde", specs, blocks, 0.5))
    trainer = _trainer(2, enable_checkpointing=False)
    trainer.fit(task, datamodule=data)
    record = {"sharded": type(task.model.embeddings.collection).__name__, "steps": trainer.global_step,
              "ndcg": float(trainer.callback_metrics["val/ndcg@10"])}  # fmt: skip
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))


def test_mixed_dimension_tables_train_under_the_torchrec_strategy(tmp_path) -> None:
    from recsys.distributed import spawn

    spawn(_strategy_rank, 2, str(tmp_path), start_method="forkserver")
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["sharded"] == "ShardedEmbeddingBagCollection" and r["steps"] > 0 for r in records)
    assert 0.0 < records[0]["ndcg"] == records[1]["ndcg"] <= 1.0  # both ranks judge the same sharded model
