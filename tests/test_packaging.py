"""Packaging: the cards and experiments are found through `recsys.resources`, in this checkout and in a wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

from recsys import resources
from recsys.data import registry

REPO = Path(__file__).resolve().parents[1]
WHEEL_SOURCES = ("pyproject.toml", "README.md", "recsys", "datasets", "experiments")
"""What ``pyproject.toml`` builds the wheel from, copied so that the build leaves nothing in the checkout."""


def test_every_card_and_experiment_is_reachable(monkeypatch) -> None:
    monkeypatch.delenv(registry.CARDS_DIR_ENV, raising=False)
    cards = sorted(path.stem for path in (REPO / "datasets").glob("*.yaml"))
    assert sorted(registry.available_cards()) == cards
    assert "ml-100k" in cards
    shipped = sorted(path.relative_to(REPO / "experiments").with_suffix("").as_posix()
                     for path in (REPO / "experiments").glob("**/*.yaml"))  # fmt: skip
    assert resources.experiments() == shipped
    for name in shipped:
        assert resources.experiment(name).read_text() == (REPO / "experiments" / f"{name}.yaml").read_text()
    with pytest.raises(KeyError, match="no shipped experiment"):
        resources.experiment("ml-100k/no-such-model")


def test_config_path_finds_shipped_experiments_from_any_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resources.config_path("experiments/ml-100k/benchmark.yaml") == resources.experiment("ml-100k/benchmark")
    assert resources.config_path("experiments/ml-100k/none.yaml") == Path("experiments/ml-100k/none.yaml")
    own = tmp_path / "experiments" / "ml-100k" / "benchmark.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("models: [pop]\n")
    assert resources.config_path("experiments/ml-100k/benchmark.yaml").resolve() == own  # a file here wins


def test_pyproject_lists_every_package_and_maps_the_data_folders() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(find_packages(str(REPO), include=["recsys", "recsys.*"])) <= set(config["packages"])
    for folder, packaged in resources.PACKAGED.items():
        assert config["package-dir"][f"recsys.{packaged}"] == folder
        assert f"recsys.{packaged}" in config["packages"]


@pytest.mark.slow
@pytest.mark.network
def test_wheel_install_prepares_and_benchmarks_from_any_directory(tmp_path) -> None:
    """Build the wheel, install it alone into a folder, and run the CLI from elsewhere with the checkout out of
    reach; the dependencies come from this environment, the data cache is a temporary folder."""
    source, site, cwd, cache = (tmp_path / name for name in ("source", "site", "x", "cache"))
    source.mkdir()
    for name in WHEEL_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, cwd=tmp_path)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("recsys-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, cwd=tmp_path)
    cwd.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "RECSYS_"))}
    env.update(PYTHONPATH=str(site), PYTHONSAFEPATH="1", RECSYS_DATA_DIR=str(cache), OMP_NUM_THREADS="1")

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    code = "import recsys, recsys.resources as r; print(recsys.__file__, r.cards_dir(), r.experiment('ml-100k/mf-bpr'))"
    located = [Path(p) for p in run(sys.executable, "-c", code).split()]
    assert all(path.is_relative_to(site / "recsys") for path in located), located  # not the checkout, not editable
    meta = json.loads(run(str(site / "bin" / "recsys"), "data", "prepare", "ml-100k"))
    assert meta["interactions"] == 100_000 and Path(meta["card"]) == site / "recsys" / "cards" / "ml-100k.yaml"
    assert (cache / "ml-100k" / "meta.json").exists()
    assert "| pop |" in run(str(site / "bin" / "recsys"), "benchmark", "--models", "pop", "--no-progress")
    assert (cwd / "results" / "benchmark" / "results.json").exists()
    shipped = ["--config", "experiments/ml-100k/benchmark.yaml", "--models", "pop", "--seeds", "2026", "--output", "b"]
    assert "| pop |" in run(str(site / "bin" / "recsys"), "benchmark", *shipped, "--no-progress")
