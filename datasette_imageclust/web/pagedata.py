"""What the plugin's pages show, as plain dicts: read-only SQL over an imageclust
database, run on Datasette's connections (``db.execute_fn``). No HTML here.

Every query binds its parameters; the only names formatted into SQL are constants.
"""
from __future__ import annotations

import json
import os
from typing import Any, Container

import numpy as np

from ..analysis import search
from ..store import imagenames, paths, publish
from ..store.cache import TokenCache
from ..store.collection import ImageCollection, change_token
from ..store.connection import Connection
from .http import Problem  # noqa: F401  (raised here; answered by the routes)

SORTS = {
    "size": "c.size DESC, c.id",
    "cohesion": "c.cohesion DESC, c.size DESC, c.id",
    "label": "c.label COLLATE NOCASE, c.id",
}


CORE_TABLES = {"imageclust_meta", "models", "images", "files", "thumbnails"}


def is_imageclust(conn: Connection) -> bool:
    """Written by ``imageclust load``: the core schema's version is recorded and its tables
    are there (a look-alike with tables of the same names is not one)."""
    t = ImageCollection(conn).tables()
    if "schema_versions" not in t or not CORE_TABLES <= t:
        return False
    row = conn.execute("SELECT version FROM schema_versions WHERE component = 'core'").fetchone()
    return bool(row and isinstance(row[0], int) and row[0] >= 1)


def rows(conn: Connection, sql: str, params: Any = ()) -> list[dict]:
    cur = conn.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def one(conn: Connection, sql: str, params: Any = ()) -> dict | None:
    r = rows(conn, sql, params)
    return r[0] if r else None


# --- database summary and clustering runs -------------------------------------------


def summary(conn: Connection) -> dict:
    coll = ImageCollection(conn)
    t = coll.tables()
    model = coll.model()
    out = {
        "images": conn.execute("SELECT count(*) FROM images").fetchone()[0],
        "files": conn.execute("SELECT count(*) FROM files").fetchone()[0],
        "model": {k: model[k] for k in ("id", "name", "dimensions")} if model else None,
        "has_clusters": "cluster_runs" in t and conn.execute("SELECT 1 FROM cluster_runs").fetchone() is not None,
        "has_duplicates": "duplicate_groups" in t and conn.execute("SELECT 1 FROM duplicate_groups").fetchone() is not None,
        "has_map": "layouts" in t and conn.execute("SELECT 1 FROM layouts").fetchone() is not None,
    }
    out["index"] = search.status(conn).as_dict()
    return out


# --- cards -------------------------------------------------------------------------


def image_cards(conn: Connection, ids: list[int], run_id: int | None = None,
                features: Container[str] = ("files",)) -> dict[int, dict]:
    """Thumbnail size, a display name (``store/imagenames.py``: by its first post when
    ``posts`` is among the reader's ``features``, else by its file when ``files`` is; else
    None) and (for ``run_id``) the cluster of each image."""
    if not ids:
        return {}
    j = json.dumps([int(i) for i in ids])
    cards = {r["id"]: r for r in rows(conn, """
        SELECT i.id, i.width, i.height, i.format, t.width AS thumb_width, t.height AS thumb_height
        FROM images i LEFT JOIN thumbnails t ON t.image_id = i.id
        WHERE i.id IN (SELECT value FROM json_each(?))""", [j])}
    names = imagenames.known_names(conn, cards, posts="posts" in features, paths="files" in features)
    for i, c in cards.items():
        c["name"] = names.get(i)
    if run_id is not None:
        for r in rows(conn, """SELECT m.image_id, m.cluster_id, c.label, c.kind FROM cluster_members m
                               JOIN clusters c ON c.id = m.cluster_id
                               WHERE m.run_id = ? AND m.image_id IN (SELECT value FROM json_each(?))""",
                      [run_id, j]):
            if r["image_id"] in cards:
                cards[r["image_id"]].update(cluster_id=r["cluster_id"], cluster_label=r["label"],
                                            cluster_kind=r["kind"])
    return cards


def cluster_cards(conn: Connection, run: dict, sort: str, offset: int, limit: int, reps: int = 4) -> tuple[list[dict], int]:
    """One page of a run's clusters with their representatives, and the total count."""
    total = conn.execute("SELECT count(*) FROM clusters WHERE run_id = ?", [run["id"]]).fetchone()[0]
    clusters = rows(conn, f"""
        SELECT c.id, c.kind, c.label, c.size, c.cohesion FROM clusters c WHERE c.run_id = ?
        ORDER BY c.kind = 'unclustered', {SORTS[sort]} LIMIT ? OFFSET ?""", [run["id"], limit, offset])
    if not clusters:
        return [], total
    j = json.dumps([c["id"] for c in clusters])
    members: dict[int, list[int]] = {}
    for cid, iid in conn.execute("""SELECT cluster_id, image_id FROM cluster_members
                                    WHERE cluster_id IN (SELECT value FROM json_each(?)) AND rank <= ?
                                    ORDER BY cluster_id, rank""", [j, reps]):
        members.setdefault(cid, []).append(iid)
    labels = ImageCollection(conn).labels(c["id"] for c in clusters)
    for c in clusters:
        c["representatives"] = members.get(c["id"], [])
        c["labels"] = labels.get(c["id"], [])
    return clusters, total


# --- one cluster -------------------------------------------------------------------


def cluster_detail(conn: Connection, cluster_id: int, offset: int, limit: int) -> dict:
    if "clusters" not in ImageCollection(conn).tables():
        raise Problem(404, "this database has no clusters yet (run: imageclust cluster DATABASE)")
    c = one(conn, "SELECT id, run_id, kind, label, size, cohesion, centroid FROM clusters WHERE id = ?", [cluster_id])
    if c is None:
        raise Problem(404, f"no cluster {cluster_id}")
    run = one(conn, "SELECT id, name, method, is_default, n_clusters FROM cluster_runs WHERE id = ?", [c["run_id"]])
    members = rows(conn, """SELECT image_id, distance, rank FROM cluster_members WHERE cluster_id = ?
                            ORDER BY rank LIMIT ? OFFSET ?""", [cluster_id, limit, offset])
    n_members = conn.execute("SELECT count(*) FROM cluster_members WHERE cluster_id = ?", [cluster_id]).fetchone()[0]
    centroid = c.pop("centroid")
    c["labels"] = ImageCollection(conn).labels([cluster_id]).get(cluster_id, [])
    return {"cluster": c, "run": run, "members": members, "n_members": n_members,
            "neighbours": _neighbours(conn, c, centroid), "order": _prev_next(conn, c)}


_CENTROIDS = TokenCache(16)


def _centroids(conn: Connection, run_id: int) -> tuple[np.ndarray, list[dict]]:
    """All centroids of a run as one matrix (cached until the database changes: a run of
    100k images has ~10k clusters, too many to decode per page view)."""
    return _CENTROIDS.get(change_token(conn), ("centroids", run_id), lambda: _read_centroids(conn, run_id))


def _read_centroids(conn: Connection, run_id: int) -> tuple[np.ndarray, list[dict]]:
    rows_ = rows(conn, """SELECT id, label, size, centroid FROM clusters
                          WHERE run_id = ? AND kind = 'cluster' AND centroid IS NOT NULL ORDER BY id""", [run_id])
    dims = {len(r["centroid"]) for r in rows_}
    if len(dims) != 1:
        rows_ = [r for r in rows_ if len(r["centroid"]) == max(dims, default=0)]
    m = (np.frombuffer(b"".join(r.pop("centroid") for r in rows_), dtype=np.float32).reshape(len(rows_), -1)
         if rows_ else np.zeros((0, 0), np.float32))
    return m, rows_


def _neighbours(conn: Connection, c: dict, centroid: bytes | None, n: int = 6) -> list[dict]:
    """The clusters of the same run whose centroids are nearest this one's."""
    if not centroid or c["kind"] != "cluster":
        return []
    m, info = _centroids(conn, c["run_id"])
    me = np.frombuffer(centroid, dtype=np.float32)
    if not len(info) or m.shape[1] != me.shape[0]:
        return []
    sims = np.einsum("ij,j->i", m, me)
    out = []
    for i in np.argsort(-sims)[: n + 1]:
        if info[i]["id"] != c["id"]:
            out.append({**info[i], "similarity": round(float(sims[i]), 4)})
    return out[:n]


def _prev_next(conn: Connection, c: dict) -> dict:
    """The previous and next clusters of the run in size order (as on the index)."""
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM clusters WHERE run_id = ? ORDER BY kind = 'unclustered', size DESC, id", [c["run_id"]])]
    i = ids.index(c["id"])
    return {"previous": ids[i - 1] if i > 0 else None, "next": ids[i + 1] if i + 1 < len(ids) else None,
            "position": i + 1, "of": len(ids)}


# --- one image ---------------------------------------------------------------------


def image_detail(conn: Connection, image_id: int, k_similar: int, exact: bool = False) -> dict:
    img = one(conn, """SELECT id, sha256, bytes, format, mode, width, height, frames, phash, dhash, taken,
                              camera, latitude, longitude, exif, model_id, created FROM images WHERE id = ?""",
              [image_id])
    if img is None:
        raise Problem(404, f"no image {image_id}")
    try:
        img["exif"] = json.loads(img["exif"]) if img["exif"] else {}
    except ValueError:
        img["exif"] = {"raw": img["exif"]}
    t = ImageCollection(conn).tables()
    files = rows(conn, "SELECT id, path, root, relpath, size, mtime, added FROM files WHERE image_id = ? ORDER BY id",
                 [image_id])
    thumb = one(conn, "SELECT format, width, height, length(data) AS bytes FROM thumbnails WHERE image_id = ?",
                [image_id])
    clusters = []
    if {"cluster_members", "clusters", "cluster_runs"} <= t:
        clusters = rows(conn, """SELECT r.id AS run_id, r.name AS run_name, r.is_default, c.id AS cluster_id,
                                        c.label, c.kind, c.size, m.rank, m.distance
                                 FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id
                                 JOIN cluster_runs r ON r.id = m.run_id
                                 WHERE m.image_id = ? ORDER BY r.is_default DESC, r.created DESC""", [image_id])
    near = []
    if {"duplicate_members", "duplicate_groups"} <= t:
        near = rows(conn, """SELECT DISTINCT o.image_id, g.id AS group_id, g.kind FROM duplicate_members d
                             JOIN duplicate_groups g ON g.id = d.group_id
                             JOIN duplicate_members o ON o.group_id = d.group_id AND o.image_id != d.image_id
                             WHERE d.image_id = ? ORDER BY o.image_id LIMIT 200""", [image_id])
    similar: list[dict] = []
    if k_similar > 0:
        similar = [{"image_id": i, "distance": round(d, 6)}
                   for i, d in search.similar(conn, image_id, k_similar, exact=exact)]
    return {"image": img, "files": files, "thumbnail": thumb, "clusters": clusters,
            "near_duplicates": near, "similar": similar, "redacted": redaction(conn)}


def redaction(conn: Connection) -> str | None:
    """What a copy made by ``imageclust publish-copy`` says it removed, as one line; None
    for an ordinary database (or an unreadable note: the page must not fail on it)."""
    row = conn.execute("SELECT value FROM imageclust_meta WHERE key = ?", [publish.META_KEY]).fetchone()
    try:
        note = json.loads(row[0]) if row and row[0] else None
    except ValueError:
        note = None
    return publish.describe(note) if isinstance(note, dict) else None


def original_file(conn: Connection, file_id: int, root: str | None) -> dict:
    """The file row to serve, only if under ``root`` (already resolved) and present."""
    if not root:
        raise Problem(404, "original files are not served (set the plugin's originals_root)")
    # path_bytes since core schema v2; the plugin never migrates, so older files lack it.
    raw = "f.path_bytes" if "path_bytes" in {r[1] for r in conn.execute("PRAGMA table_info(files)")} else "NULL"
    f = one(conn, f"SELECT f.id, f.path, {raw} AS path_bytes, i.format FROM files f "
                  "JOIN images i ON i.id = f.image_id WHERE f.id = ?", [file_id])
    if f is None:
        raise Problem(404, f"no file {file_id}")
    # The exact name on disk; a published copy's paths are relative (to originals_root).
    real = os.path.realpath(os.path.join(root, paths.os_path(f["path"], f.pop("path_bytes"))))
    # realpath on both sides: a symlink inside the root cannot point outside it.
    if os.path.commonpath([real, root]) != root or not os.path.isfile(real):
        raise Problem(404, "this file is not available from this server")
    f["real"] = real
    return f


def thumbnail(conn: Connection, image_id: int) -> tuple[bytes, str, str] | None:
    """(data, format, etag) of an image's thumbnail."""
    r = conn.execute("""SELECT t.data, t.format, t.width, t.height, i.sha256 FROM thumbnails t
                        JOIN images i ON i.id = t.image_id WHERE t.image_id = ?""", [image_id]).fetchone()
    if r is None:
        return None
    data, fmt, w, h, sha = r
    return data, fmt, f'"{sha[:20]}-{fmt}-{w}x{h}"'
