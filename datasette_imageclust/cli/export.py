"""CLI command `export`: the selected images as a table, an archive, a network or a figure."""
from __future__ import annotations

import json

import click

from .common import command, database_argument, echo_status, json_option, open_db, run_option

FORMATS = ("csv", "json", "parquet", "folder", "zip", "gexf", "graphml", "figure", "contact-sheet")
WITH_CSV = ("csv", "folder", "zip", "gexf", "graphml")  # formats that write CSV (--bom)


@command()
@database_argument
@run_option("Clustering run (default: the default run)")
@click.option("--cluster", "clusters", type=int, multiple=True, metavar="ID",
              help="Only this cluster of the run (repeat for more)")
@click.option("--sql", metavar="SELECT", help="Only the image_id values of this read-only SELECT")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="What to write")
@click.option("-o", "--output", "out", type=click.Path(), required=True, help="The file (or folder) to write")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists")
@click.option("--symlink", is_flag=True, help="folder: link to the originals instead of copying them")
@click.option("--network", type=click.Choice(["knn", "tags", "clusters", "hashtags", "authors"]), default="knn",
              show_default=True, help="gexf/graphml: image-image nearest neighbours, image-tag, cluster-cluster, "
              "image-hashtag or image-author (of the images' posts)")
@click.option("--k", type=int, default=10, show_default=True,
              help="gexf/graphml: neighbours per image (knn), per cluster (clusters)")
@click.option("--threshold", type=float, help="gexf/graphml --network clusters: keep edges at least this similar")
@click.option("--bom", is_flag=True, help="Start every CSV written (csv; the manifest of folder/zip; nodes.csv "
              "and edges.csv of gexf/graphml) with a UTF-8 byte order mark, so Excel reads it as UTF-8")
@click.option("--figure", "figure", type=click.Choice(["map", "grid"]), help="figure: the map or a grid of clusters")
@click.option("--width", type=int, help="figure: PNG width in px (default 3000)")
@click.option("--dpi", type=int, help="figure: resolution (default 300)")
@json_option()
def export(database, run_name, clusters, sql, fmt, out, force, symlink, network, k, threshold, bom, figure, width,
           dpi, as_json):
    """Write the images of a run (or of --cluster / --sql) as csv, json, parquet, a folder or
    ZIP of the files, a Gephi network (gexf, graphml), a figure or a contact sheet.

    Tables carry each image's first post (url, post_url, author, created) and how many posts
    link it, for a database loaded with --from. No CSV cell starts a spreadsheet formula:
    text starting with = + - @, a tab or CR gets a ' in front (numbers stay numbers).

    The output appears only when complete (it is written under a temporary name first);
    an existing OUTPUT is refused unless --force.
    """
    from ..pipeline import export as export_images

    options = {"symlink": symlink} if fmt == "folder" else {}
    if symlink and fmt != "folder":
        options["symlink"] = True  # refused with its reason by the archive writer
    if fmt in ("gexf", "graphml"):
        options.update(network=network, k=k, threshold=threshold)
    if bom:
        if fmt not in WITH_CSV:
            raise click.ClickException(f"--bom is for the formats that write CSV ({', '.join(WITH_CSV)}), not {fmt}")
        options["bom"] = True
    options.update({key: v for key, v in (("figure", figure), ("width", width), ("dpi", dpi)) if v is not None})
    summary = export_images(open_db(database, readonly=True), fmt, out, run=run_name, clusters=list(clusters) or None,
                            sql=sql, force=force, **options)
    echo_status(f"wrote {summary['output']}: {summary['images']} images ({fmt})")
    if as_json:
        click.echo(json.dumps(summary))


COMMANDS = (export,)
