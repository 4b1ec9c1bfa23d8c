"""What the image and cluster pages show of the posts an image appears in (tables of
``load --from``): plain dicts from read-only SQL, and the cluster's timeline as a tiny
server-rendered SVG. Which columns are the date, author and hashtags: ``store.postcolumns``.

The timeline's bins follow its span (first to last dated post): days up to
:data:`DAYS_UP_TO` days, ISO weeks (from Monday) up to :data:`WEEKS_UP_TO`, else months;
every bin from the first to the last is drawn, empty ones as gaps."""
from __future__ import annotations

import datetime as dt
import sqlite3

from markupsafe import Markup, escape

from ..store import imagenames
from ..store.cache import TokenCache
from ..store.collection import change_token
from ..store.postcolumns import PostColumns, date_sql, has_posts, hashtags_cte, month_sql, post_columns, quote
from .settings import Settings

TOP = 10  # hashtags and authors listed on a cluster page
DAYS_UP_TO = 60    # days of span drawn as one bar a day
WEEKS_UP_TO = 366  # ... as one bar a week; longer spans one bar a month
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
    post = imagenames.first_posts(conn, [image_id]).get(image_id)
    link = post and post["permalink"]
    # Only a web link is linked: an export's text could say javascript:...
    link = link if isinstance(link, str) and link.lower().startswith(("https://", "http://")) else None
    return {"posts": n, "first": first, "last": last, "columns": cols.as_dict(),
            "first_post": None if post is None else {**{k: post[k] for k in (
                "post_id", "export", "platform", "author", "created")}, "permalink": link}}


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
    out: dict = {"posts": n, "columns": cols.as_dict(), "months": [], "days": [], "authors": [], "hashtags": []}
    if cols.date:
        m = month_sql(cols.date)
        out["months"] = [{"month": r[0], "posts": r[1]} for r in conn.execute(
            f"SELECT {m} AS month, count(*) FROM posts p WHERE p.id {members} AND {m} IS NOT NULL "
            "GROUP BY month ORDER BY month", arg)]
        d = f"date({date_sql(cols.date)})"
        out["days"] = [{"day": r[0], "posts": r[1]} for r in conn.execute(
            f"SELECT {d} AS day, count(*) FROM posts p WHERE p.id {members} AND {d} IS NOT NULL "
            "GROUP BY day ORDER BY day", arg)]
    out["timeline"] = timeline(out["days"])
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


def timeline(days: list[dict]) -> dict:
    """Posts per bin (``days``: ``{"day": "YYYY-MM-DD", "posts": n}``, in order): ``unit``
    (``day``, ``week`` or ``month``, by the span: see the module) and ``bins``, every bin
    from the first to the last (``bin``: the day, ``2024-W09`` or ``2024-03``; ``start``
    and ``end``: its first and last day; ``posts``)."""
    if not days:
        return {"unit": None, "bins": []}
    first, last = dt.date.fromisoformat(days[0]["day"]), dt.date.fromisoformat(days[-1]["day"])
    span = (last - first).days
    unit = "day" if span <= DAYS_UP_TO else "week" if span <= WEEKS_UP_TO else "month"

    def start_of(d: dt.date) -> dt.date:
        return d if unit == "day" else d - dt.timedelta(days=d.weekday()) if unit == "week" else d.replace(day=1)

    def after(d: dt.date) -> dt.date:
        if unit == "month":
            return d.replace(year=d.year + d.month // 12, month=d.month % 12 + 1)
        return d + dt.timedelta(days=1 if unit == "day" else 7)

    counts: dict[dt.date, int] = {}
    for x in days:
        key = start_of(dt.date.fromisoformat(x["day"]))
        counts[key] = counts.get(key, 0) + int(x["posts"])
    bins, d = [], start_of(first)
    while d <= last and len(bins) < 1200:  # a century of months at most
        end = after(d) - dt.timedelta(days=1)
        name = (d.isoformat() if unit == "day" else "%04d-W%02d" % d.isocalendar()[:2] if unit == "week"
                else d.strftime("%Y-%m"))
        bins.append({"bin": name, "start": d.isoformat(), "end": end.isoformat(), "posts": counts.get(d, 0)})
        d = after(d)
    return {"unit": unit, "bins": bins}


def timeline_svg(line: dict, width: int = 360, height: int = 60) -> Markup:
    """A :func:`timeline` as an inline SVG bar chart: each bar titled with its bin and
    count, the first and last bins and the unit ("posts per week") under the bars."""
    series, unit = line["bins"], line["unit"]
    if not series:
        return Markup("")
    top = max(m["posts"] for m in series) or 1
    bar = width / len(series)
    parts = [f'<svg class="ic-timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 14}" '
             f'viewBox="0 0 {width} {height + 14}" role="img" aria-label="posts per {unit}" data-unit="{unit}">']
    for i, m in enumerate(series):
        h = round(height * m["posts"] / top, 2)
        when = m["bin"] if unit != "week" else f'{m["bin"]} ({m["start"]} to {m["end"]})'
        parts.append(f'<rect x="{round(i * bar, 2)}" y="{round(height - h, 2)}" width="{round(max(bar - 1, 0.5), 2)}" '
                     f'height="{h}" fill="#4a7fb5"><title>{escape(when)}: {int(m["posts"])} post{"" if m["posts"] == 1 else "s"}</title></rect>')
    parts.append(f'<text x="0" y="{height + 12}" font-size="10">{escape(series[0]["bin"])}</text>')
    parts.append(f'<text x="{width / 2}" y="{height + 12}" font-size="10" text-anchor="middle" '
                 f'class="ic-timeline-unit">posts per {unit}</text>')
    if len(series) > 1:
        parts.append(f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end">'
                     f'{escape(series[-1]["bin"])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
