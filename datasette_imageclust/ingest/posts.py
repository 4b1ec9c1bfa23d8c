"""Writing an export's posts, their image links and the downloads into the database
(component ``posts``), and linking the links to the images a load made of them."""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import sqlite_utils

from ..store.postcolumns import FIXED, quote  # posts' own columns: an export's get a "_" after
from ..store.schema import migrate, now
from .download import Fetched
from .exports import BadRow, ExportRow
from .formats.base import Post



@dataclass
class ExportSummary:
    """What ``load --from`` did before the folder load of the cache."""
    format: str | None = None  # the recognised format's title (None: mapped by --url-column)
    detail: str = ""  # e.g. the platform
    posts: int = 0  # distinct posts read (new or updated)
    merged: int = 0  # rows whose post id an earlier row had: their links merged into that post
    bad_rows: int = 0  # rows recorded in export_errors and skipped
    links: int = 0  # image links in those posts (after merging)
    urls: int = 0  # distinct URLs among them
    cached: int = 0  # URLs downloaded before (not fetched again)
    fetched: int = 0  # URLs downloaded by this run
    failed: int = 0  # URLs that failed in this run
    failed_before: int = 0  # URLs that failed in an earlier run (not retried without --retry-failed)
    unpacked: int = 0  # images taken from a ZIP instead of downloaded
    interrupted: bool = False
    problem: str | None = None  # why the run loaded no image (the CLI exits 1 saying it)
    load: dict = field(default_factory=dict)  # the folder load's summary

    def as_dict(self) -> dict:
        return asdict(self)


MAX_NEW_COLUMNS = 200  # kept columns one row may add (a row of thousands of keys is hostile)
MAX_COLUMNS = 1500  # kept columns in all: SQLite allows 2000 in a table


def column_name(name: str) -> str:
    """The posts column for an export column (never one of posts' own)."""
    if "\x00" in name:
        raise ValueError("a column name holds a NUL character")
    name = name.strip() or "unnamed"
    while name.lower() in FIXED:
        name += "_"
    return name


def _ensure_columns(db: sqlite_utils.Database, names: Iterable[str], known: dict[str, str]) -> None:
    new = [n for n in dict.fromkeys(names) if n.lower() not in known]
    if len(new) > MAX_NEW_COLUMNS:
        raise ValueError(f"{len(new)} new columns in one row (at most {MAX_NEW_COLUMNS})")
    if len(known) + len(new) > MAX_COLUMNS:
        raise ValueError(f"would make posts wider than {MAX_COLUMNS} columns (keep fewer with --columns)")
    for name in new:
        # No declared type: SQLite keeps each value as given (a number stays a number).
        db.execute(f"ALTER TABLE posts ADD COLUMN {quote(name)}")
        known[name.lower()] = name


def _normalised(post: Post | None, links: int) -> dict[str, Any]:
    if post is None:
        return {"image_count": links}
    return {"platform": post.platform, "permalink": post.permalink, "author": post.author,
            "created": post.created, "text": post.text,
            "hashtags": json.dumps(post.hashtags, ensure_ascii=False) if post.hashtags else None,
            "image_count": links}


def upsert_post(db: sqlite_utils.Database, export: str, post_id: str, row: int, columns: dict,
                known: dict[str, str], post: Post | None = None, links: int = 0) -> int:
    """Insert or update a post (its kept ``columns`` added to the table as needed, its
    normalised fields from ``post``): its id."""
    cols = {column_name(k): v for k, v in columns.items()}
    _ensure_columns(db, cols, known)
    values = {**{known[k.lower()]: v for k, v in cols.items()}, **_normalised(post, links)}
    names = list(values)
    sets = "".join(f", {quote(n)} = excluded.{quote(n)}" for n in names)
    db.execute(
        f"INSERT INTO posts (export, post_id, row, loaded{''.join(', ' + quote(n) for n in names)}) "
        f"VALUES (?, ?, ?, ?{', ?' * len(names)}) ON CONFLICT (export, post_id) DO UPDATE SET "
        f"row = excluded.row{sets}",
        [export, post_id, row, now(), *values.values()])
    return db.execute("SELECT id FROM posts WHERE export = ? AND post_id = ?", [export, post_id]).fetchone()[0]


def replace_links(db: sqlite_utils.Database, post: int, links: list[tuple[str | None, str | None, int | None]]) -> None:
    """A post's image links, in order: (url, sha256, image id)."""
    db.execute("DELETE FROM post_images WHERE post = ?", [post])
    db.conn.executemany("INSERT INTO post_images (post, position, url, sha256, image_id) VALUES (?, ?, ?, ?, ?)",
                        [(post, i, *link) for i, link in enumerate(links, 1)])


def _merge_into(db: sqlite_utils.Database, pid: int, r: ExportRow) -> None:
    """A post met again in one export: its links appended (each URL once) and the first
    row's empty normalised fields filled; the first row's kept columns stay."""
    urls = [u for (u,) in db.execute("SELECT url FROM post_images WHERE post = ? ORDER BY position", [pid])]
    merged = list(dict.fromkeys([*urls, *r.urls]))
    db.conn.executemany("INSERT INTO post_images (post, position, url) VALUES (?, ?, ?)",
                        [(pid, i, u) for i, u in enumerate(merged[len(urls):], len(urls) + 1)])
    p = r.post or Post(None)
    (tags,) = db.execute("SELECT hashtags FROM posts WHERE id = ?", [pid]).fetchone()
    tags = list(dict.fromkeys([*(json.loads(tags) if tags else []), *p.hashtags]))
    db.execute("UPDATE posts SET platform = coalesce(platform, ?), permalink = coalesce(permalink, ?), "
               "author = coalesce(author, ?), created = coalesce(created, ?), text = coalesce(text, ?), "
               "hashtags = ?, image_count = ? WHERE id = ?",
               [p.platform, p.permalink, p.author, p.created, p.text,
                json.dumps(tags, ensure_ascii=False) if tags else None, len(merged), pid])


def record_rows(db: sqlite_utils.Database, export: str, rows: Iterable[ExportRow | BadRow],
                summary: ExportSummary, on_bad: Callable[[int, str], None], batch: int = 500) -> None:
    """Upsert the posts of ``rows`` (export file name ``export``) and replace their links;
    record unreadable rows in ``export_errors``. A post id met again merges its links
    into the first row's post (counted in ``summary.merged``). One transaction per
    ``batch`` posts; a row that cannot be written is rolled back alone and recorded."""
    migrate(db)  # the images a load will link them to, even if no image ever comes
    migrate(db, "posts")
    known = {c.lower(): c for c in db["posts"].columns_dict}
    seen: dict[str, int] = {}  # post id -> posts.id, for this run
    pending = 0

    def bad(row: int, reason: str) -> None:
        record_bad(db, export, row, reason)
        summary.bad_rows += 1
        on_bad(row, reason)

    db.execute("BEGIN")
    try:
        for r in rows:
            if isinstance(r, BadRow):
                bad(r.row, r.reason)
                continue
            db.execute("DELETE FROM export_errors WHERE export = ? AND row = ?", [export, r.row])
            db.execute("SAVEPOINT post")
            try:
                if r.post_id in seen:
                    _merge_into(db, seen[r.post_id], r)
                    summary.merged += 1
                else:
                    urls = list(dict.fromkeys(r.urls))
                    seen[r.post_id] = upsert_post(db, export, r.post_id, r.row, r.columns, known, r.post, len(urls))
                    replace_links(db, seen[r.post_id], [(url, None, None) for url in urls])
            except (sqlite3.Error, ValueError, OverflowError, RecursionError) as e:
                db.execute("ROLLBACK TO post")
                db.execute("RELEASE post")
                known.clear()  # an ALTER TABLE rolled back with the row
                known.update({c[1].lower(): c[1] for c in db.execute("PRAGMA table_info(posts)").fetchall()})
                bad(r.row, f"cannot be stored: {e}"[:300])
                continue
            db.execute("RELEASE post")
            pending += 1
            if pending >= batch:
                db.execute("COMMIT")
                db.execute("BEGIN")
                pending = 0
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    summary.posts = len(seen)
    summary.links = db.execute("SELECT count(*) FROM post_images pi JOIN posts p ON p.id = pi.post "
                               "WHERE p.export = ?", [export]).fetchone()[0]


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


def _kind_of_failure(error: str) -> str:
    if "--allow-private" in error:
        return "refused as private, loopback or link-local addresses (--allow-private fetches them)"
    for start, kind in (("HTTP ", None), ("timed out", "timed out"), ("only http and https", "not http(s) URLs"),
                        ("not an image", "not images (an HTML page, a login wall)"),
                        ("connection failed", "connection failed"), ("too large", "too large (--max-size)"),
                        ("TLS error", "TLS errors"), ("not a valid URL", "not valid URLs")):
        if error.startswith(start):
            return kind or error.split(" (after")[0]
    return error.split(":")[0]


def nothing_loaded(db: sqlite_utils.Database, export: str, s: ExportSummary) -> str | None:
    """Why this run of ``export`` has no image to load (None when it has some): no
    posts, no URLs, or every URL failed -- then the failures, counted by kind."""
    if s.posts == 0:
        return f"no post could be read from {export}" + (
            f" ({s.bad_rows} unreadable rows: see the export_errors table)" if s.bad_rows else "")
    if s.urls == 0:
        return f"the {s.posts} posts of {export} hold no image URLs" + (
            "" if s.format else " (is --url-column the column of image URLs?)")
    if s.fetched or s.cached or s.unpacked:
        return None
    kinds: dict[str, int] = {}
    for (error,) in db.execute(
            "SELECT d.error FROM downloads d WHERE d.status = 'failed' AND d.url IN "
            "(SELECT pi.url FROM post_images pi JOIN posts p ON p.id = pi.post WHERE p.export = ?)", [export]):
        kind = _kind_of_failure(error or "failed")
        kinds[kind] = kinds.get(kind, 0) + 1
    shown = "; ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    return f"no image could be fetched of the {s.urls} URLs: {shown or 'none was tried'}"
