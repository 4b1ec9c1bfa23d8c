"""The Datasette plugin (this package is its entry point, so Datasette finds ``templates/``
and serves ``static/`` at ``/-/static-plugins/datasette-imageclust/``). The hooks live here;
the pages in ``pages`` and ``mappage``, what they show in ``pagedata``."""
from __future__ import annotations

import threading
import weakref
from contextvars import ContextVar

from datasette import hookimpl
from markupsafe import Markup, escape

from ..store.cache import TokenCache
from ..store.collection import file_token
from ..store.connection import ExtensionError, load_vec
from . import access, mapactions, pagedata, writes

MMAP_BYTES = 2**31

# Tables whose image_id column (and images.id) is shown with its thumbnail.
IMAGE_COLUMNS = {
    "images": "id", "files": "image_id", "thumbnails": "image_id", "cluster_members": "image_id",
    "duplicate_members": "image_id", "layout_points": "image_id", "atlas_cells": "image_id",
}
# The vec0 tables (their shadow tables share the prefix, which hides them too on 0.65).
HIDDEN = ("image_vectors", "image_bits", "search_vectors", "search_bits", "search_codes")
# Tables named by prefix: one vec0 table of description vectors per text model.
HIDDEN_PREFIXES = ("image_vectors_", "image_bits_", "description_vectors_")
# Default facets of the plugin's tables on their Datasette table pages.
FACETS = {"descriptions": ["model", "prompt_id"], "image_tags": ["source"]}


@hookimpl
def prepare_connection(conn):
    # Every connection Datasette opens can query the vec0 tables.
    try:
        load_vec(conn)
    except ExtensionError:
        # Datasette without an extension-capable sqlite3 still serves the other tables.
        pass
    # Memory-mapped reads: rescoring a similarity query reads ~800 random rows, ~5x faster
    # mapped than through read() calls (bench/search.py). SQLite caps the size it maps.
    try:
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
    except Exception:  # e.g. a build without mmap: reads work as before
        pass


@hookimpl
def register_routes():
    from . import downloads, editapi, evaluatepage, mappage, media, pages, searchpage

    return [*pages.ROUTES, *searchpage.ROUTES, *media.ROUTES, *mappage.ROUTES, *editapi.ROUTES,
            *evaluatepage.ROUTES, *downloads.ROUTES]


_KNOWN = TokenCache(64)


async def _is_imageclust(datasette, database: str) -> bool:
    # Asked for every cell of a table page: remembered until the database file changes.
    try:
        db = datasette.get_database(database)
    except KeyError:
        return False
    token = None if db.is_memory else file_token(db.path)
    hit = _KNOWN.peek(token, "is_imageclust")
    if hit is not None:
        return hit[0]
    known = await db.execute_fn(pagedata.is_imageclust)  # the pages' own test
    _KNOWN.put(token, "is_imageclust", known)
    return known


# The ASGI scope of the request being answered: render_cell is not given the request on
# Datasette 0.65, yet its thumbnails are only for an actor who may view them.
_SCOPE: ContextVar[dict | None] = ContextVar("imageclust_scope", default=None)


@hookimpl
def asgi_wrapper(datasette):
    from . import downloads

    def wrap(app):
        async def remember_scope(scope, receive, send):
            token = _SCOPE.set(scope)
            try:
                await app(scope, receive, send)
            finally:
                _SCOPE.reset(token)

        # An export POST's body is read, bounded, before Datasette 0.65's CSRF check reads it.
        return downloads.guard(remember_scope)

    return wrap


async def _scope_actor(datasette, scope: dict) -> dict | None:
    """The actor of a request, found as Datasette finds it (its actor_from_request hooks)."""
    from datasette.plugins import pm
    from datasette.utils import await_me_maybe
    from datasette.utils.asgi import Request

    request = Request(scope, None)
    for actor in pm.hook.actor_from_request(datasette=datasette, request=request):
        actor = await await_me_maybe(actor)
        if actor:
            return actor
    return scope.get("actor")


async def _cell_thumbnails(datasette, database: str) -> bool:
    """Is ``database`` an imageclust one whose thumbnails the current request's actor may
    see? Asked once per request (a table page asks for every cell)."""
    scope = _SCOPE.get()
    if scope is None:
        return False  # not inside a request we know: show nothing that needs a permission
    known = scope.setdefault("imageclust.cell_thumbnails", {})
    if database not in known:
        actor = await _scope_actor(datasette, scope)
        known[database] = await _is_imageclust(datasette, database) and \
            await access.may_view(datasette, actor, database, "images") and \
            "thumbnails" in await access.allowed_features(datasette, actor, database, ("thumbnails",))
    return known[database]


@hookimpl
def render_cell(value, column, table, database, datasette):
    if table not in IMAGE_COLUMNS or IMAGE_COLUMNS[table] != column:
        return None
    if isinstance(value, dict) and "value" in value:  # a foreign key with its label expanded
        value = value["value"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return None

    async def inner():
        if not await _cell_thumbnails(datasette, database):
            return None
        base = datasette.urls.database(database) + "/-/imageclust"
        return Markup(
            '<a href="{base}/image/{id}"><img class="ic-cell-thumb" loading="lazy" alt="" '
            'style="max-height:48px;max-width:96px;vertical-align:middle" src="{base}/thumb/{id}"> {id}</a>'
        ).format(base=escape(base), id=int(value))

    return inner


def _links(datasette, database: str, extra: list | None = None) -> list[dict]:
    base = datasette.urls.database(database) + "/-/imageclust"
    return [{"href": base, "label": "Image clusters"},
            {"href": base + "/search", "label": "Image similarity search"},
            {"href": base + "/map", "label": "Image map"}] + (extra or [])


def _actions(datasette, actor, database):
    async def inner():
        # No links to pages that would refuse this actor.
        if not await _is_imageclust(datasette, database) or not await access.may_view(
                datasette, actor, database, "images"):
            return []
        return _links(datasette, database)

    return inner


@hookimpl
def database_actions(datasette, actor, database, request):
    return _actions(datasette, actor, database)


@hookimpl
def table_actions(datasette, actor, database, table, request):
    async def inner():
        if not await _is_imageclust(datasette, database):
            return []
        links = []
        if (table in IMAGE_COLUMNS or table in ("clusters", "cluster_runs", "cluster_labels")) and \
                await access.may_view(datasette, actor, database, "images"):
            links = _links(datasette, database)
        return links + await mapactions.table_action(datasette, actor, database, table, request)

    return inner


@hookimpl
def query_actions(datasette, actor, database, query_name, request, sql, params):
    # Datasette >= 1.0a12: "Show on map" for a query result with an image_id column.
    async def inner():
        if not await _is_imageclust(datasette, database):
            return []
        return await mapactions.query_action(datasette, actor, database, sql, params)

    return inner


@hookimpl
def extra_body_script(template, database, table, columns, view_name, request, datasette):
    # Datasette 0.65 has no query actions menu: a script puts the same link on the page.
    from datasette import hookspecs

    # (0.65 renders a query as the "database" view, with a query*.html template.)
    if not str(template or "").startswith("query") or request is None or not database or hasattr(hookspecs, "query_actions"):
        return None

    async def inner():
        if not await _is_imageclust(datasette, database):
            return ""
        return await mapactions.query_script(datasette, request, database, columns)

    return inner


@hookimpl
def get_metadata(datasette, key, database, table):
    # Datasette 0.65: hide the vec0 tables (and, by prefix, their shadow tables and the
    # description_vectors_<id> tables), facet the text tables. Datasette 1.0 has no such
    # hook; ``startup`` below sets the same in its config.
    tables = {t: {"hidden": True} for t in (*HIDDEN, "description_vectors")}
    tables.update({t: {"facets": f} for t, f in FACETS.items()})
    posts = _POST_FACETS.get(datasette, {})
    return {"databases": {name: {"tables": {**tables, **({"posts": {"facets": posts[name]}} if posts.get(name) else {})}}
                          for name in datasette.databases}}


@hookimpl
def skip_csrf(datasette, scope):
    # Datasette 0.65: a search by uploaded image only reads, so a cross-site POST can do
    # nothing a GET could not; 1.0 checks the request's origin instead.
    path = scope.get("path", "")
    if scope.get("method") == "POST" and path.endswith("/-/imageclust/search"):
        return True
    return writes.skip_csrf(scope)  # a JSON write, as Datasette's own rule


async def _post_columns(datasette, database: str):
    """The date, author and hashtags columns of ``posts`` (store.postcolumns's rule, with
    the database's plugin settings)."""
    from . import postsdata
    from .settings import settings

    cfg = settings(datasette, database)
    return await datasette.get_database(database).execute_fn(lambda conn: postsdata.columns(conn, cfg))


async def _queries(datasette, database: str) -> dict:
    from ..store.recipes import available

    try:
        return available(set(await datasette.get_database(database).table_names()),
                         await _post_columns(datasette, database))
    except Exception:  # an unknown or unreadable database is Datasette's to report
        return {}


# Facets of each database's posts table (Datasette -> database name -> facets), found at
# startup: 0.65's get_metadata cannot read a database.
_POST_FACETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def _posts_facets(datasette, database: str) -> list:
    """Datasette facets for ``posts`` (``store.postcolumns.facets``)."""
    from ..store.postcolumns import facets

    try:
        cols = await _post_columns(datasette, database)
        return await datasette.get_database(database).execute_fn(lambda conn: facets(conn, cols))
    except Exception:  # an unreadable database is Datasette's to report
        return []


async def _refused_queries(datasette, actor: dict | None, database: str) -> set[str]:
    """The ready-made queries of ``database`` that read a table ``actor`` may not view
    (Datasette runs a canned or stored query without checking the tables it reads)."""
    from ..store.recipes import NEEDS

    names = await _queries(datasette, database)
    ok = await access.viewable(datasette, actor, database, {t for q in names for t in NEEDS[q]})
    return {q for q in names if not NEEDS[q] <= ok}


@hookimpl
def canned_queries(datasette, database, actor):
    # Datasette 0.65: the ready-made similarity, cluster and duplicate queries (the same
    # list for every actor: permission_allowed below refuses what an actor may not run).
    async def inner():
        return await _queries(datasette, database)

    return inner


@hookimpl
def register_actions(datasette):
    # Datasette 1.0: the plugin permission (0.65 knows it through permission_allowed).
    return writes.actions()


@hookimpl
def permission_allowed(datasette, actor, action, resource):
    # Datasette 0.65: the plugin's permissions (writes.py); view-query on a ready-made query needs
    # view-table on its tables.
    from ..store.recipes import NEEDS

    if action in writes.PERMISSIONS:
        return writes.permission_allowed(datasette, actor, action, resource)
    if action != "view-query" or not isinstance(resource, (tuple, list)) or len(resource) != 2 \
            or resource[1] not in NEEDS:
        return None

    async def inner():
        database, name = resource
        return False if name in await _refused_queries(datasette, actor, database) else None

    return inner


@hookimpl
def permission_resources_sql(datasette, actor, action):
    # Datasette 1.0 (the stored queries are added once, for everyone, at startup): the
    # same rule as permission_allowed above, as the deny rows 1.0 asks plugins for.
    if action != "view-query":
        return None

    async def inner():
        from datasette.permissions import PermissionSQL  # type: ignore

        rules = []
        for database in list(datasette.databases):
            for name in sorted(await _refused_queries(datasette, actor, database)):
                k = len(rules)
                rules.append(PermissionSQL(
                    sql=f"SELECT :db_{k} AS parent, :q_{k} AS child, 0 AS allow, "
                        "'a ready-made query reading a table the actor may not view' AS reason",
                    params={f"db_{k}": database, f"q_{k}": name}))
        return rules

    return inner


def _warm(paths: list[str]) -> None:
    from ..analysis import search

    for path in paths:
        try:
            search.warm(path)
        except Exception:  # a missing index or unreadable file only means no warm cache
            pass


@hookimpl
def startup(datasette):
    from ..analysis import searchcodes
    from .settings import search_memory_mb

    # Before the warm-up below, which loads what this limit allows.
    memory_mb = search_memory_mb(datasette)
    searchcodes.set_memory_limit(searchcodes.DEFAULT_MEMORY_MB if memory_mb is None else memory_mb)
    # Read the similarity bits of every database in the background, so the first search
    # does not pay for it (~0.2 s at 100k images, ~1 s at 1M).
    paths = [db.path for db in datasette.databases.values() if getattr(db, "path", None) and not db.is_memory]
    if paths:
        threading.Thread(target=_warm, args=(paths,), name="imageclust-warm", daemon=True).start()
    config = getattr(datasette, "config", None)

    async def inner():
        _POST_FACETS[datasette] = {name: await _posts_facets(datasette, name) for name in list(datasette.databases)}
        if not hasattr(datasette, "allowed") or not isinstance(config, dict):
            return None  # 0.65: get_metadata and canned_queries do the rest

        # Datasette 1.0: the same queries, as stored queries of each imageclust database.
        add_query = getattr(datasette, "add_query", None)
        for name, db in list(datasette.databases.items()):
            if add_query is None:
                break
            queries = await _queries(datasette, name)
            for qname, q in queries.items():
                await add_query(name, qname, q["sql"], title=q["title"], description=q["description"],
                                source="plugin")
        # Datasette 1.0 reads "hidden" from its config and hides only the shadow tables
        # that SQLite reports as such (vec0's are not): list them by name.
        dbs = config.setdefault("databases", {})
        for name, db in list(datasette.databases.items()):
            try:
                names = await db.table_names()
            except Exception:  # an unreadable database is Datasette's to report
                continue
            wanted = {t: {"hidden": True} for t in names if t in HIDDEN or t.startswith(HIDDEN_PREFIXES)}
            wanted.update({t: {"facets": facets} for t, facets in FACETS.items() if t in names})
            if _POST_FACETS[datasette].get(name):
                wanted["posts"] = {"facets": _POST_FACETS[datasette][name]}
            if wanted:
                tables = dbs.setdefault(name, {}).setdefault("tables", {})
                for t, settings_ in wanted.items():
                    for k, v in settings_.items():
                        tables.setdefault(t, {}).setdefault(k, v)

    return inner
