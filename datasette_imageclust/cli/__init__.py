"""The ``imageclust`` command line: each command parses its options, calls one function
of :mod:`datasette_imageclust.pipeline` (or a store/analysis query) and prints.

Commands live in one module per family (``load``, ``clusters``, ``curate``, ``map``, ``search``, ``describe``, ``tags``,
``evaluate``, ``export``, ``publish``);
what they share (errors, options, opening a database, progress) in :mod:`.common`.
"""
from __future__ import annotations

import click

from .. import __version__
from . import clusters, curate, describe, evaluate, export, load, map, posts, publish, search, tags


@click.group()
@click.version_option(__version__, prog_name="imageclust")
def cli() -> None:
    """Turn folders of images into a SQLite database to cluster and explore in Datasette."""


for _module in (load, posts, clusters, curate, search, map, describe, tags, evaluate, export, publish):
    for _command in _module.COMMANDS:
        cli.add_command(_command)
