"""Epoch cost as the tables grow: recsys's MF-BPR against a bare sparse PyTorch loop, side by side in one run, the
dense/fused switch point, and an ML-20M-sized synthetic run.

1. Scale (``--interactions`` fixed, 1M by default; users 10k / 100k / 400k at 5k items, then items 5k / 50k / 500k
   at 10k users; every id occurs). Per size and repetition, alternating: one recsys epoch of ``BPRTask(MF(64))``
   at its defaults (tables of at least `FUSED_ROWS` rows fused: FBGEMM's row-wise Adagrad in backward on the rows
   touched; smaller ones dense, with Adam), and one epoch of the bare loop: ``nn.Embedding(rows, 65, sparse=True)``
   user and item tables, u · (q_i − q_j) margins, BPR, ``torch.optim.SparseAdam`` (uniform negatives; recsys draws
   unseen ones). Where dense Adam is affordable (at most ``--dense-rows`` rows) recsys with dense tables
   (``fused_rows=None``) runs too. Batch 2048, one thread. Reported: median epoch seconds over ``--repeats``, and
   the ratios the issue sets (recsys / bare ≤ 1.2 at every size, 400k users / 10k users ≤ 1.5).
2. Switch point (``--switch-interactions``, 200k): recsys epochs with dense and with fused tables at growing user
   counts (5k items): where the fused epoch gets cheaper is `FUSED_ROWS`.
3. ML-20M-sized (``--ml20m``): 138k users, 27k items with Zipf popularity (exponent 1), 20M draws (duplicates
   dropped), as ML-20M is: built into `Interactions` ("load"), split 8:1:1 per user, one MF-BPR epoch (fused
   tables), full-ranking evaluation of the test users (train and valid excluded, 1024 users a chunk: no
   users × items matrix exists). Times and peak RSS after each stage; progress bars for the epoch and the ranking.

Usage:
    python scripts/bench_scale.py [--repeats 3] [--output results/bench_scale.json]
    python scripts/bench_scale.py --ml20m [--output results/bench_scale_ml20m.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from recsys.data.interactions import Interactions
from recsys.data.splits import per_user_random
from recsys.embeddings.tables import FUSED_ROWS
from recsys.evaluation.evaluator import evaluate
from recsys.models import MF
from recsys.tasks import BPRTask
from recsys.tasks.training import EpochTimer

BATCH = 2048
DIM = 64
SCALE = [(10_000, 5_000), (100_000, 5_000), (400_000, 5_000), (10_000, 50_000), (10_000, 500_000)]
SWITCH_USERS = [2_000, 10_000, 25_000, 50_000, 100_000]


def synthetic(n_users: int, n_items: int, n: int, seed: int, zipf: float | None = None) -> Interactions:
    """``n`` (user, item) draws, every user and item at least once (uniform items, or Zipf(``zipf``) by item
    rank), duplicates dropped, as `Interactions`."""
    rng = np.random.default_rng(seed)
    users = rng.permutation(np.concatenate([np.arange(n_users), rng.integers(0, n_users, n - n_users)]))
    if zipf is None:
        rest = rng.integers(0, n_items, n - n_items)
    else:
        weights = 1.0 / np.arange(1, n_items + 1) ** zipf
        rest = rng.choice(n_items, size=n - n_items, p=weights / weights.sum())
    items = rng.permutation(np.concatenate([np.arange(n_items), rest]))
    frame = pl.DataFrame({"user": users.astype(np.int32), "item": items.astype(np.int32)}).unique()
    return Interactions.from_frame(frame, name=f"synthetic-{n_users}x{n_items}")


def recsys_epoch(data: Interactions, fused_rows: int | None = FUSED_ROWS, progress: bool = False) -> tuple[float, BPRTask]:
    """One epoch of ``BPRTask(MF(64))`` (Adam lr 1e-3 on dense parameters, the fused tables' own defaults)."""
    timer = EpochTimer()
    task = BPRTask(MF(DIM), lr=1e-3, fused_rows=fused_rows, seed=0)
    task.fit(data, None, max_epochs=1, batch_size=BATCH, progress=progress, callbacks=[timer])
    return timer.seconds[0], task


def bare_epoch(data: Interactions, seed: int) -> float:
    """One epoch of the bare sparse loop over ``data``'s pairs: ``nn.Embedding(sparse=True)`` + `SparseAdam`."""
    torch.manual_seed(seed)
    users = torch.nn.Embedding(data.n_users, DIM + 1, sparse=True)
    items = torch.nn.Embedding(data.n_items, DIM + 1, sparse=True)
    optimizer = torch.optim.SparseAdam([users.weight, items.weight], lr=1e-3)
    pairs_u = torch.from_numpy(data.frame["user"].to_numpy().astype(np.int64))
    pairs_i = torch.from_numpy(data.frame["item"].to_numpy().astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for index in torch.randperm(len(pairs_u), generator=generator).split(BATCH):
        u, i = pairs_u[index], pairs_i[index]
        j = torch.randint(0, data.n_items, (len(index),), generator=generator)
        q = items(torch.cat([i, j]))
        loss = -F.logsigmoid((users(u) * (q[: len(u)] - q[len(u) :])).sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def scale(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for n_users, n_items in SCALE:
        data = synthetic(n_users, n_items, args.interactions, seed=0)
        times: dict[str, list[float]] = {"recsys": [], "bare": [], "recsys_dense": []}
        dense_too = n_users + n_items <= args.dense_rows
        for repeat in range(args.repeats):
            order = ("recsys", "bare") if repeat % 2 == 0 else ("bare", "recsys")
            for side in order:
                if side == "recsys":
                    seconds, task = recsys_epoch(data)
                    path = "fused" if task.model.embeddings.fused is not None else "dense"
                else:
                    seconds = bare_epoch(data, seed=repeat)
                times[side].append(seconds)
            if dense_too:
                times["recsys_dense"].append(recsys_epoch(data, fused_rows=None)[0])
        row = {"users": n_users, "items": n_items, "interactions": data.frame.height, "recsys_tables": path,
               **{f"{k}_s": statistics.median(v) for k, v in times.items() if v}, "runs": times}  # fmt: skip
        row["recsys_over_bare"] = row["recsys_s"] / row["bare_s"]
        rows.append(row)
        dense = f"{row['recsys_dense_s']:7.2f}" if dense_too else "      —"
        print(f"{n_users:>8,} users {n_items:>8,} items: recsys ({path}) {row['recsys_s']:6.2f} s   bare sparse "
              f"{row['bare_s']:6.2f} s   ratio {row['recsys_over_bare']:.2f}   recsys dense {dense} s", flush=True)  # fmt: skip
    return rows


def switch(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for n_users in SWITCH_USERS:
        data = synthetic(n_users, 5_000, args.switch_interactions, seed=1)
        dense = statistics.median(recsys_epoch(data, fused_rows=None)[0] for _ in range(args.repeats))
        fused = statistics.median(recsys_epoch(data, fused_rows=0)[0] for _ in range(args.repeats))
        rows.append({"users": n_users, "items": 5_000, "rows": n_users + 5_000, "dense_s": dense, "fused_s": fused})
        print(f"switch: {n_users + 5_000:>8,} rows: dense {dense:6.2f} s   fused {fused:6.2f} s   "
              f"({data.frame.height:,} interactions)", flush=True)  # fmt: skip
    return rows


def ml20m(args: argparse.Namespace) -> dict[str, Any]:
    stages: dict[str, Any] = {}

    def done(stage: str, started: float) -> None:
        stages[stage] = {"s": time.perf_counter() - started, "peak_rss_gib": peak_rss_gib()}
        print(f"ml20m {stage}: {stages[stage]['s']:.1f} s, peak RSS {stages[stage]['peak_rss_gib']:.2f} GiB", flush=True)

    started = time.perf_counter()
    data = synthetic(138_000, 27_000, 20_000_000, seed=2, zipf=1.0)
    done("load", started)
    started = time.perf_counter()
    train, valid, test = per_user_random(data, (0.8, 0.1, 0.1), seed=2026)
    done("split", started)
    started = time.perf_counter()
    epoch_s, task = recsys_epoch(train, progress=True)
    done("fit", started)
    stages["fit"]["epoch_s"] = epoch_s
    started = time.perf_counter()
    ev = evaluate(task, test, exclude=[train, valid], k=(10,), batch_size=1024, progress=True)
    done("evaluate", started)
    return {"interactions": data.frame.height, "users": data.n_users, "items": data.n_items,
            "tables": "fused" if task.model.embeddings.fused is not None else "dense",
            "ndcg@10": ev.summary["ndcg@10"], "stages": stages}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--switch-interactions", type=int, default=200_000)
    parser.add_argument("--dense-rows", type=int, default=150_000, help="run recsys with dense tables up to this many rows")
    parser.add_argument("--ml20m", action="store_true", help="the ML-20M-sized run instead of the scale and switch runs")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.ml20m:
        result: dict[str, Any] = {"ml20m": ml20m(args)}
    else:
        result = {"scale": scale(args), "switch": switch(args)}
        small, large = result["scale"][0], result["scale"][2]
        print(f"400k-user epoch / 10k-user epoch: {large['recsys_s'] / small['recsys_s']:.2f} (target <= 1.5); "
              f"worst recsys / bare: {max(r['recsys_over_bare'] for r in result['scale']):.2f} (target <= 1.2)")  # fmt: skip
    output = args.output or Path("results") / ("bench_scale_ml20m.json" if args.ml20m else "bench_scale.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
