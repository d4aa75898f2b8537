"""`DataPruning`: choose the few LLM fine-tuning samples worth training on — DEALRec (influence from a surrogate
+ λ · effort from the LM, coverage-enhanced selection) and the baselines it is measured against, all at one budget.

Methods (``method``):

- ``dealrec``: coverage selection over the combined score (after the ``hard_prune`` fraction of top scores);
- ``influence-only``: the same with λ = 0;
- ``greedy``: the top combined scores, no coverage step;
- ``random``: uniform;
- ``grand`` / ``el2n``: the top GraNd / EL2N scores of the surrogate (Paul et al., 2021);
- ``ccs``: coverage selection over EL2N with the same hard prune (Zheng et al., 2023; EL2N as DEALRec runs it).

Scores are computed once per (data, LM, surrogate, scoring settings) and cached on disk under a hash of all of
them, so every method and ratio reuses them and a changed input never reads a stale file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from recsys.data.modules import InteractionsDataModule
from recsys.data.registry import data_dir
from recsys.errors import RunError
from recsys.models.sasrec import SASRec
from recsys.pruning.lissa import LiSSA
from recsys.pruning.scores import SurrogateScores, effort_scores
from recsys.pruning.selection import budget_of, combined_score, coverage_select, score_bins, top_scores, uniform
from recsys.tasks.llm import LLMTask
from recsys.tasks.sequential import SequentialTask

log = logging.getLogger(__name__)

Method = Literal["dealrec", "random", "grand", "el2n", "ccs", "greedy", "influence-only"]
METHODS: tuple[str, ...] = ("dealrec", "random", "grand", "el2n", "ccs", "greedy", "influence-only")
SCORE_COLUMNS = ("influence", "effort", "grand", "el2n")
RECIPE = 1
"""Version of the scoring code in the cache key: bump it when a score's computation changes."""


def default_surrogate() -> SequentialTask:
    """DEALRec's surrogate: SASRec (hidden 64, 2 layers, 2 heads, dropout 0.5, length 50), BCE with one negative
    per position, Adam 1e-3."""
    return SequentialTask(SASRec(64, 2, 2, 256, 0.5, 0.5, 50), loss="bce", negatives=1, lr=1e-3)


@dataclass
class SampleScores:
    """Every training sample's identity and scores (``frame``: ``sample``, ``user``, ``position``, ``item`` and
    `SCORE_COLUMNS`), what computing them cost (``timings``) and whether they came from the cache."""

    frame: pl.DataFrame
    timings: dict[str, float]
    key: str
    cached: bool = False

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy().astype(np.float64)


@dataclass
class Selected:
    """A method's choice: the sample indices, the score it ranked (``None`` for random) and each sample's bin
    (``-1``: not binned or hard-pruned)."""

    method: str
    ratio: float
    budget: int
    indices: np.ndarray
    score: np.ndarray | None
    bins: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


class DataPruning:
    """Scores and a selection method for the LLM recommender's training samples.

    Args:
        method: one of `METHODS` (see the module).
        ratio: the share of samples kept, in (0, 1].
        lam: λ, the weight of the (min-max normalised) effort score (DEALRec: 0.3 Games, 1.0 Book / MicroLens).
        bins: K, the equal-width score bins of coverage selection (the authors' commands: 50).
        hard_prune: share of the highest scores dropped before coverage selection (the authors' code: 0.1).
        surrogate: the surrogate sequence model's task (`default_surrogate` when None); trained here with BCE.
        surrogate_epochs: its most training epochs (the authors: 200, keeping the last).
        surrogate_patience: its early-stopping patience, in validations, on NDCG@10 (the best one is kept).
        surrogate_batch_size: its training batch (the authors: 500).
        surrogate_validate_every: validate the surrogate every N epochs (the authors: 5).
        lissa: the H⁻¹v estimator (`LiSSA`'s defaults are the authors').
        influence_modules: module-name patterns of the surrogate weights of influence and GraNd (None: the last
            attention output projection, the authors' choice).
        effort_modules: module-name patterns of the LM weights of the effort score (None: the LM's last attention
            projection; its last LoRA B under LoRA, as the authors' ``layers.31.self_attn.v_proj.lora_B``).
        score_batch_size: samples per surrogate scoring batch.
        effort_batch_size: samples per LM scoring batch.
        seed: seed of the surrogate's training, the scores' negatives, LiSSA's draws and every random choice.
    """

    def __init__(
        self,
        method: Method = "dealrec",
        ratio: float = 0.02,
        lam: float = 0.5,
        bins: int = 50,
        hard_prune: float = 0.1,
        surrogate: SequentialTask | None = None,
        surrogate_epochs: int = 200,
        surrogate_patience: int = 10,
        surrogate_batch_size: int = 500,
        surrogate_validate_every: int = 5,
        lissa: LiSSA | None = None,
        influence_modules: list[str] | None = None,
        effort_modules: list[str] | None = None,
        score_batch_size: int = 256,
        effort_batch_size: int = 16,
        seed: int = 2026,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        budget_of(ratio, 1)  # the ratio's range
        if lam < 0 or bins < 1 or not 0.0 <= hard_prune < 1.0:
            raise ValueError(f"need lam >= 0, bins >= 1 and hard_prune in [0, 1); got {lam}, {bins}, {hard_prune}")
        self.method, self.ratio, self.lam, self.bins, self.hard_prune = method, ratio, lam, bins, hard_prune
        self.surrogate = surrogate or default_surrogate()
        self.surrogate_epochs, self.surrogate_patience = surrogate_epochs, surrogate_patience
        self.surrogate_batch_size, self.surrogate_validate_every = surrogate_batch_size, surrogate_validate_every
        self.lissa = lissa or LiSSA()
        self.influence_modules, self.effort_modules = influence_modules, effort_modules
        self.score_batch_size, self.effort_batch_size, self.seed = score_batch_size, effort_batch_size, seed

    # ------------------------------------------------------------------------------------------ scores
    def settings(self) -> dict[str, Any]:
        """Everything the scores depend on besides the data and the LM (the cache key's part of the config)."""
        model = self.surrogate.model
        return {
            "recipe": RECIPE, "seed": self.seed, "lissa": self.lissa.settings(),
            "surrogate": {**self.surrogate.params(), "model": type(model).__name__,
                          **{k: v for k, v in vars(model).items() if not k.startswith("_") and isinstance(v, (int, float, str))}},
            "surrogate_epochs": self.surrogate_epochs, "surrogate_patience": self.surrogate_patience,
            "surrogate_batch_size": self.surrogate_batch_size, "surrogate_validate_every": self.surrogate_validate_every,
            "influence_modules": self.influence_modules,
            "effort_modules": self.effort_modules,
        }  # fmt: skip

    def scores(self, task: LLMTask, data: InteractionsDataModule, progress: bool = False) -> SampleScores:
        """Every training window's influence, effort, GraNd and EL2N scores, from the cache when they were
        computed for the same data, LM and settings. ``task`` is the LLM recommender built on ``data`` (not
        fine-tuned: the effort score reads the LM as fine-tuning finds it)."""
        if task.samples is not None or data.selection_ is not None:
            raise RunError("data pruning scores every training window: the LLM run must set samples: null and no "
                           "data.selection")  # fmt: skip
        windows = task.training_windows(data.train)
        identity = _identity_frame(data, windows)
        key = self.cache_key(task, data, windows)
        path = data_dir() / data.train.name / "pruning" / f"scores-{key}.parquet"
        if path.exists():
            cached = pl.read_parquet(path)
            if cached.select(identity.columns).equals(identity):
                meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
                log.info("sample scores from the cache %s", path)
                return SampleScores(cached, meta["timings"], key, cached=True)
            log.warning("%s does not match the samples (a stale cache); computing the scores again", path)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        surrogate = self._trained_surrogate(data, progress)
        timings["surrogate_s"] = time.perf_counter() - started
        started = time.perf_counter()
        scorer = SurrogateScores(surrogate, windows, self.influence_modules, self.score_batch_size, self.seed)
        from_surrogate = scorer.scores(self.lissa, progress)
        timings["influence_s"] = time.perf_counter() - started
        started = time.perf_counter()
        samples = task.training_examples(data.train)
        effort = effort_scores(task, samples, self.effort_modules, self.effort_batch_size, progress)
        timings["effort_s"] = time.perf_counter() - started
        timings["score_s"] = timings["surrogate_s"] + timings["influence_s"] + timings["effort_s"]
        frame = identity.with_columns(pl.Series("effort", effort), *(pl.Series(k, v) for k, v in from_surrogate.items()))
        frame = frame.select(*identity.columns, *SCORE_COLUMNS)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        frame.write_parquet(partial)
        path.with_suffix(".json").write_text(json.dumps({"timings": timings, "settings": self.settings()}, indent=2, default=str))
        partial.rename(path)
        return SampleScores(frame, timings, key)

    def cache_key(self, task: LLMTask, data: InteractionsDataModule, windows: Any) -> str:
        """A hash of the samples, the training and validation data, the LM (its files, template, identifiers,
        loss) and `settings`."""
        digest = hashlib.sha256()
        for array in (windows.users, windows.positions, windows.indptr, windows.history, windows.targets):
            digest.update(np.ascontiguousarray(array).tobytes())
        for part in (data.train, data.valid):
            digest.update(part.frame.hash_rows().to_numpy().tobytes())
        lm = task._key(task.max_history, task.stride, task.max_prompt_tokens, task.train_on_inputs)
        digest.update(json.dumps([lm, self.settings()], sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]

    def _trained_surrogate(self, data: InteractionsDataModule, progress: bool) -> SequentialTask:
        """The surrogate trained on the training split (early-stopped on validation), seeded by ``seed``."""
        import copy

        surrogate = copy.deepcopy(self.surrogate)
        surrogate.seed = self.seed
        log.info("training the surrogate %s (at most %d epochs)", type(surrogate.model).__name__, self.surrogate_epochs)
        valid = data.valid if not data.valid.frame.is_empty() else None
        return surrogate.fit(data.train, valid, max_epochs=self.surrogate_epochs, patience=self.surrogate_patience,
                             batch_size=self.surrogate_batch_size, progress=progress,
                             check_val_every_n_epoch=self.surrogate_validate_every)  # fmt: skip

    # ------------------------------------------------------------------------------------------ selection
    def select(self, scores: SampleScores, method: str | None = None, ratio: float | None = None) -> Selected:
        """The samples ``method`` keeps at ``ratio`` (the configured ones when None)."""
        method, ratio = method or self.method, self.ratio if ratio is None else ratio
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        started = time.perf_counter()
        n = len(scores.frame)
        budget = budget_of(ratio, n)
        rng = np.random.default_rng(self.seed)
        lam = 0.0 if method == "influence-only" else self.lam
        score: np.ndarray | None
        if method in ("dealrec", "influence-only", "greedy"):
            score = combined_score(scores.column("influence"), scores.column("effort"), lam)
        elif method in ("grand", "el2n", "ccs"):
            score = scores.column("grand" if method == "grand" else "el2n")
        else:
            score = None
        if method in ("dealrec", "influence-only", "ccs"):
            assert score is not None
            indices, bins = coverage_select(score, budget, self.bins, self.hard_prune, rng)
        elif score is not None:
            indices, bins = top_scores(score, budget), score_bins(score, self.bins)
        else:
            indices, bins = uniform(n, budget, rng), np.full(n, -1, dtype=np.int64)
        return Selected(method, ratio, budget, indices, score, bins, {"select_s": time.perf_counter() - started})


def _identity_frame(data: InteractionsDataModule, windows: Any) -> pl.DataFrame:
    """``sample``, ``user`` (raw), ``position``, ``item`` (raw) of every window."""
    train = data.train
    return pl.DataFrame({
        "sample": np.arange(len(windows), dtype=np.int64),
        "user": train.users.decode(windows.users), "position": windows.positions.astype(np.int64),
        "item": train.items.decode(windows.targets),
    })  # fmt: skip
