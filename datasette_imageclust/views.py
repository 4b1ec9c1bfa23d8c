"""Datasette pages: clusters index, cluster gallery, image page, search, thumbnails.

URLs (a contract), each page also as ``.json``::

    /<database>/-/imageclust                        clusters of a run (?run= &sort= &page=)
    /<database>/-/imageclust/cluster/<id>           members by distance to the centroid (?page=)
    /<database>/-/imageclust/image/<id>             metadata, clusters, duplicates, similar (?k=)
    /<database>/-/imageclust/search?q=<text>        text search (needs the model's text tower)
    /<database>/-/imageclust/search?like=<id>       more like this (&k= &exact=1)
    /<database>/-/imageclust/thumb/<id>             a stored thumbnail (ETag, Cache-Control)
    /<database>/-/imageclust/original/<file id>     an original file, only under originals_root

Read-only. The SQL lives in ``pagedata``; this module is the HTTP layer.
"""
from __future__ import annotations

import base64
import math
import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from datasette.utils import tilde_decode
from datasette.utils.asgi import AsgiFileDownload, Response

from . import pagedata, search, textquery
from .models import ModelError
from .pagedata import Problem
from .pluginconfig import settings

HERE = Path(__file__).parent
STATIC = {"imageclust.css": "text/css; charset=utf-8", "imageclust.js": "application/javascript; charset=utf-8"}
CONTENT_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png"}
MAX_K = 200
MAX_Q = 500


# --- permissions (reused by mapview) --------------------------------------------------


async def check_view(datasette: Any, request: Any, database: str, table: str | None = "images") -> bool:
    """May the request's actor see ``database`` (and ``table``, whose content the pages
    show)? Datasette >= 1.0a20 has ``datasette.allowed``; 0.65 ``permission_allowed``."""
    actor = request.actor if request is not None else None
    allowed = getattr(datasette, "allowed", None)
    if allowed is not None:
        from datasette.resources import DatabaseResource, TableResource  # type: ignore

        if not await allowed(action="view-database", resource=DatabaseResource(database=database), actor=actor):
            return False
        return table is None or bool(
            await allowed(action="view-table", resource=TableResource(database=database, table=table), actor=actor))
    if not await datasette.permission_allowed(actor, "view-instance", default=True):
        return False
    if not await datasette.permission_allowed(actor, "view-database", resource=database, default=True):
        return False
    return table is None or await datasette.permission_allowed(
        actor, "view-table", resource=(database, table), default=True)


async def _database(datasette: Any, request: Any, *, require_imageclust: bool = True):
    """The database named in the URL: 404 if unknown (or, unless told otherwise, not an
    imageclust database), 403 if not allowed."""
    route = tilde_decode(request.url_vars["database"])
    try:
        db = datasette.get_database(route=route)
    except KeyError:
        raise Problem(404, f"database not found: {route}")
    if not await check_view(datasette, request, db.name):
        raise Problem(403, "permission denied")
    if require_imageclust and not await db.execute_fn(pagedata.is_imageclust):
        raise Problem(404, f"{db.name} is not an imageclust database (make one with: imageclust load "
                           f"{db.name}.db FOLDER)")
    return db


def _int_arg(request: Any, name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, f"{name} must be an integer")
    if not low <= value <= high:
        raise Problem(400, f"{name} must be between {low} and {high}")
    return value


def _path_id(request: Any, name: str = "id") -> int:
    raw = request.url_vars.get(name, "")
    if not raw.isdigit() or len(raw) > 18:
        raise Problem(400, f"{name} must be a positive integer")
    return int(raw)


def _base(datasette: Any, db: Any) -> str:
    return datasette.urls.database(db.name) + "/-/imageclust"


def _as_json(request: Any) -> bool:
    return request.url_vars.get("format") == "json"


def _thumb(base: str, card: dict | None, image_id: int) -> dict:
    """Everything a template or script needs to show one image."""
    card = card or {}
    return {
        "image_id": image_id,
        "url": f"{base}/image/{image_id}",
        "thumbnail_url": f"{base}/thumb/{image_id}",
        "thumb_width": card.get("thumb_width"),
        "thumb_height": card.get("thumb_height"),
        "name": card.get("name"),
        "width": card.get("width"),
        "height": card.get("height"),
        "cluster_id": card.get("cluster_id"),
        "cluster_label": card.get("cluster_label"),
    }


async def _render(datasette: Any, request: Any, template: str, context: dict) -> Response:
    context = {**context, "imageclust_static": datasette.urls.path("/-/imageclust/static/")}
    return Response.html(await datasette.render_template(template, context, request=request))


async def _error(datasette: Any, request: Any, p: Problem) -> Response:
    if _as_json(request):
        return Response.json({"ok": False, "error": p.message, "status": p.status}, status=p.status)
    html = await datasette.render_template(
        "imageclust_error.html", {"status": p.status, "message": p.message,
                                  "imageclust_static": datasette.urls.path("/-/imageclust/static/")},
        request=request)
    return Response.html(html, status=p.status)


def _page(handler):
    """Turn Problems into 4xx pages (HTML or JSON), never a 500."""

    async def wrapped(datasette, request):
        try:
            return await handler(datasette, request)
        except Problem as p:
            return await _error(datasette, request, p)

    wrapped.__name__ = handler.__name__
    return wrapped


def _pages(total: int, size: int, page: int) -> dict:
    pages = max(1, math.ceil(total / size))
    return {"page": page, "pages": pages, "page_size": size, "total": total}


def _page_url(path: str, args: dict, page: int) -> str:
    q = {k: v for k, v in args.items() if v not in (None, "") and k != "page"}
    if page > 1:
        q["page"] = page
    return path + ("?" + urlencode(q) if q else "")


# --- pages ---------------------------------------------------------------------------


@_page
async def index_page(datasette, request):
    db = await _database(datasette, request)
    cfg = settings(datasette, db.name)
    sort = request.args.get("sort") or "size"
    if sort not in pagedata.SORTS:
        raise Problem(400, f"sort must be one of: {', '.join(pagedata.SORTS)}")
    page = _int_arg(request, "page", 1, 1, 10**6)
    requested = request.args.get("run")
    base = _base(datasette, db)

    def read(conn):
        info = pagedata.summary(conn)
        run = pagedata.choose_run(conn, requested, cfg.default_run)
        out = {"summary": info, "runs": pagedata.runs(conn), "run": run, "clusters": [], "total": 0, "recent": []}
        if run is not None:
            out["clusters"], out["total"] = pagedata.cluster_cards(
                conn, run, sort, (page - 1) * cfg.page_size, cfg.page_size)
            ids = [i for c in out["clusters"] for i in c["representatives"]]
            out["cards"] = pagedata.image_cards(conn, ids)
        else:
            # No clustering yet: still show the collection, newest first.
            out["total"] = info["images"]
            ids = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id DESC LIMIT ? OFFSET ?",
                                              [cfg.page_size, (page - 1) * cfg.page_size])]
            cards = pagedata.image_cards(conn, ids)
            out["recent"] = [cards.get(i, {"id": i}) for i in ids]
        return out

    data = await db.execute_fn(read)
    paging = _pages(data["total"], cfg.page_size, page)
    if page > paging["pages"]:
        raise Problem(404, f"page {page} is past the last page ({paging['pages']})")
    run = data["run"]
    clusters = [{
        "id": c["id"], "kind": c["kind"], "label": c["label"], "size": c["size"],
        "cohesion": None if c["cohesion"] is None else round(c["cohesion"], 4),
        "labels": c["labels"], "url": f"{base}/cluster/{c['id']}",
        "representatives": [_thumb(base, data["cards"].get(i), i) for i in c["representatives"]],
    } for c in data["clusters"]]
    args = {"run": requested, "sort": sort if sort != "size" else None}
    path = base + (".json" if _as_json(request) else "")
    body = {
        "ok": True, "database": db.name, "summary": data["summary"],
        "run": None if run is None else {k: run[k] for k in ("id", "name", "method", "is_default", "n_images", "n_clusters", "created")},
        "runs": [{"id": r["id"], "name": r["name"], "method": r["method"], "is_default": bool(r["is_default"]),
                  "n_clusters": r["n_clusters"]} for r in data["runs"]],
        "sort": sort, **paging, "clusters": clusters,
        "images": [_thumb(base, c, c["id"]) for c in data["recent"]],
        "next_url": _page_url(path, args, page + 1) if page < paging["pages"] else None,
        "previous_url": _page_url(path, args, page - 1) if page > 1 else None,
        "urls": _urls(datasette, db),
    }
    if _as_json(request):
        return Response.json(body)
    return await _render(datasette, request, "imageclust_index.html", {
        **body, "sorts": list(pagedata.SORTS), "title": f"Clusters of {db.name}",
        "page_urls": [(n, _page_url(path, args, n)) for n in _window(page, paging["pages"])],
    })


def _window(page: int, pages: int) -> list[int]:
    """Page numbers to link: first, last, and a few around the current one."""
    keep = {1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)}
    return sorted(keep)


def _urls(datasette: Any, db: Any) -> dict:
    base = _base(datasette, db)
    return {"database": datasette.urls.database(db.name), "index": base, "search": f"{base}/search",
            "map": f"{base}/map", "images_table": datasette.urls.table(db.name, "images")}


@_page
async def cluster_page(datasette, request):
    db = await _database(datasette, request)
    cfg = settings(datasette, db.name)
    cluster_id = _path_id(request)
    page = _int_arg(request, "page", 1, 1, 10**6)
    size = max(cfg.page_size, 120)
    base = _base(datasette, db)

    def read(conn):
        d = pagedata.cluster_detail(conn, cluster_id, (page - 1) * size, size)
        d["cards"] = pagedata.image_cards(conn, [m["image_id"] for m in d["members"]])
        return d

    d = await db.execute_fn(read)
    paging = _pages(d["n_members"], size, page)
    if page > paging["pages"]:
        raise Problem(404, f"page {page} is past the last page ({paging['pages']})")
    c = d["cluster"]
    sql = ("SELECT m.rank, m.image_id, m.distance, f.path FROM cluster_members m "
           "JOIN files f ON f.image_id = m.image_id WHERE m.cluster_id = :cluster ORDER BY m.rank")
    members = [{**_thumb(base, d["cards"].get(m["image_id"]), m["image_id"]),
                "rank": m["rank"], "distance": round(m["distance"], 5)} for m in d["members"]]
    order = d["order"]
    here = f"{base}/cluster/{cluster_id}" + (".json" if _as_json(request) else "")
    body = {
        "ok": True, "database": db.name,
        "cluster": {**c, "cohesion": None if c["cohesion"] is None else round(c["cohesion"], 4)},
        "run": d["run"], **paging, "members": members,
        "neighbours": [{**n, "url": f"{base}/cluster/{n['id']}"} for n in d["neighbours"]],
        "previous_url": f"{base}/cluster/{order['previous']}" if order["previous"] else None,
        "next_url": f"{base}/cluster/{order['next']}" if order["next"] else None,
        "position": order["position"], "of": order["of"],
        "next_page_url": _page_url(here, {}, page + 1) if page < paging["pages"] else None,
        "previous_page_url": _page_url(here, {}, page - 1) if page > 1 else None,
        "table_url": datasette.urls.table(db.name, "cluster_members") + "?" + urlencode(
            {"cluster_id": cluster_id, "_sort": "rank"}),
        "sql_url": _sql_url(datasette, db.name, sql, {"cluster": cluster_id}),
        "index_url": _page_url(base, {"run": str(d["run"]["id"]) if d["run"] else None}, 1),
        "urls": _urls(datasette, db),
    }
    if _as_json(request):
        return Response.json(body)
    title = c["label"] or f"Cluster {c['id']}"
    return await _render(datasette, request, "imageclust_cluster.html", {**body, "title": title})


def _sql_url(datasette: Any, database: str, sql: str, params: dict) -> str:
    """A link to run ``sql`` with named parameters (1.0 moved queries to /db/-/query)."""
    query = getattr(datasette.urls, "database_query", None)
    if query is not None:
        return query(database, sql) + "&" + urlencode(params)
    return datasette.urls.database(database) + "?" + urlencode({"sql": sql, **params})


@_page
async def image_page(datasette, request):
    db = await _database(datasette, request)
    cfg = settings(datasette, db.name)
    image_id = _path_id(request)
    k = _int_arg(request, "k", cfg.similar, 0, MAX_K)
    base = _base(datasette, db)

    def read(conn):
        d = pagedata.image_detail(conn, image_id, k)
        ids = [s["image_id"] for s in d["similar"]] + [n["image_id"] for n in d["near_duplicates"]]
        run = pagedata.choose_run(conn, None, cfg.default_run)
        d["cards"] = pagedata.image_cards(conn, ids, run["id"] if run else None)
        return d

    d = await db.execute_fn(read)
    files = []
    for f in d["files"]:
        f = dict(f)
        if cfg.originals_root:
            try:
                await db.execute_fn(lambda conn: pagedata.original_file(conn, f["id"], cfg.originals_root))
                f["original_url"] = f"{base}/original/{f['id']}"
            except Problem:
                f["original_url"] = None
        files.append(f)
    body = {
        "ok": True, "database": db.name, "image": d["image"], "files": files, "thumbnail": d["thumbnail"],
        "thumbnail_url": f"{base}/thumb/{image_id}" if d["thumbnail"] else None,
        "clusters": [{**c, "url": f"{base}/cluster/{c['cluster_id']}"} for c in d["clusters"]],
        "exact_duplicates": len(files) - 1 if files else 0,
        "near_duplicates": [_thumb(base, d["cards"].get(n["image_id"]), n["image_id"]) for n in d["near_duplicates"]],
        "similar": [{**_thumb(base, d["cards"].get(s["image_id"]), s["image_id"]), "distance": s["distance"],
                     "similarity": round(1 - s["distance"], 4)} for s in d["similar"]],
        "search_url": f"{base}/search?" + urlencode({"like": image_id}),
        "row_url": datasette.urls.row(db.name, "images", str(image_id)) if hasattr(datasette.urls, "row") else None,
        "urls": _urls(datasette, db),
    }
    if _as_json(request):
        return Response.json(body, default=str)
    name = files[0]["relpath"] if files else f"image {image_id}"
    return await _render(datasette, request, "imageclust_image.html", {**body, "title": name})


@_page
async def search_page(datasette, request):
    db = await _database(datasette, request)
    cfg = settings(datasette, db.name)
    k = _int_arg(request, "k", 48, 1, MAX_K)
    exact = request.args.get("exact") in ("1", "true", "on")
    base = _base(datasette, db)
    model = await db.execute_fn(textquery.database_model)
    if model is None:
        why = "this database has no embedding model recorded (no images loaded yet)"
        avail = {"text": why, "image": why}
    else:
        # Only looks for the model's files: nothing is loaded until a query needs it.
        avail = await _in_thread(textquery.availability, cfg.model or model["name"])
        if avail["text"]:
            avail["text"] = (f"Text search needs the text tower of the database's model ({model['name']}), "
                             f"which is not available on this server: {avail['text']}")
    q, like, upload, note, hits = "", None, None, None, []
    if request.method == "POST":
        if avail["image"]:
            raise Problem(400, f"search by upload is not available: {avail['image']}")
        from .imaging import ImageError
        from .upload import read_image

        data, filename = await read_image(request)
        try:
            vec, decoded = await _in_thread(textquery.embed_upload, cfg.model or model["name"], int(model["dimensions"]),
                                            data, filename)
        except ImageError as e:
            raise Problem(400, f"cannot read the uploaded image: {e}")
        except ModelError as e:
            raise Problem(400, str(e))
        try:
            hits = await db.execute_fn(lambda conn: search.knn(conn, vec, k, exact=exact))
        except search.SearchError as e:
            raise Problem(400, str(e))
        upload = {"name": filename, "width": decoded.width, "height": decoded.height,
                  "thumbnail": f"data:image/{decoded.thumb_format};base64,"
                               + base64.b64encode(decoded.thumbnail).decode("ascii")}
        mode = "upload"
    else:
        q = (request.args.get("q") or "").strip()
        like_raw = (request.args.get("like") or "").strip()
        if q and like_raw:
            raise Problem(400, "give q (text) or like (an image id), not both")
        if len(q) > MAX_Q:
            raise Problem(400, f"q is longer than {MAX_Q} characters")
        if like_raw:
            if not like_raw.isdigit() or len(like_raw) > 18:
                raise Problem(400, "like must be an image id")
            like = int(like_raw)
        mode = "text" if q else "like" if like is not None else None
        if mode == "text" and avail["text"]:
            note = avail["text"]
        elif mode == "text":
            def run_text(conn):
                vec = textquery.embed_text(conn, q, cfg.model)
                return search.knn(conn, vec, k, exact=exact)

            try:
                hits = await db.execute_fn(run_text)
            except (ModelError, search.SearchError) as e:
                note = str(e)
        elif mode == "like":
            def run_like(conn):
                if search.vector_of(conn, like) is None:
                    if conn.execute("SELECT 1 FROM images WHERE id = ?", [like]).fetchone() is None:
                        raise Problem(404, f"no image {like}")
                    return None
                return search.similar(conn, like, k, exact=exact)

            got = await db.execute_fn(run_like)
            if got is None:
                note = f"image {like} has no vector yet, so nothing can be compared with it"
            else:
                hits = got

    def cards(conn):
        run = pagedata.choose_run(conn, None, cfg.default_run)
        ids = [i for i, _ in hits] + ([like] if like is not None else [])
        return pagedata.image_cards(conn, ids, run["id"] if run else None), search.status(conn).as_dict()

    card_map, index = await db.execute_fn(cards)
    body = {
        "ok": True, "database": db.name, "mode": mode, "q": q or None, "like": like, "k": k, "exact": exact,
        "note": note,
        "text_search": {"available": not avail["text"], "note": avail["text"]},
        "upload_search": {"available": not avail["image"], "note": avail["image"]},
        "index": {"present": index["present"], "fresh": index["fresh"], "reason": index["reason"]},
        "query_image": _thumb(base, card_map.get(like), like) if like is not None else None,
        "upload": upload,
        "results": [{**_thumb(base, card_map.get(i), i), "distance": round(d, 6), "similarity": round(1 - d, 4)}
                    for i, d in hits],
        "urls": _urls(datasette, db),
    }
    if _as_json(request):
        return Response.json(body)
    title = (f"Search: {q}" if q else f"More like image {like}" if like is not None
             else "Search by an uploaded image" if upload else "Search")
    return await _render(datasette, request, "imageclust_search.html", {**body, "title": title})


async def _in_thread(fn, *args):
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# --- binary responses --------------------------------------------------------------


def _not_modified(request: Any, etag: str) -> bool:
    got = request.headers.get("if-none-match", "")
    return etag in [t.strip() for t in got.split(",")] or got.strip() == "*"


async def thumb(datasette, request):
    try:
        db = await _database(datasette, request)
        image_id = _path_id(request)
    except Problem as p:
        return Response.text(p.message, status=p.status)
    got = await db.execute_fn(lambda conn: pagedata.thumbnail(conn, image_id))
    if got is None:
        return Response.text(f"no thumbnail for image {image_id}", status=404)
    data, fmt, etag = got
    # Revalidate after a day; the ETag (content hash + format + size) makes that cheap.
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400",
               "X-Content-Type-Options": "nosniff"}
    if _not_modified(request, etag):
        return Response("", status=304, headers=headers)
    return Response(data, headers=headers, content_type=CONTENT_TYPES.get(fmt, "application/octet-stream"))


async def original(datasette, request):
    try:
        db = await _database(datasette, request)
        file_id = _path_id(request)
        root = settings(datasette, db.name).originals_root
        f = await db.execute_fn(lambda conn: pagedata.original_file(conn, file_id, root))
    except Problem as p:
        return Response.text(p.message, status=p.status)
    ctype = CONTENT_TYPES.get((f["format"] or "").lower()) or mimetypes.guess_type(f["real"])[0] \
        or "application/octet-stream"
    # Served inline only as an image type; anything else downloads (never rendered as HTML).
    if not ctype.startswith("image/") or ctype == "image/svg+xml":
        ctype = "application/octet-stream"
    return AsgiFileDownload(f["real"], content_type=ctype,
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600",
                                     "Content-Security-Policy": "default-src 'none'"})


async def static(request):
    name = request.url_vars["name"]
    if name not in STATIC:
        return Response.text("not found", status=404)
    return Response((HERE / "static" / name).read_bytes(), content_type=STATIC[name],
                    headers={"Cache-Control": "public, max-age=3600"})


_DB = r"^/(?P<database>[^/]+)/-/imageclust"
ROUTES: list = [
    (_DB + r"(\.(?P<format>json))?$", index_page),
    (_DB + r"/cluster/(?P<id>[^/]+?)(\.(?P<format>json))?$", cluster_page),
    (_DB + r"/image/(?P<id>[^/]+?)(\.(?P<format>json))?$", image_page),
    (_DB + r"/search(\.(?P<format>json))?$", search_page),
    (_DB + r"/thumb/(?P<id>[^/]+)$", thumb),
    (_DB + r"/original/(?P<id>[^/]+)$", original),
    (r"^/-/imageclust/static/(?P<name>[^/]+)$", static),
]
