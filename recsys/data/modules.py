"""Lightning DataModules over `Interactions`: splits, feature space and seeded, rank-aware training batches."""

from __future__ import annotations

from typing import Callable, Iterator, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from recsys.data.features import FeatureSpace, feature_space
from recsys.data.interactions import Interactions
from recsys.data.registry import load
from recsys.data.sequences import Sequences
from recsys.data.splits import split


class EpochBatches(IterableDataset):
    """Shuffled mini-batches of aligned tensors, reshuffled each epoch from ``(seed, epoch)``.

    The epoch comes from ``epoch()`` (the trainer's), so a resumed run draws the same batches as an uninterrupted
    one. Under data parallelism each rank takes every ``world_size``-th batch, and all ranks get the same number
    of batches (the remainder is dropped) because sharded embedding lookups are collective operations. With
    ``batches_per_step`` > 1 the same batches come in lists of that many (the task steps through each list).
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        batch_size: int,
        seed: int,
        epoch: Callable[[], int],
        rank: Callable[[], tuple[int, int]] = lambda: (0, 1),
        batches_per_step: int = 1,
    ) -> None:
        self.tensors, self.batch_size, self.seed, self.epoch, self.rank = tensors, batch_size, seed, epoch, rank
        self.batches_per_step = batches_per_step
        self.n_rows = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        _, world = self.rank()
        batches = -(-self.n_rows // self.batch_size) // world if world > 1 else -(-self.n_rows // self.batch_size)
        return -(-batches // self.batches_per_step)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]]:
        if self.batches_per_step == 1:
            yield from self._batches()
            return
        group: list[dict[str, torch.Tensor]] = []  # gathered as they are cut: at most one step's batches in memory
        for batch in self._batches():
            group.append(batch)
            if len(group) == self.batches_per_step:
                yield group
                group = []
        if group:
            yield group

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch())
        order = torch.randperm(self.n_rows, generator=generator)
        batches = list(order.split(self.batch_size))
        rank, world = self.rank()
        if world > 1:
            per_rank = len(batches) // world
            batches = batches[rank::world][:per_rank]
        for index in batches:
            yield {name: tensor[index] for name, tensor in self.tensors.items()}


class InteractionsDataModule(L.LightningDataModule):
    """Loads a dataset, splits it by a named protocol, and serves training batches of observed interactions.

    Args:
        dataset: dataset card or imported dataset name.
        protocol: split protocol (``user-811``, ``global-811``, ``loo``, ``temporal``).
        seed: split seed (the training seed is Lightning's ``seed_everything``).
        batch_size: training rows per batch.
        side_features: build user/item side-feature fields (FM, DeepFM) besides the ids.
        label_threshold: when set, each row gets ``label = rating >= label_threshold`` (click-style tasks).
        batches_per_step: training batches handed to one Lightning step as a list; the task takes one optimiser
            step per batch by hand, sparing Lightning's per-step overhead (~2.5 ms, as long as a whole MF-BPR step).
        sequence_length: when set, training batches are per-user sequence windows of this length (``input``,
            ``target``: every position predicts its next item; `recsys.data.sequences.Sequences.windows`) instead
            of interaction rows, for sequential models.
        pairs: ``observed`` serves the training interactions; ``all`` serves every user × item pair of the grid
            with ``label`` 1 where a training interaction exists and 0 elsewhere (estimators over all pairs, such
            as `recsys.tasks.mnar.RelMFTask`).
    """

    def __init__(
        self,
        dataset: str = "ml-100k",
        protocol: str = "user-811",
        seed: int = 2026,
        batch_size: int = 2048,
        side_features: bool = False,
        label_threshold: float | None = None,
        sequence_length: int | None = None,
        batches_per_step: int = 1,
        pairs: Literal["observed", "all"] = "observed",
    ) -> None:
        super().__init__()
        if pairs not in ("observed", "all"):
            raise ValueError(f"pairs must be 'observed' or 'all', got {pairs!r}")
        self.pairs = pairs
        self.save_hyperparameters()
        if batches_per_step < 1:
            raise ValueError(f"batches_per_step must be >= 1, got {batches_per_step}")
        self.batches_per_step = batches_per_step
        self.dataset, self.protocol, self.seed = dataset, protocol, seed
        self.batch_size, self.side_features, self.label_threshold = batch_size, side_features, label_threshold
        if sequence_length is not None and sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
        self.sequence_length = sequence_length
        self.data: Interactions | None = None

    # ------------------------------------------------------------------------------------------ set-up
    def prepare_data(self) -> None:
        if self.data is None:  # splits given directly need no download
            load(self.dataset)  # downloads / verifies once, on one process

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        self.data = load(self.dataset)
        self.train, self.valid, self.test = split(self.data, self.protocol, seed=self.seed)
        self.features: FeatureSpace = feature_space(self.data, side_features=self.side_features)

    @classmethod
    def from_splits(
        cls, train: Interactions, valid: Interactions | None = None, test: Interactions | None = None, *,
        batch_size: int = 2048, seed: int = 2026, side_features: bool = False, label_threshold: float | None = None,
        sequence_length: int | None = None, batches_per_step: int = 1, pairs: Literal["observed", "all"] = "observed",
    ) -> InteractionsDataModule:  # fmt: skip
        """A data module over splits made elsewhere (the Python API and `recsys benchmark`); a missing split is
        empty."""
        empty = train.with_frame(train.frame.clear())
        valid = valid if valid is not None else empty
        test = test if test is not None else empty
        module = cls(dataset=train.name, protocol="given", seed=seed, batch_size=batch_size,
                     side_features=side_features, label_threshold=label_threshold,
                     sequence_length=sequence_length, batches_per_step=batches_per_step, pairs=pairs)  # fmt: skip
        module.data, module.train, module.valid, module.test = train, train, valid, test
        module.features = feature_space(train, side_features=side_features)
        return module

    # ------------------------------------------------------------------------------------------ batches
    def columns(self, part: Interactions) -> dict[str, torch.Tensor]:
        """Tensors of a split: ``user``, ``item`` (int64), ``rating`` (float32), ``label`` (float32); with
        ``sequence_length``, the split's sequence windows ``input``, ``target`` (int64 ``[R, sequence_length]``)."""
        if self.sequence_length is not None:
            inputs, targets = Sequences.from_interactions(part).windows(self.sequence_length)
            return {"input": torch.from_numpy(inputs), "target": torch.from_numpy(targets)}
        frame = part.frame
        tensors = {
            "user": torch.from_numpy(frame["user"].to_numpy().copy()),
            "item": torch.from_numpy(frame["item"].to_numpy().copy()),
        }
        if part.has_rating:
            tensors["rating"] = torch.from_numpy(frame["rating"].to_numpy().astype(np.float32))
            if self.label_threshold is not None:
                tensors["label"] = (tensors["rating"] >= self.label_threshold).to(torch.float32)
        return tensors

    @staticmethod
    def all_pairs(part: Interactions) -> dict[str, torch.Tensor]:
        """Every (user, item) pair of the grid in row-major order: ``user``, ``item`` (int64 ``[U·I]``) and
        ``label`` (float32, 1 where ``part`` has the interaction)."""
        n_users, n_items = part.n_users, part.n_items
        label = torch.zeros(n_users * n_items, dtype=torch.float32)
        codes = part.frame["user"].to_numpy().astype(np.int64) * n_items + part.frame["item"].to_numpy()
        label[torch.from_numpy(codes)] = 1.0
        grid = torch.arange(n_users * n_items)
        return {"user": grid // n_items, "item": grid % n_items, "label": label}

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        batches = EpochBatches(
            self.all_pairs(self.train) if self.pairs == "all" else self.columns(self.train),
            self.batch_size, self.seed, self._epoch, self._rank, self.batches_per_step,
        )
        return DataLoader(batches, batch_size=None)

    def _one_step(self) -> DataLoader:
        # Ranking evaluation runs the shared evaluator over whole splits in one step (see RecommenderTask).
        return DataLoader([torch.zeros(1)], batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._one_step()

    def test_dataloader(self) -> DataLoader:
        return self._one_step()

    def predict_dataloader(self) -> DataLoader:
        return self._one_step()
