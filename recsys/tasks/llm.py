"""`LLMTask`: BIGRec-style LLM recommendation. A causal LM (LoRA through peft) is fine-tuned on prompts built from
each user's time-ordered history (sliding windows of up to ``max_history`` item identifiers → the next one; loss on
the response tokens, or on the whole sequence as the authors' code does), then recommends by generating and
grounding:

- ``l2-lm``: beam search, then the L2 distance between the generated text's and every item's last-token hidden
  state of the base LM (no adapters), as BIGRec;
- ``l2-minilm``: the same distance between all-MiniLM-L6-v2 sentence vectors;
- ``constrained`` (ours): beam search over a prefix trie of the catalogue, which can only emit real items (never
  one the user has seen) and ranks them by sequence log-probability.

L2 scores may be re-weighted by popularity, ``D̂ · (1 + pop)^-γ``, with γ fixed or chosen on validation
(``gamma: auto``). `score` returns ``[B, n_items]`` like every `Recommender`, so the shared evaluator, significance
tests and the benchmark treat it as any other model. Validation monitors the LM loss of each user's validation
item (``val/loss``), as BIGRec early-stops on the evaluation loss.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, Sequence

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.data.prompts import (Identifiers, PromptTemplate, PromptTokens, TokenSamples, Windows, catalogue_lines,
                                 history_windows, item_identifiers)  # fmt: skip
from recsys.data.registry import data_dir
from recsys.data.selection import Selection, sample_keys
from recsys.data.sequences import Sequences, first_targets
from recsys.errors import RunError
from recsys.evaluation.evaluator import Evaluation, evaluate
from recsys.models.generative import GenerativeLM
from recsys.models.grounding import ItemTrie, popularity_adjusted
from recsys.models.language import pad
from recsys.recommender import Recommender
from recsys.sequential import SequentialRecommender
from recsys.tasks.base import Batch, RecommenderTask

log = logging.getLogger(__name__)

Grounding = Literal["l2-lm", "l2-minilm", "constrained"]
GROUNDINGS: tuple[str, ...] = ("l2-lm", "l2-minilm", "constrained")
GAMMAS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
"""The γ grid of ``gamma: auto`` (BIGRec searches 0 … 99 per metric on validation; NDCG@10 decides here)."""
UNRANKED = -1e4
"""Score offset of items no constrained beam reached: below every beam, ordered by training popularity."""


class LLMTask(RecommenderTask, SequentialRecommender):
    """Fine-tune a causal LM on history prompts and recommend by generate-then-ground.

    Args:
        model: the LM (`GenerativeLM`: which LM, LoRA settings).
        template: the prompt wording (DEALRec's Alpaca-style movie template by default).
        ids: item identifiers: ``titles`` (BIGRec), or OpenP5's ``sequential`` / ``collaborative`` indices.
        max_history: previous items per sample and per prompt.
        max_prompt_tokens: longest prompt; the oldest history items are dropped to fit, never part of one.
        samples: train on this many windows, drawn once from ``seed`` (BIGRec's ``--sample``); all when None.
        stride: keep every ``stride``-th window counted back from each user's last item (1: every window, as
            BIGRec; ``max_history + 1`` with ``train_on_inputs``: windows that tile each sequence, so every
            training transition is a target once per epoch at a tenth of the tokens).
        train_on_inputs: take the loss on the prompt tokens too (the authors' code), not only the response.
        grounding: ``l2-lm``, ``l2-minilm`` or ``constrained`` (see the module).
        beams: beams of the L2 groundings' generation (BIGRec: 4; the top beam is grounded).
        constrained_beams: beams of constrained decoding: each finished beam is a distinct ranked item.
        gamma: popularity re-weighting γ of the L2 groundings, or ``auto``: chosen on validation from `GAMMAS`.
        exclude_history: constrained decoding never emits an item of the user's history (the evaluator never
            ranks them either, so beams are not spent on them).
        warmup_steps: linear learning-rate warm-up over the first optimiser steps (BIGRec: 20), applied to the
            task's AdamW or to the CLI's ``--optimizer``.
        lr: AdamW's learning rate (when the CLI gives no optimiser).
        weight_decay: AdamW's weight decay.
        kwargs: `RecommenderTask`'s other arguments (``seed``, ``eval_k``, ``eval_batch_size``, …).
    """

    monitor: ClassVar[str] = "val/loss"
    monitor_mode: ClassVar[Literal["max", "min"]] = "min"
    point_metric_names: ClassVar[tuple[str, ...]] = ("loss", "exact_match")

    def __init__(
        self,
        model: GenerativeLM,
        template: PromptTemplate | None = None,
        ids: Identifiers = "titles",
        max_history: int = 10,
        max_prompt_tokens: int = 512,
        samples: int | None = None,
        stride: int = 1,
        train_on_inputs: bool = False,
        grounding: Grounding = "constrained",
        beams: int = 4,
        constrained_beams: int = 10,
        gamma: float | Literal["auto"] = 0.0,
        exclude_history: bool = True,
        warmup_steps: int = 20,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        if grounding not in GROUNDINGS:
            raise ValueError(f"grounding must be one of {GROUNDINGS}, got {grounding!r}")
        if gamma != "auto" and float(gamma) < 0:
            raise ValueError(f"gamma must be >= 0 or 'auto', got {gamma!r}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if samples is not None and samples < 1:
            raise ValueError(f"samples must be >= 1 (or None for all windows), got {samples}")
        if min(beams, constrained_beams) < 1:
            raise ValueError(f"beams and constrained_beams must be >= 1, got {beams}, {constrained_beams}")
        if kwargs.get("optimizer", "adam") != "adam":  # the base task's own choice; jsonargparse passes its default
            raise ValueError("LLMTask trains with AdamW; give another optimiser with the CLI's --optimizer "
                             "(optimizer: {class_path, init_args} in a YAML) instead of optimizer=")  # fmt: skip
        super().__init__(lr=lr, weight_decay=weight_decay, eval_batch_size=eval_batch_size, **kwargs)
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.template = template or PromptTemplate()
        self.ids, self.max_history, self.max_prompt_tokens = ids, max_history, max_prompt_tokens
        self.samples, self.stride, self.train_on_inputs, self.grounding = samples, stride, train_on_inputs, grounding
        self.beams, self.constrained_beams, self.gamma = beams, constrained_beams, gamma
        self.exclude_history, self.warmup_steps = exclude_history, warmup_steps
        self.forget_weights()
        self.generated_: list[int] = [0, 0]  # [exact matches, generations] of the current judgement

    # ------------------------------------------------------------------------------------------ set-up
    def build(self, data: InteractionsDataModule) -> None:
        """Identifiers, the LM (pre-trained on the catalogue text once when ``lm: catalogue``), prompt tokens, the
        catalogue trie."""
        train = data.train
        self.identifiers_ = item_identifiers(train, self.ids, seed=self.seed)
        self.model.build(catalogue_lines(train, self.identifiers_), [self.template.head(), self.template.tail()],
                         self.cache_folder())  # fmt: skip
        longest = max(len(self.model.encode(text)) for text in self.identifiers_) + 1
        limit = self.max_prompt_tokens
        if self.model.max_positions() is not None and limit + longest > self.model.max_positions():
            limit = self.model.max_positions() - longest
            log.warning("max_prompt_tokens %d + the longest response (%d) exceed the LM's %d positions: prompts are "
                        "cut to %d tokens", self.max_prompt_tokens, longest, self.model.max_positions(), limit)  # fmt: skip
        self.tokens_ = PromptTokens(self.template, self.model.encode, self.identifiers_, self.model.eos, limit)
        self.responses_ = [self.tokens_.response(i) for i in range(train.n_items)]
        self.trie_ = ItemTrie(self.responses_)
        self.popularity_ = torch.from_numpy(train.item_counts().astype(np.float32))
        self.forget_weights()

    def forget_weights(self) -> None:
        """Drop what was derived from the current weights (chosen γ, a fully fine-tuned LM's item states): the
        weights changed (a training epoch, a loaded state)."""
        self.gammas_: dict[str, float] = {}
        self.gamma_search_: dict[str, dict[float, float]] = {}
        self._tuned_states: torch.Tensor | None = None

    def cache_folder(self) -> Path:
        """``<data cache>/<dataset>/llm``: the catalogue LM, tokenised samples and catalogue embeddings."""
        return data_dir() / self.train_data.name / "llm"

    def _key(self, *parts: Any) -> str:
        """A hash of the data, the model and the settings a cached file depends on."""
        text = json.dumps([self.model.source_folder, _folder_stamp(self.model.source_folder), self.identifiers_,
                           self.template.head(), self.template.tail(), self.template.separator, *parts],
                          sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def training_windows(self, train: Interactions) -> Windows:
        """The training samples: windows of each user's training sequence (``max_history``, ``stride``)."""
        return history_windows(Sequences.from_interactions(train), self.max_history, self.stride)

    def training_examples(self, train: Interactions) -> TokenSamples:
        """Tokenised windows of the training sequences (cached on disk), ``samples`` of them when set."""
        windows = self.training_windows(train)
        digest = hashlib.sha256(np.concatenate([windows.users, windows.indptr, windows.history,
                                                windows.targets]).tobytes()).hexdigest()  # fmt: skip
        path = self.cache_folder() / f"samples-{self._key(digest, self.max_history, self.max_prompt_tokens)}.npz"
        if path.exists():
            tokens = TokenSamples.load(path)
        else:
            tokens = TokenSamples.build(self.tokens_, windows)
            path.parent.mkdir(parents=True, exist_ok=True)
            tokens.save(path)
        if self.samples is None or self.samples >= len(tokens):
            return tokens
        chosen = np.random.default_rng(self.seed).permutation(len(tokens))[: self.samples]
        return tokens.subset(chosen)

    def selected_examples(self, examples: TokenSamples, selection: Selection) -> TokenSamples:
        """The windows a selection names (by user and target position); a `RunError` names the first one this
        task does not build (another ``max_history`` / ``stride`` than the scored samples')."""
        if self.samples is not None:
            raise RunError("samples and data.selection both choose the training windows: set samples: null")
        windows = self.training_windows(self.train_data)  # the order `training_examples` tokenised them in
        keys = sample_keys(windows.users, windows.positions)
        order = np.argsort(keys)
        found = np.searchsorted(keys[order], selection.keys()).clip(max=len(keys) - 1)
        known = keys[order][found] == selection.keys()
        if not known.all():
            row = int(np.flatnonzero(~known)[0])
            user = self.train_data.users.decode([selection.users[row]])[0]
            raise RunError(f"{selection.path}: row {row} (user {user!r}, position {selection.positions[row]}) is not "
                           f"one of this task's training windows (max_history {self.max_history}, stride "
                           f"{self.stride}): select with the same settings; {int((~known).sum())} rows are unknown")  # fmt: skip
        log.info("training on %d selected samples of %d (%s)", len(selection), len(examples), selection.path)
        return examples.subset(np.sort(order[found]))

    def collate(self, batch: list[tuple[np.ndarray, int]]) -> Batch:
        """Right-padded ``ids``, ``mask`` and ``labels`` ``[B, L]``; labels are -100 on padding and, unless
        ``train_on_inputs``, on the prompt."""
        ids, mask = pad([row.tolist() for row, _ in batch], self.model.pad_id, left=False)
        labels = ids.masked_fill(mask == 0, -100)
        if not self.train_on_inputs:
            prompt = torch.arange(ids.shape[1])[None, :] < torch.tensor([n for _, n in batch])[:, None]
            labels = labels.masked_fill(prompt, -100)
        return {"ids": ids, "mask": mask, "labels": labels}

    # ------------------------------------------------------------------------------------------ training
    def losses(self, batch: Batch) -> torch.Tensor:
        """``[B]`` each sample's mean token cross-entropy (over the response, or everything with
        ``train_on_inputs``): DEALRec's effort score differentiates these."""
        return self.model.response_losses(batch["ids"], batch["mask"], batch["labels"])

    def configure_optimizers(self) -> Any:
        """AdamW (or the CLI's ``--optimizer``) over the trainable weights (the adapters under LoRA), with a
        per-step linear warm-up, plus the CLI's ``--lr_scheduler`` per epoch when given."""
        from lightning.pytorch.cli import instantiate_class

        trainable = [p for p in self.parameters() if p.requires_grad]
        scheduler = None
        if self._optimizer_config is not None:
            optimizer_init, scheduler_init = self._optimizer_config
            optimizer = instantiate_class(trainable, optimizer_init)
            scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
        else:
            optimizer = torch.optim.AdamW(trainable, lr=self.lr, weight_decay=self.weight_decay)
        schedulers = []
        if self.warmup_steps > 0:
            warm = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / self.warmup_steps))
            schedulers.append({"scheduler": warm, "interval": "step"})
        if scheduler is not None:
            plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            schedulers.append({"scheduler": scheduler, "interval": "epoch", **({"monitor": self.monitor} if plateau else {})})
        return [optimizer], schedulers

    def on_fit_start(self) -> None:
        """Training mode for the whole LM: transformers loads pretrained models in eval mode, which would leave
        their dropout (and LoRA's) off while fine-tuning."""
        self.train()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.forget_weights()

    def on_fit_end(self) -> None:
        self.forget_weights()  # the best epoch's weights come back at the end of a fit

    def validation_loss(self, batch_size: int = 64) -> float:
        """The mean training loss (the response's, or the whole sequence's with ``train_on_inputs``) of each
        validation user's first validation item after their training history (of the ``val_users`` sample when
        set: the LM's forward pass over every validation prompt outweighs a few-shot epoch)."""
        assert self.valid_ is not None
        users, targets = first_targets(self.valid_)
        sample = self.validation_user_sample()
        if sample is not None:
            keep = np.isin(users, sample)
            users, targets = users[keep], targets[keep]
        rows = []
        for user, target in zip(users, targets):
            prompt = self.tokens_.prompt(self._prompt_history(self.train_sequences_, user))
            rows.append((np.array(prompt + self.tokens_.response(target)), len(prompt)))
        was_training = self.training
        self.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                batch = {k: v.to(self.device) for k, v in self.collate(rows[start : start + batch_size]).items()}
                total += float(self.losses(batch).sum())
        self.train(was_training)
        return total / max(len(rows), 1)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val/loss", self.validation_loss(), prog_bar=True, batch_size=1)

    def on_test_end(self) -> None:
        """Save the adapter (the tested, best weights) into the run folder's ``adapter/`` when there is one."""
        folder = self.trainer.log_dir if self.trainer is not None else None
        if folder and self.trainer.is_global_zero:
            self.model.save_adapter(Path(folder) / "adapter")

    # ------------------------------------------------------------------------------------------ scoring
    def _prompt_history(self, sequences: Sequences | None, user: int) -> np.ndarray:
        assert sequences is not None
        return sequences.of(int(user))[-self.max_history :]

    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        """``[B, n_items]`` scores from the users' histories (the query's, else the training sequences) by the
        task's ``grounding``."""
        known = self.history_or_training(history)
        codes = users.cpu().numpy()
        prompts = [self.tokens_.prompt(self._prompt_history(known, u)) for u in codes]
        if self.grounding == "constrained":
            seen = [known.of(int(u)) if self.exclude_history else np.zeros(0, dtype=np.int64) for u in codes]
            return self.constrained_scores(prompts, seen)
        distances = self.l2_distances(prompts, self.grounding)
        return -popularity_adjusted(distances, self.popularity_, self.chosen_gamma(self.grounding))

    def constrained_scores(self, prompts: list[list[int]], seen: list[np.ndarray]) -> torch.Tensor:
        """``[B, n_items]``: every item a finished constrained beam reached scores its sequence log-probability;
        the rest score `UNRANKED` plus their normalised training popularity (below every beam)."""
        dead = [self.trie_.dead(items) for items in seen]
        beams, beam_scores = self.model.beam_search(prompts, self.constrained_beams, self._max_new_tokens(),
                                                    self.trie_, dead)  # fmt: skip
        scores = (UNRANKED + self.popularity_ / self.popularity_.max().clamp(min=1)).repeat(len(prompts), 1)
        for user, found in enumerate(beams):
            for ids, value in zip(found, beam_scores[user].tolist()):
                for item in self.trie_.items_at.get(self.trie_.walk(ids), []) if ids else []:
                    scores[user, item] = max(float(scores[user, item]), value)
            self._count_generation(bool(found[0]))
        return scores

    def l2_distances(self, prompts: list[list[int]], grounding: str) -> torch.Tensor:
        """``[B, n_items]`` L2 distances between each prompt's generated top beam and every item, in the
        ``grounding``'s embedding (the base LM's last-token states, or MiniLM sentence vectors)."""
        beams, _ = self.model.beam_search(prompts, self.beams, self._max_new_tokens())
        generated = [found[0] for found in beams]  # the top beam, as BIGRec grounds
        for ids in generated:
            self._count_generation(bool(ids) and self.trie_.walk(ids) in self.trie_.items_at)
        answers = [ids[:-1] for ids in generated]  # without the end-of-sequence id
        if grounding == "l2-lm":
            queries = self.model.last_states([ids or [self.model.eos] for ids in answers])
        else:
            from recsys.embeddings.text import text_vectors

            queries = torch.from_numpy(text_vectors([self.model.decode(ids) for ids in answers], "minilm"))
        return torch.cdist(queries, self.catalogue_vectors(grounding))

    def catalogue_vectors(self, grounding: str) -> torch.Tensor:
        """``[n_items, d]`` every item's embedding for an L2 grounding, cached on disk (keyed by data and model)
        while the embedding does not change with training (the base LM under LoRA; MiniLM)."""
        if grounding == "l2-minilm":
            from recsys.embeddings.text import text_vectors

            return torch.from_numpy(text_vectors(self.identifiers_, "minilm", cache_name=self.train_data.name))
        if self.model.lora_rank is None:  # fully fine-tuned: the LM's states move with its weights (kept until then)
            if self._tuned_states is None:
                self._tuned_states = self.model.last_states(self.tokens_.items, base=False)
            return self._tuned_states
        path = self.cache_folder() / f"catalogue-states-{self._key('base-last-token')}.npy"
        if path.exists():
            return torch.from_numpy(np.load(path))
        states = self.model.last_states(self.tokens_.items)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, states.numpy())
        return states

    def chosen_gamma(self, grounding: str) -> float:
        """γ of the L2 grounding: the fixed ``gamma``, or under ``auto`` the one of `GAMMAS` with the best
        validation NDCG@10 (chosen once per set of weights; all values kept in ``gamma_search_``)."""
        if self.gamma != "auto":
            return float(self.gamma)
        if grounding not in self.gammas_:
            if self.valid_ is None or self.valid_.frame.is_empty():
                raise ValueError("gamma 'auto' chooses γ on validation: fit with a validation split or set gamma")
            users = np.unique(self.valid_.frame["user"].to_numpy())
            assert self.train_sequences_ is not None
            prompts = [self.tokens_.prompt(self._prompt_history(self.train_sequences_, u)) for u in users]
            distances = torch.cat([self.l2_distances(prompts[s : s + self.eval_batch_size], grounding)
                                   for s in range(0, len(prompts), self.eval_batch_size)])  # fmt: skip
            search = {}
            for gamma in GAMMAS:
                fixed = _FixedScores(self.train_data, users, -popularity_adjusted(distances, self.popularity_, gamma))
                search[gamma] = evaluate(fixed, self.valid_, exclude=[self.train_data], k=(10,), users=users).summary["ndcg@10"]
            self.gamma_search_[grounding] = search
            self.gammas_[grounding] = max(search, key=lambda g: (search[g], -g))
            log.info("%s: γ = %g on validation (NDCG@10 %s)", grounding, self.gammas_[grounding],
                     {g: round(v, 4) for g, v in search.items()})  # fmt: skip
        return self.gammas_[grounding]

    def _max_new_tokens(self) -> int:
        return max(len(ids) for ids in self.responses_)

    def _count_generation(self, exact: bool) -> None:
        self.generated_[0] += int(exact)
        self.generated_[1] += 1

    # ------------------------------------------------------------------------------------------ judging
    def judge(self, part: Interactions, exclude: list[Interactions], k: Sequence[int] | None = None,
              users: np.ndarray | None = None) -> Evaluation:  # fmt: skip
        if self.grounding != "constrained":
            self.chosen_gamma(self.grounding)  # chosen before the count of this judgement's generations starts
        self.generated_ = [0, 0]
        return super().judge(part, exclude, k, users)

    def point_metrics(self, part: Interactions) -> dict[str, float]:
        """``exact_match``: the share of the judgement's top generations that are a catalogue item exactly."""
        matches, total = self.generated_
        return {"exact_match": matches / total} if total else {}

    def load_fitted_state(self, state: dict) -> None:
        super().load_fitted_state(state)
        self.forget_weights()

    # ------------------------------------------------------------------------------------------ Python API
    def fit(self, train: Interactions, valid: Interactions | None = None, *, max_epochs: int = 10, patience: int = 2,
            batch_size: int = 32, progress: bool = False, **trainer_kwargs: Any) -> Self:  # fmt: skip
        """`RecommenderTask.fit` with fine-tuning defaults (batch 32, at most 10 epochs, patience 2 on
        ``val/loss``)."""
        return super().fit(train, valid, max_epochs=max_epochs, patience=patience, batch_size=batch_size,
                           progress=progress, **trainer_kwargs)  # fmt: skip


class _FixedScores(Recommender):
    """Precomputed ``[U, n_items]`` scores of some users, to judge a γ with the shared evaluator."""

    def __init__(self, train: Interactions, users: np.ndarray, scores: torch.Tensor) -> None:
        self._remember(train)
        self.rows = np.full(train.n_users, -1, dtype=np.int64)
        self.rows[users] = np.arange(len(users))
        self.scores = scores

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        raise NotImplementedError("precomputed scores are not fitted")

    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        return self.scores[torch.from_numpy(self.rows[users.cpu().numpy()])]


def _folder_stamp(folder: str | None) -> list:
    """Names, sizes and modification times of a model folder's files: a cheap identity of its weights (a hub id
    without a local folder gives none)."""
    if folder is None or not Path(folder).is_dir():
        return []
    return sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in Path(folder).iterdir() if p.is_file())
