"""Sharding from outside the model: TorchRec `DistributedModelParallel` plans, full-table state dicts, and a Lightning
strategy (``Trainer(strategy="torchrec")``) that shards a `RecommenderTask`'s tables across ranks.

Models never mention sharding. `shard` wraps any module holding `EmbeddingBagCollection`s (pooled lookups: MF,
NeuMF, ...) or `EmbeddingCollection`s (one vector per id: SASRec's item table) in a `DistributedModelParallel`
(DMP): the collections are swapped for sharded ones in place, and the dense rest is data-parallel (DDP). The same
code runs on CPUs (gloo) and GPUs (nccl)::

    dist.init_process_group("gloo")                 # or launched by torchrun / Lightning
    model = MF(64); model.build(space)
    sharded = shard(model, "row_wise")              # model.embeddings.collection is now sharded
    scores = sharded(kjt)                           # [B], identical to the unsharded model's

    trainer = L.Trainer(strategy="torchrec", devices=2, accelerator="cpu")   # or TorchRecStrategy("column_wise")

Plans are built by hand (`plan_for`) rather than by TorchRec's planner, because the planner offers row-wise
sharding of bag collections only on CUDA; hand-built plans work the same on both device types. Dense tables
(`EmbeddingBagCollection`) use the ``dense`` compute kernel: backward fills ``.grad`` of each table shard (a
`TableBatchedEmbeddingSlice`) and any ``torch.optim`` optimiser steps it. Tables that update themselves
(`FusedEmbeddingBagCollection`, see `recsys.embeddings.tables.FusedUpdates`) use the ``fused`` kernel, the same
FBGEMM kernel and optimiser-inside-backward as unsharded, table-wise (TorchRec's fused sharder offers row-wise only
on CUDA, and column shards would each keep their own row-wise Adagrad accumulator).

Gradients: TorchRec divides the gradients of sharded tables by the world size and DDP averages dense and
data-parallel gradients, so a step on ``world_size`` local batches of mean losses equals one unsharded step on
their union with the mean loss.

Checkpoints hold *full* tables (and full optimiser moments; fused tables' accumulators, held by the rank of their
shard), gathered from the shards, so a checkpoint written under any sharding loads into an unsharded model, into
another sharding, or back into the same one.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any, Iterator, Literal, Mapping, get_args

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.fabric.utilities.optimizer import _optimizers_to_device
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from lightning.pytorch.strategies.ddp import _DDPForwardRedirection
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torch.nn.parallel import DistributedDataParallel
from torchrec import EmbeddingBagCollection, EmbeddingCollection
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.fused_embeddingbag import FusedEmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DefaultDataParallelWrapper, DistributedModelParallel
from torchrec.distributed.sharding_plan import (
    column_wise,
    construct_module_sharding_plan,
    data_parallel,
    row_wise,
    table_wise,
)
from torchrec.distributed.types import ModuleSharder, ShardingEnv, ShardingPlan
from torchrec.modules.embedding_configs import BaseEmbeddingConfig
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection

Sharding = Literal["table_wise", "row_wise", "column_wise", "data_parallel"]
SHARDINGS: tuple[str, ...] = get_args(Sharding)
DENSE = EmbeddingComputeKernel.DENSE.value
FUSED = EmbeddingComputeKernel.FUSED.value


# ---------------------------------------------------------------------------------------------- plans
Collection = EmbeddingBagCollection | EmbeddingCollection | FusedEmbeddingBagCollection


def embedding_collections(module: nn.Module) -> dict[str, Collection]:
    """Unsharded `EmbeddingBagCollection`s (pooled lookups), `FusedEmbeddingBagCollection`s (pooled, updated in
    backward) and `EmbeddingCollection`s (one vector per id) inside ``module``, by module path
    (``"model.embeddings.collection"``, ``"model.embeddings.collection.user"``, ``"model.item_table"``)."""
    kinds = (EmbeddingBagCollection, EmbeddingCollection, FusedEmbeddingBagCollection)
    return {path: m for path, m in module.named_modules() if isinstance(m, kinds)}


def _configs(collection: Collection) -> list[BaseEmbeddingConfig]:
    if isinstance(collection, EmbeddingCollection):
        return list(collection.embedding_configs())
    return list(collection.embedding_bag_configs())


def _sharder(collection: Collection) -> ModuleSharder[nn.Module]:
    if isinstance(collection, EmbeddingBagCollection):
        return EmbeddingBagCollectionSharder()
    if isinstance(collection, FusedEmbeddingBagCollection):
        return FusedEmbeddingBagCollectionSharder()
    return EmbeddingCollectionSharder()


def _sharders() -> list[ModuleSharder[nn.Module]]:
    """A sharder for each collection kind, for `DistributedModelParallel`."""
    return [EmbeddingBagCollectionSharder(), EmbeddingCollectionSharder(), FusedEmbeddingBagCollectionSharder()]


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _column_split(dim: int, world_size: int) -> list[int]:
    """Columns per shard: as even as possible over ``min(world_size, dim)`` ranks (``[5, 4]`` for 9 over 2)."""
    n = min(world_size, dim)
    return [dim // n + (1 if r < dim % n else 0) for r in range(n)]


def plan_for(
    module: nn.Module,
    sharding: Sharding = "table_wise",
    world_size: int | None = None,
    device_type: str | None = None,
    local_size: int | None = None,
) -> ShardingPlan:
    """A `ShardingPlan` sharding every table of every embedding collection in ``module`` the same way.

    Args:
        module: the model (or LightningModule) holding the collections (`EmbeddingBagCollection`s and
            `EmbeddingCollection`s), unsharded.
        sharding: ``table_wise`` (whole tables, round-robin over ranks in table order), ``row_wise`` (each table's
            rows split evenly over all ranks), ``column_wise`` (each table's columns split as evenly as possible
            over all ranks, e.g. 65 columns over 2 ranks as 33 + 32) or ``data_parallel`` (every rank holds every
            table; gradients all-reduced). An `EmbeddingCollection` refuses (ValueError naming the table and plan)
            ``row_wise`` on CPU and ``column_wise`` of a width that does not split evenly (see `_unsupported`).
        world_size: ranks (default: the initialised process group's size, else 1).
        device_type: ``cpu`` or ``cuda`` (default: cuda when available and the process group is nccl's).
        local_size: ranks per host (default ``$LOCAL_WORLD_SIZE`` or ``world_size``).

    Returns:
        Plan keyed by collection path; every table uses the ``dense`` compute kernel, except the tables of a
        `FusedEmbeddingBagCollection` (``fused``, table-wise only: other plans are refused, see `_unsupported`).
    """
    if sharding not in SHARDINGS:
        raise ValueError(f"unknown sharding {sharding!r}; choose one of {list(SHARDINGS)}")
    world_size = world_size or _world_size()
    device_type = device_type or _default_device().type
    local_size = local_size or int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    plan: dict[str, Any] = {}
    next_rank = 0
    collections = embedding_collections(module)
    if not collections:
        raise ValueError(f"{type(module).__name__} holds no unsharded embedding collection to shard")
    for path, collection in collections.items():
        generators = {}
        for config in _configs(collection):
            reason = _unsupported(collection, config, sharding, world_size, device_type)
            if reason:
                raise ValueError(f"table {path}.{config.name}: plan {sharding!r} is not supported here: {reason}")
            if sharding == "table_wise":
                kernel = FUSED if isinstance(collection, FusedEmbeddingBagCollection) else DENSE
                generators[config.name] = table_wise(rank=next_rank % world_size, compute_kernel=kernel)
                next_rank += 1
            elif sharding == "row_wise":
                generators[config.name] = row_wise(compute_kernel=DENSE)
            elif sharding == "column_wise":
                sizes = _column_split(config.embedding_dim, world_size)
                even = len(set(sizes)) == 1
                generators[config.name] = (
                    column_wise(ranks=list(range(len(sizes))), compute_kernel=DENSE)
                    if even
                    else column_wise(size_per_rank=sizes, compute_kernel=DENSE)
                )
            else:
                generators[config.name] = data_parallel()  # its only kernel is dense
        plan[path] = construct_module_sharding_plan(
            collection, generators, sharder=_sharder(collection), local_size=local_size, world_size=world_size,
            device_type=device_type,
        )  # fmt: skip
    return ShardingPlan(plan)


def _unsupported(
    collection: Collection, config: BaseEmbeddingConfig, sharding: str, world_size: int, device_type: str
) -> str | None:
    """Why TorchRec cannot run ``sharding`` of this table (with its collection's kernel), or None when it can."""
    if isinstance(collection, FusedEmbeddingBagCollection):
        if sharding == "table_wise":
            return None
        return (
            "fused tables (updated in backward) shard table-wise only here: TorchRec's fused sharder offers row-wise "
            "only on CUDA, column shards would each keep their own row-wise Adagrad accumulator, and data-parallel "
            "fused state is not checkpointed by TorchRec; use table_wise, or dense tables (fused_rows: null)"
        )
    if not isinstance(collection, EmbeddingCollection):
        return None
    if sharding == "row_wise" and device_type == "cpu":
        return (
            "fbgemm's CPU dense kernel returns one row per bag of an EmbeddingCollection, not one per id, so the bags "
            "whose ids live on other ranks break the output all-to-all; use table_wise, column_wise or data_parallel"
        )
    if sharding == "column_wise" and config.embedding_dim % world_size:
        return (
            f"an EmbeddingCollection's column shards must be equal, and {config.embedding_dim} columns do not split "
            f"evenly over {world_size} ranks"
        )
    return None


def _default_device() -> torch.device:
    nccl = dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl"
    if nccl and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------- sharding
def shard(
    module: nn.Module,
    sharding: Sharding = "table_wise",
    device: torch.device | str | None = None,
    *,
    keep_weights: bool = True,
    data_parallel_wrapper: DefaultDataParallelWrapper | None = None,
) -> DistributedModelParallel:
    """Shard ``module``'s embedding tables over the default process group; the dense rest becomes DDP.

    Args:
        module: unsharded module (its collections are replaced in place by sharded ones).
        sharding: see `plan_for`.
        device: compute device of this rank (default: ``cuda:$LOCAL_RANK`` under nccl, else cpu).
        keep_weights: start the shards from rank 0's current table weights (broadcast, then each rank copies its
            slice), so a sharded model equals the unsharded one it came from; without it TorchRec re-initialises
            the shards from each table's ``init_fn``. Ignored for tables on the meta device.
        data_parallel_wrapper: TorchRec's DDP wrapper of the dense part (default: no static graph, no unused
            parameter search).

    Returns:
        The DMP; ``dmp(*args)`` calls ``module``'s forward through DDP.
    """
    device = torch.device(device) if device is not None else _default_device()
    world = _world_size()
    plan = plan_for(module, sharding, world_size=world, device_type=device.type)
    full: dict[str, torch.Tensor] = {}
    if keep_weights:
        for path in embedding_collections(module):
            owner = module.get_submodule(path)
            for key, value in owner.state_dict().items():
                if value.device.type != "meta":
                    full[f"{path}.{key}"] = value.detach().to(device).clone()
        if world > 1:
            for value in full.values():
                dist.broadcast(value, src=0)
    dmp = DistributedModelParallel(
        module,
        env=ShardingEnv.from_process_group(dist.group.WORLD),
        device=device,
        plan=plan,
        sharders=_sharders(),
        data_parallel_wrapper=data_parallel_wrapper or DefaultDataParallelWrapper(static_graph=False),
    )
    if full:
        load_full_state_dict(dmp.module, full, strict=False)
    return dmp


# ---------------------------------------------------------------------------------------------- state
def _slices(offsets: list[int], sizes: list[int]) -> tuple[slice, ...]:
    return tuple(slice(o, o + s) for o, s in zip(offsets, sizes))


@contextmanager
def _sharded_tensor_notices_off() -> Iterator[None]:
    """TorchRec's state dicts still hold ``ShardedTensor``s, which warn on every use that DTensor replaces them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ShardedTensor.*", category=FutureWarning)
        yield


def _layout(module: nn.Module) -> dict[str, tuple[tuple[int, ...], tuple[slice, ...] | None]]:
    """``{state key: (full shape, this rank's slice of it or None)}`` of every sharded tensor in ``module``."""
    with _sharded_tensor_notices_off():
        return _layout_of(module.state_dict())


def _layout_of(state: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], tuple[slice, ...] | None]]:
    layout = {}
    for key, value in state.items():
        if isinstance(value, ShardedTensor):
            shards = value.local_shards()
            if len(shards) > 1:
                raise NotImplementedError(f"{key}: more than one shard per rank")
            where = _slices(shards[0].metadata.shard_offsets, shards[0].metadata.shard_sizes) if shards else None
            layout[key] = (tuple(value.size()), where)
    return layout


def full_state_dict(module: nn.Module) -> dict[str, Any]:
    """``module.state_dict()`` with every sharded table gathered into a full CPU tensor, on every rank.

    Collective: every rank must call it. The result is the state dict of the unsharded module.
    """
    with _sharded_tensor_notices_off():
        return _full_state_dict(module)


def _full_state_dict(module: nn.Module) -> dict[str, Any]:
    state = module.state_dict()
    sharded = {k: v for k, v in state.items() if isinstance(v, ShardedTensor)}
    if not sharded:
        return state
    world = dist.get_world_size()
    # Entries only some ranks hold: a table-wise fused table's optimiser state lives on the rank of its shard.
    names: list[Any] = [None] * world
    dist.all_gather_object(names, [k for k in state if k not in sharded])
    held_by_some = set().union(*names) - set.intersection(*map(set, names))
    mine = {
        k: [(s.metadata.shard_offsets, s.metadata.shard_sizes, s.tensor.detach().cpu()) for s in v.local_shards()]
        for k, v in sharded.items()
    }
    held = {k: state[k].detach().cpu() for k in held_by_some if k in state}
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (mine, held))
    out = {}
    for key, value in state.items():
        if key in sharded:
            full = torch.empty(tuple(value.size()), dtype=value.dtype)
            for pieces, _ in gathered:
                for offsets, sizes, tensor in pieces[key]:
                    full[_slices(offsets, sizes)] = tensor
            out[key] = full
        elif key not in held_by_some:
            out[key] = value
    for _, entries in gathered:
        out.update(entries)
    return out


def load_full_state_dict(module: nn.Module, state: Mapping[str, Any], strict: bool = True) -> None:
    """Load an unsharded state dict (full tables) into a possibly sharded ``module``: each rank keeps its slice.

    Not collective. The sharded collections' load hooks slice the full tables; a table missing from ``state`` keeps
    its weights (a sharded `EmbeddingCollection`'s hook requires every key, so it is handed its own shard).
    """
    with _sharded_tensor_notices_off():
        local = module.state_dict()
        layout = _layout_of(local)
        for key, (shape, _) in layout.items():
            value = state.get(key)
            if value is not None and tuple(value.shape) != shape:
                raise RuntimeError(f"{key}: checkpoint shape {tuple(value.shape)} != model shape {shape}")
        result = module.load_state_dict({**{k: local[k] for k in layout}, **state}, strict=False)
    if strict:
        missing = [*result.missing_keys, *(k for k in layout if k not in state)]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {result.unexpected_keys}")


def _indexed_params(module: nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[torch.Tensor, str | None]]:
    """The optimiser's parameters in its state-dict index order, with their names in ``module``."""
    names = {id(p): n for n, p in module.named_parameters(remove_duplicate=False)}
    return [(p, names.get(id(p))) for group in optimizer.param_groups for p in group["params"]]


def full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with the per-element state of sharded tables (Adam's moments) gathered into
    full-table tensors, on every rank; what the same optimiser over the unsharded module would hold.

    Collective: every rank must call it.
    """
    optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer
    state_dict = optimizer.state_dict()
    layout = _layout(module)
    params = _indexed_params(module, optimizer)
    sharded = {i: name for i, (_, name) in enumerate(params) if name in layout}
    if not sharded or _world_size() == 1:
        return state_dict
    mine = {}
    for i, name in sharded.items():
        entry, where = state_dict["state"].get(i), layout[name][1]
        if entry is None or where is None:
            continue
        local_shape = tuple(params[i][0].shape)
        mine[i] = (
            where,
            {k: v.detach().cpu() if torch.is_tensor(v) and tuple(v.shape) == local_shape else v for k, v in entry.items()},
        )
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    state = {i: v for i, v in state_dict["state"].items() if i not in sharded}
    for i, name in sharded.items():
        parts = [g[i] for g in gathered if i in g]
        if not parts:
            continue
        shape = layout[name][0]
        merged: dict[str, Any] = {}
        for key, value in parts[0][1].items():
            if torch.is_tensor(value) and value.dim() == len(shape) and value.dim() > 0:
                full = torch.zeros(shape, dtype=value.dtype)
                for where, entry in parts:
                    full[where] = entry[key]
                merged[key] = full
            else:
                merged[key] = value
        state[i] = merged
    return {"state": dict(sorted(state.items())), "param_groups": state_dict["param_groups"]}


def load_full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, full: Mapping[str, Any]) -> None:
    """Load a `full_optimizer_state` (or an unsharded optimiser's state dict): each rank keeps its shards' slices."""
    optimizer = getattr(optimizer, "_optimizer", optimizer)
    layout = _layout(module)
    params = _indexed_params(module, optimizer)
    state = {}
    for i, entry in full["state"].items():
        name = params[int(i)][1]
        if name not in layout:
            state[i] = entry
            continue
        shape, where = layout[name]
        if where is None:
            continue  # this rank holds no part of the table
        state[i] = {k: v[where].clone() if torch.is_tensor(v) and tuple(v.shape) == shape else v for k, v in entry.items()}
    optimizer.load_state_dict({"state": state, "param_groups": full["param_groups"]})


# ---------------------------------------------------------------------------------------------- Lightning
def _inner_ddp(wrapper: nn.Module) -> DistributedDataParallel | None:
    """The DDP that a DMP wraps its module in (None before `init_data_parallel` or without dense parameters)."""
    inner = getattr(wrapper, "_dmp_wrapped_module", wrapper)
    return inner if isinstance(inner, DistributedDataParallel) else None


class _DMPForwardRedirection(_DDPForwardRedirection):
    """Lightning's DDP redirection, pointed at the DDP inside the DMP (manual optimisation toggles its sync)."""

    def on_after_inner_forward(self, wrapper_module: nn.Module, original_module: pl.LightningModule) -> None:
        super().on_after_inner_forward(_inner_ddp(wrapper_module) or wrapper_module, original_module)

    def on_after_outer_forward(self, wrapper_module: nn.Module, original_module: pl.LightningModule) -> None:
        super().on_after_outer_forward(_inner_ddp(wrapper_module) or wrapper_module, original_module)


class TorchRecStrategy(DDPStrategy):
    """DDP with the LightningModule's embedding tables sharded by TorchRec's ``DistributedModelParallel``.

    ``training_step``/``validation_step``/... run inside the DMP → DDP wrapper (Lightning's forward redirection,
    as for DDP), so dense gradients are all-reduced, and the sharded lookups run their all-to-alls. Tables are
    sharded in every stage (fit, validate, test, predict), since sharded lookups are collective. Checkpoints hold
    full tables and full optimiser state (see `full_state_dict`, `full_optimizer_state`), loaded after sharding,
    so they resume under any sharding or none.

    Registered as ``"torchrec"`` (table-wise; processes launched like ``"ddp"``: the script re-run per rank, or
    externally by ``torchrun``/`spawn`). Backend: gloo on CPU, nccl on CUDA. DDP communication hooks and model
    averaging are not supported.

    Args:
        sharding: ``table_wise``, ``row_wise``, ``column_wise`` or ``data_parallel`` (see `plan_for`).
        keep_weights: start the shards from rank 0's initial tables (see `shard`).
        static_graph, find_unused_parameters, **kwargs: passed to the DDP of the dense part.
    """

    strategy_name = "torchrec"

    def __init__(
        self,
        sharding: Sharding = "table_wise",
        keep_weights: bool = True,
        static_graph: bool = False,
        find_unused_parameters: bool = False,
        accelerator: Any = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        start_method: Literal["popen", "spawn", "fork", "forkserver"] = "popen",
        **kwargs: Any,
    ) -> None:
        if sharding not in SHARDINGS:
            raise ValueError(f"unknown sharding {sharding!r}; choose one of {list(SHARDINGS)}")
        super().__init__(
            accelerator=accelerator, parallel_devices=parallel_devices, cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io, precision_plugin=precision_plugin,
            process_group_backend=process_group_backend, timeout=timeout, start_method=start_method, **kwargs,
        )  # fmt: skip
        self.sharding, self.keep_weights = sharding, keep_weights
        self._static_graph, self._find_unused = static_graph, find_unused_parameters
        self._forward_redirection = _DMPForwardRedirection()

    # ------------------------------------------------------------------------------------------ wrapping
    def setup(self, trainer: pl.Trainer) -> None:
        assert self.accelerator is not None and self.model is not None
        self.accelerator.setup(trainer)
        fitting = trainer.state.fn == TrainerFn.FITTING
        if fitting and self._layer_sync:
            self.model = self._layer_sync.apply(self.model)
        self.precision_plugin.convert_module(self.model)
        self.model_to_device()
        self.configure_ddp()  # in every stage, unlike DDP: sharded lookups are collective
        if fitting:
            self.setup_optimizers(trainer)  # after sharding: the optimiser steps the local shards
        self.setup_precision_plugin()
        if fitting:
            _optimizers_to_device(self.optimizers, self.root_device)

    def configure_ddp(self) -> None:
        assert isinstance(self.model, pl.LightningModule)
        self.model = self._setup_model(self.model)

    def _setup_model(self, model: nn.Module) -> DistributedModelParallel:
        wrapper = DefaultDataParallelWrapper(
            static_graph=self._static_graph, find_unused_parameters=self._find_unused, ddp_kwargs=self._ddp_kwargs
        )
        if not embedding_collections(model):  # sharded already (an earlier stage on the same module): wrap only
            return DistributedModelParallel(
                model, env=ShardingEnv.from_process_group(dist.group.WORLD), device=self.root_device,
                plan=ShardingPlan({}), sharders=_sharders(), data_parallel_wrapper=wrapper,
            )  # fmt: skip
        return shard(model, self.sharding, self.root_device, keep_weights=self.keep_weights,
                     data_parallel_wrapper=wrapper)  # fmt: skip

    @contextmanager
    def block_backward_sync(self) -> Iterator[None]:
        inner = _inner_ddp(self.model) if self.model is not None else None
        with inner.no_sync() if inner is not None else nullcontext():
            yield None

    def teardown(self) -> None:
        if isinstance(self.model, DistributedModelParallel):
            self.model = self.lightning_module  # unwrap; the module keeps its sharded tables
        super().teardown()

    # ------------------------------------------------------------------------------------------ checkpoints
    @property
    def restore_checkpoint_after_setup(self) -> bool:
        return True  # load full tables into the shards, not into tables about to be replaced

    def lightning_module_state_dict(self) -> dict[str, Any]:
        assert self.lightning_module is not None
        return full_state_dict(self.lightning_module)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        assert self.lightning_module is not None
        return full_optimizer_state(self.lightning_module, optimizer)

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        assert self.lightning_module is not None
        load_full_state_dict(self.lightning_module, checkpoint["state_dict"], strict=strict)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        assert self.lightning_module is not None
        for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"]):
            load_full_optimizer_state(self.lightning_module, optimizer, state)
            _optimizers_to_device([optimizer], self.root_device)

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        strategy_registry.register(
            "torchrec", cls, description="TorchRec DistributedModelParallel, table-wise", override=True
        )


TorchRecStrategy.register_strategies(StrategyRegistry)


# ---------------------------------------------------------------------------------------------- launching
def free_port() -> int:
    """A free TCP port on this host (for ``MASTER_PORT``)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_entry(rank: int, world_size: int, port: int, fn: Any, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank), RANK=str(rank), NODE_RANK="0",
        WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size),
    )  # fmt: skip
    fn(rank, world_size, *args)


def spawn(fn: Any, world_size: int, *args: Any, start_method: str = "spawn") -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` fresh processes on this host, with the environment
    torchrun would set, so ``Trainer(strategy="torchrec", devices=world_size)`` inside ``fn`` treats them as its
    ranks (and a bare ``dist.init_process_group`` finds its peers). ``fn`` must be importable (module level).

    ``start_method="forkserver"`` (after ``multiprocessing.set_forkserver_preload([...])``) starts ranks from a
    server that imported the heavy libraries once, instead of importing them again in every rank.
    An exception in a rank is raised here (``torch.multiprocessing.ProcessRaisedException``).
    """
    import torch.multiprocessing as mp

    mp.start_processes(
        _rank_entry, args=(world_size, free_port(), fn, args), nprocs=world_size, join=True, start_method=start_method
    )
