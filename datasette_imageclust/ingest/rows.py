"""Writing what ``load`` finds: images (with thumbnail and vector), files and errors rows."""
from __future__ import annotations

import sqlite_utils

from ..store import paths, vectors
from ..store.schema import now
from .scan import FoundFile
from .stages import Batch, Pending
from .summary import LoadSummary


def write_error(db: sqlite_utils.Database, os_path: str, reason: str, size: int | None,
                mtime: float | None, stamp: str) -> None:
    """Record (or update) the ``errors`` row of a file or folder that could not be loaded."""
    # `time` stays that of the first sighting while nothing changed, so a re-run over
    # the same broken files writes nothing new.
    path, raw = paths.to_db(os_path)
    db.execute(
        f"INSERT INTO errors (path, path_bytes, reason, size, mtime, time) VALUES (?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT({paths.KEY_SQL}) DO UPDATE SET reason = excluded.reason, size = excluded.size, "
        "mtime = excluded.mtime, time = excluded.time WHERE reason IS NOT excluded.reason "
        "OR size IS NOT excluded.size OR mtime IS NOT excluded.mtime",
        [path, raw, paths.text(reason), size, mtime, stamp],
    )


def write_file(db: sqlite_utils.Database, f: FoundFile, image_id: int, stamp: str) -> None:
    """Insert or update the ``files`` row of ``f`` (pointing at ``image_id``); its error goes."""
    path, raw = paths.to_db(f.path)
    db.execute(
        "INSERT INTO files (path, path_bytes, root, relpath, image_id, size, mtime, added) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT({paths.KEY_SQL}) DO UPDATE SET "
        "root = excluded.root, relpath = excluded.relpath, image_id = excluded.image_id, "
        "size = excluded.size, mtime = excluded.mtime",
        [path, raw, paths.text(f.root), paths.text(f.relpath), image_id, f.size, f.mtime, stamp],
    )
    db.execute(f"DELETE FROM errors WHERE {paths.KEY_SQL} = ?", [paths.key(f.path)])


class Writer:
    """Writes the batches of one load and counts them in ``summary``.

    Knows every image by its sha256 (``ids``) and which of them have a vector from the
    current model (``embedded``: the decode pool reads it to skip known bytes).
    """

    def __init__(self, db: sqlite_utils.Database, model_id: int, summary: LoadSummary):
        self.db, self.model_id, self.summary = db, model_id, summary
        self.ids: dict[str, int] = {}
        self.embedded: set[str] = set()
        for sha, iid, mid in db.execute("SELECT sha256, id, model_id FROM images"):
            self.ids[sha] = iid
            if mid == model_id:
                self.embedded.add(sha)

    def write(self, b: Batch) -> None:
        """Write a batch (once its vectors are ready), its links and its errors in one transaction."""
        db = self.db
        stamp = now()
        items = list(b.pending.values())
        vecs = b.vectors.result() if b.vectors is not None else None
        with db.conn:
            ids = []
            for p in items:
                iid = self._image(p, stamp)
                ids.append(iid)
                self.summary.duplicates += len(p.files) - 1
                for f in p.files:
                    write_file(db, f, iid, stamp)
            if items:
                vectors.put(db, ids, vecs)
            for f, sha in b.links:
                self.summary.duplicates += 1
                write_file(db, f, self.ids[sha], stamp)
            for f, reason in b.errors:
                write_error(db, f.path, reason, f.size, f.mtime, stamp)
        for p in items:
            self.embedded.add(p.sha256)

    def _image(self, p: Pending, stamp: str) -> int:
        d = p.decoded
        row = {
            "sha256": p.sha256, "bytes": p.size, "format": d.format, "mode": d.mode,
            "width": d.width, "height": d.height, "frames": d.frames, "phash": d.phash,
            "dhash": d.dhash, "taken": d.taken, "camera": d.camera, "latitude": d.latitude,
            "longitude": d.longitude, "exif": d.exif, "model_id": self.model_id,
        }
        db = self.db
        iid = self.ids.get(p.sha256)
        cols = list(row)
        if iid is None:  # plain SQL: sqlite-utils' insert() introspects the table every call
            cols.append("created")
            iid = db.conn.execute(
                f"INSERT INTO images ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [*row.values(), stamp],
            ).lastrowid
            self.ids[p.sha256] = iid
            self.summary.new += 1
        else:  # known bytes without a current vector: re-embedding
            db.conn.execute(f"UPDATE images SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ?",
                            [*row.values(), iid])
            self.summary.reembedded += 1
        db.execute(
            "INSERT OR REPLACE INTO thumbnails (image_id, format, width, height, data) VALUES (?, ?, ?, ?, ?)",
            [iid, d.thumb_format, d.thumb_width, d.thumb_height, d.thumbnail],
        )
        return iid
