"""CLI commands for similarity search: ``index`` (build the fast KNN index) and
``similar`` (the nearest images to an image or a text, from the command line)."""
from __future__ import annotations

import json

import click

from ..store.paths import display
from .common import command, database_argument, device_option, echo_status, json_option, open_db


@command()
@database_argument
@json_option()
def index(database, as_json):
    """Build (or rebuild) the similarity index of DATABASE: binary-quantised, mean-centred
    vectors for a fast prefilter, rescored exactly. `load` runs this at its end."""
    from ..pipeline import build_index

    s = build_index(open_db(database))
    if as_json:
        click.echo(json.dumps(s.as_dict()))
    echo_status(f"indexed {s.vectors} vectors ({s.dimensions or 0}-d) in {s.seconds:.1f}s")


@command()
@database_argument
@click.option("--image", "image_id", type=int, help="Images like this image id")
@click.option("--text", help="Images matching this text (needs the model's text tower)")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False),
              help="Images like this image file (need not be in the database)")
@click.option("--model", help="Model directory or Hub id for --text (default: the database's model)")
@click.option("-k", "k", type=int, default=10, show_default=True, help="How many images")
@click.option("--exact", is_flag=True, help="Exact scan instead of the index")
@device_option()
@json_option("Print JSON on stdout")
def similar(database, image_id, text, file_, model, k, exact, as_json):
    """The K images nearest to an image (--image ID), a text (--text "red moth") or an
    image file (--file query.jpg), most similar first: image id, cosine similarity
    (1 = the same vector) and a file path."""
    from ..pipeline import find_similar

    hits = find_similar(open_db(database, readonly=True), image_id=image_id, text=text, file=file_, model=model,
                        k=k, exact=exact)
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hits]))
        return
    click.echo("image_id\tsimilarity\tpath")
    for h in hits:
        click.echo(f"{h.image_id}\t{h.similarity:.4f}\t{display(h.path or '')}")


COMMANDS = (index, similar)
