"""What links an image to the people and words of the posts it came in: the two sides of
``--network hashtags`` and ``--network authors`` (4CAT's image networks' bipartite shape).

A link's weight is how many of the image's posts carry it: an image shared by three posts,
two of them tagged ``#cats``, has the link (image, ``cats``) of weight 2. A post that links
the image twice (two positions), or names a tag twice, counts once. The posts' normalised
columns (posts schema v2: ``hashtags`` a JSON list of lower-case tags without '#',
``author`` without '@') are what is read.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Iterable

from ..store.postcolumns import has_posts
from .selection import ExportError

Links = dict[int, list[tuple[str, float]]]  # image id -> (hashtag or author, weight), heaviest first

_HASHTAGS = """
    SELECT pi.image_id, h.value AS tag, count(DISTINCT p.id) AS n
    FROM post_images pi JOIN posts p ON p.id = pi.post,
         json_each(CASE WHEN json_valid(p.hashtags) AND json_type(p.hashtags) = 'array'
                        THEN p.hashtags ELSE '[]' END) h
    WHERE pi.image_id IN (SELECT value FROM json_each(?)) AND h.type = 'text' AND h.value != ''
    GROUP BY pi.image_id, h.value ORDER BY pi.image_id, n DESC, h.value"""

_AUTHORS = """
    SELECT pi.image_id, CAST(p.author AS TEXT) AS who, count(DISTINCT p.id) AS n
    FROM post_images pi JOIN posts p ON p.id = pi.post
    WHERE pi.image_id IN (SELECT value FROM json_each(?)) AND p.author IS NOT NULL AND p.author != ''
    GROUP BY pi.image_id, who ORDER BY pi.image_id, n DESC, who"""


def check(conn: sqlite3.Connection, network: str) -> None:
    """Refuse (:class:`ExportError`) a posts network of a database it cannot be made of."""
    if not has_posts(conn):
        raise ExportError(f"--network {network} needs posts: load the images from a platform export "
                          "(`imageclust load --from EXPORT`)")
    cols = {r[1].lower() for r in conn.execute("PRAGMA table_info(posts)")}
    if not {"hashtags", "author"} <= cols:
        raise ExportError(f"--network {network} needs the posts' normalised columns, which this database "
                          "predates: run `imageclust load --from` on it once with this version")


def links(conn: sqlite3.Connection, network: str, ids: Iterable[int]) -> Links:
    """image id -> its hashtags (``network`` 'hashtags') or authors ('authors') with weights."""
    sql = _HASHTAGS if network == "hashtags" else _AUTHORS
    out: Links = {}
    for iid, key, n in conn.execute(sql, [json.dumps([int(i) for i in ids])]):
        out.setdefault(iid, []).append((str(key), float(n)))
    return out


def hashtag_text(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, str]:
    """image id -> its posts' hashtags as one text (most used first, then A-Z), ``, ``-joined."""
    return {iid: ", ".join(t for t, _ in pairs) for iid, pairs in links(conn, "hashtags", ids).items()}


def has_hashtags_column(conn: sqlite3.Connection) -> bool:
    return has_posts(conn) and "hashtags" in {r[1].lower() for r in conn.execute("PRAGMA table_info(posts)")}
