"""LLM recommender costs on ML-100k leave-one-out, side by side in one run (medians of ``--repeats``):

1. a fine-tuning epoch of `LLMTask` (Lightning, the default catalogue LM with the YAML's LoRA adapters) against a
   bare transformers + peft loop over the same model and the same batches (``model(ids, mask, labels).loss``,
   AdamW) — target ≤ 1.2×;
2. generation + grounding for every ML-100k user with each grounding (constrained decoding, L2 by the base LM's
   states, L2 by MiniLM), batched, with the KV cache — target < 60 s.

Usage:
    python scripts/bench_llm.py [--samples 2048] [--repeats 3] [--output results/bench-llm.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from recsys.data.modules import EpochBatches, InteractionsDataModule
from recsys.data.registry import load
from recsys.data.splits import split
from recsys.lightning_cli import load_experiment
from recsys.tasks.training import EpochTimer

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "ml-100k" / "bigrec.yaml"


def task_for(samples: int, seed: int = 2026):
    return load_experiment(CONFIG, ["--model.init_args.samples", str(samples), "--model.init_args.seed", str(seed),
                                    "--seed_everything", str(seed)])  # fmt: skip


def recsys_epoch(samples: int, train, batch_size: int) -> float:
    experiment = task_for(samples)
    timer = EpochTimer()
    experiment.task.fit(train, None, max_epochs=1, patience=1, batch_size=batch_size, callbacks=[timer])
    return timer.seconds[0]


def bare_epoch(samples: int, train, batch_size: int) -> float:
    """The same model (built and seeded as the task builds it), batches and optimiser, in a plain loop."""
    experiment = task_for(samples)
    task = experiment.task
    L.seed_everything(task.seed, verbose=False)
    task.attach(InteractionsDataModule.from_splits(train, seed=task.seed))
    examples = task.training_examples(train)
    batches = EpochBatches(examples, batch_size, task.seed, lambda: 0, collate=task.collate)
    network = task.model.network
    network.train()
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=task.lr)
    started = time.perf_counter()
    for batch in batches:
        loss = network(input_ids=batch["ids"], attention_mask=batch["mask"], labels=batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def ranking_seconds(train, valid, test, samples: int) -> dict[str, float]:
    """Seconds to rank every test user with each grounding after a short fine-tuning (γ fixed: no validation pass)."""
    experiment = task_for(samples)
    task = experiment.task
    task.gamma = 0.0
    task.fit(train, valid, max_epochs=1, patience=1, batch_size=experiment.data.batch_size)
    seconds = {}
    for grounding in ("constrained", "l2-lm", "l2-minilm"):
        task.grounding = grounding
        task.catalogue_vectors(grounding) if grounding != "constrained" else None  # cached item embeddings, as in use
        started = time.perf_counter()
        task.judge(test, [train, valid], k=(10,))
        seconds[grounding] = time.perf_counter() - started
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("results/bench-llm.json"))
    args = parser.parse_args()
    train, valid, test = split(load("ml-100k"), "loo", seed=2026)
    task_for(args.samples).task.restore(train)  # builds (and caches) the catalogue LM outside the timings
    ours, bare = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        ours.append(recsys_epoch(args.samples, train, args.batch_size))
        bare.append(bare_epoch(args.samples, train, args.batch_size))
    ranking = ranking_seconds(train, valid, test, args.samples)
    result = {"samples": args.samples, "batch_size": args.batch_size, "recsys_epoch_s": ours, "bare_epoch_s": bare,
              "ratio_median": statistics.median(ours) / statistics.median(bare), "rank_all_users_s": ranking,
              "users": int(np.unique(test.frame["user"].to_numpy()).size)}  # fmt: skip
    print(f"fine-tuning epoch ({args.samples} samples, batch {args.batch_size}), medians of {args.repeats}:")
    print(f"  recsys LLMTask   {statistics.median(ours):8.2f} s   {[round(s, 2) for s in ours]}")
    print(f"  bare HF + peft   {statistics.median(bare):8.2f} s   {[round(s, 2) for s in bare]}")
    print(f"  ratio            {result['ratio_median']:8.2f} x   (target <= 1.2)")
    print(f"generation + grounding for all {result['users']} users (target < 60 s):")
    for grounding, seconds in ranking.items():
        print(f"  {grounding:12s} {seconds:8.1f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
