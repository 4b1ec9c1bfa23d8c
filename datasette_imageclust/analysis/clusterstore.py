"""Clustering runs in the database: store, stable ids across re-runs, default run, labels.

A run is named; re-running a name replaces its clusters but keeps the run row and every
cluster id whose members match an old cluster (Jaccard >= ``MATCH``), so a person's
label (source ``user``) survives. The unclustered group is a cluster of kind
``unclustered`` and is matched only with the old unclustered group.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import sqlite_utils

from ..store.collection import ImageCollection, NotFound, label_rank_sql
from ..store.schema import migrate, now
from .clustering import UNCLUSTERED, normalise

MATCH = 0.5  # Jaccard overlap for a new cluster to inherit an old cluster's id


class StoreError(Exception):
    """Nothing to cluster, an unknown run or cluster; the message says what."""


@dataclass
class ClusterRow:
    kind: str
    members: np.ndarray  # image ids, by rank
    distances: np.ndarray
    centroid: np.ndarray
    cohesion: float


def summarise(ids: np.ndarray, x: np.ndarray, labels: np.ndarray) -> list[ClusterRow]:
    """Per cluster: members ranked by cosine distance to the normalised centroid."""
    out = []
    order_all = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order_all], np.arange(-1, int(labels.max(initial=-1)) + 2))
    groups = [(c, "cluster") for c in range(int(labels.max(initial=-1)) + 1)] + [(UNCLUSTERED, "unclustered")]
    for c, kind in groups:
        m = order_all[bounds[c + 1] : bounds[c + 2]]
        if len(m) == 0:
            continue
        cent = normalise(x[m].mean(0, keepdims=True))[0]
        sims = x[m] @ cent
        order = np.argsort(-sims, kind="stable")
        out.append(ClusterRow(kind, ids[m][order], (1 - sims[order]).astype(float), cent,
                              float(sims.mean())))
    return out


def _match(old: dict[int, tuple[str, set]], new: list[ClusterRow]) -> dict[int, int]:
    """new index -> old cluster id, greedily by Jaccard overlap (best first)."""
    cands = []
    member_of: dict[int, list[int]] = {}
    for oid, (_, mem) in old.items():
        for i in mem:
            member_of.setdefault(i, []).append(oid)
    for ni, row in enumerate(new):
        nset = set(row.members.tolist())
        if row.kind == "unclustered":  # one per run: always the same group
            for oid, (okind, _) in old.items():
                if okind == "unclustered":
                    cands.append((2.0, ni, oid))
            continue
        touched = {o for i in nset for o in member_of.get(i, ())}
        for oid in touched:
            okind, oset = old[oid]
            if okind != row.kind:
                continue
            j = len(nset & oset) / len(nset | oset)
            if j >= MATCH:
                cands.append((j, ni, oid))
    out: dict[int, int] = {}
    used: set[int] = set()
    for j, ni, oid in sorted(cands, reverse=True):
        if ni not in out and oid not in used:
            out[ni] = oid
            used.add(oid)
    return out


def store_run(db: sqlite_utils.Database, name: str, method: str, params: dict, ids: np.ndarray,
              x: np.ndarray, labels: np.ndarray, *, model_id: int | None, seconds: float | None,
              representatives: int = 3, default: bool | None = None, source: str = "images",
              after_match: Callable[[sqlite_utils.Database, int], Any] | None = None) -> int:
    """Write (or replace) run ``name``; returns its id. ``default`` True makes it the
    default run; None keeps the current default (or makes it default if there is none).
    ``source``: what ``x`` is the vectors of (images, descriptions, tags). ``after_match(db,
    run_id)`` runs in the same transaction once the clusters are stored and matched: where
    the run's edits are re-applied (``curation.reapply``; passed in, as curation builds on
    this module)."""
    migrate(db, "clusters")
    rows = summarise(ids, x, labels)
    n_clusters = sum(r.kind == "cluster" for r in rows)
    with db.conn:
        prev = db.execute("SELECT id, is_default FROM cluster_runs WHERE name = ?", [name]).fetchone()
        has_default = db.execute("SELECT 1 FROM cluster_runs WHERE is_default = 1 AND name != ?",
                                 [name]).fetchone()
        is_default = bool(default) or (default is None and (not has_default or bool(prev and prev[1])))
        if is_default:
            db.execute("UPDATE cluster_runs SET is_default = 0")
        elif prev and prev[1] and not has_default:  # the default run re-run with --no-default
            _hand_on_default(db, prev[0])
        run = {"name": name, "method": method, "params": json.dumps(params, sort_keys=True), "source": source,
               "model_id": model_id, "is_default": int(is_default), "representatives": representatives,
               "n_images": int(len(ids)), "n_clusters": n_clusters, "created": now(),
               "seconds": None if seconds is None else round(seconds, 3)}
        old: dict[int, tuple[str, set]] = {}
        if prev:
            run_id = prev[0]
            kinds = dict(db.execute("SELECT id, kind FROM clusters WHERE run_id = ?", [run_id]).fetchall())
            for cid, iid in db.execute("SELECT cluster_id, image_id FROM cluster_members WHERE run_id = ?", [run_id]):
                old.setdefault(cid, (kinds[cid], set()))[1].add(iid)
            for cid, k in kinds.items():
                old.setdefault(cid, (k, set()))
            db["cluster_runs"].update(run_id, run)
        else:
            run_id = db["cluster_runs"].insert(run).last_pk
        matched = _match(old, rows)
        kept = set(matched.values())
        gone = [c for c in old if c not in kept]
        db.execute("DELETE FROM cluster_members WHERE run_id = ?", [run_id])
        # Machine labels are recomputed; a person's label stays with a matched cluster.
        if old:
            q = ",".join("?" * len(old))
            db.execute(f"DELETE FROM cluster_labels WHERE cluster_id IN ({q}) AND source != 'user'", list(old))
        if gone:
            q = ",".join("?" * len(gone))
            db.execute(f"DELETE FROM cluster_labels WHERE cluster_id IN ({q})", gone)
            db.execute(f"DELETE FROM clusters WHERE id IN ({q})", gone)
        members = []
        for ni, r in enumerate(rows):
            rec = {"run_id": run_id, "kind": r.kind, "size": int(len(r.members)),
                   "cohesion": round(r.cohesion, 6), "centroid": r.centroid.astype(np.float32).tobytes(),
                   "label": _unclustered_label(len(r.members)) if r.kind == "unclustered" else None}
            if ni in matched:
                cid = matched[ni]
                db["clusters"].update(cid, rec)
            else:
                cid = db["clusters"].insert(rec).last_pk
            members += [(run_id, cid, int(i), float(d), k + 1)
                        for k, (i, d) in enumerate(zip(r.members, r.distances))]
        db.conn.executemany("INSERT INTO cluster_members (run_id, cluster_id, image_id, distance, rank) "
                            "VALUES (?, ?, ?, ?, ?)", members)
        refresh_best_labels(db, run_id)
        if after_match is not None:
            after_match(db, run_id)
    return run_id


def _unclustered_label(n: int) -> str:
    return f"unclustered ({n} image{'' if n == 1 else 's'})"


def refresh_best_labels(db: sqlite_utils.Database, run_id: int) -> None:
    """clusters.label = the best available label (``LABEL_PRECEDENCE``: user > ollama > clip > tags > terms)."""
    db.execute(
        f"""UPDATE clusters SET label = COALESCE((
              SELECT l.label FROM cluster_labels l WHERE l.cluster_id = clusters.id
              ORDER BY {label_rank_sql("l.source")} LIMIT 1),
            CASE WHEN kind = 'unclustered' THEN 'unclustered (' || size ||
                 CASE WHEN size = 1 THEN ' image)' ELSE ' images)' END END)
            WHERE run_id = ?""", [run_id])


def put_label(db: sqlite_utils.Database, cluster_id: int, source: str, label: str, detail: Any = None) -> None:
    db.execute(
        "INSERT OR REPLACE INTO cluster_labels (cluster_id, source, label, detail, created) VALUES (?, ?, ?, ?, ?)",
        [cluster_id, source, label, None if detail is None else json.dumps(detail), now()])


def set_user_label(db: sqlite_utils.Database, cluster_id: int, text: str | None, detail: Any = None) -> int:
    """Set (or with None/empty, remove) a person's own label; returns the run id. Inside a
    caller's transaction (curation's operations) it writes there, without committing."""
    migrate(db, "clusters")
    row = db.execute("SELECT run_id FROM clusters WHERE id = ?", [cluster_id]).fetchone()
    if not row:
        raise StoreError(f"no cluster with id {cluster_id}")
    with nullcontext() if db.conn.in_transaction else db.conn:
        if text and text.strip():
            put_label(db, cluster_id, "user", text.strip(), detail)
        else:
            db.execute("DELETE FROM cluster_labels WHERE cluster_id = ? AND source = 'user'", [cluster_id])
        refresh_best_labels(db, row[0])
    return row[0]


def find_run(db: sqlite_utils.Database, name: str | None = None) -> dict:
    """The run ``name`` (or id), else the default one (the rule is
    :meth:`ImageCollection.run`); StoreError when there is none."""
    try:
        run = ImageCollection(db).run(name)
    except NotFound as e:
        raise StoreError(str(e)) from e
    if run is None:
        raise StoreError("this database has no clustering yet: run `imageclust cluster` first")
    return run


def _hand_on_default(db: sqlite_utils.Database, leaving: int) -> None:
    """The default run ``leaving`` stops being the default: the newest other run takes
    over, so the plugin always has a default to show while there are runs."""
    db.execute("UPDATE cluster_runs SET is_default = (id = (SELECT max(id) FROM cluster_runs WHERE id != ?))",
               [leaving])


def set_default(db: sqlite_utils.Database, name: str) -> None:
    run = find_run(db, name)
    with db.conn:
        db.execute("UPDATE cluster_runs SET is_default = (id = ?)", [run["id"]])


def delete_run(db: sqlite_utils.Database, name: str) -> None:
    run = find_run(db, name)
    with db.conn:
        rid = run["id"]
        db.execute("DELETE FROM cluster_members WHERE run_id = ?", [rid])
        db.execute("DELETE FROM cluster_labels WHERE cluster_id IN (SELECT id FROM clusters WHERE run_id = ?)", [rid])
        db.execute("DELETE FROM clusters WHERE run_id = ?", [rid])
        if db["layouts"].exists():  # a layout may point at the run: keep the layout, drop the link
            db.execute("UPDATE layouts SET run_id = NULL WHERE run_id = ?", [rid])
        if run["is_default"]:
            _hand_on_default(db, rid)
        db.execute("DELETE FROM cluster_runs WHERE id = ?", [rid])


def cluster_listing(db: sqlite_utils.Database, run_id: int) -> list[dict]:
    """Every cluster of a run with labels, representatives and members (file paths)."""
    paths: dict[int, list[str]] = {}
    for iid, path in db.execute("SELECT image_id, path FROM files ORDER BY path"):
        paths.setdefault(iid, []).append(path)
    reps = db.execute("SELECT representatives FROM cluster_runs WHERE id = ?", [run_id]).fetchone()[0]
    labels = ImageCollection(db).labels(r[0] for r in db.execute("SELECT id FROM clusters WHERE run_id = ?", [run_id]))
    members: dict[int, list[tuple[int, float]]] = {}
    for cid, iid, dist in db.execute("SELECT cluster_id, image_id, distance FROM cluster_members "
                                     "WHERE run_id = ? ORDER BY cluster_id, rank", [run_id]):
        members.setdefault(cid, []).append((iid, dist))
    out = []
    for cid, kind, label, size, cohesion in db.execute(
            "SELECT id, kind, label, size, cohesion FROM clusters WHERE run_id = ? "
            "ORDER BY kind = 'unclustered', size DESC, id", [run_id]):
        mem = members.get(cid, [])
        files = [p for iid, _ in mem for p in paths.get(iid, [])]  # every copy, as loaded
        reps_files = [paths[iid][0] for iid, _ in mem[:reps] if paths.get(iid)]
        out.append({
            "id": cid, "kind": kind, "label": label or "", "size": size,
            "cohesion": None if cohesion is None else round(cohesion, 4),
            "labels": labels.get(cid, []),
            "representatives": [] if kind == "unclustered" else reps_files,
            "members": files,
            "image_ids": [iid for iid, _ in mem],
        })
    return out
