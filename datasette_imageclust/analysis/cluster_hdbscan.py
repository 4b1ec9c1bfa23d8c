"""Density clustering: scikit-learn's HDBSCAN on PCA-reduced k-NN-smoothed vectors; it
finds the number of clusters itself, and noise stays explicit (unclustered)."""
from __future__ import annotations

import numpy as np

from . import cluster_blocks
from .cluster_blocks import partition
from .cluster_core import UNCLUSTERED, Result, normalise, relabel, smooth_blocks


def hdbscan(x: np.ndarray, *, min_size: int = 3, max_size: int | None = None, knn_k: int = 10,
            dims: int = 32, seed: int = 0) -> Result:
    """scikit-learn's HDBSCAN on PCA-reduced smoothed vectors; noise stays explicit (-1)."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    x = normalise(x)
    n = len(x)
    info: dict = {"n": n}
    if n < max(3, min_size):  # too few images to form a dense group
        info["noise"] = info["unclustered"] = n
        return Result(np.full(n, UNCLUSTERED, np.int64), info)
    z = smooth_blocks(x, partition(x, cluster_blocks.BLOCK, seed), knn_k)
    d = min(dims, x.shape[1], n - 1)
    if d >= 2 and d < x.shape[1]:
        z = PCA(d, random_state=seed).fit_transform(z).astype(np.float32)
    hd = HDBSCAN(min_cluster_size=max(2, min_size), max_cluster_size=max_size or None,
                 copy=True, allow_single_cluster=False)
    labels = hd.fit_predict(z).astype(np.int64)
    labels[labels < 0] = UNCLUSTERED
    info["noise"] = int(np.sum(labels == UNCLUSTERED))
    info["unclustered"] = info["noise"]
    return Result(relabel(labels), info)
