"""What an image is called wherever a person reads it (page titles, contact sheets,
figures, network labels): one home for the rule.

An image that came from an export is named by its first post (the earliest ``created``,
then the first loaded): ``@alice · 2024-03-02 · instagram C4xYz…``, never by its cache
file's name, which is a hash. Any other image is named by its first file's path under
the folder it was loaded from (``relpath``); an image with neither, ``image N``.
"""
from __future__ import annotations

import sqlite3
from typing import Iterable

from .postcolumns import has_posts

SHORT_ID = 12  # characters of a post id shown before an ellipsis
CHUNK = 500  # ids per query (SQLite's variable limit is 999 on old builds)


def _short(post_id: str) -> str:
    # A sidecar's post id is its path: its file name says which post, the folders only
    # where it lay on the loading machine.
    post_id = post_id.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return post_id if len(post_id) <= SHORT_ID + 1 else post_id[:SHORT_ID] + "…"


def post_name(author: str | None, created: str | None, platform: str | None, post_id: str | None,
              export: str | None = None) -> str:
    """``@author · YYYY-MM-DD · platform id…``, leaving out what the post lacks."""
    parts = []
    if author:
        parts.append("@" + str(author).lstrip("@"))
    if created:
        parts.append(str(created)[:10])
    where = platform or export
    if post_id or where:
        parts.append(" ".join(p for p in (where, _short(str(post_id)) if post_id else None) if p))
    return " · ".join(parts) or "post"


def _has_normalised(conn: sqlite3.Connection) -> bool:
    return "created" in {r[1] for r in conn.execute("PRAGMA table_info(posts)")}


def first_post_order(conn: sqlite3.Connection) -> str:
    """The SQL order (over ``posts p`` and ``post_images pi``) whose first row is an image's
    first post: the earliest ``created``, then the first loaded, then its first link."""
    return ("p.created IS NULL, p.created, p.id, pi.position" if _has_normalised(conn)
            else "p.id, pi.position")


def first_post_sql(conn: sqlite3.Connection) -> str:
    """A query of ``(image_id, post)``: each linked image's first post (``posts.id``)."""
    return ("SELECT image_id, post FROM (SELECT pi.image_id AS image_id, p.id AS post, row_number() OVER "
            f"(PARTITION BY pi.image_id ORDER BY {first_post_order(conn)}) AS n FROM post_images pi "
            "JOIN posts p ON p.id = pi.post WHERE pi.image_id IS NOT NULL) WHERE n = 1")


def first_posts(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, dict]:
    """For each image of ``ids`` linked to a post: that first post's ``id``, ``post_id``,
    ``export``, ``platform``, ``permalink``, ``author``, ``created``, ``url`` (the image's
    URL in it) and ``posts`` (how many posts link the image)."""
    ids = list(dict.fromkeys(int(i) for i in ids))
    if not ids or not has_posts(conn):
        return {}
    norm = _has_normalised(conn)
    cols = ("p.platform, p.permalink, p.author, p.created" if norm else "NULL, NULL, NULL, NULL")
    order = first_post_order(conn)
    out: dict[int, dict] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        counts = dict(conn.execute(
            f"SELECT image_id, count(DISTINCT post) FROM post_images WHERE image_id IN ({marks}) GROUP BY image_id",
            chunk).fetchall())
        for row in conn.execute(
                f"SELECT pi.image_id, p.id, p.post_id, p.export, {cols}, pi.url FROM post_images pi "
                f"JOIN posts p ON p.id = pi.post WHERE pi.image_id IN ({marks}) "
                f"ORDER BY pi.image_id, {order}", chunk):
            if row[0] in out:
                continue
            out[row[0]] = {"id": row[1], "post_id": row[2], "export": row[3], "platform": row[4],
                           "permalink": row[5], "author": row[6], "created": row[7], "url": row[8],
                           "posts": counts.get(row[0], 0)}
    return out


def known_names(conn: sqlite3.Connection, ids: Iterable[int], *, posts: bool = True,
                paths: bool = True) -> dict[int, str]:
    """The name of each image of ``ids`` that has one: by its first post (``posts``: the
    reader may see posts), else by its first file's ``relpath`` (``paths``: the reader may
    see file names). An image with neither is left out."""
    ids = list(dict.fromkeys(int(i) for i in ids))
    out = ({i: post_name(p["author"], p["created"], p["platform"], p["post_id"], p["export"])
            for i, p in first_posts(conn, ids).items()} if posts else {})
    rest = [i for i in ids if i not in out] if paths else []
    for start in range(0, len(rest), CHUNK):
        chunk = rest[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        for image_id, relpath in conn.execute(
                f"SELECT image_id, relpath FROM files WHERE id IN (SELECT min(id) FROM files "
                f"WHERE image_id IN ({marks}) GROUP BY image_id)", chunk):
            out[image_id] = relpath
    return out


def image_names(conn: sqlite3.Connection, ids: Iterable[int], *, posts: bool = True,
                paths: bool = True) -> dict[int, str]:
    """The name of each image of ``ids`` (see the module's docstring); ``image N`` for one
    :func:`known_names` cannot name."""
    ids = list(dict.fromkeys(int(i) for i in ids))
    out = known_names(conn, ids, posts=posts, paths=paths)
    return {i: out.get(i) or f"image {i}" for i in ids}
