"""Plugin settings, from Datasette's plugin configuration (``metadata.yml`` on 0.65,
``datasette.yaml`` on 1.0), globally or per database::

    plugins:
      datasette-imageclust:
        default_run: photos-ward      # clustering run shown first (name or id)
        originals_root: /srv/photos   # serve original files recorded under this folder
        model: /srv/models/clip       # model directory for text search (default: the DB's)
        page_size: 60                 # clusters or images per page
        similar: 12                   # similar images on an image page
        description_model: llava:13b  # whose descriptions pages show (default: each image's newest)
        evaluation_anonymous: true    # anyone may code evaluation tasks, typing a name (default: false)
        post_date_column: timestamp   # the posts column that is the date (default: store.postcolumns's rule)
        post_author_column: author    # ... the author (default: author, author_username, username, user)
        post_hashtags_column: tags    # ... the hashtags (default: hashtags, tags)
        search_memory_mb: 640         # global only: vector copies a server process holds per database
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from datasette.app import Datasette

PLUGIN = "datasette-imageclust"
POST_COLUMNS = ("post_date_column", "post_author_column", "post_hashtags_column")


@dataclass(frozen=True)
class Settings:
    default_run: str | None = None
    originals_root: str | None = None
    model: str | None = None
    page_size: int = 60
    similar: int = 12
    description_model: str | None = None
    evaluation_anonymous: bool = False
    post_date_column: str | None = None
    post_author_column: str | None = None
    post_hashtags_column: str | None = None


def _int(value: Any, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value)))
    except (TypeError, ValueError):
        return default


class SettingError(click.ClickException):
    """A plugin setting with a value it cannot have (``datasette serve`` prints it as one line)."""


def search_memory_mb(datasette: Datasette) -> int | None:
    """The global ``search_memory_mb`` setting (None if unset): a whole number of megabytes,
    0 or more, as a YAML/JSON integer or a string of ASCII digits; anything else is refused."""
    value = (datasette.plugin_config(PLUGIN) or {}).get("search_memory_mb")
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
        return value
    raise SettingError(f"{PLUGIN}: search_memory_mb must be a whole number of megabytes (0 or more), not {value!r}")


def settings(datasette: Datasette, database: str | None = None) -> Settings:
    """The effective settings for ``database`` (database-level keys override global ones)."""
    # Merged here rather than with plugin_config's own fallback, which some 1.0 alphas
    # skip when the database has any config of its own.
    cfg = dict(datasette.plugin_config(PLUGIN) or {})
    if database is not None:
        cfg.update(datasette.plugin_config(PLUGIN, database=database, fallback=False) or {})
    root = cfg.get("originals_root")
    default_run = cfg.get("default_run")
    return Settings(
        default_run=str(default_run) if default_run not in (None, "") else None,
        # realpath once: originals are checked against the resolved root.
        originals_root=os.path.realpath(os.path.expanduser(str(root))) if root else None,
        model=str(cfg["model"]) if cfg.get("model") else None,
        page_size=_int(cfg.get("page_size"), 60, 1, 500),
        similar=_int(cfg.get("similar"), 12, 0, 100),
        description_model=str(cfg["description_model"]) if cfg.get("description_model") else None,
        # Only a real true: a stray string such as "no" must not open coding to everyone.
        evaluation_anonymous=cfg.get("evaluation_anonymous") is True,
        **{k: str(cfg[k]) if cfg.get(k) not in (None, "") else None for k in POST_COLUMNS},
    )
