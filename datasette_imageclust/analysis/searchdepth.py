"""How deep the bit index's exact rescoring goes for one query (adaptive depth).

The asymmetric bit estimate ranks candidates well but not exactly; when the k-th best
exact similarity is close to what the next candidates are estimated to reach, their true
order is a toss-up and some of them must be rescored too. So, per query: rescore the
first ``c`` candidates (by estimate), fit exact similarity against the estimate on them
(a line, with the spread of its residuals), and rescore further candidates, in estimate
order, while the line plus ``Z`` residual spreads could still beat the k-th best. Easy
queries (a clear gap) stop at ``c``; near-ties (CLIP-like vectors, loners) go deeper, up
to ``MAX_FACTOR`` x ``c``.
"""
from __future__ import annotations

import numpy as np

Z = 6.0  # 3 never went deeper on CLIP-like vectors (recall 0.982 at 20k); 6 gives 0.997
MAX_FACTOR = 4


def reach(est_done: np.ndarray, sims_done: np.ndarray, k: int, z: float = Z) -> float | None:
    """The lowest estimate that could still make the top ``k``, given the estimates and
    exact similarities of the candidates scored so far (None: no basis to go deeper)."""
    if len(sims_done) < max(k, 3):
        return None
    beta, alpha = np.polyfit(est_done.astype(np.float64), sims_done.astype(np.float64), 1)
    if not beta > 0:  # the estimate says nothing here: rescoring more would be blind
        return None
    sigma = float(np.std(sims_done - (alpha + beta * est_done)))
    kth = float(np.partition(sims_done, len(sims_done) - k)[len(sims_done) - k])
    return (kth - alpha - z * sigma) / beta


def extra(est_done: np.ndarray, sims_done: np.ndarray, est_rest: np.ndarray, k: int, z: float = Z) -> int:
    """How many of ``est_rest`` (estimates of the remaining candidates, sorted descending)
    to rescore, given the estimates and exact similarities of the ones rescored already."""
    if len(est_rest) == 0:
        return 0
    lowest = reach(est_done, sims_done, k, z)
    return 0 if lowest is None else int(np.count_nonzero(est_rest >= lowest))
