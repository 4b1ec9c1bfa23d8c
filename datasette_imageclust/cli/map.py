"""CLI commands for the map (`layout`)."""
from __future__ import annotations

import json

import click

from .common import (
    command,
    database_argument,
    echo_status,
    json_option,
    open_db,
    run_option,
)


@command()
@database_argument
@click.option("--name", default="default", show_default=True, help="Layout name (re-running a name replaces it)")
@click.option("--method", type=click.Choice(["auto", "umap", "tsne"]), default="auto", show_default=True,
              help="2-D embedding: umap needs the [umap] extra; auto uses it when installed, else t-SNE")
@run_option("Clustering run whose clusters stay together (default: the default run)")
@click.option("--default/--no-default", "make_default", default=None,
              help="Make this the layout the map shows (default: if there is none yet, or it already was)")
@click.option("--not-default", "not_default", is_flag=True, hidden=True)  # the old spelling of --no-default
@click.option("--gap", type=float, default=1.0, show_default=True, help="Space between clusters, in thumbnails")
@click.option("--landmarks", type=int, default=1000, show_default=True,
              help="Above this many images, t-SNE runs on this many k-means prototypes")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed of the embedding: the same seed and images give the same map")
@click.option("--levels", default="auto", show_default=True,
              help="Atlas cell sizes in px, comma-separated; auto: 16,64, plus 8 above 30,000 images")
@click.option("--format", "fmt", type=click.Choice(["webp", "jpeg"]), default="webp", show_default=True,
              help="Atlas sheet format")
@click.option("--quality", type=click.IntRange(1, 100), default=70, show_default=True,
              help="Atlas sheet quality (WebP/JPEG, 1-100)")
@click.option("--sheet-size", type=click.Choice(["1024", "2048", "4096"]), default="2048", show_default=True,
              help="Atlas sheet side, px")
@click.option("--no-atlas", is_flag=True, help="Only compute coordinates (keep the existing atlas)")
@json_option()
def layout(database, name, method, run_name, make_default, not_default, gap, landmarks, seed, levels, fmt,
           quality, sheet_size, no_atlas, as_json):
    """Compute 2-D map coordinates and the sprite atlases the map page draws from.

    Each image becomes one cell on a lattice; each cluster of the default clustering
    run a disk of cells, disks placed by a t-SNE/UMAP embedding and pushed apart so no
    thumbnails overlap.
    """
    from ..pipeline import build_map

    if not_default:
        make_default = False
    summary = build_map(open_db(database), name=name, method=method, run=run_name, make_default=make_default,
                        gap=gap, landmarks=landmarks, seed=seed, levels=None if levels == "auto" else levels,
                        fmt=fmt, quality=quality, sheet_size=int(sheet_size), atlas=not no_atlas,
                        on_status=echo_status)
    if as_json:
        click.echo(json.dumps(summary.as_dict()))


COMMANDS = (layout,)
