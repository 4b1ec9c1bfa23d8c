"""Datasette page: the zoomable map, and the routes of the data it draws from (the data
itself is ``mapdata``).

Routes (under ``/<database>/-/imageclust/``):

- ``map`` and ``map.json``: the page, and its metadata (layouts, clusters with their
  centres, atlas sheets, URLs). ``map.json?points=1`` adds the points as compact arrays
  for scripts.
- ``map/points.bin?layout=<id>&run=<id>&atlas=<build>``: every point as little-endian
  typed arrays (20 bytes an image: 2 MB at 100,000), in atlas order, cached in memory
  and by ETag.
- ``map/atlas/<level>/<sheet>?v=<build>``: a sprite sheet (WebP/JPEG) with ETag and
  long caching.
- ``map/colour.json?by=<choice>&layout=..&run=..&atlas=..``: each point's colour category
  (in ``points.bin`` order) and the legend (``mapcolour``).

``map`` and ``map.json`` take a selection, ``?ids=1,2,3`` or ``?sql=<a SELECT returning
image_id>`` (``selection``): the page highlights it, offers its download (``downloads``) and,
to an actor who may edit, its curation (``editapi``; ``static/mapedit.js``).

The URLs a page is given name the atlas build they belong to, so a page opened before
``imageclust layout`` rebuilt the atlas keeps drawing the build it started with
(``atlas`` keeps the one it replaced). Read-only: everything comes from what
``imageclust layout`` stored. Permissions: the points need ``layouts`` and
``layout_points``; clusters, atlas and thumbnails are left out when not viewable.
"""
from __future__ import annotations

from datasette.utils.asgi import Response

from ..analysis import atlas
from ..store.collection import change_token
from . import access, editapi, mapactions, mapcolour, mapdata, postsdata, selection
from .access import Access
from .http import (
    Problem,
    arg,
    etag,
    flag_arg,
    image_type,
    int_arg,
    json_response,
    not_modified,
    path_int,
    route,
    static_url,
    wants_json,
)
from .settings import settings

# The map's own parts, and the tables a colour choice may read (folder: files; tag: image_tags).
MAP_FEATURES = tuple(sorted(mapdata.ALL_FEATURES | set(mapcolour.NEEDS.values())))


async def _map_access(datasette, request) -> Access:
    """The pages' lookup and permission check; a database without images still gets a
    map page that says so."""
    acc = await access.database(datasette, request, MAP_FEATURES, require_imageclust=False)
    acc.require("map")
    return acc


async def _load_state(datasette, request, acc: Access, with_clusters: bool = False) -> dict:
    layout_id = int_arg(request, "layout", None)
    run = int_arg(request, "run", None)
    wanted = arg(request, "atlas")  # a build id; one no longer stored means the current atlas
    cfg = settings(datasette, acc.db.name)
    configured = cfg.default_run

    def read(conn):
        token = change_token(conn)  # before the snapshot: see mapdata.state
        def both():
            s = mapdata.state(conn, token, layout_id, run, configured, with_clusters, wanted, acc.features)
            posts = postsdata.columns(conn, cfg) if "posts" in acc.features else None
            s["colour_options"] = mapcolour.options(conn, token, set(s["tables"]), acc.features, posts) \
                if s["layout"] and "images" in s["tables"] else []
            return s

        return mapdata.snapshot(conn, both)

    return await acc.db.execute_fn(read)


def _payload(datasette, db, state: dict) -> dict:
    base = datasette.urls.database(db.name) + "/-/imageclust"
    lay = state["layout"]
    features = state["features"]
    message = None
    if lay is None:
        message = ("This database has no map yet: run `imageclust layout` on it."
                   if state["n_images"] else "This database has no images: run `imageclust load`, then "
                                              "`imageclust layout`.")
    elif not state.get("n_points"):
        message = "The map layout is empty: run `imageclust layout` again after loading images."
    elif "atlas" not in features:
        message = "The map shows no thumbnails: you may not view its atlas or thumbnail tables."
    elif not state["levels"]:
        message = "The map has no atlas sheets: run `imageclust layout` again without --no-atlas."
    version = mapdata.version(state)
    build = state["build"] or ""
    levels = []
    for lv in state["levels"]:
        levels.append({**{k: lv[k] for k in ("level", "per_row", "per_sheet", "bytes")},
                       "sheets": [{**s, "url": f"{base}/map/atlas/{lv['level']}/{s['sheet']}?v={build}"}
                                  for s in lv["sheets"]]})
    run = f"&run={state['run_id']}" if state["run_id"] is not None else ""
    return {
        "ok": True,
        "database": db.name,
        "message": message,
        "n_images": state["n_images"],
        "layout": None if lay is None else {k: lay[k] for k in ("id", "name", "method", "params", "run_id",
                                                                 "is_default", "n_images", "created")},
        "layouts": state["layouts"],
        "bounds": state.get("bounds"),
        "cell": 1.0,
        "points": None if lay is None else {
            "url": f"{base}/map/points.bin?layout={lay['id']}{run}" + (f"&atlas={build}" if build else "")
                   + f"&v={version}",
            "count": state.get("n_points", 0),
            "format": mapdata.POINTS_FORMAT,
        },
        "atlas": {"build": build, "levels": levels},
        "run_id": state["run_id"],
        "clusters": state["clusters"],
        "colour_options": state["colour_options"],
        "limits": {"selection": selection.MAX_SELECTION, "colours": mapcolour.TOP, "url": mapactions.MAX_URL},
        "urls": {"image": f"{base}/image/", "cluster": f"{base}/cluster/",
                 "thumb": f"{base}/thumb/" if "thumbnails" in features else None,
                 "json": f"{base}/map.json",
                 "colour": None if lay is None else f"{base}/map/colour.json?layout={lay['id']}{run}"
                                                    + (f"&atlas={build}" if build else "") + f"&v={version}",
                 **mapactions.query_urls(datasette, db.name),
                 "clusters": f"{base}/map.json" + ("" if lay is None else f"?layout={lay['id']}{run}"),
                 "page": f"{base}/map", "database": datasette.urls.database(db.name),
                 "export": f"{base}/export"},
    }


# --- views -------------------------------------------------------------------------


@route()
async def map_page(datasette, request):
    as_json = wants_json(request)
    acc = await _map_access(datasette, request)
    db = acc.db
    with_points = flag_arg(request, "points") if as_json else False
    state = await _load_state(datasette, request, acc, with_clusters=as_json)
    payload = _payload(datasette, db, state)
    payload["selection"] = await selection.from_request(datasette, request, db)
    if as_json:
        if with_points and state["layout"]:
            payload["points"]["arrays"] = await db.execute_fn(lambda conn: mapdata.arrays_json(conn, state))
        # Up to 10,000 clusters (and 100k points with ?points=1): encoded off the event loop.
        return await json_response(payload, headers={"Cache-Control": "no-cache"})
    # The page embeds everything but the clusters (10,000 of them at 100k images): the
    # script fetches those from map.json in parallel with the points and atlas sheets.
    page_config = {**payload, "clusters": None}
    # Curation of the selection (mapedit.js): only for an actor who may edit a writable
    # database, and only on a map that shows a run.
    edit = None if payload["run_id"] is None else \
        await editapi.edit_context(datasette, request, db, [payload["run_id"]])
    page_config["edit"] = None if edit is None else {"api": edit["api"], "run": payload["run_id"],
                                                      "clusters": edit["clusters"][str(payload["run_id"])]}
    return Response.html(await datasette.render_template(
        "imageclust_map.html",
        {"database": db.name, "config": page_config, "imageclust_static": static_url(datasette), "title": f"Map of {db.name}",
         "database_url": datasette.urls.database(db.name), "home_url": datasette.urls.instance()},
        request=request,
    ))


@route("json")
async def points_bin(datasette, request):
    acc = await _map_access(datasette, request)
    db = acc.db
    state = await _load_state(datasette, request, acc)
    if state["layout"] is None:
        raise Problem(404, "this database has no map layout yet: run `imageclust layout`")
    tag = f'"{mapdata.version(state)}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if not_modified(request, tag):
        return Response("", status=304, headers=headers)
    # Scans, numpy and packing: in the SQL thread, never on the event loop.
    body = await db.execute_fn(lambda conn: mapdata.packed_points(conn, state))
    return Response(body, headers=headers, content_type="application/octet-stream")


@route("json")
async def colour_json(datasette, request):
    acc = await _map_access(datasette, request)
    by = mapcolour.parse_by(arg(request, "by"))
    if by is None:
        raise Problem(400, "by is required: cluster:<run id>, folder, camera, year, tag:<source>, column:<name>, "
                           "post:<column> or postyear:<column>")
    needs = mapcolour.NEEDS.get(by[0])
    if needs:
        acc.require(needs)
    state = await _load_state(datasette, request, acc)
    if state["layout"] is None:
        raise Problem(404, "this database has no map layout yet: run `imageclust layout`")
    def read(conn):  # in the SQL thread, the list of up to 100k values too
        got = mapdata.snapshot(conn, lambda: mapcolour.categories(conn, state, by))
        return {**got, "values": got["values"].tolist()}

    got = await acc.db.execute_fn(read)
    body = {"ok": True, "by": arg(request, "by"), "count": len(got["values"]), "legend": got["legend"],
            "other": got["other"], "missing": got["missing"], "distinct": got["distinct"], "values": got["values"]}
    return await json_response(body, headers={"Cache-Control": "no-cache"})


@route("text")
async def atlas_sheet(datasette, request):
    acc = await _map_access(datasette, request)
    acc.require("atlas")
    level, sheet = path_int(request, "level", 1, 4096), path_int(request, "sheet", 0, 10**6)
    wanted = arg(request, "v")

    def fetch(conn):
        build = atlas.readable_build(conn, wanted)
        tag = etag(build, level, sheet)
        if not_modified(request, tag):
            return build, tag, "not-modified"
        return build, tag, atlas.sheet_data(conn, build, level, sheet)

    build, tag, row = await acc.db.execute_fn(lambda conn: mapdata.snapshot(conn, lambda: fetch(conn)))
    if row is None:
        raise Problem(404, f"atlas sheet {level}/{sheet} not found")
    # A URL carrying the build id it is served from never changes: cache it for good.
    cache = "public, max-age=31536000, immutable" if build and wanted == build else "public, max-age=300"
    headers = {"ETag": tag, "Cache-Control": cache}
    if row == "not-modified":
        return Response("", status=304, headers=headers)
    return Response(row[1], headers=headers, content_type=image_type(row[0]))


_DB = r"^/(?P<database>[^/]+)/-/imageclust/map"
ROUTES: list = [
    (_DB + r"(\.(?P<format>json))?$", map_page),
    (_DB + r"/points\.bin$", points_bin),
    (_DB + r"/colour\.json$", colour_json),
    (_DB + r"/atlas/(?P<level>[^/]+)/(?P<sheet>[^/]+)$", atlas_sheet),
]
