"""Clustering: ``run(method, vectors, ...)`` is the one entry point (pure functions on
numpy arrays; no database here).

Every method takes L2-normalised float32 vectors (n x d) and returns a :class:`Result`
with an int label per row, ``-1`` (``UNCLUSTERED``) meaning "unclustered" (noise, or
leftovers too small to be a cluster). The pieces live in:

* ``cluster_core``: the result type, k-NN and smoothing, centroids, relabelling,
  small-cluster handling (what every method shares);
* ``cluster_blocks``: k-means helpers and the partition into blocks of <= ``BLOCK``;
* ``cluster_ward``, ``cluster_kmeans``, ``cluster_hdbscan``: one method each.

Design (measured in ``bench/clusters.py``):

* Vectors are first *smoothed* by k-NN query expansion (each vector is replaced by the
  similarity-weighted mean of itself and its nearest neighbours). It pulls images towards
  the dense part of their neighbourhood, which sharpens category structure for every
  method (tuxpaint K=16 Ward ARI 0.40 -> 0.52) and costs one k-NN pass.
* Constrained Ward (no K): the exact Ward tree (scipy) is split top-down until no cluster
  exceeds ``max_size`` (a merge over the cap is refused; oversize groups are split again);
  images none of whose 5 nearest neighbours share their cluster become unclustered.
  Above ``BLOCK`` images the collection is first partitioned with k-means (in a PCA
  projection) into blocks of <= BLOCK images and Ward runs per block: no n x n matrix.
* With a fixed K, Ward (Lance-Williams, over weighted k-means prototypes above BLOCK) is
  cut at K and refined by k-means seeded with Ward's centroids.
* Undersized clusters are never silently dropped: their members join the nearest cluster
  that has room, or become unclustered (``small="unclustered"``).
"""
from __future__ import annotations

import numpy as np

from .cluster_blocks import partition
from .cluster_core import UNCLUSTERED, ClusteringError, Result, knn, normalise
from .cluster_hdbscan import hdbscan
from .cluster_kmeans import kmeans
from .cluster_ward import ward

# The names other modules use; each has its home in one of the modules above.
__all__ = ["METHODS", "UNCLUSTERED", "ClusteringError", "Result", "default_sizes", "hdbscan", "kmeans", "knn",
           "normalise", "partition", "run", "ward"]

METHODS = {"ward": ward, "kmeans": kmeans, "hdbscan": hdbscan}


def default_sizes(method: str, n_clusters: int | None, min_size: int | None,
                  max_size: int | None) -> tuple[int, int | None]:
    """(min_size, max_size) with the defaults filled in: clusters of 3-10 for Ward and
    k-means without K (no cap with K); HDBSCAN finds its own sizes, from 5 images up
    (min_cluster_size 5: below that, density clusters on a few images are mostly noise)."""
    if method == "hdbscan":
        return (5 if min_size is None else min_size), max_size
    if max_size is None and n_clusters is None:
        max_size = 10
    return (3 if min_size is None else min_size), max_size


def run(method: str, x: np.ndarray, **params) -> Result:
    """Cluster ``x`` with ``method`` (one of ``METHODS``) and that method's parameters."""
    if method not in METHODS:
        raise ClusteringError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "hdbscan":
        if params.get("n_clusters") is not None:
            raise ClusteringError("hdbscan finds the number of clusters itself: drop --clusters")
        params = {k: v for k, v in params.items() if k in ("min_size", "max_size", "knn_k", "seed")}
    return METHODS[method](x, **params)
