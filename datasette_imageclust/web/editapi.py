"""The write API of curation: one POST route per operation, calling the curation library
(``analysis/curation.py``) in Datasette's write thread, and a GET of a run's operations.

URLs (a contract)::

    POST /<database>/-/imageclust/edit/<op>        op: label note review move merge split undo
    GET  /<database>/-/imageclust/operations.json  the run's operations, oldest first (?run=)

Bodies (JSON objects; ``run``, a run name or id, is optional everywhere: by default the
run of the cluster named, else the default run)::

    label   {"cluster": 12, "label": "birds"}        null or "" removes the user label
    note    {"cluster": 12, "note": "two themes?"}   null or "" removes the note
    review  {"cluster": 12, "reviewed": true}
    move    {"images": [3, 4], "to": 12}             "to": null = unclustered
    merge   {"clusters": [12, 7]}                    into the first
    split   {"images": [3, 4], "label": "moths"}     a new cluster (label optional)
    undo    {}                                       the run's last operation in force

Answers: ``{"ok": true, "operation": {op_id, op, run, clusters, images}}``, or
``{"ok": false, "errors": [...]}`` with 400 (a bad body, or an edit that does not apply),
403 (no permission, immutable or read-only), 404, 405, 413. Checks in ``writes``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..store.collection import ImageCollection
from . import access
from .http import Problem, arg
from .settings import settings
from .writes import (
    actor_id,
    body_bool,
    body_ids,
    body_int,
    body_text,
    can_edit,
    ok,
    only_keys,
    run_write,
    write_request,
    write_route,
)

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database

MAX_LABEL = 200
MAX_NOTE = 4000
MAX_RUN = 200
MAX_CHOICES = 1000  # clusters offered as move / merge targets on a page

# op -> (the body's keys besides "run", the cluster key whose run is meant by default)
OPS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "label": (("cluster", "label"), "cluster"),
    "note": (("cluster", "note"), "cluster"),
    "review": (("cluster", "reviewed"), "cluster"),
    "move": (("images", "to"), "to"),
    "merge": (("clusters",), "clusters"),
    "split": (("images", "label"), None),
    "undo": ((), None),
}


def _curation():
    # Imported when used: the library is another branch's, and the pages work without it.
    from ..analysis import curation

    return curation


def _run_ref(body: dict) -> str | None:
    v = body.get("run")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise Problem(400, "run must be a run name or id")
    v = str(v).strip()
    if not v or len(v) > MAX_RUN or "\x00" in v:
        raise Problem(400, f"run must be a run name or id of 1 to {MAX_RUN} characters")
    return v


def _call(op: str, body: dict) -> Callable[[Any, Any, str | None], Any]:
    """Parse the body of ``op`` (400 on anything amiss) into a call of the library:
    fn(db, run, actor)."""
    keys, _ = OPS[op]
    only_keys(body, (*keys, "run"))
    lib = _curation()
    if op == "label":
        cid, text = body_int(body, "cluster"), body_text(body, "label", max_len=MAX_LABEL)
        return lambda db, run, who: lib.label(db, cid, text or None, run=run, actor=who)
    if op == "note":
        cid, text = body_int(body, "cluster"), body_text(body, "note", max_len=MAX_NOTE)
        return lambda db, run, who: lib.note(db, cid, text or None, run=run, actor=who)
    if op == "review":
        cid, flag = body_int(body, "cluster"), body_bool(body, "reviewed", True)
        return lambda db, run, who: lib.review(db, cid, flag, run=run, actor=who)
    if op == "move":
        if "to" not in body:
            raise Problem(400, "to is required (a cluster id, or null for unclustered)")
        ids, to = body_ids(body, "images"), body_int(body, "to", required=False)
        return lambda db, run, who: lib.move(db, ids, to, run=run, actor=who)
    if op == "merge":
        cids = body_ids(body, "clusters", least=2)
        return lambda db, run, who: lib.merge(db, cids, run=run, actor=who)
    if op == "split":
        ids, text = body_ids(body, "images"), body_text(body, "label", max_len=MAX_LABEL)
        return lambda db, run, who: lib.split(db, ids, label=text or None, run=run, actor=who)
    return lambda db, run, who: lib.undo(db, run=run, actor=who)


def _cluster_run(db, body: dict, key: str | None) -> str | None:
    """The name of the run of the (first) cluster the body names, if it exists."""
    v = body.get(key) if key else None
    cid = v[0] if isinstance(v, list) and v else v
    if not isinstance(cid, int):
        return None
    row = db.execute("SELECT r.name FROM clusters c JOIN cluster_runs r ON r.id = c.run_id WHERE c.id = ?",
                     [cid]).fetchone()
    return row[0] if row else None


@write_route()
async def edit(datasette: Datasette, request):
    op = request.url_vars["op"]
    if op not in OPS:
        raise Problem(404, f"no such edit: {op[:40]!r} (edits: {', '.join(OPS)})")
    acc = await access.database(datasette, request, ("clusters",))
    acc.require("clusters")
    actor, body = await write_request(datasette, request, acc.db.name)
    run_ref = _run_ref(body)
    call = _call(op, body)
    configured = settings(datasette, acc.db.name).default_run
    who = actor_id(actor)

    def write(db):
        run = run_ref or _cluster_run(db, body, OPS[op][1])
        if run is None:
            found = ImageCollection(db.conn).run(None, configured=configured)
            if found is None:
                raise Problem(400, "this database has no clustering run to edit (run `imageclust cluster`)")
            run = found["name"]
        return call(db, run, who)

    try:
        result = await run_write(datasette, acc.db.name, write)
    except _curation().CurationError as e:  # an edit that does not apply: its one line
        raise Problem(400, str(e).splitlines()[0] if str(e) else "the edit does not apply")
    return ok({"database": acc.db.name, "operation": result.as_dict()})


@write_route()
async def operations(datasette: Datasette, request):
    if request.method not in ("GET", "HEAD"):
        raise Problem(405, "use GET", {"Allow": "GET"})
    acc = await access.database(datasette, request, ("clusters", "operations"))
    acc.require("clusters")
    acc.require("operations")
    requested = arg(request, "run")
    configured = settings(datasette, acc.db.name).default_run

    def read(conn):
        coll = ImageCollection(conn)
        run = coll.run(requested, configured=configured)
        if run is None:
            return None, []
        if "cluster_ops" not in coll.tables():
            return run, []  # no edit was ever made here
        import sqlite_utils

        return run, _curation().operations(sqlite_utils.Database(conn), run=run["name"])

    run, ops = await acc.db.execute_fn(read)
    return ok({"database": acc.db.name, "run": None if run is None else {"id": run["id"], "name": run["name"]},
               "operations": ops})


def cluster_state(conn, cluster_id: int) -> dict:
    """A cluster's note and reviewed state (the library's ``cluster_state``)."""
    import sqlite_utils

    return _curation().cluster_state(sqlite_utils.Database(conn), [cluster_id])[cluster_id]


async def edit_context(datasette: Datasette, request, db: Database, run_ids: list[int]) -> dict | None:
    """What a page needs to show edit controls (None: show none): the API's base URL and
    the clusters of each of ``run_ids`` to offer as targets."""
    if not run_ids or not await can_edit(datasette, request.actor, db.name):
        return None

    def read(conn):
        out = {}
        for rid in run_ids:
            out[str(rid)] = [{"id": r[0], "label": r[1], "size": r[2]} for r in conn.execute(
                "SELECT id, label, size FROM clusters WHERE run_id = ? AND kind = 'cluster' "
                "ORDER BY size DESC, id LIMIT ?", [rid, MAX_CHOICES])]
        return out

    base = datasette.urls.database(db.name) + "/-/imageclust"
    return {"api": base + "/edit/", "operations": base + "/operations.json", "base": base,
            "clusters": await db.execute_fn(read)}


_DB = r"^/(?P<database>[^/]+)/-/imageclust"
ROUTES: list = [
    (_DB + r"/edit/(?P<op>[^/]+)$", edit),
    (_DB + r"/operations\.json$", operations),
]
