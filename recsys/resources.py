"""Where the shipped dataset cards and experiment YAMLs are, in a source checkout and in an installed wheel.

The repository keeps them in its top-level ``datasets/`` and ``experiments/``; ``pyproject.toml`` installs those
folders as the package data ``recsys/cards/`` and ``recsys/experiments/``. Both are found from the ``recsys``
package actually imported, so a worktree on ``PYTHONPATH`` reads its own folders even when the environment holds
an editable install of another checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGED = {"datasets": "cards", "experiments": "experiments"}
"""Top-level folder of the repository → its name inside the installed ``recsys`` package."""


def shipped_dir(folder: str) -> Path:
    """The repository's ``folder`` (``datasets`` or ``experiments``): packaged in a wheel, beside ``recsys/`` in a
    checkout (plain or editable install)."""
    package = Path(str(resources.files("recsys")))
    packaged = package / PACKAGED[folder]
    return packaged if packaged.is_dir() else package.parent / folder


def cards_dir() -> Path:
    """Folder of the built-in dataset cards (``datasets/*.yaml``)."""
    return shipped_dir("datasets")


def experiments_dir() -> Path:
    """Folder of the shipped experiment YAMLs (``experiments/<dataset>/*.yaml``)."""
    return shipped_dir("experiments")


def experiments() -> list[str]:
    """Names of the shipped experiments, ``<dataset>/<stem>`` (e.g. ``ml-100k/mf-bpr``), sorted."""
    root = experiments_dir()
    return sorted(path.relative_to(root).with_suffix("").as_posix() for path in root.glob("**/*.yaml"))


def experiment(name: str) -> Path:
    """Path of the shipped experiment ``name`` (``ml-100k/mf-bpr``, with or without ``experiments/`` and
    ``.yaml``)."""
    stem = name.removeprefix("experiments/").removesuffix(".yaml")
    path = experiments_dir() / f"{stem}.yaml"
    if not path.is_file():
        raise KeyError(f"no shipped experiment {name!r} in {experiments_dir()}; known: {experiments()}")
    return path


def config_path(value: str | Path) -> Path:
    """``value`` if that file exists, else the shipped experiment it names as ``experiments/<dataset>/<x>.yaml``, so
    the repository's relative config paths work from any directory and from an installed wheel."""
    path = Path(value)
    if path.exists() or not path.as_posix().startswith("experiments/"):
        return path
    try:
        return experiment(path.as_posix())
    except KeyError:
        return path
