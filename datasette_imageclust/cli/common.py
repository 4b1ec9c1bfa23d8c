"""What every ``imageclust`` command shares: the error type and the one translation of
library errors into it, the ``command`` decorator that applies it, shared options,
opening a database, status lines and the progress bar."""
from __future__ import annotations

import functools
import sys
import time
from typing import Any, Callable

import click
import sqlite_utils

from ..store import connection


class CommandError(click.ClickException):
    """What the user asked cannot be done: one line saying why (and what to do); exit status 1."""


class DatabaseProblem(CommandError):
    """The database cannot be opened or used: one line naming it and what to do; exit status 1."""


def echo_status(line: str) -> None:
    """A status line: to stderr, so stdout holds only data (``--json``)."""
    click.echo(line, err=True)


def _user_errors() -> tuple[type[Exception], ...]:
    """The library's errors whose message is the answer for the user."""
    # Imported when an error is met, not at start-up: each costs a fraction of a second.
    from ..analysis.atlas import AtlasError
    from ..analysis.clustering import ClusteringError
    from ..analysis.clusterstore import StoreError
    from ..analysis.curation import CurationError
    from ..analysis.describe import DescribeError
    from ..analysis.evaluate import EvaluationError
    from ..analysis.layout import LayoutError
    from ..analysis.search import SearchError
    from ..analysis.vlm import ServerError
    from ..export.selection import ExportError
    from ..ingest.decode import ImageError
    from ..ingest.summary import LoadError
    from ..models import ModelError
    from ..pipeline import OptionError
    from ..store.collection import NotFound

    return (OptionError, LoadError, ModelError, ImageError, ClusteringError, StoreError, LayoutError,
            AtlasError, SearchError, NotFound, DescribeError, ServerError, CurationError, EvaluationError,
            ExportError)


def as_command_error(error: Exception, database: str | None) -> CommandError | None:
    """The one translation of a library error into what a command prints; None for an
    error that is not the user's to fix (a bug: it keeps its traceback)."""
    from ..store.schema import SchemaError

    if isinstance(error, (connection.DatabaseError, connection.ExtensionError, SchemaError)):
        return DatabaseProblem(str(error))
    if isinstance(error, connection.sqlite3.Error):  # met while working: a lock, a full disk, a damaged file
        return DatabaseProblem(str(connection.explain(database or "the database", error)))
    if isinstance(error, _user_errors()):
        return CommandError(str(error))
    return None


def command(*args: Any, **kwargs: Any) -> Callable[[Callable], click.Command]:
    """``click.command`` for every imageclust command: library errors (a database that
    cannot be used, bad options, a missing model, ...) become one line and exit status 1."""
    make = click.command(*args, **kwargs)

    def decorate(f: Callable) -> click.Command:
        @functools.wraps(f)
        def run(*a: Any, **kw: Any) -> Any:
            try:
                return f(*a, **kw)
            except click.ClickException:
                raise
            except Exception as e:
                problem = as_command_error(e, kw.get("database"))
                if problem is None:
                    raise
                raise problem from e

        return make(run)

    return decorate


# --- shared options ------------------------------------------------------------------

database_argument = click.argument("database", type=click.Path())


def json_option(help: str = "Print a JSON summary on stdout") -> Callable:
    return click.option("--json", "as_json", is_flag=True, help=help)


def _choose_device(ctx: click.Context, param: click.Parameter, device: str) -> str:
    from ..models import devices

    try:
        devices.choose(device, report=echo_status)
    except devices.DeviceError as e:  # before anything is opened or written
        raise CommandError(str(e)) from e
    return device


def device_option() -> Callable:
    """``--device``: where onnxruntime runs the models this command opens."""
    # A plain string checked by the callback: importing the models here would slow every command's start.
    return click.option("--device", metavar="DEVICE", default="auto", show_default=True,
                        callback=_choose_device, expose_value=False,
                        help="Where the models run: auto (the best the installed onnxruntime offers), cpu, cuda, "
                             "rocm, coreml, directml or openvino (these need their onnxruntime build: README)")


def run_option(help: str) -> Callable:
    """``--run NAME``: a clustering run by name."""
    return click.option("--run", "run_name", metavar="NAME", help=help)


# --- databases -----------------------------------------------------------------------


def open_db(database: str, *, readonly: bool = False) -> sqlite_utils.Database:
    """Open an existing DATABASE for this command; it is closed (and, if written, turned
    back into a single file) when the command ends, however it ends."""
    db = connection.connect(database, readonly=readonly, create=False)

    def close() -> None:
        if not connection.close(db):
            echo_status(connection.wal_note(database))

    click.get_current_context().call_on_close(close)
    return db


# --- progress ------------------------------------------------------------------------


class Progress:
    """An ``on_progress(done, total)`` callback drawing a progress bar on stderr: items
    done, items/s (``unit``), ETA. ``close()`` it when the step ends, however it ends."""

    def __init__(self, label: str = "embedding", unit: str = "files") -> None:
        self.label = label
        self.unit = unit
        self.bar: Any = None
        self.last = 0
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.start = time.perf_counter()
            self.bar = click.progressbar(
                length=total, label=self.label, file=sys.stderr,
                show_pos=True, show_eta=True, item_show_func=self._rate,
            )
            self.bar.__enter__()
        self.bar.update(done - self.last, current_item=done)
        self.last = done

    def _rate(self, done: int | None) -> str | None:
        if not done:
            return None
        return f"{done / max(time.perf_counter() - self.start, 1e-9):.1f} {self.unit}/s"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

