"""Dataset shortcut diagnostics (branching, feature smoothness, history dependence) and `recsys audit`."""

from recsys.diagnostics.shortcuts import Estimate, bootstrap_difference, bootstrap_mean, branching, history_dependence, smoothness

__all__ = ["Estimate", "bootstrap_difference", "bootstrap_mean", "branching", "history_dependence", "smoothness"]
