"""CLI command ``publish-copy``: a redacted copy of a database for ``datasette publish``."""
from __future__ import annotations

import json

import click

from ..store import publish
from ..store.paths import display
from .common import CommandError, command, echo_status, json_option


@command("publish-copy")
@click.argument("source", type=click.Path())
@click.argument("dest", type=click.Path())
@click.option("--paths", "paths_mode", type=click.Choice(publish.PATHS), default="relative", show_default=True,
              help="File paths: relative to the folders given to `load`, file names only, or none (file ids)")
@click.option("--location", type=click.Choice(publish.LOCATION), default="drop", show_default=True,
              help="GPS coordinates: removed, rounded to 2 decimals (~1 km), or kept")
@click.option("--exif", type=click.Choice(publish.EXIF), default="safe", show_default=True,
              help="EXIF: reduced to the safe list (README: Publishing), removed, or kept")
@click.option("--authors", type=click.Choice(publish.AUTHORS), default="pseudonymise", show_default=True,
              help="The names of the people who posted (posts.author, author-like columns, @mentions, the "
                   "names in texts and labels): a salted hash made for this copy, removed, or kept")
@click.option("--author-column", "author_columns", multiple=True, metavar="COLUMN",
              help="Another posts column holding author names (repeatable; README: Publishing)")
@click.option("--drop-errors", is_flag=True, help="Remove the errors table's rows (files that did not load)")
@click.option("--drop-thumbnails", is_flag=True, help="Remove the stored thumbnails")
@click.option("--force", is_flag=True, help="Replace DEST if it exists")
@json_option()
def publish_copy(source, dest, paths_mode, location, exif, authors, author_columns, drop_errors, drop_thumbnails,
                 force, as_json):
    """Write a redacted copy of SOURCE to DEST, ready for `datasette publish` (SOURCE is
    only read): local paths, GPS, private EXIF and author names removed or pseudonymised,
    everything derived kept."""
    try:
        s = publish.publish_copy(source, dest, paths_mode=paths_mode, location=location, exif=exif,
                                 drop_errors=drop_errors, drop_thumbnails=drop_thumbnails, authors=authors,
                                 author_columns=author_columns, force=force, on_status=echo_status)
    except publish.PublishError as e:
        raise CommandError(str(e)) from e
    if as_json:
        click.echo(json.dumps(s.as_dict()))
    removed = ", ".join(s.removed) or "nothing"
    echo_status(f"wrote {display(s.dest)} ({s.bytes / 1e6:.1f} MB): {s.files} file paths made "
                f"{s.paths}, location {s.location}, EXIF {s.exif}, authors {s.authors}; removed: {removed}; "
                f"{s.models_renamed} model directories recorded by name, {s.texts_swept} other values cleaned")


COMMANDS = (publish_copy,)
