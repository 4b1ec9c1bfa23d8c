"""The one home of writing from the web: the plugin permission ``imageclust-edit`` on
Datasette 0.65 and 1.0, who may write, refusing immutable databases and read-only files,
CSRF, strict JSON bodies, ``{"ok": ...}`` answers, and running a write in Datasette's
write thread.

A write route is::

    @write_route()
    async def my_route(datasette, request):
        acc = await access.database(datasette, request)   # the database the URL names (404/403)
        actor, body = await write_request(datasette, request, acc.db.name)
        only_keys(body, ("images",)); ids = body_ids(body, "images")
        result = await run_write(datasette, acc.db.name, lambda sdb: do(sdb, ids, actor=actor_id(actor)))
        return ok({...})

A route with a permission of its own adds it to ``PERMISSIONS`` (registered and decided
like ``imageclust-edit`` on both versions) and passes ``permission=``. Pages show their
controls only when ``can_edit`` says so.

Answers follow Datasette 1.0's JSON write API: ``{"ok": true, ...}`` with 200, or
``{"ok": false, "errors": ["..."]}`` with a 4xx status.

CSRF: Datasette 1.0 checks a POST's Origin / Sec-Fetch-Site itself. Datasette 0.65 checks
a token (asgi-csrf), which it does not ask of a request with ``Authorization: Bearer``;
for a JSON body we apply the rule Datasette 1.0's alphas had for their JSON API (a
cross-site form cannot send ``Content-Type: application/json``): ``skip_csrf`` below.
Every write here insists on that content type, so no form can reach one.
"""
from __future__ import annotations

import json
import os
import sqlite3 as std_sqlite3
import stat
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, TypeVar

import sqlite_utils
from datasette.utils.asgi import Response
from datasette.utils.sqlite import sqlite3  # Datasette's: pysqlite3 where installed

from ..store.collection import NotFound
from . import access
from .http import MAX_ID, Problem, body_chunks, in_thread

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database
    from datasette.utils.asgi import Request

T = TypeVar("T")

PERMISSION = "imageclust-edit"
# The plugin's permissions (name -> description), each a database action denied by default:
# another write route adds its own here, at import (``PERMISSIONS[name] = description``).
PERMISSIONS: dict[str, str] = {
    PERMISSION: "Edit image clusters (labels, notes, membership) in the browser or with the write API",
}
MAX_BODY = 2 * 1024 * 1024  # 2 MiB: ~200k image ids in one move
MAX_IDS = 100_000
MAX_TEXT = 2000
JSON_TYPE = "application/json"


# --- the permission --------------------------------------------------------------------


def actions() -> list:
    """Datasette 1.0's registration of the permissions (``register_actions``): database
    actions, denied unless a ``permissions`` block grants them (root: ``datasette --root``)."""
    from datasette.permissions import Action  # type: ignore
    from datasette.resources import DatabaseResource  # type: ignore

    return [Action(name=name, abbr=None, description=description, resource_class=DatabaseResource,
                   also_requires="view-database") for name, description in PERMISSIONS.items()]


def _config_allow(datasette: Datasette, action: str, database: str | None) -> Any:
    """Datasette 0.65: the ``permissions: {ACTION: ALLOW}`` block that applies (the
    database's, else the instance's), the same configuration 1.0 reads."""
    if database is not None:
        block = datasette.metadata("permissions", database=database, fallback=False)
        if isinstance(block, dict) and action in block:
            return block[action]
    block = datasette.metadata("permissions")
    if isinstance(block, dict) and action in block:
        return block[action]
    return None


def permission_allowed(datasette: Datasette, actor: dict | None, action: str, resource: Any) -> bool | None:
    """Datasette 0.65's ``permission_allowed`` for the plugin's permissions (None: not ours),
    as 1.0 decides it: a ``permissions`` block says who has it; without one, only root."""
    if action not in PERMISSIONS:
        return None
    allow = _config_allow(datasette, action, resource if isinstance(resource, str) else None)
    if allow is None:
        return bool(actor and actor.get("id") == "root")
    from datasette.utils import actor_matches_allow

    if isinstance(allow, bool) or allow in (0, 1):
        return bool(allow)
    return actor_matches_allow(actor, allow)


async def may_edit(datasette: Datasette, actor: dict | None, database: str,
                   permission: str = PERMISSION) -> bool:
    """Has ``actor`` the plugin ``permission`` on ``database`` (and may view it)?"""
    if not await access.may_view(datasette, actor, database):
        return False
    allowed = getattr(datasette, "allowed", None)
    if allowed is not None:  # 1.0
        from datasette.resources import DatabaseResource  # type: ignore

        return bool(await allowed(action=permission, resource=DatabaseResource(database=database), actor=actor))
    return bool(await datasette.permission_allowed(actor, permission, resource=database, default=False))


def read_only_reason(db: Database) -> str | None:
    """Why ``db`` cannot be written (None: it can): served immutable (``datasette -i``),
    in memory, or a file without write permission."""
    if db.is_memory:
        return f"database {db.name} is in memory: there is nothing to keep edits in"
    if not db.is_mutable:
        return f"database {db.name} is immutable (served with -i): it cannot be edited"
    path = db.path
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return f"database {db.name} cannot be read from its file"
    # os.access alone says yes to root for any file: the write bits say what the owner meant.
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
        return f"database {db.name} is a read-only file: it cannot be edited"
    if not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        return f"database {db.name} is in a read-only folder: SQLite cannot write its journal there"
    return None


async def can_edit(datasette: Datasette, actor: dict | None, database: str,
                   permission: str = PERMISSION) -> bool:
    """Should a page show edit controls: the actor has the permission and the database
    can be written?"""
    try:
        db = datasette.get_database(database)
    except KeyError:
        return False
    return read_only_reason(db) is None and await may_edit(datasette, actor, database, permission)


def actor_id(actor: dict | None) -> str | None:
    """What an operation records as its author: the actor's id."""
    if not actor:
        return None
    aid = actor.get("id")
    return None if aid is None else str(aid)


# --- CSRF ------------------------------------------------------------------------------


def skip_csrf(scope: dict) -> bool | None:
    """Datasette 0.65: a POST to a plugin route with ``Content-Type: application/json``
    (exactly, as Datasette's own rule) needs no CSRF token: browsers cannot send that
    type cross-site without a CORS preflight, which Datasette does not grant."""
    if scope.get("type") != "http" or scope.get("method") != "POST":
        return None
    if "/-/imageclust/" not in scope.get("path", ""):
        return None
    for name, value in scope.get("headers") or []:
        if name.lower() == b"content-type":
            return value.strip().lower() == JSON_TYPE.encode() or None
    return None


# --- the request -----------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in body_chunks(request, limit, f"the body is over {limit} bytes",
                                                           "the client went away before sending the whole body")])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} is given twice")
        out[k] = v
    return out


def parse_json(raw: bytes) -> dict:
    """``raw`` as a JSON object: UTF-8, no NaN/Infinity, no key twice (else Problem 400)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8")
    try:
        body = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise Problem(400, "the body is not valid JSON: nested too deeply")
    except ValueError as e:
        raise Problem(400, f"the body is not valid JSON: {str(e).splitlines()[0][:200]}")
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    return body


async def write_request(datasette: Datasette, request: Request, database: str, *,
                        permission: str | None = PERMISSION, max_bytes: int = MAX_BODY) -> tuple[dict | None, dict]:
    """Everything a write route checks before writing, in order: POST (405), the actor
    may view ``database`` and has ``permission`` on it (403), the database can be written
    (403 with the reason), a JSON body (400; 413 when over ``max_bytes``).
    ``permission=None``: viewing the database is enough, for a write that the plugin's
    configuration opened to every visitor (e.g. ``evaluation_anonymous``).
    Returns (the actor, the body)."""
    if request.method != "POST":
        raise Problem(405, "this is a write route: use POST with a JSON body", {"Allow": "POST"})
    try:
        db = datasette.get_database(database)
    except KeyError:
        raise Problem(404, f"database not found: {database}")
    actor = request.actor
    if permission is None:
        if not await access.may_view(datasette, actor, database):
            raise Problem(403, f"permission denied: may not view {database}")
    elif not await may_edit(datasette, actor, database, permission):
        who = "sign in: anonymous visitors" if not actor else f"actor {actor_id(actor)!r}"
        raise Problem(403, f"permission denied: {who} may not edit {database} (needs the {permission} permission)")
    reason = read_only_reason(db)
    if reason:
        raise Problem(403, reason)
    ctype = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if ctype != JSON_TYPE:
        raise Problem(400, f"Invalid content-type, must be {JSON_TYPE}")
    raw = await _read_body(request, max_bytes)
    return actor, await in_thread(parse_json, raw)


# --- the body's fields -----------------------------------------------------------------


def only_keys(body: dict, allowed: Iterable[str]) -> None:
    """Refuse (400) a body with keys other than ``allowed`` (a typo is not ignored)."""
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise Problem(400, f"unknown key{'s' if len(extra) > 1 else ''}: {', '.join(map(str, extra))}"
                           f" (allowed: {', '.join(sorted(allowed))})")


def body_int(body: dict, name: str, *, required: bool = True, low: int = 1, high: int = MAX_ID) -> int | None:
    """An integer field (a JSON number without fraction; true/false are not numbers)."""
    v = body.get(name)
    if v is None:
        if required:
            raise Problem(400, f"{name} is required")
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise Problem(400, f"{name} must be a whole number, not {json.dumps(v)[:40]}")
    if not low <= v <= high:
        raise Problem(400, f"{name} must be between {low} and {high}")
    return v


def body_ids(body: dict, name: str, *, least: int = 1, most: int = MAX_IDS) -> list[int]:
    """A list of distinct positive integer ids, in the order given."""
    v = body.get(name)
    if not isinstance(v, list):
        raise Problem(400, f"{name} must be a list of ids")
    if not least <= len(v) <= most:
        raise Problem(400, f"{name} must hold between {least} and {most} ids, not {len(v)}")
    ids = [body_int({name: x}, name) for x in v]
    if len(set(ids)) != len(ids):
        raise Problem(400, f"{name} names an id twice")
    return ids  # type: ignore[return-value]


def body_text(body: dict, name: str, *, max_len: int = MAX_TEXT, required: bool = False) -> str | None:
    """A text field, stripped, at most ``max_len`` characters, without NUL; null or
    absent gives None (unless ``required``)."""
    v = body.get(name)
    if v is None:
        if required:
            raise Problem(400, f"{name} is required")
        return None
    if not isinstance(v, str):
        raise Problem(400, f"{name} must be a string or null")
    v = v.strip()
    if len(v) > max_len:
        raise Problem(400, f"{name} is longer than {max_len} characters")
    if "\x00" in v:
        raise Problem(400, f"{name} must not contain NUL characters")
    return v


def body_bool(body: dict, name: str, default: bool) -> bool:
    v = body.get(name, default)
    if not isinstance(v, bool):
        raise Problem(400, f"{name} must be true or false")
    return v


# --- running the write -----------------------------------------------------------------


async def run_write(datasette: Datasette, database: str, fn: Callable[[sqlite_utils.Database], T]) -> T:
    """``fn(sqlite_utils.Database(write connection))`` in Datasette's write thread, so
    writes of all requests run one at a time and never on the event loop. ``fn`` may make
    its own transaction; whatever it leaves open is committed, or rolled back if it raises.
    A file that turns out read-only or locked by another program answers 403 / 503."""
    db = datasette.get_database(database)

    def call(conn: sqlite3.Connection) -> T:
        try:
            result = fn(sqlite_utils.Database(conn))
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        if conn.in_transaction:
            conn.commit()
        return result

    kwargs = {"block": True}
    if "transaction" in db.execute_write_fn.__code__.co_varnames:
        kwargs["transaction"] = False  # 1.0 would open one itself; fn makes its own
    try:
        return await db.execute_write_fn(call, **kwargs)
    except (sqlite3.OperationalError, std_sqlite3.OperationalError) as e:
        low = str(e).lower()
        if "readonly" in low or "read-only" in low:
            raise Problem(403, f"database {database} is read-only: it cannot be edited")
        if "locked" in low or "busy" in low:
            raise Problem(503, f"database {database} is busy (another program is writing it): try again",
                          {"Retry-After": "2"})
        raise


# --- answers ---------------------------------------------------------------------------


def ok(body: dict | None = None, status: int = 200) -> Response:
    return Response.json({"ok": True, **(body or {})}, status=status)


def error(status: int, *messages: str, headers: dict | None = None) -> Response:
    return Response.json({"ok": False, "errors": list(messages)}, status=status, headers=headers or {})


Handler = Callable[[Any, Any], Awaitable[Any]]


def write_route(*user_errors: type[Exception]) -> Callable[[Handler], Handler]:
    """Wrap a JSON route: a Problem (and any of ``user_errors``, as 400 with its message)
    becomes ``{"ok": false, "errors": [...]}`` with its status, never a 500."""

    def decorate(handler: Handler) -> Handler:
        async def wrapped(datasette: Datasette, request: Request) -> Any:
            try:
                return await handler(datasette, request)
            except Problem as p:
                return error(p.status, p.message, headers=p.headers)
            except NotFound as e:
                return error(404, str(e))
            except user_errors as e:  # type: ignore[misc]
                return error(400, str(e).splitlines()[0] if str(e) else type(e).__name__)

        wrapped.__name__ = handler.__name__
        wrapped.__doc__ = handler.__doc__
        return wrapped

    return decorate
