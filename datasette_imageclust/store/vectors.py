"""The sqlite-vec ``vec0`` table of image vectors.

Never reference it with a FOREIGN KEY (that corrupts vec0 tables, sqlite-vec #144);
``images.model_id`` says whether an image has a vector from the current model.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import numpy as np
import sqlite_utils

TABLE = "image_vectors"


def dimensions(db: "sqlite_utils.Database | Any") -> int | None:
    """Width of the stored vectors (None: no table yet); ``db`` may be a plain connection."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", [TABLE]).fetchone()
    if not row:
        return None
    m = re.search(r"float\[(\d+)\]", row[0])
    return int(m.group(1)) if m else None


def ensure_table(db: sqlite_utils.Database, dims: int) -> None:
    existing = dimensions(db)
    if existing is None:
        db.execute(
            f"CREATE VIRTUAL TABLE {TABLE} USING vec0("
            f"image_id INTEGER PRIMARY KEY, embedding float[{int(dims)}] distance_metric=cosine)"
        )
    elif existing != dims:
        raise ValueError(f"{TABLE} holds {existing}-dimensional vectors, not {dims}")


def drop_table(db: sqlite_utils.Database) -> None:
    db.execute(f"DROP TABLE IF EXISTS {TABLE}")


def put(db: sqlite_utils.Database, ids: Sequence[int], vecs: np.ndarray) -> None:
    """Insert or replace vectors (vec0 has no UPSERT: delete first)."""
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    db.conn.executemany(f"DELETE FROM {TABLE} WHERE image_id = ?", [(int(i),) for i in ids])
    db.conn.executemany(
        f"INSERT INTO {TABLE} (image_id, embedding) VALUES (?, ?)",
        [(int(i), v.tobytes()) for i, v in zip(ids, vecs)],
    )


def delete(db: sqlite_utils.Database, ids: Iterable[int]) -> None:
    db.conn.executemany(f"DELETE FROM {TABLE} WHERE image_id = ?", [(int(i),) for i in ids])


def read_all(db: sqlite_utils.Database) -> tuple[np.ndarray, np.ndarray]:
    """All (ids, vectors) ordered by id, as int64 and float32 arrays."""
    dims = dimensions(db)
    if dims is None:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    rows = db.execute(f"SELECT image_id, embedding FROM {TABLE} ORDER BY image_id").fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dims)
    return ids, vecs.copy()
