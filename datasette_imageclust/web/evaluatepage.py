"""The evaluation pages (the AoIR 2025 paper's protocol, :mod:`..analysis.evaluate`)::

    /<database>/-/imageclust/evaluate                    the tasks
    /<database>/-/imageclust/evaluate/<task>             code a task: one set at a time (?set= &coder=)
    /<database>/-/imageclust/evaluate/<task>/results     the report
    /<database>/-/imageclust/evaluate/<task>/answer      POST {"set": N, "cluster": id|null[, "coder": name]}

Each page also as ``.json``; task names are tilde-encoded in URLs as Datasette encodes
table names. Who codes: the actor (its id is the coder), who needs the ``imageclust-edit``
permission; with the plugin setting ``evaluation_anonymous: true`` anyone may, and a
visitor who is not signed in types a name. The coding page never shows what would give a
set's cluster away (no links to image pages, no file names).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from datasette.utils import tilde_decode, tilde_encode
from datasette.utils.asgi import Response

from ..analysis import evaluate as ev
from ..analysis.evaluate_report import report
from . import writes
from .http import Problem, arg, int_arg, route, wants_json
from .pagekit import open_page, render, urls

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.utils.asgi import Request


def task_url(base: str, name: str) -> str:
    return f"{base}/evaluate/{tilde_encode(name)}"


def _task_name(request: Request) -> str:
    raw = request.url_vars.get("task") or ""
    try:
        return tilde_decode(raw)
    except Exception:  # a malformed escape
        raise Problem(400, "the task name in the URL is not validly encoded")


def _read(fn: Any) -> Any:
    """``fn(conn)`` with a missing task (or no evaluation tables) as 404."""

    def call(conn: Any) -> Any:
        if not ev.has_tasks(conn):
            raise Problem(404, "this database has no evaluation tasks (make one with: imageclust evaluate create)")
        try:
            return fn(conn)
        except ev.EvaluationError as e:
            raise Problem(404, str(e))

    return call


async def _open(datasette: Datasette, request: Request):
    """The page's database etc.; 403 unless the actor may view the tables of a task."""
    return await open_page(datasette, request, ("thumbnails", "evaluation", "evaluation_pairs"), "evaluation")


async def coder_of(datasette: Datasette, request: Request, database: str, cfg: Any,
                   typed: str | None) -> tuple[str | None, str | None]:
    """(the coder, why this request may not answer or None). The coder is the actor's id;
    a visitor who is not signed in may code under a typed name only when the plugin
    setting ``evaluation_anonymous`` is true. Without it, answering needs the actor's
    ``imageclust-edit`` permission."""
    db = datasette.get_database(database)
    actor = request.actor
    reason = writes.read_only_reason(db)
    coder = writes.actor_id(actor)
    if coder is None and cfg.evaluation_anonymous and typed:
        try:
            coder = ev.check_name(typed, "coder name")
        except ev.EvaluationError as e:
            raise Problem(400, str(e))
    if reason:
        return coder, reason
    if cfg.evaluation_anonymous:
        return coder, None if coder else "type your name to start coding"
    if not actor:
        return None, "sign in to code this task (answers are stored under your actor id)"
    if not await writes.may_edit(datasette, actor, database):
        return coder, f"actor {coder!r} may not code: answering needs the {writes.PERMISSION} permission"
    return coder, None


@route()
async def tasks_page(datasette, request):
    acc, db, cfg, base = await _open(datasette, request)
    rows = await db.execute_fn(ev.tasks)
    body = {"ok": True, "database": db.name, "tasks": [
        {**{k: t[k] for k in ("name", "run", "kind", "sets", "pairs", "coders", "answers", "created")},
         "url": task_url(base, t["name"]), "results_url": task_url(base, t["name"]) + "/results"} for t in rows],
        "urls": urls(datasette, db)}
    if wants_json(request):
        return Response.json(body)
    return await render(datasette, request, "imageclust_evaluate_tasks.html",
                        {**body, "title": f"Evaluation tasks of {db.name}"})


@route()
async def code_page(datasette, request):
    acc, db, cfg, base = await _open(datasette, request)
    name = _task_name(request)
    coder, why_not = await coder_of(datasette, request, db.name, cfg, arg(request, "coder"))
    wanted = int_arg(request, "set", None, 1, ev.MAX_SETS_PER_CLUSTER * 10**6)

    def read(conn):
        t = ev.task(conn, name)
        sets = ev.sets(conn, t["id"], truth=False) if t["kind"] == "sets" else []
        mine = ev.answers_of(conn, t["id"], coder) if coder else {}
        labels = ev.shuffled_candidates(conn, t, coder or "")
        return t, sets, mine, labels

    t, sets, mine, labels = await db.execute_fn(_read(read))
    if wanted is not None and not 1 <= wanted <= len(sets):
        # (like a page past the last page: a well-formed number that names nothing)
        raise Problem(404, f"set {wanted} is not a set of task {name!r} (sets 1-{len(sets)})" if sets
                      else f"task {name!r} rates pairs: it has no sets to code")
    todo = [s["set_no"] for s in sets if s["set_no"] not in mine]
    current = wanted or (todo[0] if todo else None)
    shown = next((s for s in sets if s["set_no"] == current), None)
    here = task_url(base, t["name"])
    keep = {"coder": coder} if coder and not request.actor else {}
    images = [{"image_id": i, "thumbnail_url": f"{base}/thumb/{i}" if "thumbnails" in acc else None}
              for i in (shown["image_ids"] if shown else [])]
    body = {
        "ok": True, "database": db.name,
        "task": {k: t[k] for k in ("name", "run", "kind", "sets", "pairs", "created")},
        "coder": coder, "can_answer": why_not is None and t["kind"] == "sets", "why_not": why_not,
        "anonymous_allowed": cfg.evaluation_anonymous, "signed_in": bool(request.actor),
        "set": None if shown is None else {"set_no": shown["set_no"], "images": images,
                                            "answer": mine.get(shown["set_no"], "unanswered")},
        "labels": labels, "answered": len(mine), "done": not todo and bool(sets),
        "next_set": todo[0] if todo else None,
        "answer_url": here + "/answer", "results_url": here + "/results", "here": here,
        "set_urls": [{"set_no": s["set_no"], "answered": s["set_no"] in mine,
                      "url": here + "?" + urlencode({**keep, "set": s["set_no"]})} for s in sets],
        "urls": urls(datasette, db),
    }
    if wants_json(request):
        return Response.json(body)
    return await render(datasette, request, "imageclust_evaluate.html",
                        {**body, "title": f"Code {t['name']}", "evaluate_url": f"{base}/evaluate"})


@route()
async def results_page(datasette, request):
    acc, db, cfg, base = await _open(datasette, request)
    name = _task_name(request)
    r = await db.execute_fn(_read(lambda conn: report(conn, name)))
    if r["kind"] == "pairs":
        acc.require("evaluation_pairs")
    here = task_url(base, r["task"])
    body = {"ok": True, "database": db.name, "report": r, "code_url": here, "urls": urls(datasette, db)}
    if wants_json(request):
        return Response.json(body)
    return await render(datasette, request, "imageclust_evaluate_results.html",
                        {**body, "title": f"Results of {r['task']}", "evaluate_url": f"{base}/evaluate"})


MAX_ANSWER_BYTES = 4096  # {"set": N, "cluster": id, "coder": name} is far smaller


@writes.write_route(ev.EvaluationError)
async def answer_route(datasette, request):
    acc, db, cfg, base = await _open(datasette, request)
    name = _task_name(request)
    # evaluation_anonymous opens answering to every visitor who may view the database
    _, body = await writes.write_request(datasette, request, db.name, max_bytes=MAX_ANSWER_BYTES,
                                         permission=None if cfg.evaluation_anonymous else writes.PERMISSION)
    writes.only_keys(body, ("set", "cluster", "coder"))
    set_no = writes.body_int(body, "set")
    cluster = writes.body_int(body, "cluster", required=False)
    typed = writes.body_text(body, "coder", max_len=ev.MAX_NAME)
    coder, why_not = await coder_of(datasette, request, db.name, cfg, typed)
    if why_not or coder is None:
        raise Problem(403, why_not or "no coder")
    await db.execute_fn(_read(lambda conn: ev.task(conn, name)))  # an unknown task: 404

    def write(sdb):
        t = ev.task(sdb, name)
        ev.record_answers(sdb, t, [(coder, set_no, cluster)])
        mine = ev.answers_of(sdb, t["id"], coder)
        todo = [s["set_no"] for s in ev.sets(sdb, t["id"], truth=False) if s["set_no"] not in mine]
        return {"task": t["name"], "coder": coder, "set": set_no, "cluster": cluster, "answered": len(mine),
                "sets": t["sets"], "next_set": todo[0] if todo else None}

    return writes.ok(await writes.run_write(datasette, db.name, write))


_T = r"^/(?P<database>[^/]+)/-/imageclust/evaluate"
ROUTES: list = [
    (_T + r"(\.(?P<format>json))?$", tasks_page),
    (_T + r"/(?P<task>[^/]+?)/results(\.(?P<format>json))?$", results_page),
    (_T + r"/(?P<task>[^/]+?)/answer$", answer_route),
    (_T + r"/(?P<task>[^/]+?)(\.(?P<format>json))?$", code_page),
]
