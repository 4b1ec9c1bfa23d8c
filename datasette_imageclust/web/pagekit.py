"""What every plugin page shares: opening the database a URL names with what its actor
may see, an image's card, pagination, the page's URLs and rendering."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from datasette.utils.asgi import Response

from ..analysis import embed_query
from ..store.collection import ImageCollection
from . import access
from .access import Access
from .http import in_thread, static_url
from .settings import Settings, settings

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database
    from datasette.utils.asgi import Request

MAX_K = 200
MAX_Q = 500
MAX_PAGE = 10**6
# What the card of an image can show, besides the image itself.
CARD_FEATURES = ("files", "thumbnails", "clusters", "posts")  # posts: names (store/imagenames.py)


def base_url(datasette: Datasette, db: Database) -> str:
    return datasette.urls.database(db.name) + "/-/imageclust"


async def open_page(datasette: Datasette, request: Request, features: tuple[str, ...],
                require: str | None = None) -> tuple[Access, Database, Settings, str]:
    """A page's database and what its actor may see (403/404 first), its settings and its
    base URL; ``require``: the feature the page exists to show."""
    acc = await access.database(datasette, request, features)
    if require:
        acc.require(require)
    return acc, acc.db, settings(datasette, acc.db.name), base_url(datasette, acc.db)


def card(base: str, info: dict | None, image_id: int, acc: Access) -> dict:
    """Everything a template or script needs to show one image: only what the actor may
    see (no thumbnail without ``thumbnails``...; ``info``'s name is already what the actor
    may see: ``pagedata.image_cards``)."""
    info = info or {}
    thumbs, clusters = "thumbnails" in acc, "clusters" in acc
    return {
        "image_id": image_id,
        "url": f"{base}/image/{image_id}",
        "thumbnail_url": f"{base}/thumb/{image_id}" if thumbs else None,
        "thumb_width": info.get("thumb_width") if thumbs else None,
        "thumb_height": info.get("thumb_height") if thumbs else None,
        "name": info.get("name"),
        "width": info.get("width"),
        "height": info.get("height"),
        "cluster_id": info.get("cluster_id") if clusters else None,
        "cluster_label": info.get("cluster_label") if clusters else None,
    }


def withheld(acc: Access, features: tuple[str, ...]) -> list[str]:
    """The parts of a page left out because the actor may not view their tables."""
    return [f for f in features if f not in acc]


async def render(datasette: Datasette, request: Request, template: str, context: dict) -> Response:
    # Datasette puts its own `urls` object into every template's context, over ours: the
    # templates read the plugin's links as `ic_urls`.
    context = {**context, "imageclust_static": static_url(datasette), "ic_urls": context.get("urls")}
    return Response.html(await datasette.render_template(template, context, request=request))


def pagination(total: int, size: int, page: int) -> dict:
    pages = max(1, math.ceil(total / size))
    return {"page": page, "pages": pages, "page_size": size, "total": total}


def page_url(path: str, args: dict, page: int) -> str:
    q = {k: v for k, v in args.items() if v not in (None, "") and k != "page"}
    if page > 1:
        q["page"] = page
    return path + ("?" + urlencode(q) if q else "")


def summary(info: dict, acc: Access) -> dict:
    return {**info,
            "files": info["files"] if "files" in acc else None,
            "model": info["model"] if "model" in acc else None,
            "has_clusters": info["has_clusters"] and "clusters" in acc,
            "has_duplicates": info["has_duplicates"] and "duplicates" in acc,
            "has_map": info["has_map"] and "map" in acc,
            "index": info["index"] if "index" in acc else None}


def window(page: int, pages: int) -> list[int]:
    """Page numbers to link: first, last, and a few around the current one."""
    keep = {1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)}
    return sorted(keep)


def urls(datasette: Datasette, db: Database) -> dict:
    base = base_url(datasette, db)
    return {"database": datasette.urls.database(db.name), "index": base, "search": f"{base}/search",
            "map": f"{base}/map", "images_table": datasette.urls.table(db.name, "images")}


async def search_availability(datasette: Datasette, db: Database, acc: Access) -> tuple[dict | None, dict]:
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
