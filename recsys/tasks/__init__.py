"""Lightning modules: a scoring model + its objective, training examples, optimiser and judge, presenting the
`Recommender` interface."""

from recsys.tasks.base import PairModelTask, RecommenderTask
from recsys.tasks.llm import LLMTask
from recsys.tasks.mnar import RelMFTask
from recsys.tasks.objectives import BCETask, BPRTask, ClickTask, MSETask, SampledNegativesTask, fit
from recsys.tasks.sequential import SequentialTask

__all__ = [
    "BCETask", "BPRTask", "ClickTask", "LLMTask", "MSETask", "PairModelTask", "RecommenderTask", "RelMFTask",
    "SampledNegativesTask", "SequentialTask", "fit",
]  # fmt: skip
