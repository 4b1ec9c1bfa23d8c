"""Search by an uploaded image: read one image from a ``multipart/form-data`` POST and
embed it, with everything one upload may cost bounded.

- The body is parsed as it streams in (python-multipart, the parser Starlette uses), in
  a worker thread, and reading stops at the end of the ``image`` field: at most
  ``MAX_PARTS`` parts before it, ``MAX_HEADER_BYTES`` of headers a part, ``MAX_BYTES``
  in all (413; also up front from Content-Length).
- At most ``UPLOAD_SLOTS`` uploads are read or decoded at once; another waits up to
  ``SLOT_WAIT`` seconds for a slot, then gets 429 with Retry-After. A body not received
  within ``READ_SECONDS`` gets 408, so slow clients cannot hold the slots.
- Decoding and inference run in ``DECODES`` threads of their own. An image whose decode
  would exceed ``MAX_PIXELS`` (JPEG: after decoding at 1/2..1/8 scale) is refused
  from its header with 413, before any pixel is decoded.

Only the bytes are used (decoded in memory by the same code as ``load``); the client's
file name is only a hint for the decoder and is never used as a path.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from python_multipart.multipart import MultipartParser, parse_options_header

from .http import Problem, Slots, body_chunks, in_thread

if TYPE_CHECKING:
    from datasette.utils.asgi import Request

MAX_BYTES = 25 * 1024 * 1024
MAX_PARTS = 16
MAX_HEADERS = 8
MAX_HEADER_BYTES = 8192
MAX_PIXELS = 16_000_000  # load's limit is Pillow's 89.5 Mpx; a 16-Mpx RGBA decode is ~64 MB
UPLOAD_SLOTS = 4
SLOT_WAIT = 3.0
READ_SECONDS = 60.0
DECODES = 2
_DECODE_POOL = ThreadPoolExecutor(DECODES, thread_name_prefix="imageclust-upload")
_SLOTS = Slots(UPLOAD_SLOTS, "uploads")


class _Found(Exception):
    """Raised from the parser's callbacks once the field is complete: stop reading."""


@dataclass
class _Form:
    field: str
    parts: int = 0
    header_bytes: int = 0
    headers: list = field(default_factory=list)
    name: bytes = b""
    value: bytes = b""
    target: bool = False
    filename: str = ""
    chunks: list = field(default_factory=list)
    found: bool = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise Problem(400, f"too many form fields: the image must come within the first {MAX_PARTS} parts")
        self.headers, self.header_bytes, self.target = [], 0, False

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > MAX_HEADER_BYTES:
            raise Problem(400, f"a form part's headers are over {MAX_HEADER_BYTES} bytes")

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.value += data[start:end]

    def header_end(self) -> None:
        if len(self.headers) >= MAX_HEADERS:
            raise Problem(400, f"a form part has more than {MAX_HEADERS} headers")
        self.headers.append((self.name.strip().lower(), self.value.strip()))
        self.name, self.value = b"", b""

    def headers_finished(self) -> None:
        for name, value in self.headers:
            if name == b"content-disposition":
                _, params = parse_options_header(value)
                if params.get(b"name", b"").decode("utf-8", "replace") == self.field:
                    self.target = True
                    self.filename = params.get(b"filename", b"").decode("utf-8", "replace")[:255]

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.target:
            self.chunks.append(data[start:end])

    def part_end(self) -> None:
        if self.target:
            self.found = True
            raise _Found()


def _megabytes(n: int) -> str:
    return f"{n // (1024 * 1024)} MB"


async def read_image(request: Request, field: str = "image", max_bytes: int | None = None) -> tuple[bytes, str]:
    """(bytes, client file name) of the form field ``field``; Problem(400/413) otherwise."""
    max_bytes = max_bytes or MAX_BYTES
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary", b"")
    if ctype != b"multipart/form-data" or not 1 <= len(boundary) <= 200:
        raise Problem(400, f"upload an image as multipart/form-data (field '{field}')")
    form = _Form(field)
    parser = MultipartParser(boundary, form.callbacks())
    async for chunk in body_chunks(request, max_bytes, f"uploads are limited to {_megabytes(max_bytes)}",
                                   "the upload was interrupted"):
        try:
            await in_thread(parser.write, chunk)
        except _Found:
            break
        except Problem:
            raise
        except Exception as e:  # python-multipart's parse errors (and its own header limits)
            why = str(e).split(" at index")[0][:120]
            raise Problem(400, f"malformed multipart body: {why}")
        if form.found:
            break
    if not form.found:
        raise Problem(400, f"no complete form field '{field}' in the upload")
    data = b"".join(form.chunks)
    if not data:
        raise Problem(400, "the uploaded file is empty")
    return data, form.filename


def in_progress() -> int:
    """How many uploads hold a slot now."""
    return _SLOTS.used


async def embed_request(request: Request, model: str, dims: int,
                        precision: str | None = None) -> tuple[Any, Any, str]:
    """(vector, decode.Decoded, client file name) of the image uploaded with ``request``,
    embedded by ``model``; Problem 400/413/429 for what cannot or may not be done."""
    from ..analysis.embed_query import embed_upload
    from ..ingest.decode import ImageError, ImageTooLarge
    from ..models import ModelError

    async with _SLOTS.held(SLOT_WAIT):
        try:
            data, filename = await asyncio.wait_for(read_image(request), READ_SECONDS)
        except asyncio.TimeoutError:
            raise Problem(408, f"the upload was not received within {READ_SECONDS:g} seconds")
        loop = asyncio.get_running_loop()
        try:
            vec, decoded = await loop.run_in_executor(_DECODE_POOL, embed_upload, model, dims, data, filename,
                                                      MAX_PIXELS, precision)
        except ImageTooLarge as e:
            raise Problem(413, f"the uploaded image is too large to search with: {e}")
        except ImageError as e:
            raise Problem(400, f"cannot read the uploaded image: {e}")
        except ModelError as e:
            raise Problem(400, str(e))
        return vec, decoded, filename
