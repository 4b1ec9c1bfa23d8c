"""Binary routes: a stored thumbnail, and an original file (only under the configured
``originals_root``, only for files recorded in the database).

    /<database>/-/imageclust/thumb/<id>             a stored thumbnail (ETag, Cache-Control)
    /<database>/-/imageclust/original/<file id>     an original file
"""
from __future__ import annotations

import mimetypes

from datasette.utils.asgi import AsgiFileDownload, Response

from . import access, pagedata
from .http import Problem, image_type, not_modified, path_int, route
from .settings import settings


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
    (_DB + r"/thumb/(?P<id>[^/]+)$", thumb),
    (_DB + r"/original/(?P<id>[^/]+)$", original),
]
