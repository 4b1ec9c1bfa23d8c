"""What every clustering method shares (pure numpy, no database): the result type, unit
vectors, exact k-NN and k-NN smoothing, centroids, numbering clusters by size, and what
becomes of clusters below the minimum size.

Labels are one int per row, ``UNCLUSTERED`` (-1) meaning noise or leftovers too small to
be a cluster.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

UNCLUSTERED = -1
Small = Literal["merge", "unclustered"]


class ClusteringError(ValueError):
    """Parameters that cannot work together; the message says why."""


@dataclass
class Result:
    labels: np.ndarray  # int64, -1 = unclustered
    info: dict = field(default_factory=dict)  # what happened (merged leftovers, noise, ...)


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# --- k-NN and smoothing ------------------------------------------------------------


def knn(x: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k-NN of normalised rows (self included first); chunked, never n x n."""
    n = len(x)
    k = min(k, n)
    idx = np.empty((n, k), np.int64)
    sim = np.empty((n, k), np.float32)
    for s in range(0, n, chunk):
        block = x[s : s + chunk] @ x.T
        part = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(block), 1))
        ps = np.take_along_axis(block, part, 1)
        order = np.argsort(-ps, axis=1)
        idx[s : s + chunk] = np.take_along_axis(part, order, 1)
        sim[s : s + chunk] = np.take_along_axis(ps, order, 1)
    return idx, sim


def smooth(x: np.ndarray, k: int = 10, alpha: float = 3.0) -> np.ndarray:
    """k-NN query expansion: each row becomes the normalised sum of itself and its k
    nearest neighbours weighted by similarity**alpha (alpha-QE, Radenovic et al.)."""
    if k <= 0 or len(x) < 3:
        return normalise(x)
    idx, sim = knn(x, k + 1)
    w = np.clip(sim, 0, None) ** alpha
    out = np.einsum("nk,nkd->nd", w, x[idx], optimize=True)
    return normalise(out)


def smooth_blocks(x: np.ndarray, blocks: list[np.ndarray], k: int) -> np.ndarray:
    """``smooth`` within each block of row indices: neighbours are sought in the same block."""
    z = np.empty_like(x)
    for b in blocks:
        z[b] = smooth(x[b], k)
    return z


# --- clusters as labels ----------------------------------------------------------------


def centroids(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Normalised mean of each cluster 0..k-1 (rows with label < 0 ignored); O(n d)."""
    sums = np.zeros((k, x.shape[1]), np.float32)
    m = np.flatnonzero(labels >= 0)
    if len(m):
        lab = labels[m]
        order = m[np.argsort(lab, kind="stable")]
        counts = np.bincount(lab, minlength=k)
        nz = counts > 0
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nz]
        sums[nz] = np.add.reduceat(x[order], starts, axis=0)
    return normalise(sums)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Clusters numbered 0..m-1 by decreasing size; -1 stays."""
    out = np.full(len(labels), UNCLUSTERED, np.int64)
    inside = labels >= 0
    ids, inv, counts = np.unique(labels[inside], return_inverse=True, return_counts=True)
    rank = np.empty(len(ids), np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(ids))
    out[inside] = rank[inv]
    return out


def handle_small(x: np.ndarray, labels: np.ndarray, min_size: int, max_size: int | None,
                 small: Small, info: dict) -> np.ndarray:
    """Members of clusters smaller than ``min_size`` join the nearest cluster with room
    (``merge``) or become unclustered. Records counts in ``info``."""
    labels = labels.copy()
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    small_ids = ids[counts < min_size]
    info["undersized_clusters"] = int(len(small_ids))
    moving = np.flatnonzero(np.isin(labels, small_ids))
    info["undersized_images"] = int(len(moving))
    labels[moving] = UNCLUSTERED
    merged = 0
    if small == "merge" and len(moving):
        keep = ids[counts >= min_size]
        if len(keep):
            lab = labels.copy()
            index = np.full(int(labels.max()) + 1, -1)
            index[keep] = np.arange(len(keep))
            lab = np.where(labels >= 0, index[np.maximum(labels, 0)], -1)
            cents = centroids(x, lab, len(keep))
            room = (max_size or math.inf) - np.bincount(lab[lab >= 0], minlength=len(keep)).astype(float)
            top = min(20, len(keep))
            cand = np.empty((len(moving), top), np.int64)
            best = np.empty(len(moving), np.float32)
            for s in range(0, len(moving), 2048):  # chunked: never moving x clusters at once
                sims = x[moving[s : s + 2048]] @ cents.T
                part = np.argsort(-sims, axis=1)[:, :top]
                cand[s : s + 2048] = part
                best[s : s + 2048] = np.take_along_axis(sims, part[:, :1], 1)[:, 0]
            # most confident images first, so the best fits get the last free places
            for p in np.argsort(-best):
                for c in cand[p]:
                    if room[c] >= 1:
                        labels[moving[p]] = keep[c]
                        room[c] -= 1
                        merged += 1
                        break
    info["merged_into_nearest"] = merged
    info["unclustered"] = int(np.sum(labels == UNCLUSTERED))
    return relabel(labels)
