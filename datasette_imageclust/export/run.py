"""One export from start to end: check the output, select the images, write them under a
temporary name with the format's module, rename. ``pipeline.export`` calls this."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..store.connection import Connection
from ..store.paths import display
from .atomic import check_output, writing
from .selection import ExportError, select

#: --format -> (module in this package, writes a folder?). figure and contact are optional
#: modules: until they exist, their formats are refused with one line.
FORMATS: dict[str, tuple[str, bool]] = {
    "csv": ("tabular", False), "json": ("tabular", False), "parquet": ("tabular", False),
    "folder": ("archive", True), "zip": ("archive", False),
    "gexf": ("network", True), "graphml": ("network", True),
    "figure": ("figure", False), "contact-sheet": ("contact", False),
}


def writer(format: str):
    """The module that writes ``format`` (:class:`ExportError` if unknown or not available)."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r} (formats: {', '.join(FORMATS)})")
    name = FORMATS[format][0]
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.{name}":
            raise
        raise ExportError(f"--format {format} is not available in this version of imageclust") from None


def export(db: Connection, format: str, out: str | os.PathLike, *, run: str | int | None = None,
           clusters: list[int] | None = None, sql: str | None = None, force: bool = False, **options) -> dict:
    """Write the selected images to ``out`` as ``format``; the summary of what was written."""
    module = writer(format)
    out = Path(out)
    check_output(out, force=force)  # before the work, not after it
    selection = select(db, run=run, clusters=clusters, sql=sql)
    if not selection.image_ids:
        raise ExportError("nothing to export: the selection holds no images")
    with writing(out, force=force, directory=FORMATS[format][1]) as tmp:
        summary = module.write(db, selection, tmp, format=format, output=out, **options)
    return {"format": format, "output": display(os.fspath(out)), "run": selection.run["name"] if selection.run else None,
            "images": len(selection.image_ids), "clusters": len(selection.clusters), **summary}
