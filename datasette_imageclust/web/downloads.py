"""Downloads: a run's or a cluster's images as CSV, JSON or a ZIP, written by the export
library (``pipeline.export``) in a worker thread, then streamed from a temporary file.

    /<database>/-/imageclust/export?format=csv|json|zip&run=<name or id>&cluster=<id>
    /<database>/-/imageclust/export?format=csv|json|zip&run=<name or id>&ids=1,2,3

``ids`` (a map selection; parsed and capped as the map's, ``selection.parse_ids``) is an
alternative to ``cluster``: those images, with their clusters in the run.

    POST /<database>/-/imageclust/export   (a form body: format=zip&run=3&ids=1%2C2%2C3)

The same parameters in an ``application/x-www-form-urlencoded`` body, for a selection whose
URL would be too long (the map posts it: ``static/mapselect.js``). Only a read, so it
needs no edit permission and works on immutable databases; CSRF as Datasette does it for
every form (0.65: asgi-csrf's ``csrftoken`` field against its cookie; 1.0: the origin).

The file carries data from several tables: the actor must be able to view ``images``,
``files`` (paths), the clustering tables and ``cluster_labels``; map positions, tags and
descriptions are left out unless they may view those tables too. A ZIP holds original
files only under the plugin's ``originals_root`` (as the original-file route), else the
stored thumbnails (then ``thumbnails`` must be viewable).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from typing import Any, Awaitable, Callable

from datasette.utils import MultiParams
from datasette.utils.asgi import Request, Response

from .. import pipeline
from ..export.selection import ExportError
from ..store import connection
from . import access
from .http import MAX_ID, Problem, Slots, arg, form_body, int_arg, parse_form, route, text_arg
from .selection import MAX_SELECTION, parse_ids
from .settings import settings

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json; charset=utf-8", "zip": "application/zip"}
PARAMS = {"format", "run", "cluster", "ids"}
# A POST body's bound: every valid one fits (MAX_SELECTION ids of up to 19 digits, each
# comma sent as "%2C" by a browser's form, and the other fields); a bigger one is refused.
MAX_FORM = MAX_SELECTION * (len(str(MAX_ID)) + len("%2C")) + 4096
TOO_BIG = f"the form body is over {MAX_FORM:,} bytes (at most {MAX_SELECTION:,} ids may be selected)"
CSRF_FIELD = "csrftoken"  # checked before us on 0.65 (asgi-csrf); 1.0 checks the origin instead
OPTIONAL = {"map": "map", "tags": "tags", "descriptions": "descriptions", "posts": "posts"}  # feature -> records' omit name
BLOCK = 1 << 20
ASGIApp = Callable[[dict, Any, Any], Awaitable[None]]
# Each export holds a thread and reads the whole selection: two at once, then 429.
DOWNLOADSLOTS, SLOT_WAIT = 2, 3.0
SLOTS = Slots(DOWNLOADSLOTS, "downloads")


async def _params(request: Request) -> tuple[MultiParams, set[str]]:
    """The request's parameters (the URL's, or a POST's form fields) and the names allowed."""
    if request.method in ("GET", "HEAD"):
        return request.args, PARAMS
    if request.method != "POST":
        raise Problem(405, "export answers GET and POST", headers={"Allow": "GET, POST"})
    if request.query_string:
        raise Problem(400, "a POST gives its parameters in the form body, not in the URL")
    return parse_form(await form_body(request, MAX_FORM, TOO_BIG)), PARAMS | {CSRF_FIELD}


def guard(app: ASGIApp) -> ASGIApp:
    """An ASGI wrapper (the ``asgi_wrapper`` hook: outside Datasette's CSRF check) that reads
    an export POST's body first, bounded and checked as the route does, then replays it.
    Datasette 0.65's asgi-csrf reads a form's whole body into memory before any route,
    without a limit, and fails with a 500 on one that is not UTF-8 or a multipart type
    without a boundary; this answers those 413 / 400 before it runs."""

    async def guarded(scope, receive, send):
        if scope.get("type") != "http" or scope.get("method") != "POST" or \
                not scope.get("path", "").endswith("/-/imageclust/export"):
            return await app(scope, receive, send)
        try:
            raw = await form_body(Request(scope, receive), MAX_FORM, TOO_BIG)
        except Problem as p:
            return await Response.text(p.message, status=p.status, headers=p.headers).asgi_send(send)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # (a disconnect, if the client goes away)
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await app(scope, replay, send)

    return guarded


@route("text")
async def export(datasette, request):
    params, allowed = await _params(request)
    unknown = sorted(set(params.keys()) - allowed)
    if unknown:
        raise Problem(400, f"unknown parameter {unknown[0]!r} (parameters: format, run, cluster, ids)")
    fmt = arg(params, "format") or "csv"
    if fmt not in FORMATS:
        raise Problem(400, f"format must be one of {', '.join(FORMATS)}")
    run = text_arg(params, "run", 200) or None
    cluster = int_arg(params, "cluster", None)
    raw_ids = arg(params, "ids")
    if raw_ids is not None and cluster is not None:
        raise Problem(400, "give either cluster or ids, not both")
    # Our own SQL over ids parsed as whole numbers: the library's --sql path (read-only).
    ids_sql = None if raw_ids is None else \
        "SELECT value AS image_id FROM json_each('[%s]')" % ",".join(map(str, parse_ids(raw_ids)))
    acc = await access.database(datasette, request, ("files", "clusters", "labels", "thumbnails", *OPTIONAL))
    for feature in ("files", "clusters", "labels"):
        acc.require(feature)
    options: dict = {"omit": frozenset(name for f, name in OPTIONAL.items() if f not in acc)}
    if fmt == "zip":
        root = settings(datasette, acc.db.name).originals_root
        options = {"originals": bool(root), "originals_under": root}
        acc.require("thumbnails")  # what stands in for the originals it may not or cannot hold
    path = acc.db.path
    if acc.db.is_memory or not path:
        raise Problem(400, "an in-memory database cannot be exported")
    tmp = tempfile.mkdtemp(prefix="imageclust-download-")
    part = "cluster-%d" % cluster if cluster is not None else "selection" if ids_sql else "images"
    name = f"{acc.db.name}-{part}.{fmt}"
    out = os.path.join(tmp, name)

    def work() -> dict:
        db = connection.connect(path, readonly=True)
        try:
            return pipeline.export(db, fmt, out, run=run, clusters=None if cluster is None else [cluster],
                                   sql=ids_sql, **options)
        finally:
            connection.close(db)

    try:
        # Its own thread and read-only connection: a long ZIP holds neither the event loop
        # nor one of Datasette's SQL threads.
        async with SLOTS.held(SLOT_WAIT):
            await asyncio.to_thread(work)
    except ExportError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        msg = str(e)
        raise Problem(404 if msg.startswith(("no cluster", "no clustering run")) else 400, msg)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    return _FileStream(out, tmp, {"content-type": FORMATS[fmt],
                                  "content-disposition": f'attachment; filename="{name}"',
                                  "x-content-type-options": "nosniff", "cache-control": "private, no-store"})


class _FileStream:
    """An ASGI answer streaming file ``path`` in blocks, then removing folder ``tmp``."""

    def __init__(self, path: str, tmp: str, headers: dict[str, str]) -> None:
        self.path, self.tmp, self.headers = path, tmp, headers

    async def asgi_send(self, send) -> None:
        try:
            size = os.path.getsize(self.path)
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in
                       {**self.headers, "content-length": str(size)}.items()]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            with open(self.path, "rb") as f:
                while block := await asyncio.to_thread(f.read, BLOCK):
                    await send({"type": "http.response.body", "body": block, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


_DB = r"^/(?P<database>[^/]+)/-/imageclust"
ROUTES: list = [(_DB + r"/export$", export)]
