"""Datasette page: the zoomable map, and the data it draws from.

Routes (under ``/<database>/-/imageclust/``):

- ``map`` and ``map.json``: the page, and its metadata (layouts, clusters with their
  centres, atlas sheets, URLs). ``map.json?points=1`` adds the points as compact arrays
  for scripts.
- ``map/points.bin?layout=<id>``: every point as little-endian typed arrays (20 bytes
  an image: 2 MB at 100,000), in atlas order, cached in memory and by ETag.
- ``map/atlas/<level>/<sheet>``: a sprite sheet (WebP/JPEG) with ETag and long caching.

Read-only: everything comes from what ``imageclust layout`` stored.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from datasette.utils.asgi import Response

from .pagedata import Problem
from .views import _database as _page_database


HERE = Path(__file__).parent
STATIC = {"map.js": "application/javascript; charset=utf-8", "map.css": "text/css; charset=utf-8"}
MAGIC = b"ICM1"
NO_CELL = 0xFFFFFFFF
CONTENT_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png"}
_points_cache: "OrderedDict[tuple, bytes]" = OrderedDict()
_state_cache: "OrderedDict[tuple, dict]" = OrderedDict()


# --- helpers ----------------------------------------------------------------------


async def _database(datasette, request):
    """The pages' lookup and permission check (0.65 and 1.0); a database without images
    still gets a map page that says so."""
    return await _page_database(datasette, request, require_imageclust=False)


def _problem_response(p: Problem, as_json: bool) -> Response:
    if as_json:
        return Response.json({"ok": False, "error": p.message, "status": p.status}, status=p.status)
    return Response.text(p.message, status=p.status)


def _int_arg(request, name: str, default: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 12:
        raise Problem(400, f"{name} must be a positive integer, not {raw[:40]!r}")
    return int(raw)


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


async def _load_state(datasette, db, request, with_clusters: bool = False) -> dict:
    layout_id = _int_arg(request, "layout")
    run = _int_arg(request, "run")
    from .pluginconfig import settings

    configured = settings(datasette, db.name).default_run
    sig = _signature(db)
    prefix = None if sig is None else (db.name, sig)
    return await db.execute_fn(lambda conn: _state(conn, layout_id, run, configured, prefix, with_clusters))


def _tables(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


def _meta(conn, tables: set[str]) -> dict[str, str]:
    if "imageclust_meta" not in tables:
        return {}
    return {k: v for k, v in conn.execute("SELECT key, value FROM imageclust_meta WHERE key LIKE 'atlas_%'")}


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


def _levels(conn, tables: set[str], meta: dict[str, str]) -> list[dict]:
    if "atlas_sheets" not in tables:
        return []
    size = int(meta.get("atlas_sheet_size") or 2048)
    out: dict[int, dict] = {}
    for level, sheet, fmt, w, h, nbytes in conn.execute(
        "SELECT level, sheet, format, width, height, length(data) FROM atlas_sheets ORDER BY level, sheet"
    ):
        per_row = size // level
        lv = out.setdefault(level, {"level": level, "per_row": per_row, "per_sheet": per_row * per_row,
                                    "sheets": [], "bytes": 0})
        lv["sheets"].append({"sheet": sheet, "format": fmt, "width": w, "height": h, "bytes": nbytes})
        lv["bytes"] += nbytes
    return [out[k] for k in sorted(out)]


def _points(conn, layout: dict, run_id: int | None, levels: list[dict]) -> dict[str, np.ndarray]:
    """Arrays of the layout's points in atlas order (points without a cell last).

    Three plain scans joined with numpy: ~3x faster than one SQL join at 100k points."""
    def scan(sql: str, params: list, cols: int) -> np.ndarray:
        rows = conn.execute(sql, params).fetchall()
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
        small = levels[0]
        cell = lookup(scan("SELECT image_id, sheet * ? + cell FROM atlas_cells WHERE level = ?",
                           [small["per_sheet"], small["level"]], 2), NO_CELL)
    order = np.lexsort((ids, cell))
    return {"id": ids[order], "x": pts[order, 1], "y": pts[order, 2], "cluster": cluster[order], "cell": cell[order]}


_arrays_cache: "OrderedDict[tuple, dict]" = OrderedDict()
_arrays_lock = threading.Lock()


def _points_shared(conn, state: dict, levels: list[dict]) -> dict[str, np.ndarray]:
    """``_points``, computed once for concurrent requests (the page asks for map.json
    and points.bin at the same time; both need the arrays)."""
    lay = state["layout"]
    if state.get("signature") is None:
        return _points(conn, lay, state["run_id"], levels)
    key = (state["signature"], lay["id"], lay["created"], state["run_id"],
           tuple((lv["level"], lv["per_sheet"]) for lv in levels[:1]))
    with _arrays_lock:
        got = _arrays_cache.get(key)
        if got is None:
            got = _points(conn, lay, state["run_id"], levels)
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
    pts = _points_shared(conn, state, state["levels"])
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


def _etag(*parts: Any) -> str:
    return '"' + hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20] + '"'


def _not_modified(request, etag: str) -> bool:
    have = request.headers.get("if-none-match", "")
    return etag in [t.strip() for t in have.split(",")] or have.strip() == "*"


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
           cache: tuple | None = None, with_clusters: bool = False) -> dict:
    """Everything the page needs but the points. The expensive part (cluster centres of
    up to 100k points) is kept, keyed by ``cache`` (database name and file signature),
    until the database file changes."""
    tables = _tables(conn)
    meta = _meta(conn, tables)
    layout = _choose_layout(conn, tables, layout_id)
    layouts = []
    if "layouts" in tables:
        layouts = [dict(zip(("id", "name", "method", "is_default", "n_images", "created"), r)) for r in conn.execute(
            "SELECT id, name, method, is_default, n_images, created FROM layouts ORDER BY is_default DESC, name")]
    state = {"tables": tables, "meta": meta, "layout": layout, "layouts": layouts, "levels": [], "clusters": [],
             "run_id": None, "n_images": 0}
    if "images" in tables:
        state["n_images"] = conn.execute("SELECT count(*) FROM images").fetchone()[0]
    if layout:
        state["levels"] = _levels(conn, tables, meta)
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
    return _etag(lay.get("id"), lay.get("created"), state["meta"].get("atlas_build"), state["run_id"],
                 state.get("signature"))[1:-1]


def _payload(datasette, db, state: dict) -> dict:
    base = datasette.urls.database(db.name) + "/-/imageclust"
    lay = state["layout"]
    message = None
    if lay is None:
        message = ("This database has no map yet: run `imageclust layout` on it."
                   if state["n_images"] else "This database has no images: run `imageclust load`, then "
                                              "`imageclust layout`.")
    elif not state.get("n_points"):
        message = "The map layout is empty: run `imageclust layout` again after loading images."
    elif not state["levels"]:
        message = "The map has no atlas sheets: run `imageclust layout` again without --no-atlas."
    version = _version(state)
    build = state["meta"].get("atlas_build", "")
    levels = []
    for lv in state["levels"]:
        levels.append({**{k: lv[k] for k in ("level", "per_row", "per_sheet", "bytes")},
                       "sheets": [{**s, "url": f"{base}/map/atlas/{lv['level']}/{s['sheet']}?v={build}"}
                                  for s in lv["sheets"]]})
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
            "url": f"{base}/map/points.bin?layout={lay['id']}"
                   + (f"&run={state['run_id']}" if state["run_id"] is not None else "") + f"&v={version}", "count": state.get("n_points", 0),
            "format": "ICM1: magic, uint32 n, 2 x uint32 reserved; float32 x[n], float32 y[n], uint32 image_id[n], "
                      "int32 cluster_index[n] (-1: none), uint32 atlas_index[n] (0xFFFFFFFF: none); little-endian",
        },
        "atlas": {"build": build, "levels": levels},
        "run_id": state["run_id"],
        "clusters": state["clusters"],
        "urls": {"image": f"{base}/image/", "cluster": f"{base}/cluster/", "thumb": f"{base}/thumb/",
                 "json": f"{base}/map.json",
                 "clusters": f"{base}/map.json" + ("" if lay is None else f"?layout={lay['id']}"
                                                   + (f"&run={state['run_id']}" if state["run_id"] is not None else "")),
                 "page": f"{base}/map", "database": datasette.urls.database(db.name)},
    }


# --- views -------------------------------------------------------------------------


async def map_page(datasette, request):
    as_json = request.url_vars.get("format") == "json"
    try:
        db = await _database(datasette, request)
        state = await _load_state(datasette, db, request, with_clusters=as_json)
    except Problem as p:
        return _problem_response(p, as_json)
    payload = _payload(datasette, db, state)
    if as_json:
        if request.args.get("points") in ("1", "true"):
            if state["layout"]:
                pts = await db.execute_fn(lambda conn: _points_shared(conn, state, state["levels"]))
                payload["points"]["arrays"] = {
                    "id": pts["id"].tolist(), "x": np.round(pts["x"], 3).tolist(), "y": np.round(pts["y"], 3).tolist(),
                    "cluster": _cluster_index(pts["cluster"], [c["id"] for c in state["clusters"]]).tolist(),
                    "atlas_index": [None if c == NO_CELL else int(c) for c in pts["cell"]],
                }
        return Response.json(payload, headers={"Cache-Control": "no-cache"})
    static = datasette.urls.path("/-/imageclust-map/static/")
    # The page embeds everything but the clusters (10,000 of them at 100k images): the
    # script fetches those from map.json in parallel with the points and atlas sheets.
    page_config = {**payload, "clusters": None}
    # Found through the plugin's prepare_jinja2_environment hook (plugin.py).
    return Response.html(await datasette.render_template(
        "imageclust_map.html",
        {"database": db.name, "config": page_config, "icm_static": static, "title": f"Map of {db.name}",
         "database_url": datasette.urls.database(db.name), "home_url": datasette.urls.instance()},
        request=request,
    ))


async def points_bin(datasette, request):
    try:
        db = await _database(datasette, request)
        state = await _load_state(datasette, db, request)
        if state["layout"] is None:
            raise Problem(404, "this database has no map layout yet: run `imageclust layout`")
    except Problem as p:
        return _problem_response(p, True)
    version = _version(state)
    etag = f'"{version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _not_modified(request, etag):
        return Response("", status=304, headers=headers)
    key = (db.name, state["layout"]["id"], version)
    body = _points_cache.get(key)
    if body is None:
        def work(conn):
            return (_points_shared(conn, state, state["levels"]),
                    _cluster_ids(conn, state["tables"], state["run_id"]))

        pts, cids = await db.execute_fn(work)
        body = _pack_points(pts, cids)
        _points_cache[key] = body
        while len(_points_cache) > 4:
            _points_cache.popitem(last=False)
    return Response(body, headers=headers, content_type="application/octet-stream")


async def atlas_sheet(datasette, request):
    try:
        db = await _database(datasette, request)
        level, sheet = int(request.url_vars["level"]), int(request.url_vars["sheet"])

        def fetch(conn):
            tables = _tables(conn)
            if "atlas_sheets" not in tables:
                return None, None, None
            build = _meta(conn, tables).get("atlas_build")
            etag = _etag(build, level, sheet)
            if _not_modified(request, etag):
                return build, etag, "not-modified"
            return build, etag, conn.execute("SELECT format, data FROM atlas_sheets WHERE level = ? AND sheet = ?",
                                             [level, sheet]).fetchone()

        build, etag, row = await db.execute_fn(fetch)
        if row is None:
            raise Problem(404, f"atlas sheet {level}/{sheet} not found")
    except Problem as p:
        return _problem_response(p, False)
    # A URL carrying the current build id never changes: cache it for good.
    cache = "public, max-age=31536000, immutable" if build and request.args.get("v") == build \
        else "public, max-age=300"
    headers = {"ETag": etag, "Cache-Control": cache}
    if row == "not-modified":
        return Response("", status=304, headers=headers)
    return Response(row[1], headers=headers, content_type=CONTENT_TYPES.get(row[0], "application/octet-stream"))


async def static(datasette, request):
    name = request.url_vars["name"]
    if name not in STATIC:
        return Response.text("not found", status=404)
    body = (HERE / "static" / name).read_bytes()
    etag = _etag("static", hashlib.sha1(body).hexdigest())
    headers = {"ETag": etag, "Cache-Control": "public, max-age=60"}
    if _not_modified(request, etag):
        return Response("", status=304, headers=headers)
    return Response(body, headers=headers, content_type=STATIC[name])


_DB = r"^/(?P<database>[^/]+)/-/imageclust/map"
ROUTES: list = [
    (_DB + r"(\.(?P<format>json))?$", map_page),
    (_DB + r"/points\.bin$", points_bin),
    (_DB + r"/atlas/(?P<level>\d{1,3})/(?P<sheet>\d{1,6})$", atlas_sheet),
    (r"^/-/imageclust-map/static/(?P<name>[A-Za-z0-9_.-]+)$", static),
]
