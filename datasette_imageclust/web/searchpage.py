"""The search page: images like an image (``?like=``), like a text (``?q=``, the model's
text tower) or like an uploaded image (POST, field ``image``); each also as ``.json``.

    /<database>/-/imageclust/search?q=<text>        text search: the model's text tower (CLIP),
                                                    and the words of the images' descriptions
    /<database>/-/imageclust/search?like=<id>       more like this (&k= &exact=1)
    POST /<database>/-/imageclust/search            search by an uploaded image
"""
from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from datasette.utils.asgi import Response

from ..analysis import embed_query, search
from ..models import ModelError
from ..store.collection import ImageCollection
from . import pagedata, textdata
from .http import (
    Problem,
    flag_arg,
    in_thread,
    int_arg,
    route,
    text_arg,
    wants_json,
)
from .pagekit import (
    CARD_FEATURES,
    MAX_K,
    MAX_Q,
    card,
    open_page,
    render,
    search_availability,
    urls,
    withheld,
)

if TYPE_CHECKING:
    pass




SEARCH_FEATURES = (*CARD_FEATURES, "similar", "index", "model", "descriptions")


@route()
async def search_page(datasette, request):
    from . import upload

    acc, db, cfg, base = await open_page(datasette, request, SEARCH_FEATURES, "similar")
    k = int_arg(request, "k", 48, 1, MAX_K)
    exact = flag_arg(request, "exact") or "index" not in acc
    model, avail = await search_availability(datasette, db, acc)
    q, like, uploaded, note, hits = "", None, None, None, []
    if request.method == "POST":
        if avail["image"]:
            raise Problem(400, f"search by upload is not available: {avail['image']}")
        name = cfg.model or model["name"]
        vec, decoded, filename = await upload.embed_request(request, name, int(model["dimensions"]),
                                                            embed_query.precision_of(model, cfg.model))
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
                vec = await in_thread(embed_query.embed_query, cfg.model or model["name"], int(model["dimensions"]), q,
                                      embed_query.precision_of(model, cfg.model))
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

    described: list[dict] = []
    if mode == "text" and "descriptions" in acc:  # the words in the vision LLMs' descriptions
        described = await db.execute_fn(lambda conn: textdata.search_descriptions(conn, q, k))

    def cards(conn):
        run = ImageCollection(conn).run(configured=cfg.default_run) if "clusters" in acc else None
        ids = [i for i, _ in hits] + [d["image_id"] for d in described] + ([like] if like is not None else [])
        return pagedata.image_cards(conn, ids, run["id"] if run else None, acc), search.status(conn).as_dict()

    card_map, index = await db.execute_fn(cards)
    body = {
        "ok": True, "database": db.name, "mode": mode, "q": q or None, "like": like, "k": k, "exact": exact,
        "note": note,
        "text_search": {"available": not avail["text"], "note": avail["text"]},
        "upload_search": {"available": not avail["image"], "note": avail["image"]},
        "index": {"present": index["present"], "fresh": index["fresh"], "reason": index["reason"]},
        "query_image": card(base, card_map.get(like), like, acc) if like is not None else None,
        "upload": uploaded,
        "results": [{**card(base, card_map.get(i), i, acc), "distance": round(d, 6), "similarity": round(1 - d, 4)}
                    for i, d in hits],
        "description_results": [{**card(base, card_map.get(d["image_id"]), d["image_id"], acc),
                                 **{k: d[k] for k in ("description_id", "model", "snippet")}} for d in described],
        "withheld": withheld(acc, SEARCH_FEATURES),
        "urls": urls(datasette, db),
    }
    if wants_json(request):
        return Response.json(body)
    title = (f"Search: {q}" if q else f"More like image {like}" if like is not None
             else "Search by an uploaded image" if uploaded else "Search")
    return await render(datasette, request, "imageclust_search.html", {**body, "title": title})


ROUTES: list = [
    (r"^/(?P<database>[^/]+)/-/imageclust/search(\.(?P<format>json))?$", search_page),
]
