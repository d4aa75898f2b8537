"""The dimension-allocation heat-map of a per-block layout (DNIS, MDE, …): kept dimensions per field and block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def plot_allocation(rows: pl.DataFrame, path: Path, title: str = "dimensions per frequency block") -> Path:
    """Write a heat-map PNG of ``rows`` (`recsys.embeddings.allocation.allocation_rows`: ``field, block, dims, of``):
    one row per field, one column per block (block 0 = most frequent ids), each cell its kept dimensions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = list(dict.fromkeys(rows["field"].to_list()))
    n_blocks = int(rows["block"].max()) + 1
    grid = np.full((len(fields), n_blocks), np.nan)
    share = np.full_like(grid, np.nan)
    for r in rows.iter_rows(named=True):
        grid[fields.index(r["field"]), r["block"]] = r["dims"]
        share[fields.index(r["field"]), r["block"]] = r["dims"] / max(r["of"], 1)
    figure, axes = plt.subplots(figsize=(2.4 + 0.6 * n_blocks, 0.9 + 0.45 * len(fields)))
    image = axes.imshow(share, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            axes.text(j, i, f"{int(value)}", ha="center", va="center", color="white" if share[i, j] < 0.6 else "black", fontsize=8)
    axes.set_xticks(range(n_blocks), [str(b) for b in range(n_blocks)])
    axes.set_yticks(range(len(fields)), fields)
    axes.set_xlabel("frequency block (0 = most frequent ids)")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label="share of dimensions kept")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
