"""Trained tasks back from the Lightning checkpoints of `recsys fit`, ready to score as when they were tested.

A checkpoint holds the task's state dict but not all it needs to be rebuilt: Lightning leaves the nested model out
of its hyper-parameters, and the vocabularies come from the data. Both are in the run folder's ``config.yaml``
(LightningCLI's saved config): the task is rebuilt from its ``model:`` spec through the same jsonargparse path as
a YAML run (`recsys.specs`), its training split from ``data:``, and then the state dict loads into it, as
`recsys.load` does with a saved folder (`restore`, then `load_fitted_state`).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import torch
import yaml

from recsys.data.interactions import Interactions
from recsys.data.modules import InteractionsDataModule
from recsys.errors import RunError
from recsys.outputs import checkpoint_run
from recsys.recommender import Recommender
from recsys.specs import build_recommender

log = logging.getLogger(__name__)


def best_checkpoint(run: Path) -> Path:
    """The checkpoint of a `recsys fit` run folder to load: its one ``best-*.ckpt`` (the best validation epoch),
    else ``last.ckpt``; logged. Several best checkpoints (``save_top_k`` > 1) are refused: name one."""
    folder = run / "checkpoints"
    best = sorted(folder.glob("best-*.ckpt"))
    if len(best) > 1:
        raise RunError(f"{folder}: several best checkpoints ({', '.join(p.name for p in best)}): load one of them by name")
    chosen = best[0] if best else folder / "last.ckpt"
    if not chosen.exists():
        raise RunError(f"{folder}: no best-*.ckpt and no last.ckpt to load")
    why = "the best validation epoch" if best else "no best checkpoint: the last epoch"
    log.info("%s: loading %s (%s)", run, chosen.name, why)
    return chosen


def load_checkpoint(path: Path | str) -> Recommender:
    """The task a `recsys fit` checkpoint holds, rebuilt from the ``config.yaml`` of its run folder, on the CPU, in
    eval mode. Every problem is one `RunError` naming the file: a missing or unreadable checkpoint, no
    ``config.yaml`` beside it, a checkpoint of another model than the config describes."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no such checkpoint file")
    checkpoint = _read(path)
    config_path = checkpoint_run(path) / "config.yaml"
    if not config_path.is_file():
        raise RunError(f"{path}: no config.yaml in {config_path.parent} (a `recsys fit` run folder keeps LightningCLI's "
                       "config.yaml beside checkpoints/; the task cannot be rebuilt without it)")  # fmt: skip
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    spec, data = config.get("model"), config.get("data")
    if not isinstance(spec, dict) or not isinstance(data, dict):
        raise RunError(f"{config_path}: no model: and data: sections (not the config of a Lightning `recsys fit` run)")
    trained = checkpoint.get("hyper_parameters", {}).get("_class_path")
    if trained is not None and trained != spec.get("class_path"):
        raise RunError(f"{path} is a checkpoint of {trained}, but {config_path} describes {spec.get('class_path')}")
    task = build_recommender(spec, what=f"{config_path}: model")
    task.restore(_training_split(data, config_path))
    try:
        task.load_fitted_state(checkpoint["state_dict"])
    except RuntimeError as err:  # missing, unexpected or differently sized weights
        reason = " ".join(str(err).split())  # torch's message spans lines, one per weight
        raise RunError(f"{path}: its weights do not fit the model {config_path} describes: {reason}") from err
    return task


def _training_split(data: dict[str, Any], config_path: Path) -> Interactions:
    """The training split the run fitted on, made again from the config's ``data:`` (the dataset must be at hand,
    prepared or imported, as when the run was fitted)."""
    try:
        module = InteractionsDataModule(**data)
        module.setup()
    except (TypeError, ValueError, KeyError, FileNotFoundError) as err:  # DataError is a ValueError
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise RunError(f"{config_path}: data: the training split cannot be made again: {message}") from err
    return module.train


def _read(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, read with ``weights_only`` (tensors and plain values, never arbitrary pickles)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise RunError(f"{path}: not a readable Lightning checkpoint ({str(err).splitlines()[0]})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise RunError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint
