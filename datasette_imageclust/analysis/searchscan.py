"""Exact similarity search over the float vectors held in memory, for collections small
enough that scanning them all costs no more than the two-stage bit index (and never misses).

At 100k CLIP-like 512-d vectors the bit path's recall@10 is ~0.97 (its sign bits rank
near-ties badly), while the scan (a float32 matrix-vector product by NumPy's einsum) costs
about what the bit path costs: bench/search.py --vectors cliplike times both in turn, query
by query (README, "Similarity search"). The matrix costs 4·D bytes per vector in each server
process (~210 MB per 100k 512-d vectors) and the scan grows linearly, so it stops at
``SCAN_FLOATS`` floats (150,000 512-d vectors, ~300 MB); beyond that the bit index with
the int8 codes (``searchcodes``) is lighter, and the scan's time keeps growing with the
collection. Like the codes, it is held only within the memory limit (``search_memory_mb``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..store.connection import Connection
from .searchcodes import memory_limit

SCAN_FLOATS = 150_000 * 512


def use_scan(n: int, dims: int) -> bool:
    """Whether ``n`` vectors of ``dims`` dimensions are searched by the exact in-memory
    scan rather than the bit index: the one home of that rule."""
    return n * dims <= SCAN_FLOATS and 4 * n * dims <= memory_limit()


@dataclass
class FloatScan:
    ids: np.ndarray  # int64, ascending
    floats: np.ndarray  # (n, dims) float32, unit rows

    def top(self, q: np.ndarray, k: int, excluded: set[int]) -> list[tuple[int, float]]:
        """The ``k`` rows most similar to the unit query ``q`` as [(id, cosine distance)]."""
        # einsum, not `@`: a threaded BLAS spin-waits on a busy machine (see search._scores).
        sims = np.einsum("ij,j->i", self.floats, q)
        if excluded:
            sims[np.isin(self.ids, list(excluded))] = -np.inf
        m = min(k, len(sims))
        top = np.argpartition(-sims, m - 1)[:m] if m < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(int(self.ids[i]), float(1.0 - sims[i])) for i in top if np.isfinite(sims[i])]


def load(conn: Connection, table: str, dims: int) -> FloatScan:
    """All float copies of an index's vectors (``table`` holds image_id, float32 BLOB)."""
    n = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    ids = np.empty(n, np.int64)
    # Filled row by row: fetching all rows and joining them would hold three copies at the
    # peak, and the process's resident memory stays at its peak.
    floats = np.empty((n, dims), np.float32)
    i = -1
    for i, (image_id, blob) in enumerate(conn.execute(f"SELECT image_id, embedding FROM {table} ORDER BY image_id")):
        ids[i] = image_id
        floats[i] = np.frombuffer(blob, dtype=np.float32)
    return FloatScan(ids[:i + 1], floats[:i + 1])
