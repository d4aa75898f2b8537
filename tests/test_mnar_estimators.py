"""MNAR estimators against hand-computed values, and IPS unbiasedness of the training loss."""

import math

import pytest
import torch

from recsys.mnar.estimators import estimator_loss, local_losses, pair_weights

LN3 = math.log(3.0)


def test_local_losses_by_hand() -> None:
    logits = torch.tensor([LN3, 0.0])  # σ = 0.75, 0.5
    d1, d0 = local_losses(logits, "log")
    torch.testing.assert_close(d1, torch.tensor([-math.log(0.75), math.log(2.0)]))
    torch.testing.assert_close(d0, torch.tensor([-math.log(0.25), math.log(2.0)]))
    d1, d0 = local_losses(logits, "squared")
    torch.testing.assert_close(d1, torch.tensor([0.0625, 0.25]))
    torch.testing.assert_close(d0, torch.tensor([0.5625, 0.25]))


def test_weights_of_each_estimator_by_hand() -> None:
    labels, theta = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.2])
    w1, w0 = pair_weights(labels, estimator="naive")
    assert w1.tolist() == [1.0, 0.0] and w0.tolist() == [0.0, 1.0]
    w1, w0 = pair_weights(labels, estimator="wmf", positive_weight=5.0)
    assert w1.tolist() == [5.0, 0.0] and w0.tolist() == [0.0, 1.0]
    w1, w0 = pair_weights(labels, theta, "ips")
    assert w1.tolist() == [2.0, 0.0] and w0.tolist() == [-1.0, 1.0]  # 1 − Y/θ is negative for a click
    w1, w0 = pair_weights(labels, theta, "clipped_ips", clip=0.8)
    assert w1.tolist() == pytest.approx([1.25, 0.0]) and w0.tolist() == pytest.approx([-0.25, 1.0])
    w1, _ = pair_weights(labels, theta, "clipped_ips", clip=0.0)  # M = 0 is IPS
    assert w1.tolist() == [2.0, 0.0]


def test_estimator_loss_by_hand() -> None:
    logits, labels, theta = torch.tensor([LN3, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])
    d1a, d0a, d0b = -math.log(0.75), -math.log(0.25), math.log(2.0)
    ips = estimator_loss(logits, labels, theta, "ips")
    assert float(ips) == pytest.approx((2 * d1a - d0a + d0b) / 2, rel=1e-6)
    naive = estimator_loss(logits, labels)
    assert float(naive) == pytest.approx((d1a + d0b) / 2, rel=1e-6)
    wmf = estimator_loss(logits, labels, estimator="wmf", positive_weight=5.0)
    assert float(wmf) == pytest.approx((5 * d1a + d0b) / 6, rel=1e-6)  # normalised by Σ(cY + 1 − Y)
    squared = estimator_loss(logits, labels, theta, "ips", loss="squared")
    assert float(squared) == pytest.approx((2 * 0.0625 - 0.5625 + 0.25) / 2, rel=1e-6)


def test_ips_loss_is_unbiased_for_the_ideal_loss() -> None:
    g = torch.Generator().manual_seed(0)
    n, draws = 50, 20_000
    logits = torch.randn(n, generator=g) + 2.0  # confident positives: the naive loss misses their relevance
    gamma, theta = torch.rand(n, generator=g) * 0.5, torch.rand(n, generator=g) * 0.8 + 0.1
    ideal = float(estimator_loss(logits, gamma))  # soft labels with the naive estimator = the ideal loss
    relevance = torch.rand(draws, n, generator=g) < gamma
    clicks = (relevance & (torch.rand(draws, n, generator=g) < theta)).float()
    d1, d0 = local_losses(logits)
    ips = ((clicks / theta) * d1 + (1 - clicks / theta) * d0).mean(1)  # [draws]
    naive = (clicks * d1 + (1 - clicks) * d0).mean(1)
    assert float(ips.mean()) == pytest.approx(ideal, rel=0.01)
    assert abs(float(naive.mean()) - ideal) > 0.05 * ideal
    assert float(estimator_loss(logits, clicks[0], theta, "ips")) == pytest.approx(float(ips[0]), rel=1e-5)


def test_bad_arguments_are_named() -> None:
    logits, labels = torch.zeros(2), torch.zeros(2)
    with pytest.raises(ValueError, match="needs propensities"):
        estimator_loss(logits, labels, estimator="ips")
    with pytest.raises(ValueError, match="unknown estimator"):
        estimator_loss(logits, labels, estimator="dr")
    with pytest.raises(ValueError, match="unknown local loss"):
        estimator_loss(logits, labels, loss="hinge")
    with pytest.raises(ValueError, match="clip"):
        estimator_loss(logits, labels, torch.ones(2), "clipped_ips", clip=2.0)
