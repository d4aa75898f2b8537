"""RecBole 1.2.1 side of `scripts/bench_vs_recbole.py`: one BPR, NeuMF or SASRec run on ML-100k, timed per epoch.

Runs in the throw-away RecBole virtual environment that `bench_vs_recbole.py` builds (never in the project's
venv), with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` so RecBole's ``torch.load`` of its own checkpoint works under
torch >= 2.6, and with a temporary working directory (RecBole writes ``log_tensorboard/`` into the cwd).

RecBole's default protocol and the model's shipped defaults, with the benchmark's matching settings (embedding
size 64, train batch 2048, one full-ranking evaluation batch, NDCG@10 for early stopping). The trainer is
RecBole's own `Trainer` with `_train_epoch` / `_valid_epoch` wrapped by timers; nothing else changes.

SASRec runs RecBole's sequential protocol (leave-one-out by time: ``LS valid_and_test``, ``TO``), with its shipped
defaults (2 layers, 2 heads, hidden 64, max length 50, CE) and ``--budget-s``: training stops after the first epoch
that ends past the budget, and the test uses the best checkpoint among epochs validated within it.

FM runs RecBole's labeled protocol (rating >= 4 -> 1, random 8:1:1 of all interactions, AUC for early stopping)
with its shipped defaults (embedding 10). ``--split-output`` writes the split RecBole makes for the model and seed
(raw ids, ``user,item,part``) and exits, so the benchmark can train recsys on the same data.

Usage: python _recbole_runner.py --model BPR --epochs 300 --stopping-step 10 --seed 2020 --output run.json
       python _recbole_runner.py --model SASRec --budget-s 600 --seed 2020 --output run.json
       python _recbole_runner.py --model FM --seed 2020 --split-output split.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def write_split(dataset, loaders: dict, path: Path) -> None:
    """``user,item,part`` rows (raw ids) of every interaction in each of RecBole's splits, so that the other side
    of the benchmark can train and validate on exactly the same data."""
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["user", "item", "part"])
        for part, loader in loaders.items():
            inter = loader._dataset.inter_feat
            users = dataset.id2token(dataset.uid_field, inter[dataset.uid_field].numpy())
            items = dataset.id2token(dataset.iid_field, inter[dataset.iid_field].numpy())
            out.writerows((u, i, part) for u, i in zip(users, items))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["BPR", "NeuMF", "SASRec", "FM"], required=True)
    parser.add_argument("--budget-s", type=float, default=None, help="SASRec: wall-clock training budget")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--stopping-step", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--eval-batch-size", type=int, default=4_096_000)  # ≥ 943 users × 1683 items: one batch
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default: stdout)")
    parser.add_argument("--split-output", type=Path, default=None,
                        help="write RecBole's train / valid / test split (raw user and item ids) to this CSV and exit")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config also reads `--key=value` command-line arguments

    started_process = time.perf_counter()
    import resource

    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    imported = time.perf_counter()
    checkpoints = tempfile.mkdtemp(prefix="recbole-ckpt-")
    ranking = {"metrics": ["NDCG", "Recall", "MRR", "Hit", "Precision"], "topk": [10], "valid_metric": "NDCG@10"}
    protocol = {
        "SASRec": {"eval_args": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO", "mode": "full"},
                   "MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE", "train_neg_sample_args": None, "eval_step": 1,
                   **ranking},
        # The labeled (click-style) protocol: rating >= 4 -> 1 on the observed pairs, random 8:1:1 of all of them;
        # FM keeps its shipped embedding_size (10).
        "FM": {"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": None, "order": "RO", "mode": "labeled"},
               "threshold": {"rating": 4}, "train_neg_sample_args": None, "train_batch_size": 2048,
               "metrics": ["AUC", "LogLoss"], "valid_metric": "AUC"},
    }.get(args.model, {"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
                       "embedding_size": 64, "train_batch_size": 2048,  # BPR's key; NeuMF's sizes default to 64
                       **ranking})  # fmt: skip
    config = Config(
        model=args.model,
        dataset="ml-100k",
        config_dict={
            **protocol,
            "data_path": str(Path(recbole.__file__).parent / "dataset_example"),
            "checkpoint_dir": checkpoints,
            "use_gpu": False,
            "show_progress": False,
            "seed": args.seed,
            "reproducibility": True,
            "epochs": args.epochs,
            "stopping_step": args.stopping_step,
            "eval_batch_size": args.eval_batch_size,
            "save_dataset": False,
            "save_dataloaders": False,
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if args.split_output:
        write_split(dataset, {"train": train_data, "valid": valid_data, "test": test_data}, args.split_output)
        return
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])

    epochs: list[dict] = []

    class BudgetReached(Exception):
        """The wall-clock budget ran out at the end of an epoch."""

    class TimedTrainer(Trainer):
        """RecBole's Trainer; each epoch's training and full validation are timed separately."""

        fit_started = 0.0

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            t0 = time.perf_counter()
            loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
            epochs.append({"epoch": epoch_idx, "train_s": time.perf_counter() - t0,
                           "loss": float(sum(loss) if isinstance(loss, tuple) else loss)})  # fmt: skip
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            t0 = time.perf_counter()
            score, result = super()._valid_epoch(valid_data, show_progress)
            t1 = time.perf_counter()
            epochs[-1].update(valid_s=t1 - t0, val_metric=float(result[metric]), wall_s=t1 - self.fit_started,
                              val={k: float(v) for k, v in result.items()})  # fmt: skip
            if metric == "ndcg@10":
                epochs[-1]["val_ndcg10"] = epochs[-1]["val_metric"]
            if args.budget_s is not None and t1 - self.fit_started > args.budget_s:
                raise BudgetReached  # before RecBole can checkpoint this epoch: it ended past the budget
            return score, result

    metric = config["valid_metric"].lower()  # "ndcg@10" or "auc", as RecBole names it in its results
    trainer = TimedTrainer(config, model)
    prepared = time.perf_counter()
    trainer.fit_started = prepared
    try:
        best_valid, _ = trainer.fit(train_data, valid_data, verbose=False, saved=True, show_progress=False)
    except BudgetReached:
        best_valid = max(e["val_metric"] for e in epochs if e["wall_s"] <= args.budget_s) if any(
            e["wall_s"] <= args.budget_s for e in epochs) else float("nan")  # fmt: skip
    fitted = time.perf_counter()
    checkpointed = os.path.exists(trainer.saved_model_file)
    test_result = trainer.evaluate(test_data, load_best_model=checkpointed, show_progress=False)
    tested = time.perf_counter()
    shutil.rmtree(checkpoints, ignore_errors=True)

    within = [e for e in epochs if "val_metric" in e and (args.budget_s is None or e["wall_s"] <= args.budget_s)]
    best_epoch = max(within, key=lambda e: (e["val_metric"], -e["epoch"]))["epoch"] if within else None
    out = {
        "framework": "recbole",
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "model": args.model,
        "seed": args.seed,
        "max_epochs": args.epochs,
        "stopping_step": args.stopping_step,
        "eval_batch_size": args.eval_batch_size,
        "n_users": int(dataset.user_num - 1),  # RecBole counts the padding id 0
        "n_items": int(dataset.item_num - 1),
        "n_train": len(train_data._dataset),
        "valid_batches": len(valid_data),
        "import_s": imported - started_process,
        "setup_s": prepared - imported,  # config, dataset, split, data loaders, model, trainer
        "fit_s": fitted - prepared,
        "test_s": tested - fitted,
        "epochs": epochs,
        "best_epoch": best_epoch,
        "valid_metric": metric,
        "best_val": float(best_valid),
        "best_val_ndcg10": float(best_valid) if metric == "ndcg@10" else None,
        "test": {k: float(v) for k, v in test_result.items()},
        "test_ndcg10": float(test_result["ndcg@10"]) if checkpointed and metric == "ndcg@10" else None,  # None: no
        # epoch within the budget
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "budget_s": args.budget_s,
    }
    text = json.dumps(out, indent=2)
    if args.output:
        args.output.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # set by the caller; harmless to repeat
    main()
