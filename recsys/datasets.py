"""Public dataset API: ``recsys.datasets.load("ml-100k")``."""

from recsys.data.registry import available_cards, card, data_dir, import_file, load, prepare

__all__ = ["available_cards", "card", "data_dir", "import_file", "load", "prepare"]
