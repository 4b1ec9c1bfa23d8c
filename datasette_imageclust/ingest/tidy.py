"""After the scan of a ``load``: images the scan did not reach, files gone from disk,
errors that are no longer news, images no file points at."""
from __future__ import annotations

import io
import os
from typing import Callable

import numpy as np
import sqlite_utils
from PIL import Image

from ..models import Preprocessor
from ..store import paths, vectors


def embed_leftovers(db: sqlite_utils.Database, model_id: int, preprocessor: Preprocessor,
                    embed: Callable[[np.ndarray], np.ndarray], batch_size: int,
                    on_progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Images still without a vector from ``model_id`` whose files were not read this run
    (gone, or unchanged under a new model): embed them from their stored thumbnail, one
    transaction per batch (``on_progress`` after each). Returns how many."""
    rows = db.execute(
        "SELECT i.id, t.data FROM images i JOIN thumbnails t ON t.image_id = i.id "
        "WHERE i.model_id IS NOT ? ORDER BY i.id", [model_id]
    ).fetchall()
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        crops = []
        for _, data in chunk:
            im = Image.open(io.BytesIO(data)).convert("RGB")
            crops.append(preprocessor.to_uint8(im))
        vecs = embed(np.stack(crops))
        with db.conn:
            ids = [r[0] for r in chunk]
            vectors.put(db, ids, vecs)
            db.conn.executemany("UPDATE images SET model_id = ? WHERE id = ?", [(model_id, i) for i in ids])
        on_progress(i + len(chunk), len(rows))
    return len(rows)


def under_roots(path: str, roots: list[str], recursive: bool) -> bool:
    """Whether a scan of ``roots`` (absolute) would have looked at ``path``."""
    for r in roots:
        if path == r or (path.startswith(r.rstrip(os.sep) + os.sep)
                         and (recursive or os.path.dirname(path) == r)):
            return True
    return False


def forget_gone(db: sqlite_utils.Database, roots: list[str], seen: set[str], known: list[str], *,
                recursive: bool, prune: bool, on_status: Callable[[str], None]) -> tuple[int, int]:
    """Files in ``known`` (the database's, as OS paths) under ``roots`` but not ``seen`` by
    the scan are gone: report them, delete them if ``prune``. Errors about paths no longer
    there go, and so do images no file points at. Returns (gone, pruned)."""
    gone = [p for p in known if p not in seen and under_roots(p, roots, recursive)]
    for p in gone[:10]:
        on_status(f"gone from disk: {paths.display(p)}")
    if len(gone) > 10:
        on_status(f"... and {len(gone) - 10} more gone from disk")
    pruned = 0
    with db.conn:
        if gone and prune:
            db.conn.executemany(f"DELETE FROM files WHERE {paths.KEY_SQL} = ?", [(paths.key(p),) for p in gone])
            pruned = len(gone)
        # an error about a file that no longer exists is no longer news
        errors = [paths.os_path(*r) for r in db.execute("SELECT path, path_bytes FROM errors")]
        stale = [p for p in errors if p not in seen and under_roots(p, roots, recursive)]
        db.conn.executemany(f"DELETE FROM errors WHERE {paths.KEY_SQL} = ?", [(paths.key(p),) for p in stale])
        delete_orphans(db)
    return len(gone), pruned


def delete_orphans(db: sqlite_utils.Database) -> None:
    """Images no file points at any more (pruned, or a file whose content changed)."""
    orphans = [r[0] for r in db.execute("SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM files)")]
    if not orphans:
        return
    vectors.delete(db, orphans)
    db.conn.executemany("DELETE FROM thumbnails WHERE image_id = ?", [(i,) for i in orphans])
    db.conn.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in orphans])
