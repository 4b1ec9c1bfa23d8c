"""A selection of images for the map: ``?ids=1,2,3`` or ``?sql=<a SELECT returning image_id>``.

The SQL runs as Datasette runs a query page's: only for an actor with ``execute-sql`` on the
database, through ``db.execute`` (a read-only connection, Datasette's ``sql_time_limit_ms``),
SELECT only (Datasette's own check). Named parameters (``:name``) take the same-named URL
arguments, as on Datasette's query page. A user's mistake is a 400 with one line, never a 500.

At most :data:`MAX_SELECTION` images: ``?ids=`` with more is refused, a query with more is
cut to its first :data:`MAX_SELECTION` distinct ids (``truncated``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import access
from .http import Problem, arg, parse_int

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database
    from datasette.utils.asgi import Request

MAX_SELECTION = 20_000
MAX_SQL = 20_000  # characters: longer than any URL a server accepts


def parse_ids(raw: str, name: str = "ids") -> list[int]:
    """``1,2,3`` as distinct ids in the order given: ASCII digits and commas only (spaces
    around an id are allowed), each 1..2**63-1, at most :data:`MAX_SELECTION`."""
    parts = raw.split(",")
    if raw.strip() == "":
        raise Problem(400, f"{name} must list image ids separated by commas, e.g. {name}=1,2,3")
    if len(parts) > MAX_SELECTION:
        raise Problem(400, f"{name} lists {len(parts)} ids: at most {MAX_SELECTION:,} may be selected")
    out: dict[int, None] = {}
    for part in parts:
        p = part.strip(" ")
        if p == "":
            raise Problem(400, f"{name} has an empty item: list image ids separated by single commas")
        out[parse_int(p, f"each id in {name}", 1)] = None
    return list(out)


def without_final_semicolon(sql: str) -> str:
    """``sql`` without a final ';' (before any trailing ``--`` comments), so that it can be
    wrapped in ``select ... from (<sql>)``. Line by line, linear in the length: no regex
    that a crafted query could make backtrack."""
    lines = sql.rstrip().split("\n")
    k = len(lines) - 1
    while k > 0 and lines[k].lstrip().startswith("--"):
        k -= 1  # whole-line comments after the statement stay as they are
    head, semicolon, tail = lines[k].rpartition(";")
    # "; -- note" at the end of the line; not a ';' inside a string (an odd number of quotes before it).
    if semicolon and (not tail.strip() or tail.lstrip().startswith("--") and head.count("'") % 2 == 0):
        lines[k] = head + " " + tail
    return "\n".join(lines)


async def from_request(datasette: Datasette, request: Request, db: Database) -> dict | None:
    """The request's selection: ``{"source", "ids", "truncated", "sql"?}``, or None."""
    sql, ids = arg(request, "sql"), arg(request, "ids")
    if sql is not None and ids is not None:
        raise Problem(400, "give either sql or ids, not both")
    if ids is not None:
        return {"source": "ids", "ids": parse_ids(ids), "truncated": False}
    if sql is None:
        return None
    sql = sql.strip()
    if not sql:
        raise Problem(400, "sql is empty: give a SELECT that returns an image_id column")
    if len(sql) > MAX_SQL or "\x00" in sql:
        raise Problem(400, f"sql must be at most {MAX_SQL:,} characters, without NUL")
    if not await access.may_execute_sql(datasette, request.actor, db.name):
        raise Problem(403, f"permission denied: a selection by SQL needs Datasette's execute-sql "
                           f"permission on {db.name} (select by ?ids= instead)")
    got, truncated = await run(datasette, request, db, sql)
    return {"source": "sql", "sql": sql, "ids": got, "truncated": truncated}


async def run(datasette: Datasette, request: Request, db: Database, sql: str) -> tuple[list[int], bool]:
    """The distinct image ids ``sql`` returns (first :data:`MAX_SELECTION`) and whether it
    returned more."""
    from datasette.utils import InvalidSql, validate_sql_select

    try:
        validate_sql_select(sql)
    except InvalidSql as e:
        raise Problem(400, f"sql: {e}")
    inner = without_final_semicolon(sql)
    from datasette.utils import derive_named_parameters  # the query page's own rule, 0.65 and 1.0

    params = {name: request.args.get(name, "") for name in await derive_named_parameters(db, inner)}
    # LIMIT 0 prepares the query (every name checked) without running its scans: the
    # columns tell a missing image_id apart from any other mistake.
    head = await _execute(datasette, db, f"select * from (\n{inner}\n) limit 0", params)
    columns = list(head.columns)
    if "image_id" not in columns:
        shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
        raise Problem(400, f"the query must return an image_id column; it returns: {shown or 'no columns'}")
    rows = await _execute(datasette, db, f"select distinct image_id from (\n{inner}\n) "
                                         f"where image_id is not null limit {MAX_SELECTION + 1}", params)
    ids = []
    for (value,) in rows.rows:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise Problem(400, f"the query's image_id must hold image ids (whole numbers >= 1), not {value!r:.40}")
        ids.append(value)
    return ids[:MAX_SELECTION], len(ids) > MAX_SELECTION


async def _execute(datasette: Datasette, db: Database, sql: str, params: dict):
    from datasette.database import QueryInterrupted
    from datasette.utils.sqlite import sqlite3  # the driver Datasette uses (maybe pysqlite3)

    try:
        return await db.execute(sql, params, log_sql_errors=False)
    except QueryInterrupted:
        raise Problem(400, f"the query took longer than the time limit "
                           f"({datasette.setting('sql_time_limit_ms')} ms): make it simpler")
    except (sqlite3.DatabaseError, sqlite3.Warning, OverflowError, ValueError) as e:
        raise Problem(400, f"the query failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
