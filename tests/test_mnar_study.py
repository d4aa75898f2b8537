"""The semi-synthetic study's training loop: the authors' initialisation, seeding and the records it fills in."""

import math

import numpy as np
import polars as pl
import pytest
import torch

from recsys.data.interactions import Interactions
from recsys.mnar.semisynthetic import GeneratorConfig, generate
from recsys.mnar.study import STUDY_ESTIMATORS, StudyConfig, grid_space, init_as_authors, run_study
from recsys.models.mf import MF

TINY_STUDY = StudyConfig(dim=3, batch_size=64, iters=25, negatives=5, ks=(1, 5))


@pytest.fixture(scope="module")
def tiny():
    """A semi-synthetic dataset on 25 users × 15 items."""
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}", float(rng.integers(1, 6))) for u in range(25) for i in rng.choice(15, 6, replace=False)]
    ratings = Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "rating"], orient="row"), rating_col="rating")
    return generate(ratings, eps=3.0, power=1.0, config=GeneratorConfig(dim=4, iters=60, batch_size=64, seed=3))


def test_init_as_authors_matches_their_tf_initialisers() -> None:
    torch.manual_seed(0)
    model = MF(10, biases=True)
    model.build(grid_space(943, 1682))
    init_as_authors(model)
    for side, rows in (("user", 943), ("item", 1682)):
        table = model.embeddings.local_weight(side).detach()
        limit = math.sqrt(6.0 / (rows + 10))
        factors, bias = table[:, :10], table[:, 10]
        assert float(factors.abs().max()) <= limit and float(factors.std()) == pytest.approx(limit / math.sqrt(3), rel=0.05)
        assert float(bias.std()) == pytest.approx(0.01, rel=0.1) and abs(float(bias.mean())) < 0.002
    assert model.global_bias.item() == pytest.approx(1e-3)


def test_study_is_seeded_and_fills_relative_log_loss(tiny) -> None:
    runs = run_study({1.0: tiny}, STUDY_ESTIMATORS, seeds=(0, 1), config=TINY_STUDY, progress=False)
    again = run_study({1.0: tiny}, STUDY_ESTIMATORS, seeds=(0, 1), config=TINY_STUDY, progress=False)
    assert [(r.estimator, r.seed) for r in runs] == [(e, s) for s in (0, 1) for e in STUDY_ESTIMATORS]
    assert [r.test_log_loss for r in runs] == [r.test_log_loss for r in again]  # same seeds, same numbers
    assert runs[0].test_log_loss != runs[len(STUDY_ESTIMATORS)].test_log_loss  # another seed, another init
    for run in runs:
        assert 1 <= run.best_iteration <= TINY_STUDY.iters and set(run.metrics) >= {"dcg@5", "dcg_repo@5", "map@1"}
        oracle = next(r for r in runs if r.estimator == "oracle" and r.seed == run.seed)
        assert run.relative_log_loss == pytest.approx(run.test_log_loss / oracle.test_log_loss)
