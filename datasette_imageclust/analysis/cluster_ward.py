"""Constrained Ward clustering (the default method), on k-NN-smoothed vectors.

Without K, the exact Ward tree (scipy) of each block is split top-down until no cluster
exceeds ``max_size``; undersized clusters join the nearest cluster with room or become
unclustered, and images none of whose 5 nearest neighbours share their cluster become
unclustered. With K, Ward (Lance-Williams, over weighted k-means prototypes above
``BLOCK`` images) is cut at K and refined by k-means seeded with Ward's centroids.
"""
from __future__ import annotations

import math

import numpy as np

from . import cluster_blocks
from .cluster_blocks import fit_kmeans, lloyd, partition, project
from .cluster_core import (
    UNCLUSTERED,
    ClusteringError,
    Result,
    Small,
    centroids,
    handle_small,
    knn,
    normalise,
    relabel,
    smooth_blocks,
)


def ward_merge(x: np.ndarray, *, n_clusters: int | None = None, max_size: int | None = None,
               weights: np.ndarray | None = None) -> np.ndarray:
    """Exact Ward agglomeration of the rows of ``x`` (O(n^2) memory: n <= BLOCK or so).

    Stops at ``n_clusters``, or when every remaining merge would exceed ``max_size``
    (such merges are refused, as in the Go imageclust). ``weights`` lets rows stand for
    several points (k-means prototypes). Returns labels 0..m-1.
    """
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64)
    size = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).copy()
    cap = math.inf if max_size is None else float(max_size)
    target = max(1, n_clusters or 1)
    xd = x.astype(np.float64)
    sq = (xd * xd).sum(1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * xd @ xd.T, 0)
    d *= size[:, None] * size[None, :] / (size[:, None] + size[None, :])  # Ward cost of a merge
    np.fill_diagonal(d, np.inf)
    alive = np.ones(n, bool)
    parent = np.arange(n)

    def row_nn(i: int) -> tuple[int, float]:
        r = np.where(alive & (size + size[i] <= cap), d[i], np.inf)
        r[i] = np.inf
        j = int(np.argmin(r))
        return j, float(r[j])

    nn = np.empty(n, np.int64)
    nnd = np.empty(n)
    for i in range(n):
        nn[i], nnd[i] = row_nn(i)
    m = n
    while m > target:
        i = int(np.argmin(nnd))
        if not math.isfinite(nnd[i]):
            break  # every remaining merge is refused
        j = int(nn[i])
        if i > j:
            i, j = j, i
        ni, nj = size[i], size[j]
        nk = size
        # Lance-Williams update for Ward, into row/column i; j disappears.
        new = ((nk + ni) * d[i] + (nk + nj) * d[j] - nk * d[i, j]) / (nk + ni + nj)
        new[i] = np.inf
        new[~alive] = np.inf
        alive[j] = False
        new[j] = np.inf
        d[i, :] = new
        d[:, i] = new
        d[j, :] = np.inf
        d[:, j] = np.inf
        size[i] = ni + nj
        parent[j] = i
        nnd[j] = np.inf
        m -= 1
        # Rows that pointed at i or j, and i itself, need a fresh nearest neighbour;
        # others only improve if the merged cluster is now nearer and still allowed.
        stale = np.flatnonzero(alive & ((nn == i) | (nn == j)))
        better = alive & (new < nnd) & (size + size[i] <= cap)
        better[i] = False
        nn[better] = i
        nnd[better] = new[better]
        for r in set(stale.tolist()) | {i}:
            nn[r], nnd[r] = row_nn(r)
    # resolve merge chains to roots
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    _, labels = np.unique(root, return_inverse=True)
    return labels.astype(np.int64)


def _refine(x: np.ndarray, labels: np.ndarray, seed: int, iters: int = 20) -> np.ndarray:
    """k-means (spherical on normalised rows) seeded with the given clusters' centroids."""
    k = int(labels.max()) + 1
    cents = centroids(x, labels, k)
    new, _ = fit_kmeans(x, k, seed, init=cents, max_iter=iters)
    return new


def tree_cut(z: np.ndarray, max_size: int) -> np.ndarray:
    """Exact Ward tree of the rows (scipy, O(n^2) memory: n <= BLOCK), split top-down:
    every node larger than ``max_size`` is split into its two children, so no cluster
    exceeds the cap and every cluster is a whole subtree (a natural group)."""
    from scipy.cluster.hierarchy import linkage, to_tree

    n = len(z)
    if n <= max_size:
        return np.zeros(n, np.int64)
    root = to_tree(linkage(z.astype(np.float64), "ward"))
    labels = np.full(n, UNCLUSTERED, np.int64)
    stack, c = [root], 0
    while stack:
        node = stack.pop()
        if node.count <= max_size:
            labels[node.pre_order()] = c
            c += 1
        else:
            stack += [node.left, node.right]
    return labels


def trim_unsupported(x: np.ndarray, labels: np.ndarray, k: int = 5, blocks: list[np.ndarray] | None = None) -> np.ndarray:
    """An image none of whose ``k`` nearest neighbours (raw vectors) shares its cluster is an
    outlier that the size cap forced in: it becomes unclustered."""
    labels = labels.copy()
    for b in blocks or [np.arange(len(x))]:
        if len(b) <= k:
            continue
        idx, _ = knn(x[b], k + 1)
        lb = labels[b]
        support = (lb[idx[:, 1:]] == lb[:, None]).sum(1)
        lb[(support == 0) & (lb >= 0)] = UNCLUSTERED
        labels[b] = lb
    return labels


def ward(x: np.ndarray, *, n_clusters: int | None = None, min_size: int = 3, max_size: int | None = 10,
         small: Small = "unclustered", knn_k: int | None = None, trim: bool = True, refine: bool = True,
         seed: int = 0) -> Result:
    """Constrained Ward on k-NN-smoothed vectors.

    With ``n_clusters`` the tree is cut at K and refined with k-means. Otherwise the tree
    is split top-down until no cluster exceeds ``max_size``; undersized clusters join the
    nearest cluster with room (or become unclustered), and images without support in their
    k-NN neighbourhood become unclustered (``trim``).
    """
    x = normalise(x)
    n = len(x)
    info: dict = {"n": n}
    if n == 0:
        return Result(np.zeros(0, np.int64), info)
    if knn_k is None:  # measured: coarse K needs mild smoothing, small clusters more
        knn_k = 10 if n_clusters is not None else 20
    if n_clusters is not None:
        if not 1 <= n_clusters <= n:
            raise ClusteringError(f"--clusters must be between 1 and the number of images ({n})")
        if max_size is not None and n_clusters * max_size < n:
            raise ClusteringError(
                f"{n_clusters} clusters of at most {max_size} images cannot hold {n} images: "
                f"raise --max-size or --clusters")
    block = cluster_blocks.BLOCK
    blocks = partition(x, block, seed)
    info["blocks"] = len(blocks)
    z = smooth_blocks(x, blocks, knn_k)
    if n_clusters is not None:
        if len(blocks) == 1:
            labels = ward_merge(z, n_clusters=n_clusters, max_size=max_size)
        else:  # Ward over k-means prototypes (weighted by their sizes)
            m = min(block, n)
            plab = lloyd(project(z, seed=seed), m, seed)  # prototypes, found in a PCA projection
            pcent = centroids(z, plab, m)
            w = np.bincount(plab, minlength=m).astype(float)
            used = w > 0
            pl = ward_merge(pcent[used], n_clusters=n_clusters, weights=w[used],
                            max_size=max_size)
            remap = np.full(m, -1)
            remap[np.flatnonzero(used)] = pl
            labels = remap[plab]
        if refine and max_size is None and n_clusters > 1:
            labels = _refine(z, labels, seed)
        labels = relabel(labels)
        info["unclustered"] = 0
        return Result(labels, info)
    cap = max_size or max(min_size, 10)
    labels = np.full(n, UNCLUSTERED, np.int64)
    nxt = 0
    for b in blocks:
        lb = tree_cut(z[b], cap)
        labels[b] = lb + nxt
        nxt += int(lb.max()) + 1
    labels = handle_small(x, labels, min_size, max_size, small, info)
    if trim:
        before = int(np.sum(labels == UNCLUSTERED))
        labels = trim_unsupported(x, labels, 5, blocks)
        info["trimmed_outliers"] = int(np.sum(labels == UNCLUSTERED)) - before
        # trimming can leave a cluster below min_size: those images are unclustered too
        ids, counts = np.unique(labels[labels >= 0], return_counts=True)
        labels[np.isin(labels, ids[counts < min_size])] = UNCLUSTERED
        labels = relabel(labels)
        info["unclustered"] = int(np.sum(labels == UNCLUSTERED))
    return Result(labels, info)
