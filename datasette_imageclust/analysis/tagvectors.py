"""Tag vectors for clustering on tags: each image's tags as a TF-IDF-weighted vector.

An image has a tag or not (TF = 1), weighted by the tag's inverse document frequency over
the images (smoothed, as scikit-learn's ``TfidfTransformer``), so a tag every image has
counts little and a rare one much; L2-normalised. The matrix is sparse (images x tags, a
handful of tags per image); with more distinct tags than ``MAX_DIMS`` it is reduced by
truncated SVD (latent semantic analysis) to ``MAX_DIMS`` dense dimensions, so 100,000
images stay within a few hundred MB whatever the vocabulary.
"""
from __future__ import annotations

import numpy as np

MAX_DIMS = 256


def tag_vectors(tags: dict[int, list[tuple[str, float | None]]], *, dims: int = MAX_DIMS,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """(image ids ordered, L2-normalised float32 vectors, info) from image id -> tags."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    ids = np.array(sorted(tags), np.int64)
    column: dict[str, int] = {}
    rows, cols = [], []
    for r, iid in enumerate(ids.tolist()):
        for tag in {t for t, _ in tags[iid]}:
            rows.append(r)
            cols.append(column.setdefault(tag, len(column)))
    counts = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(ids), len(column)))
    x = TfidfTransformer(norm="l2", smooth_idf=True).fit_transform(counts).astype(np.float32)
    info = {"tags": len(column), "images": int(len(ids))}
    if len(column) <= dims or len(ids) <= 2:
        dense = x.toarray()
        info["dimensions"] = dense.shape[1]
    else:
        from sklearn.decomposition import TruncatedSVD

        k = min(dims, len(column) - 1, len(ids) - 1)
        svd = TruncatedSVD(k, algorithm="randomized", random_state=seed)
        dense = svd.fit_transform(x).astype(np.float32)
        info["dimensions"] = k
        info["svd_explained_variance"] = round(float(svd.explained_variance_ratio_.sum()), 4)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return ids, (dense / np.maximum(norms, 1e-12)).astype(np.float32), info
