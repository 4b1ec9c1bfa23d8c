"""``imageclust publish-copy``: a redacted copy of a database, ready for ``datasette publish``.

The source is opened read-only and copied with ``VACUUM INTO`` to a temporary name beside
the destination (so nothing the source deleted survives in free pages); the copy is
redacted, its full-text index rebuilt, vacuumed again (so the redacted values do not
survive in free pages either), checked byte by byte for the local folders, and renamed
onto the destination. What was redacted is recorded in ``imageclust_meta.redacted``.

Where local or private values live (all handled here): ``files`` (path, path_bytes,
root, relpath), ``errors`` (path, path_bytes, reason), ``models.name`` and
``text_models.name`` (a local model directory), ``images`` (latitude, longitude, exif,
camera, taken), the names of the people who posted (``store/authors.py``, ``--authors``),
and any text naming a load folder or a model directory elsewhere
(``cluster_runs.params``, ``layouts.params``, ``imageclust_meta``, labels, ...): every
text column of every ordinary table is swept for them.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, field
from typing import Callable

import sqlite_utils

from . import paths
from .authors import AUTHORS, redact_authors
from .connection import DatabaseError, close, connect, explain, sqlite3

#: EXIF fields a published copy keeps with ``--exif safe`` (the default): when, with
#: what camera and settings, and the picture's shape. Everything else (serial numbers,
#: owner, artist, copyright, maker notes, software, descriptions, GPS) is removed.
SAFE_EXIF = frozenset({
    "DateTimeOriginal", "DateTime", "Make", "Model", "LensModel", "ExposureTime", "FNumber",
    "ISOSpeedRatings", "PhotographicSensitivity", "FocalLength", "ExifImageWidth", "ExifImageHeight",
    "ImageWidth", "ImageLength", "Orientation",
})
PATHS = ("relative", "basename", "none")
LOCATION = ("drop", "coarse", "keep")
EXIF = ("safe", "drop", "keep")
COARSE_DIGITS = 2  # decimal degrees: ~1 km
META_KEY = "redacted"


class PublishError(Exception):
    """The copy cannot be made as asked; the message says why and what to do."""


@dataclass
class PublishSummary:
    source: str
    dest: str
    paths: str
    location: str
    exif: str
    authors: str = "pseudonymise"
    author_values: int = 0
    files: int = 0
    errors_removed: int = 0
    errors_kept: int = 0
    gps_removed: int = 0
    gps_rounded: int = 0
    exif_reduced: int = 0
    thumbnails_removed: int = 0
    models_renamed: int = 0
    texts_swept: int = 0
    bytes: int = 0
    removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def describe(redacted: dict) -> str:
    """One line for the image page: what a copy's ``imageclust_meta.redacted`` says."""
    parts = [{"relative": "paths relative", "basename": "file names only",
              "none": "no file names"}.get(redacted.get("paths"), "paths kept"),
             {"drop": "GPS removed", "coarse": "GPS rounded to ~1 km"}.get(redacted.get("location"), "GPS kept"),
             {"safe": "EXIF reduced", "drop": "EXIF removed"}.get(redacted.get("exif"), "EXIF kept")]
    if redacted.get("errors") == "dropped":
        parts.append("load errors removed")
    if redacted.get("thumbnails") == "dropped":
        parts.append("thumbnails removed")
    authors = (redacted.get("authors") or {}).get("mode")
    if authors:
        parts.append({"pseudonymise": "authors pseudonymised", "drop": "authors removed"}.get(authors, "authors kept"))
    return "redacted: " + ", ".join(parts)


def leaks(db: sqlite_utils.Database) -> list[str]:
    """What a database would give away if served as it is: GPS, absolute paths (empty
    for a publish-copy, or a database without those)."""
    tables = set(db.table_names())
    out = []
    if "images" in tables and db.execute(
            "SELECT 1 FROM images WHERE latitude IS NOT NULL LIMIT 1").fetchone():
        out.append("GPS coordinates")
    absolute = "substr(path, 1, 1) = '/' OR path GLOB '[A-Za-z]:[\\/]*'"
    if any(t in tables and db.execute(f"SELECT 1 FROM [{t}] WHERE {absolute} LIMIT 1").fetchone()
           for t in ("files", "errors")):
        out.append("absolute file paths")
    return out


def leak_warning(database: str) -> str | None:
    """The one-line warning `info` and `load` print, or None (also for an unreadable file)."""
    try:
        db = connect(database, readonly=True)
    except Exception:
        return None
    try:
        found = leaks(db)
    except sqlite3.Error:
        return None
    finally:
        close(db)
    if not found:
        return None
    return (f"warning: {paths.display(database)} holds {' and '.join(found)}: before serving or publishing it, "
            f"make a redacted copy with `imageclust publish-copy`")


def publish_copy(source: str, dest: str, *, paths_mode: str = "relative", location: str = "drop",
                 exif: str = "safe", drop_errors: bool = False, drop_thumbnails: bool = False,
                 authors: str = "pseudonymise", author_columns: tuple[str, ...] = (), force: bool = False, on_status: Callable[[str], None] | None = None) -> PublishSummary:
    """Write the redacted copy of ``source`` to ``dest`` (see the module's docstring)."""
    say = on_status or (lambda line: None)
    for value, allowed in ((paths_mode, PATHS), (location, LOCATION), (exif, EXIF), (authors, AUTHORS)):
        if value not in allowed:
            raise PublishError(f"{value!r} is not one of {', '.join(allowed)}")
    name = paths.display(dest)
    folder = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(folder):
        raise PublishError(f"cannot write {name}: the folder {paths.display(folder)} does not exist")
    if os.path.isdir(dest):
        raise PublishError(f"{name} is a folder: give the file name of the copy")
    if os.path.exists(dest) and not force:
        raise PublishError(f"{name} exists: give another name, or --force to replace it")
    if os.path.exists(dest) and os.path.samefile(dest, source):
        raise PublishError(f"{name} is the source database: give another name for the copy")
    src = connect(source, readonly=True)
    try:
        if not _is_imageclust(src):
            raise PublishError(f"{paths.display(source)} is not an imageclust database "
                               f"(make one with `imageclust load`)")
        tmp = os.path.join(folder, f".{os.path.basename(dest)}.publish-{os.getpid()}.tmp")
        try:
            src.execute("VACUUM INTO ?", [tmp])
        except sqlite3.Error as e:
            _remove(tmp)
            raise explain(dest, e) from e
    finally:
        close(src)
    s = PublishSummary(paths.text(os.path.abspath(source)), paths.text(os.path.abspath(dest)),
                       paths_mode, location, exif, authors)
    try:
        secrets, names = _redact(tmp, s, drop_errors, drop_thumbnails, say, tuple(author_columns))
        found = _find_in_file(tmp, secrets) or _find_in_file(tmp, names, ignore_case=True)
        if found:  # a place this module does not know about: refuse rather than leak
            what = f"the author name {found!r}" if found in names else paths.display(found)
            raise PublishError(f"the copy still holds {what} somewhere this version does not "
                               f"redact: nothing was written (please report this)")
        os.replace(tmp, dest)
    except sqlite3.Error as e:
        _remove(tmp)
        raise explain(dest, e) from e
    except BaseException:
        _remove(tmp)
        raise
    s.bytes = os.path.getsize(dest)
    return s


def _is_imageclust(db: sqlite_utils.Database) -> bool:
    t = set(db.table_names())
    if not {"schema_versions", "imageclust_meta", "images", "files"} <= t:
        return False
    row = db.execute("SELECT version FROM schema_versions WHERE component = 'core'").fetchone()
    return bool(row and isinstance(row[0], int))


def _remove(path: str) -> None:
    for p in (path, path + "-journal", path + "-wal", path + "-shm"):
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def _redact(tmp: str, s: PublishSummary, drop_errors: bool, drop_thumbnails: bool,
            say: Callable[[str], None], author_columns: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Redact the copy in place; returns the local folders and the author names that must
    not be in its bytes."""
    db = connect(tmp, wal=False)
    try:
        tables = set(db.table_names())
        roots = sorted({r for (r,) in db.execute("SELECT DISTINCT root FROM files") if os.path.isabs(r)})
        common = os.path.commonpath(roots) if roots else None
        if common and os.path.dirname(common) == common:  # "/": no common folder, each root by its name
            common = None
        model_dirs = sorted({n for t in ("models", "text_models") if t in tables
                             for (n,) in db.execute(f"SELECT name FROM {t}") if os.path.isabs(n)})
        with db.conn:
            if s.paths != "keep":
                s.files = _rename_files(db, common, s.paths)
            if drop_errors:
                s.errors_removed = db.execute("DELETE FROM errors").rowcount
                s.removed.append(f"{s.errors_removed} load errors")
            else:
                s.errors_kept = _rename_errors(db, common, s.paths)
            s.gps_removed, s.gps_rounded = _location(db, s.location)
            s.exif_reduced = _exif(db, s.exif)
            if drop_thumbnails:
                s.thumbnails_removed = db.execute("DELETE FROM thumbnails").rowcount
            for t in ("models", "text_models"):  # recorded by name, not by local directory
                for d in model_dirs if t in tables else []:
                    s.models_renamed += db.execute(f"UPDATE {t} SET name = ? WHERE name = ?",
                                                   [os.path.basename(d.rstrip("/")), d]).rowcount
            s.texts_swept = _sweep(db, _replacements(roots, common, model_dirs, s.paths))
            try:  # after the paths: a name in a load folder's name is rewritten in the relative paths
                authors = redact_authors(db, s.authors, author_columns)
            except sqlite3.IntegrityError as e:  # drop: two values told apart only by a name
                raise PublishError(f"removing the author names makes two rows the same ({e}): "
                                   f"use --authors pseudonymise") from e
            except ValueError as e:
                raise PublishError(str(e)) from e
            s.author_values = authors.values
            if authors.values and s.authors != "keep":
                s.removed.append(f"author names in {authors.values} values ({s.authors})")
            db.execute("INSERT OR REPLACE INTO imageclust_meta (key, value) VALUES (?, ?)",
                       [META_KEY, json.dumps({"paths": s.paths, "location": s.location, "exif": s.exif,
                                              "errors": "dropped" if drop_errors else "kept",
                                              "thumbnails": "dropped" if drop_thumbnails else "kept",
                                              "authors": authors.as_meta()})])
        if "descriptions_fts" in tables:  # the old words must not stay in the index's segments
            db.execute("INSERT INTO descriptions_fts (descriptions_fts) VALUES ('rebuild')")
            db.conn.commit()
        if s.gps_removed:
            s.removed.append(f"GPS of {s.gps_removed} images")
        if s.exif_reduced:
            s.removed.append(f"EXIF fields of {s.exif_reduced} images")
        if s.thumbnails_removed:
            s.removed.append(f"{s.thumbnails_removed} thumbnails")
        say("vacuuming the copy")
        db.execute("VACUUM")
        if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise DatabaseError(f"{paths.display(tmp)}: the copy failed SQLite's integrity check")
    finally:
        close(db)
    home = os.path.expanduser("~")
    return [p for p in (*roots, *model_dirs, *([common] if common else []), *([home] if len(home) > 1 else []))
            if p], authors.checked


def _unique(names: list[tuple[int, str]]) -> dict[int, str]:
    """id -> name, a name met again getting ``~<id>`` before its extension (paths stay unique)."""
    out, seen = {}, set()
    for i, n in names:
        if n in seen:
            stem, ext = os.path.splitext(n)
            n = f"{stem}~{i}{ext}"
        seen.add(n)
        out[i] = n
    return out


def _public(path: str, common: str | None, mode: str) -> str:
    """A local path as the copy shows it."""
    if mode == "basename":
        return os.path.basename(path)
    if common and (path == common or path.startswith(common.rstrip("/") + "/")):
        return os.path.relpath(path, common)
    return os.path.basename(path)


def _root_name(root: str, common: str | None) -> str:
    """A load folder as the copy names it: relative to the folders' common parent, else its name."""
    return os.path.relpath(root, common) if common else os.path.basename(root.rstrip("/"))


def _file_public(full: str, root: str, common: str | None, mode: str) -> str:
    """A file's path as the copy shows it (relative: below its load folder's name)."""
    if mode == "relative" and os.path.isabs(root) and full.startswith(root.rstrip("/") + "/"):
        return os.path.normpath(os.path.join(_root_name(root, common), os.path.relpath(full, root)))
    return _public(full, common, mode)


def _rename_files(db: sqlite_utils.Database, common: str | None, mode: str) -> int:
    rows = db.execute("SELECT id, path, path_bytes, root, relpath FROM files ORDER BY id").fetchall()
    if mode == "none":
        new = {i: str(i) for i, *_ in rows}
    else:
        new = _unique([(i, _file_public(paths.os_path(p, raw), root, common, mode))
                       for i, p, raw, root, _ in rows])
    updates = []
    for i, p, raw, root, relpath in rows:
        shown, raw_new = paths.to_db(new[i])
        root_new = _root_name(root, common) if mode == "relative" and os.path.isabs(root) else ""
        rel = relpath if mode == "relative" else paths.text(new[i])
        updates.append((shown, raw_new, paths.text(root_new), rel, i))
    db.execute("DROP INDEX IF EXISTS files_path")  # renamed in any order; recreated below
    db.conn.executemany("UPDATE files SET path = ?, path_bytes = ?, root = ?, relpath = ? WHERE id = ?", updates)
    db.execute("CREATE UNIQUE INDEX files_path ON files(coalesce(path_bytes, path))")
    return len(rows)


def _rename_errors(db: sqlite_utils.Database, common: str | None, mode: str) -> int:
    rows = db.execute("SELECT rowid, path, path_bytes FROM errors ORDER BY rowid").fetchall()
    if mode == "none":
        new = {i: f"error {i}" for i, *_ in rows}
    else:
        new = _unique([(i, _public(paths.os_path(p, raw), common, mode)) for i, p, raw in rows])
    db.execute("DROP INDEX IF EXISTS errors_path")
    db.conn.executemany("UPDATE errors SET path = ?, path_bytes = ? WHERE rowid = ?",
                        [(*paths.to_db(new[i]), i) for i, *_ in rows])
    db.execute("CREATE UNIQUE INDEX errors_path ON errors(coalesce(path_bytes, path))")
    return len(rows)


def _location(db: sqlite_utils.Database, mode: str) -> tuple[int, int]:
    where = "latitude IS NOT NULL OR longitude IS NOT NULL"
    if mode == "drop":
        return db.execute(f"UPDATE images SET latitude = NULL, longitude = NULL WHERE {where}").rowcount, 0
    if mode == "coarse":
        return 0, db.execute(f"UPDATE images SET latitude = round(latitude, {COARSE_DIGITS}), "
                             f"longitude = round(longitude, {COARSE_DIGITS}) WHERE {where}").rowcount
    return 0, 0


def _exif(db: sqlite_utils.Database, mode: str) -> int:
    if mode == "drop":
        return db.execute("UPDATE images SET exif = NULL, camera = NULL, taken = NULL "
                          "WHERE exif IS NOT NULL OR camera IS NOT NULL OR taken IS NOT NULL").rowcount
    if mode == "keep":
        return 0
    changed = []
    for i, blob in db.execute("SELECT id, exif FROM images WHERE exif IS NOT NULL"):
        try:
            tags = json.loads(blob)
        except ValueError:
            tags = None
        kept = {k: v for k, v in tags.items() if k in SAFE_EXIF} if isinstance(tags, dict) else {}
        if kept != tags:
            changed.append((json.dumps(kept, ensure_ascii=False, sort_keys=True) if kept else None, i))
    db.conn.executemany("UPDATE images SET exif = ? WHERE id = ?", changed)
    return len(changed)


def _replacements(roots: list[str], common: str | None, model_dirs: list[str], mode: str) -> list[tuple[str, str]]:
    """(local text, what the copy says instead), longest first, each also as JSON escapes it."""
    pairs = [(d, os.path.basename(d.rstrip("/"))) for d in model_dirs]
    for r in roots:
        pairs.append((r, _root_name(r, common) if mode == "relative" else "<folder>"))
    if common:
        pairs.append((common, "." if mode == "relative" else "<folder>"))
    home = os.path.expanduser("~")
    if len(home) > 1:
        pairs.append((home, "~"))
    out = []
    for old, new in pairs:
        out.append((old, new))
        escaped = json.dumps(old)[1:-1]
        if escaped != old:
            out.append((escaped, json.dumps(new)[1:-1]))
    return sorted(set(out), key=lambda p: -len(p[0]))


_GROUP = 100  # replacements per UPDATE


def _sweep(db: sqlite_utils.Database, pairs: list[tuple[str, str]]) -> int:
    """Replace local folders in every text value of every ordinary table."""
    if not pairs:
        return 0
    virtual = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND sql LIKE 'CREATE VIRTUAL TABLE%'")}
    changed = 0
    for t in db.table_names():
        if t in virtual or any(t.startswith(v + "_") for v in virtual) or t.startswith("sqlite_"):
            continue
        for col, declared in [(r[1], (r[2] or "").upper()) for r in db.execute(f"PRAGMA table_info([{t}])")]:
            if declared and not any(k in declared for k in ("CHAR", "CLOB", "TEXT")):
                continue  # INTEGER, REAL, BLOB columns: no text to sweep (and no scan of big blobs)
            # One pass per column and group of replacements (nested, longest first; grouped
            # because SQLite limits an expression's depth).
            for g in range(0, len(pairs), _GROUP):
                group = pairs[g:g + _GROUP]
                expr = f"[{col}]"
                for _ in group:
                    expr = f"replace({expr}, ?, ?)"
                hit = " OR ".join(f"instr([{col}], ?) > 0" for _ in group)
                changed += db.execute(
                    f"UPDATE [{t}] SET [{col}] = {expr} WHERE typeof([{col}]) = 'text' AND ({hit})",
                    [v for pair in group for v in pair] + [old for old, _ in group]).rowcount
    return changed


def _find_in_file(path: str, secrets: list[str], chunk: int = 1 << 24, ignore_case: bool = False) -> str | None:
    """The first of ``secrets`` found in the file's bytes (as UTF-8 text; ``ignore_case``:
    in any case of its ASCII letters), else None."""
    needles = {s: os.fsencode(s.lower() if ignore_case else s) for s in secrets if len(s) > 1}
    if not needles:
        return None
    keep = max(len(n) for n in needles.values())
    tail = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return None
            data = tail + block
            if ignore_case:
                data = data.lower()
            for s, n in needles.items():
                if n in data:
                    return s
            tail = data[-keep:]


def real_bytes(value: float) -> bytes:
    """How SQLite stores a REAL in a record (8 bytes, big-endian IEEE 754): what to search
    a file for to tell whether a coordinate is still in it."""
    return struct.pack(">d", value)
