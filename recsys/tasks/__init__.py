"""Lightning modules: a scoring model + its objective + optimisation, presenting the `Recommender` interface."""

from recsys.tasks.base import RecommenderTask
from recsys.tasks.objectives import BCETask, BPRTask, ClickTask, MSETask

__all__ = ["BCETask", "BPRTask", "ClickTask", "MSETask", "RecommenderTask"]
