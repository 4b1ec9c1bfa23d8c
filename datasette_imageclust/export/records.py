"""One record per selected image, read in chunks: what the tables, the archive manifest
and the network nodes all describe an image with (so they agree)."""
from __future__ import annotations

import json
from typing import Iterator

from ..store.collection import ImageCollection, raw_connection
from ..store.connection import Connection
from ..store.imagenames import first_posts
from ..store.postcolumns import FIXED, has_posts
from .selection import Selection

CHUNK = 500  # images read per round of queries: memory stays flat whatever the selection's size

#: The columns of a record, in order (``tabular`` writes them; README "Exporting" lists them).
COLUMNS = ("image_id", "path", "paths", "path_escaped", "sha256", "run", "cluster_id", "cluster_label", "distance",
           "rank", "representative", "x", "y", "tags", "description", "taken", "camera", "format", "width",
           "height", "url", "post_url", "author", "created", "posts", "post_ids", "first_post")
#: The columns that come from posts (a database without posts leaves them empty).
POST_COLUMNS = ("url", "post_url", "author", "created", "posts", "post_ids", "first_post")


def records(db: Connection, selection: Selection, *, chunk: int = CHUNK,
            omit: frozenset[str] = frozenset()) -> Iterator[dict]:
    """Yield one dict per image of ``selection`` (keys :data:`COLUMNS`, in export order).

    ``path`` is the first of the image's files (by path) as the store keeps it: readable
    text, with the bytes of a name that is not UTF-8 as ``\\xNN`` (then ``path_escaped``);
    ``paths`` every file with this content. ``tags`` are (tag, score) pairs of the default
    tag source, ``description`` the one the pages show; ``x``/``y`` from the default layout.
    The post columns (databases from ``load --from``) describe the image's first post, as
    :func:`..store.imagenames.first_posts` chooses it (the earliest ``created``, then the first
    loaded): ``url`` (the image's URL in it), ``post_url`` (its permalink), ``author``,
    ``created`` (ISO 8601 UTC text); then ``posts`` (how many posts link the image),
    ``post_ids`` (their ids in the export, in load order) and ``first_post`` (that first
    post's kept columns).
    ``omit`` ("map", "tags", "descriptions", "posts"): leave those columns empty (a web actor
    may not view their tables).
    """
    col = ImageCollection(db)
    conn = raw_connection(db)
    run = selection.run
    layout = None if "map" in omit else col.layout()
    tag_source = None if "tags" in omit else col.tag_source()
    reps = run["representatives"] if run else 0
    with_posts = "posts" not in omit and has_posts(conn)
    for start in range(0, len(selection.image_ids), chunk):
        ids = selection.image_ids[start:start + chunk]
        arg = json.dumps(ids)
        images = {r[0]: r for r in conn.execute(
            "SELECT id, sha256, taken, camera, format, width, height FROM images "
            "WHERE id IN (SELECT value FROM json_each(?))", [arg])}
        files: dict[int, list[tuple[str, bool]]] = {}
        for iid, path, raw in conn.execute("SELECT image_id, path, path_bytes IS NOT NULL FROM files "
                                           "WHERE image_id IN (SELECT value FROM json_each(?)) ORDER BY path", [arg]):
            files.setdefault(iid, []).append((path, bool(raw)))
        members = {} if run is None else {r[0]: r[1:] for r in conn.execute(
            "SELECT image_id, distance, rank FROM cluster_members WHERE run_id = ? "
            "AND image_id IN (SELECT value FROM json_each(?))", [run["id"], arg])}
        points = {} if layout is None else {r[0]: r[1:] for r in conn.execute(
            "SELECT image_id, x, y FROM layout_points WHERE layout_id = ? "
            "AND image_id IN (SELECT value FROM json_each(?))", [layout["id"], arg])}
        tags = col.tags(tag_source, ids) if tag_source else {}
        texts = {} if "descriptions" in omit else col.shown_descriptions(ids)
        posts = _posts(conn, arg) if with_posts else {}
        firsts = first_posts(conn, ids) if with_posts else {}
        for iid in ids:
            img = images.get(iid)
            if img is None:
                continue  # deleted since the selection was made
            cid = selection.cluster_of.get(iid)
            cluster = selection.cluster(cid)
            distance, rank = members.get(iid, (None, None))
            x, y = points.get(iid, (None, None))
            fs = files.get(iid, [])
            yield {
                "image_id": iid, "path": fs[0][0] if fs else None, "paths": [p for p, _ in fs],
                "path_escaped": bool(fs and fs[0][1]), "sha256": img[1], "run": run["name"] if run else None,
                "cluster_id": cid, "cluster_label": cluster["label"] if cluster else None,
                "distance": distance, "rank": rank,
                "representative": bool(cluster and cluster["kind"] == "cluster" and rank is not None and rank <= reps),
                "x": x, "y": y, "tags": [{"tag": t, "score": s} for t, s in tags.get(iid, [])],
                "description": texts[iid]["text"] if iid in texts else None,
                "taken": img[2], "camera": img[3], "format": img[4], "width": img[5], "height": img[6],
                **(_post_fields(posts.get(iid, []), firsts.get(iid)) if with_posts
                   else dict.fromkeys(POST_COLUMNS)),
            }


def _posts(conn, arg: str) -> dict[int, list[dict]]:
    """image id -> the posts linking it (each once, in load order), as dicts of their columns."""
    cur = conn.execute("SELECT DISTINCT pi.image_id, p.* FROM post_images pi JOIN posts p ON p.id = pi.post "
                       "WHERE pi.image_id IN (SELECT value FROM json_each(?)) ORDER BY pi.image_id, p.id", [arg])
    names = [d[0] for d in cur.description][1:]
    out: dict[int, list[dict]] = {}
    for row in cur:
        out.setdefault(row[0], []).append(dict(zip(names, row[1:])))
    return out


def _post_fields(posts: list[dict], first: dict | None) -> dict:
    row = next((p for p in posts if first and p["id"] == first["id"]), posts[0] if posts else None)
    return {"url": first and first["url"], "post_url": first and first["permalink"],
            "author": first and first["author"], "created": first and first["created"], "posts": len(posts),
            "post_ids": [p["post_id"] for p in posts],
            "first_post": {k: v for k, v in row.items() if k.lower() not in FIXED} if row else None}
