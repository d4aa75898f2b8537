"""Unbiased learning and evaluation from missing-not-at-random implicit feedback: estimators, propensity models
and the semi-synthetic study of Rel-MF (Saito et al., WSDM 2020)."""

from recsys.mnar.estimators import ESTIMATORS, LOCAL_LOSSES, estimator_loss, local_losses, pair_weights
from recsys.mnar.propensity import KnownPropensity, LogisticMFPropensity, PopularityPropensity, Propensity

__all__ = [
    "ESTIMATORS", "LOCAL_LOSSES", "KnownPropensity", "LogisticMFPropensity", "PopularityPropensity", "Propensity",
    "estimator_loss", "local_losses", "pair_weights",
]  # fmt: skip
