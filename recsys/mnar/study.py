"""The semi-synthetic study of Rel-MF (Saito et al., WSDM 2020, Section 5), as the authors' code runs it.

Every user–item pair of a `SemiSynthetic` dataset trains MF (user, item and global biases, σ output) with one
of four objectives: ``oracle`` (soft label γ: the ideal loss), ``naive`` (clicks Y), ``unbiased`` (Y weighted
by the true θ, no clipping) and ``clipped`` (θ clipped below at M). Test pairs are the unclicked ones (Y = 0).

Protocol (authors' ``trainer.py`` and ``params.yaml``): 10% of all pairs for validation; plain SGD, lr 0.1, L2
λ·Σx²/2 (λ = 1e-5) over the whole user and item tables and biases; dim 10; 1,000 steps of 4,096 pairs drawn
with replacement (batch order fixed by ``batch_seed``, initialisation by the run's ``seed``), from the authors'
initialisation (`init_as_authors`). Reported:

- relative log loss: cross-entropy of the model's σ(s) against the sampled relevance R on the test pairs, at
  the step of minimum validation loss (the model's own weighted loss), divided by the oracle's;
- ranking metrics of the final model: per user with relevant test pairs (R = 1), those items ranked against
  100 negatives drawn from the items that are relevant test pairs of anyone, minus the user's relevant items.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

import numpy as np
import torch

from recsys.data.features import FeatureSpace, Field
from recsys.data.semisynthetic import SemiSynthetic
from recsys.mnar.estimators import estimator_loss, local_losses, pair_weights
from recsys.evaluation.metrics import dcg, precision_weighted
from recsys.models.mf import MF
from recsys.ranking import rank_candidates

StudyEstimator = Literal["oracle", "naive", "unbiased", "clipped"]
STUDY_ESTIMATORS: tuple[str, ...] = ("oracle", "naive", "unbiased", "clipped")


@dataclass(frozen=True)
class StudyConfig:
    """Training and evaluation settings of the semi-synthetic study (defaults: the authors' values).

    Attributes:
        dim: MF factor dimension.
        lr: SGD learning rate.
        l2: λ of the L2 penalty λ·Σx²/2 on the user and item tables (factors and biases).
        batch_size: pairs per step, drawn with replacement from the training pairs.
        iters: SGD steps.
        valid_fraction: share of all pairs held out to pick the step of minimum validation loss.
        clip: M of the ``clipped`` estimator.
        negatives: sampled negatives per user in the ranking evaluation.
        ks: ranking cut-offs.
        split_seed: seed of the train / validation split.
        batch_seed: seed of the batch sequence (the authors fix it across runs; runs differ by init seed).
        negative_seed: seed of the evaluation negatives (shared by all estimators, so rankings are paired).
    """

    dim: int = 10
    lr: float = 0.1
    l2: float = 1e-5
    batch_size: int = 4096
    iters: int = 1000
    valid_fraction: float = 0.1
    clip: float = 0.1
    negatives: int = 100
    ks: tuple[int, ...] = tuple(range(1, 11))
    split_seed: int = 0
    batch_seed: int = 12345
    negative_seed: int = 12345


@dataclass
class StudyRun:
    """One trained run: the design-schema fields plus the study's own."""

    p: float
    estimator: str
    seed: int
    test_log_loss: float
    best_iteration: int
    metrics: dict[str, float]
    seconds: float
    relative_log_loss: float | None = None
    params: dict = field(default_factory=dict)

    def record(self) -> dict:
        return asdict(self)


def grid_space(n_users: int, n_items: int) -> FeatureSpace:
    """Feature space of a bare users × items grid (id fields only)."""
    return FeatureSpace(n_users, n_items, (Field.identity("user", n_users), Field.identity("item", n_items)))


def all_logits(model: MF, n_users: int, n_items: int) -> torch.Tensor:
    """``[U·I]`` logits of every pair in row-major order (each side encoded once, one matrix product)."""
    users = model.encode("user", torch.arange(n_users))
    items = model.encode("item", torch.arange(n_items))
    return model.all_scores(users, items).reshape(-1)


class PairData:
    """Flattened ``[U·I]`` tensors of a dataset and its train / validation / test index sets."""

    def __init__(self, data: SemiSynthetic, config: StudyConfig) -> None:
        self.n_users, self.n_items = data.shape
        self.click = torch.from_numpy(data.click.ravel().astype(np.float32))
        self.relevance = torch.from_numpy(data.relevance.ravel().astype(np.float32))
        self.theta = torch.from_numpy(data.theta.ravel().astype(np.float32))
        self.gamma = torch.from_numpy(data.gamma.ravel().astype(np.float32))
        n = len(self.click)
        order = np.random.default_rng(config.split_seed).permutation(n)
        n_valid = int(math.ceil(config.valid_fraction * n))
        self.valid = torch.from_numpy(np.sort(order[:n_valid]))
        self.train = torch.from_numpy(np.sort(order[n_valid:]))
        self.test = torch.from_numpy(np.flatnonzero(data.click.ravel() == 0))

    def labels(self, estimator: str) -> torch.Tensor:
        return self.gamma if estimator == "oracle" else self.click

    def loss(self, estimator: str, logits: torch.Tensor, index: torch.Tensor, clip: float) -> torch.Tensor:
        """The estimator's own weighted loss on the pairs ``index`` (``logits`` aligned with ``index``)."""
        labels = self.labels(estimator)[index]
        if estimator in ("oracle", "naive"):
            return estimator_loss(logits, labels, estimator="naive")
        kind = "ips" if estimator == "unbiased" else "clipped_ips"
        return estimator_loss(logits, labels, self.theta[index], kind, clip=clip)

    def validation_loss(self, estimator: str, clip: float) -> Callable[[torch.Tensor], float]:
        """``f(all_logits [U·I]) -> float``: `loss` on the validation pairs, with their weights computed once
        (the same value as ``loss(estimator, logits[valid], valid, clip)``, evaluated at every step)."""
        labels = self.labels(estimator)[self.valid]
        kind = {"oracle": "naive", "naive": "naive", "unbiased": "ips", "clipped": "clipped_ips"}[estimator]
        w1, w0 = pair_weights(labels, self.theta[self.valid], kind, clip=clip)
        valid, n = self.valid, float(len(self.valid))

        def evaluate(logits: torch.Tensor) -> float:
            d1, d0 = local_losses(logits[valid])
            return float((w1 * d1 + w0 * d0).sum() / n)

        return evaluate


def init_as_authors(model: MF) -> None:
    """Re-initialise a built MF as the authors' TF code does: Xavier-uniform factors, N(0, 0.01) user and item
    biases, global bias 1e-3.

    It decides the ranking results: in 1,000 SGD steps of lr 0.1 an item bias moves by only about 0.02, so the
    framework's Xavier-normal bias column (std ≈ 0.046 at 943 or 1,682 rows) would bury what the model learned
    under initial noise (the Oracle's DCG@10 then falls below the Unbiased model's at p ≤ 1).
    """
    with torch.no_grad():
        for side in ("user", "item"):
            table = model.embeddings.local_weight(side)  # [rows, dim + 1]: factors, then the bias column
            if table is None:
                raise ValueError("init_as_authors needs unsharded tables")
            dim = model.embedding_dim
            torch.nn.init.xavier_uniform_(table[:, :dim])  # ±√(6 / (rows + dim)), as TF's xavier_initializer()
            table[:, dim].normal_(0.0, 0.01)
        model.global_bias.fill_(1e-3)


def train_run(pairs: PairData, estimator: StudyEstimator, seed: int, config: StudyConfig) -> tuple[MF, MF, int]:
    """Train one MF; returns ``(final model, model at min validation loss, that step)``."""
    if estimator not in STUDY_ESTIMATORS:
        raise ValueError(f"unknown study estimator {estimator!r}; choose one of {STUDY_ESTIMATORS}")
    torch.manual_seed(seed)
    model = MF(config.dim, biases=True)
    model.build(grid_space(pairs.n_users, pairs.n_items))
    init_as_authors(model)
    tables = [p for name, p in model.named_parameters() if name != "global_bias"]
    optimizer = torch.optim.SGD(
        [{"params": tables, "weight_decay": config.l2}, {"params": [model.global_bias], "weight_decay": 0.0}],
        lr=config.lr,
    )  # SGD's weight_decay λ adds λ·x to the gradient: the gradient of λ·Σx²/2 (TF's l2_loss) on the tables
    batches = torch.Generator().manual_seed(config.batch_seed)
    validation_loss = pairs.validation_loss(estimator, config.clip)
    best, best_state, best_step = math.inf, copy.deepcopy(model.state_dict()), 0
    for step in range(1, config.iters + 1):
        index = pairs.train[torch.randint(len(pairs.train), (config.batch_size,), generator=batches)]
        users, items = index // pairs.n_items, index % pairs.n_items
        logits = model.score_pairs(users, items)
        loss = pairs.loss(estimator, logits, index, config.clip)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            valid_loss = validation_loss(all_logits(model, pairs.n_users, pairs.n_items))
        if valid_loss < best:
            best, best_state, best_step = valid_loss, copy.deepcopy(model.state_dict()), step
    best_model = MF(config.dim, biases=True)
    best_model.build(grid_space(pairs.n_users, pairs.n_items))
    best_model.load_state_dict(best_state)
    return model, best_model, best_step


def heldout_log_loss(model: MF, pairs: PairData) -> float:
    """Mean cross-entropy of σ(logit) against the sampled relevance R over the test (Y = 0) pairs."""
    with torch.no_grad():
        logits = all_logits(model, pairs.n_users, pairs.n_items)[pairs.test]
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, pairs.relevance[pairs.test]))


def ranking_candidates(data: SemiSynthetic, negatives: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per evaluated user: candidate items, relevance flags and a validity mask, each ``[U_eval, C]``.

    Users with relevant test pairs (Y = 0, R = 1) are evaluated: those items are the positives; ``negatives``
    items are drawn without replacement from the items that are anyone's relevant test pair, excluding every
    item relevant (R = 1) to the user. Rows are padded to the longest list (``valid`` False on padding).
    """
    positive = (data.relevance == 1) & (data.click == 0)  # [U, I] relevant test pairs
    pool = np.flatnonzero(positive.any(axis=0))
    rng = np.random.default_rng(seed)
    users = np.flatnonzero(positive.any(axis=1))
    lists: list[np.ndarray] = []
    n_pos: list[int] = []
    for user in users:
        pos = np.flatnonzero(positive[user])
        allowed = pool[data.relevance[user, pool] == 0]
        neg = rng.choice(allowed, size=min(negatives, len(allowed)), replace=False)
        lists.append(np.concatenate([pos, neg]))
        n_pos.append(len(pos))
    width = max(len(x) for x in lists)
    items = np.zeros((len(users), width), dtype=np.int64)
    relevant = np.zeros((len(users), width), dtype=bool)
    valid = np.zeros((len(users), width), dtype=bool)
    for row, (chosen, k) in enumerate(zip(lists, n_pos)):
        items[row, : len(chosen)] = chosen
        relevant[row, :k] = True
        valid[row, : len(chosen)] = True
    return users, items, np.stack([relevant, valid])


def ranking_metrics(
    scores: np.ndarray, items: np.ndarray, relevant: np.ndarray, valid: np.ndarray, ks: tuple[int, ...]
) -> dict[str, float]:
    """Mean over users of DCG, Recall and MAP at each K of candidate lists (``[U, C]`` arrays; ``items`` are the
    candidates' codes, which break ties as everywhere in recsys).

    - ``dcg@K``: Σ_{r ≤ K} rel_r / log2(r + 1) divided by the user's number of positives (standard discount).
    - ``dcg_repo@K``: the authors' code, rel_1 + Σ_{r=2..K} rel_r / log2(r) over the same divisor: rank 2
      weighs 1 instead of 1/log2(3) (their rank-2 quirk), kept to compare with their figure.
    - ``recall@K``: hits in the top K / positives; ``map@K``: Σ over hits at r ≤ K of precision@r / positives.
    """
    order = rank_candidates(scores, items, valid)
    rel = np.take_along_axis(relevant & valid, order, axis=1).astype(np.float64)  # [U, C] by rank
    n_pos = relevant.sum(axis=1).astype(np.float64)
    repo = np.concatenate([[1.0], 1.0 / np.log2(np.arange(2, rel.shape[1] + 1, dtype=np.float64))])
    standard, quirk, precision = dcg(rel, ks), dcg(rel, ks, repo), precision_weighted(rel, ks)
    out: dict[str, float] = {}
    for k in ks:
        out[f"dcg@{k}"] = float(np.mean(standard[k] / n_pos))
        out[f"dcg_repo@{k}"] = float(np.mean(quirk[k] / n_pos))
        out[f"recall@{k}"] = float(np.mean(rel[:, :k].sum(1) / n_pos))
        out[f"map@{k}"] = float(np.mean(precision[k] / n_pos))
    return out


def evaluate_ranking(model: MF, users: np.ndarray, items: np.ndarray, flags: np.ndarray, n_items: int, ks) -> dict[str, float]:
    """`ranking_metrics` of ``model`` on candidates from `ranking_candidates`."""
    with torch.no_grad():
        scores = model.all_scores(
            model.encode("user", torch.from_numpy(users)), model.encode("item", torch.arange(n_items))
        ).numpy()  # [U_eval, I]
    return ranking_metrics(np.take_along_axis(scores, items, axis=1), items, flags[0], flags[1], ks)


def run_study(
    datasets: dict[float, SemiSynthetic],
    estimators: tuple[str, ...] = STUDY_ESTIMATORS,
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    config: StudyConfig = StudyConfig(),
    progress: bool = True,
) -> list[StudyRun]:
    """Train every (p, estimator, seed); fill in relative log loss against the oracle of the same p and seed."""
    from tqdm.auto import tqdm

    runs: list[StudyRun] = []
    bar = tqdm(total=len(datasets) * len(estimators) * len(seeds), disable=not progress, desc="mnar study")
    for power, data in datasets.items():
        pairs = PairData(data, config)
        users, items, flags = ranking_candidates(data, config.negatives, config.negative_seed)
        for seed in seeds:
            for estimator in estimators:
                started = time.perf_counter()
                final, best, step = train_run(pairs, estimator, seed, config)
                metrics = evaluate_ranking(final, users, items, flags, pairs.n_items, config.ks)
                params = {"dim": config.dim, "lr": config.lr, "l2": config.l2, "iters": config.iters,
                          "batch_size": config.batch_size, "eps": data.eps,
                          **({"clip": config.clip} if estimator == "clipped" else {})}  # fmt: skip
                runs.append(
                    StudyRun(power, estimator, seed, heldout_log_loss(best, pairs), step, metrics,
                             time.perf_counter() - started, params=params)  # fmt: skip
                )
                bar.update()
    bar.close()
    oracle = {(r.p, r.seed): r.test_log_loss for r in runs if r.estimator == "oracle"}
    for run in runs:
        if (run.p, run.seed) in oracle:
            run.relative_log_loss = run.test_log_loss / oracle[(run.p, run.seed)]
    return runs
