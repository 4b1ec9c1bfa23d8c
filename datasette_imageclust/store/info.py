"""``imageclust info``: what a database holds."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from . import paths, vectors
from .collection import ImageCollection
from .connection import close, connect
from .schema import versions


@dataclass
class DatabaseInfo:
    path: str  # absolute, as text
    file_bytes: int
    model: dict | None  # id, name, dimensions, sha256, created of the current model
    counts: dict[str, int]  # images, files, thumbnails, errors, vectors, duplicate_files
    thumbnail_bytes: int
    schema: dict[str, int]  # component -> version

    def as_dict(self) -> dict:
        return asdict(self)


def database_info(path: str) -> DatabaseInfo:
    """Model, row counts and sizes of an imageclust database (opened read-only)."""
    db = connect(path, readonly=True)
    try:
        tables = set(db.table_names())

        def count(sql: str) -> int:
            return db.execute(sql).fetchone()[0]

        counts = {}
        for t in ("images", "files", "thumbnails", "errors"):
            counts[t] = count(f"SELECT count(*) FROM [{t}]") if t in tables else 0
        counts["vectors"] = count(f"SELECT count(*) FROM {vectors.TABLE}") if vectors.TABLE in tables else 0
        counts["duplicate_files"] = counts["files"] - (
            count("SELECT count(DISTINCT image_id) FROM files") if "files" in tables else 0)
        m = ImageCollection(db).model()
        model = {k: m[k] for k in ("id", "name", "dimensions", "sha256", "created")} if m else None
        thumb_bytes = count("SELECT coalesce(sum(length(data)), 0) FROM thumbnails") if "thumbnails" in tables else 0
        return DatabaseInfo(paths.text(os.path.abspath(path)), os.path.getsize(path), model, counts,
                            thumb_bytes, versions(db))
    finally:
        close(db)
