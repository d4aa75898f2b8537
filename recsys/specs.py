"""Recommenders from typed specs ``{class_path, init_args}``: the one builder behind run YAMLs (`recsys.runs`),
studies (`recsys.tuning`) and saved models (`recsys.saving`)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from recsys.errors import RunError
from recsys.recommender import Recommender


def build_recommender(spec: dict[str, Any], *, seed: int | None = None, what: str = "recommender") -> Recommender:
    """Instantiate ``{class_path, init_args}`` through jsonargparse, so every argument is checked against the
    class's typed constructor; ``seed`` replaces the ``seed`` argument of classes that take one."""
    from jsonargparse import ArgumentParser

    if not isinstance(spec, dict) or "class_path" not in spec:
        raise RunError(f"{what}: needs a class_path (and optional init_args)")
    spec = {"class_path": spec["class_path"], "init_args": dict(spec.get("init_args") or {})}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(Recommender, "recommender", required=True)
    try:
        config = parser.parse_object({"recommender": spec})
        if seed is not None and "seed" in inspect.signature(recommender_class(config.recommender.class_path)).parameters:
            config.recommender.init_args.seed = seed
        return parser.instantiate_classes(config).recommender
    except Exception as err:  # jsonargparse reports type and key errors as several exception types
        raise RunError(f"{what}: {str(err).strip()}") from err


def recommender_class(class_path: str) -> type[Recommender]:
    """Import ``package.module.Class`` and check that it is a `Recommender`."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise RunError(f"recommender class {class_path!r} cannot be imported: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise RunError(f"{class_path!r} is not a recsys Recommender")
    return cls
