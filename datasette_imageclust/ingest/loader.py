"""``imageclust load``: folders of images -> one SQLite database.

Pipeline: scan (stat only) -> skip unchanged files -> decode in a pool of
low-priority threads (read, sha256, one decode) -> batch inference in the main
thread -> one transaction per batch. Decoding runs at a lower CPU priority so it
fills the inference session's idle time instead of competing with it.
"""
from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import sqlite_utils
from PIL import Image

from ..store import connection as dbmod
from ..store import paths, vectors
from .decode import Decoded, ImageError, decode
from ..models import ImageEmbedder, ModelFiles, Preprocessor, file_sha256, find_model
from .scan import FoundFile, file_kind, scan
from ..store.schema import current_model, migrate, now, versions


class LoadError(Exception):
    """A problem with the run as a whole (not one file); the message says what to do."""


@dataclass
class LoadSummary:
    scanned: int = 0  # image files found
    unchanged: int = 0  # skipped: same path, size and mtime
    new: int = 0  # new images decoded and embedded
    duplicates: int = 0  # files whose bytes were already known (copies, renames, moves)
    reembedded: int = 0  # existing images given a vector by a new model
    errors: int = 0  # rows written to the errors table this run (files and folders)
    gone: int = 0  # files in the database no longer on disk
    pruned: int = 0  # of those, removed (--prune)
    seconds: float = 0.0
    pipeline_seconds: float = 0.0  # of which decoding + inference + writing (no start-up)
    images_per_second: float = 0.0
    interrupted: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Work:
    """One file's result from the decode pool."""

    found: FoundFile
    sha256: str | None = None
    decoded: Decoded | None = None
    error: str | None = None


@dataclass
class _Pending:
    """An image waiting for inference, with every file that holds its bytes."""

    sha256: str
    size: int
    decoded: Decoded
    files: list[FoundFile] = field(default_factory=list)


@dataclass
class _Batch:
    """Images in inference (``vectors`` is their future) plus files and errors to write with them."""

    pending: dict[str, _Pending]
    links: list[tuple[FoundFile, str]]
    errors: list[tuple[FoundFile, str]]
    vectors: Future | None


def _lower_priority() -> None:
    # On Linux, setpriority(PRIO_PROCESS, tid) applies to one thread: decoding yields
    # the CPU to onnxruntime's threads whenever they can run.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        pass


class Loader:
    """Load folders into a database. Library entry point behind ``imageclust load``."""

    def __init__(
        self,
        db_path: str,
        model: str | None = None,
        *,
        recursive: bool = True,
        hidden: bool = False,
        thumbnail_size: int = 256,
        thumbnail_format: str = "webp",
        batch_size: int = 16,
        workers: int | None = None,
        threads: int | None = None,
        prune: bool = False,
        reembed: bool = False,
        on_skip: Callable[[str, str], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ):
        if thumbnail_format not in ("webp", "jpeg"):
            raise LoadError(f"thumbnail format must be webp or jpeg, not {thumbnail_format!r}")
        if not 32 <= thumbnail_size <= 1024:
            raise LoadError(f"thumbnail size must be between 32 and 1024 pixels, not {thumbnail_size}")
        if batch_size < 1:
            raise LoadError("batch size must be at least 1")
        self.db_path = db_path
        self.model_name = model
        self.recursive, self.hidden, self.prune, self.reembed = recursive, hidden, prune, reembed
        self.thumbnail_size, self.thumbnail_format = thumbnail_size, thumbnail_format
        self.batch_size = batch_size
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.threads = threads
        self.on_skip = on_skip or (lambda p, r: None)
        self.on_progress = on_progress or (lambda d, t: None)
        self.on_status = on_status or (lambda s: None)
        self.summary = LoadSummary()
        self.left_wal = False  # True if the database stayed in WAL (another process had it open)

    # --- model ---------------------------------------------------------------------

    def _model_name(self, files: ModelFiles) -> str:
        name = os.path.abspath(files.name) if os.path.isdir(os.path.expanduser(files.name)) else files.name
        return paths.text(name)

    def _setup_model(self, db: sqlite_utils.Database) -> None:
        """Find the model, check it matches the database, register it; the onnxruntime
        session itself is only made when there is something to embed."""
        sha = file_sha256(self.files.vision)
        self._embedder: ImageEmbedder | None = None
        row = current_model(db)
        if row and row["sha256"] != sha and not self.reembed:
            raise LoadError(
                f"this database's vectors were made by model {row['name']} (sha256 {row['sha256'][:12]}), "
                f"not {self._model_name(self.files)} (sha256 {sha[:12]}). Use the same --model, "
                f"or pass --reembed to replace every vector with the new model's."
            )
        known = db.execute("SELECT id, dimensions FROM models WHERE sha256 = ?", [sha]).fetchone()
        if known:
            self.model_id, dims = known
        else:
            dims = self.embedder.dimensions
            with db.conn:
                self.model_id = db["models"].insert(
                    {"name": self._model_name(self.files), "dimensions": dims, "sha256": sha,
                     "preprocess": self.files.preprocessor.read_text(), "created": now()}
                ).last_pk
        self.preprocessor = Preprocessor.from_config(json.loads(self.files.preprocessor.read_text()))
        with db.conn:
            if vectors.dimensions(db) not in (None, dims):
                vectors.drop_table(db)  # a new model with another width: all vectors go
                db.execute("UPDATE images SET model_id = NULL")
            vectors.ensure_table(db, dims)
            if self.reembed:
                db.execute("UPDATE images SET model_id = NULL WHERE model_id IS NOT ?", [self.model_id])
                if row and row["id"] == self.model_id:  # same model asked to re-embed: all of it
                    db.execute("UPDATE images SET model_id = NULL")
            db.execute("INSERT OR REPLACE INTO imageclust_meta (key, value) VALUES ('model_id', ?)",
                       [str(self.model_id)])

    @property
    def embedder(self) -> ImageEmbedder:
        if self._embedder is None:
            self.on_status(f"loading model {paths.display(self.files.name)}")
            self._embedder = ImageEmbedder(self.files, threads=self.threads, spinning=False)
        return self._embedder

    # --- run -----------------------------------------------------------------------

    def run(self, roots: Iterable[str]) -> LoadSummary:
        roots = [os.path.abspath(os.path.expanduser(r)) for r in roots]
        for r in roots:
            if not os.path.exists(r):
                raise LoadError(f"no such file or folder: {paths.display(r)}")
        start = time.perf_counter()
        self.files = find_model(self.model_name)  # before creating anything on disk
        db = dbmod.connect(self.db_path)
        try:
            migrate(db, "core")
            for component in versions(db):  # e.g. the triggers that let --prune delete images
                migrate(db, component)
            self._setup_model(db)
            self._run(db, roots)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.summary.seconds = round(time.perf_counter() - start, 3)
            done = self.summary.new + self.summary.reembedded
            if self.summary.seconds > 0:
                self.summary.images_per_second = round(done / self.summary.seconds, 2)
            self.left_wal = not dbmod.close(db)
        return self.summary

    def _run(self, db: sqlite_utils.Database, roots: list[str]) -> None:
        s = self.summary
        self.on_status("scanning")
        skipped: list[tuple[str, str]] = []
        found = list(scan(roots, recursive=self.recursive, hidden=self.hidden,
                          on_error=lambda p, r: skipped.append((p, r))))
        s.scanned = len(found)
        self._record_skipped(db, skipped)
        known = {  # by exact OS path
            paths.os_path(r[0], r[1]): (r[2], r[3], r[4])
            for r in db.execute("SELECT path, path_bytes, size, mtime, image_id FROM files")
        }
        self.sha_ids: dict[str, int] = {}
        self.embedded: set[str] = set()
        for sha, iid, mid in db.execute("SELECT sha256, id, model_id FROM images"):
            self.sha_ids[sha] = iid
            if mid == self.model_id:
                self.embedded.add(sha)
        embedded_ids = {self.sha_ids[sha] for sha in self.embedded}
        todo = []
        for f in found:
            k = known.get(f.path)
            if k and k[0] == f.size and k[1] == f.mtime and k[2] in embedded_ids:
                s.unchanged += 1
            else:
                todo.append(f)
        self._pipeline(db, todo)
        self._embed_leftovers(db)
        self._gone(db, roots, {f.path for f in found} | {p for p, _ in skipped}, known)
        self._index(db)

    def _index(self, db: sqlite_utils.Database) -> None:
        """Keep the similarity-search index (read by the plugin, which never writes) current."""
        from ..analysis import search

        if not search.status(db).fresh:
            self.on_status("building the similarity index")
            search.build_index(db)

    def _record_skipped(self, db, skipped: list[tuple[str, str]]) -> None:
        """Entries the scan could not use (unreadable folders, dangling symlinks, FIFOs
        and devices with image names): an errors row each, like files that fail to decode."""
        stamp = now()
        with db.conn:
            for path, reason in skipped:
                self._write_error(db, path, reason, None, None, stamp)
        for path, reason in skipped:
            self.summary.errors += 1
            self.on_skip(path, reason)

    # --- decode pool ---------------------------------------------------------------

    def _work(self, f: FoundFile) -> _Work:
        w = _Work(f)
        try:
            # Non-blocking, then checked: a file swapped for a FIFO since the scan must not hang us.
            fd = os.open(f.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
            with os.fdopen(fd, "rb") as fh:
                kind = file_kind(os.fstat(fh.fileno()).st_mode)
                if kind:
                    w.error = f"not a regular file: {kind}"
                    return w
                data = fh.read()
        except OSError as e:
            w.error = f"cannot read: {e.strerror or e}"
            return w
        w.sha256 = hashlib.sha256(data).hexdigest()
        if w.sha256 in self.embedded:  # known bytes: a copy or a move, nothing to decode
            return w
        try:
            w.decoded = decode(data, self.preprocessor, thumb_size=self.thumbnail_size,
                               thumb_format=self.thumbnail_format, name=f.path)
        except ImageError as e:
            w.error = str(e)
        except Exception as e:  # a bug or an exotic file must not stop the run
            w.error = f"unexpected {type(e).__name__}: {e}"
        return w

    def _pipeline(self, db: sqlite_utils.Database, todo: list[FoundFile]) -> None:
        if not todo:
            return
        t0 = time.perf_counter()
        try:
            self._pipeline_run(db, todo)
        finally:
            self.summary.pipeline_seconds = round(time.perf_counter() - t0, 3)

    def _pipeline_run(self, db: sqlite_utils.Database, todo: list[FoundFile]) -> None:
        """Three overlapping stages: decode pool -> inference thread -> writes here.

        While batch k is in inference, this thread gathers batch k+1 from the decode
        pool and then writes batch k, so the model is never waiting for SQLite.
        """
        total = len(todo)
        self.on_progress(0, total)
        batch: dict[str, _Pending] = {}
        links: list[tuple[FoundFile, str]] = []
        errors: list[tuple[FoundFile, str]] = []
        inflight: _Batch | None = None
        window = max(2 * self.batch_size, 2 * self.workers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode", initializer=_lower_priority)
            infer = ThreadPoolExecutor(1, thread_name_prefix="inference")
            queue: collections.deque[Future] = collections.deque()
            it = iter(todo)
            try:
                for f in it:
                    queue.append(pool.submit(self._work, f))
                    if len(queue) >= window:
                        break
                done = 0
                while queue:
                    w: _Work = queue.popleft().result()
                    nxt = next(it, None)
                    if nxt is not None:
                        queue.append(pool.submit(self._work, nxt))
                    done += 1
                    if w.error:
                        errors.append((w.found, w.error))
                        self.summary.errors += 1
                        self.on_skip(w.found.path, w.error)
                    elif w.sha256 in batch:
                        batch[w.sha256].files.append(w.found)
                    elif (w.sha256 in self.embedded or w.decoded is None
                          or (inflight and w.sha256 in inflight.pending)):
                        links.append((w.found, w.sha256))  # written after the image it points to
                    else:
                        batch[w.sha256] = _Pending(w.sha256, w.found.size, w.decoded, [w.found])
                    if len(batch) >= self.batch_size or len(links) + len(errors) >= 500:
                        nxt_batch = _Batch(batch, links, errors, self._submit(infer, batch))
                        if inflight:
                            self._write(db, inflight)
                        inflight = nxt_batch
                        batch, links, errors = {}, [], []
                        self.on_progress(done - len(inflight.pending), total)
                last = _Batch(batch, links, errors, self._submit(infer, batch))
                if inflight:
                    self._write(db, inflight)
                self._write(db, last)
                self.on_progress(total, total)
            finally:
                for q in queue:
                    q.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                infer.shutdown(wait=True, cancel_futures=True)

    def _submit(self, infer: ThreadPoolExecutor, batch: dict[str, "_Pending"]) -> Future | None:
        if not batch:
            return None
        crops = np.stack([p.decoded.crop for p in batch.values()])
        return infer.submit(self.embedder.embed_uint8, crops)

    # --- writing -------------------------------------------------------------------

    def _write(self, db, b: "_Batch") -> None:
        """Write a batch (once its vectors are ready), its links and its errors in one transaction."""
        items = list(b.pending.values())
        vecs = b.vectors.result() if b.vectors is not None else None
        stamp = now()
        with db.conn:
            ids = []
            for p in items:
                iid = self._write_image(db, p, stamp)
                ids.append(iid)
                self.summary.duplicates += len(p.files) - 1
                for f in p.files:
                    self._write_file(db, f, iid, stamp)
            if items:
                vectors.put(db, ids, vecs)
            for f, sha in b.links:
                self.summary.duplicates += 1
                self._write_file(db, f, self.sha_ids[sha], stamp)
            for f, reason in b.errors:
                self._write_error(db, f.path, reason, f.size, f.mtime, stamp)
        for p in items:
            self.embedded.add(p.sha256)

    def _write_image(self, db, p: _Pending, stamp: str) -> int:
        d = p.decoded
        row = {
            "sha256": p.sha256, "bytes": p.size, "format": d.format, "mode": d.mode,
            "width": d.width, "height": d.height, "frames": d.frames, "phash": d.phash,
            "dhash": d.dhash, "taken": d.taken, "camera": d.camera, "latitude": d.latitude,
            "longitude": d.longitude, "exif": d.exif, "model_id": self.model_id,
        }
        iid = self.sha_ids.get(p.sha256)
        cols = list(row)
        if iid is None:  # plain SQL: sqlite-utils' insert() introspects the table every call
            cols.append("created")
            iid = db.conn.execute(
                f"INSERT INTO images ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [*row.values(), stamp],
            ).lastrowid
            self.sha_ids[p.sha256] = iid
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

    def _write_file(self, db, f: FoundFile, image_id: int, stamp: str) -> None:
        path, raw = paths.to_db(f.path)
        db.execute(
            "INSERT INTO files (path, path_bytes, root, relpath, image_id, size, mtime, added) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT({paths.KEY_SQL}) DO UPDATE SET "
            "root = excluded.root, relpath = excluded.relpath, image_id = excluded.image_id, "
            "size = excluded.size, mtime = excluded.mtime",
            [path, raw, paths.text(f.root), paths.text(f.relpath), image_id, f.size, f.mtime, stamp],
        )
        db.execute(f"DELETE FROM errors WHERE {paths.KEY_SQL} = ?", [paths.key(f.path)])

    @staticmethod
    def _write_error(db, os_path: str, reason: str, size: int | None, mtime: float | None, stamp: str) -> None:
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

    # --- after the scan ------------------------------------------------------------

    def _embed_leftovers(self, db) -> None:
        """Images still without a current vector whose files were not read this run
        (gone, or unchanged under a new model): embed them from their stored thumbnail."""
        rows = db.execute(
            "SELECT i.id, t.data FROM images i JOIN thumbnails t ON t.image_id = i.id "
            "WHERE i.model_id IS NOT ? ORDER BY i.id", [self.model_id]
        ).fetchall()
        for i in range(0, len(rows), self.batch_size):
            chunk = rows[i : i + self.batch_size]
            crops = []
            for _, data in chunk:
                im = Image.open(io.BytesIO(data)).convert("RGB")
                crops.append(self.preprocessor.to_uint8(im))
            vecs = self.embedder.embed_uint8(np.stack(crops))
            with db.conn:
                ids = [r[0] for r in chunk]
                vectors.put(db, ids, vecs)
                db.conn.executemany("UPDATE images SET model_id = ? WHERE id = ?",
                                    [(self.model_id, i) for i in ids])
            self.summary.reembedded += len(chunk)

    def _gone(self, db, roots: list[str], seen: set[str], known: dict) -> None:
        def under(p: str) -> bool:
            for r in roots:
                if p == r or (p.startswith(r.rstrip(os.sep) + os.sep)
                              and (self.recursive or os.path.dirname(p) == r)):
                    return True
            return False

        gone = [p for p in known if p not in seen and under(p)]
        self.summary.gone = len(gone)
        for p in gone[:10]:
            self.on_status(f"gone from disk: {paths.display(p)}")
        if len(gone) > 10:
            self.on_status(f"... and {len(gone) - 10} more gone from disk")
        with db.conn:
            if gone and self.prune:
                db.conn.executemany(f"DELETE FROM files WHERE {paths.KEY_SQL} = ?", [(paths.key(p),) for p in gone])
                self.summary.pruned = len(gone)
            # an error about a file that no longer exists is no longer news
            errors = [paths.os_path(*r) for r in db.execute("SELECT path, path_bytes FROM errors")]
            stale = [p for p in errors if p not in seen and under(p)]
            db.conn.executemany(f"DELETE FROM errors WHERE {paths.KEY_SQL} = ?", [(paths.key(p),) for p in stale])
            self._delete_orphans(db)

    @staticmethod
    def _delete_orphans(db) -> None:
        """Images no file points at any more (pruned, or a file whose content changed)."""
        orphans = [r[0] for r in db.execute(
            "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM files)")]
        if not orphans:
            return
        vectors.delete(db, orphans)
        db.conn.executemany("DELETE FROM thumbnails WHERE image_id = ?", [(i,) for i in orphans])
        db.conn.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in orphans])


def load(db_path: str, roots: Iterable[str], model: str | None = None, **options) -> LoadSummary:
    """Load ``roots`` into ``db_path``; see :class:`Loader` for the options."""
    return Loader(db_path, model, **options).run(roots)
