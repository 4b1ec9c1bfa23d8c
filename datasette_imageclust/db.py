"""Opening SQLite connections that can use sqlite-vec.

The stdlib ``sqlite3`` of many Python builds cannot load extensions, so, like
Datasette and sqlite-utils, we prefer ``pysqlite3`` when it is installed.
"""
from __future__ import annotations

import os
from typing import Any

import sqlite_utils

try:  # pragma: no cover - which branch runs depends on the platform
    import pysqlite3.dbapi2 as sqlite3  # type: ignore
except ImportError:  # pragma: no cover
    import sqlite3  # type: ignore

import sqlite_vec


class ExtensionError(RuntimeError):
    """sqlite-vec cannot be loaded into this Python's SQLite."""


NO_EXTENSIONS = (
    "this Python's sqlite3 module cannot load extensions, so sqlite-vec cannot be used. "
    "Install pysqlite3 (`pip install pysqlite3-binary` on Linux x86_64) or use a Python "
    "built with loadable SQLite extensions (e.g. from python.org, Homebrew or uv)."
)


def load_vec(conn: Any) -> None:
    """Load sqlite-vec into a DB-API connection, or raise ExtensionError saying why not."""
    if not hasattr(conn, "enable_load_extension"):
        raise ExtensionError(NO_EXTENSIONS)
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
    except (AttributeError, sqlite3.OperationalError) as e:  # type: ignore[attr-defined]
        raise ExtensionError(f"{NO_EXTENSIONS} ({e})") from e


def connect(path: str | os.PathLike, *, readonly: bool = False, wal: bool = True) -> sqlite_utils.Database:
    """Open ``path`` as a sqlite-utils Database with sqlite-vec loaded.

    ``readonly`` opens with ``mode=ro`` (nothing is ever created); otherwise the file is
    created if missing and switched to WAL so Datasette can read while ``load`` writes.
    """
    path = os.fspath(path)
    if readonly:
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    load_vec(conn)
    db = sqlite_utils.Database(conn)
    if not readonly and wal:
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode (only an OS crash can
        # lose the last commits), which is what "resumable" needs.
        db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def finish(db: sqlite_utils.Database) -> None:
    """Checkpoint and leave rollback-journal mode, so ``datasette -i`` sees every row
    (immutable mode ignores ``-wal`` files)."""
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError:  # type: ignore[attr-defined]
        # Another process (e.g. `datasette photos.db`) has it open: stay in WAL, which
        # every mutable reader handles; the next finish without readers converts it.
        pass
