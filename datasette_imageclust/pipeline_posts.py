"""The pipeline step that starts from a platform export (``imageclust load --from``):

    read the export -> posts, post_images (export_errors for rows that cannot be read)
    download every URL not yet tried -> the cache folder, downloads
    pipeline.load on the cache folder -> images, files, thumbnails, vectors (as any folder)
    link post_images to the images

and :func:`load_sidecars`, after a folder load: the posts of the JSON sidecars beside the images.
It sits beside :mod:`.pipeline` (at its size cap) and calls its ``load``: there is one loader.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Sequence

from . import pipeline
from .ingest.download import CacheError, Fetched, Limits, download_all
from .ingest.exportfiles import export_kind
from .ingest.exports import Export, Mapping, read_export
from .ingest.exportzip import ZipExport, open_zip, unpack
from .ingest.loader import Loader
from .ingest.posts import ExportSummary, link, nothing_loaded, pending_urls, record_download, record_rows
from .ingest.sidecars import SidecarSummary, record_sidecars
from .store import connection
from .store.paths import display, os_path
from .store.paths import text as paths_text


def default_cache(db_path: str | os.PathLike) -> str:
    """``<database stem>-cache`` beside the database."""
    return os.path.splitext(os.path.abspath(os.fspath(db_path)))[0] + "-cache"


def load_export(db_path: str | os.PathLike, export: str, *, url_column: str | None = None,
                id_column: str | None = None, columns: Sequence[str] | None = None, all_columns: bool = False,
                separator: str | None = None, export_format: str | None = None, delimiter: str | None = None,
                mapping: Mapping | None = None, cache: str | None = None, concurrency: int = 8, per_host: int = 2,
                limits: Limits | None = None, retry_failed: bool = False, model: str | None = None,
                on_status: Callable[[str], None] | None = None,
                on_download: Callable[[ExportSummary, int], None] | None = None,
                on_skip: Callable[[str, str], None] | None = None,
                on_progress: Callable[[int, int], None] | None = None, **options) -> ExportSummary:
    """Load the posts of ``export`` into the database at ``db_path``: a file a known tool
    wrote (recognised, or named by ``export_format``: see ``ingest/formats``), or one
    mapped by ``url_column`` (a JSON list, or text split on ``separator``; ``mapping``
    for the other fields). The posts (normalised, plus ``columns`` kept, or
    ``all_columns``) are written, every image URL not tried before is downloaded into
    ``cache`` (default :func:`default_cache`) -- or, for 4CAT's image-download ZIP, taken
    from the ZIP -- then the cache folder is loaded as :func:`pipeline.load` loads a
    folder (``model`` and ``options`` are its own). ``on_download(summary, total)``
    follows the downloads, ``on_skip(what, reason)`` names each failed URL and
    unreadable row, ``on_progress`` is the folder load's. An interrupt during the
    downloads returns with ``interrupted`` set: the next run resumes. A run that ends
    with no image to load sets ``summary.problem`` (the CLI exits 1 with it)."""
    on_status = on_status or (lambda line: None)
    on_skip = on_skip or (lambda what, reason: None)
    _check(concurrency, per_host, columns, all_columns, separator)
    limits = limits or Limits()
    if export_kind(export) == "zip":
        if url_column or mapping:
            raise pipeline.OptionError("a ZIP is read by its .metadata.json: --url-column goes with CSV and JSON")
        source: Export | ZipExport = open_zip(export)
    else:
        source = read_export(export, url_column=url_column, id_column=id_column, columns=columns,
                             all_columns=all_columns, separator=separator, export_format=export_format,
                             delimiter=delimiter, mapping=mapping)  # a bad export stops here, nothing written
    try:
        Loader(model, **options).prepare([], db_path)  # so do the load's options and model, before any download
        cache = os.path.abspath(cache or default_cache(db_path))
        try:
            os.makedirs(cache, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot use {display(cache)} as the cache folder: {e.strerror or e}") from e
        name = display(os.path.basename(os.path.normpath(export)))  # (a folder given with a trailing /)
        summary = ExportSummary(source.format.title if source.format else None, source.detail)
        db = connection.connect(db_path)
        try:
            record_rows(db, name, source, summary, lambda row, reason: on_skip(f"{name} row {row}", reason))
            on_status(source.recognised(summary.posts + summary.merged + summary.bad_rows))
            for hint in source.hints:
                on_status(f"note: {hint}")
            todo = pending_urls(db, name, cache, retry_failed, summary)
            if isinstance(source, ZipExport):
                unpack(db, source, todo, cache, limits, summary, on_skip)
                todo = []
            on_status(f"{summary.posts} posts, {summary.urls} image URLs: {summary.cached} downloaded before, "
                      f"{summary.failed_before} failed before, {len(todo)} to fetch into {display(cache)}")

            def done(f: Fetched) -> None:
                record_download(db, f)
                if f.status == "ok":
                    summary.fetched += 1
                else:
                    summary.failed += 1
                    on_skip(f.url, f.error or "failed")
                if on_download:
                    on_download(summary, len(todo))

            try:
                download_all(todo, cache, limits, concurrency=concurrency, per_host=per_host, on_result=done)
            except KeyboardInterrupt:
                summary.interrupted = True
                return summary
            summary.problem = nothing_loaded(db, name, summary)
        finally:
            connection.close(db)
    finally:
        source.close()
    if summary.problem:
        return summary  # nothing to load: the folder load would only scan an empty cache
    start = time.perf_counter()
    loaded = pipeline.load(db_path, [cache], model, on_status=on_status, on_skip=on_skip, on_progress=on_progress,
                           **options)
    summary.load = loaded.as_dict()
    summary.interrupted = loaded.interrupted
    db = connection.connect(db_path)
    try:
        link(db)
    finally:
        if not connection.close(db):
            on_status(connection.wal_note(db_path))
    on_status(f"loaded the cache folder in {time.perf_counter() - start:.1f}s")
    return summary


def _check(concurrency: int, per_host: int, columns: Sequence[str] | None, all_columns: bool,
           separator: str | None) -> None:
    if not 1 <= concurrency <= 64:
        raise pipeline.OptionError("--concurrency must be between 1 and 64")
    if not 1 <= per_host <= 64:
        raise pipeline.OptionError("--per-host must be between 1 and 64")
    if columns and all_columns:
        raise pipeline.OptionError("give --columns or --all-columns, not both")
    if separator == "":
        raise pipeline.OptionError("--separator must not be empty")


def load_sidecars(db_path: str | os.PathLike, paths: Sequence[str], *, columns: Sequence[str] | None = None,
                  all_columns: bool = False, on_skip: Callable[[str, str], None] | None = None) -> SidecarSummary:
    """After ``pipeline.load(db_path, paths)``: a post for each gallery-dl or Instaloader
    JSON sidecar beside the loaded files under ``paths``, linked to their images, with
    ``columns`` (dotted names walk nested objects) or ``all_columns`` kept."""
    if columns and all_columns:
        raise pipeline.OptionError("give --columns or --all-columns, not both")
    roots = [paths_text(os.path.abspath(os.path.expanduser(p))) for p in paths]
    db = connection.connect(db_path, create=False)
    try:
        files = [(os_path(path, raw), sha, image_id) for path, raw, sha, image_id in db.execute(
            "SELECT f.path, f.path_bytes, i.sha256, f.image_id FROM files f JOIN images i ON i.id = f.image_id "
            "ORDER BY f.path")
            if any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)]
        return record_sidecars(db, files, columns=columns, all_columns=all_columns,
                               on_skip=on_skip or (lambda what, reason: None))
    finally:
        connection.close(db)
