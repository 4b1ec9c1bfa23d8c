"""Database schema: versioned migrations, per component (the machinery).

Each component (``core`` for what ``load`` writes, others for clustering, search
indexes, ...) owns an ordered list of migrations. ``schema_versions`` records how
far each component has got, so a module can evolve its own tables without
renumbering anybody else's. Migrations only ever add; they run in a transaction.
The migrations themselves are in ``migrations.py``, registered in ``MIGRATIONS``
when the ``store`` package is imported.
"""
from __future__ import annotations

import datetime as _dt
import sqlite3
from typing import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: dict[str, list[Migration]] = {}


class SchemaError(RuntimeError):
    """The database was written by a newer datasette-imageclust."""


def migration(component: str) -> Callable[[Migration], Migration]:
    """Register a migration for ``component``; order of registration is the order applied."""

    def register(fn: Migration) -> Migration:
        MIGRATIONS.setdefault(component, []).append(fn)
        return fn

    return register


def script(db: sqlite_utils.Database, sql: str) -> None:
    """Run ``sql`` statement by statement in the current transaction (``executescript``
    would commit first, so a migration cut short could leave half its tables)."""
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            db.execute(buf)
            buf = ""
    if buf.strip():
        db.execute(buf)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions(db: sqlite_utils.Database) -> dict[str, int]:
    if not db["schema_versions"].exists():
        return {}
    return {r["component"]: r["version"] for r in db["schema_versions"].rows}


def _too_new(component: str, version: int, where: str = "database") -> SchemaError:
    return SchemaError(
        f"{where} schema '{component}' is version {version}, newer than this "
        f"datasette-imageclust understands ({len(MIGRATIONS.get(component, []))}): upgrade the package"
    )


def check(db: sqlite_utils.Database, name: str = "database") -> None:
    """Raise SchemaError if a component this package knows was written by a newer one
    (read-only: run before anything is written). Unknown components are left alone."""
    for component, version in versions(db).items():
        if component in MIGRATIONS and version > len(MIGRATIONS[component]):
            raise _too_new(component, version, name)


def migrate(db: sqlite_utils.Database, component: str = "core") -> int:
    """Bring ``component``'s tables up to date; returns its version. Safe to call often.
    Each step and its version row are one transaction, so an interrupted migration
    leaves the database as it was before that step."""
    steps = MIGRATIONS.get(component, [])
    current = versions(db).get(component, 0)
    if current > len(steps):
        raise _too_new(component, current)
    for i in range(current, len(steps)):
        with db.conn:
            if not db.conn.in_transaction:
                db.execute("BEGIN IMMEDIATE")
            if versions(db).get(component, 0) > i:  # another writer applied it while this one waited
                continue
            if not db["schema_versions"].exists():
                db.execute(
                    "CREATE TABLE schema_versions (component TEXT PRIMARY KEY, "
                    "version INTEGER NOT NULL, applied TEXT NOT NULL)"
                )
            steps[i](db)
            db.execute(
                "INSERT OR REPLACE INTO schema_versions (component, version, applied) VALUES (?, ?, ?)",
                [component, i + 1, now()],
            )
    return len(steps)
