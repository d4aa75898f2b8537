"""Sharded training matches single-process training: MF-BPR on ML-100k, once in one process and once with its
embedding tables sharded over 2 gloo processes by `Trainer(strategy="torchrec")`, then test NDCG@10 of both.

Same data split (``user-811``: per-user random 80/10/10, seed 2026), model (``BPRTask(MF(64))``), seed, learning
rate and number of epochs (no early stopping, no validation). Both runs start from the same weights (the strategy
starts the shards from rank 0's freshly built tables, seeded like the single run).

Batch size: with ``W`` ranks every rank takes every ``W``-th batch of the epoch's shuffled order, so each
optimiser step sees ``W`` batches at once (TorchRec divides sharded table gradients by ``W`` and DDP averages the
dense ones: one step on the mean loss of their union). To give both runs the same effective batch and the same
number of steps per epoch, the sharded run uses ``--batch-size / W`` rows per rank. Negative samples are drawn
per rank, so the two runs see different negatives: the comparison is statistical, not bitwise
(target |Δ NDCG@10| ≤ 0.005).

Usage: python scripts/sharded_vs_single.py [--epochs 30] [--sharding table_wise] [--batch-size 2048] [--lr 0.001]
       [--output results/sharded_vs_single.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from recsys.data.modules import InteractionsDataModule
from recsys.distributed import SHARDINGS, TorchRecStrategy, full_state_dict, spawn
from recsys.models.mf import MF
from recsys.tasks.objectives import BPRTask
from recsys.tasks.training import quiet_lightning

TARGET = 0.005


class InitialWeights(L.Callback):
    """Records a checksum of the full weights when training starts (collective under sharding)."""

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        state = full_state_dict(module)
        self.checksum = float(sum(v.double().abs().sum() for v in state.values() if torch.is_tensor(v)))


def train(rank: int, world: int, args: argparse.Namespace, out: str) -> None:
    """One run: ``world == 1`` in this process, else one rank of the sharded run. Rank 0 writes ``out``."""
    torch.set_num_threads(1)  # one thread per process in both runs (two-thread MF steps were slower here)
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # metrics are already equal on every rank
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*DistributedSampler.*")
    L.seed_everything(args.seed, verbose=False)
    data = InteractionsDataModule("ml-100k", "user-811", seed=2026, batch_size=args.batch_size // world)
    task = BPRTask(MF(64), lr=args.lr, seed=args.seed)
    initial = InitialWeights()
    strategy: Any = TorchRecStrategy(sharding=args.sharding) if world > 1 else "auto"
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=args.epochs, accelerator="cpu", devices=world, strategy=strategy, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0, callbacks=[initial],
        )  # fmt: skip
        started = time.perf_counter()
        trainer.fit(task, datamodule=data)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        trainer.test(task, datamodule=data, verbose=False)
        test_s = time.perf_counter() - started
    evaluation = task.test_evaluation_
    assert evaluation is not None
    if rank == 0:
        record = {
            "world_size": world,
            "sharding": args.sharding if world > 1 else None,
            "batch_size_per_rank": args.batch_size // world,
            "steps": trainer.global_step,
            "initial_weights_checksum": initial.checksum,
            "metrics": {k: v for k, v in evaluation.summary.items() if isinstance(v, float)},
            "users": evaluation.per_user.height,
            "timings": {"fit_s": round(fit_s, 2), "test_s": round(test_s, 2)},
        }
        Path(out).write_text(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--sharding", choices=SHARDINGS, default="table_wise")
    parser.add_argument("--batch-size", type=int, default=2048, help="single-process batch (sharded: / world size)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("results/sharded_vs_single.json"))
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    single_out, sharded_out = args.output.with_suffix(".single.tmp"), args.output.with_suffix(".sharded.tmp")

    train(0, 1, args, str(single_out))
    spawn(train, args.world_size, args, str(sharded_out))
    single, sharded = (json.loads(p.read_text()) for p in (single_out, sharded_out))
    single_out.unlink()
    sharded_out.unlink()

    delta = sharded["metrics"]["ndcg@10"] - single["metrics"]["ndcg@10"]
    result = {
        "dataset": "ml-100k",
        "protocol": "user-811",
        "model": "mf-bpr",
        "seed": args.seed,
        "params": {"embedding_dim": 64, "lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size,
                   "sharding": args.sharding, "world_size": args.world_size},  # fmt: skip
        "metrics": {"ndcg@10_single": single["metrics"]["ndcg@10"], "ndcg@10_sharded": sharded["metrics"]["ndcg@10"],
                    "ndcg@10_delta": delta},  # fmt: skip
        "within_target": abs(delta) <= TARGET,
        "single": single,
        "sharded": sharded,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchrec": _version("torchrec"), "lightning": L.__version__},  # fmt: skip
    }
    args.output.write_text(json.dumps(result, indent=2))
    print(f"test NDCG@10  single: {single['metrics']['ndcg@10']:.4f}  "
          f"sharded ({args.sharding}, {args.world_size} ranks): {sharded['metrics']['ndcg@10']:.4f}  "
          f"Δ = {delta:+.4f} ({'within' if abs(delta) <= TARGET else 'OUTSIDE'} ±{TARGET})")  # fmt: skip
    print(f"steps {single['steps']} / {sharded['steps']}, fit {single['timings']['fit_s']} s / "
          f"{sharded['timings']['fit_s']} s, same initial weights: "
          f"{abs(single['initial_weights_checksum'] - sharded['initial_weights_checksum']) < 1e-6}; wrote {args.output}")  # fmt: skip


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
