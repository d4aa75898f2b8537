"""DNIS (differentiable neural input search, Cheng et al., arXiv 2006.04466) over any pair-model task, and the
mixed-dimension baselines it is compared with at equal embedding budgets.

`DNIS` runs the method end to end: warm start (the task's own training), the bi-level search of per-block
dimension weights (`DimensionSearch`, a Lightning task), magnitude pruning to a parameter budget, export to
`MixedDimTables` (one TorchRec table per frequency block, of its own width), an optional retrain, and it scores
through the exported model. `MixedDimensions` trains the same task from scratch on a fixed layout (uniform, MDE,
random). Both are `Recommender`s, so `recsys fit`, `recsys benchmark` and the scripts run them from a YAML.
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
import math
import time
from pathlib import Path
from typing import Any, Iterator, Self, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from recsys.data.features import feature_space
from recsys.data.interactions import Interactions
from recsys.data.modules import EpochBatches, Examples, count, take
from recsys.data.sequences import Sequences
from recsys.data.splits import random_ratio
from recsys.embeddings.allocation import FixedRule, allocation_rows, fixed_layouts, full_params, pruned_layouts
from recsys.embeddings.blocks import FrequencyBlocks, field_counts
from recsys.embeddings.mixed import FieldLayout, MixedDimTables, SearchedTables
from recsys.embeddings.selection import SelectionMode
from recsys.embeddings.tables import TableSpec
from recsys.evaluation.evaluator import Evaluation
from recsys.recommender import Fitted, Recommender
from recsys.tasks.base import Batch, PairModelTask
from recsys.tasks.training import quiet_lightning

log = logging.getLogger(__name__)
Split = int | Sequence[float]


# ---------------------------------------------------------------------------------------------- the search task
class PairedBatches(IterableDataset):
    """Each training batch paired with a validation batch (validation batches cycle, so an epoch covers the whole
    training set once; both reshuffle every epoch), ``per_step`` pairs in a list per Lightning step (the search
    steps through them by hand, sparing Lightning's per-step cost as `PairModelTask`'s ``batches_per_step``)."""

    def __init__(self, train: EpochBatches, valid: EpochBatches, per_step: int = 1) -> None:
        self.train, self.valid, self.per_step = train, valid, per_step

    def __len__(self) -> int:
        return -(-len(self.train) // self.per_step)

    def __iter__(self) -> Iterator[list[tuple[Any, Any]]]:
        valid = iter(self.valid)
        group: list[tuple[Any, Any]] = []
        for batch in self.train:
            try:
                other = next(valid)
            except StopIteration:
                valid = iter(self.valid)
                other = next(valid)
            group.append((batch, other))
            if len(group) == self.per_step:
                yield group
                group = []
        if group:
            yield group


class DimensionSearch(L.LightningModule):
    """DNIS's bi-level search as a Lightning task: min_α L_val(w*(α), α) + λ‖α‖₁ with w*(α) = argmin_w L_train(w, α).

    Each step takes a training and a validation batch: Adam (with the task's weight decay) steps the embedding
    tables (scalar columns — biases, FM's linear weights — included; dense layers stay frozen, as in the authors'
    code) on the training loss, then
    SGD steps every field's α on the validation loss at the updated tables (first-order DARTS) plus the L1 term,
    with each block's gradient divided by its mean magnitude, and α is clamped to its range. ``second_order`` adds
    DARTS's finite-difference Hessian-vector correction (ξ = ``lr_weights``). After each epoch the validation loss
    drives the tables' learning-rate decay and selects the best (tables, α).

    Args:
        task: the warm-started pair-model task whose model holds `SearchedTables`.
        train, valid: training examples of the training and validation splits (``task.training_examples``); the
            task's ``batches_per_step`` pairs go to each Lightning step.
        batch_size: examples per batch; seed: shuffling seed.
        lr_weights, lr_alpha: learning rates of the tables (Adam) and of α (SGD).
        l1: weight of ‖α‖₁.
        normalise_grad: divide α's gradient per block (the authors' ``alpha_grad_norm``).
        second_order: add the second-order correction.
        min_lr: stop once decay takes the tables' learning rate below it.
    """

    def __init__(self, task: PairModelTask, train: Examples, valid: Examples, *, batch_size: int, seed: int,
                 lr_weights: float, lr_alpha: float, l1: float, normalise_grad: bool, second_order: bool,
                 min_lr: float) -> None:  # fmt: skip
        super().__init__()
        self.task, self.train_examples, self.valid_examples = task, train, valid
        self.batch_size, self.seed, self.lr_weights, self.lr_alpha, self.l1 = batch_size, seed, lr_weights, lr_alpha, l1
        self.normalise_grad, self.second_order, self.min_lr = normalise_grad, second_order, min_lr
        self.automatic_optimization = False
        self.best_loss: float = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []

    @property
    def tables(self) -> SearchedTables:
        return self.task.model.embeddings

    def table_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.tables.dense.parameters())

    def alphas(self) -> list[torch.nn.Parameter]:
        return [s.alpha for s in self.tables.selections.values()]

    def setup(self, stage: str) -> None:
        self.task.trainer = self.trainer  # the task's negative sampling follows this trainer's steps

    def train_dataloader(self) -> DataLoader:
        epoch = lambda: self.trainer.current_epoch  # noqa: E731
        train = EpochBatches(self.train_examples, self.batch_size, self.seed, epoch)
        valid = EpochBatches(self.valid_examples, self.batch_size, self.seed + 1, epoch)
        return DataLoader(PairedBatches(train, valid, self.task.batches_per_step), batch_size=None)

    def configure_optimizers(self) -> Any:
        # fused: one kernel over the tables, as the tasks' own Adam (the search runs unsharded)
        weights = torch.optim.Adam(self.table_parameters(), lr=self.lr_weights, weight_decay=self.task.weight_decay, fused=True)
        alpha = torch.optim.SGD(self.alphas(), lr=self.lr_alpha)
        return [weights, alpha]

    def on_train_start(self) -> None:
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizers()[0].optimizer, patience=1, threshold=1e-7, min_lr=self.min_lr / 10
        )

    def training_step(self, batch: list[tuple[Batch, Batch]], batch_idx: int) -> None:
        weights, alpha = self.optimizers()
        for train, valid in batch:
            with frozen(self.alphas()):  # the table step needs no α gradient
                loss = self.task.loss(train)
                weights.zero_grad()
                self.manual_backward(loss)
            weights.step()
            with frozen([] if self.second_order else self.table_parameters()):  # nor first-order α a table gradient
                self._step_alpha(train, valid, alpha)
            self._train_loss = self._train_loss + loss.detach() * len(train["user"])
            self._train_rows += len(train["user"])

    def _step_alpha(self, train: Batch, valid: Batch, optimizer: Any) -> None:
        alphas = self.alphas()
        objective = self.task.loss(valid) + self.l1 * sum(a.abs().sum() for a in alphas)
        grads = torch.autograd.grad(objective, alphas, allow_unused=True)
        if self.second_order:
            grads = self._second_order(train, valid, alphas, grads)
        for a, g in zip(alphas, grads):
            a.grad = torch.zeros_like(a) if g is None else g
        selections = list(self.tables.selections.values())
        if self.normalise_grad:
            for s in selections:
                s.normalise_grad_()
        optimizer.step()
        for s in selections:
            s.clamp_()

    def _second_order(self, train: Batch, valid: Batch, alphas: list, grads: tuple) -> tuple:
        """∇α L_val − ξ (∇α L_train(w⁺) − ∇α L_train(w⁻)) / 2ε with w± = w ± ε ∇w L_val (DARTS, eq. 8)."""
        tables = self.table_parameters()
        direction = torch.autograd.grad(self.task.loss(valid), tables, allow_unused=True)
        direction = [torch.zeros_like(t) if d is None else d for t, d in zip(tables, direction)]
        eps = 0.01 / (torch.sqrt(sum((d**2).sum() for d in direction)) + 1e-12)
        hessian = []
        for sign in (1.0, -2.0):
            with torch.no_grad():
                for t, d in zip(tables, direction):
                    t.add_(sign * eps * d)
            hessian.append(torch.autograd.grad(self.task.loss(train), alphas, allow_unused=True))
        with torch.no_grad():
            for t, d in zip(tables, direction):
                t.add_(eps * d)
        out = []
        for g, plus, minus in zip(grads, *hessian):
            if g is None:
                out.append(None)
                continue
            correction = (plus if plus is not None else 0.0) - (minus if minus is not None else 0.0)
            out.append(g - self.lr_weights * correction / (2 * eps))
        return tuple(out)

    def on_train_epoch_start(self) -> None:
        self._train_loss, self._train_rows = torch.zeros(()), 0

    def on_train_epoch_end(self) -> None:
        val_loss = mean_loss(self.task, self.valid_examples, self.batch_size)
        self.scheduler.step(val_loss)
        lr = self.optimizers()[0].optimizer.param_groups[0]["lr"]
        train_loss = float(self._train_loss / max(self._train_rows, 1))
        self.history.append({"epoch": self.current_epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr})
        log.info("search epoch %d: train loss %.5f, validation loss %.5f, lr %.2g", self.current_epoch, train_loss, val_loss, lr)
        if val_loss < self.best_loss:
            self.best_loss = val_loss
            self.best_state = copy.deepcopy(self.tables.state_dict())
        if lr < self.min_lr:
            self.trainer.should_stop = True

    def on_fit_end(self) -> None:
        if self.best_state is not None:
            self.tables.load_state_dict(self.best_state)


@contextmanager
def frozen(parameters: list[torch.nn.Parameter]) -> Iterator[None]:
    """Leave ``parameters`` out of the autograd graph for a while (no gradient is computed for them)."""
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in parameters:
            p.requires_grad_(True)


def mean_loss(task: PairModelTask, examples: Examples, batch_size: int) -> float:
    """The task's mean loss over ``examples``, in eval mode without gradients (sampling seeded per batch)."""
    was_training = task.training
    task.eval()
    total, rows = 0.0, 0
    with torch.no_grad():
        for index in torch.arange(count(examples)).split(batch_size):
            batch = take(examples, index)
            total += float(task.loss(batch)) * len(index)
            rows += len(index)
    task.train(was_training)
    return total / max(rows, 1)


# ---------------------------------------------------------------------------------------------- recommenders
class _PerBlockTask(Recommender):
    """A pair-model task whose tables are cut into frequency blocks: shared by `DNIS` and `MixedDimensions`.

    Scores, judges and reports through the task; after `fit`, ``report_`` holds the layout's sizes and the
    allocation table, and `write_report` writes them (with a heat-map) into a run folder. Its fitted state is the
    task's (under ``task.``), each field's layout (block masses and kept columns; the block of each id is a buffer
    of the tables) and the report.
    """

    def __init__(self, task: PairModelTask, blocks: Split, budget: float | None, patience: int, batch_size: int,
                 seed: int | None) -> None:  # fmt: skip
        if budget is not None and not 0.0 < budget <= 1.0:
            raise ValueError(f"budget must be a fraction in (0, 1], got {budget}")
        self.task, self.blocks, self.budget = task, blocks, budget
        self.patience, self.batch_size, self.seed = patience, batch_size, seed
        if seed is not None:
            task.seed = seed
            task.hparams["seed"] = seed
        self.report_: dict[str, Any] = {}

    # the Recommender interface, through the task
    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        return self.task.score(users, history)

    def judge(self, part: Interactions, exclude: list[Interactions], k: Sequence[int] | None = None,
              users: np.ndarray | None = None) -> Evaluation:  # fmt: skip
        return self.task.judge(part, exclude, k, users)

    def score_history(self, items: np.ndarray) -> torch.Tensor:
        return self.task.score_history(items)

    def item_vectors(self) -> torch.Tensor:
        return self.task.item_vectors()

    # saving
    def fitted_state(self) -> dict[str, Fitted]:
        tables: MixedDimTables = self.task.model.embeddings
        layouts = {name: {"mass": list(layout.blocks.mass), "columns": [c.tolist() for c in layout.columns]}
                   for name, layout in tables.layouts.items()}  # fmt: skip
        state: dict[str, Fitted] = {f"task.{k}": v for k, v in self.task.fitted_state().items()}
        return {**state, "layouts": layouts, "report": self.report_}

    def restore(self, train: Interactions) -> None:
        self.task.restore(train)
        self._remember(train)

    def load_fitted_state(self, state: dict[str, Fitted]) -> None:
        """Rebuild the mixed-dimension tables from the saved layouts, then load the task's weights into them."""
        model = self.task.model
        specs = list(model.embeddings.specs.values())
        layouts = {}
        for name, saved in state["layouts"].items():  # type: ignore[union-attr]
            blocks = FrequencyBlocks(state[f"task.model.embeddings.{name}_block"].numpy(), tuple(saved["mass"]))  # type: ignore[union-attr]
            layouts[name] = FieldLayout(blocks, tuple(np.asarray(c, dtype=np.int64) for c in saved["columns"]))
        model.embeddings = MixedDimTables(specs, layouts)
        self.task.load_fitted_state({k.removeprefix("task."): v for k, v in state.items() if k.startswith("task.")})
        self.report_ = state["report"]  # type: ignore[assignment]

    def params(self) -> dict:
        own = {k: v for k, v in vars(self).items() if not k.endswith("_") and k != "task" and not k.startswith("_")}
        return {"method": type(self).__name__, **self.task.params(), **{k: list(v) if isinstance(v, tuple) else v for k, v in own.items()}}

    # shared steps
    def _build(self, train: Interactions) -> tuple[list[TableSpec], dict[str, FrequencyBlocks]]:
        """Build the task's model on the training split; its table specs and each field's frequency blocks."""
        self._remember(train)
        model = self.task.model
        space = feature_space(train, side_features=model.uses_side_features)
        L.seed_everything(self.task.seed, verbose=False)  # the tables' initialisation
        model.build(space)
        specs = list(model.embeddings.specs.values())
        counts = field_counts(space, train, [s.name for s in specs])
        return specs, {name: FrequencyBlocks.from_counts(c, self.blocks) for name, c in counts.items()}

    def _train(self, train: Interactions, valid: Interactions, epochs: int) -> float:
        started = time.perf_counter()
        self.task.train()  # a phase before may have left it in eval mode
        self.task.fit(train, valid, max_epochs=epochs, patience=self.patience, batch_size=self.batch_size)
        return time.perf_counter() - started

    def _record(self, specs: list[TableSpec], layouts: dict[str, FieldLayout], timings: dict[str, float]) -> None:
        tables: MixedDimTables = self.task.model.embeddings
        weights = list(tables.collection.parameters())
        self.report_ = {
            "full_params": full_params(specs),
            "full_bytes": sum(s.num_embeddings * s.dim for s in specs) * 4,
            "embedding_params": tables.embedding_params(),
            "embedding_bytes": sum(w.numel() * w.element_size() for w in weights),
            "index_bytes": sum(b.numel() * b.element_size() for n, b in tables.named_buffers() if n.endswith("_block")),
            "budget": self.budget,
            "allocation": allocation_rows(specs, layouts),
            "timings": timings,
        }

    def write_report(self, folder: Path) -> list[Path]:
        """``allocation.csv`` (dims per field and block), ``allocation.png`` (heat-map) and ``embeddings.json``
        (parameters and bytes before and after) in ``folder``."""
        import json

        import polars as pl

        from recsys.embeddings.report import plot_allocation

        rows = pl.DataFrame(self.report_["allocation"])
        rows.write_csv(folder / "allocation.csv")
        plot_allocation(rows, folder / "allocation.png", title=f"{type(self).__name__}: dims per frequency block")
        sizes = {k: v for k, v in self.report_.items() if k != "allocation"}
        (folder / "embeddings.json").write_text(json.dumps(sizes, indent=2))
        return [folder / "allocation.csv", folder / "allocation.png", folder / "embeddings.json"]


class DNIS(_PerBlockTask):
    """DNIS on a pair-model task: warm start, bi-level search, pruning to ``budget`` (or ``threshold``), export to
    mixed-dimension tables, optional retrain.

    Args:
        task: the objective and model (``MSETask(MF(64))``, ``ClickTask(FM(16))``, ``BPRTask(MF(64))``, …).
        blocks: frequency blocks per field: a count (equal blocks) or fractions (``[0.1, 0.2, 0.2, 0.2, 0.3]``).
        mode: the soft selection's parameterisation (``free``, ``feature_block``, ``embedding_block``).
        budget: keep this fraction of the full tables' entries (scalar columns always kept).
        threshold: instead of a budget, keep every (block, dimension) of α-weighted magnitude ≥ this.
        nested: keep each block's dimensions as a prefix of one shared order, so interacting fields keep aligned
            dimensions (`pruned_layouts`); False lets every block keep its own largest columns.
        warm_start_epochs: the task's own training before the search (early-stopped on its monitor).
        search_epochs: at most this many search epochs (each a pass over the training set).
        retrain_epochs: train the exported model this many more epochs (0: none).
        lr_weights, lr_alpha, l1, normalise_grad, second_order: as `DimensionSearch` (the authors' defaults).
        patience: early-stopping patience of warm start and retrain.
        batch_size: examples per batch in every phase (the authors use 4096).
        seed: replaces the task's seed (sampling, shuffling) when given.
        holdout: the share of the training rows held out for the search when `fit` gets no validation split.
    """

    def __init__(
        self,
        task: PairModelTask,
        blocks: Split = 10,
        mode: SelectionMode = "free",
        budget: float | None = 0.5,
        threshold: float | None = None,
        nested: bool = True,
        warm_start_epochs: int = 20,
        search_epochs: int = 50,
        retrain_epochs: int = 0,
        lr_weights: float = 1e-3,
        lr_alpha: float = 1e-2,
        l1: float = 1e-5,
        normalise_grad: bool = True,
        second_order: bool = False,
        patience: int = 3,
        batch_size: int = 4096,
        seed: int | None = None,
        holdout: float = 0.1,
    ) -> None:
        if (budget is None) == (threshold is None):
            raise ValueError("give exactly one of budget and threshold")
        if min(warm_start_epochs, search_epochs) < 0 or retrain_epochs < 0:
            raise ValueError("epochs must be >= 0")
        super().__init__(task, blocks, budget, patience, batch_size, seed)
        self.nested, self.warm_start_epochs = nested, warm_start_epochs
        self.mode, self.threshold, self.search_epochs, self.retrain_epochs = mode, threshold, search_epochs, retrain_epochs
        self.lr_weights, self.lr_alpha, self.l1 = lr_weights, lr_alpha, l1
        self.normalise_grad, self.second_order, self.holdout = normalise_grad, second_order, holdout

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """Search on ``valid``; without one, a seeded random ``holdout`` share of ``train`` is held out for it
        (the search, warm start and retrain then train on the rest)."""
        given = train
        if valid is None:
            train, valid = random_ratio(given, (1.0 - self.holdout, self.holdout), seed=self.task.seed)
            log.info("DNIS: no validation split given; %d of the training rows are held out for the search", valid.frame.height)
        specs, blocks = self._build(train)
        self._remember(given)  # what a user has seen is the whole training split, held-out rows included
        timings = {"warm_start_s": self._train(train, valid, self.warm_start_epochs) if self.warm_start_epochs else 0.0}
        model = self.task.model
        model.embeddings = searched = SearchedTables(model.embeddings, blocks, self.mode)
        started = time.perf_counter()
        self.search_ = self._search(train, valid)
        timings["search_s"] = time.perf_counter() - started
        layouts = pruned_layouts(searched.column_magnitudes(), specs, blocks, budget=self.budget, threshold=self.threshold,
                                 nested=self.nested)  # fmt: skip
        self.selection_ = {name: s.weights().detach().cpu().numpy() for name, s in searched.selections.items()}
        searched.prune_(layouts)
        model.embeddings = searched.export(layouts)
        timings["retrain_s"] = self._train(train, valid, self.retrain_epochs) if self.retrain_epochs else 0.0
        self._record(specs, layouts, timings)
        self.report_["search"] = self.search_.history
        return self

    def _search(self, train: Interactions, valid: Interactions) -> DimensionSearch:
        task = self.task
        trainable = {name: p.requires_grad for name, p in task.named_parameters()}
        searched = {id(p) for p in [*task.model.embeddings.dense.parameters(), *(s.alpha for s in task.model.embeddings.selections.values())]}
        for p in task.parameters():  # dense layers stay as warm start left them
            p.requires_grad_(id(p) in searched)
        search = DimensionSearch(task, task.training_examples(train), task.training_examples(valid),
                                 batch_size=self.batch_size, seed=task.seed, lr_weights=self.lr_weights,
                                 lr_alpha=self.lr_alpha, l1=self.l1, normalise_grad=self.normalise_grad,
                                 second_order=self.second_order, min_lr=1e-6)  # fmt: skip
        task.train()
        L.seed_everything(task.seed, verbose=False)
        if self.search_epochs:
            with quiet_lightning():
                trainer = L.Trainer(max_epochs=self.search_epochs, logger=False, enable_checkpointing=False,
                                    enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                                    num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
                trainer.fit(search)
        for name, p in task.named_parameters():
            p.requires_grad_(trainable[name])
        task.eval()
        return search


class MixedDimensions(_PerBlockTask):
    """A pair-model task trained from scratch on mixed-dimension tables laid out by a fixed rule at ``budget``: the
    baselines DNIS is measured against (``uniform``, ``mde``, ``random``; budget 1.0 of ``uniform`` is the full
    model).

    Args:
        task: the objective and model.
        rule: ``uniform``, ``mde`` (Ginart et al.'s power law, exponent ``temperature``) or ``random``.
        blocks: frequency blocks per field, as `DNIS`.
        budget: the fraction of the full tables' entries.
        temperature: MDE's exponent.
        epochs, patience, batch_size: the task's training (early-stopped on its monitor).
        seed: replaces the task's seed and draws the random rule's dims.
    """

    def __init__(self, task: PairModelTask, rule: FixedRule = "uniform", blocks: Split = 10, budget: float = 1.0,
                 temperature: float = 0.3, epochs: int = 100, patience: int = 3, batch_size: int = 4096,
                 seed: int | None = None) -> None:  # fmt: skip
        super().__init__(task, blocks, budget, patience, batch_size, seed)
        self.rule, self.temperature, self.epochs = rule, temperature, epochs

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        specs, blocks = self._build(train)
        layouts = fixed_layouts(self.rule, specs, blocks, self.budget, temperature=self.temperature, seed=self.task.seed)
        model = self.task.model
        model.embeddings = MixedDimTables(specs, layouts)  # drawn from the seed `_build` set
        timings = {"fit_s": self._train(train, valid, self.epochs)}
        self._record(specs, layouts, timings)
        return self
