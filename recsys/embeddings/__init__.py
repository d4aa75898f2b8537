"""TorchRec embedding tables for the feature fields, and KeyedJaggedTensor builders."""

from recsys.embeddings.tables import EmbeddingTables, TableSpec, to_kjt

__all__ = ["EmbeddingTables", "TableSpec", "to_kjt"]
