"""recsys against RecBole 1.2.1 on ML-100k, side by side in one run: MF-BPR vs RecBole's BPR, NeuMF vs RecBole's NeuMF.

Both sides use RecBole's default protocol (each user's interactions shuffled and cut 8:1:1, full ranking of
every unseen item, NDCG@10 for early stopping and best-epoch selection) on the same data: RecBole's own split for
the repetition's seed, exported once and read by recsys (``--own-split`` lets recsys cut its own, which adds the
split-to-split spread of validation NDCG, about ±0.005, to the time-to-target comparison), and the same settings: 64-dim
embeddings, Adam at lr 1e-3, training batch 2048, one uniform negative per positive, the whole validation in
one scoring batch. Every run is a fresh process, recsys and RecBole alternating (the order flips each
repetition), and each epoch's training and full validation are timed separately:

- recsys (this project's venv): ``BPRTask(MF(64))`` / ``BCETask(NeuMF(), negatives=1)`` fitted with
  ``task.fit(..., callbacks=[EpochTimer])``; then ``recsys.evaluate`` on the test split.
- RecBole (a throw-away venv built once under ``--recbole-venv``; RecBole is never installed into the project's
  venv): ``scripts/_recbole_runner.py`` runs RecBole's own ``Trainer`` with ``_train_epoch`` / ``_valid_epoch``
  wrapped by timers, and tests the best checkpoint.

Reported (medians over epochs, then over repetitions): training seconds per epoch, full-validation seconds,
wall time to RecBole's best validation NDCG@10 (recsys: its first epoch at or above the RecBole run's best of
the same repetition; RecBole: its best epoch), best validation and test NDCG@10. Targets: MF-BPR train time per
epoch ≤ 0.5× RecBole's BPR, NeuMF validation ≤ 0.2× RecBole's, time to RecBole's best ≤ 0.5×.

SASRec (``--models sasrec``, its own mode): recsys' SASRec (whole sequences, causal mask, CE) and RecBole's SASRec
(one sample per prefix, its defaults: 2 layers, 2 heads, hidden 64, max length 50, CE) on ML-100k leave-one-out
by time are trained at the same time, one torch thread each, for ``--budget-s`` wall seconds (default 600). One
run reports each side's median training seconds per pass over all training events (target ratio ≤ 0.1), its peak
RSS (recsys ≤ 1 GiB), and the test NDCG@10 of its best validation epoch within the budget (recsys ≥ RecBole).

Usage:
    python scripts/bench_vs_recbole.py --models sasrec [--budget-s 600] [--output results/bench_vs_recbole_sasrec.json]
    python scripts/bench_vs_recbole.py [--repeats 3] [--epochs 300] [--patience 10] [--models bpr,neumf]
                                       [--quick] [--output results/bench_vs_recbole.json]
                                       [--recbole-venv ~/.cache/recsys/recbole-venv] [--threads 1]
    python scripts/bench_vs_recbole.py --from-json results/bench_vs_recbole.json   # re-print the table

Each run records the recsys source it used (git HEAD and a hash of the package's files); the script warns when
they differ across runs (someone edited the working tree mid-benchmark). A full run (3 repetitions, both models,
1 thread) takes about 20 minutes on a 2-core machine, plus about 1.5 minutes to build the RecBole venv once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "_recbole_runner.py"
DEFAULT_VENV = Path.home() / ".cache" / "recsys" / "recbole-venv"

# The RecBole venv. torch's local version label makes pip take the CPU build (from this machine's wheel folder,
# or from an index a user names with PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu) and fail rather
# than fall back to PyPI's CUDA build. RecBole goes in with --no-deps: of its declared requirements, ray, plotly,
# thop, psutil and tabulate are only needed by quick_start / hyper-parameter tuning / FLOPs counting, none of
# which the runner imports. The rest is what `from recbole.{config,data,model,trainer,utils} import ...` needs.
TORCH_SPEC = "torch==2.13.0+cpu"
RECBOLE_SPEC = "recbole==1.2.1"
RECBOLE_DEPS = [
    "numpy==1.26.4",  # RecBole 1.2.1 uses np.float / np.int-era APIs removed in numpy 2
    "pandas==2.2.3",  # < 2.3
    "setuptools==80.10.2",  # < 81: tensorboard imports pkg_resources
    "scipy==1.17.1",
    "scikit-learn==1.9.1",
    "pyyaml==6.0.4",
    "colorlog==4.7.2",  # RecBole's own pin
    "colorama==0.4.4",  # RecBole's own pin
    "tqdm==4.70.1",
    "texttable==1.7.2",
    "tensorboard==2.21.0",  # recbole.utils imports torch.utils.tensorboard.SummaryWriter
]
RECBOLE_IMPORT_CHECK = (
    "import torch; assert torch.version.cuda is None, torch.version.cuda; "
    "from recbole.config import Config; from recbole.data import create_dataset, data_preparation; "
    "from recbole.model.general_recommender import BPR, NeuMF; from recbole.trainer import Trainer; "
    "from recbole.utils import get_model, init_seed; print('recbole', __import__('recbole').__version__, torch.__version__)"
)

MODELS = {"bpr": ("MF-BPR", "BPR"), "neumf": ("NeuMF", "NeuMF")}  # ranking models; "fm" and "sasrec" have own modes
RECBOLE_NAMES = {**{key: names[1] for key, names in MODELS.items()}, "fm": "FM"}
RECBOLE_REFERENCE_TEST_NDCG10 = {"bpr": 0.2937, "neumf": 0.2790}  # RecBole 1.2.1 here, mean of 3 seeds
TARGETS = {"train_ratio_bpr": 0.5, "valid_ratio_neumf": 0.2, "time_to_best_ratio": 0.5}


# ---------------------------------------------------------------------------------------------- RecBole venv
def _spec_hash() -> str:
    text = "\n".join([sys.version_info[:2].__repr__(), TORCH_SPEC, RECBOLE_SPEC, *RECBOLE_DEPS])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q", *args]
    print("[recbole-venv] pip install", " ".join(args), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    noise = "is ignored: it is neither a file nor a directory"  # this machine's pip config names absent folders
    shown = [ln for ln in (proc.stdout + proc.stderr).splitlines() if noise not in ln and ln.strip()]
    if proc.returncode != 0:
        print("\n".join(shown), file=sys.stderr)
        hint = (
            f"\n(pip needs a CPU build of torch, {TORCH_SPEC}; point it at one with PIP_FIND_LINKS=<wheel folder> or "
            "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu)" if any(a.startswith("torch") for a in args) else ""
        )  # fmt: skip
        raise SystemExit(f"[recbole-venv] pip install failed ({proc.returncode}){hint}")


def ensure_recbole_venv(venv: Path, python_exe: str) -> Path:
    """Create (once) the throw-away venv with RecBole 1.2.1 and a CPU torch; returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".bench-vs-recbole-installed"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == _spec_hash():
        return python
    started = time.perf_counter()
    print(f"[recbole-venv] building {venv} with {python_exe} ...", flush=True)
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([python_exe, "-m", "venv", str(venv)], check=True)
    _pip(python, TORCH_SPEC)  # first and alone, so nothing later can pull another torch
    _pip(python, TORCH_SPEC, *RECBOLE_DEPS)
    _pip(python, "--no-deps", RECBOLE_SPEC)
    check = subprocess.run([str(python), "-W", "ignore", "-c", RECBOLE_IMPORT_CHECK], capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(f"[recbole-venv] RecBole does not import:\n{check.stderr[-3000:]}")
    stamp.write_text(_spec_hash())
    print(f"[recbole-venv] {check.stdout.strip()} ready in {time.perf_counter() - started:.0f} s", flush=True)
    return python


def recsys_source() -> dict[str, Any]:
    """The recsys code a run used: git HEAD (read-only query) and a hash of the package's ``.py`` files, so runs
    that straddle an edit of a shared working tree can be spotted."""
    import recsys

    root = Path(recsys.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "."], capture_output=True, text=True)
    return {"git_head": head.stdout.strip() or None, "dirty": bool(dirty.stdout.strip()), "source_sha256": digest.hexdigest()[:16]}


# ---------------------------------------------------------------------------------------------- one run each
def run_recbole(python: Path, key: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="recbole-run-") as tmp:
        out = Path(tmp) / "run.json"
        cmd = [str(python), "-W", "ignore", str(RUNNER), "--model", RECBOLE_NAMES[key], "--epochs", str(args.epochs),
               "--stopping-step", str(args.patience), "--seed", str(seed), "--output", str(out)]  # fmt: skip
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore"}
        env.pop("PYTHONPATH", None)
        return _run_child(cmd, env, tmp, out)


def recbole_split(python: Path, seed: int, path: Path, model: str = "BPR") -> Path:
    """Write RecBole's split of ML-100k for ``seed`` under ``model``'s protocol (raw ids, ``user,item,part``)."""
    with tempfile.TemporaryDirectory(prefix="recbole-split-") as tmp:
        cmd = [str(python), "-W", "ignore", str(RUNNER), "--model", model, "--seed", str(seed), "--split-output", str(path)]
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore"}
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
    if proc.returncode != 0 or not path.exists():
        raise SystemExit(f"RecBole split export failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return path


def run_recsys(key: str, args: argparse.Namespace, seed: int, split: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="recsys-run-") as tmp:
        out = Path(tmp) / "run.json"
        cmd = [sys.executable, "-W", "ignore", str(Path(__file__).resolve()), "--worker", key, "--seed", str(seed),
               "--epochs", str(args.epochs), "--patience", str(args.patience), "--worker-output", str(out)]  # fmt: skip
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if split is not None:
            cmd += ["--split", str(split)]
        return _run_child(cmd, {**os.environ, "PYTHONWARNINGS": "ignore"}, os.getcwd(), out)


def _run_child(cmd: list[str], env: dict[str, str], cwd: str, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"run failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result = json.loads(out.read_text())
    result["process_s"] = time.perf_counter() - started
    return result


class EpochTimer(L.Callback):
    """Training and validation seconds of each epoch, the validation metric (NDCG@10 by default) and the wall time since ``t0``.

    Lightning validates inside the training epoch (after its last batch), so an epoch's training time is
    its span less its validation's; Lightning's own per-epoch work outside the hooks counts as training.
    """

    def __init__(self, metric: str = "val/ndcg@10") -> None:
        self.t0 = time.perf_counter()
        self.metric = metric
        self.epochs: list[dict[str, Any]] = []
        self.fit_started: float | None = None

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.fit_started = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epochs.append({"epoch": trainer.current_epoch, "valid_s": 0.0})
        self._epoch_start = self._last_batch = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        self._last_batch = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._valid_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        now = time.perf_counter()
        if trainer.sanity_checking or not self.epochs:
            return
        self.epochs[-1].update(
            valid_s=now - self._valid_start, val_metric=float(trainer.callback_metrics[self.metric]),
            wall_s=now - self.t0, val={k[4:]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")},
        )  # fmt: skip
        if self.metric == "val/ndcg@10":
            self.epochs[-1]["val_ndcg10"] = self.epochs[-1]["val_metric"]

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        epoch = self.epochs[-1]
        span = time.perf_counter() - self._epoch_start
        epoch.update(epoch_s=span, train_s=span - epoch["valid_s"], batches_s=self._last_batch - self._epoch_start)
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            epoch["loss"] = float(loss)



def split_from_file(data: Any, path: Path) -> tuple[Any, Any, Any]:
    """``(train, valid, test)`` of ``data`` as listed in a ``user,item,part`` CSV of raw ids (`recbole_split`);
    every interaction must be listed exactly once."""
    import polars as pl

    listed = pl.read_csv(path, schema={"user": pl.String, "item": pl.String, "part": pl.String})
    raw = data.decoded().with_columns(pl.col("user").cast(pl.String), pl.col("item").cast(pl.String))
    joined = raw.with_row_index("row").join(listed, on=["user", "item"], how="left")
    if len(joined) != len(raw) or len(listed) != len(raw) or joined["part"].null_count():
        raise SystemExit(f"{path}: its {len(listed)} rows do not list the {len(raw)} ML-100k interactions one to one")
    rows = {part: joined.filter(pl.col("part") == part)["row"] for part in ("train", "valid", "test")}
    return tuple(data.with_frame(data.frame[rows[part]]) for part in ("train", "valid", "test"))  # type: ignore[return-value]


TUNED_BPR = "mf-bpr-tuned"  # experiments/ml-100k/mf-bpr-tuned.yaml, raced against RecBole's BPR besides MF-BPR


def experiment_task(name: str, seed: int) -> tuple[Any, str]:
    """``(experiment, description)`` of ``experiments/ml-100k/<name>.yaml`` as ``recsys fit`` builds it (a
    `recsys.lightning_cli.Experiment`), with ``seed``."""
    from recsys.lightning_cli import load_experiment

    experiment = load_experiment(HERE.parent / "experiments" / "ml-100k" / f"{name}.yaml", ["--model.init_args.seed", str(seed)])
    task = experiment.task
    options = {key: value for key, value in task.hparams.items() if key != "seed"}
    described = ", ".join(f"{key} {value}" for key, value in {**options, "batch": experiment.data.batch_size}.items())
    return experiment, f"{type(task.model).__name__}({task.model.embedding_dim}): {described}"


def recsys_worker(key: str, seed: int, epochs: int, patience: int, output: Path, threads: int | None,
                  split: Path | None = None) -> None:
    """One recsys fit + test in this process (the project's venv); writes the same record shape as the runner.
    With ``split``, trains and evaluates on that split (RecBole's, for the same seed) instead of its own."""
    started_process = time.perf_counter()
    import torch

    import recsys
    from recsys.models import MF, NeuMF
    from recsys.tasks import BCETask, BPRTask

    if threads:
        torch.set_num_threads(threads)
    imported = time.perf_counter()
    data = recsys.datasets.load("ml-100k")
    if split is not None:
        train, valid, test = split_from_file(data, split)
    else:
        train, valid, test = recsys.splits.per_user_random(data, (0.8, 0.1, 0.1), seed=seed)
    batch_size = 2048
    if key == "bpr":
        task = BPRTask(MF(64), lr=1e-3, seed=seed)
    elif key == TUNED_BPR:  # the tuned config's hyper-parameters (its own dim, negatives, lr, L2 and batch)
        experiment, _ = experiment_task(TUNED_BPR, seed)
        task, batch_size = experiment.task, experiment.data.batch_size
    else:
        task = BCETask(NeuMF(), lr=1e-3, negatives=1, seed=seed)
    assert task.eval_batch_size >= train.n_users, "validation must score all users in one chunk, as RecBole's does"

    prepared = time.perf_counter()
    timer = EpochTimer()  # t0: just before fit (the data module, feature space and tables are built inside fit)
    task.fit(train, valid, max_epochs=epochs, patience=patience, batch_size=batch_size, callbacks=[timer])
    fitted = time.perf_counter()
    ev = recsys.evaluate(task, test, exclude=[train, valid], k=(10,))
    tested = time.perf_counter()

    best = task.best_weights_
    out = {
        "framework": "recsys",
        "recsys_version": recsys.__version__,
        "recsys_source": recsys_source(),
        "torch_version": torch.__version__,
        "lightning_version": L.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "model": MODELS[key][0] if key in MODELS else key,
        "seed": seed,
        "max_epochs": epochs,
        "patience": patience,
        "eval_batch_size": task.eval_batch_size,
        "n_users": train.n_users,
        "n_items": train.n_items,
        "n_train": len(train.frame),
        "import_s": imported - started_process,
        "setup_s": prepared - imported,  # load + split + task construction
        "fit_s": fitted - prepared,
        "fit_overhead_s": (timer.fit_started or prepared) - timer.t0,  # inside fit, before the first epoch
        "test_s": tested - fitted,
        "epochs": timer.epochs,
        "best_epoch": best.best_epoch,
        "best_val_ndcg10": float(best.best) if best.best is not None else None,
        "test": {k: float(v) for k, v in ev.summary.items() if isinstance(v, (int, float))},
        "test_ndcg10": float(ev.summary["ndcg@10"]),
    }
    output.write_text(json.dumps(out, indent=2))


# ---------------------------------------------------------------------------------------------- summary
def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _finite(v: float) -> float | None:
    return v if v != float("inf") else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def time_to_target(run: dict[str, Any], target: float) -> tuple[float | None, int | None]:
    """Wall seconds (since fit start) and epoch of the first validation at or above ``target``."""
    for epoch in run["epochs"]:
        if epoch.get("val_ndcg10") is not None and epoch["val_ndcg10"] >= target:
            return epoch["wall_s"], epoch["epoch"]
    return None, None


def summarise(key: str, pairs: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    per_rep = []
    for pair in pairs:
        rs, rb = pair["recsys"], pair["recbole"]
        rb_best_epoch = max(rb["epochs"], key=lambda e: (e.get("val_ndcg10", -1.0), -e["epoch"]))
        target = rb_best_epoch["val_ndcg10"]
        rs_wall, rs_epoch = time_to_target(rs, target)
        row = {"seed": rs["seed"], "target_val_ndcg10": target}
        for side, run in (("recsys", rs), ("recbole", rb)):
            row[side] = {
                "train_s_per_epoch": statistics.median(e["train_s"] for e in run["epochs"]),
                "valid_s": statistics.median(e["valid_s"] for e in run["epochs"] if "val_ndcg10" in e),
                "epochs_run": len(run["epochs"]),
                "best_epoch": run["best_epoch"],
                "best_val_ndcg10": run["best_val_ndcg10"],
                "test_ndcg10": run["test_ndcg10"],
                "fit_s": run["fit_s"],
            }
        row["recsys"]["time_to_target_s"], row["recsys"]["epoch_at_target"] = rs_wall, rs_epoch
        row["recbole"]["time_to_target_s"], row["recbole"]["epoch_at_target"] = rb_best_epoch["wall_s"], rb_best_epoch["epoch"]
        row["time_to_target_ratio"] = _ratio(rs_wall, rb_best_epoch["wall_s"])
        # secondary: both sides' first epoch at or above 99% of the RecBole run's best (robust to a plateau just
        # below the target)
        for side, run in (("recsys", rs), ("recbole", rb)):
            row[side]["time_to_99pct_s"], row[side]["epoch_at_99pct"] = time_to_target(run, 0.99 * target)
        row["time_to_99pct_ratio"] = _ratio(row["recsys"]["time_to_99pct_s"], row["recbole"]["time_to_99pct_s"])
        if "tuned" in pair:  # the tuned config against the same RecBole run
            tuned = pair["tuned"]
            wall, epoch = time_to_target(tuned, target)
            row["tuned"] = {"time_to_target_s": wall, "epoch_at_target": epoch, "best_val_ndcg10": tuned["best_val_ndcg10"],
                            "test_ndcg10": tuned["test_ndcg10"], "train_s_per_epoch": statistics.median(
                                e["train_s"] for e in tuned["epochs"])}  # fmt: skip
            row["tuned_time_to_target_ratio"] = _ratio(wall, rb_best_epoch["wall_s"])
        per_rep.append(row)

    def med(side: str, field: str) -> float | None:
        return _median([r[side][field] for r in per_rep])

    fields = ["train_s_per_epoch", "valid_s", "time_to_target_s", "time_to_99pct_s", "best_val_ndcg10", "test_ndcg10",
              "epochs_run", "fit_s"]  # fmt: skip
    medians = {side: {f: med(side, f) for f in fields} for side in ("recsys", "recbole")}
    reached = sum(r["recsys"]["time_to_target_s"] is not None for r in per_rep)
    return {
        "per_repetition": per_rep,
        "median": medians,
        "ratios": {
            "train_s_per_epoch": _ratio(medians["recsys"]["train_s_per_epoch"], medians["recbole"]["train_s_per_epoch"]),
            "valid_s": _ratio(medians["recsys"]["valid_s"], medians["recbole"]["valid_s"]),
            # per repetition, then the median; a repetition where recsys never reached the target counts as
            # infinitely slow (None in the JSON when that makes the median infinite)
            "time_to_target": _finite(statistics.median(
                [r["time_to_target_ratio"] if r["time_to_target_ratio"] is not None else float("inf") for r in per_rep]
            )),
            "time_to_99pct": _finite(statistics.median(
                [r["time_to_99pct_ratio"] if r["time_to_99pct_ratio"] is not None else float("inf") for r in per_rep]
            )),
        },
        "recsys_reached_target": f"{reached}/{len(per_rep)}",
        "recbole_reference_test_ndcg10": RECBOLE_REFERENCE_TEST_NDCG10[key],
        **(_summarise_tuned(per_rep) if all("tuned" in r for r in per_rep) else {}),
    }


def _summarise_tuned(per_rep: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the tuned config's runs and its time-to-target ratio (a miss counts as infinitely slow)."""
    ratios = [r["tuned_time_to_target_ratio"] for r in per_rep]
    return {"tuned": {
        "config": TUNED_BPR,
        "median": {f: _median([r["tuned"][f] for r in per_rep])
                   for f in ("time_to_target_s", "best_val_ndcg10", "test_ndcg10", "train_s_per_epoch")},
        "time_to_target_ratio": _finite(statistics.median(x if x is not None else float("inf") for x in ratios)),
        "reached_target": f"{sum(x is not None for x in ratios)}/{len(ratios)}",
    }}  # fmt: skip


def _fmt(v: float | None, spec: str) -> str:
    if v is None:
        return "—"
    if v == float("inf"):
        return "n/r"
    return format(v, spec)


def print_table(summary: dict[str, Any], repeats: int, threads: int | None) -> None:
    lines = [
        f"recsys vs RecBole 1.2.1 on ML-100k (RS 8:1:1, full ranking), medians of {repeats} repetition(s), "
        f"torch threads {threads or 'default'}; n/r: recsys never reached RecBole's best validation NDCG@10",
        "",
    ]
    head = f"{'':34s} {'recsys':>12s} {'RecBole':>12s} {'ratio':>8s}   target"
    lines += [head, "-" * len(head)]
    for key, s in summary.items():
        name, rb_name = MODELS[key]
        m, r = s["median"], s["ratios"]
        lines.append(f"{name} vs RecBole {rb_name}")

        def row(label: str, field: str, spec: str, ratio: float | None = None, target: float | None = None) -> None:
            verdict = ""
            if target is not None:
                verdict = f"≤ {target:g}: " + ("met" if ratio is not None and ratio <= target else "MISSED")
            ratio_text = _fmt(ratio, ".2f") + ("x" if ratio not in (None, float("inf")) else "")
            if field.startswith("time_to") and ratio is None:
                ratio_text = "n/r"
            lines.append(f"  {label:32s} {_fmt(m['recsys'][field], spec):>12s} {_fmt(m['recbole'][field], spec):>12s} "
                         f"{ratio_text if ratio is not None or field.endswith('_s') or 'per_epoch' in field else '':>8s}   {verdict}")  # fmt: skip

        row("train s / epoch", "train_s_per_epoch", ".3f", r["train_s_per_epoch"],
            TARGETS["train_ratio_bpr"] if key == "bpr" else None)  # fmt: skip
        row("full validation s", "valid_s", ".3f", r["valid_s"], TARGETS["valid_ratio_neumf"] if key == "neumf" else None)
        row("wall s to RecBole's best val", "time_to_target_s", ".1f", r["time_to_target"], TARGETS["time_to_best_ratio"])
        lines.append(f"  {'  (recsys reached it in)':32s} {s['recsys_reached_target']:>12s}")
        row("wall s to 99% of that", "time_to_99pct_s", ".1f", r.get("time_to_99pct"))
        row("best val NDCG@10", "best_val_ndcg10", ".4f")
        row("test NDCG@10", "test_ndcg10", ".4f")
        lines.append(f"  {'  (RecBole reference, 3 seeds)':32s} {'':>12s} {s['recbole_reference_test_ndcg10']:>12.4f}")
        row("epochs run", "epochs_run", ".0f")
        row("fit s (whole training)", "fit_s", ".1f", _ratio(m["recsys"]["fit_s"], m["recbole"]["fit_s"]))
        if "tuned" in s:
            t = s["tuned"]
            ratio = t["time_to_target_ratio"]
            verdict = f"≤ {TARGETS['time_to_best_ratio']:g}: " + ("met" if ratio is not None and ratio <= TARGETS["time_to_best_ratio"] else "MISSED")
            lines.append(f"{t['config']} (recsys' tuned hyper-parameters) vs the same RecBole BPR runs")
            lines.append(f"  {'wall s to RecBole best val':32s} {_fmt(t['median']['time_to_target_s'], '.1f'):>12s} "
                         f"{_fmt(m['recbole']['time_to_target_s'], '.1f'):>12s} {_fmt(ratio, '.2f') + 'x' if ratio else 'n/r':>8s}   {verdict}")  # fmt: skip
            lines.append(f"  {'  (reached it in)':32s} {t['reached_target']:>12s}")
            lines.append(f"  {'best val NDCG@10':32s} {_fmt(t['median']['best_val_ndcg10'], '.4f'):>12s}")
            lines.append(f"  {'test NDCG@10':32s} {_fmt(t['median']['test_ndcg10'], '.4f'):>12s}")
            lines.append(f"  {'train s / epoch':32s} {_fmt(t['median']['train_s_per_epoch'], '.3f'):>12s}")
    print("\n".join(lines), flush=True)



# ---------------------------------------------------------------------------------------------- click task (FM)
CLICK_REFERENCE_AUC = 0.7831  # the issue's figure for RecBole 1.2.1's FM on this protocol


CLICK_CONFIGS = ("fm-click", "fm-click-tuned", "deepfm-click", "deepfm-click-tuned")  # experiments/ml-100k/<name>.yaml


def click_worker(seed: int, split: Path, output: Path, threads: int | None) -> None:
    """recsys on the click-style task trained on ``split``, once with the settings of each of `CLICK_CONFIGS`."""
    import torch

    import recsys

    if threads:
        torch.set_num_threads(threads)
    train, valid, test = split_from_file(recsys.datasets.load("ml-100k"), split)
    runs = {}
    for name in CLICK_CONFIGS:
        experiment, described = experiment_task(name, seed)
        timer = EpochTimer(metric="val/auc")
        started = time.perf_counter()
        task = experiment.fit(train, valid, callbacks=[timer])  # the YAML's epochs, patience, batch and threshold
        runs[name] = {"model": described, "fit_s": time.perf_counter() - started, "epochs": timer.epochs,
                      "best_epoch": task.best_weights_.best_epoch, "test": task.point_metrics(test)}  # fmt: skip
    output.write_text(json.dumps({"framework": "recsys", "seed": seed, "configs": runs, "recsys_source": recsys_source()},
                                 indent=2))  # fmt: skip


def run_click(python: Path, args: argparse.Namespace) -> list[dict[str, dict[str, Any]]]:
    """Per seed: RecBole's labeled split, then RecBole's FM (shipped defaults) and each of recsys' `CLICK_CONFIGS`
    on that split."""
    pairs = []
    with tempfile.TemporaryDirectory(prefix="click-") as tmp:
        for rep in range(args.repeats):
            seed = args.seed + rep
            split = recbole_split(python, seed, Path(tmp) / f"split-{seed}.csv", model="FM")
            pair = {"recsys": run_recsys("fm", args, seed, split), "recbole": run_recbole(python, "fm", args, seed)}
            aucs = ", ".join(f"{name} {run['test']['auc']:.4f}" for name, run in pair["recsys"]["configs"].items())
            print(f"[fm seed {seed}] test AUC: {aucs}, RecBole {pair['recbole']['test']['auc']:.4f}", flush=True)
            pairs.append(pair)
    return pairs


def summarise_click(pairs: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Mean test AUC / log loss over the seeds and median training seconds per epoch, for each recsys config and
    RecBole."""
    def side(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"test_auc": [r["test"]["auc"] for r in runs], "test_logloss": [r["test"]["logloss"] for r in runs],
                "mean_test_auc": statistics.mean(r["test"]["auc"] for r in runs),
                "mean_test_logloss": statistics.mean(r["test"]["logloss"] for r in runs),
                "train_s_per_epoch": statistics.median(e["train_s"] for r in runs for e in r["epochs"]),
                "epochs_run": [len(r["epochs"]) for r in runs]}  # fmt: skip
    sides = {name: side([p["recsys"]["configs"][name] for p in pairs]) for name in CLICK_CONFIGS}
    sides["RecBole FM"] = side([p["recbole"] for p in pairs])
    best = max(sides[name]["mean_test_auc"] for name in CLICK_CONFIGS)
    return {"seeds": [p["recsys"]["seed"] for p in pairs], "sides": sides,
            "targets": {f"best recsys mean test AUC >= {CLICK_REFERENCE_AUC}": best >= CLICK_REFERENCE_AUC,
                        "best recsys mean test AUC >= RecBole's on the same splits":
                            best >= sides["RecBole FM"]["mean_test_auc"]}}  # fmt: skip


def print_click(summary: dict[str, Any]) -> None:
    sides = summary["sides"]
    title = ("Click-style task (rating >= 4 -> 1, RecBole's random 8:1:1 labeled split of each seed, both sides on the "
             "same split): recsys FM / DeepFM vs RecBole 1.2.1's FM (shipped defaults: embedding 10)")
    lines = [title, "", f"{'':16s}" + "".join(f"{name:>20s}" for name in sides)]
    for i, seed in enumerate(summary["seeds"]):
        lines.append(f"{'AUC seed ' + str(seed):16s}" + "".join(f"{s['test_auc'][i]:>20.4f}" for s in sides.values()))
    for label, key, spec in (("mean AUC", "mean_test_auc", ".4f"), ("mean log loss", "mean_test_logloss", ".4f"),
                             ("train s / epoch", "train_s_per_epoch", ".3f")):  # fmt: skip
        lines.append(f"{label:16s}" + "".join(f"{format(s[key], spec):>20s}" for s in sides.values()))
    lines += [""] + [f"{name}: {'met' if ok else 'MISSED'}" for name, ok in summary["targets"].items()]
    print("\n".join(lines), flush=True)


# ---------------------------------------------------------------------------------------------- SASRec race
SASREC_TARGETS = {"epoch_time_ratio": 0.1, "peak_rss_mib": 1024.0}


def sasrec_worker(seed: int, budget_s: float, output: Path, threads: int | None) -> None:
    """recsys SASRec (RecBole's defaults, CE, whole sequences with a causal mask) on ML-100k leave-one-out by time,
    trained for ``budget_s`` wall seconds (stopping after the first epoch that ends past it; the best validation
    epoch within the budget is tested, history = train + valid). Writes the runner's record shape plus peak RSS."""
    import resource

    started_process = time.perf_counter()
    import torch

    import recsys
    from recsys.models.sasrec import SASRec
    from recsys.tasks.sequential import SequentialTask

    if threads:
        torch.set_num_threads(threads)
    data = recsys.datasets.load("ml-100k")
    train, valid, test = recsys.splits.leave_k_out(data, 1)
    task = SequentialTask(SASRec(hidden_size=64, layers=2, heads=2, max_len=50), loss="ce", lr=1e-3, seed=seed)
    epochs: list[dict[str, Any]] = []

    class Budget(L.Callback):
        """Per-epoch training / validation seconds; stops after the first epoch that ends past the budget."""

        def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.t0 = time.perf_counter()

        def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.start = time.perf_counter()

        def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.valid_start = time.perf_counter()

        def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            now = time.perf_counter()
            epochs.append({"epoch": trainer.current_epoch, "train_s": self.valid_start - self.start,
                           "valid_s": now - self.valid_start, "wall_s": now - self.t0,
                           "val_ndcg10": float(trainer.callback_metrics["val/ndcg@10"])})  # fmt: skip
            if now - self.t0 > budget_s:
                trainer.should_stop = True

    class WithinBudget(L.Callback):
        """Best weights among the epochs validated within the budget (later epochs never count)."""

        def __init__(self) -> None:
            self.best, self.state = -1.0, None

        def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            last = epochs[-1]
            if last["wall_s"] <= budget_s and last["val_ndcg10"] > self.best:
                self.best, self.state = last["val_ndcg10"], {k: v.clone() for k, v in module.state_dict().items()}

    keeper = WithinBudget()
    prepared = time.perf_counter()
    task.fit(train, valid, max_epochs=10**6, patience=10**6, callbacks=[Budget(), keeper])
    fitted = time.perf_counter()
    if keeper.state is not None:
        task.load_state_dict(keeper.state)
    task.eval()
    ev = recsys.evaluate(task, test, exclude=[train, valid], k=(10,))
    out = {
        "framework": "recsys", "recsys_source": recsys_source(), "torch_threads": torch.get_num_threads(),
        "model": "SASRec", "seed": seed, "n_train": len(train), "import_s": prepared - started_process,
        "fit_s": fitted - prepared, "epochs": epochs, "best_val_ndcg10": keeper.best if keeper.state is not None else None,
        "test_ndcg10": float(ev["ndcg@10"]) if keeper.state is not None else None,
        "test": {k: float(v) for k, v in ev.summary.items()}, "budget_s": budget_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip
    output.write_text(json.dumps(out, indent=2))


def run_sasrec_race(python: Path, args: argparse.Namespace) -> dict[str, Any]:
    """recsys and RecBole SASRec trained at the same time (one thread each), each for ``--budget-s`` wall seconds."""
    with tempfile.TemporaryDirectory(prefix="sasrec-race-") as tmp:
        outs = {"recsys": Path(tmp) / "recsys.json", "recbole": Path(tmp) / "recbole.json"}
        threads = ["--threads", str(args.threads)] if args.threads else []
        commands = {
            "recsys": ([sys.executable, "-W", "ignore", str(Path(__file__).resolve()), "--worker", "sasrec", "--seed",
                        str(args.seed), "--budget-s", str(args.budget_s), "--worker-output", str(outs["recsys"]), *threads],
                       {**os.environ, "PYTHONWARNINGS": "ignore"}, os.getcwd()),
            "recbole": ([str(python), "-W", "ignore", str(RUNNER), "--model", "SASRec", "--budget-s", str(args.budget_s),
                         "--seed", str(args.seed), "--output", str(outs["recbole"]), *threads],
                        {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                         "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore"}, tmp),
        }  # fmt: skip
        procs = {side: subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for side, (cmd, env, cwd) in commands.items()}  # fmt: skip
        runs = {}
        for side, proc in procs.items():
            stdout, stderr = proc.communicate()
            if proc.returncode != 0 or not outs[side].exists():
                raise SystemExit(f"{side} SASRec run failed ({proc.returncode}):\n{stdout[-2000:]}\n{stderr[-4000:]}")
            runs[side] = json.loads(outs[side].read_text())
    return runs


def summarise_sasrec(runs: dict[str, Any]) -> dict[str, Any]:
    sides = {}
    for side, run in runs.items():
        sides[side] = {
            "epochs_run": len(run["epochs"]),
            "train_s_per_epoch": statistics.median(e["train_s"] for e in run["epochs"]) if run["epochs"] else None,
            "best_val_ndcg10": run["best_val_ndcg10"], "test_ndcg10": run["test_ndcg10"],
            "peak_rss_mib": run["peak_rss_mib"],
        }  # fmt: skip
    rs, rb = sides["recsys"], sides["recbole"]
    return {
        "sides": sides,
        "epoch_time_ratio": _ratio(rs["train_s_per_epoch"], rb["train_s_per_epoch"]),
        "test_ndcg10_recsys_minus_recbole": None if rs["test_ndcg10"] is None else rs["test_ndcg10"] - (rb["test_ndcg10"] or 0.0),
        "targets": SASREC_TARGETS,
    }


def print_sasrec(summary: dict[str, Any], budget_s: float, threads: int | None) -> None:
    s, rs, rb = summary, summary["sides"]["recsys"], summary["sides"]["recbole"]
    ratio = s["epoch_time_ratio"]
    lines = [f"SASRec, recsys vs RecBole 1.2.1, ML-100k leave-one-out by time, both trained at once for {budget_s:.0f} s "
             f"wall (torch threads {threads or 'default'} each)", "",
             f"{'':34s} {'recsys':>12s} {'RecBole':>12s}",
             f"  {'epochs run':32s} {rs['epochs_run']:>12d} {rb['epochs_run']:>12d}",
             f"  {'train s / pass over all events':32s} {_fmt(rs['train_s_per_epoch'], '.1f'):>12s} "
             f"{_fmt(rb['train_s_per_epoch'], '.1f'):>12s}   ratio {_fmt(ratio, '.3f')} "
             f"(≤ 0.1: {'met' if ratio is not None and ratio <= 0.1 else 'MISSED'})",
             f"  {'peak RSS MiB':32s} {rs['peak_rss_mib']:>12.0f} {rb['peak_rss_mib']:>12.0f}   "
             f"(recsys ≤ 1024: {'met' if rs['peak_rss_mib'] <= 1024 else 'MISSED'})",
             f"  {'best val NDCG@10 within budget':32s} {_fmt(rs['best_val_ndcg10'], '.4f'):>12s} {_fmt(rb['best_val_ndcg10'], '.4f'):>12s}",
             f"  {'test NDCG@10 (best within budget)':32s} {_fmt(rs['test_ndcg10'], '.4f'):>12s} {_fmt(rb['test_ndcg10'], '.4f'):>12s}   "
             f"(recsys ≥ RecBole: {'met' if rs['test_ndcg10'] is not None and rs['test_ndcg10'] >= (rb['test_ndcg10'] or 0.0) else 'MISSED'})"]  # fmt: skip
    print("\n".join(lines), flush=True)


# ---------------------------------------------------------------------------------------------- main
def machine() -> dict[str, Any]:
    """Platform, CPU count and load average at the end of the runs (how contended the timings were)."""
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "load_avg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None}  # fmt: skip


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300, help="maximum epochs (RecBole's default 300)")
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience (RecBole's stopping_step)")
    parser.add_argument("--models", default="bpr,neumf")
    parser.add_argument("--seed", type=int, default=2020, help="repetition r uses seed + r on both sides")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, 5 epochs, patience 2")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads on both sides (default 1: on a shared 2-core machine two OpenMP threads per "
                             "process oversubscribe the cores and swamp the timings; 0 = torch's default)")
    parser.add_argument("--output", type=Path, default=Path("results/bench_vs_recbole.json"))
    parser.add_argument("--recbole-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--from-json", type=Path, default=None,
                        help="recompute the summary and table from the raw runs of an earlier --output (no runs)")
    parser.add_argument("--python", default=shutil.which("python3.11") or "python3.11", help="creates the RecBole venv")
    parser.add_argument("--budget-s", type=float, default=600.0, help="sasrec: wall-clock training budget per side")
    parser.add_argument("--worker", choices=[*sorted(MODELS), TUNED_BPR, "sasrec", "fm"],
                        help=argparse.SUPPRESS)  # internal: one run
    parser.add_argument("--worker-output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--split", type=Path, help=argparse.SUPPRESS)  # internal: the recsys worker's split file
    parser.add_argument("--own-split", action="store_true",
                        help="recsys splits the data itself (same protocol, its own random cut) instead of training "
                             "on RecBole's split of the same seed")
    args = parser.parse_args()

    if args.worker == "sasrec":
        sasrec_worker(args.seed, args.budget_s, args.worker_output, args.threads)
        return
    if args.worker == "fm":
        click_worker(args.seed, args.split, args.worker_output, args.threads)
        return
    if args.worker:
        recsys_worker(args.worker, args.seed, args.epochs, args.patience, args.worker_output, args.threads, args.split)
        return
    if args.quick:
        args.repeats, args.epochs, args.patience = 1, 5, 2
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    if args.from_json and set(keys) & {"sasrec", "fm"}:
        parser.error("--from-json re-summarises --models bpr,neumf runs only")
    if keys == ["sasrec"]:
        python = ensure_recbole_venv(args.recbole_venv.expanduser(), args.python)
        runs = run_sasrec_race(python, args)
        summary = summarise_sasrec(runs)
        result = {"settings": {"model": "sasrec", "seed": args.seed, "budget_s": args.budget_s, "threads": args.threads,
                               "split": "leave-one-out by time, full ranking", "hidden": 64, "layers": 2, "heads": 2,
                               "max_len": 50, "loss": "CE"},
                  "machine": machine(),
                  "summary": summary, "runs": runs}  # fmt: skip
        write_json(args.output, result)
        print_sasrec(summary, args.budget_s, args.threads)
        print(f"\nwrote {args.output}")
        return
    if keys == ["fm"]:
        python = ensure_recbole_venv(args.recbole_venv.expanduser(), args.python)
        pairs = run_click(python, args)
        summary = summarise_click(pairs)
        result = {"settings": {"model": "fm", "seeds": summary["seeds"], "threads": args.threads,
                               "split": "RecBole RS 8:1:1 labeled (rating >= 4 -> 1), the same on both sides",
                               "reference_auc": CLICK_REFERENCE_AUC},
                  "machine": machine(),
                  "summary": summary, "runs": pairs}  # fmt: skip
        write_json(args.output, result)
        print_click(summary)
        print(f"\nwrote {args.output}")
        return
    unknown = set(keys) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {sorted(MODELS)}")

    if args.from_json:
        result = json.loads(args.from_json.read_text())
        result["summary"] = {key: summarise(key, pairs) for key, pairs in result["runs"].items()}
        args.from_json.write_text(json.dumps(result, indent=2))
        settings = result["settings"]
        print_table(result["summary"], settings["repeats"], settings["threads"])
        print(f"\nrewrote the summary in {args.from_json}")
        return

    started = time.perf_counter()
    python = ensure_recbole_venv(args.recbole_venv.expanduser(), args.python)
    runs: dict[str, list[dict[str, dict[str, Any]]]] = {k: [] for k in keys}
    summary: dict[str, Any] = {}
    splits = tempfile.TemporaryDirectory(prefix="bench-splits-")
    for key in keys:
        for rep in range(args.repeats):
            seed = args.seed + rep
            order = ["recsys", "recbole"] if rep % 2 == 0 else ["recbole", "recsys"]
            pair: dict[str, dict[str, Any]] = {}
            split = None if args.own_split else recbole_split(python, seed, Path(splits.name) / f"split-{seed}.csv")
            if key == "bpr":
                order.append("tuned")  # recsys with mf-bpr-tuned.yaml's hyper-parameters, on the same split
            for side in order:
                t0 = time.perf_counter()
                if side == "recbole":
                    pair[side] = run_recbole(python, key, args, seed)
                else:
                    pair[side] = run_recsys(key if side == "recsys" else TUNED_BPR, args, seed, split)
                run = pair[side]
                print(f"[{key} rep {rep + 1}/{args.repeats} seed {seed}] {side:7s}: {len(run['epochs'])} epochs, "
                      f"train {statistics.median(e['train_s'] for e in run['epochs']):.3f} s/epoch, "
                      f"valid {statistics.median(e['valid_s'] for e in run['epochs']):.3f} s, "
                      f"best val {run['best_val_ndcg10']:.4f} (epoch {run['best_epoch']}), "
                      f"test {run['test_ndcg10']:.4f}, {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
            runs[key].append(pair)
        summary[key] = summarise(key, runs[key])
    splits.cleanup()

    result = {
        "settings": {"repeats": args.repeats, "max_epochs": args.epochs, "patience": args.patience, "models": keys,
                     "seeds": [args.seed + r for r in range(args.repeats)], "threads": args.threads,
                     "quick": args.quick, "dataset": "ml-100k", "split": "RS 8:1:1 per user (RO), full ranking",
                     "same_split": not args.own_split,
                     "embedding_dim": 64, "train_batch_size": 2048, "lr": 1e-3, "negatives": 1},  # fmt: skip
        "targets": TARGETS,
        "machine": machine(),
        "recbole_venv": {"path": str(args.recbole_venv.expanduser()), "torch": TORCH_SPEC, "recbole": RECBOLE_SPEC,
                         "deps": RECBOLE_DEPS},  # fmt: skip
        "recsys_source": recsys_source(),
        "summary": summary,
        "runs": runs,
        "total_s": time.perf_counter() - started,
    }
    sources = {p["recsys"]["recsys_source"]["source_sha256"] for pairs in runs.values() for p in pairs}
    sources.add(result["recsys_source"]["source_sha256"])
    result["recsys_source"]["consistent"] = len(sources) == 1
    write_json(args.output, result)
    if len(sources) > 1:
        print(f"\nWARNING: recsys's source changed during the benchmark ({len(sources)} versions); rerun", flush=True)
    print()
    print_table(summary, args.repeats, args.threads)
    print(f"\nwrote {args.output} (total {result['total_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
