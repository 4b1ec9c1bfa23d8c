""""Show on map": a link from a Datasette table or query result that has an ``image_id``
column (the ``images`` table: its ``id``) to the map with those images selected
(``map?sql=...``, see ``selection``).

- Tables: the ``table_actions`` menu. The link carries the table's SQL with its current
  filters, built by Datasette's own filter code (column filters, ``_where``, ``_search``...),
  their values as named parameters.
- Query results: Datasette 1.0's ``query_actions`` menu; on 0.65, which has no such menu,
  a small script (``extra_body_script``) puts the link above the results.

The hooks (in the package's ``__init__``) call these only for imageclust databases; these
offer the link only to an actor who may open the map and run SQL there
(``execute-sql``: the map runs the link's SQL). A link longer than :data:`MAX_URL` characters
(a long ``_where`` or search) is not offered: servers and browsers refuse long URLs.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from . import access
from .selection import without_final_semicolon

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.utils.asgi import Request

MAX_URL = 8000
LABEL = "Show on map"
DESCRIPTION = "These images highlighted on the image map"


# The Datasette query that lists a selection made on the map (``:ids`` = "1,2,3").
SELECTION_SQL = "select * from images where id in (select value from json_each('[' || :ids || ']'))"


def query_urls(datasette: Datasette, database: str) -> dict[str, str]:
    """Where Datasette runs arbitrary SQL on ``database``, as a page and as CSV: 1.0 has
    ``/<db>/-/query`` (the version with query actions), 0.65 ``/<db>?sql=``."""
    from datasette import hookspecs

    base = datasette.urls.database(database)
    if hasattr(hookspecs, "query_actions"):
        return {"query": base + "/-/query", "csv": base + "/-/query.csv", "selection_sql": SELECTION_SQL}
    return {"query": base, "csv": datasette.urls.database(database, format="csv"), "selection_sql": SELECTION_SQL}


def map_url(datasette: Datasette, database: str, sql: str, params: dict | None = None) -> str | None:
    """The map of ``database`` with the images of ``sql`` selected; None if too long."""
    args = {"sql": sql, **{k: "" if v is None else str(v) for k, v in (params or {}).items()}}
    url = datasette.urls.database(database) + "/-/imageclust/map?" + urlencode(args)
    return url if len(url) <= MAX_URL else None


async def may_show(datasette: Datasette, actor: dict | None, database: str) -> bool:
    """May ``actor`` open the map of (the imageclust database) ``database`` with a
    selection by SQL?"""
    if not await access.may_execute_sql(datasette, actor, database):
        return False
    return {"map"} <= await access.allowed_features(datasette, actor, database, ("map",)) and \
        await access.may_view(datasette, actor, database, "images")


async def table_sql(datasette: Datasette, request: Request, database: str, table: str) -> tuple[str, dict] | None:
    """The image ids of the table page's rows as (SQL, params): its filters as Datasette
    applies them. None if the table has no image column."""
    from datasette.filters import Filters
    from datasette.plugins import pm
    from datasette.utils import await_me_maybe, escape_sqlite

    db = datasette.get_database(database)
    columns = await db.table_columns(table)
    column = "id" if table == "images" else "image_id" if "image_id" in columns else None
    if column is None:
        return None
    # The same steps as Datasette's table view: plain column filters, then the
    # filters_from_request hooks (_where, _search, _through and plugins').
    args = [(k, v) for k in request.args if not (k.startswith("_") and "__" not in k)
            for v in request.args.getlist(k)]
    where, params = Filters(sorted(args)).build_where_clauses(table)
    for hook in pm.hook.filters_from_request(request=request, table=table, database=database,
                                             datasette=datasette):
        got = await await_me_maybe(hook)
        if got:
            where.extend(got.where_clauses)
            params.update(got.params)
    sql = f"select {'id as ' if column == 'id' else ''}image_id from {escape_sqlite(table)}"
    if where:
        sql += " where " + " and ".join(where)
    return sql, params


async def table_action(datasette: Datasette, actor: dict | None, database: str, table: str,
                       request: Request | None) -> list[dict]:
    if request is None or not await may_show(datasette, actor, database):
        return []
    try:
        got = await table_sql(datasette, request, database, table)
    except Exception:  # a filter Datasette itself will report on the page
        return []
    url = got and map_url(datasette, database, *got)
    return [{"href": url, "label": LABEL, "description": DESCRIPTION}] if url else []


async def _columns(datasette: Datasette, database: str, sql: str, params: dict) -> list[str]:
    """The columns ``sql`` returns (prepared under LIMIT 0: its scans never run)."""
    try:
        r = await datasette.get_database(database).execute(
            f"select * from (\n{without_final_semicolon(sql)}\n) limit 0", params, log_sql_errors=False)
    except Exception:  # the query page shows the query's own error
        return []
    return list(r.columns)


async def query_action(datasette: Datasette, actor: dict | None, database: str, sql: str | None,
                       params: dict | None) -> list[dict]:
    """Datasette 1.0's query actions menu: the link when the result has ``image_id``."""
    if not sql or not await may_show(datasette, actor, database):
        return []
    params = {k: v for k, v in (params or {}).items() if not k.startswith("_")}
    if "image_id" not in await _columns(datasette, database, sql, params):
        return []
    url = map_url(datasette, database, sql, params)
    return [{"href": url, "label": LABEL, "description": DESCRIPTION}] if url else []


async def query_script(datasette: Datasette, request: Request, database: str, columns: list | None) -> str:
    """Datasette 0.65's query page: a script that puts the link above the results."""
    from datasette.utils import derive_named_parameters

    if not columns or "image_id" not in columns or not await may_show(datasette, request.actor, database):
        return ""
    sql = request.args.get("sql")
    name = request.url_vars.get("table")  # a canned query's name
    if not sql and name:
        canned = await datasette.get_canned_query(database, name, request.actor)
        sql = canned and canned.get("sql")
    if not sql:
        return ""
    db = datasette.get_database(database)
    params = {p: request.args.get(p, "") for p in await derive_named_parameters(db, sql)}
    url = map_url(datasette, database, sql, params)
    if not url:
        return ""
    # json.dumps makes a JS string; escaping "<" keeps "</script>" in the SQL harmless.
    href = json.dumps(url).replace("<", "\\u003c")
    return ("document.addEventListener('DOMContentLoaded', function () {"
            " var at = document.querySelector('form.sql') || document.querySelector('section.content h1');"
            " if (!at) return;"
            " var p = document.createElement('p'); p.className = 'imageclust-show-on-map';"
            f" var a = document.createElement('a'); a.href = {href}; a.textContent = {json.dumps(LABEL)};"
            " p.appendChild(a); at.parentNode.insertBefore(p, at.nextSibling); });")
