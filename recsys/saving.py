"""Save any fitted recommender that implements the fitted-state protocol (`Recommender.fitted_state`, `restore`,
`load_fitted_state`: every shipped model) to a folder, and load it back to score identically.

Safe formats only, never a pickle of code:

- ``recommender.json``: the typed constructor spec ``{class_path, init_args}`` (rebuilt through the same
  jsonargparse path as a YAML run) and the JSON values of the fitted state (DNIS layouts, reports);
- ``weights.safetensors``: the fitted tensors (a task's state dict, factor matrices), each in its own memory
  order again when loaded (a column-major matrix is multiplied by another kernel, whose last bits differ);
- ``arrays.npz``: the fitted NumPy arrays (read with ``allow_pickle=False``);
- ``sparse/<name>.npz``: the fitted sparse matrices (scipy's format, read without pickle);
- ``train/``: the training interactions as Parquet (coded rows, both vocabularies, feature frames), from which
  vocabularies, feature fields, seen items and whatever a model derives from its data (`restore`) come back.

`load` reads such a folder, and also what `recsys fit` writes: a Lightning checkpoint or a whole run folder.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from recsys.data.interactions import Interactions, Vocabulary
from recsys.errors import RunError
from recsys.recommender import Fitted, NotSupportedError, Recommender
from recsys.specs import build_recommender
from recsys.tasks.base import RecommenderTask
from recsys.tasks.checkpoints import best_checkpoint, load_checkpoint

FORMAT = 2
JSON_VALUES = (str, int, float, bool, type(None), list, dict, np.generic)
log = logging.getLogger(__name__)


def spec_of(obj: Any) -> Any:
    """``{class_path, init_args}`` of an object built from typed constructor arguments (anything but a JSON value:
    models, inner tasks, propensity models): a task's hyperparameters (as Lightning recorded them) or the
    attributes named like the constructor's parameters, nested objects as specs of their own."""
    if isinstance(obj, tuple):
        return [spec_of(v) for v in obj]
    if isinstance(obj, JSON_VALUES):
        return obj
    cls = type(obj)
    names = [n for n, p in inspect.signature(cls.__init__).parameters.items()
             if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # fmt: skip
    values = dict(obj.hparams) if isinstance(obj, RecommenderTask) else {}
    for name in names:
        if name not in values:
            if not hasattr(obj, name):
                raise RunError(f"cannot save {cls.__name__}: its argument {name!r} is not kept as an attribute")
            values[name] = getattr(obj, name)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": {k: spec_of(v) for k, v in values.items()}}


def supports(model: Recommender) -> bool:
    """Whether `save` can write ``model`` (it implements the fitted-state protocol)."""
    try:
        model.fitted_state()
    except NotSupportedError:
        return False
    return True


def save(model: Recommender, folder: Path | str) -> Path:
    """Write a fitted ``model`` into ``folder`` (created; an existing non-empty folder is refused, never
    overwritten); `load` reads it back. A model without the fitted-state protocol raises `RunError` naming it."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise RunError(f"{folder} exists and is not empty: choose a new folder")
    try:
        state = model.fitted_state()
    except NotSupportedError as err:
        raise RunError(str(err)) from err
    spec = spec_of(model)
    tensors = {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
    orders = {k: _memory_order(v) for k, v in tensors.items()}
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    sparse = {k: v for k, v in state.items() if sp.issparse(v)}
    values = {k: v for k, v in state.items() if k not in tensors and k not in arrays and k not in sparse}
    _check_values(model, arrays, sparse, values)
    train = model.train_data
    (folder / "train").mkdir(parents=True)
    for key, frame in _train_frames(train).items():
        frame.write_parquet(folder / "train" / f"{key}.parquet")
    meta = {"format": FORMAT, "spec": spec, "name": train.name, "fitted": values,
            "memory_orders": {k: order for k, order in orders.items() if order != sorted(order)}}  # fmt: skip
    (folder / "recommender.json").write_text(json.dumps(meta, indent=2, default=_plain))
    if tensors:
        save_file({k: v.permute(orders[k]).contiguous() for k, v in tensors.items()}, str(folder / "weights.safetensors"))
    if arrays:
        np.savez(folder / "arrays.npz", **arrays)  # type: ignore[arg-type]
    if sparse:
        (folder / "sparse").mkdir()
        for key, matrix in sparse.items():
            sp.save_npz(folder / "sparse" / f"{key}.npz", sp.csr_matrix(matrix))
    return folder


def _memory_order(tensor: torch.Tensor) -> list[int]:
    """The tensor's dimensions from the slowest-varying in memory to the fastest: ``[0, 1]`` row-major, ``[1, 0]``
    column-major (what `torch.linalg.inv` or scipy's ``toarray`` of a CSC product give)."""
    return sorted(range(tensor.dim()), key=lambda d: -tensor.stride(d))


def _check_values(model: Recommender, arrays: dict[str, np.ndarray], sparse: dict[str, Any], values: dict[str, Any]) -> None:
    """Refuse, before anything is written, what the safe formats cannot hold: object arrays, sparse names that are
    not file names, values that are not JSON."""
    name = type(model).__name__
    for key, array in arrays.items():
        if array.dtype.hasobject:
            raise RunError(f"cannot save {name}: its fitted array {key!r} holds Python objects")
    for key in sparse:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise RunError(f"cannot save {name}: its sparse matrix name {key!r} is not a plain file name")
    try:
        json.dumps(values, default=_plain)
    except TypeError as err:
        raise RunError(f"cannot save {name}: a fitted value is neither an array nor JSON ({err})") from err


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _train_frames(train: Interactions) -> dict[str, pl.DataFrame]:
    """The coded training rows, both vocabularies in code order (ids without training rows included, so codes and
    table sizes come back exactly) and the feature frames."""
    frames = {"interactions": train.frame, "user_ids": train.users.ids.to_frame(), "item_ids": train.items.ids.to_frame()}
    frames.update({key: frame for key, frame in (("user_features", train.user_features), ("item_features", train.item_features))
                   if frame is not None})  # fmt: skip
    return frames


def _train_of(folder: Path, meta: dict[str, Any]) -> Interactions:
    def read(key: str) -> pl.DataFrame | None:
        path = folder / "train" / f"{key}.parquet"
        return pl.read_parquet(path) if path.exists() else None

    users, items = read("user_ids"), read("item_ids")
    assert users is not None and items is not None, f"{folder}/train: vocabularies missing"
    return Interactions(read("interactions"), Vocabulary(users["raw"]), Vocabulary(items["raw"]),
                        read("user_features"), read("item_features"), name=meta["name"])  # fmt: skip


def _state_of(folder: Path, meta: dict[str, Any]) -> dict[str, Fitted]:
    """The fitted state `save` split over the folder's files, by name again."""
    state: dict[str, Fitted] = dict(meta["fitted"])
    if (folder / "weights.safetensors").exists():
        state.update(load_file(str(folder / "weights.safetensors")))
    for key, order in meta.get("memory_orders", {}).items():  # absent from folders saved before it was kept
        state[key] = state[key].permute(np.argsort(order).tolist())  # type: ignore[union-attr]
    if (folder / "arrays.npz").exists():
        with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
            state.update({key: arrays[key] for key in arrays.files})
    for path in sorted((folder / "sparse").glob("*.npz")):
        state[path.stem] = sp.load_npz(path).tocsr()
    return state


def load(path: Path | str) -> Recommender:
    """The fitted recommender at ``path``, ready to score (tasks in eval mode): a folder `save` wrote, a Lightning
    checkpoint of `recsys fit` (`recsys.tasks.checkpoints.load_checkpoint`), or a `recsys fit` run folder: its
    ``model/`` (a ``recommender:`` run), else its best checkpoint (`best_checkpoint`: ``best-*.ckpt``, else
    ``last.ckpt``)."""
    path = Path(path)
    if path.is_file():
        return load_checkpoint(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such file or folder")
    if (path / "model" / "recommender.json").exists():
        log.info("%s: loading the fitted model in model/", path)
        return _load_saved(path / "model")
    if (path / "checkpoints").is_dir():
        return load_checkpoint(best_checkpoint(path))
    return _load_saved(path)


def _load_saved(folder: Path) -> Recommender:
    """The recommender `save` wrote into ``folder``."""
    path = folder / "recommender.json"
    if not path.exists():
        raise RunError(f"{folder}: no recommender.json (not a folder written by recsys.save), no model/ and no "
                       "checkpoints/ (not a `recsys fit` run folder)")  # fmt: skip
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise RunError(f"{path}: format {meta.get('format')!r}, this recsys reads format {FORMAT} (save the model again)")
    model = build_recommender(meta["spec"], what=str(path))
    model.restore(_train_of(folder, meta))
    model.load_fitted_state(_state_of(folder, meta))
    return model
