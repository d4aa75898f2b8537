"""Scoring models: latent-factor `nn.Module`s over TorchRec embedding tables, SASRec, and the generative LM of LLM
recommenders."""

from recsys.models.base import PairModel
from recsys.models.fm import FM, DeepFM
from recsys.models.generative import GenerativeLM
from recsys.models.language import CatalogueLM
from recsys.models.mf import MF
from recsys.models.neumf import NeuMF
from recsys.models.sasrec import SASRec

__all__ = ["FM", "MF", "CatalogueLM", "DeepFM", "GenerativeLM", "NeuMF", "PairModel", "SASRec"]
