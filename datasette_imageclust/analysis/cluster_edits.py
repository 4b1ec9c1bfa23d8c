"""The mechanics under curation's operations, on one run's tables: move images between
clusters (sizes, ranks, cohesion), make and remove clusters, keep what undo needs, and
find a cluster again after a re-run by its members.

Edits keep each cluster's centroid (the clustering's): a moved image is ranked by its
cosine distance to its new cluster's centroid, read from its image vector when the run
clustered the current model's image vectors; otherwise (runs on descriptions or tags, a
re-embedded database) it keeps the distance it had. A cluster made by an edit gets the
mean of its images' vectors as centroid (none without vectors). Ranks (and so the
representatives) follow the distances; cohesion is 1 - the mean distance. A cluster an
edit empties is removed. A re-run recomputes all of it.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterable

import numpy as np
import sqlite_utils

from ..store import vectors as vecstore
from ..store.collection import ImageCollection
from .clusterstore import MATCH
from .clustering import normalise


class CurationError(ValueError):
    """A curation operation that cannot be done as asked (a user's mistake): one line
    saying why. Nothing was written. (Public as ``curation.CurationError``.)"""


def clusters_of(db: sqlite_utils.Database, run_id: int) -> dict[int, str]:
    """The run's clusters: id -> kind."""
    return dict(db.execute("SELECT id, kind FROM clusters WHERE run_id = ?", [run_id]).fetchall())


def members_of(db: sqlite_utils.Database, cluster_id: int) -> list[int]:
    return [r[0] for r in db.execute("SELECT image_id FROM cluster_members WHERE cluster_id = ? ORDER BY image_id",
                                     [cluster_id])]


def where_are(db: sqlite_utils.Database, run_id: int, image_ids: Iterable[int]) -> dict[int, int]:
    """image id -> its cluster in the run, for those of ``image_ids`` that are in it."""
    return dict(db.execute("SELECT image_id, cluster_id FROM cluster_members WHERE run_id = ? AND image_id IN "
                           "(SELECT value FROM json_each(?))", [run_id, json.dumps([int(i) for i in image_ids])]))


def unclustered(db: sqlite_utils.Database, run_id: int) -> int | None:
    row = db.execute("SELECT id FROM clusters WHERE run_id = ? AND kind = 'unclustered'", [run_id]).fetchone()
    return row[0] if row else None


def find_again(db: sqlite_utils.Database, run_id: int, members: list[int]) -> int | None:
    """After a re-run: the run's cluster whose members best overlap ``members`` (what a
    cluster held when an operation named it), if the Jaccard overlap is at least ``MATCH``
    (the rule that keeps cluster ids across re-runs); ties go to the lower id."""
    if not members:
        return None
    best: tuple[float, int] | None = None
    for cid, size, common in db.execute(
            "SELECT c.id, c.size, count(*) FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
            "WHERE m.run_id = ? AND c.kind = 'cluster' AND m.image_id IN (SELECT value FROM json_each(?)) "
            "GROUP BY c.id", [run_id, json.dumps(members)]):
        j = common / (len(members) + size - common)
        if j >= MATCH and (best is None or (j, -cid) > (best[0], -best[1])):
            best = (j, cid)
    return best[1] if best else None


# --- vectors --------------------------------------------------------------------------------


def image_vectors(db: sqlite_utils.Database, run: dict, image_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """The image vectors of ``image_ids`` when the run clustered the current model's image
    vectors; empty when it did not or they cannot be read (no sqlite-vec on this connection)."""
    if run.get("source", "images") != "images" or run.get("model_id") != ImageCollection(db).model_id():
        return {}
    try:
        dims = vecstore.dimensions(db)
        if dims is None:
            return {}
        out = {}
        for i in image_ids:  # point lookups: vec0 answers `key = ?` from its index
            row = db.execute(f"SELECT embedding FROM {vecstore.TABLE} WHERE {vecstore.IMAGES.key} = ?",
                             [int(i)]).fetchone()
            if row:
                out[int(i)] = normalise(np.frombuffer(row[0], np.float32)[None, :])[0]
        return out
    except sqlite3.OperationalError:  # vec0 not loaded: distances are kept instead
        return {}


# --- moving images --------------------------------------------------------------------------


def new_cluster(db: sqlite_utils.Database, run: dict, kind: str, image_ids: list[int]) -> int:
    """A new (empty) cluster of the run, its centroid the mean of ``image_ids``' vectors."""
    vecs = image_vectors(db, run, image_ids)
    centroid = None
    if vecs and len(vecs) == len(image_ids):
        centroid = normalise(np.mean(list(vecs.values()), axis=0)[None, :])[0].astype(np.float32).tobytes()
    return db["clusters"].insert({"run_id": run["id"], "kind": kind, "size": 0, "cohesion": None,
                                  "centroid": centroid, "label": None}).last_pk


def place(db: sqlite_utils.Database, run: dict, image_ids: list[int], target: int) -> tuple[list, set[int]]:
    """Move the run's ``image_ids`` into cluster ``target``: returns what undo needs
    ([image_id, old cluster, old distance] of each image that moved) and the clusters
    touched (call :func:`settle` on them)."""
    where = where_are(db, run["id"], image_ids)
    moving = [i for i in image_ids if i in where and where[i] != target]
    if not moving:
        return [], set()
    old = {i: (c, d) for i, c, d in db.execute(
        "SELECT image_id, cluster_id, distance FROM cluster_members WHERE run_id = ? AND image_id IN "
        "(SELECT value FROM json_each(?))", [run["id"], json.dumps(moving)])}
    row = db.execute("SELECT centroid FROM clusters WHERE id = ?", [target]).fetchone()
    centroid = np.frombuffer(row[0], np.float32) if row and row[0] else None
    vecs = image_vectors(db, run, moving) if centroid is not None else {}
    db.conn.executemany(
        "UPDATE cluster_members SET cluster_id = ?, distance = ? WHERE run_id = ? AND image_id = ?",
        [(target, float(1 - vecs[i] @ centroid) if i in vecs and len(vecs[i]) == len(centroid) else old[i][1],
          run["id"], i) for i in moving])
    return [[i, old[i][0], old[i][1]] for i in moving], {target} | {old[i][0] for i in moving}


def settle(db: sqlite_utils.Database, cluster_ids: Iterable[int]) -> list[dict]:
    """After images moved: each cluster's ranks (by distance), size and cohesion; a cluster
    left empty is removed. Returns the snapshots of the removed ones (for undo)."""
    removed = []
    for cid in sorted(set(cluster_ids)):
        rows = db.execute("SELECT image_id, distance, rank FROM cluster_members WHERE cluster_id = ? "
                          "ORDER BY distance, image_id", [cid]).fetchall()
        if not rows:
            if db.execute("SELECT 1 FROM clusters WHERE id = ?", [cid]).fetchone():
                removed.append(snapshot(db, cid))
                remove_cluster(db, cid)
            continue
        db.conn.executemany("UPDATE cluster_members SET rank = ? WHERE cluster_id = ? AND image_id = ?",
                            [(k + 1, cid, i) for k, (i, _, rank) in enumerate(rows) if rank != k + 1])
        db.execute("UPDATE clusters SET size = ?, cohesion = ? WHERE id = ?",
                   [len(rows), round(1 - sum(r[1] for r in rows) / len(rows), 6), cid])
    return removed


def remove_cluster(db: sqlite_utils.Database, cluster_id: int) -> None:
    # its note goes with it (trigger curation_forget_cluster)
    db.execute("DELETE FROM cluster_labels WHERE cluster_id = ?", [cluster_id])
    db.execute("DELETE FROM clusters WHERE id = ?", [cluster_id])


# --- undo -------------------------------------------------------------------------------------


def snapshot(db: sqlite_utils.Database, cluster_id: int) -> dict[str, Any]:
    """A cluster's row, labels and note, as JSON-able data (the centroid as hex)."""
    row = next(db.query("SELECT * FROM clusters WHERE id = ?", [cluster_id]))
    if row.get("centroid") is not None:
        row["centroid"] = bytes(row["centroid"]).hex()
    return {"row": row,
            "labels": list(db.query("SELECT * FROM cluster_labels WHERE cluster_id = ?", [cluster_id])),
            "note": next(db.query("SELECT * FROM cluster_notes WHERE cluster_id = ?", [cluster_id]), None)}


def restore(db: sqlite_utils.Database, snap: dict[str, Any]) -> None:
    """Put back a cluster :func:`settle` removed, with its id, labels and note."""
    row = dict(snap["row"])
    if db.execute("SELECT 1 FROM clusters WHERE id = ?", [row["id"]]).fetchone():
        raise CurationError(f"cannot undo: cluster id {row['id']} has been taken by another cluster since")
    if row.get("centroid") is not None:
        row["centroid"] = bytes.fromhex(row["centroid"])
    db["clusters"].insert(row)
    for label in snap["labels"]:
        db["cluster_labels"].insert(label)
    if snap["note"]:
        db["cluster_notes"].insert(snap["note"])


def unplace(db: sqlite_utils.Database, run_id: int, moved: list) -> set[int]:
    """Move images back where :func:`place` found them (those still in the run)."""
    db.conn.executemany("UPDATE cluster_members SET cluster_id = ?, distance = ? WHERE run_id = ? AND image_id = ?",
                        [(c, d, run_id, i) for i, c, d in moved])
    return {c for _, c, _ in moved}
