"""recsys: recommender systems with one honest pipeline from data to full-ranking evaluation.

The package's attributes are imported lazily, so ``import recsys`` and the ``recsys`` command start fast::

    import recsys
    data = recsys.datasets.load("ml-100k")
    train, valid, test = recsys.splits.per_user_random(data, (0.8, 0.1, 0.1), seed=2026)
    model = recsys.baselines.ItemKNN(k=100).fit(train)
    ev = recsys.evaluate(model, test, exclude=[train, valid], k=(10, 20))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "datasets": ("recsys.datasets", None),
    "splits": ("recsys.splits", None),
    "baselines": ("recsys.baselines", None),
    "filters": ("recsys.data.filters", None),
    "evaluation": ("recsys.evaluation", None),
    "Interactions": ("recsys.data.interactions", "Interactions"),
    "Recommender": ("recsys.recommender", "Recommender"),
    "evaluate": ("recsys.evaluation.evaluator", "evaluate"),
    "Sampling": ("recsys.evaluation.evaluator", "Sampling"),
    "compare": ("recsys.evaluation.significance", "compare"),
    "models": ("recsys.models", None),
    "tasks": ("recsys.tasks", None),
    "mnar": ("recsys.mnar", None),
    "fit": ("recsys.tasks.objectives", "fit"),
    "save": ("recsys.saving", "save"),
    "load": ("recsys.saving", "load"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'recsys' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
