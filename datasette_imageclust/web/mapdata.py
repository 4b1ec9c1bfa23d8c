"""What the map shows, as plain data: the layout, the clustering run, the atlas build,
the points as numpy arrays and their packed binary form. Read-only SQL over an
imageclust database, run on Datasette's connections (``db.execute_fn``); no HTTP here
(that is ``mappage``).

Everything costly (cluster centres and the arrays of up to 100k points) is kept in
:class:`~datasette_imageclust.store.cache.TokenCache` s until the database changes.
"""
from __future__ import annotations

import struct
from typing import Callable, TypeVar

import numpy as np

from ..analysis import atlas
from ..store.cache import TokenCache
from ..store.collection import ImageCollection
from ..store.connection import Connection
from .http import etag

T = TypeVar("T")
MAGIC = b"ICM1"
NO_CELL = 0xFFFFFFFF
POINTS_FORMAT = ("ICM1: magic, uint32 n, 2 x uint32 reserved; float32 x[n], float32 y[n], uint32 image_id[n], "
                 "int32 cluster_index[n] (-1: none), uint32 atlas_index[n] (0xFFFFFFFF: none); little-endian")
ALL_FEATURES = frozenset(("map", "clusters", "atlas", "thumbnails"))

_BOUNDS = TokenCache(8)
_CLUSTERS = TokenCache(8)
_ARRAYS = TokenCache(2)  # 100k points are ~4 MB of arrays: keep few
_PACKED = TokenCache(4)


def snapshot(conn: Connection, fn: Callable[[], T]) -> T:
    """``fn()`` inside one read transaction: every query sees the same state of the file
    (an atlas switch cannot land between reading the build id and reading its rows)."""
    if conn.in_transaction:
        return fn()
    conn.execute("BEGIN")
    try:
        return fn()
    finally:
        conn.execute("ROLLBACK")


def state(conn: Connection, token: tuple | None, layout_id: int | None, run: int | None = None,
          configured: str | None = None, with_clusters: bool = False, wanted_build: str | None = None,
          features: frozenset[str] = ALL_FEATURES) -> dict:
    """Everything the page needs but the points, showing only ``features``. ``token`` is
    the database's change token, read BEFORE the snapshot this runs in (so a value is
    never filed under a newer token than the state it was computed from)."""
    coll = ImageCollection(conn)
    tables = coll.tables()
    layout = coll.layout(layout_id)
    s = {"tables": tables, "layout": layout, "layouts": [
            {k: lay[k] for k in ("id", "name", "method", "is_default", "n_images", "created")}
            for lay in coll.layouts()],
         "levels": [], "clusters": [], "run_id": None, "build": None, "n_images": 0, "features": features,
         "token": token}
    if "images" in tables:
        s["n_images"] = conn.execute("SELECT count(*) FROM images").fetchone()[0]
    if layout is None:
        return s
    if "atlas" in features:
        s["build"] = atlas.readable_build(conn, wanted_build)
        s["levels"] = atlas.levels(conn, s["build"])
    if "clusters" in features:
        run_row = coll.run(run, configured=configured)
        s["run_id"] = run_row["id"] if run_row else None
    s.update(_BOUNDS.get(token, ("bounds", layout["id"], layout["created"]), lambda: _bounds(conn, layout["id"])))
    if with_clusters:
        s["clusters"] = _CLUSTERS.get(token, ("clusters", layout["id"], layout["created"], s["run_id"]),
                                      lambda: _clusters(conn, s))
    return s


def _bounds(conn: Connection, layout_id: int) -> dict:
    b = conn.execute("SELECT min(x), min(y), max(x), max(y), count(*) FROM layout_points WHERE layout_id = ?",
                     [layout_id]).fetchone()
    return {"bounds": list(b[:4]) if b[4] else [0, 0, 0, 0], "n_points": b[4]}


def version(s: dict) -> str:
    """Changes with anything the points depend on: names ``points.bin`` URLs and ETags."""
    lay = s["layout"] or {}
    return etag(lay.get("id"), lay.get("created"), s["build"], s["run_id"], s.get("token"))[1:-1]


def points(conn: Connection, s: dict) -> dict[str, np.ndarray]:
    """The layout's points in atlas order, computed once for concurrent requests (the
    page asks for map.json and points.bin at the same time; both need the arrays)."""
    lay, levels = s["layout"], s["levels"]
    key = ("arrays", lay["id"], lay["created"], s["run_id"], s["build"],
           tuple((lv["level"], lv["per_sheet"]) for lv in levels[:1]))
    return _ARRAYS.get(s["token"], key, lambda: _points(conn, lay, s["run_id"], levels, s["build"]))


def _points(conn: Connection, layout: dict, run_id: int | None, levels: list[dict], build: str | None) -> dict[str, np.ndarray]:
    """Arrays of the layout's points in atlas order (points without a cell last).

    Three plain scans joined with numpy: ~3x faster than one SQL join at 100k points."""
    def scan(sql: str, params: list, cols: int) -> np.ndarray:
        return as_array(conn.execute(sql, params).fetchall(), cols)

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


def cluster_ids(conn: Connection, s: dict) -> list[int]:
    """Cluster ids of the state's run in the order map.json lists them (cheap: no centres)."""
    if s["run_id"] is None or "clusters" not in s["tables"]:
        return []
    return [r[0] for r in conn.execute("SELECT id FROM clusters WHERE run_id = ? ORDER BY id", [s["run_id"]])]


def _clusters(conn: Connection, s: dict) -> list[dict]:
    """The run's clusters with their centre on the map (mean of their members' cells),
    computed with numpy from the same scans as the points (a GROUP BY join over 100k
    members was ~4x slower)."""
    if s["run_id"] is None or "clusters" not in s["tables"]:
        return []
    rows = conn.execute("SELECT id, kind, label, size FROM clusters WHERE run_id = ? ORDER BY id",
                        [s["run_id"]]).fetchall()
    if not rows:
        return []
    pts = points(conn, s)
    idx = cluster_index(pts["cluster"], [r[0] for r in rows])
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


def cluster_index(cluster: np.ndarray, cluster_ids: list[int]) -> np.ndarray:
    """Position of each point's cluster in the (id-ordered) cluster list, -1 if none."""
    cids = np.asarray(cluster_ids, np.int64)
    if not len(cids):
        return np.full(len(cluster), -1, np.int32)
    pos = np.minimum(np.searchsorted(cids, cluster), len(cids) - 1)
    return np.where(cids[pos] == cluster, pos, -1).astype(np.int32)


def arrays_json(conn: Connection, s: dict) -> dict[str, list]:
    """The points as JSON-ready lists (``map.json?points=1``, for scripts)."""
    pts = points(conn, s)
    return {"id": pts["id"].tolist(), "x": np.round(pts["x"], 3).tolist(), "y": np.round(pts["y"], 3).tolist(),
            "cluster": cluster_index(pts["cluster"], [c["id"] for c in s["clusters"]]).tolist(),
            "atlas_index": [None if c == NO_CELL else int(c) for c in pts["cell"]]}


def packed_points(conn: Connection, s: dict) -> bytes:
    """``points.bin``: the arrays in the ICM1 format (:data:`POINTS_FORMAT`)."""
    return _PACKED.get(s["token"], ("packed", s["layout"]["id"], version(s)), lambda: _pack(conn, s))


def _pack(conn: Connection, s: dict) -> bytes:
    p = points(conn, s)
    n = len(p["id"])
    cidx = cluster_index(p["cluster"], cluster_ids(conn, s))
    return b"".join([
        MAGIC, struct.pack("<III", n, 0, 0),
        p["x"].astype("<f4").tobytes(), p["y"].astype("<f4").tobytes(),
        p["id"].astype("<u4").tobytes(), cidx.astype("<i4").tobytes(),
        np.where(p["cell"] == NO_CELL, NO_CELL, p["cell"]).astype("<u4").tobytes(),
    ])
