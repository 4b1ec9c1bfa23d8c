"""k-means on k-NN-smoothed vectors, with an optional size cap (the Internetexplorer "no
more than ten images" use): the cap is kept by a capacity-constrained assignment."""
from __future__ import annotations

import math

import numpy as np

from . import cluster_blocks
from .cluster_blocks import fit_kmeans, partition
from .cluster_core import (
    ClusteringError,
    Result,
    Small,
    centroids,
    handle_small,
    normalise,
    smooth_blocks,
)


def _capacity_assign(x: np.ndarray, cents: np.ndarray, cap: int, top: int = 10) -> np.ndarray:
    """Assign rows to centroids, nearest first, never more than ``cap`` per centroid."""
    n, k = len(x), len(cents)
    top = min(top, k)
    idx, sim = np.empty((n, top), np.int64), np.empty((n, top), np.float32)
    for s in range(0, n, 4096):
        block = x[s : s + 4096] @ cents.T
        part = np.argpartition(-block, top - 1, axis=1)[:, :top] if top < k else np.tile(np.arange(k), (len(block), 1))
        idx[s : s + 4096], sim[s : s + 4096] = part, np.take_along_axis(block, part, 1)
    # Deferred acceptance (vectorised rounds): rows propose to their next-best centroid,
    # each centroid keeps its ``cap`` most similar proposers. With one similarity for both
    # sides this equals "most similar pair first", without a Python loop over n x top pairs.
    o = np.argsort(-sim, axis=1)
    idx, sim = np.take_along_axis(idx, o, 1), np.take_along_axis(sim, o, 1)
    labels = np.full(n, -1, np.int64)
    ptr = np.zeros(n, np.int64)
    rows_all = np.arange(n)
    for _ in range(50 * top):
        free = rows_all[(labels < 0) & (ptr < top)]
        if len(free) == 0:
            break
        held = rows_all[labels >= 0]
        rows = np.concatenate([held, free])
        cl = np.concatenate([labels[held], idx[free, ptr[free]]])
        sc = np.concatenate([sim[held, ptr[held]], sim[free, ptr[free]]])
        order = np.lexsort((-sc, cl))
        cls = cl[order]
        starts = np.r_[0, np.flatnonzero(np.diff(cls)) + 1]
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        keep = rank < cap
        labels[rows] = -1
        labels[rows[order][keep]] = cls[keep]
        ptr[rows[order][~keep]] += 1
    room = cap - np.bincount(labels[labels >= 0], minlength=k)
    for r in np.flatnonzero(labels < 0):  # all top candidates full: any with room
        s = cents @ x[r]
        s[room <= 0] = -np.inf
        cl = int(np.argmax(s))
        labels[r] = cl
        room[cl] -= 1
    return labels


def kmeans(x: np.ndarray, *, n_clusters: int | None = None, min_size: int = 3, max_size: int | None = 10,
           small: Small = "merge", knn_k: int = 10, seed: int = 0, iters: int = 5) -> Result:
    """k-means on smoothed vectors; with ``max_size`` a capacity-constrained assignment
    (the Internetexplorer "no more than ten images" use). K defaults to n / (0.8 max)."""
    x = normalise(x)
    n = len(x)
    info: dict = {"n": n}
    if n == 0:
        return Result(np.zeros(0, np.int64), info)
    if n_clusters is None:
        n_clusters = max(1, math.ceil(n / (0.8 * (max_size or 10))))
    if not 1 <= n_clusters <= n:
        raise ClusteringError(f"--clusters must be between 1 and the number of images ({n})")
    if max_size is not None and n_clusters * max_size < n:
        raise ClusteringError(f"{n_clusters} clusters of at most {max_size} images cannot hold {n} images")
    info["k"] = n_clusters
    blocks = partition(x, cluster_blocks.BLOCK, seed)
    z = smooth_blocks(x, blocks, knn_k)

    def capped(zb: np.ndarray, lb: np.ndarray, cb: np.ndarray, k: int) -> np.ndarray:
        if max_size is None or np.bincount(lb).max() <= max_size:
            return lb
        for _ in range(iters):
            lb = _capacity_assign(zb, cb, max_size)
            new = centroids(zb, lb, k)
            empty = np.bincount(lb, minlength=k) == 0
            new[empty] = cb[empty]
            cb = new
        return lb

    if len(blocks) > 1 and n_clusters > 4 * len(blocks):
        # many small clusters of a large collection: k-means (and the size cap) inside each
        # block, K split in proportion to the block sizes (never n x K distances)
        labels = np.empty(n, np.int64)
        nxt = 0
        for b in blocks:
            kb = max(1, min(len(b), round(n_clusters * len(b) / n)))
            if max_size is not None:
                kb = max(kb, math.ceil(len(b) / max_size))
            lb, cb = fit_kmeans(z[b], kb, seed, n_init=1, max_iter=50)
            labels[b] = capped(z[b], lb, cb, kb) + nxt
            nxt += kb
    else:
        labels, cents = fit_kmeans(z, n_clusters, seed, n_init=3 if n <= 20_000 else 1)
        labels = capped(z, labels, cents, n_clusters)
    labels = handle_small(x, labels, min_size, max_size, small, info)
    return Result(labels, info)
