"""Curation: the edits people make to a clustering run — rename a cluster (its ``user``
label), note, mark reviewed, move images, merge, split, undo — one library for the
command line and the browser.

Each call is one operation: one transaction (``BEGIN IMMEDIATE``, so concurrent writers
wait for each other instead of interleaving) that records a row of ``cluster_ops`` (who,
when, what, and what undo needs) and applies it to the run's tables (mechanics:
:mod:`.cluster_edits`). A user's mistake raises :class:`CurationError` before anything is
written.

Re-runs: when `imageclust cluster` re-runs a run, :func:`reapply` runs right after the
stable-id matching (``clusterstore.store_run``'s ``after_match``) and applies the run's
operations again, oldest first. An operation names clusters by id and also records their
members at the time; after a re-run it finds each again as the cluster that now holds most
of those members (Jaccard >= ``clusterstore.MATCH``, the rule that keeps ids). One that no
longer applies (its cluster is gone, its images left the run) is kept, marked ``stale``
with the reason, reported, and tried again on the next re-run.
"""
from __future__ import annotations

import getpass
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

import sqlite_utils

from ..store.schema import migrate, now
from . import cluster_edits as edits
from .cluster_edits import CurationError
from .clusterstore import StoreError, find_run, refresh_best_labels, set_user_label

__all__ = ["CurationError", "OpResult", "Reapplied", "cluster_state", "label", "merge", "move", "note",
           "operations", "reapply", "review", "split", "undo"]

OPS = ("label", "note", "review", "move", "merge", "split")


@dataclass
class OpResult:
    """What one operation did."""

    op_id: int  # its row in cluster_ops (for undo: the operation undone)
    op: str  # label, note, review, move, merge, split, undo
    run: str  # run name
    clusters: list[int]  # the clusters it touched (split: the new cluster first)
    images: int  # images that changed cluster
    undid: str | None = None  # undo: the kind of operation undone

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Reapplied:
    """What re-applying a run's operations after a re-run did."""

    applied: int = 0  # operations that still apply (fully or partly)
    partial: list[dict] = field(default_factory=list)  # {op_id, op, reason}: applied to what is left
    stale: list[dict] = field(default_factory=list)  # {op_id, op, reason}: no longer apply

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str | None:
        """The status line `cluster` prints (None: the run has no edits)."""
        if not (self.applied or self.stale):
            return None
        out = f"{self.applied} edit{'' if self.applied == 1 else 's'} re-applied"
        if self.partial:
            out += " (" + "; ".join(f"#{p['op_id']} {p['op']}: {p['reason']}" for p in self.partial) + ")"
        if self.stale:
            out += f", {len(self.stale)} no longer apply: " + \
                "; ".join(f"#{s['op_id']} {s['op']}: {s['reason']}" for s in self.stale)
        return out


class _Stale(Exception):
    """While re-applying: the operation no longer applies (the message says why)."""


class _Applied(NamedTuple):
    clusters: list[int]
    images: int
    undo: dict
    partly: str | None = None  # re-applied to part of what it named: why


# --- the operations ----------------------------------------------------------------------------


def label(db: sqlite_utils.Database, cluster_id: int, text: str | None, *, run: str | int | None = None,
          actor: str | None = None) -> OpResult:
    """Set the cluster's own label (source ``user``, which wins over computed labels);
    '' or None removes it."""
    return _operate(db, "label", run, actor, lambda r: {
        "target": _ref(db, r, cluster_id), "text": (text or "").strip() or None})


def note(db: sqlite_utils.Database, cluster_id: int, text: str | None, *, run: str | int | None = None,
         actor: str | None = None) -> OpResult:
    """Write the cluster's note ('' or None clears it)."""
    return _operate(db, "note", run, actor, lambda r: {
        "target": _ref(db, r, cluster_id), "text": (text or "").strip() or None})


def review(db: sqlite_utils.Database, cluster_id: int, reviewed: bool = True, *, run: str | int | None = None,
           actor: str | None = None) -> OpResult:
    """Mark the cluster reviewed (or, with ``reviewed`` False, not reviewed)."""
    return _operate(db, "review", run, actor, lambda r: {
        "target": _ref(db, r, cluster_id), "reviewed": bool(reviewed)})


def move(db: sqlite_utils.Database, image_ids: list[int], to: int | None, *, run: str | int | None = None,
         actor: str | None = None) -> OpResult:
    """Move images of the run to cluster ``to`` (None: to the unclustered group)."""
    def args(r: dict) -> dict:
        images = _images(db, r, image_ids)
        target = {"cluster": None, "kind": "unclustered", "members": None} if to is None else _ref(db, r, to)
        if target["cluster"] is not None and all(c == target["cluster"] for c in edits.where_are(
                db, r["id"], images).values()):
            raise CurationError(f"{_n(images, 'image')} already in cluster {target['cluster']}")
        return {"images": images, "to": target}

    return _operate(db, "move", run, actor, args)


def merge(db: sqlite_utils.Database, cluster_ids: list[int], *, run: str | int | None = None,
          actor: str | None = None) -> OpResult:
    """Merge the clusters into the first (which keeps its id, label and note)."""
    def args(r: dict) -> dict:
        ids = list(dict.fromkeys(int(c) for c in cluster_ids))
        if len(ids) < 2:
            raise CurationError("merge needs two or more different clusters")
        return {"clusters": [_ref(db, r, c, kinds=("cluster",)) for c in ids]}

    return _operate(db, "merge", run, actor, args)


def split(db: sqlite_utils.Database, image_ids: list[int], *, label: str | None = None,
          run: str | int | None = None, actor: str | None = None) -> OpResult:
    """Make the images a new cluster of the run (with ``label`` as its own label)."""
    return _operate(db, "split", run, actor, lambda r: {
        "images": _images(db, r, image_ids), "label": (label or "").strip() or None})


def undo(db: sqlite_utils.Database, *, run: str | int | None = None, actor: str | None = None) -> OpResult:
    """Undo the run's last operation in force (repeat to go further back)."""
    if not db["cluster_ops"].exists():  # refused before the tables are made
        raise CurationError(f"nothing to undo in run {_run(db, run)['name']!r}")
    with _transaction(db):
        r = _run(db, run)
        row = next(db.query("SELECT * FROM cluster_ops WHERE run_id = ? AND undone IS NULL ORDER BY id DESC LIMIT 1",
                            [r["id"]]), None)
        if row is None:
            raise CurationError(f"nothing to undo in run {r['name']!r}")
        data = json.loads(row["undo"]) if row["undo"] else None
        touched = _reverse(db, r, row["op"], data) if data else []
        db.execute("UPDATE cluster_ops SET undone = ?, undone_by = ? WHERE id = ?", [now(), _actor(actor), row["id"]])
    moved = len(data.get("moved", [])) if data else 0
    return OpResult(row["id"], "undo", r["name"], touched, moved, undid=row["op"])


def operations(db: sqlite_utils.Database, *, run: str | int | None = None) -> list[dict]:
    """The run's operations, oldest first: {id, op, actor, created, args, status, message,
    applied, undone, undone_by} (``args`` without the members recorded for re-runs)."""
    r = _run(db, run)
    if not db["cluster_ops"].exists():
        return []
    out = []
    for row in db.query("SELECT id, op, actor, created, args, status, message, applied, undone, undone_by "
                        "FROM cluster_ops WHERE run_id = ? ORDER BY id", [r["id"]]):
        row["args"] = _shown(json.loads(row["args"]))
        out.append(row)
    return out


def cluster_state(db: sqlite_utils.Database, cluster_ids: list[int]) -> dict[int, dict]:
    """Each cluster's note and reviewed state: {note, note_by, note_at, reviewed,
    reviewed_by, reviewed_at} (read-only; defaults for a cluster without any)."""
    blank = {"note": None, "note_by": None, "note_at": None, "reviewed": False, "reviewed_by": None,
             "reviewed_at": None}
    out = {int(c): dict(blank) for c in cluster_ids}
    if out and db["cluster_notes"].exists():
        for row in db.query("SELECT * FROM cluster_notes WHERE cluster_id IN (SELECT value FROM json_each(?))",
                            [json.dumps(list(out))]):
            cid = row.pop("cluster_id")
            out[cid] = {**row, "reviewed": bool(row["reviewed"])}
    return out


def reapply(db: sqlite_utils.Database, run_id: int, on_status: Callable[[str], None] | None = None) -> Reapplied:
    """Apply the run's operations in force again, oldest first, after a re-run replaced its
    clusters (inside the caller's transaction: ``store_run``'s); ``on_status`` gets the
    line saying what happened (:meth:`Reapplied.line`)."""
    out = Reapplied()
    if not db["cluster_ops"].exists():
        return out
    ops = list(db.query("SELECT * FROM cluster_ops WHERE run_id = ? AND undone IS NULL ORDER BY id", [run_id]))
    if not ops:
        return out
    r = next(db.query("SELECT * FROM cluster_runs WHERE id = ?", [run_id]))
    # What the operations put on clusters the matching kept is rebuilt from them, in order.
    db.execute("DELETE FROM cluster_notes WHERE cluster_id IN (SELECT id FROM clusters WHERE run_id = ?)", [run_id])
    db.execute("DELETE FROM cluster_labels WHERE source = 'user' AND json_valid(detail) AND "
               "json_extract(detail, '$.op') IS NOT NULL AND cluster_id IN (SELECT id FROM clusters WHERE run_id = ?)",
               [run_id])
    for op in ops:
        op["args"] = json.loads(op["args"])
        try:
            done = _apply(db, r, op, replay=True)
            status, message, data = ("partial" if done.partly else "applied"), done.partly, json.dumps(done.undo)
            out.applied += 1
            if done.partly:
                out.partial.append({"op_id": op["id"], "op": op["op"], "reason": done.partly})
        except _Stale as e:
            status, message, data = "stale", str(e), None
            out.stale.append({"op_id": op["id"], "op": op["op"], "reason": message})
        db.execute("UPDATE cluster_ops SET status = ?, message = ?, undo = ?, applied = ? WHERE id = ?",
                   [status, message, data, now(), op["id"]])
    refresh_best_labels(db, run_id)
    if on_status and out.line():
        on_status(out.line())
    return out


# --- recording --------------------------------------------------------------------------------


@contextmanager
def _transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """One write transaction, taken at once (BEGIN IMMEDIATE): a concurrent writer waits
    (up to the connection's busy timeout) instead of failing half-way. Inside a caller's
    transaction, that one is used."""
    migrate(db, "clusters")
    migrate(db, "curation")
    if db.conn.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.conn.rollback()
        raise
    db.conn.commit()


def _operate(db: sqlite_utils.Database, op: str, run: str | int | None, actor: str | None,
             make_args: Callable[[dict], dict]) -> OpResult:
    make_args(_run(db, run))  # a mistake is refused before anything (even this component's tables) is written
    with _transaction(db):
        r = _run(db, run)
        args = make_args(r)
        row = {"run_id": r["id"], "actor": _actor(actor), "created": now(), "op": op, "args": json.dumps(args),
               "status": "applied", "applied": now()}
        op_id = db["cluster_ops"].insert(row).last_pk
        done = _apply(db, r, {**row, "id": op_id, "args": args}, replay=False)
        if op == "move" and not done.images:
            raise CurationError("the images are already there: nothing to move")
        db.execute("UPDATE cluster_ops SET undo = ? WHERE id = ?", [json.dumps(done.undo), op_id])
    return OpResult(op_id, op, r["name"], done.clusters, done.images)


def _actor(actor: str | None) -> str:
    if actor:
        return str(actor)
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli:unknown"


def _run(db: sqlite_utils.Database, run: str | int | None) -> dict:
    try:
        return find_run(db, None if run is None else str(run))
    except StoreError as e:
        raise CurationError(str(e)) from e


def _ref(db: sqlite_utils.Database, r: dict, cluster_id: int, kinds: tuple = ("cluster", "unclustered")) -> dict:
    """A cluster of run ``r`` as an operation records it: its id, kind and members."""
    row = db.execute("SELECT c.kind, r.name FROM clusters c JOIN cluster_runs r ON r.id = c.run_id WHERE c.id = ?",
                     [int(cluster_id)]).fetchone()
    if row is None:
        raise CurationError(f"no cluster with id {cluster_id} in run {r['name']!r}")
    if row[1] != r["name"]:
        raise CurationError(f"cluster {cluster_id} belongs to run {row[1]!r}, not {r['name']!r}")
    if row[0] not in kinds:
        raise CurationError(f"cluster {cluster_id} is the unclustered group: move its images instead")
    return {"cluster": int(cluster_id), "kind": row[0],
            "members": edits.members_of(db, cluster_id) if row[0] == "cluster" else None}


def _images(db: sqlite_utils.Database, r: dict, image_ids: list[int]) -> list[int]:
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    if not ids:
        raise CurationError("no image ids given")
    missing = [i for i in ids if i not in edits.where_are(db, r["id"], ids)]
    if missing:
        raise CurationError(f"{_n(missing, 'image')} not in run {r['name']!r}" + ("" if len(missing) == 1 else
                            ": " + ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")))
    return ids


def _n(items: list, noun: str) -> str:
    return f"{len(items)} {noun}s are" if len(items) != 1 else f"{noun} {items[0]} is"


def _shown(args: dict) -> dict:
    """An operation's args as people read them: cluster ids, not the recorded members."""
    out = {}
    for k, v in args.items():
        if isinstance(v, dict) and "kind" in v:
            v = v["cluster"] if v["kind"] == "cluster" or v["cluster"] is not None else "unclustered"
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            v = [c["cluster"] for c in v]
        out[k] = v
    return out


# --- applying and reversing -----------------------------------------------------------------


def _apply(db: sqlite_utils.Database, r: dict, op: dict, *, replay: bool) -> _Applied:
    """Apply one operation (``replay``: after a re-run, finding clusters by their members)."""
    args, kind = op["args"], op["op"]
    if kind in ("label", "note", "review"):
        cid = _resolve(db, r, args["target"], replay)
        if kind == "label":
            prev = db.execute("SELECT label, detail FROM cluster_labels WHERE cluster_id = ? AND source = 'user'",
                              [cid]).fetchone()
            set_user_label(db, cid, args["text"], {"op": op["id"]} if args["text"] else None)
            return _Applied([cid], 0, {"cluster": cid, "label": prev and prev[0], "detail": prev and prev[1]})
        prev = next(db.query("SELECT * FROM cluster_notes WHERE cluster_id = ?", [cid]), None)
        cols = ("note", "note_by", "note_at") if kind == "note" else ("reviewed", "reviewed_by", "reviewed_at")
        value = args["text"] if kind == "note" else int(args["reviewed"])
        db.execute(f"INSERT INTO cluster_notes (cluster_id, {', '.join(cols)}) VALUES (?, ?, ?, ?) "
                   f"ON CONFLICT (cluster_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in cols),
                   [cid, value, op["actor"], op["created"]])
        return _Applied([cid], 0, {"cluster": cid, "note": prev})
    if kind == "merge":
        found = [c for c in (_resolve(db, r, ref, replay, missing_ok=True) for ref in args["clusters"])]
        ids = list(dict.fromkeys(c for c in found if c is not None))
        lost = [ref["cluster"] for ref, c in zip(args["clusters"], found) if c is None]
        if lost and len(ids) < 2:
            raise _Stale(f"cluster {lost[0]} no longer exists (no cluster holds most of its images)")
        images = [i for c in ids[1:] for i in edits.members_of(db, c)]
        done = _regroup(db, r, images, ids[0] if ids else None, created=[])
        partly = f"cluster {', '.join(map(str, lost))} no longer exist(s)" if lost else None
        return done._replace(clusters=ids, partly=partly)
    images = [i for i in args["images"] if i in edits.where_are(db, r["id"], args["images"])]
    if not images:
        raise _Stale("its images are no longer in the run")
    gone = len(args["images"]) - len(images)
    partly = f"{gone} of its {len(args['images'])} images {'is' if gone == 1 else 'are'} no longer in the run" \
        if gone else None
    created = []
    if kind == "split":
        target = edits.new_cluster(db, r, "cluster", images)
        created.append(target)
    elif args["to"]["kind"] == "unclustered":
        target = edits.unclustered(db, r["id"])
        if target is None:
            target = edits.new_cluster(db, r, "unclustered", images)
            created.append(target)
    else:
        target = _resolve(db, r, args["to"], replay)
    done = _regroup(db, r, images, target, created)
    if kind == "split" and args["label"]:
        set_user_label(db, target, args["label"], {"op": op["id"]})
    return done._replace(partly=partly)


def _resolve(db: sqlite_utils.Database, r: dict, ref: dict, replay: bool, missing_ok: bool = False) -> int | None:
    """The cluster an operation named: by id when made, by its members after a re-run."""
    if not replay:
        return ref["cluster"]
    found = edits.unclustered(db, r["id"]) if ref["kind"] == "unclustered" else \
        edits.find_again(db, r["id"], ref["members"])
    if found is None and not missing_ok:
        raise _Stale("the unclustered group is gone" if ref["kind"] == "unclustered" else
                     f"cluster {ref['cluster']} no longer exists (no cluster holds most of its images)")
    return found


def _regroup(db: sqlite_utils.Database, r: dict, images: list[int], target: int | None,
             created: list[int]) -> _Applied:
    """Move ``images`` into ``target`` and settle every cluster touched."""
    if target is None:
        return _Applied([], 0, {"moved": [], "removed": [], "created": created, "stats": {}})
    sources = set(edits.where_are(db, r["id"], images).values())
    stats = {c: list(v) for c, *v in db.execute(
        "SELECT id, size, cohesion FROM clusters WHERE id IN (SELECT value FROM json_each(?))",
        [json.dumps(sorted(sources | {target}))])}
    moved, touched = edits.place(db, r, images, target)
    removed = edits.settle(db, touched | {target})
    refresh_best_labels(db, r["id"])
    return _Applied([target, *sorted(touched - {target})], len(moved),
                    {"moved": moved, "removed": removed, "created": created, "stats": stats})


def _reverse(db: sqlite_utils.Database, r: dict, kind: str, data: dict[str, Any]) -> list[int]:
    """Put back what an operation's last application changed; returns the clusters touched."""
    if kind == "label":
        if db.execute("SELECT 1 FROM clusters WHERE id = ?", [data["cluster"]]).fetchone():
            set_user_label(db, data["cluster"], data["label"], json.loads(data["detail"]) if data["detail"] else None)
        return [data["cluster"]]
    if kind in ("note", "review"):
        db.execute("DELETE FROM cluster_notes WHERE cluster_id = ?", [data["cluster"]])
        if data["note"] and db.execute("SELECT 1 FROM clusters WHERE id = ?", [data["cluster"]]).fetchone():
            db["cluster_notes"].insert(data["note"])
        return [data["cluster"]]
    for snap in data["removed"]:
        edits.restore(db, snap)
    touched = edits.unplace(db, r["id"], data["moved"])
    for cid in data["created"]:
        edits.remove_cluster(db, cid)
    stats = {int(c): v for c, v in data["stats"].items()}
    edits.settle(db, (touched | set(stats)) - set(data["created"]))
    db.conn.executemany("UPDATE clusters SET size = ?, cohesion = ? WHERE id = ? AND size = ?",
                        [(size, coh, c, size) for c, (size, coh) in stats.items() if c not in data["created"]])
    refresh_best_labels(db, r["id"])
    return sorted(set(stats) | set(data["created"]))
