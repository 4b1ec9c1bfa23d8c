"""``imageclust info``: what a database holds."""
from __future__ import annotations

import os

from . import connection as dbmod
from . import paths, vectors
from .schema import current_model, versions


def database_info(path: str) -> dict:
    """Model, row counts and sizes of an imageclust database (opened read-only)."""
    db = dbmod.connect(path, readonly=True)
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
        m = current_model(db)
        model = {k: m[k] for k in ("id", "name", "dimensions", "sha256", "created")} if m else None
        thumb_bytes = count("SELECT coalesce(sum(length(data)), 0) FROM thumbnails") if "thumbnails" in tables else 0
        return {
            "path": paths.text(os.path.abspath(path)),
            "file_bytes": os.path.getsize(path),
            "model": model,
            "counts": counts,
            "thumbnail_bytes": thumb_bytes,
            "schema": versions(db),
        }
    finally:
        db.conn.close()
