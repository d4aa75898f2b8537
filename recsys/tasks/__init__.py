"""Lightning modules: a scoring model + its objective + optimisation, presenting the `Recommender` interface."""

from recsys.tasks.base import RecommenderTask
from recsys.tasks.mnar import RelMFTask
from recsys.tasks.objectives import BCETask, BPRTask, ClickTask, MSETask
from recsys.tasks.sequential import SequentialTask, TGHTask

__all__ = ["BCETask", "BPRTask", "ClickTask", "MSETask", "RecommenderTask", "RelMFTask", "SequentialTask", "TGHTask"]
