"""The HTTP helpers every plugin route uses: strict parameters, errors as 4xx (JSON,
HTML or text), ETag / 304, content types, and running work off the event loop.

One home for each of these rules: ``views`` (the pages) and ``mapview`` (the map) both
use them, so a parameter is parsed, and an error answered, the same way everywhere.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, TypeVar
from urllib.parse import parse_qsl

from datasette.utils import MultiParams
from datasette.utils.asgi import Response

from ..store.collection import NotFound

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.utils.asgi import Request

T = TypeVar("T")

IMAGE_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png"}
# ASCII digits only: str.isdigit() and int() also accept '²', '١', '１', ' 1' and '1_0'.
_DIGITS = re.compile(r"[0-9]+")
_FLAGS = {"": False, "0": False, "false": False, "off": False, "no": False,
          "1": True, "true": True, "on": True, "yes": True}
MAX_ID = 2**63 - 1  # SQLite's largest integer


class Problem(Exception):
    """An answer other than 200: the status and a message safe to show (escaped later)."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# --- parameters ----------------------------------------------------------------------


def _show(raw: str) -> str:
    return repr(raw[:40])


def parse_int(raw: str, name: str, low: int = 0, high: int = MAX_ID) -> int:
    """``raw`` as an integer in ``low..high``: plain ASCII digits only (no sign, space,
    underscore, exponent or non-ASCII digit), else Problem(400) naming the parameter."""
    if not _DIGITS.fullmatch(raw):
        raise Problem(400, f"{name} must be a whole number written with the digits 0-9, not {_show(raw)}")
    # (int() of thousands of digits is slow, and refused past 4300: check the length first.)
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(high)) or not low <= int(digits) <= high:
        raise Problem(400, f"{name} must be between {low} and {high}, not {_show(raw)}")
    return int(digits)


def arg(request: Request | MultiParams, name: str) -> str | None:
    """The query parameter ``name`` (None if absent); given twice is ambiguous: 400.
    ``request`` may also be the fields of a form body (``form_fields``)."""
    values = (request if isinstance(request, MultiParams) else request.args).getlist(name)
    if len(values) > 1:
        raise Problem(400, f"give {name} once, not {len(values)} times")
    return values[0] if values else None


def int_arg(request: Request | MultiParams, name: str, default: int | None, low: int = 0, high: int = MAX_ID) -> int | None:
    """An integer query parameter; absent or empty gives ``default``."""
    raw = arg(request, name)
    if raw in (None, ""):
        return default
    return parse_int(raw, name, low, high)


def path_int(request: Request, name: str = "id", low: int = 0, high: int = MAX_ID) -> int:
    """An integer part of the URL path (the route's ``(?P<name>...)``)."""
    return parse_int(request.url_vars.get(name) or "", name, low, high)


def flag_arg(request: Request, name: str) -> bool:
    raw = (arg(request, name) or "").lower()
    if raw not in _FLAGS:
        raise Problem(400, f"{name} must be 1 or 0 (true/false), not {_show(raw)}")
    return _FLAGS[raw]


def text_arg(request: Request | MultiParams, name: str, max_len: int) -> str:
    """A text parameter, stripped, at most ``max_len`` characters, without NUL."""
    raw = (arg(request, name) or "").strip()
    if len(raw) > max_len:
        raise Problem(400, f"{name} is longer than {max_len} characters")
    if "\x00" in raw:
        raise Problem(400, f"{name} must not contain NUL characters")
    return raw


def wants_json(request: Request) -> bool:
    return request.url_vars.get("format") == "json"


async def body_chunks(request: Any, limit: int, too_big: str, interrupted: str) -> AsyncIterator[bytes]:
    """The request body as it arrives, for routes that must not hold more than ``limit``
    bytes of it: 400 for a malformed Content-Length, 413 (``too_big``) when the body
    declares or sends more than ``limit`` (before reading it all), 400 (``interrupted``)
    when the client goes away."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = parse_int(declared.strip(), "Content-Length", high=2**62)
        except Problem:
            raise Problem(400, "bad Content-Length header")
        if size > limit:
            raise Problem(413, too_big)
    received = 0
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            raise Problem(400, interrupted)
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise Problem(413, too_big)
        more = message.get("more_body", False)
        if chunk:
            yield chunk
        if not more:
            return


FORM_TYPE = "application/x-www-form-urlencoded"


async def form_body(request: Any, limit: int, too_big: str) -> bytes:
    """The body of an ``application/x-www-form-urlencoded`` POST (as a browser's form sends
    it), read through ``body_chunks`` (at most ``limit`` bytes, else 413 ``too_big``): another
    content type or bytes beyond ASCII are a 400."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != FORM_TYPE:
        raise Problem(400, f"send the fields as {FORM_TYPE} (a form), not {_show(ctype or 'no content type')}")
    raw = b"".join([chunk async for chunk in body_chunks(request, limit, too_big,
                                                         "the client went away before sending the whole body")])
    if not raw.isascii():
        raise Problem(400, "the form body must be ASCII: other characters %-escaped (as UTF-8)")
    return raw


def parse_form(raw: bytes, max_fields: int = 16) -> MultiParams:
    """``form_body``'s fields, parsed strictly: a field without ``=``, more than
    ``max_fields`` fields or %-escapes that are not UTF-8 are a 400."""
    try:
        pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=True,
                          encoding="utf-8", errors="strict", max_num_fields=max_fields)
    except UnicodeDecodeError:
        raise Problem(400, "the form body's %-escapes must be UTF-8")
    except ValueError as e:  # a field without '=', or too many fields
        raise Problem(400, f"malformed form body: {str(e)[:80]}")
    return MultiParams(pairs)


class Slots:
    """At most ``size`` of one costly kind of work (uploads, downloads) at once, so a burst
    of requests cannot take every thread: a request waits up to ``wait`` seconds for a
    slot, then gets 429 with Retry-After. A lock-free count for the event loop's side;
    the lock only guards the count."""

    def __init__(self, size: int, what: str) -> None:
        self.size, self.what, self.used = size, what, 0
        self._lock = threading.Lock()

    def _take(self) -> bool:
        with self._lock:
            if self.used >= self.size:
                return False
            self.used += 1
            return True

    def _give(self) -> None:
        with self._lock:
            self.used -= 1

    @contextlib.asynccontextmanager
    async def held(self, wait: float) -> AsyncIterator[None]:
        deadline = time.monotonic() + wait
        while not self._take():
            if time.monotonic() > deadline:
                raise Problem(429, f"the server is busy with other {self.what} ({self.size} at a time): "
                                   f"try again in a few seconds", headers={"Retry-After": "5"})
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            self._give()


# --- errors ----------------------------------------------------------------------------


def json_error(p: Problem) -> Response:
    return Response.json({"ok": False, "error": p.message, "status": p.status}, status=p.status,
                         headers=p.headers)


async def error_response(datasette: Datasette, request: Request, p: Problem, kind: str) -> Response:
    """``p`` as JSON, as a plain-text body (binary routes), or as an HTML page."""
    if kind == "json":
        return json_error(p)
    if kind == "text":
        return Response.text(p.message, status=p.status, headers=p.headers)
    html = await datasette.render_template(
        "imageclust_error.html", {"status": p.status, "message": p.message,
                                  "imageclust_static": static_url(datasette)},
        request=request)
    return Response.html(html, status=p.status, headers=p.headers)


Handler = Callable[[Any, Any], Awaitable[Any]]


def route(kind: str = "page") -> Callable[[Handler], Handler]:
    """Wrap a route so Problems (and the store's NotFound, as 404) become 4xx answers, never a 500. ``kind``: "page" (HTML,
    or JSON for a ``.json`` URL), "json" or "text" (binary routes)."""

    def decorate(handler: Handler) -> Handler:
        async def wrapped(datasette: Datasette, request: Request) -> Any:
            try:
                return await handler(datasette, request)
            except (Problem, NotFound) as e:
                p = e if isinstance(e, Problem) else Problem(404, str(e))
                k = ("json" if wants_json(request) else "html") if kind == "page" else kind
                return await error_response(datasette, request, p, k)

        wrapped.__name__ = handler.__name__
        wrapped.__doc__ = handler.__doc__
        return wrapped

    return decorate


# --- caching ---------------------------------------------------------------------------


def etag(*parts: Any) -> str:
    return '"' + hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20] + '"'


def not_modified(request: Request, tag: str) -> bool:
    """Does the request's If-None-Match already name ``tag``?"""
    got = request.headers.get("if-none-match", "")
    return tag in [t.strip() for t in got.split(",")] or got.strip() == "*"


def image_type(fmt: str | None) -> str:
    return IMAGE_TYPES.get((fmt or "").lower(), "application/octet-stream")


PLUGIN = "datasette-imageclust"


def static_url(datasette: Datasette) -> str:
    """Where Datasette serves the plugin's ``static/`` folder (append a file name)."""
    return datasette.urls.static_plugins(PLUGIN, "")


# --- off the event loop ------------------------------------------------------------------

# CPU work of the routes (packing map arrays, encoding large JSON, embedding a text
# query) runs here, never on the event loop that serves every other request. Two
# workers: the machine's other cores belong to Datasette's SQL threads.
_POOL = ThreadPoolExecutor(2, thread_name_prefix="imageclust-cpu")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)


async def json_response(body: Any, headers: dict | None = None) -> Response:
    """A JSON response encoded in a worker thread (map.json holds up to 100k points)."""
    text = await in_thread(lambda: json.dumps(body, default=str))
    return Response(text, content_type="application/json; charset=utf-8", headers=headers or {})
