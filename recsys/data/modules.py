"""Lightning DataModule over `Interactions`: it loads and splits a dataset and batches the training examples a
task builds from the training split (`EpochBatches`); what the examples are is the task's business."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from recsys.data.interactions import Interactions
from recsys.data.registry import load
from recsys.data.selection import Selection, read_selection
from recsys.data.splits import split

Examples = dict[str, torch.Tensor] | Sequence[Any]
"""Training examples: aligned tensors (rows are examples) or a sequence of samples of any form (e.g. token lists
of different lengths), which a collate step turns into a batch."""

Collate = Callable[[Any], Any]


def count(examples: Examples) -> int:
    """Number of examples (rows of the aligned tensors, or samples)."""
    return len(next(iter(examples.values()))) if isinstance(examples, dict) else len(examples)


def take(examples: Examples, index: torch.Tensor) -> Any:
    """The examples at ``index`` ``[B]``: sliced tensors, or the samples as a list."""
    if isinstance(examples, dict):
        return {name: tensor[index] for name, tensor in examples.items()}
    return [examples[i] for i in index.tolist()]


class EpochBatches(IterableDataset):
    """Shuffled mini-batches of examples, reshuffled each epoch from ``(seed, epoch)``.

    Aligned tensors are sliced by the batch's rows; a sequence of samples gives the batch's samples as a list.
    ``collate`` (when given) turns either into what the task's step takes (e.g. padding variable-length samples).

    The epoch comes from ``epoch()`` (the trainer's), so a resumed run draws the same batches as an uninterrupted
    one. Under data parallelism each rank takes every ``world_size``-th batch, and all ranks get the same number
    of batches (the remainder is dropped) because sharded embedding lookups are collective operations. With
    ``batches_per_step`` > 1 the same batches come in lists of that many (the task steps through each list).
    """

    def __init__(
        self,
        examples: Examples,
        batch_size: int,
        seed: int,
        epoch: Callable[[], int],
        rank: Callable[[], tuple[int, int]] = lambda: (0, 1),
        batches_per_step: int = 1,
        collate: Collate | None = None,
    ) -> None:
        self.examples, self.batch_size, self.seed, self.epoch, self.rank = examples, batch_size, seed, epoch, rank
        self.batches_per_step, self.collate = batches_per_step, collate
        self.n_rows = count(examples)

    def __len__(self) -> int:
        _, world = self.rank()
        batches = -(-self.n_rows // self.batch_size) // world if world > 1 else -(-self.n_rows // self.batch_size)
        return -(-batches // self.batches_per_step)

    def __iter__(self) -> Iterator[Any]:
        if self.batches_per_step == 1:
            yield from self._batches()
            return
        group: list[Any] = []  # gathered as they are cut: at most one step's batches in memory
        for batch in self._batches():
            group.append(batch)
            if len(group) == self.batches_per_step:
                yield group
                group = []
        if group:
            yield group

    def _batches(self) -> Iterator[Any]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch())
        order = torch.randperm(self.n_rows, generator=generator)
        batches = list(order.split(self.batch_size))
        rank, world = self.rank()
        if world > 1:
            per_rank = len(batches) // world
            batches = batches[rank::world][:per_rank]
        for index in batches:
            batch = take(self.examples, index)
            yield batch if self.collate is None else self.collate(batch)


class InteractionsDataModule(L.LightningDataModule):
    """Loads a dataset, splits it by a named protocol, and batches the training examples of the task it serves.

    The task builds its examples from ``train`` (observed pairs with labels, the all-pairs grid, sequence windows,
    prompts) and asks `loader` for the epoch's batches; validation, test and predict are one step each, in which
    the task runs the evaluator over the whole split.

    Args:
        dataset: dataset card or imported dataset name.
        protocol: split protocol (``user-811``, ``global-811``, ``loo``, ``temporal``).
        seed: split seed, and the seed of each epoch's shuffle (the training seed is Lightning's
            ``seed_everything``).
        batch_size: training examples per batch.
        selection: a sample selection (``selection.parquet`` of ``recsys prune``): train only on those samples
            (the task must support selections: the LLM recommender's), checked against the training split.
    """

    def __init__(self, dataset: str = "ml-100k", protocol: str = "user-811", seed: int = 2026, batch_size: int = 2048,
                 selection: str | None = None) -> None:  # fmt: skip
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.dataset, self.protocol, self.seed, self.batch_size = dataset, protocol, seed, batch_size
        self.selection = selection
        self.data: Interactions | None = None
        self.selection_: Selection | None = None

    # ------------------------------------------------------------------------------------------ set-up
    def prepare_data(self) -> None:
        if self.data is None:  # splits given directly need no download
            load(self.dataset)  # downloads / verifies once, on one process

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        self.data = load(self.dataset)
        self.train, self.valid, self.test = split(self.data, self.protocol, seed=self.seed)
        self._read_selection()

    def _read_selection(self) -> None:
        if self.selection is not None:
            self.selection_ = read_selection(self.selection, self.train)

    def provenance(self) -> dict[str, str | int]:
        """What a run record keeps of the data beyond its name and protocol: the selection trained on, if any."""
        return self.selection_.provenance() if self.selection_ is not None else {}

    @classmethod
    def from_splits(
        cls, train: Interactions, valid: Interactions | None = None, test: Interactions | None = None, *,
        batch_size: int = 2048, seed: int = 2026, selection: str | Path | None = None,
    ) -> InteractionsDataModule:  # fmt: skip
        """A data module over splits made elsewhere (the Python API and `recsys benchmark`); a missing split is
        empty."""
        empty = train.with_frame(train.frame.clear())
        module = cls(dataset=train.name, protocol="given", seed=seed, batch_size=batch_size,
                     selection=None if selection is None else str(selection))  # fmt: skip
        module.data, module.train = train, train
        module.valid = valid if valid is not None else empty
        module.test = test if test is not None else empty
        module._read_selection()
        return module

    # ------------------------------------------------------------------------------------------ batches
    def loader(self, examples: Examples, batches_per_step: int = 1, collate: Collate | None = None) -> DataLoader:
        """The training loader of a task's ``examples``: seeded shuffled batches of ``batch_size``, every
        world-size-th batch on each rank, ``batches_per_step`` batches per Lightning step (see `EpochBatches`)."""
        if batches_per_step < 1:
            raise ValueError(f"batches_per_step must be >= 1, got {batches_per_step}")
        batches = EpochBatches(examples, self.batch_size, self.seed, self._epoch, self._rank, batches_per_step, collate)
        return DataLoader(batches, batch_size=None)

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        """The task's own training loader: the task builds its examples from ``train`` and calls `loader`."""
        return self.trainer.lightning_module.train_dataloader()

    def _one_step(self) -> DataLoader:
        # Ranking evaluation runs the shared evaluator over whole splits in one step (see RecommenderTask).
        return DataLoader([torch.zeros(1)], batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._one_step()

    def test_dataloader(self) -> DataLoader:
        return self._one_step()

    def predict_dataloader(self) -> DataLoader:
        return self._one_step()
