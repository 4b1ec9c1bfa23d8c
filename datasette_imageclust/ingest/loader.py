"""The ingest step of ``imageclust load``: folders of images -> rows of one SQLite database.

Scan (stat only) -> skip unchanged files -> read, decode, embed and write the rest
(:mod:`.stages`, :mod:`.rows`) -> tidy up after the scan (:mod:`.tidy`). The caller
opens the database; :func:`datasette_imageclust.pipeline.load` is the whole step
(it also builds the search index).
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Iterable

import numpy as np
import sqlite_utils

from ..models import ImageEmbedder, ModelFiles, Preprocessor, devices, file_sha256, find_model
from ..store import connection, paths, vectors
from ..store.collection import ImageCollection
from ..store.schema import migrate, now, versions
from . import dask_engine, stages, tidy
from .dask_engine import DaskEngine
from .rows import Writer, write_error
from .scan import scan
from .summary import LoadError, LoadSummary

__all__ = ["ENGINES", "LoadError", "LoadSummary", "Loader"]
ENGINES = ("local", "dask")


class Loader:
    """Load folders into an open database: ``prepare`` (before anything is written),
    then ``run``. Counts go to ``summary``; each file that cannot be loaded to
    ``on_skip(path, reason)``."""

    def __init__(
        self,
        model: str | None = None,
        *,
        recursive: bool = True,
        hidden: bool = False,
        thumbnail_size: int = 256,
        thumbnail_format: str = "webp",
        batch_size: int | None = None,
        workers: int | None = None,
        decode_workers: int | None = None,
        threads: int | None = None,
        prune: bool = False,
        reembed: bool = False,
        precision: str | None = None,
        engine: str = "local",
        address: str | None = None,
        on_skip: Callable[[str, str], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ):
        if thumbnail_format not in ("webp", "jpeg"):
            raise LoadError(f"thumbnail format must be webp or jpeg, not {thumbnail_format!r}")
        if not 32 <= thumbnail_size <= 1024:
            raise LoadError(f"thumbnail size must be between 32 and 1024 pixels, not {thumbnail_size}")
        if batch_size is not None and batch_size < 1:
            raise LoadError("batch size must be at least 1")
        if workers is not None and workers < 1:
            raise LoadError("--workers must be at least 1")
        if decode_workers is not None and decode_workers < 0:
            raise LoadError("--decode-workers must be 0 (decode in threads) or more")
        if threads is not None and threads < 1:
            raise LoadError("--threads must be at least 1")
        if engine not in ENGINES:
            raise LoadError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        if address is not None and engine == "local":
            raise LoadError("--address goes with --engine dask")
        if engine != "local" and decode_workers is not None:
            raise LoadError("--decode-workers goes with the local engine (a cluster's workers decode)")
        self.model_name = model
        self.precision = precision
        self.recursive, self.hidden, self.prune, self.reembed = recursive, hidden, prune, reembed
        self.thumbnail_size, self.thumbnail_format = thumbnail_size, thumbnail_format
        self.batch_size = batch_size
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.threads = threads
        self.decode_workers = decode_workers
        self.engine, self.address = engine, address
        self._cluster: DaskEngine | None = None
        self.on_skip = on_skip or (lambda p, r: None)
        self.on_progress = on_progress or (lambda d, t: None)
        self.on_status = on_status or (lambda s: None)
        self.summary = LoadSummary()
        self.files: ModelFiles | None = None
        self._embedder: ImageEmbedder | None = None

    def prepare(self, roots: Iterable[str], database: str | os.PathLike | None = None) -> list[str]:
        """Check that every root exists and find the model (downloading it if needed):
        everything that can refuse the run before a database is created. Returns the
        roots as absolute paths. ``database``: where the run will write; with
        ``precision="auto"`` an existing one keeps the variant its vectors are."""
        roots = [os.path.abspath(os.path.expanduser(r)) for r in roots]
        for r in roots:
            if not os.path.exists(r):
                raise LoadError(f"no such file or folder: {paths.display(r)}")
        keep = None if self.reembed or self.precision != "auto" else _recorded_precision(database)
        self.files = find_model(self.model_name, precision=self.precision, keep=keep)
        if self.engine == "dask":  # a cluster that cannot do the work refuses the run here too
            if not dask_engine.available():
                raise LoadError(f"--engine dask needs Dask's distributed scheduler: {dask_engine.INSTALL}")
            self._cluster = self._start_cluster(roots)
        return roots

    def close(self) -> None:
        """Let go of the Dask cluster (after :meth:`run`, or when it never ran)."""
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- model ---------------------------------------------------------------------

    def _model_name(self, files: ModelFiles) -> str:
        name = os.path.abspath(files.name) if os.path.isdir(os.path.expanduser(files.name)) else files.name
        return paths.text(name)

    def _setup_model(self, db: sqlite_utils.Database) -> None:
        """Check the model matches the database and register it; the onnxruntime session
        itself is only made when there is something to embed."""
        sha = file_sha256(self.files.vision)
        row = ImageCollection(db).model()
        if row and row["sha256"] != sha and not self.reembed:
            # A variant (--precision) is a model of its own: its vectors differ slightly.
            was, now_p = row.get("precision") or "fp32", self.files.precision
            raise LoadError(
                f"this database's vectors were made by model {row['name']} ({was}, sha256 {row['sha256'][:12]}), "
                f"not {self._model_name(self.files)} ({now_p}, sha256 {sha[:12]}). Use the same --model "
                f"and --precision {was}, or pass --reembed to replace every vector with the new model's."
            )
        known = db.execute("SELECT id, dimensions FROM models WHERE sha256 = ?", [sha]).fetchone()
        if known:
            self.model_id, dims = known
        else:
            dims = self._cluster.dimensions if self._cluster else self.embedder.dimensions
            with db.conn:
                self.model_id = db["models"].insert(
                    {"name": self._model_name(self.files), "dimensions": dims, "sha256": sha,
                     "precision": self.files.precision, "preprocess": self.files.preprocessor.read_text(), "created": now()}
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

    def _model_line(self) -> str:
        """The model and its variant, as the status line says them (auto says what it chose)."""
        how = ", chosen by --precision auto" if self.precision == "auto" else ""
        return f"{paths.display(self.files.name)} ({self.files.precision}{how})"

    @property
    def embedder(self) -> ImageEmbedder:
        if self._embedder is None:
            self.on_status(f"loading model {self._model_line()}")
            self._embedder = ImageEmbedder(self.files, threads=self.threads, spinning=False)
        return self._embedder

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        return self.embedder.embed_uint8(crops)

    # --- run -----------------------------------------------------------------------

    def run(self, db: sqlite_utils.Database, roots: list[str]) -> LoadSummary:
        """Load ``roots`` (from :meth:`prepare`) into ``db``. Each batch is one
        transaction, so an interrupted run resumes where it stopped."""
        if self.files is None:
            raise LoadError("Loader.prepare(roots) must run before Loader.run")
        migrate(db, "core")
        for component in versions(db):  # e.g. the triggers that let --prune delete images
            migrate(db, component)
        try:
            return self._run(db, roots)
        finally:
            self.close()

    def _start_cluster(self, roots: list[str]) -> DaskEngine:
        """Connect (or start a local cluster) and check every worker can do the work."""
        cluster = DaskEngine(self.address)
        self.on_status(f"connecting to the Dask scheduler at {self.address}" if self.address
                       else "starting a local Dask cluster")
        cluster.start()
        try:
            cluster.prepare(self.files, file_sha256(self.files.vision), devices.device(), self.threads,
                            sample=roots[0] if roots else None)
        except BaseException:
            cluster.close()
            raise
        self.summary.engine = f"dask ({cluster.workers} workers)"
        self.on_status(f"dask: {cluster.workers} workers, {cluster.threads} threads, at {cluster.address}, "
                       f"running on {', '.join(cluster.providers)}; model {self._model_line()}")
        return cluster

    def _run(self, db: sqlite_utils.Database, roots: list[str]) -> LoadSummary:
        self._setup_model(db)
        s = self.summary
        self.on_status("scanning")
        skipped: list[tuple[str, str]] = []
        found = list(scan(roots, recursive=self.recursive, hidden=self.hidden,
                          on_skip=lambda p, r: skipped.append((p, r))))
        s.scanned = len(found)
        self._record_skipped(db, skipped)
        known = {  # by exact OS path
            paths.os_path(r[0], r[1]): (r[2], r[3], r[4])
            for r in db.execute("SELECT path, path_bytes, size, mtime, image_id FROM files")
        }
        writer = Writer(db, self.model_id, s)
        embedded_ids = {writer.ids[sha] for sha in writer.embedded}
        todo = []
        for f in found:
            k = known.get(f.path)
            if k and k[0] == f.size and k[1] == f.mtime and k[2] in embedded_ids:
                s.unchanged += 1
            else:
                todo.append(f)
        if todo:
            t0 = time.perf_counter()
            options = stages.DecodeOptions(self.preprocessor, self.thumbnail_size, self.thumbnail_format)
            times = stages.StageTimes()
            if self._cluster:
                batch = self.batch_size or (stages.CPU_BATCH if self._cluster.providers == [devices.CPU]
                                            else stages.ACCELERATOR_BATCH)
            else:
                # the session's providers, not the choice: an accelerator that failed runs on the CPU
                processes, batch = stages.shape(self.embedder.session.get_providers()[0], os.cpu_count() or 1,
                                                self.decode_workers, self.batch_size)
                pool = stages.process_pool(processes, options, writer.embedded) if processes else None
            try:
                if self._cluster:
                    self._cluster.run(todo, options=options, write=writer.write, embedded=writer.embedded,
                                      chunk_size=batch, on_progress=self.on_progress, on_skip=self._skip,
                                      times=times)
                else:
                    stages.run(todo, read=lambda f: stages.read(f, options, writer.embedded), embed=self._embed,
                               write=writer.write, embedded=writer.embedded, batch_size=batch,
                               workers=processes or self.workers, on_progress=self.on_progress,
                               on_skip=self._skip, times=times, pool=pool)
            finally:
                s.pipeline_seconds = round(time.perf_counter() - t0, 3)
                s.record_stages(times.decode, times.inference, times.write)
        before = s.reembedded
        tidy.embed_leftovers(db, self.model_id, self.preprocessor, self._embed, self.batch_size or stages.CPU_BATCH,
                             on_progress=lambda done, _: setattr(s, "reembedded", before + done))
        seen = {f.path for f in found} | {p for p, _ in skipped}
        s.gone, s.pruned = tidy.forget_gone(db, roots, seen, list(known), recursive=self.recursive,
                                            prune=self.prune, on_status=self.on_status)
        return s

    def _skip(self, path: str, reason: str) -> None:
        self.summary.errors += 1
        self.on_skip(path, reason)

    def _record_skipped(self, db: sqlite_utils.Database, skipped: list[tuple[str, str]]) -> None:
        """Entries the scan could not use (unreadable folders, dangling symlinks, FIFOs
        and devices with image names): an errors row each, like files that fail to decode."""
        stamp = now()
        with db.conn:
            for path, reason in skipped:
                write_error(db, path, reason, None, None, stamp)
        for path, reason in skipped:
            self._skip(path, reason)


def _recorded_precision(database: str | os.PathLike | None) -> str | None:
    """The variant an existing database's vectors were made with; None without one."""
    if database is None or not os.path.isfile(database):
        return None
    try:
        db = connection.connect(database, readonly=True)
    except Exception:  # noqa: BLE001 - the run's own connect says what is wrong with the file
        return None
    try:
        row = ImageCollection(db).model()
    finally:
        connection.close(db)
    return (row.get("precision") or "fp32") if row else None
