"""Save a fitted torch-backed recommender (a Lightning task over a pair or sequence model, and `DNIS` /
`MixedDimensions` with their mixed-dimension tables) to a folder, and load it back to score identically.

Safe formats only: ``recommender.json`` (the typed constructor spec ``{class_path, init_args}``, rebuilt through
the same jsonargparse path as a YAML run, and the mixed-dimension layouts), ``weights.safetensors`` (the state
dict) and ``train/`` (the training interactions in raw ids with their feature frames, as Parquet: vocabularies,
feature fields and the items each user has seen come back from them). No pickle of code is written or read.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from safetensors.torch import load_file, save_file
from torch import nn

from recsys.data.interactions import Interactions, Vocabulary
from recsys.embeddings.blocks import FrequencyBlocks
from recsys.embeddings.mixed import FieldLayout, MixedDimTables
from recsys.errors import RunError
from recsys.recommender import Recommender
from recsys.specs import build_recommender
from recsys.tasks.base import RecommenderTask
from recsys.tasks.dnis import _PerBlockTask

FORMAT = 1


def spec_of(obj: Any) -> Any:
    """``{class_path, init_args}`` of an object built from typed constructor arguments: a task's hyperparameters
    (as Lightning recorded them) or the attributes named like the constructor's parameters, nested objects
    (models, inner tasks) as specs of their own."""
    if isinstance(obj, (nn.Module, Recommender)):
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
    if isinstance(obj, tuple):
        return [spec_of(v) for v in obj]
    return obj


def _layouts_json(tables: MixedDimTables) -> dict[str, Any]:
    return {name: {"mass": list(layout.blocks.mass),
                   "columns": [c.tolist() for c in layout.columns]} for name, layout in tables.layouts.items()}  # fmt: skip


def supports(model: Recommender) -> bool:
    """Whether `save` can write ``model`` (Lightning tasks, DNIS, MixedDimensions; baselines not yet)."""
    return isinstance(model, (RecommenderTask, _PerBlockTask))


def _torch_part(model: Recommender) -> tuple[RecommenderTask, str]:
    """The task holding the weights and the state-dict prefix it is saved under."""
    if isinstance(model, _PerBlockTask):
        return model.task, "task."
    if isinstance(model, RecommenderTask):
        return model, ""
    raise RunError(f"saving {type(model).__name__} is not supported yet: only Lightning tasks, DNIS and MixedDimensions")


def save(model: Recommender, folder: Path | str) -> Path:
    """Write a fitted ``model`` into ``folder`` (created; an existing non-empty folder is refused, never
    overwritten); `load` reads it back."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise RunError(f"{folder} exists and is not empty: choose a new folder")
    task, prefix = _torch_part(model)
    train = model.train_data
    (folder / "train").mkdir(parents=True)
    for key, frame in _train_frames(train).items():
        frame.write_parquet(folder / "train" / f"{key}.parquet")
    meta: dict[str, Any] = {"format": FORMAT, "spec": spec_of(model), "name": train.name,
                            "trained_on": task.train_data.frame.height}  # fmt: skip
    if isinstance(task.model.embeddings, MixedDimTables):
        meta["layouts"] = _layouts_json(task.model.embeddings)
    if isinstance(model, _PerBlockTask):
        meta["report"] = model.report_
    (folder / "recommender.json").write_text(json.dumps(meta, indent=2, default=_plain))
    state = {f"{prefix}{k}": v.detach().contiguous().cpu() for k, v in task.state_dict().items()}
    save_file(state, str(folder / "weights.safetensors"))
    return folder


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


def load(folder: Path | str) -> Recommender:
    """The recommender `save` wrote into ``folder``, ready to score (eval mode)."""
    folder = Path(folder)
    path = folder / "recommender.json"
    if not path.exists():
        raise RunError(f"{folder}: no recommender.json (not a folder written by recsys.save)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise RunError(f"{path}: format {meta.get('format')!r}, this recsys reads format {FORMAT}")
    model = build_recommender(meta["spec"], what=str(path))
    train = _train_of(folder, meta)
    task, prefix = _torch_part(model)
    task.restore(train)
    model._remember(train)
    if "layouts" in meta:
        state = load_file(str(folder / "weights.safetensors"))
        specs = list(task.model.embeddings.specs.values())
        layouts = {}
        for name, saved in meta["layouts"].items():
            blocks = FrequencyBlocks(state[f"{prefix}model.embeddings.{name}_block"].numpy(), tuple(saved["mass"]))
            layouts[name] = FieldLayout(blocks, tuple(np.asarray(c, dtype=np.int64) for c in saved["columns"]))
        task.model.embeddings = MixedDimTables(specs, layouts)
    state = load_file(str(folder / "weights.safetensors"))
    task.load_state_dict({k.removeprefix(prefix): v for k, v in state.items()})
    if isinstance(model, _PerBlockTask):
        model.report_ = meta.get("report", {})
    task.eval()
    return model
