"""Which images an export carries: a clustering run, some of its clusters, an SQL query.

The one home of the selection rules every format shares, so ``--cluster`` and ``--sql``
mean the same in a CSV, a ZIP and a network:

* the run is :meth:`ImageCollection.run` (by name or id, else the default, else the newest);
* ``clusters`` keeps the members of those clusters of that run (an unknown id is refused);
* ``sql`` keeps the ``image_id`` values of a single read-only SELECT, run so that nothing
  can write (an authorizer that allows only reads, and ``PRAGMA query_only``);
* images come in export order: cluster by cluster (largest first, the unclustered group
  last), by rank within a cluster, then images outside the run by id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..store.collection import ImageCollection, NotFound, raw_connection
from ..store.connection import Connection, sqlite3


class ExportError(ValueError):
    """An export cannot be made as asked; the message is one line for the user."""


@dataclass
class Selection:
    run: dict | None                           # the cluster_runs row (None: no clustering run in the database)
    image_ids: list[int]                       # in export order (cluster, then rank)
    cluster_of: dict[int, int | None]          # image id -> cluster id in `run` (None = unclustered)
    clusters: list[dict] = field(default_factory=list)  # {id, kind, label, size, cohesion} in order

    def cluster(self, cluster_id: int | None) -> dict | None:
        """The ``clusters`` entry of ``cluster_id`` (None for None)."""
        if cluster_id is None:
            return None
        if not hasattr(self, "_by_id"):
            self._by_id = {c["id"]: c for c in self.clusters}
        return self._by_id.get(cluster_id)


def select(db: Connection, *, run: str | int | None = None, clusters: list[int] | None = None,
           sql: str | None = None) -> Selection:
    """The images to export (see the module docstring); :class:`ExportError` for a run,
    cluster or query that cannot be used."""
    col = ImageCollection(db)
    if not col.has("images"):
        raise ExportError("this is not an imageclust database (no images table): make one with `imageclust load`")
    try:
        the_run = col.run(run)
    except NotFound as e:
        raise ExportError(str(e)) from e
    conn = raw_connection(db)
    wanted = None if sql is None else _sql_ids(conn, sql)
    if clusters and the_run is None:
        raise ExportError("--cluster needs a clustering run: run `imageclust cluster` first")
    if the_run is None:
        ids = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id")]
        ids = [i for i in ids if wanted is None or i in wanted]
        return Selection(None, ids, {i: None for i in ids}, [])

    rows = conn.execute("SELECT id, kind, label, size, cohesion FROM clusters WHERE run_id = ? "
                        "ORDER BY kind = 'unclustered', size DESC, id", [the_run["id"]]).fetchall()
    known = {r[0] for r in rows}
    if clusters:
        unknown = [c for c in clusters if c not in known]
        if unknown:
            raise ExportError(f"no cluster {unknown[0]} in run {the_run['name']!r} "
                              f"(see `imageclust clusters DATABASE --run {the_run['name']}`)")
        keep = set(clusters)
        rows = [r for r in rows if r[0] in keep]
    labels = col.labels(r[0] for r in rows)
    order = {r[0]: i for i, r in enumerate(rows)}
    members = conn.execute("SELECT cluster_id, image_id FROM cluster_members WHERE run_id = ? "
                           "ORDER BY cluster_id, rank", [the_run["id"]]).fetchall()
    members.sort(key=lambda m: order.get(m[0], len(order)))  # stable: rank order stays within a cluster
    ids: list[int] = []
    cluster_of: dict[int, int | None] = {}
    for cid, iid in members:
        if cid in order and (wanted is None or iid in wanted):
            ids.append(iid)
            cluster_of[iid] = cid
    if not clusters:  # images outside the run (loaded after it, or without a vector)
        for (iid,) in conn.execute("SELECT id FROM images WHERE id NOT IN "
                                   "(SELECT image_id FROM cluster_members WHERE run_id = ?) ORDER BY id",
                                   [the_run["id"]]):
            if wanted is None or iid in wanted:
                ids.append(iid)
                cluster_of[iid] = None
    present = set(cluster_of.values())
    out = [{"id": cid, "kind": kind, "label": best_label(labels.get(cid), label), "size": size, "cohesion": cohesion}
           for cid, kind, label, size, cohesion in rows if cid in present]
    return Selection(the_run, ids, cluster_of, out)


def best_label(labels: list[dict] | None, stored: str | None) -> str | None:
    """The best label by LABEL_PRECEDENCE (``labels`` come best first), else the stored one (None: unlabelled)."""
    return labels[0]["label"] if labels else (stored or None)


# --- --sql ---------------------------------------------------------------------------------

_READ_ONLY = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
              getattr(sqlite3, "SQLITE_RECURSIVE", 33)}


def _authorize(action: int, *args: Any) -> int:
    return sqlite3.SQLITE_OK if action in _READ_ONLY else sqlite3.SQLITE_DENY


def _sql_ids(conn: Any, sql: str) -> set[int]:
    """The ``image_id`` values of ``sql``, run so that it cannot write anything."""
    need = "--sql must be a single read-only SELECT returning an image_id column"
    if not sql.strip():
        raise ExportError(f"{need}; it is empty")
    query_only = conn.execute("PRAGMA query_only").fetchone()[0]
    conn.execute("PRAGMA query_only = ON")
    conn.set_authorizer(_authorize)
    try:
        cur = conn.execute(sql)
        names = [d[0] for d in cur.description or ()]
        if "image_id" not in names:
            got = ", ".join(names) or "no columns"
            raise ExportError(f"{need}; it returns {got}")
        at = names.index("image_id")
        ids = set()
        for row in cur:
            try:
                ids.add(int(row[at]))
            except (TypeError, ValueError):
                raise ExportError(f"{need}; image_id {row[at]!r} is not an image id") from None
        return ids
    except (sqlite3.Error, sqlite3.Warning, ValueError) as e:  # Warning: more than one statement
        if isinstance(e, ExportError):
            raise
        detail = " ".join(str(e).split())
        if isinstance(e, sqlite3.DatabaseError) and "not authorized" in detail:
            detail = "it would write or change a setting"
        raise ExportError(f"{need} ({detail})") from e
    finally:
        conn.set_authorizer(None)
        conn.execute(f"PRAGMA query_only = {int(query_only)}")
