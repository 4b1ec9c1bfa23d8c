"""CLI commands for the map (`layout`)."""
from __future__ import annotations

import json

import click

from . import _err, cli, open_db


@cli.command()
@click.argument("database", type=click.Path())
@click.option("--name", default="default", show_default=True, help="Layout name (re-running a name replaces it)")
@click.option("--method", type=click.Choice(["auto", "umap", "tsne"]), default="auto", show_default=True,
              help="2-D embedding: umap needs the [umap] extra; auto uses it when installed, else t-SNE")
@click.option("--run", "run_name", help="Clustering run whose clusters stay together (default: the default run)")
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
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout")
def layout(database, name, method, run_name, make_default, not_default, gap, landmarks, seed, levels, fmt,
           quality, sheet_size, no_atlas, as_json):
    """Compute 2-D map coordinates and the sprite atlases the map page draws from.

    Each image becomes one cell on a lattice; each cluster of the default clustering
    run a disk of cells, disks placed by a t-SNE/UMAP embedding and pushed apart so no
    thumbnails overlap.
    """
    from ..analysis.atlas import AtlasError, auto_levels, build_atlas, layout_order, parse_levels
    from ..analysis.layout import LayoutError, compute_layout

    if not_default:
        make_default = False
    try:
        level_list = None if levels == "auto" else parse_levels(levels)  # validate before the slow part
    except AtlasError as e:
        raise click.ClickException(str(e))
    db = open_db(database)
    try:
        summary = compute_layout(db, name=name, method=method, run=run_name, seed=seed, landmarks=landmarks,
                                 gap=gap, make_default=make_default, on_status=_err)
        _err(f"layout {summary.name!r}: {summary.n_images} images, {summary.groups} groups, method "
             f"{summary.method}, overlaps {summary.overlaps} "
             f"({', '.join(f'{k} {v:.1f}s' for k, v in summary.seconds.items())})")
        out = {"layout": summary.as_dict()}
        if not no_atlas:
            _err("building atlas sheets")
            order = layout_order(db, summary.layout_id)
            a = build_atlas(db, order, levels=level_list or auto_levels(len(order)), fmt=fmt,
                            quality=quality, sheet_size=int(sheet_size), on_status=_err)
            _err("atlas: " + ", ".join(f"{lv}px {a.sheets[lv]} sheets {a.bytes[lv] / 1e6:.1f} MB"
                                       for lv in a.levels) + f" in {a.seconds:.1f}s")
            out["atlas"] = a.as_dict()
    except (LayoutError, AtlasError) as e:
        raise click.ClickException(str(e))
    if as_json:
        click.echo(json.dumps(out))
