"""Latent-factor models: `nn.Module`s that score (user, item) pairs through TorchRec embedding tables."""

from recsys.models.base import PairModel
from recsys.models.fm import FM, DeepFM
from recsys.models.mf import MF
from recsys.models.neumf import NeuMF
from recsys.models.sasrec import SASRec

__all__ = ["FM", "MF", "DeepFM", "NeuMF", "PairModel", "SASRec"]
