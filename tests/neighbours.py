"""How well a 2-D map keeps categories together, shared by tests/test_layout.py and
bench/map.py: the share of each point's k nearest neighbours with its label."""
from __future__ import annotations

import numpy as np


def knn_agreement(xy: np.ndarray, label: np.ndarray, k: int = 5) -> float:
    """Mean share of each point's ``k`` nearest neighbours (itself excluded) with its label."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(xy)
    idx = nn.kneighbors(xy, return_distance=False)[:, 1:]
    return float((label[idx] == label[:, None]).mean())


def chance(label: np.ndarray) -> float:
    """The agreement a random arrangement would give."""
    return float(sum((label == v).mean() ** 2 for v in set(label.tolist())))
