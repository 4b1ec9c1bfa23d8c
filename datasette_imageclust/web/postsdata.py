"""What the image and cluster pages show of the posts an image appears in (tables of
``load --from``): plain dicts from read-only SQL, and the cluster's timeline as a tiny
server-rendered SVG. Which columns are the date, author and hashtags: ``store.postcolumns``."""
from __future__ import annotations

import sqlite3

from markupsafe import Markup, escape

from ..store.cache import TokenCache
from ..store.collection import change_token
from ..store.postcolumns import PostColumns, date_sql, has_posts, hashtags_cte, month_sql, post_columns, quote
from .settings import Settings

TOP = 10  # hashtags and authors listed on a cluster page
_COLUMNS = TokenCache(16)


def columns(conn: sqlite3.Connection, cfg: Settings) -> PostColumns:
    """``store.postcolumns``'s rule with the plugin settings (remembered until the database
    changes: 0.65 asks for its canned queries, which name the columns, on every page)."""
    names = (cfg.post_date_column, cfg.post_author_column, cfg.post_hashtags_column)
    return _COLUMNS.get(change_token(conn), ("post_columns", names), lambda: post_columns(conn, *names))


def image_posts(conn: sqlite3.Connection, image_id: int, cfg: Settings) -> dict | None:
    """How an image circulates: the posts linking it, first and last by the date column.
    None when the database has no posts tables."""
    if not has_posts(conn):
        return None
    cols = columns(conn, cfg)
    span = f"min({date_sql(cols.date)}), max({date_sql(cols.date)})" if cols.date else "NULL, NULL"
    n, first, last = conn.execute(
        f"SELECT count(DISTINCT p.id), {span} FROM post_images pi JOIN posts p ON p.id = pi.post "
        "WHERE pi.image_id = ?", [image_id]).fetchone()
    return {"posts": n, "first": first, "last": last, "columns": cols.as_dict()}


def image_posts_sql(cols: PostColumns) -> str:
    """The posts of image ``:image``, for a link to Datasette's query page."""
    return ("SELECT p.*, pi.position, pi.url FROM post_images pi JOIN posts p ON p.id = pi.post "
            f"WHERE pi.image_id = cast(:image AS integer) ORDER BY {_order(cols)}")


def cluster_posts_sql(cols: PostColumns) -> str:
    """The posts the images of cluster ``:cluster`` appear in, for a link to Datasette's query page."""
    return ("SELECT p.* FROM posts p WHERE p.id IN (SELECT pi.post FROM post_images pi JOIN cluster_members m "
            f"ON m.image_id = pi.image_id WHERE m.cluster_id = cast(:cluster AS integer)) ORDER BY {_order(cols)}")


def _order(cols: PostColumns) -> str:
    # The plain column (readable in the link; values that are no date sort first).
    return f"p.{quote(cols.date)}, p.id" if cols.date else "p.id"


def cluster_posts(conn: sqlite3.Connection, cluster_id: int, cfg: Settings) -> dict | None:
    """The posts a cluster's images appear in: how many, per month, top hashtags and
    authors. None when the database has no posts tables."""
    if not has_posts(conn):
        return None
    cols = columns(conn, cfg)
    members = ("IN (SELECT DISTINCT pi.post FROM post_images pi JOIN cluster_members m ON m.image_id = pi.image_id "
               "WHERE m.cluster_id = :cluster)")
    arg = {"cluster": cluster_id}
    n = conn.execute(f"SELECT count(*) FROM posts p WHERE p.id {members}", arg).fetchone()[0]
    out: dict = {"posts": n, "columns": cols.as_dict(), "months": [], "authors": [], "hashtags": []}
    if cols.date:
        m = month_sql(cols.date)
        out["months"] = [{"month": r[0], "posts": r[1]} for r in conn.execute(
            f"SELECT {m} AS month, count(*) FROM posts p WHERE p.id {members} AND {m} IS NOT NULL "
            "GROUP BY month ORDER BY month", arg)]
    if cols.author:
        a = f"p.{quote(cols.author)}"
        out["authors"] = [{"value": r[0], "posts": r[1]} for r in conn.execute(
            f"SELECT CAST({a} AS TEXT), count(*) AS n FROM posts p WHERE p.id {members} AND {a} IS NOT NULL "
            f"AND {a} != '' GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP}", arg)]
    if cols.hashtags:
        # Only this cluster's posts are split into hashtags (not every post of the database).
        out["hashtags"] = [{"value": r[0], "posts": r[1]} for r in conn.execute(
            f"WITH {hashtags_cte(cols.hashtags, members)} SELECT tag, count(DISTINCT post) AS n FROM post_tags "
            f"GROUP BY tag ORDER BY n DESC, tag LIMIT {TOP}", arg)]
    return out


def month_range(months: list[dict]) -> list[dict]:
    """Every month from the first to the last (empty ones as 0), so gaps show as gaps."""
    if not months:
        return []
    counts = {m["month"]: m["posts"] for m in months}
    y, mo = map(int, months[0]["month"].split("-"))
    end = months[-1]["month"]
    out = []
    while len(out) < 1200:  # a century of months at most: a stray date cannot make it unbounded
        key = f"{y:04d}-{mo:02d}"
        out.append({"month": key, "posts": counts.get(key, 0)})
        if key >= end:
            break
        y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
    return out


def timeline_svg(months: list[dict], width: int = 360, height: int = 60) -> Markup:
    """Posts per month as an inline SVG bar chart (each bar titled with its month and count)."""
    series = month_range(months)
    if not series:
        return Markup("")
    top = max(m["posts"] for m in series) or 1
    bar = width / len(series)
    parts = [f'<svg class="ic-timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 14}" '
             f'viewBox="0 0 {width} {height + 14}" role="img" aria-label="posts per month">']
    for i, m in enumerate(series):
        h = round(height * m["posts"] / top, 2)
        parts.append(f'<rect x="{round(i * bar, 2)}" y="{round(height - h, 2)}" width="{round(max(bar - 1, 0.5), 2)}" '
                     f'height="{h}" fill="#4a7fb5"><title>{escape(m["month"])}: {int(m["posts"])} post{"" if m["posts"] == 1 else "s"}</title></rect>')
    parts.append(f'<text x="0" y="{height + 12}" font-size="10">{escape(series[0]["month"])}</text>')
    if len(series) > 1:
        parts.append(f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end">'
                     f'{escape(series[-1]["month"])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
