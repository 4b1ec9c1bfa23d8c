"""The ``imageclust`` command line: a thin layer over the library modules."""
from __future__ import annotations

import json
import sys
import time

import click

from . import __version__


def _err(msg: str) -> None:
    click.echo(msg, err=True)


@click.group()
@click.version_option(__version__, prog_name="imageclust")
def cli() -> None:
    """Turn folders of images into a SQLite database to cluster and explore in Datasette."""


class _Progress:
    """A progress bar on stderr: files done, images/s, ETA."""

    def __init__(self) -> None:
        self.bar = None
        self.last = 0
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.start = time.perf_counter()
            self.bar = click.progressbar(
                length=total, label="embedding", file=sys.stderr,
                show_pos=True, show_eta=True, item_show_func=self._rate,
            )
            self.bar.__enter__()
        self.bar.update(done - self.last, current_item=done)
        self.last = done

    def _rate(self, done) -> str | None:
        if not done:
            return None
        return f"{done / max(time.perf_counter() - self.start, 1e-9):.1f} files/s"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@cli.command()
@click.argument("database", type=click.Path(dir_okay=False))
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@click.option("--model", help="Hub repo id or local model directory (default: Xenova/clip-vit-base-patch32)")
@click.option("--recursive/--no-recursive", default=True, show_default=True, help="Descend into sub-folders")
@click.option("--hidden", is_flag=True, help="Include hidden files and folders (names starting with '.')")
@click.option("--thumbnail-size", type=int, default=256, show_default=True, help="Long side of stored thumbnails, px")
@click.option("--thumbnail-format", type=click.Choice(["webp", "jpeg"]), default="webp", show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True, help="Images per inference batch and commit")
@click.option("--workers", type=int, help="Decoding threads (default: cores, at most 4)")
@click.option("--threads", type=int, help="onnxruntime threads (default: cores)")
@click.option("--prune", is_flag=True, help="Remove files that are gone from disk from the database")
@click.option("--reembed", is_flag=True, help="Replace all vectors using --model (needed to switch model)")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any file could not be loaded")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout")
def load(database, folders, model, recursive, hidden, thumbnail_size, thumbnail_format, batch_size,
         workers, threads, prune, reembed, strict, as_json):
    """Scan FOLDERS for images and load them into DATABASE (created if needed).

    Re-runs are incremental: unchanged files are skipped, moved and copied files are
    recognised by their sha256, and an interrupted run resumes where it stopped.
    """
    from .db import ExtensionError
    from .loader import LoadError, Loader
    from .models import ModelError
    from .schema import SchemaError

    if workers is not None and workers < 1:
        raise click.ClickException("--workers must be at least 1")
    if threads is not None and threads < 1:
        raise click.ClickException("--threads must be at least 1")
    progress = _Progress()

    def skip(path: str, reason: str) -> None:
        _err(f"skipping {path}: {reason}")

    try:
        loader = Loader(
            database, model, recursive=recursive, hidden=hidden, thumbnail_size=thumbnail_size,
            thumbnail_format=thumbnail_format, batch_size=batch_size, workers=workers, threads=threads,
            prune=prune, reembed=reembed, on_skip=skip, on_progress=progress, on_status=_err,
        )
        summary = loader.run(folders)
    except (LoadError, ModelError, ExtensionError, SchemaError) as e:
        raise click.ClickException(str(e))
    finally:
        progress.close()
    s = summary
    if as_json:
        click.echo(json.dumps(s.as_dict()))
    _err(
        f"{s.scanned} files: {s.new} new images, {s.unchanged} unchanged, {s.duplicates} duplicates"
        + (f", {s.reembedded} re-embedded" if s.reembedded else "")
        + f", {s.errors} errors in {s.seconds:.1f}s ({s.images_per_second:.1f} images/s)"
    )
    if s.gone:
        _err(f"{s.gone} files are gone from disk" + (" and were removed" if s.pruned else
                                                      " (--prune removes them)"))
    if s.interrupted:
        _err("interrupted: run the same command again to resume")
        sys.exit(130)
    if strict and s.errors:
        raise click.ClickException(f"{s.errors} files could not be loaded (--strict)")


@cli.command()
@click.argument("database", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout")
def info(database, as_json):
    """Report what DATABASE holds: model, counts and sizes."""
    from .db import ExtensionError
    from .stats import database_info

    try:
        data = database_info(database)
    except ExtensionError as e:
        raise click.ClickException(str(e))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    m = data.get("model") or {}
    lines = [
        f"database:   {data['path']} ({data['file_bytes'] / 1e6:.1f} MB)",
        f"model:      {m.get('name', '-')} ({m.get('dimensions', '?')} dimensions)" if m else "model:      -",
    ]
    for k in ("images", "files", "duplicate_files", "vectors", "errors"):
        lines.append(f"{k + ':':<12}{data['counts'].get(k, 0)}")
    lines.append(f"thumbnails: {data['counts'].get('thumbnails', 0)} ({data['thumbnail_bytes'] / 1e6:.1f} MB)")
    lines.append("schema:     " + ", ".join(f"{k} v{v}" for k, v in data["schema"].items()))
    click.echo("\n".join(lines))


# Commands of other components register themselves on `cli` when imported.
from . import cli_clusters, cli_map, cli_search  # noqa: E402,F401
