"""Opening SQLite connections that can use sqlite-vec.

The stdlib ``sqlite3`` of many Python builds cannot load extensions, so, like
Datasette and sqlite-utils, we prefer ``pysqlite3`` when it is installed.
"""
from __future__ import annotations

import os
import time
import weakref
from typing import Any

import sqlite_utils

try:  # pragma: no cover - which branch runs depends on the platform
    import pysqlite3.dbapi2 as sqlite3  # type: ignore
except ImportError:  # pragma: no cover
    import sqlite3  # type: ignore

import sqlite_vec

from . import paths, schema


class ExtensionError(RuntimeError):
    """sqlite-vec cannot be loaded into this Python's SQLite."""


NO_EXTENSIONS = (
    "this Python's sqlite3 module cannot load extensions, so sqlite-vec cannot be used. "
    "Install pysqlite3 (`pip install pysqlite3-binary` on Linux x86_64) or use a Python "
    "built with loadable SQLite extensions (e.g. from python.org, Homebrew or uv)."
)


def load_vec(conn: Connection) -> None:
    """Load sqlite-vec into a DB-API connection, or raise ExtensionError saying why not."""
    if not hasattr(conn, "enable_load_extension"):
        raise ExtensionError(NO_EXTENSIONS)
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
    except (AttributeError, sqlite3.OperationalError) as e:  # type: ignore[attr-defined]
        raise ExtensionError(f"{NO_EXTENSIONS} ({e})") from e


BUSY_TIMEOUT = 30.0  # seconds to wait for another process's write lock

#: "A sqlite-utils Database or a DB-API connection": the type of a parameter that takes
#: either (the plugin hands DB-API connections, the CLI and the library Databases). Where
#: a sqlite-utils Database is needed, parameters say ``sqlite_utils.Database``.
Connection = Any

# Databases opened read-only by `connect`: `close` only closes them (there is no WAL of
# theirs to leave, and trying to would fail and wait).
_read_only: "weakref.WeakSet[sqlite_utils.Database]" = weakref.WeakSet()


class DatabaseError(Exception):
    """A database file cannot be opened or used; the message names it and says what to do."""


def explain(path: str | os.PathLike, error: Exception) -> DatabaseError:
    """One line naming ``path`` and what to do, for an SQLite error met while using it."""
    path = os.fspath(path)
    name = paths.display(path)
    msg = str(error)
    low = msg.lower()
    if "not a database" in low:
        return DatabaseError(f"{name} is not a SQLite database ({msg}): give the path of an "
                             f"imageclust database, or a new file name for `imageclust load`")
    if "locked" in low or "busy" in low:
        return DatabaseError(f"{name} is locked by another process (another imageclust command "
                             f"still writing?): wait for it to finish, then run this again")
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        if os.path.exists(path) and not _writable(path):
            return DatabaseError(f"{name} is read-only: make it writable (chmod u+w) or work on a "
                                 f"writable copy")
        folder = paths.display(os.path.dirname(os.path.abspath(path)))
        return DatabaseError(f"cannot write in the folder {folder}, where SQLite keeps {name}'s "
                             f"journal: make the folder writable or move the database ({msg})")
    if "malformed" in low or "corrupt" in low:
        return DatabaseError(f"{name} is damaged ({msg}): restore a copy, or load into a new database")
    if "disk is full" in low or "disk i/o" in low:
        return DatabaseError(f"{name}: {msg}: free some space or check the disk, then run this again")
    return DatabaseError(f"{name}: SQLite error: {msg}")


def _writable(path: str) -> bool:
    # Opening for writing is the real test (os.access trusts the uid, not capabilities).
    try:
        with open(path, "r+b"):
            return True
    except OSError:
        return False


def connect(path: str | os.PathLike, *, readonly: bool = False, wal: bool = True,
            create: bool = True) -> sqlite_utils.Database:
    """Open ``path`` as a sqlite-utils Database with sqlite-vec loaded.

    ``readonly`` opens with ``mode=ro`` (nothing is ever created); otherwise the file is
    created if missing (unless ``create`` is false) and switched to WAL so Datasette can
    read while ``load`` writes. Everything that could stop a command is checked before
    the first write (a file that is not SQLite, a newer schema, a lock), so a refused
    database is left exactly as it was; these raise :class:`DatabaseError` or
    :class:`~datasette_imageclust.store.schema.SchemaError`.
    """
    path = os.fspath(path)
    name = paths.display(path)
    if os.path.isdir(path):
        raise DatabaseError(f"{name} is a folder: give the path of a database file")
    if not os.path.exists(path):
        if readonly or not create:
            raise DatabaseError(f"{name} does not exist: check the path, or make it with `imageclust load`")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise DatabaseError(f"cannot create {name}: the folder {paths.display(folder)} does not exist")
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT)
        else:
            conn = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as e:  # type: ignore[attr-defined]
        raise explain(path, e) from e
    try:
        load_vec(conn)
        db = sqlite_utils.Database(conn)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # not SQLite? locked?
        schema.check(db, name)
        if not readonly and wal:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode (only an OS crash can
            # lose the last commits), which is what "resumable" needs.
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as e:  # type: ignore[attr-defined]
        conn.close()
        raise explain(path, e) from e
    except BaseException:
        conn.close()
        raise
    if readonly:
        _read_only.add(db)
    return db


def _uri_path(path: str) -> str:
    # '?' and '#' end the path part of an SQLite URI; '%' starts an escape.
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def finish(db: sqlite_utils.Database, wait: float = 0.5) -> bool:
    """Checkpoint and leave WAL for rollback-journal mode, so ``datasette -i`` sees every
    row (immutable mode ignores ``-wal`` files). True if it did; False if another
    connection has the database open (then it stays in WAL, which every mutable reader
    handles, and the next finish without readers converts it).

    A reader that is only passing (a page view, ``imageclust info``) is waited for up
    to ``wait`` seconds: left in WAL, the database would keep an empty ``-wal`` file
    after that reader closes, since a read-only connection cannot remove it.
    """
    if db.conn.in_transaction:  # an uncommitted write would block leaving WAL; nothing commits it
        db.conn.rollback()
    deadline = time.monotonic() + wait
    while True:
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            return str(mode).lower() != "wal"
        except sqlite3.OperationalError:  # type: ignore[attr-defined]
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def close(db: sqlite_utils.Database) -> bool:
    """Close a database from :func:`connect`: ``finish`` first unless it was opened
    read-only; safe to call twice. True unless the database stayed in WAL."""
    try:
        db.conn.total_changes  # raises if closed already
    except Exception:
        return True
    try:
        return True if db in _read_only else finish(db)
    finally:
        db.conn.close()


def wal_note(path: str | os.PathLike) -> str:
    """What to tell the user when :func:`close` returned False."""
    return (f"{paths.display(os.fspath(path))} stays in WAL mode while another process (e.g. datasette) has it "
            f"open; the next imageclust command run without readers turns it back into a single file")
