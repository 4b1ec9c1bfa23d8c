"""Datasette page: the zoomable map, and the data it draws from.

Routes (under ``/<database>/-/imageclust/``):

- ``map`` and ``map.json``: the page, and its metadata (layouts, clusters with their
  centres, atlas sheets, URLs). ``map.json?points=1`` adds the points as compact arrays
  for scripts.
- ``map/points.bin?layout=<id>&run=<id>&atlas=<build>``: every point as little-endian
  typed arrays (20 bytes an image: 2 MB at 100,000), in atlas order, cached in memory
  and by ETag.
- ``map/atlas/<level>/<sheet>?v=<build>``: a sprite sheet (WebP/JPEG) with ETag and
  long caching.

The URLs a page is given name the atlas build they belong to, so a page opened before
``imageclust layout`` rebuilt the atlas keeps drawing the build it started with
(``atlas`` keeps the one it replaced). Read-only: everything comes from what
``imageclust layout`` stored. Permissions: the points need ``layouts`` and
``layout_points``; clusters, atlas and thumbnails are left out when not viewable.
"""
from __future__ import annotations

import json
import os
import struct
import threading
from collections import OrderedDict
from typing import Callable, TypeVar

import numpy as np
from datasette.utils.asgi import Response

from . import access
from ..analysis import atlas
from .access import Access
from .http import Problem, static_url, arg, etag, flag_arg, image_type, int_arg, json_response, not_modified, path_int, route, wants_json
from .settings import settings

T = TypeVar("T")
STATIC = {"map.js", "map.css"}
MAGIC = b"ICM1"
NO_CELL = 0xFFFFFFFF
MAP_FEATURES = ("map", "clusters", "atlas", "thumbnails")
_points_cache: "OrderedDict[tuple, bytes]" = OrderedDict()
_state_cache: "OrderedDict[tuple, dict]" = OrderedDict()


# --- helpers ----------------------------------------------------------------------


def _signature(db) -> tuple | None:
    """Changes whenever the database file does (None: cannot tell, do not cache)."""
    path = getattr(db, "path", None)
    if not path or getattr(db, "is_memory", False):
        return None
    try:
        sig = [os.stat(path)]
        if os.path.exists(path + "-wal"):
            sig.append(os.stat(path + "-wal"))
    except OSError:
        return None
    return tuple((st.st_mtime_ns, st.st_size, st.st_ino) for st in sig)


def _snapshot(conn, fn: Callable[[], T]) -> T:
    """``fn()`` inside one read transaction: every query sees the same state of the file
    (an atlas switch cannot land between reading the build id and reading its rows)."""
    if conn.in_transaction:
        return fn()
    conn.execute("BEGIN")
    try:
        return fn()
    finally:
        conn.execute("ROLLBACK")


async def _map_access(datasette, request) -> Access:
    """The pages' lookup and permission check; a database without images still gets a
    map page that says so."""
    acc = await access.database(datasette, request, MAP_FEATURES, require_imageclust=False)
    acc.require("map")
    return acc


async def _load_state(datasette, request, acc: Access, with_clusters: bool = False) -> dict:
    layout_id = int_arg(request, "layout", None)
    run = int_arg(request, "run", None)
    wanted = arg(request, "atlas")  # a build id; one no longer stored means the current atlas
    db = acc.db
    configured = settings(datasette, db.name).default_run
    sig = _signature(db)
    prefix = None if sig is None else (db.name, sig)
    return await db.execute_fn(lambda conn: _snapshot(conn, lambda: _state(
        conn, layout_id, run, configured, prefix, with_clusters, wanted, acc.features)))


def _tables(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


def _choose_layout(conn, tables: set[str], layout_id: int | None) -> dict | None:
    if not {"layouts", "layout_points"} <= tables:
        if layout_id is not None:
            raise Problem(404, f"layout {layout_id} not found")
        return None
    cols = "id, name, method, params, run_id, is_default, n_images, created"
    if layout_id is not None:
        row = conn.execute(f"SELECT {cols} FROM layouts WHERE id = ?", [layout_id]).fetchone()
        if not row:
            raise Problem(404, f"layout {layout_id} not found")
    else:
        row = conn.execute(f"SELECT {cols} FROM layouts ORDER BY is_default DESC, id DESC LIMIT 1").fetchone()
    if not row:
        return None
    d = dict(zip(cols.split(", "), row))
    try:
        d["params"] = json.loads(d["params"] or "{}")
    except ValueError:
        d["params"] = {}
    return d


def _run_id(conn, tables: set[str], layout: dict, run: int | None = None, configured: str | None = None) -> int | None:
    """The clustering whose colours and labels the map shows: ``?run=``, else the
    plugin's configured ``default_run`` (name or id), else the default run, else the
    run the layout kept together."""
    if "cluster_runs" not in tables:
        if run is not None:
            raise Problem(404, f"clustering run {run} not found")
        return None
    if run is not None:
        if not conn.execute("SELECT 1 FROM cluster_runs WHERE id = ?", [run]).fetchone():
            raise Problem(404, f"clustering run {run} not found")
        return run
    if configured:
        row = conn.execute("SELECT id FROM cluster_runs WHERE name = ? OR CAST(id AS TEXT) = ? ORDER BY name = ? DESC",
                           [configured, configured, configured]).fetchone()
        if row:
            return row[0]
    row = conn.execute("SELECT id FROM cluster_runs WHERE is_default = 1 ORDER BY id DESC LIMIT 1").fetchone()
    if row:
        return row[0]
    if layout.get("run_id") and conn.execute("SELECT 1 FROM cluster_runs WHERE id = ?", [layout["run_id"]]).fetchone():
        return layout["run_id"]
    return None


def _points(conn, layout: dict, run_id: int | None, levels: list[dict], build: str | None) -> dict[str, np.ndarray]:
    """Arrays of the layout's points in atlas order (points without a cell last).

    Three plain scans joined with numpy: ~3x faster than one SQL join at 100k points."""
    def scan(sql: str, params: list, cols: int) -> np.ndarray:
        rows = conn.execute(sql, params).fetchall()
        return as_array(rows, cols)

    def as_array(rows: list, cols: int) -> np.ndarray:
        return np.array(rows, dtype=np.float64).reshape(len(rows), cols)

    pts = scan("SELECT image_id, x, y FROM layout_points WHERE layout_id = ? ORDER BY image_id", [layout["id"]], 3)
    ids = pts[:, 0].astype(np.int64)
    n = len(ids)

    def lookup(table: np.ndarray, missing: int) -> np.ndarray:
        out = np.full(n, missing, np.int64)
        if len(table) and n:
            keys = table[:, 0].astype(np.int64)
            pos = np.searchsorted(ids, keys)
            ok = pos < n
            ok[ok] = ids[pos[ok]] == keys[ok]
            out[pos[ok]] = table[ok, 1].astype(np.int64)
        return out

    cluster = np.full(n, -1, np.int64)
    if run_id is not None:
        # With few runs a plain table scan beats the (run_id, image_id) index, whose every
        # row needs a lookup in the table: 50 ms instead of 150-250 ms at 100k members.
        runs = conn.execute("SELECT count(*) FROM cluster_runs").fetchone()[0]
        where = "+run_id = ?" if runs <= 3 else "run_id = ?"
        cluster = lookup(scan(f"SELECT image_id, cluster_id FROM cluster_members WHERE {where}", [run_id], 2), -1)
    cell = np.full(n, NO_CELL, np.int64)
    if levels:
        cell = lookup(as_array(atlas.cell_rows(conn, build, levels[0]), 2), NO_CELL)
    order = np.lexsort((ids, cell))
    return {"id": ids[order], "x": pts[order, 1], "y": pts[order, 2], "cluster": cluster[order], "cell": cell[order]}


_arrays_cache: "OrderedDict[tuple, dict]" = OrderedDict()
_arrays_lock = threading.Lock()


def _points_shared(conn, state: dict) -> dict[str, np.ndarray]:
    """``_points``, computed once for concurrent requests (the page asks for map.json
    and points.bin at the same time; both need the arrays)."""
    lay, levels = state["layout"], state["levels"]
    if state.get("signature") is None:
        return _points(conn, lay, state["run_id"], levels, state["build"])
    key = (state["signature"], lay["id"], lay["created"], state["run_id"], state["build"],
           tuple((lv["level"], lv["per_sheet"]) for lv in levels[:1]))
    with _arrays_lock:
        got = _arrays_cache.get(key)
        if got is None:
            got = _points(conn, lay, state["run_id"], levels, state["build"])
            _arrays_cache[key] = got
            while len(_arrays_cache) > 2:
                _arrays_cache.popitem(last=False)
        return got


def _cluster_ids(conn, tables: set[str], run_id: int | None) -> list[int]:
    """Cluster ids of a run in the order map.json lists them (cheap: no centres)."""
    if run_id is None or "clusters" not in tables:
        return []
    return [r[0] for r in conn.execute("SELECT id FROM clusters WHERE run_id = ? ORDER BY id", [run_id])]


def _clusters(conn, tables: set[str], run_id: int | None, state: dict) -> list[dict]:
    """The run's clusters with their centre on the map (mean of their members' cells),
    computed with numpy from the same scans as the points (a GROUP BY join over 100k
    members was ~4x slower)."""
    if run_id is None or "clusters" not in tables:
        return []
    rows = conn.execute("SELECT id, kind, label, size FROM clusters WHERE run_id = ? ORDER BY id", [run_id]).fetchall()
    if not rows:
        return []
    pts = _points_shared(conn, state)
    idx = _cluster_index(pts["cluster"], [r[0] for r in rows])
    on = idx >= 0
    k = len(rows)
    count = np.bincount(idx[on], minlength=k)
    sx = np.bincount(idx[on], weights=pts["x"][on], minlength=k)
    sy = np.bincount(idx[on], weights=pts["y"][on], minlength=k)
    out = []
    for j, (cid, kind, label, size) in enumerate(rows):
        n = int(count[j])
        out.append({"id": cid, "kind": kind, "label": label or (kind if kind != "cluster" else f"cluster {cid}"),
                    "size": size, "on_map": n,
                    "x": round(float(sx[j] / n), 2) if n else None, "y": round(float(sy[j] / n), 2) if n else None})
    return out


def _cluster_index(cluster: np.ndarray, cluster_ids: list[int]) -> np.ndarray:
    """Position of each point's cluster in the (id-ordered) cluster list, -1 if none."""
    cids = np.asarray(cluster_ids, np.int64)
    if not len(cids):
        return np.full(len(cluster), -1, np.int32)
    pos = np.minimum(np.searchsorted(cids, cluster), len(cids) - 1)
    return np.where(cids[pos] == cluster, pos, -1).astype(np.int32)


def _pack_points(p: dict[str, np.ndarray], cluster_ids: list[int]) -> bytes:
    n = len(p["id"])
    cidx = _cluster_index(p["cluster"], cluster_ids)
    return b"".join([
        MAGIC, struct.pack("<III", n, 0, 0),
        p["x"].astype("<f4").tobytes(), p["y"].astype("<f4").tobytes(),
        p["id"].astype("<u4").tobytes(), cidx.astype("<i4").tobytes(),
        np.where(p["cell"] == NO_CELL, NO_CELL, p["cell"]).astype("<u4").tobytes(),
    ])


# --- state shared by the page, the JSON and the binary ---------------------------------


def _state(conn, layout_id: int | None, run: int | None = None, configured: str | None = None,
           cache: tuple | None = None, with_clusters: bool = False, wanted_build: str | None = None,
           features: frozenset[str] = frozenset(MAP_FEATURES)) -> dict:
    """Everything the page needs but the points, showing only ``features``. The
    expensive part (cluster centres of up to 100k points) is kept, keyed by ``cache``
    (database name and file signature), until the database file changes."""
    tables = _tables(conn)
    layout = _choose_layout(conn, tables, layout_id)
    layouts = []
    if "layouts" in tables:
        layouts = [dict(zip(("id", "name", "method", "is_default", "n_images", "created"), r)) for r in conn.execute(
            "SELECT id, name, method, is_default, n_images, created FROM layouts ORDER BY is_default DESC, name")]
    state = {"tables": tables, "layout": layout, "layouts": layouts, "levels": [], "clusters": [],
             "run_id": None, "build": None, "n_images": 0, "features": features}
    if "images" in tables:
        state["n_images"] = conn.execute("SELECT count(*) FROM images").fetchone()[0]
    if layout:
        if "atlas" in features:
            state["build"] = atlas.readable_build(conn, wanted_build)
            state["levels"] = atlas.levels(conn, state["build"])
        if "clusters" in features:
            state["run_id"] = _run_id(conn, tables, layout, run, configured)
        key = None if cache is None else (cache, layout["id"], layout["created"], state["run_id"])
        known = _state_cache.get(key, {}) if key else {}
        if "bounds" not in known:
            b = conn.execute("SELECT min(x), min(y), max(x), max(y), count(*) FROM layout_points WHERE layout_id = ?",
                             [layout["id"]]).fetchone()
            known = {**known, "bounds": list(b[:4]) if b[4] else [0, 0, 0, 0], "n_points": b[4]}
        if with_clusters and "clusters" not in known:
            state["signature"] = cache
            known = {**known, "clusters": _clusters(conn, tables, state["run_id"], state)}
        if key:
            _state_cache[key] = known
            while len(_state_cache) > 8:
                _state_cache.popitem(last=False)
        state.update(known)
        state["signature"] = cache
    return state


def _version(state: dict) -> str:
    lay = state["layout"] or {}
    return etag(lay.get("id"), lay.get("created"), state["build"], state["run_id"], state.get("signature"))[1:-1]


def _payload(datasette, db, state: dict) -> dict:
    base = datasette.urls.database(db.name) + "/-/imageclust"
    lay = state["layout"]
    features = state["features"]
    message = None
    if lay is None:
        message = ("This database has no map yet: run `imageclust layout` on it."
                   if state["n_images"] else "This database has no images: run `imageclust load`, then "
                                              "`imageclust layout`.")
    elif not state.get("n_points"):
        message = "The map layout is empty: run `imageclust layout` again after loading images."
    elif "atlas" not in features:
        message = "The map shows no thumbnails: you may not view its atlas or thumbnail tables."
    elif not state["levels"]:
        message = "The map has no atlas sheets: run `imageclust layout` again without --no-atlas."
    version = _version(state)
    build = state["build"] or ""
    levels = []
    for lv in state["levels"]:
        levels.append({**{k: lv[k] for k in ("level", "per_row", "per_sheet", "bytes")},
                       "sheets": [{**s, "url": f"{base}/map/atlas/{lv['level']}/{s['sheet']}?v={build}"}
                                  for s in lv["sheets"]]})
    run = f"&run={state['run_id']}" if state["run_id"] is not None else ""
    return {
        "ok": True,
        "database": db.name,
        "message": message,
        "n_images": state["n_images"],
        "layout": None if lay is None else {k: lay[k] for k in ("id", "name", "method", "params", "run_id",
                                                                 "is_default", "n_images", "created")},
        "layouts": state["layouts"],
        "bounds": state.get("bounds"),
        "cell": 1.0,
        "points": None if lay is None else {
            "url": f"{base}/map/points.bin?layout={lay['id']}{run}" + (f"&atlas={build}" if build else "")
                   + f"&v={version}",
            "count": state.get("n_points", 0),
            "format": "ICM1: magic, uint32 n, 2 x uint32 reserved; float32 x[n], float32 y[n], uint32 image_id[n], "
                      "int32 cluster_index[n] (-1: none), uint32 atlas_index[n] (0xFFFFFFFF: none); little-endian",
        },
        "atlas": {"build": build, "levels": levels},
        "run_id": state["run_id"],
        "clusters": state["clusters"],
        "urls": {"image": f"{base}/image/", "cluster": f"{base}/cluster/",
                 "thumb": f"{base}/thumb/" if "thumbnails" in features else None,
                 "json": f"{base}/map.json",
                 "clusters": f"{base}/map.json" + ("" if lay is None else f"?layout={lay['id']}{run}"),
                 "page": f"{base}/map", "database": datasette.urls.database(db.name)},
    }


# --- views -------------------------------------------------------------------------


@route()
async def map_page(datasette, request):
    as_json = wants_json(request)
    acc = await _map_access(datasette, request)
    db = acc.db
    with_points = flag_arg(request, "points") if as_json else False
    state = await _load_state(datasette, request, acc, with_clusters=as_json)
    payload = _payload(datasette, db, state)
    if as_json:
        if with_points and state["layout"]:
            def arrays(conn):
                pts = _points_shared(conn, state)
                return {
                    "id": pts["id"].tolist(), "x": np.round(pts["x"], 3).tolist(), "y": np.round(pts["y"], 3).tolist(),
                    "cluster": _cluster_index(pts["cluster"], [c["id"] for c in state["clusters"]]).tolist(),
                    "atlas_index": [None if c == NO_CELL else int(c) for c in pts["cell"]],
                }

            payload["points"]["arrays"] = await db.execute_fn(arrays)
        # Up to 10,000 clusters (and 100k points with ?points=1): encoded off the event loop.
        return await json_response(payload, headers={"Cache-Control": "no-cache"})
    # The page embeds everything but the clusters (10,000 of them at 100k images): the
    # script fetches those from map.json in parallel with the points and atlas sheets.
    page_config = {**payload, "clusters": None}
    # Found through the plugin's prepare_jinja2_environment hook (plugin.py).
    return Response.html(await datasette.render_template(
        "imageclust_map.html",
        {"database": db.name, "config": page_config, "imageclust_static": static_url(datasette), "title": f"Map of {db.name}",
         "database_url": datasette.urls.database(db.name), "home_url": datasette.urls.instance()},
        request=request,
    ))


@route("json")
async def points_bin(datasette, request):
    acc = await _map_access(datasette, request)
    db = acc.db
    state = await _load_state(datasette, request, acc)
    if state["layout"] is None:
        raise Problem(404, "this database has no map layout yet: run `imageclust layout`")
    version = _version(state)
    tag = f'"{version}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if not_modified(request, tag):
        return Response("", status=304, headers=headers)
    key = (db.name, state["layout"]["id"], version)
    body = _points_cache.get(key)
    if body is None:
        def work(conn):
            # Scans, numpy and packing: in the SQL thread, never on the event loop.
            return _pack_points(_points_shared(conn, state), _cluster_ids(conn, state["tables"], state["run_id"]))

        body = await db.execute_fn(work)
        _points_cache[key] = body
        while len(_points_cache) > 4:
            _points_cache.popitem(last=False)
    return Response(body, headers=headers, content_type="application/octet-stream")


@route("text")
async def atlas_sheet(datasette, request):
    acc = await _map_access(datasette, request)
    acc.require("atlas")
    level, sheet = path_int(request, "level", 1, 4096), path_int(request, "sheet", 0, 10**6)
    wanted = arg(request, "v")

    def fetch(conn):
        build = atlas.readable_build(conn, wanted)
        tag = etag(build, level, sheet)
        if not_modified(request, tag):
            return build, tag, "not-modified"
        return build, tag, atlas.sheet_data(conn, build, level, sheet)

    build, tag, row = await acc.db.execute_fn(lambda conn: _snapshot(conn, lambda: fetch(conn)))
    if row is None:
        raise Problem(404, f"atlas sheet {level}/{sheet} not found")
    # A URL carrying the build id it is served from never changes: cache it for good.
    cache = "public, max-age=31536000, immutable" if build and wanted == build else "public, max-age=300"
    headers = {"ETag": tag, "Cache-Control": cache}
    if row == "not-modified":
        return Response("", status=304, headers=headers)
    return Response(row[1], headers=headers, content_type=image_type(row[0]))


_DB = r"^/(?P<database>[^/]+)/-/imageclust/map"
ROUTES: list = [
    (_DB + r"(\.(?P<format>json))?$", map_page),
    (_DB + r"/points\.bin$", points_bin),
    (_DB + r"/atlas/(?P<level>[^/]+)/(?P<sheet>[^/]+)$", atlas_sheet),
]
