"""Datasette pages: clusters index, cluster gallery, image page, search, thumbnails.

URLs (a contract), each page also as ``.json``::

    /<database>/-/imageclust                        clusters of a run (?run= &sort= &page=)
    /<database>/-/imageclust/cluster/<id>           members by distance to the centroid (?page=)
    /<database>/-/imageclust/image/<id>             metadata, clusters, duplicates, similar (?k=)
    /<database>/-/imageclust/search?q=<text>        text search (needs the model's text tower)
    /<database>/-/imageclust/search?like=<id>       more like this (&k= &exact=1)
    /<database>/-/imageclust/thumb/<id>             a stored thumbnail (ETag, Cache-Control)
    /<database>/-/imageclust/original/<file id>     an original file, only under originals_root

Read-only. The SQL lives in ``pagedata``, permissions in ``access``, parameters and
errors in ``httputil``; this module puts them together.
"""
from __future__ import annotations

import base64
import math
import mimetypes
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from datasette.utils.asgi import AsgiFileDownload, Response

from ..analysis import embed_query, search
from ..models import ModelError
from ..store.collection import ImageCollection
from . import access, pagedata
from .access import Access
from .http import (
    Problem,
    arg,
    flag_arg,
    image_type,
    in_thread,
    int_arg,
    not_modified,
    path_int,
    route,
    static_url,
    text_arg,
    wants_json,
)
from .settings import Settings, settings

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database
    from datasette.utils.asgi import Request

STATIC = {"imageclust.css", "imageclust.js"}
MAX_K = 200
MAX_Q = 500
MAX_PAGE = 10**6
# What the card of an image can show, besides the image itself.
CARD_FEATURES = ("files", "thumbnails", "clusters")


def _base(datasette: Datasette, db: Database) -> str:
    return datasette.urls.database(db.name) + "/-/imageclust"


async def _open(datasette: Datasette, request: Request, features: tuple[str, ...],
                require: str | None = None) -> tuple[Access, Database, Settings, str]:
    """A page's database and what its actor may see (403/404 first), its settings and its
    base URL; ``require``: the feature the page exists to show."""
    acc = await access.database(datasette, request, features)
    if require:
        acc.require(require)
    return acc, acc.db, settings(datasette, acc.db.name), _base(datasette, acc.db)


def _thumb(base: str, card: dict | None, image_id: int, acc: Access) -> dict:
    """Everything a template or script needs to show one image: only what the actor may
    see (no thumbnail without ``thumbnails``, no file name without ``files``...)."""
    card = card or {}
    thumbs, files, clusters = "thumbnails" in acc, "files" in acc, "clusters" in acc
    return {
        "image_id": image_id,
        "url": f"{base}/image/{image_id}",
        "thumbnail_url": f"{base}/thumb/{image_id}" if thumbs else None,
        "thumb_width": card.get("thumb_width") if thumbs else None,
        "thumb_height": card.get("thumb_height") if thumbs else None,
        "name": card.get("name") if files else None,
        "width": card.get("width"),
        "height": card.get("height"),
        "cluster_id": card.get("cluster_id") if clusters else None,
        "cluster_label": card.get("cluster_label") if clusters else None,
    }


def _withheld(acc: Access, features: tuple[str, ...]) -> list[str]:
    """The parts of a page left out because the actor may not view their tables."""
    return [f for f in features if f not in acc]


async def _render(datasette: Datasette, request: Request, template: str, context: dict) -> Response:
    context = {**context, "imageclust_static": static_url(datasette)}
    return Response.html(await datasette.render_template(template, context, request=request))


def _pages(total: int, size: int, page: int) -> dict:
    pages = max(1, math.ceil(total / size))
    return {"page": page, "pages": pages, "page_size": size, "total": total}


def _page_url(path: str, args: dict, page: int) -> str:
    q = {k: v for k, v in args.items() if v not in (None, "") and k != "page"}
    if page > 1:
        q["page"] = page
    return path + ("?" + urlencode(q) if q else "")


def _summary(info: dict, acc: Access) -> dict:
    return {**info,
            "files": info["files"] if "files" in acc else None,
            "model": info["model"] if "model" in acc else None,
            "has_clusters": info["has_clusters"] and "clusters" in acc,
            "has_duplicates": info["has_duplicates"] and "duplicates" in acc,
            "has_map": info["has_map"] and "map" in acc,
            "index": info["index"] if "index" in acc else None}


async def _search_availability(datasette: Datasette, db: Database, acc: Access) -> tuple[dict | None, dict]:
    """(the database's model, why text / upload search cannot run: {"text", "image"})."""
    model = await db.execute_fn(lambda conn: ImageCollection(conn).model())
    if "similar" not in acc:
        why = "you may not view image_vectors, which similarity search reads"
        return model, {"text": why, "image": why}
    if model is None:
        why = "this database has no embedding model recorded (no images loaded yet)"
        return None, {"text": why, "image": why}
    # Only looks for the model's files: nothing is loaded until a query needs it.
    avail = await in_thread(embed_query.availability, settings(datasette, db.name).model or model["name"])
    if avail["text"]:
        shown = model["name"] if "model" in acc else "the database's model"
        avail["text"] = (f"Text search needs the text tower of {shown}, which is not available on this "
                         f"server: {avail['text'] if 'model' in acc else 'it has none, or it is missing'}")
    return model, avail


# --- pages ---------------------------------------------------------------------------

INDEX_FEATURES = (*CARD_FEATURES, "labels", "model", "duplicates", "map", "index", "similar")


@route()
async def index_page(datasette, request):
    acc, db, cfg, base = await _open(datasette, request, INDEX_FEATURES)
    sort = arg(request, "sort") or "size"
    if sort not in pagedata.SORTS:
        raise Problem(400, f"sort must be one of: {', '.join(pagedata.SORTS)}")
    page = int_arg(request, "page", 1, 1, MAX_PAGE)
    requested = arg(request, "run") if "clusters" in acc else None

    def read(conn):
        info = pagedata.summary(conn)
        coll = ImageCollection(conn)
        run = coll.run(requested, configured=cfg.default_run) if "clusters" in acc else None
        out = {"summary": info, "runs": coll.runs() if "clusters" in acc else [], "run": run,
               "clusters": [], "total": 0, "recent": []}
        if run is not None:
            out["clusters"], out["total"] = pagedata.cluster_cards(
                conn, run, sort, (page - 1) * cfg.page_size, cfg.page_size)
            ids = [i for c in out["clusters"] for i in c["representatives"]]
            out["cards"] = pagedata.image_cards(conn, ids)
        else:
            # No clustering yet (or none the actor may see): the collection, newest first.
            out["total"] = info["images"]
            ids = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id DESC LIMIT ? OFFSET ?",
                                              [cfg.page_size, (page - 1) * cfg.page_size])]
            cards = pagedata.image_cards(conn, ids)
            out["recent"] = [cards.get(i, {"id": i}) for i in ids]
        return out

    data = await db.execute_fn(read)
    model, avail = await _search_availability(datasette, db, acc)
    paging = _pages(data["total"], cfg.page_size, page)
    if page > paging["pages"]:
        raise Problem(404, f"page {page} is past the last page ({paging['pages']})")
    run = data["run"]
    clusters = [{
        "id": c["id"], "kind": c["kind"], "label": c["label"], "size": c["size"],
        "cohesion": None if c["cohesion"] is None else round(c["cohesion"], 4),
        "labels": c["labels"] if "labels" in acc else [], "url": f"{base}/cluster/{c['id']}",
        "representatives": [_thumb(base, data["cards"].get(i), i, acc) for i in c["representatives"]],
    } for c in data["clusters"]]
    args = {"run": requested, "sort": sort if sort != "size" else None}
    path = base + (".json" if wants_json(request) else "")
    body = {
        "ok": True, "database": db.name, "summary": _summary(data["summary"], acc),
        "run": None if run is None else {k: run[k] for k in ("id", "name", "method", "is_default", "n_images",
                                                              "n_clusters", "created")},
        "runs": [{"id": r["id"], "name": r["name"], "method": r["method"], "is_default": bool(r["is_default"]),
                  "n_clusters": r["n_clusters"]} for r in data["runs"]],
        "sort": sort, **paging, "clusters": clusters,
        "images": [_thumb(base, c, c["id"], acc) for c in data["recent"]],
        "next_url": _page_url(path, args, page + 1) if page < paging["pages"] else None,
        "previous_url": _page_url(path, args, page - 1) if page > 1 else None,
        "text_search": {"available": not avail["text"], "note": avail["text"]},
        "withheld": _withheld(acc, INDEX_FEATURES),
        "urls": _urls(datasette, db),
    }
    if wants_json(request):
        return Response.json(body)
    return await _render(datasette, request, "imageclust_index.html", {
        **body, "sorts": list(pagedata.SORTS), "title": f"Clusters of {db.name}",
        "page_urls": [(n, _page_url(path, args, n)) for n in _window(page, paging["pages"])],
    })


def _window(page: int, pages: int) -> list[int]:
    """Page numbers to link: first, last, and a few around the current one."""
    keep = {1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)}
    return sorted(keep)


def _urls(datasette: Datasette, db: Database) -> dict:
    base = _base(datasette, db)
    return {"database": datasette.urls.database(db.name), "index": base, "search": f"{base}/search",
            "map": f"{base}/map", "images_table": datasette.urls.table(db.name, "images")}


CLUSTER_FEATURES = (*CARD_FEATURES, "labels")


@route()
async def cluster_page(datasette, request):
    acc, db, cfg, base = await _open(datasette, request, CLUSTER_FEATURES, "clusters")
    cluster_id = path_int(request)
    page = int_arg(request, "page", 1, 1, MAX_PAGE)
    size = max(cfg.page_size, 120)

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
    members = [{**_thumb(base, d["cards"].get(m["image_id"]), m["image_id"], acc),
                "rank": m["rank"], "distance": round(m["distance"], 5)} for m in d["members"]]
    order = d["order"]
    here = f"{base}/cluster/{cluster_id}" + (".json" if wants_json(request) else "")
    body = {
        "ok": True, "database": db.name,
        "cluster": {**c, "cohesion": None if c["cohesion"] is None else round(c["cohesion"], 4),
                    "labels": c["labels"] if "labels" in acc else []},
        "run": d["run"], **paging, "members": members,
        "neighbours": [{**n, "url": f"{base}/cluster/{n['id']}"} for n in d["neighbours"]],
        "previous_url": f"{base}/cluster/{order['previous']}" if order["previous"] else None,
        "next_url": f"{base}/cluster/{order['next']}" if order["next"] else None,
        "position": order["position"], "of": order["of"],
        "next_page_url": _page_url(here, {}, page + 1) if page < paging["pages"] else None,
        "previous_page_url": _page_url(here, {}, page - 1) if page > 1 else None,
        "table_url": datasette.urls.table(db.name, "cluster_members") + "?" + urlencode(
            {"cluster_id": cluster_id, "_sort": "rank"}),
        "sql_url": _sql_url(datasette, db.name, sql, {"cluster": cluster_id}) if "files" in acc else None,
        "index_url": _page_url(base, {"run": str(d["run"]["id"]) if d["run"] else None}, 1),
        "withheld": _withheld(acc, CLUSTER_FEATURES),
        "urls": _urls(datasette, db),
    }
    if wants_json(request):
        return Response.json(body)
    title = c["label"] or f"Cluster {c['id']}"
    return await _render(datasette, request, "imageclust_cluster.html", {**body, "title": title})


def _sql_url(datasette: Datasette, database: str, sql: str, params: dict) -> str:
    """A link to run ``sql`` with named parameters (1.0 moved queries to /db/-/query)."""
    query = getattr(datasette.urls, "database_query", None)
    if query is not None:
        return query(database, sql) + "&" + urlencode(params)
    return datasette.urls.database(database) + "?" + urlencode({"sql": sql, **params})


IMAGE_FEATURES = (*CARD_FEATURES, "duplicates", "similar", "index")


@route()
async def image_page(datasette, request):
    acc, db, cfg, base = await _open(datasette, request, IMAGE_FEATURES)
    image_id = path_int(request)
    k = int_arg(request, "k", cfg.similar, 0, MAX_K)

    def read(conn):
        d = pagedata.image_detail(conn, image_id, k if "similar" in acc else 0, exact="index" not in acc)
        ids = [s["image_id"] for s in d["similar"]] + [n["image_id"] for n in d["near_duplicates"]]
        run = ImageCollection(conn).run(configured=cfg.default_run) if "clusters" in acc else None
        d["cards"] = pagedata.image_cards(conn, ids, run["id"] if run else None)
        if cfg.originals_root and "files" in acc:
            d["servable"] = set()
            for f in d["files"]:
                try:
                    pagedata.original_file(conn, f["id"], cfg.originals_root)
                    d["servable"].add(f["id"])
                except Problem:
                    pass
        return d

    d = await db.execute_fn(read)
    files = []
    if "files" in acc:
        for f in d["files"]:
            f = dict(f)
            if cfg.originals_root:
                f["original_url"] = f"{base}/original/{f['id']}" if f["id"] in d["servable"] else None
            files.append(f)
    thumbnail = d["thumbnail"] if "thumbnails" in acc else None
    body = {
        "ok": True, "database": db.name, "image": d["image"], "files": files, "thumbnail": thumbnail,
        "thumbnail_url": f"{base}/thumb/{image_id}" if thumbnail else None,
        "clusters": [{**c, "url": f"{base}/cluster/{c['cluster_id']}"} for c in d["clusters"]]
        if "clusters" in acc else [],
        "exact_duplicates": (len(files) - 1 if files else 0) if "files" in acc else None,
        "near_duplicates": [_thumb(base, d["cards"].get(n["image_id"]), n["image_id"], acc)
                            for n in d["near_duplicates"]] if "duplicates" in acc else [],
        "similar": [{**_thumb(base, d["cards"].get(s["image_id"]), s["image_id"], acc), "distance": s["distance"],
                     "similarity": round(1 - s["distance"], 4)} for s in d["similar"]],
        "search_url": f"{base}/search?" + urlencode({"like": image_id}) if "similar" in acc else None,
        "row_url": datasette.urls.row(db.name, "images", str(image_id)) if hasattr(datasette.urls, "row") else None,
        "withheld": _withheld(acc, IMAGE_FEATURES),
        "urls": _urls(datasette, db),
    }
    if wants_json(request):
        return Response.json(body, default=str)
    name = files[0]["relpath"] if files else f"image {image_id}"
    return await _render(datasette, request, "imageclust_image.html", {**body, "title": name})


SEARCH_FEATURES = (*CARD_FEATURES, "similar", "index", "model")


@route()
async def search_page(datasette, request):
    from . import upload

    acc, db, cfg, base = await _open(datasette, request, SEARCH_FEATURES, "similar")
    k = int_arg(request, "k", 48, 1, MAX_K)
    exact = flag_arg(request, "exact") or "index" not in acc
    model, avail = await _search_availability(datasette, db, acc)
    q, like, uploaded, note, hits = "", None, None, None, []
    if request.method == "POST":
        if avail["image"]:
            raise Problem(400, f"search by upload is not available: {avail['image']}")
        name = cfg.model or model["name"]
        vec, decoded, filename = await upload.embed_request(request, name, int(model["dimensions"]))
        try:
            hits = await db.execute_fn(lambda conn: search.knn(conn, vec, k, exact=exact))
        except search.SearchError as e:
            raise Problem(400, str(e))
        uploaded = {"name": filename, "width": decoded.width, "height": decoded.height,
                    "thumbnail": f"data:image/{decoded.thumb_format};base64,"
                                 + base64.b64encode(decoded.thumbnail).decode("ascii")}
        mode = "upload"
    else:
        q = text_arg(request, "q", MAX_Q)
        like = int_arg(request, "like", None, 0)
        if q and like is not None:
            raise Problem(400, "give q (text) or like (an image id), not both")
        mode = "text" if q else "like" if like is not None else None
        if mode == "text" and avail["text"]:
            note = avail["text"]
        elif mode == "text":
            try:
                # The embedding (and, the first time, loading the text tower) is CPU work:
                # in a worker thread, not on the event loop nor in a SQL thread.
                vec = await in_thread(embed_query.embed_query, cfg.model or model["name"], int(model["dimensions"]), q)
                hits = await db.execute_fn(lambda conn: search.knn(conn, vec, k, exact=exact))
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
        run = ImageCollection(conn).run(configured=cfg.default_run) if "clusters" in acc else None
        ids = [i for i, _ in hits] + ([like] if like is not None else [])
        return pagedata.image_cards(conn, ids, run["id"] if run else None), search.status(conn).as_dict()

    card_map, index = await db.execute_fn(cards)
    body = {
        "ok": True, "database": db.name, "mode": mode, "q": q or None, "like": like, "k": k, "exact": exact,
        "note": note,
        "text_search": {"available": not avail["text"], "note": avail["text"]},
        "upload_search": {"available": not avail["image"], "note": avail["image"]},
        "index": {"present": index["present"], "fresh": index["fresh"], "reason": index["reason"]},
        "query_image": _thumb(base, card_map.get(like), like, acc) if like is not None else None,
        "upload": uploaded,
        "results": [{**_thumb(base, card_map.get(i), i, acc), "distance": round(d, 6), "similarity": round(1 - d, 4)}
                    for i, d in hits],
        "withheld": _withheld(acc, SEARCH_FEATURES),
        "urls": _urls(datasette, db),
    }
    if wants_json(request):
        return Response.json(body)
    title = (f"Search: {q}" if q else f"More like image {like}" if like is not None
             else "Search by an uploaded image" if uploaded else "Search")
    return await _render(datasette, request, "imageclust_search.html", {**body, "title": title})


# --- binary responses --------------------------------------------------------------


@route("text")
async def thumb(datasette, request):
    acc = await access.database(datasette, request, ("thumbnails",))
    acc.require("thumbnails")
    image_id = path_int(request)
    got = await acc.db.execute_fn(lambda conn: pagedata.thumbnail(conn, image_id))
    if got is None:
        raise Problem(404, f"no thumbnail for image {image_id}")
    data, fmt, tag = got
    # Revalidate after a day; the ETag (content hash + format + size) makes that cheap.
    headers = {"ETag": tag, "Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    if not_modified(request, tag):
        return Response("", status=304, headers=headers)
    return Response(data, headers=headers, content_type=image_type(fmt))


@route("text")
async def original(datasette, request):
    acc = await access.database(datasette, request, ("files",))
    acc.require("files")
    file_id = path_int(request)
    root = settings(datasette, acc.db.name).originals_root
    f = await acc.db.execute_fn(lambda conn: pagedata.original_file(conn, file_id, root))
    ctype = image_type(f["format"])
    if ctype == "application/octet-stream":
        ctype = mimetypes.guess_type(f["real"])[0] or ctype
    # Served inline only as an image type; anything else downloads (never rendered as HTML).
    if not ctype.startswith("image/") or ctype == "image/svg+xml":
        ctype = "application/octet-stream"
    return AsgiFileDownload(f["real"], content_type=ctype,
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600",
                                     "Content-Security-Policy": "default-src 'none'"})


_DB = r"^/(?P<database>[^/]+)/-/imageclust"
ROUTES: list = [
    (_DB + r"(\.(?P<format>json))?$", index_page),
    (_DB + r"/cluster/(?P<id>[^/]+?)(\.(?P<format>json))?$", cluster_page),
    (_DB + r"/image/(?P<id>[^/]+?)(\.(?P<format>json))?$", image_page),
    (_DB + r"/search(\.(?P<format>json))?$", search_page),
    (_DB + r"/thumb/(?P<id>[^/]+)$", thumb),
    (_DB + r"/original/(?P<id>[^/]+)$", original),
]
