"""CLI commands for loading (`load`) and for what a database holds (`info`)."""
from __future__ import annotations

import json
import os
import sys

import click

from ..store.paths import display
from .common import (
    CommandError,
    Progress,
    command,
    database_argument,
    device_option,
    echo_status,
    json_option,
)
from .posts import export_options, load_from_export


@command()
@database_argument
@click.argument("folders", nargs=-1, type=click.Path(), metavar="PATH...")
@click.option("--model", help="Hub repo id or local model directory (default: Xenova/clip-vit-base-patch32)")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "auto"]), default="fp32", show_default=True,
              help="Model variant: the ONNX file the export ships beside the fp32 one (auto: int8 on CPUs with "
                   "VNNI for models without int8 convolutions)")
@click.option("--recursive/--no-recursive", default=True, show_default=True, help="Descend into sub-folders")
@click.option("--hidden", is_flag=True, help="Include hidden files and folders (names starting with '.')")
@click.option("--thumbnail-size", type=int, default=256, show_default=True, help="Long side of stored thumbnails, px")
@click.option("--thumbnail-format", type=click.Choice(["webp", "jpeg"]), default="webp", show_default=True,
              help="Format of stored thumbnails")
@click.option("--batch-size", type=int, help="Images per inference batch and commit (default: 16; 64 when the model "
                                           "runs on an accelerator)")
@click.option("--workers", type=int, help="Decoding threads (default: cores, at most 4)")
@click.option("--decode-workers", type=int,
              help="Decode in N worker processes instead of --workers threads (default: one per core when the "
                   "model runs on an accelerator, else threads; 0 = threads)")
@click.option("--threads", type=int, help="onnxruntime threads (default: cores; with --engine dask, per worker)")
@device_option()
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Where files are read, decoded and embedded: here, or on a Dask cluster's workers "
                   "(pip install 'datasette-imageclust[dask]'; files and model on a shared filesystem)")
@click.option("--address", metavar="ADDR",
              help="The Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: DASK_SCHEDULER_ADDRESS, else a "
                   "local cluster of one worker per core)")
@click.option("--prune", is_flag=True, help="Remove files that are gone from disk from the database")
@click.option("--reembed", is_flag=True, help="Replace all vectors using --model (needed to switch model)")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any file could not be loaded")
@click.option("--sidecars", is_flag=True, help="Read the JSON that gallery-dl or Instaloader wrote beside each image "
                                               "into posts (keep fields with --columns or --all-columns)")
@export_options
@json_option()
def load(database, folders, model, recursive, hidden, thumbnail_size, thumbnail_format, batch_size,
         workers, decode_workers, threads, engine, address, prune, reembed, strict, sidecars, as_json, precision,
         **export):
    """Load the images in each PATH (a folder, scanned for images, or an image file)
    into DATABASE (created if needed); or, with --from EXPORT, the posts of a platform
    export (CSV, TSV, NDJSON, JSON) and the images at their URLs.

    Re-runs are incremental: unchanged files are skipped, moved and copied files are
    recognised by their sha256, and an interrupted run resumes where it stopped.
    """
    from .. import pipeline

    if export["export"] is not None or folders == ():
        if sidecars:
            raise CommandError("--sidecars goes with folders (PATH...), not --from")
        for name, value in (("--decode-workers", decode_workers), ("--engine", None if engine == "local" else engine),
                            ("--address", address)):
            if value is not None:
                raise CommandError(f"{name} goes with folders (PATH...), not --from")
        return load_from_export(database, folders, export, as_json=as_json, strict=strict, model=model,
                                hidden=hidden, thumbnail_size=thumbnail_size, thumbnail_format=thumbnail_format,
                                batch_size=batch_size, workers=workers, threads=threads, prune=prune,
                                reembed=reembed, precision=precision)
    given = [k for k, v in export.items()
             if v not in (None, False, ()) and not (sidecars and k in ("columns", "all_columns"))]
    if given:
        raise CommandError(f"--{given[0].replace('_', '-')} goes with --from EXPORT")
    if export["columns"] and export["all_columns"]:
        raise CommandError("give --columns or --all-columns, not both")
    progress = Progress()

    def skip(path: str, reason: str) -> None:
        echo_status(f"skipping {display(path)}: {display(reason)}")

    try:
        s = pipeline.load(
            database, folders, model, recursive=recursive, hidden=hidden, thumbnail_size=thumbnail_size,
            thumbnail_format=thumbnail_format, batch_size=batch_size, workers=workers,
            decode_workers=decode_workers, threads=threads, engine=engine, address=address, prune=prune,
            reembed=reembed, precision=precision, on_skip=skip, on_progress=progress, on_status=echo_status,
        )
    finally:
        progress.close()
    side = None
    if sidecars and not s.interrupted:
        from ..pipeline_posts import load_sidecars

        columns = [c.strip() for c in export["columns"].split(",")] if export["columns"] else None
        side = load_sidecars(database, folders, columns=columns, all_columns=export["all_columns"], on_skip=skip)
        echo_status(f"sidecars: {side.posts} posts linking {side.links} images, {side.unreadable} unreadable")
    if as_json:
        click.echo(json.dumps({**s.as_dict(), **({"sidecars": side.as_dict()} if side else {})}))
    echo_status(
        f"{s.scanned} files: {s.new} new images, {s.unchanged} unchanged, {s.duplicates} duplicates"
        + (f", {s.reembedded} re-embedded" if s.reembedded else "")
        + f", {s.errors} errors in {s.seconds:.1f}s ({s.images_per_second:.1f} images/s)"
    )
    if s.stage_line():
        echo_status(f"stages: {s.stage_line()}")
    if s.gone:
        echo_status(f"{s.gone} files are gone from disk" + (" and were removed" if s.pruned else
                                                            " (--prune removes them)"))
    _warn_leaks(database)
    for folder in folders:
        if os.path.isfile(os.path.join(folder, ".metadata.json")):
            echo_status(f"note: {display(folder)} holds 4CAT's image-download .metadata.json: "
                        f"imageclust load DATABASE --from {display(folder)} links its images to their posts")
    if s.interrupted:
        echo_status("interrupted: run the same command again to resume")
        sys.exit(130)
    if strict and s.errors:
        raise CommandError(f"{s.errors} files could not be loaded (--strict)")


@command()
@database_argument
@json_option("Print JSON on stdout")
def info(database, as_json):
    """Report what DATABASE holds: model, counts and sizes."""
    from ..store.info import database_info

    data = database_info(database)
    _warn_leaks(database)
    if as_json:
        click.echo(json.dumps(data.as_dict(), indent=2))
        return
    m = data.model or {}
    c = data.counts
    fields = [
        ("database", f"{display(data.path)} ({data.file_bytes / 1e6:.1f} MB)"),
        ("model", f"{display(m.get('name', '-'))} ({m.get('dimensions', '?')} dimensions)" if m else "-"),
        *((k, str(c.get(k, 0))) for k in ("images", "files", "duplicate_files", "vectors", "errors")),
        ("thumbnails", f"{c.get('thumbnails', 0)} ({data.thumbnail_bytes / 1e6:.1f} MB)"),
        ("schema", ", ".join(f"{k} v{v}" for k, v in data.schema.items())),
    ]
    width = max(len(k) for k, _ in fields) + 2
    click.echo("\n".join(f"{k + ':':<{width}}{v}" for k, v in fields))


def _warn_leaks(database: str) -> None:
    """One stderr line when the database would give away GPS or absolute paths if served."""
    from ..store.publish import leak_warning

    line = leak_warning(database)
    if line:
        echo_status(line)


COMMANDS = (load, info)
