"""Which columns of ``posts`` (written by ``load --from``) are its date, author and
hashtags, and the SQL that reads them: one home for the rule that the plugin's pages,
ready-made queries and facets share.

The rule: a configured name (plugin settings ``post_date_column``, ``post_author_column``,
``post_hashtags_column``) when ``posts`` has that column; else the normalised columns
``created``, ``author`` and ``hashtags`` that every load since posts schema v2 fills.

A database of posts schema v1 that is served read-only has no normalised columns; for it
(and for the v2 migration, which fills them from it) the older guess stays, as
:func:`legacy_columns`: a configured name (plugin settings ``post_date_column``, ``post_author_column``,
``post_hashtags_column``) when ``posts`` has that column; else, for the date, the first
kept column whose values (a sample) are all ISO 8601 dates (``is_date_sql``); for the
author the first of ``author``, ``author_username``, ``username``, ``user``; for the
hashtags ``hashtags`` then ``tags`` (names compared without case).
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

AUTHOR_NAMES = ("author", "author_username", "username", "user")
HASHTAG_NAMES = ("hashtags", "tags")
OWN = ("id", "export", "post_id", "row", "loaded")  # posts' own columns since v1 (ingest/posts.py)
NORMALISED = ("platform", "permalink", "author", "created", "text", "hashtags", "image_count")  # since v2
FIXED = OWN + NORMALISED  # a kept export column named like one of these gets a "_" after it
SAMPLE = 200  # values looked at to decide that a column holds dates


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class PostColumns:
    date: str | None = None
    author: str | None = None
    hashtags: str | None = None

    def as_dict(self) -> dict:
        return {"date": self.date, "author": self.author, "hashtags": self.hashtags}


def has_posts(conn: sqlite3.Connection) -> bool:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {"posts", "post_images"} <= names


def is_date_sql(value: str) -> str:
    """The SQL test that ``value`` is a date: ISO 8601 text (``YYYY-MM-DD...``, as load
    --from writes dates) that SQLite's date() reads. date() alone would also read a number,
    or digits such as ``007``, as a Julian day."""
    return (f"(typeof({value}) = 'text' AND {value} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' "
            f"AND date({value}) IS NOT NULL)")


def _is_dates(conn: sqlite3.Connection, column: str) -> bool:
    # Every sampled non-empty value is a date; a column with no values is no date column.
    q = quote(column)
    n, ok = conn.execute(
        f"SELECT count(*), sum({is_date_sql('v')}) FROM "
        f"(SELECT {q} AS v FROM posts WHERE {q} IS NOT NULL AND {q} != '' LIMIT {SAMPLE})").fetchone()
    return bool(n) and n == ok


def post_columns(conn: sqlite3.Connection, date: str | None = None, author: str | None = None,
                 hashtags: str | None = None) -> PostColumns:
    """The date, author and hashtags columns of ``posts`` (None where there is none), the
    configured names first, then the normalised ones. No ``posts`` table: all None."""
    if not has_posts(conn):
        return PostColumns()
    cols = {r[1].lower(): r[1] for r in conn.execute("PRAGMA table_info(posts)")}
    if "created" not in cols:
        return legacy_columns(conn, date, author, hashtags)
    return PostColumns(cols.get((date or "created").lower()), cols.get((author or "author").lower()),
                       cols.get((hashtags or "hashtags").lower()))


def facets(conn: sqlite3.Connection, cols: PostColumns) -> list:
    """Datasette's default facets of the ``posts`` table: by day of the date column, by
    author, and (posts schema v2) by ``platform`` and by each hashtag of the ``hashtags``
    JSON lists (Datasette's array facet, ``_facet_array``)."""
    if not has_posts(conn):
        return []
    have = {r[1] for r in conn.execute("PRAGMA table_info(posts)")}
    out: list = [{"date": cols.date}] if cols.date else []
    out += [cols.author] if cols.author else []
    if "created" in have:  # v2: the normalised columns are there
        out.append("platform")
        if cols.hashtags == "hashtags":  # the normalised JSON list, not a configured text column
            out.append({"array": "hashtags"})
    return out


def legacy_columns(conn: sqlite3.Connection, date: str | None = None, author: str | None = None,
                   hashtags: str | None = None) -> PostColumns:
    """The guess of posts schema v1 (see the module's docstring)."""
    if not has_posts(conn):
        return PostColumns()
    cols = [r[1] for r in conn.execute("PRAGMA table_info(posts)")]
    by_lower = {c.lower(): c for c in cols}
    kept = [c for c in cols if c.lower() not in OWN]

    def pick(configured: str | None, names: tuple[str, ...]) -> str | None:
        if configured:
            return by_lower.get(configured.lower())
        return next((by_lower[n] for n in names if n in by_lower), None)

    if date:
        found_date = by_lower.get(date.lower())
    else:
        found_date = next((c for c in kept if _is_dates(conn, c)), None)
    return PostColumns(found_date, pick(author, AUTHOR_NAMES), pick(hashtags, HASHTAG_NAMES))


def date_sql(column: str, alias: str = "p") -> str:
    """The SQL expression of a post's date value: the column's value when it is a date
    (``is_date_sql``), else NULL."""
    v = f"{alias}.{quote(column)}"
    return f"(CASE WHEN {is_date_sql(v)} THEN {v} END)"


def month_sql(column: str, alias: str = "p") -> str:
    """The SQL expression of a post's month (``YYYY-MM``), NULL when it is no date."""
    return f"strftime('%Y-%m', {date_sql(column, alias)})"


def hashtags_cte(column: str, posts: str = "") -> str:
    """A CTE ``post_tags(post, tag)``: each post's hashtags, from a JSON list or from
    text separated by commas or spaces; trimmed, without a leading ``#``, lower case.
    ``posts``: an SQL condition on ``posts.id`` limiting the posts read (e.g. ``IN (...)``)."""
    c = quote(column)
    only = f" AND posts.id {posts}" if posts else ""
    return f"""post_tags(post, tag) AS (
  SELECT post, lower(ltrim(trim(tag), '#')) FROM (
    WITH RECURSIVE split(post, tag, rest) AS (
      SELECT id, NULL, replace(CAST({c} AS TEXT), ' ', ',') || ',' FROM posts
      WHERE {c} IS NOT NULL AND NOT (json_valid({c}) AND json_type({c}) = 'array'){only}
      UNION ALL
      SELECT post, substr(rest, 1, instr(rest, ',') - 1), substr(rest, instr(rest, ',') + 1)
      FROM split WHERE rest != ''
    )
    SELECT post, tag FROM split WHERE tag IS NOT NULL
    UNION ALL
    SELECT posts.id, CAST(j.value AS TEXT) FROM posts,
      json_each(CASE WHEN json_valid(posts.{c}) AND json_type(posts.{c}) = 'array' THEN posts.{c} ELSE '[]' END) j
    WHERE 1{only}
  ) WHERE lower(ltrim(trim(tag), '#')) != ''
)"""
