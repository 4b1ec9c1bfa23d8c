"""Stage 1 of the map layout: L2-normalised vectors to 2-D points.

UMAP when the optional ``umap`` extra is installed; otherwise scikit-learn: PCA to 50-d,
then Barnes-Hut t-SNE. t-SNE costs minutes at 100k points on 2 cores, so above
``landmarks`` points it runs on k-means prototypes (landmarks) and every image is placed
by interpolating its nearest prototypes in PCA space (landmark t-SNE): ~20 s at 100k.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

METHODS = ("auto", "umap", "tsne")


class LayoutError(Exception):
    """The layout cannot be computed (bad option, nothing to lay out)."""


def _quiet(msg: str) -> None:
    pass


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except Exception:  # ImportError, or numba failing to initialise
        return False
    return True


def _pca(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    dims = min(dims, x.shape[1], x.shape[0] - 1)
    if dims < 2:
        return x[:, :2] if x.shape[1] >= 2 else np.hstack([x, np.zeros((len(x), 1), x.dtype)])
    solver = "randomized" if x.shape[0] > 2000 and dims < x.shape[1] else "full"
    return PCA(dims, svd_solver=solver, random_state=seed).fit_transform(x).astype(np.float32)


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = len(x)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.5)))
    return TSNE(
        2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed,
        n_jobs=-1, max_iter=500,
    ).fit_transform(x).astype(np.float64)


def _nearest(x: np.ndarray, centers: np.ndarray, k: int, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Indices and squared distances of the ``k`` nearest centers of each row (chunked:
    a full n x landmarks matrix would be GBs at 100k)."""
    c2 = (centers.astype(np.float32) ** 2).sum(1)
    idx = np.empty((len(x), k), np.int64)
    dist = np.empty((len(x), k), np.float32)
    for s in range(0, len(x), chunk):
        part = x[s:s + chunk].astype(np.float32)
        d = c2[None, :] - 2.0 * part @ centers.T.astype(np.float32) + (part ** 2).sum(1)[:, None]
        nn = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(d), 1))
        idx[s:s + chunk] = nn
        dist[s:s + chunk] = np.maximum(np.take_along_axis(d, nn, 1), 0)
    return idx, dist


def _landmark_tsne(x: np.ndarray, landmarks: int, seed: int) -> np.ndarray:
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(landmarks, random_state=seed, batch_size=4096, n_init=1, max_iter=50)
    km.fit(x)
    centers = km.cluster_centers_.astype(np.float32)
    ycent = _tsne(centers, seed)
    k = min(6, len(centers))
    idx, d2 = _nearest(x, centers, k)
    # Gaussian weights scaled by each point's own nearest distance: a point near one
    # prototype sits on it; one between prototypes lands between them.
    scale = np.maximum(d2.min(1, keepdims=True), 1e-6)
    w = np.exp(-(d2 - d2.min(1, keepdims=True)) / scale)
    w /= w.sum(1, keepdims=True)
    return (w[:, :, None] * ycent[idx]).sum(1)


def embed_2d(vecs: np.ndarray, method: str = "auto", *, seed: int = 0, landmarks: int = 1000,
             on_status: Callable[[str], None] = _quiet) -> tuple[np.ndarray, str]:
    """2-D coordinates (n, 2) float64 of L2-normalised ``vecs``, and the method used."""
    if method not in METHODS:
        raise LayoutError(f"unknown layout method {method!r}: use one of {', '.join(METHODS)}")
    n = len(vecs)
    if n == 0:
        return np.zeros((0, 2)), "none"
    if n < 5:
        # Too few for a neighbour embedding: the first two principal directions do.
        if n == 1:
            return np.zeros((1, 2)), "pca"
        y = _pca(vecs, 2, seed).astype(np.float64)
        return y, "pca"
    if method == "umap" and not umap_available():
        raise LayoutError("--method umap needs the optional extra: pip install 'datasette-imageclust[umap]'")
    use_umap = method == "umap" or (method == "auto" and umap_available())
    x = _pca(vecs, 50, seed)
    if use_umap and n >= 16:
        import umap  # type: ignore

        on_status(f"UMAP of {n} points")
        reducer = umap.UMAP(n_neighbors=min(15, n - 1), min_dist=0.1, random_state=seed, low_memory=True)
        return reducer.fit_transform(x).astype(np.float64), "umap"
    if n <= landmarks:
        on_status(f"t-SNE of {n} points")
        return _tsne(x, seed), "tsne"
    on_status(f"t-SNE of {landmarks} k-means landmarks, {n} points interpolated")
    return _landmark_tsne(x, landmarks, seed), "tsne-landmarks"
