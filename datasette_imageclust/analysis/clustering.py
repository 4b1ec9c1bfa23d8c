"""Clustering algorithms: pure functions on numpy arrays (no database here).

Every function takes L2-normalised float32 vectors (n x d) and returns an int label per
row, ``-1`` meaning "unclustered" (noise, or leftovers too small to be a cluster).

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

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

BLOCK = 2000  # largest set clustered with an exact (block x block) Ward matrix
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


# --- partitioning for scale -----------------------------------------------------------


def _kmeans(x: np.ndarray, k: int, seed: int, init="k-means++", n_init: int = 1, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans, kmeans_plusplus

    if isinstance(init, str) and init == "k-means++" and k > 64 and x.shape[1] > 48:
        # k-means++ seeding is O(n k d log k): pick the seeds in a PCA projection instead
        _, seeds = kmeans_plusplus(_project(x, seed=seed), k, random_state=seed)
        init, n_init = x[seeds], 1
    km = KMeans(k, init=init, n_init=n_init, random_state=seed, max_iter=max_iter).fit(x)
    return km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)


def _project(x: np.ndarray, dims: int = 48, seed: int = 0) -> np.ndarray:
    """PCA to ``dims`` from the covariance of a sample: cheap at 100k x 512."""
    if x.shape[1] <= dims:
        return x
    rng = np.random.default_rng(seed)
    s = x if len(x) <= 10_000 else x[rng.choice(len(x), 10_000, replace=False)]
    mu = s.mean(0)
    _, vecs = np.linalg.eigh(np.cov((s - mu).T))
    return ((x - mu) @ vecs[:, ::-1][:, :dims]).astype(np.float32)


def _lloyd(z: np.ndarray, k: int, seed: int, iters: int = 15) -> np.ndarray:
    """Plain k-means (numpy, low-dimensional input) seeded by k-means++ on a sample."""
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.default_rng(seed)
    sample = z if len(z) <= 10_000 else z[rng.choice(len(z), 10_000, replace=False)]
    cents, _ = kmeans_plusplus(sample, k, random_state=seed)
    labels = np.zeros(len(z), np.int64)
    cents = cents.astype(np.float32)
    for _ in range(iters):
        new = np.empty(len(z), np.int64)
        cc = (cents * cents).sum(1)
        for s in range(0, len(z), 8192):  # chunked: never n x k at once
            new[s : s + 8192] = (cc[None, :] - 2 * z[s : s + 8192] @ cents.T).argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        order = np.argsort(labels, kind="stable")
        nz = counts > 0
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nz]
        cents[nz] = np.add.reduceat(z[order], starts, axis=0) / counts[nz, None]
    return labels


def partition(x: np.ndarray, block: int = BLOCK, seed: int = 0, _z: np.ndarray | None = None) -> list[np.ndarray]:
    """Split row indices into groups of <= ``block`` similar rows (recursive k-means on a
    PCA projection): what makes Ward linear in n instead of quadratic."""
    n = len(x)
    if n <= block:
        return [np.arange(n)]
    z = _project(x, seed=seed) if _z is None else _z
    k = max(2, math.ceil(2 * n / block))  # aim at half-full blocks: k-means parts are uneven
    labels = _lloyd(z, k, seed)
    out: list[np.ndarray] = []
    for members in np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels, minlength=k))[:-1]):
        if len(members) == 0:
            continue
        if len(members) > block:
            if len(members) == n:  # degenerate (identical vectors): split arbitrarily
                out.extend(np.array_split(members, math.ceil(n / block)))
                continue
            out.extend(members[p] for p in partition(x[members], block, seed + 1, z[members]))
        else:
            out.append(members)
    return out


# --- constrained Ward -----------------------------------------------------------------


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


def _handle_small(x: np.ndarray, labels: np.ndarray, min_size: int, max_size: int | None,
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
    return _relabel(labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Clusters numbered 0..m-1 by decreasing size; -1 stays."""
    out = np.full(len(labels), UNCLUSTERED, np.int64)
    inside = labels >= 0
    ids, inv, counts = np.unique(labels[inside], return_inverse=True, return_counts=True)
    rank = np.empty(len(ids), np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(ids))
    out[inside] = rank[inv]
    return out


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


def _refine(x: np.ndarray, labels: np.ndarray, seed: int, iters: int = 20) -> np.ndarray:
    """k-means (spherical on normalised rows) seeded with the given clusters' centroids."""
    k = int(labels.max()) + 1
    cents = centroids(x, labels, k)
    new, _ = _kmeans(x, k, seed, init=cents, max_iter=iters)
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
    blocks = partition(x, BLOCK, seed)
    info["blocks"] = len(blocks)
    z = np.empty_like(x)
    for b in blocks:  # k-NN smoothing within blocks: neighbours are in the same block
        z[b] = smooth(x[b], knn_k)
    if n_clusters is not None:
        if len(blocks) == 1:
            labels = ward_merge(z, n_clusters=n_clusters, max_size=max_size)
        else:  # Ward over k-means prototypes (weighted by their sizes)
            m = min(BLOCK, n)
            plab = _lloyd(_project(z, seed=seed), m, seed)  # prototypes, found in a PCA projection
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
        labels = _relabel(labels)
        info["unclustered"] = 0
        return Result(labels, info)
    cap = max_size or max(min_size, 10)
    labels = np.full(n, UNCLUSTERED, np.int64)
    nxt = 0
    for b in blocks:
        lb = tree_cut(z[b], cap)
        labels[b] = lb + nxt
        nxt += int(lb.max()) + 1
    labels = _handle_small(x, labels, min_size, max_size, small, info)
    if trim:
        before = int(np.sum(labels == UNCLUSTERED))
        labels = trim_unsupported(x, labels, 5, blocks)
        info["trimmed_outliers"] = int(np.sum(labels == UNCLUSTERED)) - before
        # trimming can leave a cluster below min_size: those images are unclustered too
        ids, counts = np.unique(labels[labels >= 0], return_counts=True)
        labels[np.isin(labels, ids[counts < min_size])] = UNCLUSTERED
        labels = _relabel(labels)
        info["unclustered"] = int(np.sum(labels == UNCLUSTERED))
    return Result(labels, info)


# --- k-means with a size cap -------------------------------------------------------------


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
    blocks = partition(x, BLOCK, seed)
    z = np.empty_like(x)
    for b in blocks:
        z[b] = smooth(x[b], knn_k)
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
            lb, cb = _kmeans(z[b], kb, seed, n_init=1, max_iter=50)
            labels[b] = capped(z[b], lb, cb, kb) + nxt
            nxt += kb
    else:
        labels, cents = _kmeans(z, n_clusters, seed, n_init=3 if n <= 20_000 else 1)
        labels = capped(z, labels, cents, n_clusters)
    labels = _handle_small(x, labels, min_size, max_size, small, info)
    return Result(labels, info)


# --- density ---------------------------------------------------------------------------


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
    z = np.empty_like(x)
    for b in partition(x, BLOCK, seed):
        z[b] = smooth(x[b], knn_k)
    d = min(dims, x.shape[1], n - 1)
    if d >= 2 and d < x.shape[1]:
        z = PCA(d, random_state=seed).fit_transform(z).astype(np.float32)
    hd = HDBSCAN(min_cluster_size=max(2, min_size), max_cluster_size=max_size or None,
                 copy=True, allow_single_cluster=False)
    labels = hd.fit_predict(z).astype(np.int64)
    labels[labels < 0] = UNCLUSTERED
    info["noise"] = int(np.sum(labels == UNCLUSTERED))
    info["unclustered"] = info["noise"]
    return Result(_relabel(labels), info)


METHODS = {"ward": ward, "kmeans": kmeans, "hdbscan": hdbscan}


def run(method: str, x: np.ndarray, **params) -> Result:
    if method not in METHODS:
        raise ClusteringError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "hdbscan":
        if params.get("n_clusters") is not None:
            raise ClusteringError("hdbscan finds the number of clusters itself: drop --clusters")
        params = {k: v for k, v in params.items() if k in ("min_size", "max_size", "knn_k", "seed")}
    return METHODS[method](x, **params)
