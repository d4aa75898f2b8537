"""Data pruning for LLM fine-tuning: DEALRec (influence from a surrogate via LiSSA, effort from the LM's gradient
norms, coverage-enhanced selection) and the random, GraNd, EL2N, CCS and greedy baselines; `recsys prune`."""

from recsys.pruning.lissa import LiSSA
from recsys.pruning.pruner import METHODS, DataPruning, SampleScores, Selected

__all__ = ["METHODS", "DataPruning", "LiSSA", "SampleScores", "Selected"]
