"""Datasette pages: the clusters index, a cluster's gallery, an image's page (the search
page is ``searchpage``, thumbnails and originals ``media``, the map ``mappage``).

URLs (a contract), each page also as ``.json``::

    /<database>/-/imageclust                        clusters of a run (?run= &sort= &page=)
    /<database>/-/imageclust/cluster/<id>           members by distance to the centroid (?page=)
    /<database>/-/imageclust/image/<id>             metadata, clusters, duplicates, similar (?k=)

Read-only. The SQL lives in ``pagedata``, permissions in ``access``, parameters and
errors in ``http``, what every page shares in ``pagekit``; this module puts them together.
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from datasette.utils.asgi import Response

from ..store import imagenames
from ..store.collection import ImageCollection
from . import editapi, pagedata, postsdata, textdata
from .http import Problem, arg, int_arg, path_int, route, wants_json
from .pagekit import (
    CARD_FEATURES,
    MAX_K,
    MAX_PAGE,
    card,
    open_page,
    page_url,
    pagination,
    render,
    search_availability,
    summary,
    urls,
    window,
    withheld,
)

if TYPE_CHECKING:
    from datasette.app import Datasette



# --- pages ---------------------------------------------------------------------------

INDEX_FEATURES = (*CARD_FEATURES, "labels", "model", "duplicates", "map", "index", "similar")


@route()
async def index_page(datasette, request):
    acc, db, cfg, base = await open_page(datasette, request, INDEX_FEATURES)
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
            out["cards"] = pagedata.image_cards(conn, ids, features=acc)
        else:
            # No clustering yet (or none the actor may see): the collection, newest first.
            out["total"] = info["images"]
            ids = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id DESC LIMIT ? OFFSET ?",
                                              [cfg.page_size, (page - 1) * cfg.page_size])]
            cards = pagedata.image_cards(conn, ids, features=acc)
            out["recent"] = [cards.get(i, {"id": i}) for i in ids]
        return out

    data = await db.execute_fn(read)
    model, avail = await search_availability(datasette, db, acc)
    pages_info = pagination(data["total"], cfg.page_size, page)
    if page > pages_info["pages"]:
        raise Problem(404, f"page {page} is past the last page ({pages_info['pages']})")
    run = data["run"]
    clusters = [{
        "id": c["id"], "kind": c["kind"], "label": c["label"], "size": c["size"],
        "cohesion": None if c["cohesion"] is None else round(c["cohesion"], 4),
        "labels": c["labels"] if "labels" in acc else [], "url": f"{base}/cluster/{c['id']}",
        "representatives": [card(base, data["cards"].get(i), i, acc) for i in c["representatives"]],
    } for c in data["clusters"]]
    args = {"run": requested, "sort": sort if sort != "size" else None}
    path = base + (".json" if wants_json(request) else "")
    body = {
        "ok": True, "database": db.name, "summary": summary(data["summary"], acc),
        "run": None if run is None else {k: run[k] for k in ("id", "name", "method", "source", "is_default",
                                                              "n_images", "n_clusters", "created")},
        "runs": [{"id": r["id"], "name": r["name"], "method": r["method"], "source": r["source"],
                  "is_default": bool(r["is_default"]), "n_clusters": r["n_clusters"]} for r in data["runs"]],
        "sort": sort, **pages_info, "clusters": clusters,
        "images": [card(base, c, c["id"], acc) for c in data["recent"]],
        "next_url": page_url(path, args, page + 1) if page < pages_info["pages"] else None,
        "previous_url": page_url(path, args, page - 1) if page > 1 else None,
        "text_search": {"available": not avail["text"], "note": avail["text"]},
        "withheld": withheld(acc, INDEX_FEATURES),
        "urls": urls(datasette, db),
    }
    if wants_json(request):
        return Response.json(body)
    return await render(datasette, request, "imageclust_index.html", {
        **body, "sorts": list(pagedata.SORTS), "title": f"Clusters of {db.name}",
        "page_urls": [(n, page_url(path, args, n)) for n in window(page, pages_info["pages"])],
    })


CLUSTER_FEATURES = (*CARD_FEATURES, "labels", "descriptions", "tags", "notes")


@route()
async def cluster_page(datasette, request):
    acc, db, cfg, base = await open_page(datasette, request, CLUSTER_FEATURES, "clusters")
    cluster_id = path_int(request)
    page = int_arg(request, "page", 1, 1, MAX_PAGE)
    size = max(cfg.page_size, 120)

    def read(conn):
        d = pagedata.cluster_detail(conn, cluster_id, (page - 1) * size, size)
        ids = [m["image_id"] for m in d["members"]]
        d["cards"] = pagedata.image_cards(conn, ids, features=acc)
        d["descriptions"] = ImageCollection(conn).shown_descriptions(ids, model=cfg.description_model) \
            if "descriptions" in acc else {}
        d["tags"] = textdata.cluster_tags(conn, cluster_id) if "tags" in acc else []
        d["state"] = editapi.cluster_state(conn, cluster_id) if "notes" in acc else None
        d["posts"] = postsdata.cluster_posts(conn, cluster_id, cfg) if "posts" in acc else None
        return d

    d = await db.execute_fn(read)
    edit = await editapi.edit_context(datasette, request, db, [d["run"]["id"]] if d["run"] else [])
    pages_info = pagination(d["n_members"], size, page)
    if page > pages_info["pages"]:
        raise Problem(404, f"page {page} is past the last page ({pages_info['pages']})")
    c = d["cluster"]
    sql = ("SELECT m.rank, m.image_id, m.distance, f.path FROM cluster_members m "
           "JOIN files f ON f.image_id = m.image_id WHERE m.cluster_id = :cluster ORDER BY m.rank")
    members = [{**card(base, d["cards"].get(m["image_id"]), m["image_id"], acc),
                "rank": m["rank"], "distance": round(m["distance"], 5),
                "description": (d["descriptions"].get(m["image_id"]) or {}).get("text")} for m in d["members"]]
    order = d["order"]
    here = f"{base}/cluster/{cluster_id}" + (".json" if wants_json(request) else "")
    body = {
        "ok": True, "database": db.name,
        "cluster": {**c, "cohesion": None if c["cohesion"] is None else round(c["cohesion"], 4),
                    "labels": c["labels"] if "labels" in acc else []},
        "run": d["run"], **pages_info, "members": members, "tags": d["tags"], "state": d["state"],
        "posts": None if d["posts"] is None else {**d["posts"], "sql_url": _sql_url(
            datasette, db.name, postsdata.cluster_posts_sql(postsdata.PostColumns(**d["posts"]["columns"])),
            {"cluster": cluster_id})},
        "neighbours": [{**n, "url": f"{base}/cluster/{n['id']}"} for n in d["neighbours"]],
        "previous_url": f"{base}/cluster/{order['previous']}" if order["previous"] else None,
        "next_url": f"{base}/cluster/{order['next']}" if order["next"] else None,
        "position": order["position"], "of": order["of"],
        "next_page_url": page_url(here, {}, page + 1) if page < pages_info["pages"] else None,
        "previous_page_url": page_url(here, {}, page - 1) if page > 1 else None,
        "table_url": datasette.urls.table(db.name, "cluster_members") + "?" + urlencode(
            {"cluster_id": cluster_id, "_sort": "rank"}),
        "sql_url": _sql_url(datasette, db.name, sql, {"cluster": cluster_id}) if "files" in acc else None,
        "index_url": page_url(base, {"run": str(d["run"]["id"]) if d["run"] else None}, 1),
        "withheld": withheld(acc, CLUSTER_FEATURES),
        "urls": urls(datasette, db), "edit": edit,
    }
    if wants_json(request):
        return Response.json(body)
    title = c["label"] or f"Cluster {c['id']}"
    timeline = postsdata.timeline_svg(d["posts"]["timeline"]) if d["posts"] else ""
    return await render(datasette, request, "imageclust_cluster.html", {**body, "title": title, "timeline": timeline})


def _sql_url(datasette: Datasette, database: str, sql: str, params: dict) -> str:
    """A link to run ``sql`` with named parameters (1.0 moved queries to /db/-/query)."""
    query = getattr(datasette.urls, "database_query", None)
    if query is not None:
        return query(database, sql) + "&" + urlencode(params)
    return datasette.urls.database(database) + "?" + urlencode({"sql": sql, **params})


IMAGE_FEATURES = (*CARD_FEATURES, "duplicates", "similar", "index", "descriptions", "tags")


@route()
async def image_page(datasette, request):
    acc, db, cfg, base = await open_page(datasette, request, IMAGE_FEATURES)
    image_id = path_int(request)
    k = int_arg(request, "k", cfg.similar, 0, MAX_K)

    def read(conn):
        d = pagedata.image_detail(conn, image_id, k if "similar" in acc else 0, exact="index" not in acc)
        ids = [s["image_id"] for s in d["similar"]] + [n["image_id"] for n in d["near_duplicates"]]
        run = ImageCollection(conn).run(configured=cfg.default_run) if "clusters" in acc else None
        d["cards"] = pagedata.image_cards(conn, ids, run["id"] if run else None, acc)
        d["descriptions"] = textdata.image_descriptions(conn, image_id) if "descriptions" in acc else []
        d["tags"] = textdata.image_tags(conn, [image_id]).get(image_id, []) if "tags" in acc else []
        d["posts"] = postsdata.image_posts(conn, image_id, cfg) if "posts" in acc else None
        d["name"] = imagenames.image_names(conn, [image_id], posts="posts" in acc, paths="files" in acc)[image_id]
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
    edit = await editapi.edit_context(datasette, request, db, sorted({c["run_id"] for c in d["clusters"]})
                                      if "clusters" in acc else [])
    files = []
    if "files" in acc:
        for f in d["files"]:
            f = dict(f)
            if cfg.originals_root:
                f["original_url"] = f"{base}/original/{f['id']}" if f["id"] in d["servable"] else None
            files.append(f)
    thumbnail = d["thumbnail"] if "thumbnails" in acc else None
    body = {
        "ok": True, "database": db.name, "name": d["name"], "image": d["image"], "files": files, "thumbnail": thumbnail,
        "thumbnail_url": f"{base}/thumb/{image_id}" if thumbnail else None,
        "clusters": [{**c, "url": f"{base}/cluster/{c['cluster_id']}"} for c in d["clusters"]]
        if "clusters" in acc else [],
        "descriptions": d["descriptions"], "tags": d["tags"], "redacted": d["redacted"],
        "posts": None if d["posts"] is None else {**d["posts"], "sql_url": _sql_url(
            datasette, db.name, postsdata.image_posts_sql(postsdata.PostColumns(**d["posts"]["columns"])),
            {"image": image_id})},
        "exact_duplicates": (len(files) - 1 if files else 0) if "files" in acc else None,
        "near_duplicates": [card(base, d["cards"].get(n["image_id"]), n["image_id"], acc)
                            for n in d["near_duplicates"]] if "duplicates" in acc else [],
        "similar": [{**card(base, d["cards"].get(s["image_id"]), s["image_id"], acc), "distance": s["distance"],
                     "similarity": round(1 - s["distance"], 4)} for s in d["similar"]],
        "search_url": f"{base}/search?" + urlencode({"like": image_id}) if "similar" in acc else None,
        "row_url": datasette.urls.row(db.name, "images", str(image_id)) if hasattr(datasette.urls, "row") else None,
        "withheld": withheld(acc, IMAGE_FEATURES),
        "urls": urls(datasette, db), "edit": edit,
    }
    if wants_json(request):
        return Response.json(body, default=str)
    return await render(datasette, request, "imageclust_image.html", {**body, "title": d["name"]})


_DB = r"^/(?P<database>[^/]+)/-/imageclust"
ROUTES: list = [
    (_DB + r"(\.(?P<format>json))?$", index_page),
    (_DB + r"/cluster/(?P<id>[^/]+?)(\.(?P<format>json))?$", cluster_page),
    (_DB + r"/image/(?P<id>[^/]+?)(\.(?P<format>json))?$", image_page),
]
