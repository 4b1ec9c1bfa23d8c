"""CLI commands for similarity search: ``index`` (build the fast KNN index) and
``similar`` (the nearest images to an image or a text, from the command line)."""
from __future__ import annotations

import json
import os

import click

from . import _err, cli, open_db
from ..store.paths import display


@cli.command()
@click.argument("database", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout")
def index(database, as_json):
    """Build (or rebuild) the similarity index of DATABASE: binary-quantised, mean-centred
    vectors for a fast prefilter, rescored exactly. `load` runs this at its end."""
    from ..analysis import search

    db = open_db(database)
    try:
        summary = search.build_index(db)
    except search.SearchError as e:
        raise click.ClickException(str(e))
    if as_json:
        click.echo(json.dumps(summary))
    _err(f"indexed {summary['vectors']} vectors ({summary['dimensions'] or 0}-d) in {summary['seconds']:.1f}s")


@cli.command()
@click.argument("database", type=click.Path())
@click.option("--image", "image_id", type=int, help="Images like this image id")
@click.option("--text", help="Images matching this text (needs the model's text tower)")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False),
              help="Images like this image file (need not be in the database)")
@click.option("--model", help="Model directory or Hub id for --text (default: the database's model)")
@click.option("-k", "k", type=int, default=10, show_default=True, help="How many images")
@click.option("--exact", is_flag=True, help="Exact scan instead of the index")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout")
def similar(database, image_id, text, file_, model, k, exact, as_json):
    """The K images nearest to an image (--image ID), a text (--text "red moth") or an
    image file (--file query.jpg), most similar first: image id, cosine similarity
    (1 = the same vector) and a file path."""
    from ..analysis import embed_query, search
    from ..models import ModelError

    if sum(x is not None for x in (image_id, text, file_)) != 1:
        raise click.ClickException("give exactly one of --image ID, --text TEXT or --file PATH")
    if k < 1 or k > 1000:
        raise click.ClickException("-k must be between 1 and 1000")
    db = open_db(database, readonly=True)
    try:
        if image_id is not None:
            if search.vector_of(db, image_id) is None:
                raise click.ClickException(f"image {image_id} is not in the database or has no vector")
            hits = search.similar(db, image_id, k, exact=exact)
        else:
            from ..ingest.decode import ImageError

            try:
                if text is not None:
                    vec = embed_query.embed_text(db, text, model)
                else:
                    name, dims = embed_query.model_for(db, model)
                    vec, _ = embed_query.embed_upload(name, dims, _read_query_file(file_), os.path.basename(file_))
            except (ModelError, ImageError) as e:
                raise click.ClickException(str(e))
            hits = search.knn(db, vec, k, exact=exact)
        paths = {}
        for iid, _ in hits:
            row = db.execute("SELECT path FROM files WHERE image_id = ? ORDER BY id LIMIT 1", [iid]).fetchone()
            paths[iid] = row[0] if row else None
    except search.SearchError as e:
        raise click.ClickException(str(e))
    if as_json:
        click.echo(json.dumps([{"image_id": i, "similarity": round(1 - d, 6), "path": paths[i]} for i, d in hits]))
        return
    click.echo("image_id\tsimilarity\tpath")
    for i, d in hits:
        click.echo(f"{i}\t{1 - d:.4f}\t{display(paths[i] or '')}")


def _read_query_file(path: str) -> bytes:
    """The bytes of ``--file``: a regular file only (a FIFO would block), errors as one line."""
    import stat

    from ..ingest.scan import file_kind

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise click.ClickException(f"--file {display(path)} is {file_kind(mode)}, not an image file")
            return f.read()
    except OSError as e:
        raise click.ClickException(f"cannot read --file {display(path)}: {e.strerror or e}")
