"""Classic baselines behind the `Recommender` interface."""

from recsys.baselines.ease import EASE
from recsys.baselines.expomf import ExpoMF
from recsys.baselines.implicit_mf import ALS, BPR
from recsys.baselines.itemknn import ItemKNN
from recsys.baselines.popularity import Popularity
from recsys.baselines.tgh import TGH

__all__ = ["ALS", "BPR", "EASE", "ExpoMF", "ItemKNN", "Popularity", "TGH"]
