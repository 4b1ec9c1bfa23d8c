"""Density clustering: HDBSCAN (scikit-learn) on a low-dimensional projection of the
vectors; it finds the number of clusters itself, and noise stays explicit (unclustered).

The projection is UMAP to ``UMAP_DIMS`` dimensions (cosine, 15 neighbours, min_dist 0)
when the ``umap`` extra is installed: the recipe of Arminio et al. ("Semantic clustering
for visual data", AoIR 2025) and of BERTopic, which density clustering needs because
densities mean little in hundreds of dimensions. Without UMAP: PCA to ``PCA_DIMS`` of the
k-NN-smoothed vectors.
"""
from __future__ import annotations

import numpy as np

from . import cluster_blocks
from .cluster_blocks import partition
from .cluster_core import UNCLUSTERED, ClusteringError, Result, normalise, relabel, smooth_blocks

UMAP_DIMS = 5
UMAP_NEIGHBOURS = 15
PCA_DIMS = 32
REDUCTIONS = ("auto", "umap", "pca")


def hdbscan(x: np.ndarray, *, min_size: int = 5, max_size: int | None = None, knn_k: int | None = None,
            reduce: str = "auto", seed: int = 0) -> Result:
    """HDBSCAN on UMAP- (or PCA-) reduced vectors; noise stays explicit (-1). ``knn_k``:
    k-NN smoothing before the projection (None: none before UMAP, whose neighbour graph
    already does that work, 10 before PCA)."""
    from sklearn.cluster import HDBSCAN

    from .embed2d import umap_available

    if reduce not in REDUCTIONS:
        raise ClusteringError(f"unknown reduction {reduce!r}: choose one of {', '.join(REDUCTIONS)}")
    if reduce == "umap" and not umap_available():
        raise ClusteringError("UMAP needs the optional extra: pip install 'datasette-imageclust[umap]'")
    x = normalise(x)
    n = len(x)
    info: dict = {"n": n}
    if n < max(3, min_size):  # too few images to form a dense group
        info["noise"] = info["unclustered"] = n
        return Result(np.full(n, UNCLUSTERED, np.int64), info)
    use_umap = reduce != "pca" and umap_available() and n > UMAP_NEIGHBOURS + 1
    if knn_k is None:
        knn_k = 0 if use_umap else 10
    z = smooth_blocks(x, partition(x, cluster_blocks.BLOCK, seed), knn_k) if knn_k else x
    if use_umap:
        z = _umap(z, seed)
        info["reduction"], info["reduced_dimensions"] = "umap", UMAP_DIMS
    else:
        from sklearn.decomposition import PCA

        d = min(PCA_DIMS, x.shape[1], n - 1)
        if 2 <= d < x.shape[1]:
            z = PCA(d, random_state=seed).fit_transform(z).astype(np.float32)
        info["reduction"], info["reduced_dimensions"] = "pca", int(z.shape[1])
    hd = HDBSCAN(min_cluster_size=max(2, min_size), max_cluster_size=max_size or None,
                 copy=True, allow_single_cluster=False)
    labels = hd.fit_predict(z).astype(np.int64)
    labels[labels < 0] = UNCLUSTERED
    info["noise"] = int(np.sum(labels == UNCLUSTERED))
    info["unclustered"] = info["noise"]
    return Result(relabel(labels), info)


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import warnings

    import umap  # type: ignore

    with warnings.catch_warnings():  # "n_jobs overridden by random_state": wanted, for repeatability
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(n_components=UMAP_DIMS, n_neighbors=UMAP_NEIGHBOURS, min_dist=0.0, metric="cosine",
                            random_state=seed, low_memory=True)
        return reducer.fit_transform(x).astype(np.float32)
