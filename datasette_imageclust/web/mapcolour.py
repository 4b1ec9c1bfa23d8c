"""Colour the map by a column: which columns can be chosen (:func:`options`) and each map
point's category (:func:`categories`), as plain data over an imageclust database.

A choice (``by``) is one of ``cluster:<run id>`` (the cluster in any clustering run),
``folder`` (the folder of the image's first file), ``camera``, ``year`` (of ``taken``),
``tag:<source>`` (the source's top tag, ``rank = 1``), ``column:<name>`` (any column of
``images``), ``post:<column>`` (a column of the image's first post, from ``load --from``) or
``postyear:<date column>`` (the year of its first post). Categorical: the :data:`TOP` most frequent values on the map get a colour each,
the rest are "other". Computed in Datasette's SQL thread and kept in a
:class:`~datasette_imageclust.store.cache.TokenCache` until the database changes, like the
map's other arrays.
"""
from __future__ import annotations

import numpy as np

from ..store import imagenames
from ..store.cache import TokenCache
from ..store.connection import Connection
from ..store.postcolumns import PostColumns, date_sql, quote
from . import mapdata
from .http import Problem

TOP = 12
OTHER = TOP        # the category index of "other"
MISSING = -1       # no value (no file, no tag, NULL)
# The images columns offered in the menu (any other column works by URL): few distinct values.
MENU_COLUMNS = ("format", "mode", "width", "height", "frames")
# What each choice reads, as an access feature (images itself is always readable here).
NEEDS = {"cluster": "clusters", "folder": "files", "tag": "tags", "post": "posts", "postyear": "posts"}

_OPTIONS = TokenCache(8)
_VALUES = TokenCache(8)


def options(conn: Connection, token: tuple | None, tables: set[str], features: frozenset[str],
            posts: PostColumns | None = None) -> list[dict]:
    """The choices for the colour menu, ``[{value, label}]``, those ``features`` allow;
    ``posts``: the posts' date and author columns (``web.postsdata.columns``), if any."""
    posts = posts or PostColumns()
    every = _OPTIONS.get(token, ("options", tuple(sorted(tables)), posts.date, posts.author),
                         lambda: _options(conn, tables, posts))
    return [o for o in every if NEEDS.get(o["value"].split(":")[0], "map") in features | {"map"}]


def _options(conn: Connection, tables: set[str], posts: PostColumns) -> list[dict]:
    out = []
    if {"cluster_runs", "cluster_members", "clusters"} <= tables:
        for rid, name in conn.execute("SELECT id, name FROM cluster_runs ORDER BY is_default DESC, id"):
            out.append({"value": f"cluster:{rid}", "label": f"cluster in run {name}"})
    if "files" in tables:
        out.append({"value": "folder", "label": "folder"})
    out += [{"value": "camera", "label": "camera"}, {"value": "year", "label": "year taken"}]
    if "image_tags" in tables:
        # Distinct sources without a full scan: skip from one source to the next.
        src = conn.execute("SELECT min(source) FROM image_tags").fetchone()[0]
        while src is not None:
            out.append({"value": f"tag:{src}", "label": f"top tag ({src})"})
            src = conn.execute("SELECT min(source) FROM image_tags WHERE source > ?", [src]).fetchone()[0]
    have = {r[1] for r in conn.execute("PRAGMA table_info(images)")}
    out += [{"value": f"column:{c}", "label": f"images.{c}"} for c in MENU_COLUMNS if c in have]
    if {"posts", "post_images"} <= tables:
        if posts.author:
            out.append({"value": f"post:{posts.author}", "label": f"first post's {posts.author}"})
        if posts.date:
            out.append({"value": f"postyear:{posts.date}", "label": "year first posted"})
    return out


def parse_by(raw: str | None) -> tuple[str, str] | None:
    """``by`` as (kind, argument); None when absent. Unknown kinds are a 400."""
    if raw in (None, ""):
        return None
    kind, _, rest = raw.partition(":")
    if kind in ("folder", "camera", "year") and not rest:
        return kind, ""
    if kind in ("cluster", "tag", "column", "post", "postyear") and rest:
        return kind, rest
    raise Problem(400, "by must be cluster:<run id>, folder, camera, year, tag:<source>, column:<name>, "
                       f"post:<column> or postyear:<column>, not {raw[:40]!r}")


def _query(conn: Connection, tables: set[str], kind: str, arg: str) -> tuple[str, list, dict | None]:
    """The SQL of (image_id, value) rows for a choice, its parameters, and value labels."""
    if kind == "cluster":
        if not arg.isdigit() or not {"cluster_runs", "clusters", "cluster_members"} <= tables:
            raise Problem(400, f"by: no clustering run {arg[:40]!r} (give its id, as map.json lists them)")
        run = int(arg) if len(arg) < 19 else -1
        if not conn.execute("SELECT 1 FROM cluster_runs WHERE id = ?", [run]).fetchone():
            raise Problem(400, f"by: no clustering run {arg[:40]!r} (give its id, as map.json lists them)")
        labels = {cid: label or f"cluster {cid}" for cid, label in conn.execute(
            "SELECT id, label FROM clusters WHERE run_id = ? AND kind = 'cluster'", [run])}
        return ("SELECT m.image_id, m.cluster_id FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
                "WHERE m.run_id = ? AND c.kind = 'cluster'"), [run], labels
    if kind == "folder":
        if "files" not in tables:
            raise Problem(400, "by: this database has no files table")
        # rtrim(path, <path without '/'>) keeps everything up to the last '/': the folder.
        return ("SELECT image_id, min(rtrim(path, replace(path, '/', ''))) FROM files GROUP BY image_id"), [], None
    if kind == "camera":
        return "SELECT id, camera FROM images", [], None
    if kind == "year":
        return "SELECT id, substr(taken, 1, 4) FROM images WHERE taken IS NOT NULL", [], None
    if kind == "tag":
        if "image_tags" not in tables or not conn.execute(
                "SELECT 1 FROM image_tags WHERE source = ? LIMIT 1", [arg]).fetchone():
            raise Problem(400, f"by: no tags from source {arg[:40]!r}")
        return "SELECT image_id, tag FROM image_tags WHERE source = ? AND rank = 1", [arg], None
    if kind in ("post", "postyear"):
        if not {"posts", "post_images"} <= tables or arg not in {
                r[1] for r in conn.execute("PRAGMA table_info(posts)")}:
            raise Problem(400, f"by: posts has no column {arg[:40]!r}")
        # The first post of each image (store/imagenames.py: the earliest, then the first loaded).
        value = "p." + quote(arg) if kind == "post" else "substr(" + date_sql(arg) + ", 1, 4)"
        return (f"SELECT f.image_id, {value} FROM ({imagenames.first_post_sql(conn)}) f "
                "JOIN posts p ON p.id = f.post"), [], None
    have = [r[1] for r in conn.execute("PRAGMA table_info(images)")]
    if arg not in have or arg == "id":
        raise Problem(400, f"by: images has no column {arg[:40]!r}")
    quoted = arg.replace('"', '""')
    return f'SELECT id, "{quoted}" FROM images', [], None


def categories(conn: Connection, s: dict, by: tuple[str, str]) -> dict:
    """Each map point's category, in the order of ``points.bin``: ``values`` (0..TOP-1 a
    legend entry, TOP "other", -1 no value) and the ``legend`` (``label``, ``count``)."""
    lay = s["layout"]
    key = ("colour", by, lay["id"], lay["created"], s["run_id"], s["build"])
    return _VALUES.get(s["token"], key, lambda: _categories(conn, s, by))


def _categories(conn: Connection, s: dict, by: tuple[str, str]) -> dict:
    sql, params, labels = _query(conn, set(s["tables"]), *by)
    ids = mapdata.points(conn, s)["id"]
    n = len(ids)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    codes: dict = {}
    names: list = []
    row_ids, row_codes = [], []
    for image_id, value in conn.execute(sql, params):
        if value is None or value == "" or not isinstance(image_id, int):
            continue
        code = codes.get(value)
        if code is None:
            code = codes[value] = len(names)
            names.append(value)
        row_ids.append(image_id)
        row_codes.append(code)
    value_of = np.full(n, -1, np.int64)  # per point (sorted by id): the code of its value
    if row_ids and n:
        rid = np.asarray(row_ids, np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, rid), n - 1)
        on = sorted_ids[pos] == rid  # rows of images not on this map are left out
        value_of[pos[on]] = np.asarray(row_codes, np.int64)[on]
    counts = np.bincount(value_of[value_of >= 0], minlength=len(names))
    # The most frequent values (ties: the smaller value first) get colours.
    ranked = sorted(range(len(names)), key=lambda c: (-int(counts[c]), str(names[c])))
    top = ranked[:TOP]
    remap = np.full(len(names) + 1, OTHER, np.int64)
    remap[-1] = MISSING
    for k, c in enumerate(top):
        remap[c] = k
    per_sorted = remap[value_of]  # value_of -1 indexes the last slot: MISSING
    values = np.empty(n, np.int64)
    values[order] = per_sorted
    legend = [{"value": _plain(names[c]), "label": _label(names[c], labels), "count": int(counts[c])} for c in top]
    return {"values": values.astype(np.int8), "legend": legend,
            "other": int((values == OTHER).sum()), "missing": int((values == MISSING).sum()),
            "distinct": int((counts > 0).sum())}


def _plain(value: object) -> object:
    return value if isinstance(value, (int, float, str)) else repr(value)


def _label(value: object, labels: dict | None) -> str:
    if labels is not None and value in labels:
        return str(labels[value])
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)
