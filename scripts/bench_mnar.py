"""One training epoch over the whole ML-100k grid (943 × 1682 = 1.59M pairs): `RelMFTask` under each estimator
versus a bare PyTorch MF loop (two `nn.Embedding` tables with a bias column, BCE, the same optimiser) over the
same pairs and batch size.

    python scripts/bench_mnar.py [--reps 5] [--dim 10] [--batch-size 4096]

Both sides shuffle the grid each epoch and take one optimiser step per batch. The task's epoch is timed by a
callback from the start to the end of Lightning's training epoch (data-module batches included, validation
off). Repetitions alternate bare / estimators; medians are printed side by side with their ratio (target ≤ 1.5).
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

import recsys
from recsys.data.examples import all_pairs
from recsys.data.modules import InteractionsDataModule
from recsys.mnar import PopularityPropensity
from recsys.models import MF
from recsys.tasks.mnar import RelMFTask
from recsys.tasks.training import EpochTimer, quiet_lightning


def bare_epoch(users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor, n_users: int, n_items: int,
               dim: int, batch_size: int, seed: int) -> float:  # fmt: skip
    """Seconds of one epoch of a plain MF: shuffle, then per batch gather → dot + biases → BCE → backward → SGD."""
    torch.manual_seed(seed)
    user = nn.Embedding(n_users, dim + 1)
    item = nn.Embedding(n_items, dim + 1)
    global_bias = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([*user.parameters(), *item.parameters(), global_bias], lr=0.1, weight_decay=1e-5)
    started = time.perf_counter()
    order = torch.randperm(len(users), generator=torch.Generator().manual_seed(seed))
    for index in order.split(batch_size):
        u, i, y = users[index], items[index], labels[index]
        pu, qi = user(u), item(i)
        logits = (pu[:, :dim] * qi[:, :dim]).sum(-1) + pu[:, dim] + qi[:, dim] + global_bias
        loss = F.binary_cross_entropy_with_logits(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def task_epoch(data: InteractionsDataModule, estimator: str, dim: int, seed: int) -> float:
    """Seconds of one Lightning training epoch of `RelMFTask` (the whole epoch in one Lightning step)."""
    L.seed_everything(seed, verbose=False)
    task = RelMFTask(MF(dim), estimator=estimator, propensity=PopularityPropensity(0.5), clip=0.05,
                     positive_weight=5.0, lr=0.1, weight_decay=1e-5, optimizer="sgd", seed=seed)  # fmt: skip
    timer = EpochTimer()
    with quiet_lightning():
        trainer = L.Trainer(max_epochs=1, callbacks=[timer], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            num_sanity_val_steps=0, accelerator="cpu")  # fmt: skip
        trainer.fit(task, datamodule=data)
    return timer.seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--estimators", nargs="+", default=["naive", "wmf", "ips", "clipped_ips"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train = recsys.datasets.load("ml-100k")
    data = InteractionsDataModule.from_splits(train, batch_size=args.batch_size)  # RelMFTask: the grid, one step an epoch
    grid = all_pairs(train)
    times: dict[str, list[float]] = {"bare": [], **{e: [] for e in args.estimators}}
    for rep in range(args.reps + 1):  # the first round warms up and is dropped
        round_times = {"bare": bare_epoch(grid["user"], grid["item"], grid["label"], train.n_users, train.n_items,
                                          args.dim, args.batch_size, rep)}  # fmt: skip
        for estimator in args.estimators:
            round_times[estimator] = task_epoch(data, estimator, args.dim, rep)
        if rep:
            for name, seconds in round_times.items():
                times[name].append(seconds)
        print(f"rep {rep}{' (warm-up)' if not rep else ''}: " + ", ".join(f"{k} {v:.3f}s" for k, v in round_times.items()))

    bare = statistics.median(times["bare"])
    n_steps = -(-len(grid["user"]) // args.batch_size)
    print(f"\nML-100k grid {len(grid['user']):,} pairs, batch {args.batch_size} ({n_steps} steps), dim {args.dim}, "
          f"{args.threads} thread(s), medians of {args.reps} alternated reps")  # fmt: skip
    print(f"{'':18s} {'epoch s':>8s} {'ms/step':>8s} {'× bare':>7s}")
    print(f"{'bare MF':18s} {bare:8.3f} {bare / n_steps * 1e3:8.3f} {1.0:7.2f}")
    for estimator in args.estimators:
        median = statistics.median(times[estimator])
        verdict = "ok" if median / bare <= 1.5 else "over 1.5"
        print(f"{'RelMF ' + estimator:18s} {median:8.3f} {median / n_steps * 1e3:8.3f} {median / bare:7.2f}  {verdict}")


if __name__ == "__main__":
    main()
