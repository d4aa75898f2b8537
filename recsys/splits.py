"""Public split API: ``recsys.splits.per_user_random(data, (0.8, 0.1, 0.1), seed=2026)``."""

from recsys.data.splits import PROTOCOLS, leave_k_out, per_user_random, random_ratio, split, temporal_global

__all__ = ["PROTOCOLS", "leave_k_out", "per_user_random", "random_ratio", "split", "temporal_global"]
