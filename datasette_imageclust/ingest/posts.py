"""Writing an export's posts, their image links and the downloads into the database
(component ``posts``), and linking the links to the images a load made of them."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import sqlite_utils

from ..store.postcolumns import FIXED  # posts' own columns: an export's get a "_" after
from ..store.schema import migrate, now
from .download import Fetched
from .exports import BadRow, ExportRow



@dataclass
class ExportSummary:
    """What ``load --from`` did before the folder load of the cache."""
    posts: int = 0  # rows of the export read as posts (new or updated)
    bad_rows: int = 0  # rows recorded in export_errors and skipped
    links: int = 0  # image links in those posts
    urls: int = 0  # distinct URLs among them
    cached: int = 0  # URLs downloaded before (not fetched again)
    fetched: int = 0  # URLs downloaded by this run
    failed: int = 0  # URLs that failed in this run
    failed_before: int = 0  # URLs that failed in an earlier run (not retried without --retry-failed)
    interrupted: bool = False
    load: dict = field(default_factory=dict)  # the folder load's summary

    def as_dict(self) -> dict:
        return asdict(self)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_name(name: str) -> str:
    """The posts column for an export column (never one of posts' own)."""
    name = name.strip() or "unnamed"
    while name.lower() in FIXED:
        name += "_"
    return name


def _ensure_columns(db: sqlite_utils.Database, names: Iterable[str], known: dict[str, str]) -> None:
    for name in names:
        if name.lower() not in known:
            # No declared type: SQLite keeps each value as given (a number stays a number).
            db.execute(f"ALTER TABLE posts ADD COLUMN {quote(name)}")
            known[name.lower()] = name


def upsert_post(db: sqlite_utils.Database, export: str, post_id: str, row: int, columns: dict,
                known: dict[str, str]) -> int:
    """Insert or update a post (its kept ``columns`` added to the table as needed): its id."""
    cols = {column_name(k): v for k, v in columns.items()}
    _ensure_columns(db, cols, known)
    names = [known[k.lower()] for k in cols]
    sets = "".join(f", {quote(n)} = excluded.{quote(n)}" for n in names)
    db.execute(
        f"INSERT INTO posts (export, post_id, row, loaded{''.join(', ' + quote(n) for n in names)}) "
        f"VALUES (?, ?, ?, ?{', ?' * len(names)}) ON CONFLICT (export, post_id) DO UPDATE SET "
        f"row = excluded.row{sets}",
        [export, post_id, row, now(), *cols.values()])
    return db.execute("SELECT id FROM posts WHERE export = ? AND post_id = ?", [export, post_id]).fetchone()[0]


def replace_links(db: sqlite_utils.Database, post: int, links: list[tuple[str | None, str | None, int | None]]) -> None:
    """A post's image links, in order: (url, sha256, image id)."""
    db.execute("DELETE FROM post_images WHERE post = ?", [post])
    db.conn.executemany("INSERT INTO post_images (post, position, url, sha256, image_id) VALUES (?, ?, ?, ?, ?)",
                        [(post, i, *link) for i, link in enumerate(links, 1)])


def record_rows(db: sqlite_utils.Database, export: str, rows: Iterable[ExportRow | BadRow],
                summary: ExportSummary, on_bad: Callable[[int, str], None], batch: int = 500) -> None:
    """Upsert the posts of ``rows`` (export file name ``export``) and replace their links;
    record unreadable rows in ``export_errors``. One transaction per ``batch`` posts."""
    migrate(db, "posts")
    known = {c.lower(): c for c in db["posts"].columns_dict}
    pending = 0
    db.execute("BEGIN")
    try:
        for r in rows:
            if isinstance(r, BadRow):
                record_bad(db, export, r.row, r.reason)
                summary.bad_rows += 1
                on_bad(r.row, r.reason)
                continue
            db.execute("DELETE FROM export_errors WHERE export = ? AND row = ?", [export, r.row])
            post = upsert_post(db, export, r.post_id, r.row, r.columns, known)
            replace_links(db, post, [(url, None, None) for url in r.urls])
            summary.posts += 1
            summary.links += len(r.urls)
            pending += 1
            if pending >= batch:
                db.execute("COMMIT")
                db.execute("BEGIN")
                pending = 0
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def record_bad(db: sqlite_utils.Database, export: str, row: int, reason: str) -> None:
    db.execute("INSERT OR REPLACE INTO export_errors (export, row, reason, time) VALUES (?, ?, ?, ?)",
               [export, row, reason, now()])


def cached_sha256s(cache: str) -> set[str]:
    """The sha256 of every file in the cache folder (by name)."""
    out: set[str] = set()
    if not os.path.isdir(cache):
        return out
    for sub in os.scandir(cache):
        if sub.is_dir() and len(sub.name) == 2:
            out.update(os.path.splitext(f.name)[0] for f in os.scandir(sub.path))
    return out


def pending_urls(db: sqlite_utils.Database, export: str, cache: str, retry_failed: bool,
                 summary: ExportSummary) -> list[str]:
    """The URLs of ``export``'s posts still to fetch: never tried, failed (only with
    ``retry_failed``), or downloaded but gone from the cache folder."""
    present = cached_sha256s(cache)
    todo = []
    for url, status, sha in db.execute(
            "SELECT DISTINCT pi.url, d.status, d.sha256 FROM post_images pi JOIN posts p ON p.id = pi.post "
            "LEFT JOIN downloads d ON d.url = pi.url WHERE p.export = ? ORDER BY pi.post, pi.position", [export]):
        summary.urls += 1
        if status == "ok" and sha in present:
            summary.cached += 1
        elif status == "failed" and not retry_failed:
            summary.failed_before += 1
        else:
            todo.append(url)
    return todo


def record_download(db: sqlite_utils.Database, f: Fetched) -> None:
    row = {**f.as_row(), "fetched": now()}
    with db.conn:
        db.execute(f"INSERT OR REPLACE INTO downloads ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                   list(row.values()))


def link(db: sqlite_utils.Database) -> None:
    """Point every link at its downloaded file and, once loaded, its image."""
    with db.conn:
        db.execute("""UPDATE post_images SET
                        sha256 = (SELECT d.sha256 FROM downloads d WHERE d.url = post_images.url AND d.status = 'ok'),
                        image_id = (SELECT i.id FROM downloads d JOIN images i ON i.sha256 = d.sha256
                                    WHERE d.url = post_images.url AND d.status = 'ok')
                      WHERE url IS NOT NULL""")  # a sidecar's links name their image directly
