"""k-means machinery the clustering methods share, and the partition that makes them
scale: a large collection is split into blocks of <= ``BLOCK`` similar images (recursive
k-means in a PCA projection), so no method ever builds an n x n matrix.
"""
from __future__ import annotations

import math

import numpy as np

# Largest set clustered with an exact (block x block) Ward matrix. The methods read it as
# ``cluster_blocks.BLOCK`` when they run, so a test can lower it.
BLOCK = 2000


def project(x: np.ndarray, dims: int = 48, seed: int = 0) -> np.ndarray:
    """PCA to ``dims`` from the covariance of a sample: cheap at 100k x 512."""
    if x.shape[1] <= dims:
        return x
    rng = np.random.default_rng(seed)
    s = x if len(x) <= 10_000 else x[rng.choice(len(x), 10_000, replace=False)]
    mu = s.mean(0)
    _, vecs = np.linalg.eigh(np.cov((s - mu).T))
    return ((x - mu) @ vecs[:, ::-1][:, :dims]).astype(np.float32)


def fit_kmeans(x: np.ndarray, k: int, seed: int, init: str | np.ndarray = "k-means++", n_init: int = 1,
               max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn k-means: (labels, centres)."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    if isinstance(init, str) and init == "k-means++" and k > 64 and x.shape[1] > 48:
        # k-means++ seeding is O(n k d log k): pick the seeds in a PCA projection instead
        _, seeds = kmeans_plusplus(project(x, seed=seed), k, random_state=seed)
        init, n_init = x[seeds], 1
    km = KMeans(k, init=init, n_init=n_init, random_state=seed, max_iter=max_iter).fit(x)
    return km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)


def lloyd(z: np.ndarray, k: int, seed: int, iters: int = 15) -> np.ndarray:
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
    z = project(x, seed=seed) if _z is None else _z
    k = max(2, math.ceil(2 * n / block))  # aim at half-full blocks: k-means parts are uneven
    labels = lloyd(z, k, seed)
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
