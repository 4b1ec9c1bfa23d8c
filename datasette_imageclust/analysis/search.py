"""Fast similarity search: a binary-quantised prefilter, then exact cosine rescoring.

``build_index`` (run by ``imageclust index`` and at the end of ``imageclust load``)
writes, next to the float vec0 table ``image_vectors``:

* ``search_index``: one row with the mean vector and what was indexed (for staleness);
* ``image_bits``: a sqlite-vec ``vec0`` table of ``bit[D]`` vectors, the signs of the
  MEAN-CENTRED vectors (the raw vectors of some models are all >= 0, so plain sign bits
  would all be 1 and carry no information);
* ``search_vectors``: float32 copies of the vectors in a plain table, so that the
  candidates can be rescored with fast lookups by id;
* ``search_bits``: the same bits in a few large BLOBs, quick for a process to load.

``knn`` ranks in three stages: (1) Hamming distance over all the bits, held in memory
once per process, column-major (a NumPy popcount over 100k x 64 bytes takes ~0.5 ms,
whereas sqlite-vec's own bit KNN grows with ``k`` and costs ~45 ms at the k=400 that
recall needs); (2) an asymmetric estimate <query - mean, +-1 bits> of the best
PREFILTER x C of those; (3) exact cosine over the best C, read from ``search_vectors``,
and over more of them when the query's k-th best is a near-tie (``searchdepth``).
Collections small enough (``searchscan.use_scan``) skip all this: their float vectors are
held in memory and scanned exactly, which is faster there and never misses. Larger ones
within the memory limit replace stages 2-3 by int8 codes held in memory (``searchcodes``,
from ``search_codes``): scored for a far deeper list, then exact cosine for the best few.
Without an index, or with a stale one (vector count, largest id or model changed), it
falls back to sqlite-vec's exact scan.
The plugin writes only curation edits, never the index, so only the CLI builds it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import sqlite_utils

from ..store import vectors
from . import searchcodes, searchdepth, searchscan
from ..store.cache import TokenCache
from ..store.collection import (
    ImageCollection,
    change_token,
    database_file,
    raw_connection,
)
from ..store.connection import Connection
from ..store.schema import migrate, now

BITS_TABLE = "image_bits"
META_TABLE = "search_index"
COPY_TABLE = "search_vectors"
PACKED_TABLE = "search_bits"
CODES_TABLE = searchcodes.TABLE
PACKED_CHUNK = 65536  # images per search_bits row


class SearchError(ValueError):
    """A query that cannot be answered (wrong dimensions, no vectors...)."""


def _table_exists(conn: Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [name]).fetchone() is not None


def _vector_fingerprint(conn: Connection) -> tuple[int, int]:
    """(count, largest id) of image_vectors, read from its plain rowids shadow table
    (cheap: a count over a small b-tree, not a scan of the vectors)."""
    shadow = f"{vectors.TABLE}_rowids"
    if _table_exists(conn, shadow):
        row = conn.execute(f"SELECT count(*), coalesce(max(rowid), 0) FROM {shadow}").fetchone()
    elif _table_exists(conn, vectors.TABLE):
        row = conn.execute(f"SELECT count(*), coalesce(max(image_id), 0) FROM {vectors.TABLE}").fetchone()
    else:
        row = (0, 0)
    return int(row[0]), int(row[1])


@dataclass
class IndexSummary:
    """What ``build_index`` did."""

    vectors: int
    dimensions: int | None
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class IndexStatus:
    present: bool
    fresh: bool
    reason: str  # why it is absent or stale; "" when fresh
    n_vectors: int  # rows of image_vectors now
    indexed: int  # rows indexed (0 when absent)
    dimensions: int | None
    built: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


_STATUS = TokenCache(64)


def status(db: Connection) -> IndexStatus:
    """Whether the index exists and matches the vectors it was built from.

    Cached until the database changes (counting 100k vector rows on every query would
    cost milliseconds)."""
    conn = raw_connection(db)
    return _STATUS.get(change_token(conn), "status", lambda: _status(conn))


def _status(conn: Connection) -> IndexStatus:
    n, max_id = _vector_fingerprint(conn)
    dims = vectors.dimensions(conn)
    if not _table_exists(conn, META_TABLE) or not _table_exists(conn, BITS_TABLE):
        return IndexStatus(False, False, "no similarity index (run: imageclust index DATABASE)", n, 0, dims)
    row = conn.execute(f"SELECT n_vectors, dimensions, model_id, built, max_id FROM {META_TABLE} "
                       f"JOIN (SELECT coalesce(max(image_id), 0) AS max_id FROM {COPY_TABLE}) "
                       f"WHERE id = 1").fetchone()
    if row is None:
        return IndexStatus(False, False, "no similarity index (run: imageclust index DATABASE)", n, 0, dims)
    indexed, idims, model_id, built, imax = row
    reason = ""
    if idims != dims:
        reason = f"index has {idims}-d vectors, the database {dims}-d"
    elif model_id != ImageCollection(conn).model_id():
        reason = "the database's model changed since the index was built"
    elif indexed != n or imax != max_id:
        reason = f"index holds {indexed} vectors, the database {n}"
    if reason:
        reason += " (run: imageclust index DATABASE)"
    return IndexStatus(True, not reason, reason, n, int(indexed), dims, built)


def quantise(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Sign bits of mean-centred vectors, packed 8 per byte, least significant bit first:
    the same bits as sqlite-vec's ``vec_quantize_binary(vec_sub(v, mean))``, so SQL can
    query ``image_bits`` directly."""
    return np.packbits(np.atleast_2d(x) - mean > 0, axis=1, bitorder="little")


def build_index(db: sqlite_utils.Database, *, batch: int = 5000) -> IndexSummary:
    """(Re)build the similarity index from ``image_vectors``.

    ``db`` is a writable sqlite-utils Database. Idempotent: rebuilding replaces everything.
    """
    t0 = time.perf_counter()
    migrate(db, "search")
    conn = raw_connection(db)
    ids, x = vectors.read_all(db)
    dims = vectors.dimensions(db)
    with conn:
        conn.execute(f"DROP TABLE IF EXISTS {BITS_TABLE}")
        conn.execute(f"DELETE FROM {COPY_TABLE}")
        conn.execute(f"DELETE FROM {META_TABLE}")
        conn.execute(f"DELETE FROM {PACKED_TABLE}")
        conn.execute(f"DELETE FROM {CODES_TABLE}")
        if dims is None:
            return IndexSummary(0, None, round(time.perf_counter() - t0, 3))
        mean = x.mean(axis=0).astype(np.float32) if len(ids) else np.zeros(dims, np.float32)
        conn.execute(
            f"CREATE VIRTUAL TABLE {BITS_TABLE} USING vec0(image_id INTEGER PRIMARY KEY, "
            f"bits bit[{((dims + 7) // 8) * 8}])"
        )
        for i in range(0, len(ids), batch):
            chunk_ids, chunk = ids[i:i + batch], x[i:i + batch]
            bits = quantise(chunk, mean)
            conn.executemany(f"INSERT INTO {BITS_TABLE} (image_id, bits) VALUES (?, vec_bit(?))",
                             [(int(j), b.tobytes()) for j, b in zip(chunk_ids, bits)])
            conn.executemany(f"INSERT INTO {COPY_TABLE} (image_id, embedding) VALUES (?, ?)",
                             [(int(j), v.tobytes()) for j, v in zip(chunk_ids, chunk)])
        # Chunk by chunk: x - mean whole would be a second copy of all the vectors.
        top = np.zeros(dims, np.float32)
        for i in range(0, len(ids), PACKED_CHUNK):
            top = np.maximum(top, np.abs(x[i:i + PACKED_CHUNK] - mean).max(axis=0))
        scale = searchcodes.fit_scale(top)
        for n, i in enumerate(range(0, len(ids), PACKED_CHUNK)):
            chunk = x[i:i + PACKED_CHUNK]
            conn.execute(f"INSERT INTO {PACKED_TABLE} (chunk, ids, bits) VALUES (?, ?, ?)",
                         [n, ids[i:i + PACKED_CHUNK].astype("<i8").tobytes(), quantise(chunk, mean).tobytes()])
            conn.execute(f"INSERT INTO {CODES_TABLE} (chunk, codes) VALUES (?, ?)",
                         [n, searchcodes.encode(chunk - mean, scale).tobytes()])
        seconds = time.perf_counter() - t0
        conn.execute(
            f"INSERT INTO {META_TABLE} (id, model_id, dimensions, n_vectors, mean, built, seconds, code_scale) "
            f"VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
            [ImageCollection(conn).model_id(), dims, len(ids), mean.tobytes(), now(), seconds, scale.tobytes()],
        )
    return IndexSummary(int(len(ids)), dims, round(seconds, 3))


# --- queries ------------------------------------------------------------------------


@dataclass
class _Bits:
    ids: np.ndarray  # int64
    # (words, n) uint64, column-major: one contiguous XOR + popcount pass per 64-bit word
    # is ~15x faster than popcounting (n, words) rows and summing along axis 1.
    words: np.ndarray
    mean: np.ndarray
    # The float vectors, for the exact in-memory scan (only below searchscan's size limit).
    scan: searchscan.FloatScan | None = None
    # Or, above that limit and within the memory limit, their int8 codes (same row order).
    codes: searchcodes.Codes | None = None

    def hamming(self, qbytes: np.ndarray) -> np.ndarray:
        qw = _pad64(qbytes.reshape(1, -1))[0].view(np.uint64)
        out = np.zeros(self.words.shape[1], np.uint16)
        buf = np.empty(self.words.shape[1], np.uint64)
        cnt = np.empty(self.words.shape[1], np.uint8)
        for j in range(self.words.shape[0]):
            np.bitwise_xor(self.words[j], qw[j], out=buf)
            np.bitwise_count(buf, out=cnt)
            out += cnt
        return out


    def asymmetric(self, rows: np.ndarray, qc: np.ndarray) -> np.ndarray:
        """<qc, +-1 sign bits> for ``rows`` (indices into ids), by table lookup: for each
        byte position, the 256 possible partial sums of qc are computed once per query,
        so a row costs one lookup per byte instead of eight multiply-adds per byte."""
        nbytes = self.words.shape[0] * 8
        v = np.zeros(nbytes * 8, np.float32)
        v[:len(qc)] = qc
        table = np.einsum("bk,jk->jb", _BYTE_SIGNS, v.reshape(nbytes, 8))  # (bytes, 256)
        b = np.ascontiguousarray(self.words[:, rows].T).view(np.uint8)  # (rows, bytes), packed order
        idx = b.astype(np.intp) + (256 * np.arange(nbytes, dtype=np.intp))[None, :]
        return np.take(table.ravel(), idx).sum(axis=1)


# +-1 for each of the 8 bits (least significant first) of every byte value.
_BYTE_SIGNS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(
    np.float32) * 2 - 1
PREFILTER = 12


def _pad64(packed: np.ndarray) -> np.ndarray:
    """Pad packed bit rows with zero bytes to a whole number of 64-bit words."""
    extra = (-packed.shape[1]) % 8
    return np.pad(packed, ((0, 0), (0, extra))) if extra else packed


_CACHE: dict[tuple, _Bits] = {}
_LOCK = threading.Lock()


def _load_bits(conn: Connection, built: str, n: int) -> _Bits:
    """The packed bits of the whole index, read once per process and index build."""
    key = (database_file(conn) or f":memory:{id(conn)}", built, n, searchcodes.memory_limit())
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        mean = np.frombuffer(conn.execute(f"SELECT mean FROM {META_TABLE} WHERE id = 1").fetchone()[0],
                             dtype=np.float32)
        nbytes = (len(mean) + 7) // 8
        packed = (conn.execute(f"SELECT ids, bits FROM {PACKED_TABLE} ORDER BY chunk").fetchall()
                  if _table_exists(conn, PACKED_TABLE) else [])
        if packed:
            ids = np.frombuffer(b"".join(r[0] for r in packed), dtype="<i8").astype(np.int64)
            raw = np.frombuffer(b"".join(r[1] for r in packed), dtype=np.uint8).reshape(len(ids), nbytes)
        else:  # an index built before search_bits existed: read the vec0 table (slower)
            rows = conn.execute(f"SELECT image_id, bits FROM {BITS_TABLE} ORDER BY image_id").fetchall()
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            raw = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(len(rows), nbytes)
        words = np.ascontiguousarray(_pad64(raw).view(np.uint64).T)
        scan = codes = None
        if searchscan.use_scan(len(ids), len(mean)):
            scan = searchscan.load(conn, COPY_TABLE, len(mean))
        elif searchcodes.use_codes(len(ids), len(mean)):
            codes = searchcodes.load(conn, META_TABLE, len(ids), len(mean))
        entry = _Bits(ids, words, mean, scan, codes)
        # One entry per database file: drop older builds of the same file.
        for k in [k for k in _CACHE if k[0] == key[0]]:
            del _CACHE[k]
        _CACHE[key] = entry
        return entry


def warm(path: str) -> bool:
    """Load a database's bits into this process's cache ahead of the first query (the
    plugin does this in a background thread at startup). True if there was an index."""
    from ..store import connection as dbmod

    conn = dbmod.connect(path, readonly=True).conn
    try:
        st = status(conn)
        if not st.fresh:
            return False
        _load_bits(conn, st.built or "", st.indexed)
        return True
    finally:
        conn.close()


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
        _STATUS.clear()


def _as_query(vector: Sequence[float] | np.ndarray, dims: int | None) -> np.ndarray:
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if dims is not None and q.shape[0] != dims:
        raise SearchError(f"query vector has {q.shape[0]} dimensions, the database {dims}")
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm == 0:
        raise SearchError("query vector is zero or not finite")
    return q / norm


CANDIDATES = 1000


def default_candidates(k: int, n: int) -> int:
    """How many candidates to rescore exactly (after the two bit stages): recall@10 ~0.98
    on clustered 512-d data at 100k (bench/search.py); fetching them is the main cost."""
    return min(n, max(CANDIDATES, 50 * k))


def knn(db: Connection, vector: Sequence[float] | np.ndarray, k: int = 10, *,
        exclude: Iterable[int] = (), candidates: int | None = None,
        exact: bool = False) -> list[tuple[int, float]]:
    """The ``k`` nearest images to ``vector`` as ``[(image_id, cosine_distance)]``, nearest first.

    With a fresh index, small collections (``searchscan.use_scan``) are scanned exactly in
    memory, larger ones (or any, when ``candidates`` fixes the rescoring depth) go through
    the bit index;
    without a fresh index (or with ``exact=True``) sqlite-vec's exact scan. ``exclude`` ids (e.g. the query image) are never returned.
    Works on a sqlite-utils Database or a raw connection with sqlite-vec loaded.
    """
    conn = raw_connection(db)
    if k < 1:
        raise SearchError("k must be at least 1")
    excluded = {int(i) for i in exclude}
    st = status(db)
    if st.dimensions is None or st.n_vectors == 0:
        return []
    q = _as_query(vector, st.dimensions)
    if exact or not st.fresh:
        return exact_knn(conn, q, k, exclude=excluded)
    bits = _load_bits(conn, st.built or "", st.indexed)
    if bits.scan is not None and candidates is None:
        return bits.scan.top(q, k, excluded)
    if bits.codes is not None and candidates is None:
        return bits.codes.top(bits.hamming(quantise(q, bits.mean)), bits.ids, q, k, excluded,
                              lambda ids: _scores(conn, q, ids))
    n = len(bits.ids)
    c = min(n, (candidates or default_candidates(k, n)) + len(excluded))
    est = None
    if c < n:
        qc = q - bits.mean
        ham = bits.hamming(quantise(q, bits.mean))
        # Stage 1: symmetric Hamming distance, cheap but coarse: keep PREFILTER x c.
        c1 = min(n, PREFILTER * c)
        cand = np.argpartition(ham, c1 - 1)[:c1] if c1 < n else np.arange(n)
        if c1 > c:
            # Stage 2: asymmetric estimate <q - mean, sign bits>, which keeps the query's
            # magnitudes and so ranks far better than Hamming, for c1 x dims multiply-adds.
            # The best searchdepth.MAX_FACTOR x c are kept, in estimate order, for stage 3.
            est = bits.asymmetric(cand, qc.astype(np.float32))
            deep = min(c1, searchdepth.MAX_FACTOR * c)
            top = np.argpartition(-est, deep - 1)[:deep] if deep < c1 else np.arange(c1)
            top = top[np.argsort(-est[top], kind="stable")]
            cand, est = cand[top], est[top]
    else:
        cand = np.arange(n)
    cand_ids = bits.ids[cand]
    if excluded:
        keep = ~np.isin(cand_ids, list(excluded))
        cand_ids, est = cand_ids[keep], (est[keep] if est is not None else None)
    c = min(c, len(cand_ids))
    # Stage 3: exact cosine for the best c, then (unless ``candidates`` fixed the depth) as
    # many more as searchdepth says could still be in the top k.
    got_ids, sims = _scores(conn, q, cand_ids[:c])
    if est is not None and candidates is None and len(got_ids):  # a given depth is kept as given
        pos = {int(i): j for j, i in enumerate(cand_ids[:c])}
        more = searchdepth.extra(est[[pos[int(i)] for i in got_ids]], sims, est[c:], k)
        if more:
            ids2, sims2 = _scores(conn, q, cand_ids[c:c + more])
            got_ids, sims = np.concatenate([got_ids, ids2]), np.concatenate([sims, sims2])
    top = np.argsort(-sims, kind="stable")[:k]
    return [(int(got_ids[i]), float(1.0 - sims[i])) for i in top]


def _scores(conn: Connection, q: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids found, their exact cosine similarity to q), read from the float copies."""
    out_ids: list[int] = []
    blobs: list[bytes] = []
    # SQLite caps bound parameters (32766 by default); candidates are far fewer, but chunk anyway.
    for i in range(0, len(ids), 30000):
        chunk = [int(j) for j in ids[i:i + 30000]]
        rows = conn.execute(
            f"SELECT image_id, embedding FROM {COPY_TABLE} WHERE image_id IN (SELECT value FROM json_each(?))",
            [_json_ints(chunk)],
        ).fetchall()
        out_ids.extend(r[0] for r in rows)
        blobs.extend(r[1] for r in rows)
    if not out_ids:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    m = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(out_ids), -1)
    # einsum, not `m @ q`: a small matrix-vector product through a threaded BLAS can
    # cost 15 ms on a busy machine (threads spin-waiting); einsum's loop takes ~0.05 ms.
    return np.asarray(out_ids, np.int64), np.einsum("ij,j->i", m, q)


def _json_ints(ids: list[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


def exact_knn(db: Connection, vector: np.ndarray, k: int, *, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
    """sqlite-vec's exact cosine scan over ``image_vectors``."""
    conn = raw_connection(db)
    excluded = {int(i) for i in exclude}
    q = np.ascontiguousarray(vector, dtype=np.float32)
    rows = conn.execute(
        f"SELECT image_id, distance FROM {vectors.TABLE} WHERE embedding MATCH ? AND k = ? ORDER BY distance",
        [q.tobytes(), int(k) + len(excluded)],
    ).fetchall()
    return [(int(i), float(d)) for i, d in rows if int(i) not in excluded][:k]


def vector_of(db: Connection, image_id: int) -> np.ndarray | None:
    """The stored vector of an image (None if it has none)."""
    conn = raw_connection(db)
    # The vec0 table is the truth (the copy may be stale); a point read there is ~0.3 ms.
    if not _table_exists(conn, vectors.TABLE):
        return None
    row = conn.execute(f"SELECT embedding FROM {vectors.TABLE} WHERE image_id = ?", [int(image_id)]).fetchone()
    return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()


def similar(db: Connection, image_id: int, k: int = 10, **kw: Any) -> list[tuple[int, float]]:
    """The ``k`` images most like image ``image_id`` (itself excluded); [] if it has no vector."""
    v = vector_of(db, image_id)
    if v is None:
        return []
    return knn(db, v, k, exclude=[image_id], **kw)
