"""Full-ranking and sampled evaluation, metrics and significance tests."""

from recsys.evaluation.evaluator import Evaluation, Sampling, evaluate
from recsys.evaluation.significance import Comparison, compare

__all__ = ["Comparison", "Evaluation", "Sampling", "compare", "evaluate"]
