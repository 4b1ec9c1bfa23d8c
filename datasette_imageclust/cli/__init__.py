"""The ``imageclust`` command line: a thin layer over the library modules."""
from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any, Callable

import click

from .. import __version__
from ..store.paths import display


def _err(msg: str) -> None:
    click.echo(msg, err=True)


class DatabaseProblem(click.ClickException):
    """The database cannot be opened or used: one line naming it and what to do; exit status 1."""


def _database_errors(f: Callable) -> Callable:
    """The one translation, for every command, of a database that cannot be used
    (missing, not SQLite, read-only, locked, newer schema, no sqlite-vec) into one line."""

    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        from ..store import connection as dbmod
        from ..store.schema import SchemaError

        try:
            return f(*args, **kwargs)
        except (dbmod.DatabaseError, dbmod.ExtensionError, SchemaError) as e:
            raise DatabaseProblem(str(e)) from e
        except dbmod.sqlite3.Error as e:  # met while working: a lock, a full disk, a damaged file
            raise DatabaseProblem(str(dbmod.explain(kwargs.get("database") or "the database", e))) from e

    return run


class _Commands(click.Group):
    """A group whose commands all get ``_database_errors``."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:  # bare @cli.command
            return super().command()(_database_errors(args[0]))
        make = super().command(*args, **kwargs)
        return lambda f: make(_database_errors(f))


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="imageclust")
def cli() -> None:
    """Turn folders of images into a SQLite database to cluster and explore in Datasette."""


def wal_note(database: str) -> None:
    _err(f"{display(database)} stays in WAL mode while another process (e.g. datasette) has it open; "
         f"the next imageclust command run without readers turns it back into a single file")


def open_db(database: str, *, readonly: bool = False):
    """Open an existing DATABASE for this command; it is closed (and, if written, turned
    back into a single file) when the command ends, however it ends."""
    from ..store import connection as dbmod

    db = dbmod.connect(database, readonly=readonly, create=False)

    def close() -> None:
        if readonly:
            db.conn.close()
        elif not dbmod.close(db):
            wal_note(database)

    click.get_current_context().call_on_close(close)
    return db


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
@click.argument("database", type=click.Path())
@click.argument("folders", nargs=-1, required=True, type=click.Path(), metavar="PATH...")
@click.option("--model", help="Hub repo id or local model directory (default: Xenova/clip-vit-base-patch32)")
@click.option("--recursive/--no-recursive", default=True, show_default=True, help="Descend into sub-folders")
@click.option("--hidden", is_flag=True, help="Include hidden files and folders (names starting with '.')")
@click.option("--thumbnail-size", type=int, default=256, show_default=True, help="Long side of stored thumbnails, px")
@click.option("--thumbnail-format", type=click.Choice(["webp", "jpeg"]), default="webp", show_default=True,
              help="Format of stored thumbnails")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Images per inference batch and commit")
@click.option("--workers", type=int, help="Decoding threads (default: cores, at most 4)")
@click.option("--threads", type=int, help="onnxruntime threads (default: cores)")
@click.option("--prune", is_flag=True, help="Remove files that are gone from disk from the database")
@click.option("--reembed", is_flag=True, help="Replace all vectors using --model (needed to switch model)")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any file could not be loaded")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout")
def load(database, folders, model, recursive, hidden, thumbnail_size, thumbnail_format, batch_size,
         workers, threads, prune, reembed, strict, as_json):
    """Load the images in each PATH (a folder, scanned for images, or an image file)
    into DATABASE (created if needed).

    Re-runs are incremental: unchanged files are skipped, moved and copied files are
    recognised by their sha256, and an interrupted run resumes where it stopped.
    """
    from ..ingest.loader import LoadError, Loader
    from ..models import ModelError

    if workers is not None and workers < 1:
        raise click.ClickException("--workers must be at least 1")
    if threads is not None and threads < 1:
        raise click.ClickException("--threads must be at least 1")
    progress = _Progress()

    def skip(path: str, reason: str) -> None:
        _err(f"skipping {display(path)}: {display(reason)}")

    try:
        loader = Loader(
            database, model, recursive=recursive, hidden=hidden, thumbnail_size=thumbnail_size,
            thumbnail_format=thumbnail_format, batch_size=batch_size, workers=workers, threads=threads,
            prune=prune, reembed=reembed, on_skip=skip, on_progress=progress, on_status=_err,
        )
        summary = loader.run(folders)
    except (LoadError, ModelError) as e:
        raise click.ClickException(str(e))
    finally:
        progress.close()
    if loader.left_wal:
        wal_note(database)
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
@click.argument("database", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout")
def info(database, as_json):
    """Report what DATABASE holds: model, counts and sizes."""
    from ..store.info import database_info

    data = database_info(database)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    m = data.get("model") or {}
    c = data["counts"]
    fields = [
        ("database", f"{display(data['path'])} ({data['file_bytes'] / 1e6:.1f} MB)"),
        ("model", f"{display(m.get('name', '-'))} ({m.get('dimensions', '?')} dimensions)" if m else "-"),
        *((k, str(c.get(k, 0))) for k in ("images", "files", "duplicate_files", "vectors", "errors")),
        ("thumbnails", f"{c.get('thumbnails', 0)} ({data['thumbnail_bytes'] / 1e6:.1f} MB)"),
        ("schema", ", ".join(f"{k} v{v}" for k, v in data["schema"].items())),
    ]
    width = max(len(k) for k, _ in fields) + 2
    click.echo("\n".join(f"{k + ':':<{width}}{v}" for k, v in fields))


# Commands of other components register themselves on `cli` when imported.
from . import clusters, map, search  # noqa: E402,F401
