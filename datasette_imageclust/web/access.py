"""Who may see what: the database a plugin route names, and which of its tables the
request's actor may view (Datasette's ``view-table``), on 0.65 and 1.0 alike.

Every route shows data from several tables. ``images`` is the subject of all of them:
without it a route refuses (403). Each other part of a page is a *feature* here, shown
only when the actor may view every table it reads; otherwise it is left out (or the
route that exists only to show it refuses).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from datasette.utils import tilde_decode

from . import pagedata
from .http import Problem

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database
    from datasette.utils.asgi import Request

FEATURES: dict[str, tuple[str, ...]] = {
    "files": ("files",),                                         # paths, names, originals
    "thumbnails": ("thumbnails",),                               # thumbnails, table-cell previews
    "clusters": ("cluster_runs", "clusters", "cluster_members"),  # runs, clusters, membership
    "labels": ("cluster_labels",),                               # every label of a cluster
    "duplicates": ("duplicate_groups", "duplicate_members"),     # near duplicates
    "similar": ("image_vectors",),                               # similarity search, similar images
    "index": ("search_index", "search_vectors", "search_bits", "search_codes"),  # the fast index (else exact)
    "map": ("layouts", "layout_points"),                         # the map's points
    "atlas": ("atlas_sheets", "atlas_cells", "thumbnails"),      # the map's sprite sheets
    "model": ("models",),                                        # the model's name
    "descriptions": ("descriptions", "descriptions_fts", "prompts"),  # vision-LLM descriptions, their search
    "tags": ("image_tags",),                                     # tags of images
    "operations": ("cluster_ops",),                              # edits of a run (curation)
    "notes": ("cluster_notes",),                                 # clusters' notes, reviewed state
    "evaluation": ("eval_tasks", "eval_candidates", "eval_sets", "eval_set_images", "eval_answers"),  # coding sets
    "posts": ("posts", "post_images"),                           # posts of an export linking images
    "evaluation_pairs": ("eval_pairs", "eval_pair_relations", "eval_ratings"),  # pairs and their ratings
}


async def may_view(datasette: Datasette, actor: dict | None, database: str, table: str | None = None) -> bool:
    """May ``actor`` view ``database`` (and ``table`` in it)? Datasette >= 1.0a20 has
    ``datasette.allowed``; 0.65 ``permission_allowed``."""
    allowed = getattr(datasette, "allowed", None)
    if allowed is not None:
        from datasette.resources import DatabaseResource, TableResource  # type: ignore

        if not await allowed(action="view-database", resource=DatabaseResource(database=database), actor=actor):
            return False
        return table is None or bool(
            await allowed(action="view-table", resource=TableResource(database=database, table=table), actor=actor))
    if not await datasette.permission_allowed(actor, "view-instance", default=True):
        return False
    if not await datasette.permission_allowed(actor, "view-database", resource=database, default=True):
        return False
    return table is None or await datasette.permission_allowed(
        actor, "view-table", resource=(database, table), default=True)


async def may_execute_sql(datasette: Datasette, actor: dict | None, database: str) -> bool:
    """May ``actor`` run arbitrary SQL on ``database`` (Datasette's ``execute-sql``, which
    also needs view-database)?"""
    if not await may_view(datasette, actor, database):
        return False
    allowed = getattr(datasette, "allowed", None)
    if allowed is not None:
        from datasette.resources import DatabaseResource  # type: ignore

        return bool(await allowed(action="execute-sql", resource=DatabaseResource(database=database), actor=actor))
    return await datasette.permission_allowed(actor, "execute-sql", resource=database, default=True)


async def check_view(datasette: Datasette, request: Request, database: str, table: str | None = "images") -> bool:
    """May the request's actor see ``database`` and ``table`` (default: ``images``)?"""
    return await may_view(datasette, request.actor if request is not None else None, database, table)


async def viewable(datasette: Datasette, actor: dict | None, database: str, tables: Iterable[str]) -> set[str]:
    """Those of ``tables`` that ``actor`` may view."""
    names = sorted(set(tables))
    ok = await asyncio.gather(*(may_view(datasette, actor, database, t) for t in names))
    return {t for t, yes in zip(names, ok) if yes}


async def allowed_features(datasette: Datasette, actor: dict | None, database: str,
                           features: Iterable[str]) -> frozenset[str]:
    """The ``features`` whose tables ``actor`` may all view."""
    wanted = list(features)
    allowed = await viewable(datasette, actor, database, (t for f in wanted for t in FEATURES[f]))
    return frozenset(f for f in wanted if set(FEATURES[f]) <= allowed)


@dataclass(frozen=True)
class Access:
    """The database of a request and the features its actor may see."""

    db: Database
    features: frozenset[str]

    def __contains__(self, feature: str) -> bool:
        return feature in self.features

    def require(self, feature: str) -> None:
        """Refuse (403) a route that exists to show ``feature``."""
        if feature not in self.features:
            raise Problem(403, f"permission denied: you may not view {', '.join(FEATURES[feature])}")


async def database(datasette: Datasette, request: Request, features: Iterable[str] = (), *,
                   require_imageclust: bool = True) -> Access:
    """The database named in the URL and what of it the actor may see: 404 if unknown
    (or, unless told otherwise, not an imageclust database), 403 if the actor may not
    view it or its ``images`` table."""
    route = tilde_decode(request.url_vars["database"])
    try:
        db = datasette.get_database(route=route)
    except KeyError:
        raise Problem(404, f"database not found: {route}")
    if not await check_view(datasette, request, db.name):
        raise Problem(403, "permission denied")
    if require_imageclust and not await db.execute_fn(pagedata.is_imageclust):
        raise Problem(404, f"{db.name} is not an imageclust database (make one with: imageclust load "
                           f"{db.name}.db FOLDER)")
    return Access(db, await allowed_features(datasette, request.actor, db.name, features))
