"""Item transition graphs of ordered histories: counts of consecutive pairs a → b, the rings of items at each
shortest directed distance, and the per-source edge bonus. TGH scores with them and the shortcut audit measures
them (`recsys.baselines.tgh`, `recsys.diagnostics.shortcuts`); co-occurrence clusters index items for LLM recommenders."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from recsys.data.sequences import Sequences


def transition_counts(a: np.ndarray, b: np.ndarray, n_items: int) -> sp.csr_matrix:
    """``[N, N]`` CSR of transition counts ``c(a→b)`` (duplicates summed)."""
    counts = sp.csr_matrix((np.ones(len(a), dtype=np.float32), (a, b)), shape=(n_items, n_items))
    counts.sum_duplicates()
    counts.sort_indices()
    return counts


def hop_rings(adjacency: sp.csr_matrix, depth: int) -> list[sp.csr_matrix]:
    """``rings[h][s, j] = 1`` iff j is at shortest directed distance exactly ``h + 1`` from s (``depth`` rings).

    Ring 1 is the out-neighbourhood (a self-loop puts s in its own ring 1, as in the authors' code); later rings
    remove s and every earlier ring.
    """
    binary = adjacency.copy().astype(np.float32)
    binary.data[:] = 1.0
    rings = [binary]
    visited = _binary(sp.eye(binary.shape[0], format="csr", dtype=np.float32) + binary)
    for _ in range(1, depth):
        reach = _binary(rings[-1] @ binary)
        ring = _binary(reach - reach.multiply(visited))
        rings.append(ring)
        visited = _binary(visited + ring)
    return rings


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def edge_bonus(counts: sp.csr_matrix) -> sp.csr_matrix:
    """``log(1 + c(s→j)) / max_k log(1 + c(s→k))`` per row (rows without edges stay empty)."""
    logs = counts.copy()
    logs.data = np.log1p(logs.data)
    row_max = np.asarray(logs.max(axis=1).todense()).ravel()
    return (sp.diags(1.0 / np.where(row_max == 0, 1.0, row_max)) @ logs).tocsr()


def cooccurrence_clusters(sequences: Sequences, branching: int = 32, seed: int = 0) -> list[list[int]]:
    """Each item's path of cluster numbers in a recursive spectral clustering (scikit-learn's) of the symmetric
    transition graph, ``branching`` clusters per level, until a cluster holds at most ``branching`` items, which
    are then numbered in code order: OpenP5's collaborative indexing. Every path is unique."""
    from sklearn.cluster import SpectralClustering

    if branching < 2:
        raise ValueError(f"branching must be >= 2, got {branching}")
    a, b = sequences.transitions()
    counts = transition_counts(a, b, sequences.n_items)
    # A small uniform affinity keeps every subgraph connected (spectral clustering needs it).
    affinity = (counts + counts.T).toarray() + 1e-3
    paths: list[list[int]] = [[] for _ in range(sequences.n_items)]

    def split(members: np.ndarray) -> None:
        if len(members) <= branching:
            for position, item in enumerate(members):
                paths[item].append(position)
            return
        labels = SpectralClustering(n_clusters=branching, affinity="precomputed", assign_labels="discretize",
                                    random_state=seed).fit_predict(affinity[np.ix_(members, members)])  # fmt: skip
        if len(np.unique(labels)) == 1:  # no structure left: number the items in blocks
            labels = np.arange(len(members)) * branching // len(members)
        for cluster in np.unique(labels):
            part = members[labels == cluster]
            for item in part:
                paths[item].append(int(cluster))
            split(part)

    split(np.arange(sequences.n_items))
    return paths
