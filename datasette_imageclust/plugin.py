"""Datasette hooks. Kept small: pages live in their own modules."""
from __future__ import annotations

from datasette import hookimpl

from .db import ExtensionError, load_vec


@hookimpl
def prepare_connection(conn):
    # Every connection Datasette opens can query the vec0 tables.
    try:
        load_vec(conn)
    except ExtensionError:
        # Datasette without an extension-capable sqlite3 still serves the other tables.
        pass


@hookimpl
def register_routes():
    from . import mapview, views

    return [*views.ROUTES, *mapview.ROUTES]
