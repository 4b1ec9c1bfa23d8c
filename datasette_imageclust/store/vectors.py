"""The sqlite-vec ``vec0`` tables: the image vectors (``image_vectors``), and one table of
description vectors per text model (``description_vectors_<text_models.id>``).

Never reference them with a FOREIGN KEY (that corrupts vec0 tables, sqlite-vec #144);
``images.model_id`` says whether an image has a vector from the current model, and a
description vector is only read for a description that still exists.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import sqlite_utils

TABLE = "image_vectors"


@dataclass(frozen=True)
class Vec0:
    """One vec0 table: its name and its key column."""

    name: str
    key: str


IMAGES = Vec0(TABLE, "image_id")


def descriptions(text_model_id: int) -> Vec0:
    """The vec0 table of the description vectors made by text model ``text_model_id``."""
    return Vec0(f"description_vectors_{int(text_model_id)}", "description_id")


def dimensions(db: "sqlite_utils.Database | Any", table: Vec0 = IMAGES) -> int | None:
    """Width of the stored vectors (None: no table yet); ``db`` may be a plain connection."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", [table.name]).fetchone()
    if not row:
        return None
    m = re.search(r"float\[(\d+)\]", row[0])
    return int(m.group(1)) if m else None


def ensure_table(db: sqlite_utils.Database, dims: int, table: Vec0 = IMAGES) -> None:
    existing = dimensions(db, table)
    if existing is None:
        db.execute(
            f"CREATE VIRTUAL TABLE {table.name} USING vec0("
            f"{table.key} INTEGER PRIMARY KEY, embedding float[{int(dims)}] distance_metric=cosine)"
        )
    elif existing != dims:
        raise ValueError(f"{table.name} holds {existing}-dimensional vectors, not {dims}")


def drop_table(db: sqlite_utils.Database, table: Vec0 = IMAGES) -> None:
    db.execute(f"DROP TABLE IF EXISTS {table.name}")


def put(db: sqlite_utils.Database, ids: Sequence[int], vecs: np.ndarray, table: Vec0 = IMAGES) -> None:
    """Insert or replace vectors (vec0 has no UPSERT: delete first)."""
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    db.conn.executemany(f"DELETE FROM {table.name} WHERE {table.key} = ?", [(int(i),) for i in ids])
    db.conn.executemany(
        f"INSERT INTO {table.name} ({table.key}, embedding) VALUES (?, ?)",
        [(int(i), v.tobytes()) for i, v in zip(ids, vecs)],
    )


def delete(db: sqlite_utils.Database, ids: Iterable[int], table: Vec0 = IMAGES) -> None:
    db.conn.executemany(f"DELETE FROM {table.name} WHERE {table.key} = ?", [(int(i),) for i in ids])


def keys(db: "sqlite_utils.Database | Any", table: Vec0 = IMAGES) -> set[int]:
    """The keys that have a vector (empty: no table yet)."""
    if dimensions(db, table) is None:
        return set()
    return {r[0] for r in db.execute(f"SELECT {table.key} FROM {table.name}")}


def read_all(db: sqlite_utils.Database, table: Vec0 = IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """All (ids, vectors) ordered by id, as int64 and float32 arrays."""
    dims = dimensions(db, table)
    if dims is None:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    rows = db.execute(f"SELECT {table.key}, embedding FROM {table.name} ORDER BY {table.key}").fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dims)
    return ids, vecs.copy()
