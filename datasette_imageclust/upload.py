"""Reading one uploaded image from a ``multipart/form-data`` POST, within a size limit.

Only the bytes are used (decoded in memory by the same code as ``load``); the client's
file name is only a hint for the decoder and is never used as a path.
"""
from __future__ import annotations

import email.parser
import email.policy
from typing import Any

from .pagedata import Problem

MAX_BYTES = 25 * 1024 * 1024


async def read_image(request: Any, field: str = "image", max_bytes: int | None = None) -> tuple[bytes, str]:
    """(bytes, client file name) of the file field ``field``; Problem(400/413) otherwise."""
    max_bytes = max_bytes or MAX_BYTES
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise Problem(400, "upload an image as multipart/form-data (field 'image')")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_bytes):
        raise Problem(413, f"uploads are limited to {max_bytes // (1024 * 1024)} MB")
    body = await _body(request, max_bytes)
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode("latin-1", "replace") + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise Problem(400, "malformed multipart body")
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == field:
            data = part.get_payload(decode=True) or b""
            if not data:
                raise Problem(400, "the uploaded file is empty")
            return data, part.get_filename() or ""
    raise Problem(400, f"no file field '{field}' in the upload")


async def _body(request: Any, max_bytes: int) -> bytes:
    """The request body, stopping (413) past ``max_bytes`` even without Content-Length."""
    chunks, size = [], 0
    more = True
    while more:
        message = await request.receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise Problem(413, f"uploads are limited to {max_bytes // (1024 * 1024)} MB")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)
