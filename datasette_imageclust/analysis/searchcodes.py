"""Int8 codes of the index's vectors, held in memory to rescore a deep candidate list.

Above the exact scan's size (``searchscan``), sign bits alone rank CLIP-like vectors too
coarsely: a query's true neighbours can sit tens of thousands deep in Hamming order
(recall@10 ~0.98 at 1M with 4,000 rescored from disk). So each vector is also kept as one
signed byte per dimension: the mean-centred vector divided by a per-dimension scale (the
largest magnitude in that dimension / 127). The nearest by Hamming distance are scored from
these codes, which rank almost exactly (error ~5e-4 in cosine; a true top-10 neighbour was
never below 15th), and only the best ``rescore(k)`` of those are read back as float32 and
ranked by their true cosine. How deep in Hamming order to score adapts to the query, as
``searchdepth`` does for the bit path: ``first(n, k)`` rows, then, if the codes' scores
against Hamming distance say that farther rows could still make the top k (loners and
near-ties), farther ones up to ``depth(n, k)``.

The codes cost ``D`` bytes per vector in every server process (512 MB per million 512-d
vectors), so they, like the float scan, are held only within ``memory_limit()`` (the
plugin setting ``search_memory_mb``); beyond it, search uses the bits alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..store.connection import Connection
from . import searchdepth

TABLE = "search_codes"
DEFAULT_MEMORY_MB = 640  # fits the codes of 1M 512-d vectors (512 MB) or the scan of 150k (300 MB)
# Scored from the codes: a fifth of the collection, at most MAX_DEPTH. On CLIP-like vectors
# the true top 10 lie within that Hamming depth for 99.5% (20k vectors), 99.9% (150k) and
# 99.5% (1M) of the queries' neighbours; the time grows with the depth (~10 ms at 50,000).
FRACTION = 0.2
MIN_DEPTH = 1000
MAX_DEPTH = 50_000
# Scored first, whatever the query: enough to fit the line of scores against distance. At
# 1M CLIP-like vectors (z = 4) the median query stops there and recall@10 is 0.9945, where
# always scoring 50,000 gives 0.995.
FIRST = 10_000
Z = 4.0
RESCORE = 50  # candidates re-read as float32 (at least 5 x k)
_CHUNK = 4096  # rows converted to float32 at a time (keeps the temporary ~8 MB)

_limit = DEFAULT_MEMORY_MB * 2**20


def set_memory_limit(megabytes: int) -> None:
    """The most memory (MB) this process holds per database in vector copies beyond the
    bits: the float scan (4·D bytes per vector) or the int8 codes (D bytes per vector)."""
    global _limit
    if megabytes < 0:
        raise ValueError("the search memory limit cannot be negative")
    _limit = int(megabytes) * 2**20


def memory_limit() -> int:
    """The limit in bytes (see ``set_memory_limit``)."""
    return _limit


def use_codes(n: int, dims: int) -> bool:
    """Whether ``n`` codes of ``dims`` dimensions fit the memory limit: the one home of that rule."""
    return n * dims <= _limit


def depth(n: int, k: int) -> int:
    """How many of ``n`` vectors, nearest by Hamming distance, are scored from the codes."""
    return min(n, max(MIN_DEPTH, 20 * k, min(MAX_DEPTH, int(FRACTION * n))))


def first(n: int, k: int) -> int:
    """How many, nearest by Hamming distance, are scored from the codes for every query."""
    return min(depth(n, k), max(MIN_DEPTH, 20 * k, min(FIRST, n // 10)))


def rescore(k: int) -> int:
    return max(RESCORE, 5 * k)


def fit_scale(centred_max: np.ndarray) -> np.ndarray:
    """Per-dimension scale from the largest |value| of each mean-centred dimension."""
    return (np.maximum(centred_max, 1e-12) / 127).astype(np.float32)


def encode(centred: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Int8 codes of mean-centred vectors."""
    return np.clip(np.rint(centred / scale), -127, 127).astype(np.int8)


def within(cum: np.ndarray, m: int) -> int:
    """The smallest Hamming distance with at least ``m`` rows at it or nearer, from the
    cumulative histogram ``cum`` of the distances (a histogram of the few hundred possible
    distances is quicker than argpartition of a million)."""
    return int(min(np.searchsorted(cum, m), len(cum) - 1))


@dataclass
class Codes:
    codes: np.ndarray  # (n, dims) int8, rows in the index's id order
    scale: np.ndarray  # (dims,) float32

    def estimate(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """<codes · scale, q> for ``rows``: the cosine to the unit query ``q`` up to one
        constant (the mean's), which ranking ignores."""
        qs = (q * self.scale).astype(np.float32)
        out = np.empty(len(rows), np.float32)
        for i in range(0, len(rows), _CHUNK):
            block = self.codes[rows[i:i + _CHUNK]].astype(np.float32)
            # einsum, not `@`: a threaded BLAS spin-waits on a busy machine (see search._scores).
            out[i:i + _CHUNK] = np.einsum("ij,j->i", block, qs)
        return out

    def top(self, ham: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int, excluded: set[int],
            exact: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> list[tuple[int, float]]:
        """The ``k`` nearest as [(id, cosine distance)]: the ``depth`` nearest by Hamming
        distance ``ham`` (one per row of ``ids``), scored from the codes, then the best
        ``rescore(k)`` of those ranked by ``exact`` (ids -> (ids found, exact cosine))."""
        n, extra = len(ids), len(excluded)
        cum = np.cumsum(np.bincount(ham))
        h1 = within(cum, first(n, k) + extra)
        rows = np.flatnonzero(ham <= h1)
        est = self.estimate(rows, q)
        h2 = within(cum, depth(n, k) + extra)
        if h2 > h1:  # farther rows whose distance could still reach the top k, within depth(n, k)
            lowest = searchdepth.reach(-ham[rows].astype(np.float32), est, k + extra, Z)
            h2 = min(h2, int(np.floor(-lowest))) if lowest is not None and np.isfinite(lowest) else h1
        if h2 > h1:
            more = np.flatnonzero((ham > h1) & (ham <= h2))
            rows, est = np.concatenate([rows, more]), np.concatenate([est, self.estimate(more, q)])
        cand = ids[rows]
        if excluded:
            est[np.isin(cand, list(excluded))] = -np.inf
        r = min(len(rows), rescore(k) + len(excluded))
        best = np.argpartition(-est, r - 1)[:r] if r < len(rows) else np.arange(len(rows))
        got, sims = exact(cand[best[np.isfinite(est[best])]])
        order = np.argsort(-sims, kind="stable")[:k]
        return [(int(got[i]), float(1.0 - sims[i])) for i in order]


def load(conn: Connection, meta_table: str, n: int, dims: int) -> Codes | None:
    """The index's codes (``n`` rows), or None for an index built before they existed."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [TABLE]).fetchone() is None:
        return None
    row = conn.execute(f"SELECT code_scale FROM {meta_table} WHERE id = 1").fetchone()
    if row is None or row[0] is None:
        return None
    codes = np.empty((n, dims), np.int8)
    done = 0
    # Chunk by chunk into one array: joining the BLOBs first would hold two copies at the
    # peak, and the process's resident memory stays at its peak.
    for (blob,) in conn.execute(f"SELECT codes FROM {TABLE} ORDER BY chunk"):
        m = len(blob) // dims
        if done + m > n:
            return None
        codes[done:done + m] = np.frombuffer(blob, np.int8).reshape(m, dims)
        done += m
    return Codes(codes, np.frombuffer(row[0], np.float32).copy()) if done == n else None
